"""Tests for recjax.datasets.preprocessing."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax.datasets import canonical
from recjax.datasets import preprocessing
from recjax.errors import DatasetError


def _inter(rows, ts=True, ratings=None):
  users = np.asarray([r[0] for r in rows], dtype=str)
  items = np.asarray([r[1] for r in rows], dtype=str)
  times = np.asarray([r[2] for r in rows], dtype=np.int64) if ts else None
  rat = None if ratings is None else np.asarray(ratings, np.float32)
  return preprocessing.Interactions(users, items, times, rat, "test.inter")


def _table(n):
  return canonical.ItemTable([str(i) for i in range(n)],
                             {"title": [f"t{i}" for i in range(n)]})


def test_orders_by_timestamp_stably():
  rows = [("u", "0", 5), ("u", "1", 1), ("u", "2", 5), ("u", "3", 0)]
  ds = preprocessing.preprocess("t", _inter(rows), _table(4),
                                preprocessing.PreprocessConfig())
  # Sorted by time; the tie at 5 keeps file order (0 before 2).
  assert [ds.items.original_ids[i] for i in ds.sequence(0)] == ["3", "1",
                                                                 "0", "2"]


def test_file_order_requires_monotonic_timestamps():
  rows = [("u", "0", 5), ("u", "1", 1), ("u", "2", 6)]
  with pytest.raises(DatasetError, match="test.inter: timestamps of user 'u'"):
    preprocessing.preprocess("t", _inter(rows), _table(3),
                             preprocessing.PreprocessConfig(order="file"))


def test_unknown_items_error_and_drop():
  rows = [("u", "0", 1), ("u", "9", 2), ("u", "1", 3), ("u", "2", 4)]
  with pytest.raises(DatasetError, match="refers to item '9'.*unknown_items"):
    preprocessing.preprocess("t", _inter(rows), _table(3),
                             preprocessing.PreprocessConfig())
  ds = preprocessing.preprocess("t", _inter(rows), _table(3),
                                preprocessing.PreprocessConfig(),
                                unknown_items="drop")
  assert ds.num_interactions == 3
  assert ds.metadata["removed"]["unknown_item"] == 1


def test_rating_threshold_and_dedupe():
  rows = [("u", "0", 1), ("u", "0", 2), ("u", "1", 3), ("u", "2", 4),
          ("u", "2", 5)]
  cfg = preprocessing.PreprocessConfig(min_rating=3, dedupe_consecutive=True,
                                       min_history=2,
                                       drop_unused_items=False)
  ds = preprocessing.preprocess("t", _inter(rows, ratings=[5, 5, 1, 4, 4]),
                                _table(3), cfg)
  assert [ds.items.original_ids[i] for i in ds.sequence(0)] == ["0", "2"]
  assert ds.metadata["removed"]["below_min_rating"] == 1
  assert ds.metadata["removed"]["consecutive_repeat"] == 2
  assert ds.num_items == 3  # item "1" kept although unused


def test_short_users_dropped_and_counted():
  rows = [("a", "0", 1), ("a", "1", 2), ("a", "2", 3), ("b", "0", 1),
          ("b", "1", 2)]
  ds = preprocessing.preprocess("t", _inter(rows), _table(3),
                                preprocessing.PreprocessConfig())
  assert ds.user_ids == ["a"]
  assert ds.metadata["removed"]["short_history_users"] == 1


def test_everything_vanishes_error():
  rows = [("a", "0", 1), ("a", "1", 2), ("a", "2", 3)]
  with pytest.raises(DatasetError, match="no user is left.*Lower kcore"):
    preprocessing.preprocess("t", _inter(rows), _table(3),
                             preprocessing.PreprocessConfig(kcore=5))


def test_min_rating_without_ratings():
  rows = [("a", "0", 1), ("a", "1", 2), ("a", "2", 3)]
  with pytest.raises(DatasetError, match=r"needs ratings, and this source "
                     r"has none. Set min_rating=None"):
    preprocessing.preprocess("t", _inter(rows), _table(3),
                             preprocessing.PreprocessConfig(min_rating=4))


def test_numeric_user_ids_sorted_numerically():
  rows = [(u, str(i), i) for u in ("10", "9", "100") for i in range(3)]
  ds = preprocessing.preprocess("t", _inter(rows), _table(3),
                                preprocessing.PreprocessConfig())
  assert ds.user_ids == ["9", "10", "100"]


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 15)),
                           min_size=1, max_size=200), st.integers(1, 4))
def test_kcore_is_a_fixed_point(pairs, k):
  rows = [(str(u), str(i), t) for t, (u, i) in enumerate(pairs)]
  cfg = preprocessing.PreprocessConfig(kcore=k, min_history=1)
  # The largest subset where every user and item keeps >= k rows: brute
  # force iteration.
  keep = set(range(len(rows)))
  while True:
    uc, ic = {}, {}
    for r in keep:
      uc[pairs[r][0]] = uc.get(pairs[r][0], 0) + 1
      ic[pairs[r][1]] = ic.get(pairs[r][1], 0) + 1
    new = {r for r in keep if uc[pairs[r][0]] >= k and ic[pairs[r][1]] >= k}
    if new == keep:
      break
    keep = new
  try:
    ds = preprocessing.preprocess("t", _inter(rows), _table(16), cfg)
  except DatasetError:
    # Only when nothing survives the k-core.
    assert not keep, f"{len(keep)} rows form a {k}-core, but it raised"
    return
  # Every remaining user and item has at least k interactions...
  assert ds.lengths.min() >= k
  assert ds.item_counts().min() >= k
  # ...and the result is exactly that largest subset.
  assert ds.num_interactions == len(keep)
