"""Tests for `recjax.datasets.merge`: several datasets as one catalog."""

from __future__ import annotations

import numpy as np
import pytest

from recjax import datasets
from recjax.datasets import ItemTable
from recjax.datasets import merge
from recjax.datasets import stage
from recjax.datasets.canonical import from_sequences
from recjax.errors import DatasetError


def _part(name, n, seqs, fields):
  items = ItemTable([f"x{i}" for i in range(n)], fields)
  return from_sequences(name, items, [f"u{u}" for u in range(len(seqs))],
                        seqs, timestamps=[list(range(len(s))) for s in seqs])


def test_parts_keep_their_sequences_under_offset_ids():
  a = _part("a", 3, [[0, 1, 2], [2, 1, 0]], {"title": ["t0", "t1", "t2"]})
  b = _part("b", 2, [[1, 0, 1, 1]], {"title": ["s0", "s1"],
                                     "brand": ["k", ""]})
  ds = merge.merge([a, b], ["A", "B"], "A+B")
  assert (ds.num_items, ds.num_users) == (5, 3)
  assert ds.items.original_ids == ["A/x0", "A/x1", "A/x2", "B/x0", "B/x1"]
  assert ds.user_ids == ["A/u0", "A/u1", "B/u0"]
  assert ds.items.fields["domain"] == ["A"] * 3 + ["B"] * 2
  assert ds.items.fields["brand"] == ["", "", "", "k", ""]
  np.testing.assert_array_equal(ds.sequence(2), [4, 3, 4, 4])
  np.testing.assert_array_equal(ds.sequence(1), [2, 1, 0])
  assert ds.metadata["common_text_fields"] == ["title"]
  assert [p["num_items"] for p in ds.metadata["parts"]] == [3, 2]


def test_parts_without_a_common_text_field_are_refused():
  a = _part("a", 2, [[0, 1, 0]], {"title": ["t0", "t1"]})
  b = _part("b", 2, [[1, 0, 1]], {"description": ["d0", "d1"]})
  with pytest.raises(DatasetError, match=r"share no non-empty item text "
                     r"field \(/data/a: \['title'\]; /data/b: "
                     r"\['description'\]\); give every part's items at "
                     r"least one common field"):
    merge.merge([a, b], ["A", "B"], "A+B", sources=["/data/a", "/data/b"])


def test_bad_part_lists_are_refused():
  a = _part("a", 2, [[0, 1, 0]], {"title": ["t0", "t1"]})
  with pytest.raises(DatasetError, match=r"at least two parts, got 1"):
    merge.merge([a], ["A"], "A")
  with pytest.raises(DatasetError, match=r"one distinct name each"):
    merge.merge([a, a], ["A", "A"], "A+A")
  with pytest.raises(DatasetError, match=r"needs a 'name' and a 'source'"):
    datasets.load("merged", parts=[{"source": "synthetic"},
                                   {"name": "b", "source": "synthetic"}])
  with pytest.raises(DatasetError, match=r"takes parts= and name= only, "
                     r"got \['kcore'\]"):
    datasets.load("merged", parts=[], kcore=5)


def test_the_merged_source_stages_and_names_itself(tmp_path):
  parts = [{"name": n, "source": "synthetic", "num_users": 20,
            "num_items": 12, "num_clusters": 3, "seed": s}
           for n, s in (("a", 1), ("b", 2))]
  ds = stage.prepare("merged", tmp_path / "m", parts=parts)
  one = datasets.load("synthetic", num_users=20, num_items=12,
                      num_clusters=3, seed=1)
  assert ds.name == "a+b"
  assert ds.num_items == 2 * one.num_items
  assert datasets.dataset_name("merged", parts=parts) == "merged_a+b"
  again = stage.prepare("merged", tmp_path / "m", parts=parts)
  assert again.fingerprint() == ds.fingerprint()
