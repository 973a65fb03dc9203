"""Atomic artefact directories: a failed stage leaves no half-written output.

Artefacts are written into a temporary sibling named
`.<name>.tmp-<host>-<pid>-<random>` and renamed into place. An exception
removes the sibling; a process killed outright (SIGKILL, a lost machine)
cannot, so the next write of the same artefact on the same host removes
siblings whose process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pathlib
import shutil
import socket
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from typing import BinaryIO


def tmp_prefix(dest: pathlib.Path) -> str:
  """The prefix of `dest`'s temporary siblings written by this process."""
  host = socket.gethostname().replace("-", "_") or "host"
  return f".{dest.name}.tmp-{host}-{os.getpid()}-"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_stale_siblings(dest: str | os.PathLike[str]) -> list[pathlib.Path]:
  """Removes temporary siblings of `dest` left by killed processes.

  Only siblings written on this host by a process that no longer exists
  are removed (another live writer's are kept).

  Args:
    dest: the artefact path (file or directory).

  Returns:
    The removed paths.
  """
  dest = pathlib.Path(dest)
  host = socket.gethostname().replace("-", "_") or "host"
  removed = []
  pattern = f".{glob.escape(dest.name)}.tmp-{glob.escape(host)}-*-*"
  for path in dest.parent.glob(pattern):
    pid = path.name[len(f".{dest.name}.tmp-{host}-"):].split("-", 1)[0]
    if pid.isdigit() and not _alive(int(pid)):
      if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
      else:
        path.unlink(missing_ok=True)
      removed.append(path)
  return removed


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
  """Holds an exclusive advisory lock on `path` (created if missing).

  Processes that write one shared artefact (an asset cache entry, a TFDS
  dataset) take turns: the second waits, then finds the work done.

  Args:
    path: the lock file; its folder is created.

  Yields:
    Nothing; the lock is held inside the `with` block.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


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
  remove_stale_siblings(dest)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=tmp_prefix(dest),
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
  remove_stale_siblings(path)
  fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path), dir=path.parent)
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
