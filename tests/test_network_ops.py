"""Tests for recjax.network_ops: hashed dropout masks, hand-written
gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from recjax import network_ops


def test_dropout_masks_are_unbiased_and_independent():
  shape, rate = (32, 6, 81, 81), 0.1
  mask = jax.jit(network_ops.keep_mask, static_argnums=(1, 2))
  keep = np.asarray(mask(jnp.array([12, 34], jnp.uint32), shape, rate))
  other = np.asarray(mask(jnp.array([12, 35], jnp.uint32), shape, rate))
  assert keep.shape == shape and keep.dtype == bool
  tol = 5 * np.sqrt(0.25 / keep.size)
  assert abs(keep.mean() - (1 - rate)) < tol
  # Neighbours along every axis, and masks of different seeds, agree no
  # more often than independent draws would.
  both = (1 - rate) ** 2
  for axis in range(len(shape)):
    a = np.moveaxis(keep, axis, 0)
    assert abs(np.mean(a[1:] & a[:-1]) - both) < 4 * tol, axis
  assert abs(np.mean(keep & other) - both) < 4 * tol
  # Per-row keep counts spread like a binomial.
  rows = keep.reshape(-1, shape[-1]).sum(-1)
  assert abs(rows.var() / (shape[-1] * rate * (1 - rate)) - 1) < 0.1


def test_hand_written_gradients_match_autodiff():
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(3, 2, 7, 4)), jnp.float32)
             for _ in range(3))
  bias = jnp.asarray(rng.normal(size=(2, 7, 7)), jnp.float32)
  mask = jnp.where(jnp.asarray(rng.random((3, 1, 1, 7)) > 0.3), 0.0, -1e10)
  seed = jnp.array([5, 6], jnp.uint32)
  d_out = jnp.asarray(rng.normal(size=(3, 2, 7, 4)), jnp.float32)

  def attention_vjp(fn):
    out, pull = jax.vjp(lambda *a: fn(*a, mask, seed, 0.3), q, k, v, bias)
    return (out,) + pull(d_out)

  for got, want in zip(attention_vjp(network_ops.attention),
                       attention_vjp(network_ops.attention.fun)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  x = jnp.asarray(rng.normal(size=(3, 5, 8)), jnp.float32)
  scale = jnp.asarray(1 + 0.3 * rng.normal(size=(8,)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=(3, 5, 8)), jnp.float32)

  def norm_vjp(fn):
    out, pull = jax.vjp(lambda a, b: fn(a, b, 1e-6), x, scale)
    return (out,) + pull(dy)

  for got, want in zip(norm_vjp(network_ops.rms_norm),
                       norm_vjp(network_ops.rms_norm.fun)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
