"""Tests for recjax.io_utils: atomic directories and .npy files."""

import os

import numpy as np
import pytest

from recjax import io_utils


def _siblings(path):
  return sorted(p.name for p in path.parent.iterdir())


def test_atomic_directory_creates_dest(tmp_path):
  dest = tmp_path / "out" / "stage"
  with io_utils.atomic_directory(dest) as tmp:
    assert tmp != dest and tmp.parent == dest.parent
    (tmp / "a.txt").write_text("new")
    assert not dest.exists()
  assert (dest / "a.txt").read_text() == "new"
  assert _siblings(dest) == ["stage"]


def test_atomic_directory_replaces_existing(tmp_path):
  dest = tmp_path / "stage"
  dest.mkdir()
  (dest / "old.txt").write_text("old")
  with io_utils.atomic_directory(dest) as tmp:
    (tmp / "new.txt").write_text("new")
  assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
  assert _siblings(dest) == ["stage"]


def test_atomic_directory_failure_keeps_old_and_leaves_no_temporary(tmp_path):
  dest = tmp_path / "stage"
  dest.mkdir()
  (dest / "old.txt").write_text("old")
  with pytest.raises(RuntimeError, match="boom"):
    with io_utils.atomic_directory(dest) as tmp:
      (tmp / "half.txt").write_text("half")
      raise RuntimeError("boom")
  assert (dest / "old.txt").read_text() == "old"
  assert not (dest / "half.txt").exists()
  assert _siblings(dest) == ["stage"]


def test_atomic_directory_failure_without_dest(tmp_path):
  dest = tmp_path / "stage"
  with pytest.raises(KeyboardInterrupt):
    with io_utils.atomic_directory(dest):
      raise KeyboardInterrupt
  assert not list(tmp_path.iterdir())


def test_save_npy_atomic_roundtrip(tmp_path):
  arr = np.arange(12, dtype=np.int32).reshape(3, 4)
  path = io_utils.save_npy_atomic(tmp_path / "sub" / "codes.npy", arr)
  np.testing.assert_array_equal(np.load(path), arr)
  assert os.listdir(path.parent) == ["codes.npy"]


def test_save_npy_atomic_failure_keeps_old_file(tmp_path):
  path = tmp_path / "codes.npy"
  np.save(path, np.zeros(3))

  class Unsaveable:

    def __array__(self, *args, **kwargs):
      raise ValueError("cannot convert")

  with pytest.raises(ValueError, match="cannot convert"):
    io_utils.save_npy_atomic(path, Unsaveable())
  np.testing.assert_array_equal(np.load(path), np.zeros(3))
  assert os.listdir(tmp_path) == ["codes.npy"]


def test_save_npz_atomic_roundtrip_and_failure(tmp_path):
  path = io_utils.save_npz_atomic(tmp_path / "p.npz", a=np.arange(3),
                                  b=np.ones((2, 2), np.float32))
  with np.load(path) as f:
    assert sorted(f.files) == ["a", "b"]
    np.testing.assert_array_equal(f["a"], np.arange(3))

  class Unsaveable:

    def __array__(self, *args, **kwargs):
      raise ValueError("cannot convert")

  with pytest.raises(ValueError, match="cannot convert"):
    io_utils.save_npz_atomic(path, a=Unsaveable())
  with np.load(path) as f:  # the old file is intact
    np.testing.assert_array_equal(f["a"], np.arange(3))
  assert os.listdir(tmp_path) == ["p.npz"]
