"""Tests for recjax.datasets.canonical."""

import json

import numpy as np
import pytest

from recjax.datasets import canonical
from recjax.errors import DatasetError


def _dataset(timestamps=True):
  items = canonical.ItemTable(["a", "b", "c"],
                              {"title": ["A", "B", "C"], "year": ["1", "2",
                                                                  "3"]})
  seqs = [[0, 1, 2], [2, 1, 0, 1]]
  ts = [[1, 2, 3], [5, 6, 6, 9]] if timestamps else None
  return canonical.from_sequences("toy", items, ["u1", "u2"], seqs, ts)


def test_sizes_and_access():
  ds = _dataset()
  assert (ds.num_users, ds.num_items, ds.num_interactions) == (2, 3, 7)
  np.testing.assert_array_equal(ds.sequence(1), [2, 1, 0, 1])
  np.testing.assert_array_equal(ds.timestamps(0), [1, 2, 3])
  np.testing.assert_array_equal(ds.item_counts(), [2, 3, 2])
  assert ds.items.record(2) == {"item_id": "c", "title": "C", "year": "3",
                                "brand": "", "categories": "",
                                "description": ""}
  assert ds.statistics()["seq_len_max"] == 4


def test_save_load_roundtrip(tmp_path):
  ds = _dataset()
  ds.save(tmp_path / "d")
  back = canonical.CanonicalDataset.load(tmp_path / "d")
  assert back.fingerprint() == ds.fingerprint()
  np.testing.assert_array_equal(back.timestamps_flat, ds.timestamps_flat)
  assert back.items.fields == ds.items.fields
  assert back.user_ids == ds.user_ids
  # No temporary directories are left next to the output.
  assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_save_without_timestamps_and_overwrite(tmp_path):
  ds = _dataset(timestamps=False)
  ds.save(tmp_path / "d")
  ds.save(tmp_path / "d")
  assert canonical.CanonicalDataset.load(tmp_path / "d").timestamps_flat is None
  assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_load_detects_tampering(tmp_path):
  _dataset().save(tmp_path / "d")
  with open(tmp_path / "d" / "users.json", "w") as f:
    json.dump(["u1", "other"], f)
  with pytest.raises(DatasetError, match=r"contents do not match the "
                     r"fingerprint in meta.json; the directory was "
                     r"modified or is corrupt. Rebuild it."):
    canonical.CanonicalDataset.load(tmp_path / "d")


def test_load_missing_directory(tmp_path):
  with pytest.raises(DatasetError, match=r"is not a canonical dataset "
                     r"directory \(no meta.json\). Create one with"):
    canonical.CanonicalDataset.load(tmp_path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
  ds = _dataset()

  def boom(*a, **k):
    raise OSError("disk full")

  monkeypatch.setattr(canonical.json, "dump", boom)
  with pytest.raises(OSError, match="disk full"):
    ds.save(tmp_path / "d")
  assert list(tmp_path.iterdir()) == []


def test_non_monotonic_timestamps_named():
  items = canonical.ItemTable(["a", "b"], {})
  with pytest.raises(DatasetError, match=r"user 'u2' decrease at position 2"):
    canonical.from_sequences("toy", items, ["u1", "u2"],
                             [[0, 1], [0, 1, 0]], [[5, 6], [1, 3, 2]])


def test_item_index_out_of_range():
  items = canonical.ItemTable(["a"], {})
  with pytest.raises(DatasetError, match="user 'u1' refers to item index 3"):
    canonical.from_sequences("toy", items, ["u1"], [[0, 3]])


def test_item_table_checks():
  with pytest.raises(DatasetError, match="appears more than once"):
    canonical.ItemTable(["a", "a"], {})
  with pytest.raises(DatasetError, match="has 1 values for 2 items"):
    canonical.ItemTable(["a", "b"], {"title": ["x"]})
