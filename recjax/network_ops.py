"""The T5 network's primitives, with gradients written for XLA:CPU.

`recjax.network` builds its layers from these. Each replaces a stock JAX /
flax operation with the same values and a faster CPU form:

* `rms_norm` / `RMSNorm` and `attention` have hand-written gradients: the
  gradients of broadcast parameters (the norm scale, the relative position
  bias) are sums over all tokens, computed as matrix products
  (`sum_leading`) instead of slow major-axis reductions; attention keeps
  its softmax probabilities and recomputes its dropout mask.
* `Dropout` draws masks from an integer hash of each element's position
  and a per-call seed (`keep_mask`), which XLA fuses into the consumers.
* `Kernel` / `matmul`: dense kernels as `[in, out]` matrices over
  flattened activations.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
DType = Any


# -- building blocks ----------------------------------------------------------


def sum_leading(x: Array, ndim: int) -> Array:
  """Sums `x` over all but its last `ndim` axes, as a matrix product.

  XLA:CPU reduces over major axes several times slower than it multiplies a
  ones vector by the matrix view, and gradients of broadcast parameters
  (norm scales, position biases) are exactly such sums.
  """
  lead = x.shape[:x.ndim - ndim]
  rows = math.prod(lead)
  flat = x.reshape(rows, -1)
  out = jnp.dot(jnp.ones((1, rows), flat.dtype), flat,
                preferred_element_type=jnp.float32)
  return out.reshape(x.shape[x.ndim - ndim:])


def _rms_norm_fwd(x: Array, scale: Array, epsilon: float
                  ) -> tuple[Array, tuple[Array, Array, Array]]:
  x32 = x.astype(jnp.float32)
  inv = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) +
                      epsilon)
  return (x32 * inv * scale).astype(x.dtype), (x, inv, scale)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x: Array, scale: Array, epsilon: float) -> Array:
  """`x / rms(x) * scale` (float32 inside), in the dtype of `x`."""
  return _rms_norm_fwd(x, scale, epsilon)[0]


def _rms_norm_bwd(epsilon: float, res: tuple[Array, Array, Array],
                   dy: Array) -> tuple[Array, Array]:
  del epsilon
  x, inv, scale = res
  x32 = x.astype(jnp.float32)
  g = dy.astype(jnp.float32)
  d_scale = sum_leading(g * x32 * inv, 1).astype(scale.dtype)
  gs = g * scale
  dx = inv * (gs - x32 * jnp.square(inv) *
              jnp.mean(gs * x32, axis=-1, keepdims=True))
  return dx.astype(x.dtype), d_scale


rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


class RMSNorm(nn.Module):
  """T5 layer norm: scale by the root mean square, no bias or centering.

  The gradient is written by hand so that the scale's gradient (a sum over
  all tokens) is a matrix product rather than a slow major-axis reduction.
  """

  epsilon: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.ones,
                                              ("embed",)),
        (x.shape[-1],), jnp.float32)
    return rms_norm(x, scale, self.epsilon).astype(self.dtype)


def kernel_init(scale: float = 1.0) -> nn.initializers.Initializer:
  return nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")


# -- dropout ------------------------------------------------------------------
#
# Dropout masks come from a counter-based integer hash of each element's
# position and a per-call 64-bit seed drawn from the "dropout" RNG stream.
# The hash is a handful of integer ops that XLA fuses into the kernels that
# consume the mask, so no random bits are materialised: on CPU, generating
# them with `jax.random` (any key implementation) took a quarter of a
# training step. Each call still draws its seed with `make_rng`, so masks
# depend on the dropout key, the module path and the call order exactly as
# with `flax.linen.Dropout`.


def _mix32(x: Array) -> Array:
  """A bijective avalanche mix of uint32 values (Wellons' lowbias32)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def dropout_seed(module: nn.Module) -> Array:
  """Two uint32 words from the module's "dropout" RNG stream."""
  return jax.random.bits(module.make_rng("dropout"), (2,), jnp.uint32)


def keep_mask(seed: Array, shape: tuple[int, ...], rate: float) -> Array:
  """Boolean keep mask, True with probability `1 - rate` (to 2**-32).

  Element `(row, col)` (`col` the last axis, `row` the others flattened) is
  kept when `mix(mix(mix(row ^ s0) ^ (col + s1))) >= rate * 2**32`.

  Args:
    seed: uint32 `[2]`.
    shape: mask shape.
    rate: drop probability.

  Returns:
    bool array of `shape`.
  """
  shape = tuple(shape)
  if not shape:
    return keep_mask(seed, (1,), rate).reshape(())
  row = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in range(len(shape) - 2, -1, -1):
    row = row + (jax.lax.broadcasted_iota(jnp.uint32, shape, axis) *
                 jnp.uint32(stride % 2**32))
    stride *= shape[axis]
  col = jax.lax.broadcasted_iota(jnp.uint32, shape, len(shape) - 1)
  h = _mix32(_mix32(_mix32(row ^ seed[0]) ^ (col + seed[1])))
  threshold = min(int(round(rate * 2.0**32)), 2**32 - 1)
  return h >= jnp.uint32(threshold)


def dropout(x: Array, seed: Array | None, rate: float) -> Array:
  """Inverted dropout of `x` with the mask of `seed` (None: identity)."""
  if seed is None or rate == 0.0:
    return x
  keep = keep_mask(seed, x.shape, rate)
  return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - rate), x.dtype),
                   jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """Dropout with hashed masks (see `keep_mask`); no-op when deterministic.

  Attributes:
    rate: drop probability.
  """

  rate: float

  def __call__(self, x: Array, deterministic: bool) -> Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, dropout_seed(self), self.rate)


