"""Tests for recjax.quickstart (the end-to-end job itself is `make
quickstart`; its stages are tested in their own modules)."""

import math

import hypothesis
import hypothesis.strategies as st
import numpy as np

from recjax import quickstart
from recjax.datasets import canonical


def _ds(seqs, num_items):
  items = canonical.ItemTable([str(i) for i in range(num_items)], {})
  return canonical.from_sequences("t", items, [f"u{i}" for i in
                                               range(len(seqs))], seqs)


def _brute_force(seqs, num_items, k, exclude_seen, max_history):
  counts = np.zeros(num_items, int)
  for s in seqs:
    for item in s[:-2]:  # training items: everything before validation
      counts[item] += 1
  ranked = sorted(range(num_items), key=lambda i: (-counts[i], i))
  recall = ndcg = 0.0
  for s in seqs:
    history = s[:-1] if max_history is None else s[:-1][-max_history:]
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
    st.booleans(), st.one_of(st.none(), st.integers(1, 5)))
def test_popularity_matches_brute_force(seqs, exclude_seen, max_history):
  got = quickstart.popularity_metrics(_ds(seqs, 12), k=5,
                                      exclude_seen=exclude_seen,
                                      max_history=max_history)
  recall, ndcg = _brute_force(seqs, 12, 5, exclude_seen, max_history)
  assert math.isclose(got["recall@5"], recall, abs_tol=1e-9)
  assert math.isclose(got["ndcg@5"], ndcg, abs_tol=1e-9)
  assert got["num_examples"] == len(seqs)


def test_excluding_seen_items_changes_the_list():
  # Training counts: item 0 x4, item 2 x2, item 3 x1, so the list is
  # 0, 2, 3, 1, 4: test items 1 and 4 at ranks 4 and 5, item 6 missing.
  # With each history removed they move up to ranks 2, 2 and 4.
  seqs = [[0, 0, 2, 0, 1], [0, 3, 2, 4], [0, 2, 5, 6]]
  with_seen = quickstart.popularity_metrics(_ds(seqs, 7), k=5)
  without = quickstart.popularity_metrics(_ds(seqs, 7), k=5,
                                          exclude_seen=True)
  assert math.isclose(with_seen["recall@5"], 2 / 3)
  assert math.isclose(with_seen["ndcg@5"],
                      (1 / math.log2(5) + 1 / math.log2(6)) / 3)
  assert math.isclose(without["recall@5"], 1.0)
  assert math.isclose(without["ndcg@5"],
                      (2 / math.log2(3) + 1 / math.log2(5)) / 3)


def test_table_lists_every_model_and_metric():
  text = quickstart._table({"TIGER": {"recall@5": 0.1, "recall@10": 0.2,
                                      "ndcg@5": 0.05, "ndcg@10": 0.07},
                            "popularity": {"recall@5": 0.01}})
  lines = text.splitlines()
  assert lines[0].split() == ["model", "recall@5", "recall@10", "ndcg@5",
                              "ndcg@10"]
  assert lines[1].split() == ["TIGER", "0.1000", "0.2000", "0.0500",
                              "0.0700"]
  assert lines[2].split()[:2] == ["popularity", "0.0100"]
  assert lines[2].split()[2] == "nan"
