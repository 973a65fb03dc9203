"""Tests for recjax.quantizers.diagnostics on hand-made codes."""

from __future__ import annotations

import json
import math

import numpy as np

from recjax.quantizers import diagnostics as dg

CODES = np.array([[0, 0], [0, 1], [0, 1], [1, 2], [3, 2], [3, 2]])


def test_usage_and_perplexity_by_hand():
  assert dg.codebook_usage(CODES, (4, 4)) == [0.75, 0.75]
  # Level 0: counts 3, 1, 2 of 6; level 1: 1, 2, 3 of 6.
  p = np.array([3, 1, 2]) / 6
  want = math.exp(-np.sum(p * np.log(p)))
  np.testing.assert_allclose(dg.perplexity(CODES, (4, 4)), [want, want])
  uniform = np.arange(8)[:, None]
  np.testing.assert_allclose(dg.perplexity(uniform, (8,)), [8.0])
  assert dg.perplexity(np.zeros((5, 1), int), (8,)) == [1.0]


def test_collisions_and_prefix_sharing_by_hand():
  stats = dg.collision_stats(CODES)
  assert stats["num_unique"] == 4
  np.testing.assert_allclose(stats["collision_rate"], 2 / 6)
  np.testing.assert_allclose(stats["colliding_items"], 4 / 6)
  assert stats["max_shared"] == 2
  assert dg.max_prefix_sharing(CODES) == [3, 2]


def test_first_code_lift_by_hand():
  first = np.array([[0], [0], [1], [1]])
  seqs = [np.array([0, 1, 2]), np.array([2, 3, 3]), np.array([1])]
  # Pairs (a != b): (0,1) same, (1,2) diff, (2,3) same -> 2/3.
  # Interaction shares of first codes: code 0: 3/7, code 1: 4/7.
  out = dg.first_code_lift(first, seqs)
  assert out["num_pairs"] == 3
  np.testing.assert_allclose(out["consecutive_same_first_code"], 2 / 3)
  rand = (3 / 7) ** 2 + (4 / 7) ** 2
  np.testing.assert_allclose(out["random_same_first_code"], rand)
  np.testing.assert_allclose(out["lift"], (2 / 3) / rand)


def test_report_and_plot(tmp_path):
  final = np.concatenate([CODES, [[0], [0], [1], [0], [0], [1]]], axis=1)
  rep = dg.build_report(CODES, final, (4, 4), [np.array([0, 1])],
                        {"reconstruction_mse": 0.5})
  json.dumps(rep)
  assert rep["final_unique"] and rep["collision_level_size"] == 2
  assert rep["codebook_usage"] == [0.75, 0.75]
  assert "collision rate before de-dup: 33.33%" in dg.format_report(rep)
  dg.plot_usage(CODES, (4, 4), tmp_path / "u.png")
  assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"


def _brute_ndcg(codes, pairs, k, rng, draws=4000):
  """Expected NDCG under random tie-breaking, by sampling tie orders."""
  total = 0.0
  for a, b in pairs:
    shared = (codes == codes[a]).sum(1).astype(float)
    shared[a] = -1.0
    hits = 0.0
    for _ in range(draws):
      order = np.lexsort((rng.random(len(codes)), -shared))
      rank = int(np.flatnonzero(order == b)[0])
      hits += 1.0 / math.log2(rank + 2) if rank < k else 0.0
    total += hits / draws
  return total / len(pairs)


def test_shared_code_ndcg_by_hand():
  codes = np.array([[0, 0], [0, 1], [1, 1], [2, 2], [0, 0]])
  # History [.., a=0, b=4, c]: item 4 shares both codes with 0, so rank 0.
  out = dg.shared_code_ndcg(codes, [np.array([3, 0, 4, 2])], k=10)
  assert out == {"ndcg": 1.0, "k": 10, "num_users": 1}
  # a=3 shares nothing with 1, 2 and 4 (and 0): b=1 ties with 3 others,
  # expected rank 1.5.
  out = dg.shared_code_ndcg(codes, [np.array([3, 1, 0]), np.array([5])])
  np.testing.assert_allclose(out["ndcg"], 1 / math.log2(3.5))
  assert out["num_users"] == 1
  # Below the cut-off nothing counts.
  out = dg.shared_code_ndcg(codes, [np.array([3, 1, 0])], k=1)
  assert out["ndcg"] == 0.0


def test_shared_code_ndcg_near_brute_force_and_seeded():
  rng = np.random.default_rng(0)
  codes = rng.integers(0, 3, size=(30, 4))
  seqs = [rng.integers(0, 30, size=rng.integers(1, 7)) for _ in range(40)]
  pairs = [(s[-3], s[-2]) for s in seqs if len(s) >= 3]
  got = dg.shared_code_ndcg(codes, seqs, k=5)
  # The probe ranks ties at their expected position, a close (not exact)
  # stand-in for the expected NDCG of random tie-breaking.
  want = _brute_ndcg(codes, pairs, 5, rng, draws=300)
  assert abs(got["ndcg"] - want) < 0.05, (got, want)
  a = dg.shared_code_ndcg(codes, seqs, max_users=5, seed=1)
  b = dg.shared_code_ndcg(codes, seqs, max_users=5, seed=1)
  assert a == b and a["num_users"] == 5
