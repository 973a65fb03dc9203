"""Tests for recjax.datasets.splits."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax.datasets import canonical
from recjax.datasets import splits
from recjax.errors import DatasetError


def _ds(seqs):
  n = max(max(s) for s in seqs) + 1
  items = canonical.ItemTable([str(i) for i in range(n)], {})
  return canonical.from_sequences("t", items, [f"u{i}" for i in
                                               range(len(seqs))], seqs)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=40),
             min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(1, 25)))
def test_leave_one_out_matches_brute_force(seqs, cap):
  out = splits.leave_one_out(_ds(seqs), max_history=cap)
  for u, s in enumerate(seqs):
    n = len(s)
    np.testing.assert_array_equal(out["train"].history(u), s[:n - 3])
    assert out["train"].targets[u] == s[n - 3]
    for name, k in (("validation", n - 2), ("test", n - 1)):
      hist = s[:k] if cap is None else s[:k][-cap:]
      np.testing.assert_array_equal(out[name].history(u), hist)
      assert out[name].targets[u] == s[k]
    assert out["test"].users[u] == u


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(st.lists(st.lists(st.integers(0, 30), min_size=3,
                                    max_size=40), min_size=1, max_size=8))
def test_train_item_counts_are_each_users_all_but_last_two(seqs):
  train = splits.leave_one_out(_ds(seqs))["train"]
  want = np.zeros(40, np.int64)
  for s in seqs:
    for item in s[:-2]:
      want[item] += 1
  np.testing.assert_array_equal(train.item_counts(40), want)


def test_examples_iterator():
  out = splits.leave_one_out(_ds([[1, 2, 3, 4]]))
  ex = list(out["test"].examples())
  assert ex[0]["target"] == 4 and list(ex[0]["history"]) == [1, 2, 3]


def test_short_history_error():
  with pytest.raises(DatasetError, match="user 'u1' has 2 interactions"):
    splits.leave_one_out(_ds([[1, 2, 3], [1, 2]]))


def test_bad_cap():
  with pytest.raises(DatasetError,
                     match=r"max_history must be >= 1 or None, got 0"):
    splits.leave_one_out(_ds([[1, 2, 3]]), max_history=0)
