"""Tests for recjax.models.popularity: lists against brute force."""

import math

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax import metrics
from recjax.datasets import canonical
from recjax.models import popularity


def _ds(seqs, num_items):
  items = canonical.ItemTable([str(i) for i in range(num_items)], {})
  return canonical.from_sequences("t", items, [f"u{i}" for i in
                                               range(len(seqs))], seqs)


def _brute_force(seqs, num_items, k, exclude_seen):
  counts = np.zeros(num_items, int)
  for s in seqs:
    for item in s[:-2]:  # training items: everything before validation
      counts[item] += 1
  ranked = sorted(range(num_items), key=lambda i: (-counts[i], i))
  recall = ndcg = 0.0
  for s in seqs:
    history = s[:-1]
    lst = [i for i in ranked if not (exclude_seen and i in history)][:k]
    if s[-1] in lst:
      rank = lst.index(s[-1]) + 1
      recall += 1
      ndcg += 1 / math.log2(rank + 1)
  return recall / len(seqs), ndcg / len(seqs)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    st.lists(st.lists(st.integers(0, 11), min_size=3, max_size=15),
             min_size=1, max_size=10),
    st.booleans())
def test_popularity_matches_brute_force(seqs, exclude_seen):
  out = popularity.evaluate(_ds(seqs, 12), k=5)
  prefix = "test_excl/" if exclude_seen else "test/"
  got = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
  recall, ndcg = _brute_force(seqs, 12, 5, exclude_seen)
  assert math.isclose(got["recall@5"], recall, abs_tol=1e-9)
  assert math.isclose(got["ndcg@5"], ndcg, abs_tol=1e-9)
  assert got["num_examples"] == len(seqs)


def test_excluding_seen_items_changes_the_list():
  # Training counts: item 0 x4, item 2 x2, item 3 x1, so the list is
  # 0, 2, 3, 1, 4: test items 1 and 4 at ranks 4 and 5, item 6 missing.
  # With each history removed they move up to ranks 2, 2 and 4.
  seqs = [[0, 0, 2, 0, 1], [0, 3, 2, 4], [0, 2, 5, 6]]
  out = popularity.evaluate(_ds(seqs, 7), k=5)
  assert math.isclose(out["test/recall@5"], 2 / 3)
  assert math.isclose(out["test/ndcg@5"],
                      (1 / math.log2(5) + 1 / math.log2(6)) / 3)
  assert math.isclose(out["test_excl/recall@5"], 1.0)
  assert math.isclose(out["test_excl/ndcg@5"],
                      (2 / math.log2(3) + 1 / math.log2(5)) / 3)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    st.lists(st.integers(0, 20), min_size=1, max_size=60),
    st.lists(st.lists(st.integers(0, 20), max_size=6), min_size=1,
             max_size=5), st.integers(1, 21))
def test_lists_match_the_metrics_baseline(counts_seq, excluded, k):
  counts = np.bincount(counts_seq, minlength=21)
  model = popularity.PopularityModel(counts)
  got = model.recommend([np.zeros(1, np.int64)] * len(excluded), k,
                        exclude=[np.asarray(e, np.int64) for e in excluded])
  want = metrics.popularity_baseline(counts, k=k, exclude=excluded)
  np.testing.assert_array_equal(got, want)


def test_state_round_trip_and_errors(tmp_path):
  model = popularity.PopularityModel(np.array([3, 0, 5, 5]))
  model.save(tmp_path / "m.npz")
  with np.load(tmp_path / "m.npz") as f:
    again = popularity.PopularityModel.from_state(dict(f))
  hist = [np.array([1])]
  np.testing.assert_array_equal(again.recommend(hist, 4),
                                [[2, 3, 0, 1]])
  with pytest.raises(ValueError, match=r"non-empty \[num_items\] array"):
    popularity.PopularityModel(np.zeros((2, 2)))
  with pytest.raises(ValueError, match=r"k=5 must be in \[1, 4\]"):
    model.recommend(hist, 5)
  with pytest.raises(ValueError, match="exclude has 2 rows for 1 "
                     "histories"):
    model.recommend(hist, 2, exclude=[[0], [1]])
