"""Reading run bundles: a TIGER task packed for hosts without TensorFlow.

`tasks.bundle.make_bundle` (where TensorFlow is installed) packs a task's
materialised train / validation / test splits, its semantic IDs, a gin file
of relative `numpy_dir` / `semantic_ids_dir` bindings and, optionally, the
gin-config package into one `.tar.gz` with a `bundle.json` of sha256
checksums. `unpack_bundle` unpacks and verifies it with the standard
library alone, so accelerator hosts that have JAX but no TensorFlow can
train and evaluate from it (see `benchmarks/device_quality.py`).
"""

from __future__ import annotations

import json
import os
import pathlib
import tarfile
from typing import Any

from recjax.assets import sha256_file
from recjax.errors import ConfigError

GIN_FILE = "bundle.gin"
INFO_FILE = "bundle.json"
SITE_DIR = "site"
FORMAT_VERSION = 1


def unpack_bundle(path: str | os.PathLike[str],
                  dest: str | os.PathLike[str]) -> dict[str, Any]:
  """Unpacks a bundle and checks every member's sha256 (no TensorFlow).

  Args:
    path: the `.tar.gz` written by `make_bundle`.
    dest: directory to unpack into (created).

  Returns:
    The bundle's `bundle.json`.

  Raises:
    ConfigError: not a bundle, another format version, unsafe member
      paths, or a member whose content differs from the recorded checksum.
  """
  dest = pathlib.Path(dest)
  dest.mkdir(parents=True, exist_ok=True)
  try:
    with tarfile.open(path, "r:gz") as tar:
      tar.extractall(dest, filter="data")
  except (tarfile.TarError, OSError) as e:
    raise ConfigError(f"{path} is not a readable bundle ({e}); rebuild it "
                      "with python -m recjax.tasks.bundle.") from e
  info_path = dest / INFO_FILE
  if not info_path.is_file():
    raise ConfigError(f"{path} has no {INFO_FILE}; rebuild it with "
                      "python -m recjax.tasks.bundle.")
  info = json.loads(info_path.read_text(encoding="utf-8"))
  if info.get("format_version") != FORMAT_VERSION:
    raise ConfigError(f"{path} has bundle format "
                      f"{info.get('format_version')!r}; this recjax reads "
                      f"{FORMAT_VERSION}. Rebuild it with python -m "
                      "recjax.tasks.bundle.")
  for name, digest in info["sha256"].items():
    member = dest / name
    if not member.is_file() or sha256_file(member) != digest:
      raise ConfigError(f"{path}: member {name} is missing or modified; "
                        "rebuild the bundle.")
  return info
