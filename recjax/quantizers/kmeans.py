"""K-means, nearest-centroid assignment and Sinkhorn balancing in JAX.

These are the building blocks of every quantizer: RQ-VAE initialises its
codebooks with `kmeans`, RQ-KMeans and PQ are `kmeans` applied to residuals
and sub-vectors, and LETTER / collision handling use `sinkhorn` to spread
items evenly over codes.

Everything is deterministic given the PRNG key: k-means++ seeding, Lloyd
iterations in a `lax.fori_loop`, and empty clusters re-seeded with the
points farthest from their centroids (not at random).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def sq_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
  """Squared Euclidean distances `[n, k]` between rows of x and centroids."""
  xx = jnp.sum(x * x, axis=-1, keepdims=True)
  cc = jnp.sum(centroids * centroids, axis=-1)
  xc = jnp.dot(x, centroids.T, precision=_HIGHEST)
  return jnp.maximum(xx - 2.0 * xc + cc[None, :], 0.0)


def assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
  """int32 `[n]` index of each row's nearest centroid (lowest index on ties)."""
  return jnp.argmin(sq_distances(x, centroids), axis=-1).astype(jnp.int32)


def sinkhorn_log_plan(cost: jax.Array, epsilon: float = 0.01,
                      num_iters: int = 200) -> jax.Array:
  """Log of an entropic transport plan with uniform marginals.

  Rows (items) each carry mass 1/n and columns (codes) receive 1/k, so the
  row-wise argmax of the plan spreads items nearly evenly over codes. The
  cost is standardised first, so `epsilon` is scale-free.

  Args:
    cost: `[n, k]` assignment costs (e.g. squared distances).
    epsilon: entropic regularisation (smaller: closer to exact balance).
    num_iters: Sinkhorn iterations.

  Returns:
    `[n, k]` log plan.
  """
  n, k = cost.shape
  c = cost - jnp.mean(cost)
  c = c / (jnp.std(c) + 1e-8)
  log_kernel = -c / epsilon
  log_r, log_c = -jnp.log(float(n)), -jnp.log(float(k))

  def body(_, uv):
    u, v = uv
    u = log_r - jax.nn.logsumexp(log_kernel + v[None, :], axis=1)
    v = log_c - jax.nn.logsumexp(log_kernel + u[:, None], axis=0)
    return u, v

  u, v = jax.lax.fori_loop(0, num_iters, body,
                           (jnp.zeros(n), jnp.zeros(k)))
  return log_kernel + u[:, None] + v[None, :]


def balanced_assign(x: jax.Array, centroids: jax.Array,
                    epsilon: float = 0.01, num_iters: int = 200) -> jax.Array:
  """Sinkhorn-balanced assignment: argmax of the plan for squared distances."""
  plan = sinkhorn_log_plan(sq_distances(x, centroids), epsilon, num_iters)
  return jnp.argmax(plan, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(2,))
def kmeans_plusplus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
  """k-means++ seeding: `[k, d]` centroids chosen among the rows of x.

  Args:
    key: PRNG key.
    x: `[n, d]` data.
    k: number of centroids.

  Returns:
    The initial centroids. When all remaining distances are zero (fewer
    distinct points than k), points are drawn uniformly.
  """
  n = x.shape[0]
  key, first = jax.random.split(key)
  c0 = x[jax.random.randint(first, (), 0, n)]
  cents = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(c0)
  d = jnp.sum((x - c0) ** 2, axis=-1)

  def body(i, carry):
    cents, d, key = carry
    key, sub = jax.random.split(key)
    total = jnp.sum(d)
    p = jnp.where(total > 0, d / jnp.maximum(total, 1e-30), 1.0 / n)
    j = jax.random.choice(sub, n, p=p)
    c = x[j]
    return cents.at[i].set(c), jnp.minimum(d, jnp.sum((x - c) ** 2, -1)), key

  cents, _, _ = jax.lax.fori_loop(1, k, body, (cents, d, key))
  return cents


def lloyd_step(x: jax.Array, centroids: jax.Array, balanced: bool = False,
               epsilon: float = 0.01) -> tuple[jax.Array, jax.Array]:
  """One Lloyd iteration; returns (new centroids, labels used).

  Clusters left empty are re-seeded with the points farthest from their
  current centroid (the farthest point to the first empty cluster, and so
  on), which is deterministic.

  Args:
    x: `[n, d]` data.
    centroids: `[k, d]`.
    balanced: assign with Sinkhorn balancing instead of nearest centroid.
    epsilon: Sinkhorn regularisation when balanced.

  Returns:
    (centroids `[k, d]`, labels int32 `[n]`).
  """
  k = centroids.shape[0]
  dist = sq_distances(x, centroids)
  if balanced:
    labels = jnp.argmax(sinkhorn_log_plan(dist, epsilon), -1).astype(
        jnp.int32)
  else:
    labels = jnp.argmin(dist, axis=-1).astype(jnp.int32)
  onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
  counts = jnp.sum(onehot, axis=0)
  sums = jnp.dot(onehot.T, x, precision=_HIGHEST)
  new = sums / jnp.maximum(counts, 1.0)[:, None]
  empty = counts == 0
  own = jnp.take_along_axis(dist, labels[:, None], axis=1)[:, 0]
  far = jnp.argsort(-own, stable=True)
  rank = jnp.clip(jnp.cumsum(empty) - 1, 0, x.shape[0] - 1)
  new = jnp.where(empty[:, None], x[far[rank]], new)
  return new, labels


@functools.partial(jax.jit, static_argnames=("k", "num_iters", "balanced"))
def kmeans(x: jax.Array, k: int, key: jax.Array, num_iters: int = 50,
           balanced: bool = False,
           epsilon: float = 0.01) -> tuple[jax.Array, jax.Array]:
  """k-means++ seeded Lloyd's algorithm.

  Args:
    x: `[n, d]` float data.
    k: number of clusters.
    key: PRNG key (seeding only).
    num_iters: Lloyd iterations.
    balanced: use Sinkhorn-balanced assignments (equal-size clusters).
    epsilon: Sinkhorn regularisation.

  Returns:
    (centroids `[k, d]`, labels int32 `[n]`): the labels are the final
    assignment to the returned centroids (nearest, or balanced).
  """
  x = x.astype(jnp.float32)
  cents = kmeans_plusplus(key, x, k)
  cents = jax.lax.fori_loop(
      0, num_iters,
      lambda _, c: lloyd_step(x, c, balanced, epsilon)[0], cents)
  if balanced:
    labels = balanced_assign(x, cents, epsilon)
  else:
    labels = assign(x, cents)
  return cents, labels
