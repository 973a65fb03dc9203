"""Atomic artefact directories: a failed stage leaves no half-written output."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from typing import BinaryIO


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
  """Yields a temporary sibling directory renamed onto `dest` on success.

  On an exception the temporary directory is removed and `dest` is left as
  it was.

  Args:
    dest: final directory (replaced if it exists).

  Yields:
    The temporary directory to write into.
  """
  dest = pathlib.Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-",
                                      dir=dest.parent))
  try:
    yield tmp
    if dest.exists():
      old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
      dest.rename(old)
      tmp.rename(dest)
      shutil.rmtree(old, ignore_errors=True)
    else:
      tmp.rename(dest)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _write_atomic(path: str | os.PathLike[str],
                  write: Callable[[BinaryIO], None]) -> pathlib.Path:
  """Calls `write` on a temporary sibling of `path`, then renames it."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def save_npy_atomic(path: str | os.PathLike[str], array: object
                    ) -> pathlib.Path:
  """Writes `array` to a `.npy` file through a temporary sibling + rename.

  Args:
    path: destination file (parents are created).
    array: anything `numpy.save` accepts.

  Returns:
    The path written; on an exception no file (and no temporary) is left.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  return _write_atomic(path, lambda f: np.save(f, array))


def save_npz_atomic(path: str | os.PathLike[str], **arrays: object
                    ) -> pathlib.Path:
  """Writes named arrays to a `.npz` file through a temporary + rename.

  Args:
    path: destination file (parents are created).
    **arrays: name -> anything `numpy.savez` accepts.

  Returns:
    The path written; on an exception no file (and no temporary) is left.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  return _write_atomic(path, lambda f: np.savez(f, **arrays))


def write_text_atomic(path: str | os.PathLike[str], text: str
                      ) -> pathlib.Path:
  """Writes UTF-8 `text` through a temporary sibling + rename.

  Args:
    path: destination file (parents are created).
    text: the content.

  Returns:
    The path written; on an exception no file (and no temporary) is left.
  """
  return _write_atomic(path, lambda f: f.write(text.encode("utf-8")))
