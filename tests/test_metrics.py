"""Tests for recjax.metrics (exact values against brute force)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from recjax import metrics


def _brute_force(preds, targets, ks, num_items):
  n = len(targets)
  out = {}
  for k in ks:
    if k > len(preds[0]):
      continue
    rec = ndcg = 0.0
    for row, t in zip(preds, targets):
      for pos, item in enumerate(row[:k]):
        if item == t:
          rec += 1
          ndcg += 1 / math.log2(pos + 2)
          break
    out[f"recall@{k}"] = rec / n
    out[f"ndcg@{k}"] = ndcg / n
    if num_items is not None:
      seen = {x for row in preds for x in row[:k] if x != -1}
      out[f"coverage@{k}"] = len(seen) / num_items
  mrr = 0.0
  for row, t in zip(preds, targets):
    if t in row:
      mrr += 1 / (row.index(t) + 1)
  out["mrr"] = mrr / n
  flat = [x for row in preds for x in row]
  out["invalid_rate"] = sum(x == -1 for x in flat) / len(flat)
  out["num_examples"] = float(n)
  return out


@st.composite
def _cases(draw):
  num_items = draw(st.integers(1, 30))
  n = draw(st.integers(1, 12))
  width = draw(st.integers(1, 25))
  preds = [draw(st.lists(st.integers(-1, num_items - 1), min_size=width,
                         max_size=width)) for _ in range(n)]
  targets = draw(st.lists(st.integers(0, num_items - 1), min_size=n,
                          max_size=n))
  return preds, targets, num_items


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_ranking_metrics_match_brute_force(case):
  preds, targets, num_items = case
  ks = (1, 5, 10, 20)
  got = metrics.ranking_metrics(np.array(preds), np.array(targets), ks,
                                num_items=num_items)
  want = _brute_force(preds, targets, ks, num_items)
  assert set(got) == set(want)
  for key, value in want.items():
    assert got[key] == pytest.approx(value, abs=1e-12), key


def test_known_values():
  preds = np.array([[3, 1, 2], [0, -1, -1], [5, 6, 7]])
  targets = np.array([1, 0, 9])
  got = metrics.ranking_metrics(preds, targets, ks=(1, 3, 5), num_items=10)
  assert got["recall@1"] == pytest.approx(1 / 3)
  assert got["recall@3"] == pytest.approx(2 / 3)
  assert got["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1) / 3)
  assert got["mrr"] == pytest.approx((1 / 2 + 1) / 3)
  assert got["invalid_rate"] == pytest.approx(2 / 9)
  assert got["coverage@1"] == pytest.approx(3 / 10)
  assert got["coverage@3"] == pytest.approx(7 / 10)
  assert "recall@5" not in got  # wider than the ranked lists


def test_duplicate_prediction_counts_first_position():
  got = metrics.ranking_metrics(np.array([[4, 2, 2]]), np.array([2]),
                                ks=(1, 3))
  assert got["mrr"] == pytest.approx(0.5)
  assert got["ndcg@3"] == pytest.approx(1 / math.log2(3))


def test_target_ranks():
  ranks = metrics.target_ranks(np.array([[1, 2], [2, 1], [3, 3]]),
                               np.array([2, 2, 1]))
  np.testing.assert_array_equal(ranks, [2, 1, 0])


@pytest.mark.parametrize("preds,targets,num_items,match", [
    (np.zeros((3,), np.int32), np.zeros((3,), np.int32), None, "K]"),
    (np.zeros((3, 2), np.int32), np.zeros((2,), np.int32), None, "shape"),
    (np.zeros((3, 2), np.float32), np.zeros((3,), np.int32), None, "integer"),
    (np.full((1, 2), -2), np.zeros((1,), np.int32), None, "-1"),
    (np.full((1, 2), 5), np.zeros((1,), np.int32), 5, "num_items=5"),
    (np.zeros((1, 2), np.int32), np.full((1,), -1), None, "targets"),
])
def test_bad_input(preds, targets, num_items, match):
  with pytest.raises(ValueError, match=match):
    metrics.ranking_metrics(preds, targets, num_items=num_items)


def test_pad_ranked_lists():
  out = metrics.pad_ranked_lists([[1, 2, 3], [4], []])
  np.testing.assert_array_equal(out, [[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
  np.testing.assert_array_equal(metrics.pad_ranked_lists([[1, 2, 3]], 2),
                                [[1, 2]])


def test_item_counts():
  np.testing.assert_array_equal(metrics.item_counts([0, 2, 2], 4),
                                [1, 0, 2, 0])
  with pytest.raises(ValueError, match=r"item indices must lie in \[0, 4\)"):
    metrics.item_counts([4], 4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=15),
       st.integers(1, 20),
       st.lists(st.lists(st.integers(0, 14), max_size=8), max_size=5))
def test_popularity_baseline_matches_brute_force(counts, k, seen):
  counts = np.array(counts)
  order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
  top = metrics.popularity_baseline(counts, k)
  want = (order + [-1] * k)[:k]
  np.testing.assert_array_equal(top, want)
  seen = [[s for s in row if s < len(counts)] for row in seen]
  got = metrics.popularity_baseline(counts, k, exclude=seen)
  assert got.shape == (len(seen), k)
  for row, s in zip(got, seen):
    want = ([i for i in order if i not in s] + [-1] * k)[:k]
    np.testing.assert_array_equal(row, want)


def test_module_imports_no_tensorflow():
  import subprocess
  import sys
  code = ("import sys, recjax.metrics; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)
