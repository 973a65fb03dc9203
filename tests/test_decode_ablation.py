"""Tests of `benchmarks/decode_ablation.py`'s re-ranking and prior.

Decoding a trained cell needs the real data and a trained model; the
decode itself is `recjax.eval.evaluate` (tested in `test_train.py`). These
tests cover what the script adds: the popularity prior and the re-ranking.
"""

import bench_scripts
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax.datasets import canonical

ablation = bench_scripts.load("decode_ablation")


def test_prior_counts_training_items_add_one():
  seqs = [[0, 1, 2, 3, 4], [1, 1, 2, 5]]  # training: [0, 1, 2], [1, 1]
  items = canonical.ItemTable([str(i) for i in range(7)], {})
  ds = canonical.from_sequences("t", items, ["a", "b"], seqs)
  got = np.exp(ablation.popularity_log_prior(ds))
  counts = np.array([1, 3, 1, 0, 0, 0, 0]) + 1.0
  np.testing.assert_allclose(got, counts / counts.sum())


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(st.integers(0, 2**31 - 1), st.integers(1, 8),
                  st.sampled_from([0.0, 0.3, 1.0, -0.5]))
def test_rerank_matches_brute_force(seed, k, alpha):
  rng = np.random.default_rng(seed)
  users, beams, num_items = 4, 8, 30
  items = np.stack([rng.choice(num_items, beams, replace=False)
                    for _ in range(users)])
  items[rng.random(items.shape) < 0.2] = -1
  scores = np.sort(rng.normal(size=items.shape), axis=1)[:, ::-1]
  scores = np.where(items >= 0, scores, -np.inf)
  prior = np.log(rng.dirichlet(np.ones(num_items)))
  got = ablation.rerank(items, scores, prior, alpha, k)
  for u in range(users):
    valid = [(scores[u, j] - alpha * prior[items[u, j]], -j, items[u, j])
             for j in range(beams) if items[u, j] >= 0]
    want = [i for *_, i in sorted(valid, reverse=True)]
    want = (want + [-1] * beams)[:k]
    assert got[u].tolist() == want


def test_rerank_alpha_zero_keeps_the_beam_order():
  items = np.array([[3, 1, -1, 2]])
  scores = np.array([[-0.1, -0.5, -np.inf, -0.9]])
  got = ablation.rerank(items, scores, np.zeros(4), 0.0, 4)
  assert got.tolist() == [[3, 1, 2, -1]]
  # A strong enough prior correction promotes the rare item 2.
  prior = np.log(np.array([0.1, 0.3, 0.01, 0.59]))
  assert ablation.rerank(items, scores, prior, 1.0, 1).tolist() == [[2]]


def test_rerank_errors_name_the_fix():
  with pytest.raises(ValueError, match=r"k=5 must be in \[1, 4\]"):
    ablation.rerank(np.zeros((1, 4), int), np.zeros((1, 4)), np.zeros(1),
                    0.0, 5)
  with pytest.raises(ValueError, match="same \\[users, beams\\] shape"):
    ablation.rerank(np.zeros((1, 4), int), np.zeros((1, 3)), np.zeros(1),
                    0.0, 2)


def test_k_above_the_smallest_beam_is_refused():
  with pytest.raises(SystemExit, match="--k 30 needs every --beams"):
    ablation.main(["--beams", "20,50", "--k", "30"])


def test_transition_bonus_reorders_and_needs_its_scores():
  items = np.array([[3, 1, 2, -1]])
  scores = np.array([[-1.0, -1.5, -3.0, -np.inf]])
  prior = np.zeros(5)
  bonus = np.array([[0.0, 4.0, 0.0, 0.0]])
  # log p: 3 > 1; with beta = 1, 1 gets log(5) = 1.61 > the 0.5 gap.
  np.testing.assert_array_equal(
      ablation.rerank(items, scores, prior, 0.0, 3, bonus, 1.0), [[1, 3, 2]])
  np.testing.assert_array_equal(
      ablation.rerank(items, scores, prior, 0.0, 3, bonus, 0.0), [[3, 1, 2]])
  with pytest.raises(ValueError, match=r"beta=1\.0 needs transitions of "
                                       r"shape \(1, 4\)"):
    ablation.rerank(items, scores, prior, 0.0, 3, None, 1.0)