# -- dense layers -------------------------------------------------------------


class Kernel(nn.Module):
  """A dense kernel, returned as an `[inputs, outputs]` matrix.

  The parameter keeps its structured shape and logical axis names (e.g.
  `[embed, heads, kv]`) and the initialisation of `nn.DenseGeneral` (fan-in
  over the input axes). Layers multiply flattened `[tokens, features]`
  activations by the matrix: on XLA:CPU, 2-D products and their gradients
  avoid the strided transposes that `dot_general` over `[batch, length,
  ...]` operands produced in the backward pass.

  Attributes:
    shape: parameter shape, input axes first.
    names: logical axis names, one per axis.
    num_inputs: how many leading axes are contracted.
    dtype: dtype of the returned matrix.
  """

  shape: tuple[int, ...]
  names: tuple[str, ...]
  num_inputs: int = 1
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self) -> Array:
    rows = math.prod(self.shape[:self.num_inputs])
    cols = math.prod(self.shape[self.num_inputs:])

    def init(rng: Array, shape: tuple[int, ...],
             dtype: DType = jnp.float32) -> Array:
      return kernel_init()(rng, (rows, cols), dtype).reshape(shape)

    kernel = self.param(
        "kernel", nn.with_logical_partitioning(init, self.names),
        tuple(self.shape), jnp.float32)
    return kernel.reshape(rows, cols).astype(self.dtype)


def matmul(x: Array, kernel: Array) -> Array:
  """`x[..., in]` times an `[in, out]` matrix, as one 2-D product."""
  y = jnp.dot(x.reshape(-1, kernel.shape[0]), kernel)
  return y.reshape(x.shape[:-1] + (kernel.shape[1],))


# -- attention ----------------------------------------------------------------


def _softmax_probs(q: Array, k: Array, bias: Array | None,
                   mask: Array | None) -> Array:
  """Softmax over keys of `q k^T + bias + mask`, float32 `[b, h, q, k]`."""
  logits = jnp.einsum("bhqd,bhkd->bhqk", q, k,
                      preferred_element_type=jnp.float32)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if mask is not None:
    logits = logits + mask.astype(jnp.float32)
  return jax.nn.softmax(logits, axis=-1)


def _attention_fwd(q: Array, k: Array, v: Array, bias: Array | None,
                   mask: Array | None, seed: Array | None,
                   rate: float) -> tuple[Array, tuple[Any, ...]]:
  probs = _softmax_probs(q, k, bias, mask)
  out = jnp.einsum("bhqk,bhkd->bhqd",
                   dropout(probs, seed, rate).astype(v.dtype), v)
  return out, (q, k, v, bias, seed, probs, out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def attention(q: Array, k: Array, v: Array, bias: Array | None,
               mask: Array | None, seed: Array | None, rate: float) -> Array:
  """Softmax attention without scaling (T5), heads-first.

  Keys and values are heads-first: XLA:CPU runs the batched matrix products
  several times faster in this layout (batch dimensions major) than on
  `[batch, length, heads, kv]`. The hand-written gradient keeps the softmax
  probabilities, recomputes the dropout mask from its seed and sums the
  position-bias gradient over the batch as a matrix product.

  Args:
    q: `[b, h, q, d]`.
    k: `[b, h, k, d]`.
    v: `[b, h, k, d]`.
    bias: trainable bias `[h, q, k]` (relative positions), or None.
    mask: constant additive mask broadcastable to `[b, h, q, k]`, or None.
    seed: dropout seed of the attention weights (None: no dropout).
    rate: dropout rate.

  Returns:
    `[b, h, q, d]` in the dtype of `v`.
  """
  return _attention_fwd(q, k, v, bias, mask, seed, rate)[0]


def _attention_bwd(rate: float, res: tuple[Any, ...], d_out: Array
                   ) -> tuple[Any, ...]:
  q, k, v, bias, seed, probs, out = res
  d_probs = jnp.einsum("bhqd,bhkd->bhqk", d_out, v,
                       preferred_element_type=jnp.float32)
  d_probs = dropout(d_probs, seed, rate)
  # sum_k d_probs * probs == sum_d d_out * out (FlashAttention's `D`), a
  # reduction over head_dim instead of over keys.
  row = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32),
                axis=-1, keepdims=True)
  d_logits = probs * (d_probs - row)
  dtype = q.dtype
  d_logits_c = d_logits.astype(dtype)
  dq = jnp.einsum("bhqk,bhkd->bhqd", d_logits_c, k)
  dk = jnp.einsum("bhqk,bhqd->bhkd", d_logits_c, q)
  dv = jnp.einsum("bhqk,bhqd->bhkd",
                  dropout(probs, seed, rate).astype(v.dtype), d_out)
  d_bias = None
  if bias is not None:
    d_bias = sum_leading(d_logits, 3).reshape(bias.shape).astype(bias.dtype)
  return dq, dk, dv, d_bias, None, None


attention.defvjp(_attention_fwd, _attention_bwd)


def split_heads(x: Array, parts: int, heads: int) -> Array:
  """`[b, len, parts * heads * kv]` -> `[parts, b, heads, len, kv]`."""
  b, length, _ = x.shape
  return jnp.transpose(x.reshape(b, length, parts, heads, -1),
                       (2, 0, 3, 1, 4))


def merge_heads(x: Array) -> Array:
  """`[b, heads, len, kv]` -> `[b, len, heads * kv]`."""
  b, h, length, d = x.shape
  return jnp.transpose(x, (0, 2, 1, 3)).reshape(b, length, h * d)
