"""Tests for recjax.quantizers.kmeans against brute-force numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from recjax.quantizers import kmeans as km


def _blobs(n_per: int = 40, k: int = 5, d: int = 3, seed: int = 0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(k, d)) * 10
  x = np.concatenate([c + rng.normal(size=(n_per, d)) * 0.3 for c in centers])
  return x.astype(np.float32), centers


def test_assign_matches_brute_force():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 7)).astype(np.float32)
  c = rng.normal(size=(13, 7)).astype(np.float32)
  brute = ((x[:, None, :] - c[None]) ** 2).sum(-1)
  np.testing.assert_allclose(km.sq_distances(x, c), brute, rtol=1e-5,
                             atol=1e-4)
  np.testing.assert_array_equal(km.assign(x, c), brute.argmin(1))


def test_kmeans_reaches_a_lloyd_fixed_point():
  x, _ = _blobs()
  cents, labels = km.kmeans(x, 5, jax.random.key(0), num_iters=30)
  cents, labels = np.asarray(cents), np.asarray(labels)
  brute = ((x[:, None, :] - cents[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(labels, brute.argmin(1))
  for j in range(5):
    np.testing.assert_allclose(cents[j], x[labels == j].mean(0), atol=1e-4)
  # Well-separated blobs are recovered exactly (40 points per cluster).
  assert sorted(np.bincount(labels, minlength=5)) == [40] * 5


def test_kmeans_is_deterministic_per_key():
  x, _ = _blobs(seed=2)
  a = km.kmeans(x, 4, jax.random.key(3))
  b = km.kmeans(x, 4, jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
  np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))


def test_empty_clusters_are_reseeded_with_farthest_points():
  x = np.array([[0.0], [0.1], [10.0], [10.2]], np.float32)
  cents = np.array([[0.0], [5.0e3], [10.0]], np.float32)  # code 1 is empty
  new, labels = km.lloyd_step(jnp.asarray(x), jnp.asarray(cents))
  assert np.bincount(np.asarray(labels), minlength=3)[1] == 0
  # Farthest point from its centroid is 10.2 (distance 0.2 to 10.0).
  np.testing.assert_allclose(np.asarray(new)[1], [10.2])
  np.testing.assert_allclose(np.asarray(new)[0], [0.05], atol=1e-6)


def test_kmeans_with_more_clusters_than_distinct_points():
  x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
  cents, labels = km.kmeans(x, 8, jax.random.key(0), num_iters=5)
  assert np.isfinite(np.asarray(cents)).all()
  assert len(np.unique(np.asarray(labels))) == 3


def test_sinkhorn_plan_has_uniform_marginals_and_balances():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  c = np.stack([rng.normal(size=4) * 0.1 for _ in range(7)] +
               [np.full(4, 3.0)]).astype(np.float32)  # one far code
  plan = np.exp(np.asarray(km.sinkhorn_log_plan(
      km.sq_distances(x, c), 0.05, 300)))
  np.testing.assert_allclose(plan.sum(1), 1 / 400, rtol=1e-3)
  np.testing.assert_allclose(plan.sum(0), 1 / 8, rtol=1e-3)
  balanced = np.bincount(np.asarray(km.balanced_assign(x, c, 0.05, 300)),
                         minlength=8)
  nearest = np.bincount(np.asarray(km.assign(x, c)), minlength=8)
  assert balanced.max() - balanced.min() < nearest.max() - nearest.min()
  assert balanced[-1] > nearest[-1]
