"""Tests for recjax.assets."""

import dataclasses
import os
import zipfile

import pytest

from recjax import assets
from recjax.errors import AssetError


@pytest.fixture
def fake_asset(tmp_path, monkeypatch):
  """An asset whose wheel is pre-placed in a private cache."""
  monkeypatch.setenv("RECJAX_CACHE", str(tmp_path / "cache"))
  wheel_dir = tmp_path / "cache" / "wheels"
  wheel_dir.mkdir(parents=True)
  wheel = wheel_dir / "fake-1.0-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as zf:
    zf.writestr("fake/data/a.txt", "hello")
    zf.writestr("fake/data/sub/b.txt", "world")
    zf.writestr("fake/other.py", "x = 1")
  asset = assets.Asset("fake", "fake", "1.0", wheel.name,
                       assets.sha256_file(wheel), "fake/data/", "a fake")
  monkeypatch.setitem(assets.ASSETS, "fake", asset)
  return asset


def test_fetch_extracts_members_only(fake_asset):
  path = assets.fetch("fake")
  assert (path / "a.txt").read_text() == "hello"
  assert (path / "sub" / "b.txt").read_text() == "world"
  assert not (path.parent / "other.py").exists()
  # A second call is offline: it works with the wheel gone.
  (assets.cache_dir() / "wheels" / fake_asset.wheel).unlink()
  assert assets.fetch("fake") == path


def test_wrong_hash_is_reported_and_nothing_extracted(fake_asset,
                                                      monkeypatch):
  bad = dataclasses.replace(fake_asset, sha256="0" * 64)
  monkeypatch.setitem(assets.ASSETS, "fake", bad)
  with pytest.raises(AssetError, match="does not match the pinned.*by hand"):
    assets.fetch("fake")
  assert not (assets.cache_dir() / "assets").exists() or not any(
      (assets.cache_dir() / "assets").iterdir())


def test_unreachable_registry(tmp_path, monkeypatch):
  monkeypatch.setenv("RECJAX_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
  monkeypatch.setenv("PIP_RETRIES", "0")
  monkeypatch.setenv("PIP_TIMEOUT", "2")
  monkeypatch.setenv("PIP_FIND_LINKS", "")
  monkeypatch.setenv("PIP_NO_INDEX", "0")
  # No other source of the wheel: no extra index, no pip config file.
  monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
  monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
  with pytest.raises(AssetError,
                     match=r"Could not download recbole==1\.2\.1 for asset "
                           r"'movielens_100k' .* from the package registry: "
                           r"(the registry is unreachable \(offline\?\); "
                           r"pip: )?ERROR: .* \| ERROR: No matching "
                           r"distribution "
                           r"found for recbole==1\.2\.1\. To supply it by "
                           r"hand, .*pass that directory"):
    assets.fetch("movielens_100k")
  wheels = tmp_path / "cache" / "wheels"
  assert not any(wheels.iterdir())


def test_unknown_asset():
  with pytest.raises(AssetError, match="Unknown asset 'nope'"):
    assets.fetch("nope")


@pytest.mark.network("movielens_100k")
def test_movielens_asset_is_pinned_and_verified():
  path = assets.fetch("movielens_100k")
  assert (path / "ml-100k.inter").exists()
  pinned = assets.ASSETS["movielens_100k"].sha256
  # The extracted files record the hash of the wheel they came from, which
  # `fetch` verified against the pin (always checked, wheel kept or not).
  root = path
  for _ in assets.ASSETS["movielens_100k"].member_prefix.strip("/").split(
      "/"):
    root = root.parent
  assert (root / ".complete").read_text().strip() == pinned
  wheel = assets.cache_dir() / "wheels" / assets.ASSETS[
      "movielens_100k"].wheel
  if wheel.exists():  # A cache may drop the wheel after extraction.
    assert assets.sha256_file(wheel) == pinned


_RACE = """
import pathlib, sys, time
from recjax import assets
wheel, sha, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
assets.ASSETS["fake"] = assets.Asset("fake", "fake", "1.0", wheel, sha,
                                     "fake/data/", "a fake")
while time.time() < start:
  pass
path = assets.fetch("fake")
for i in range(300):
  assert (path / f"f{i}.txt").read_text() == str(i) * 50, i
"""


def test_processes_fetching_one_asset_at_once_do_not_race(tmp_path):
  """Four processes fetch the same asset at the same moment; each gets a
  complete folder (the fetch is locked; without the lock a later
  process's folder swap pulls the folder from under an earlier one)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  cache = tmp_path / "cache"
  (cache / "wheels").mkdir(parents=True)
  wheel = cache / "wheels" / "fake-1.0-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as zf:
    for i in range(300):
      zf.writestr(f"fake/data/f{i}.txt", str(i) * 50)
  env = dict(os.environ, RECJAX_CACHE=str(cache))
  start = time.time() + 3.0
  procs = [subprocess.Popen(
      [sys.executable, "-c", _RACE, wheel.name, assets.sha256_file(wheel),
       str(start)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for _ in range(4)]
  for p in procs:
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
  assert len(list((cache / "assets").iterdir())) == 1
