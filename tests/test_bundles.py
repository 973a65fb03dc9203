"""Tests for recjax.bundles: unpacking verifies what it unpacks."""

import io
import json
import tarfile

import pytest

from recjax import assets
from recjax import bundles
from recjax.errors import ConfigError


def _bundle(path, files, version=bundles.FORMAT_VERSION, digests=None):
  """A bundle archive of `files` ({name: bytes}) with its bundle.json."""
  info = {"format_version": version, "task": "t", "sha256": {}}
  with tarfile.open(path, "w:gz") as tar:
    for name, data in files.items():
      member = tarfile.TarInfo(name)
      member.size = len(data)
      tar.addfile(member, io.BytesIO(data))
      (path.parent / "tmp").write_bytes(data)
      info["sha256"][name] = assets.sha256_file(path.parent / "tmp")
    info["sha256"].update(digests or {})
    blob = json.dumps(info).encode()
    member = tarfile.TarInfo(bundles.INFO_FILE)
    member.size = len(blob)
    tar.addfile(member, io.BytesIO(blob))
  return path


def test_unpack_checks_every_member(tmp_path):
  good = _bundle(tmp_path / "good.tar.gz", {"train/a.npy": b"abc",
                                            "bundle.gin": b"X = 1\n"})
  info = bundles.unpack_bundle(good, tmp_path / "u")
  assert info["task"] == "t"
  assert (tmp_path / "u" / "train" / "a.npy").read_bytes() == b"abc"
  bad = _bundle(tmp_path / "bad.tar.gz", {"train/a.npy": b"abc"},
                digests={"train/a.npy": "0" * 64})
  with pytest.raises(ConfigError, match="member train/a.npy is missing or "
                     "modified"):
    bundles.unpack_bundle(bad, tmp_path / "v")
  missing = _bundle(tmp_path / "missing.tar.gz", {},
                    digests={"test/b.npy": "0" * 64})
  with pytest.raises(ConfigError, match=r"missing\.tar\.gz: member "
                                        r"test/b\.npy is missing or "
                                        r"modified; rebuild the bundle"):
    bundles.unpack_bundle(missing, tmp_path / "w")


def test_unpack_rejects_other_files_and_versions(tmp_path):
  junk = tmp_path / "junk.tar.gz"
  junk.write_bytes(b"not a tarball")
  with pytest.raises(ConfigError, match="not a readable bundle"):
    bundles.unpack_bundle(junk, tmp_path / "a")
  for name, member, error in (("plain", "x.txt", "no bundle.json"),
                               ("evil", "../outside.txt",
                                "not a readable bundle")):
    path = tmp_path / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
      tar.addfile(tarfile.TarInfo(member), io.BytesIO(b""))
    with pytest.raises(ConfigError, match=error):
      bundles.unpack_bundle(path, tmp_path / name)
  old = _bundle(tmp_path / "old.tar.gz", {}, version=0)
  with pytest.raises(ConfigError, match=r"old\.tar\.gz has bundle format 0; "
                                        r"this recjax reads 1\. Rebuild it "
                                        r"with python -m "
                                        r"recjax\.tasks\.bundle"):
    bundles.unpack_bundle(old, tmp_path / "c")
  assert not (tmp_path / "outside.txt").exists()
