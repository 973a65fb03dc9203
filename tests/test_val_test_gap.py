"""Tests of `benchmarks/val_test_gap.py`'s grouping (no trained cell)."""

import bench_scripts
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax import metrics as metrics_lib
from recjax.datasets import canonical

gap = bench_scripts.load("val_test_gap")


def _dataset(seqs):
  num_items = max(max(s) for s in seqs) + 1
  items = canonical.ItemTable([str(i) for i in range(num_items)], {})
  return canonical.from_sequences(
      "t", items, [f"u{i}" for i in range(len(seqs))], seqs)


def test_seen_transitions_by_hand():
  # Training sequences (all but the last two items): [0, 1, 2], [3, 4],
  # [2, 3]; their transitions: 0>1, 1>2, 3>4, 2>3.
  seqs = [[0, 1, 2, 3, 4], [3, 4, 1, 2], [2, 3, 0, 1]]
  ds = _dataset(seqs)
  # Validation: 2>3 (seen), 4>1 (unseen), 3>0 (unseen).
  np.testing.assert_array_equal(gap.seen_transitions(ds, "validation"),
                                [True, False, False])
  # Test: 3>4 (seen), 1>2 (seen), 0>1 (seen).
  np.testing.assert_array_equal(gap.seen_transitions(ds, "test"),
                                [True, True, True])


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(st.lists(st.lists(st.integers(0, 6), min_size=3,
                                    max_size=9), min_size=1, max_size=8))
def test_seen_transitions_match_brute_force(seqs):
  ds = _dataset(seqs)
  train = [s[:-2] for s in seqs]
  for split, cut in (("validation", 2), ("test", 1)):
    want = []
    for s in seqs:
      last, target = s[-cut - 1], s[-cut]
      want.append(any(t[i] == last and t[i + 1] == target
                      for t in train for i in range(len(t) - 1)))
    np.testing.assert_array_equal(gap.seen_transitions(ds, split), want)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(st.integers(0, 2**31 - 1))
def test_group_ndcg_agrees_with_ranking_metrics(seed):
  rng = np.random.default_rng(seed)
  users, width, num_items = 40, 12, 30
  items = np.stack([rng.choice(num_items, width, replace=False)
                    for _ in range(users)])
  items[rng.random(items.shape) < 0.1] = -1
  targets = rng.integers(0, num_items, users)
  seen = rng.random(users) < 0.4
  got = gap.group_ndcg(items, targets, seen)
  assert got["ndcg"] == pytest.approx(
      metrics_lib.ranking_metrics(items, targets, ks=(10,))["ndcg@10"])
  for flag, key in ((True, "ndcg_seen"), (False, "ndcg_unseen")):
    mask = seen == flag
    if mask.any():
      assert got[key] == pytest.approx(metrics_lib.ranking_metrics(
          items[mask], targets[mask], ks=(10,))["ndcg@10"])
    else:
      assert np.isnan(got[key])
  assert got["seen_share"] == pytest.approx(seen.mean())
  if got["ndcg"] > 0:
    assert got["seen_ndcg_share"] == pytest.approx(
        seen.mean() * np.nan_to_num(got["ndcg_seen"]) / got["ndcg"])


def test_mix_only_ratio():
  val = {"seen_share": 0.2, "ndcg_seen": 0.2, "ndcg_unseen": 0.05,
         "ndcg": 0.2 * 0.2 + 0.8 * 0.05}
  same = dict(val)
  assert gap.mix_only_ratio(val, same) == pytest.approx(1.0)
  fewer = dict(val, seen_share=0.1)
  assert gap.mix_only_ratio(val, fewer) == pytest.approx(
      (0.1 * 0.2 + 0.9 * 0.05) / val["ndcg"])


def test_bad_input():
  with pytest.raises(ValueError, match=r"3 lists, 3 targets and 2 flags must "
                                     r"be one per user"):
    gap.group_ndcg(np.zeros((3, 10), int), np.zeros(3, int),
                   np.zeros(2, bool))
  with pytest.raises(SystemExit, match="METHOD:SCHEDULE:SEED"):
    gap.main(["--cells", "sasrec_recbole:cpu"])
  with pytest.raises(SystemExit, match=r"--cells entry 'gru4rec:cpu:0': "
                                      r"unknown method; choose from"):
    gap.main(["--cells", "gru4rec:cpu:0"])
