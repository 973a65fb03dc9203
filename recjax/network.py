"""A T5 1.1-style encoder-decoder Transformer in `flax.linen`.

The network follows Hugging Face / Mesh-TensorFlow T5 semantics exactly, so a
converted HF checkpoint gives the same logits (see `recjax.hf_t5`):

* pre-norm residual blocks with RMSNorm (no mean subtraction, no bias);
* attention without the `1/sqrt(head_dim)` scaling (folded into the init);
* T5 relative position buckets, bidirectional in the encoder and causal in the
  decoder; each stack has one bias table, owned by its first layer and shared
  by all its layers;
* a ReLU (`('relu',)`) or gated (`('gelu', 'linear')`, T5 1.1) MLP; `'gelu'`
  is the tanh approximation (HF's `gelu_new`);
* logits through the tied embedding (`logits_via_embedding=True`, decoder
  output rescaled by `emb_dim ** -0.5`) or a separate output projection.

Incremental decoding (`decode=True`) keeps a self-attention KV cache in the
flax `"cache"` collection, shaped `[batch, beams, max_length, heads, kv]`, so
beam search reorders it with one gather on axis 1. Cross-attention keys and
values are computed once per user by the first decode call and kept in the
`"cross_kv"` collection, shaped `[batch, heads, enc_length, kv]`: beams are
treated as the query axis of cross-attention, so they share one copy of the
encoder output instead of each beam recomputing or copying it.

Decode steps take a static Python `decode_step` (the beam search unrolls its
loop over the fixed ID length), so cache writes and reads are static slices
and the relative position bias is a compile-time table.

All parameters carry logical axis names (`vocab`, `embed`, `mlp`, `heads`,
`kv`, `relpos_buckets`) through `nn.with_logical_partitioning`, following
t5x's conventions. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError

Array = jax.Array
DType = Any

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_exact": functools.partial(jax.nn.gelu, approximate=False),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "linear": lambda x: x,
}

# Additive bias for masked attention logits (softmax is in float32).
_NEG_INF = -1e10


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of the encoder-decoder.

  Attributes:
    vocab_size: number of token ids (input and output share the vocabulary).
    emb_dim: model width (HF `d_model`).
    num_heads: attention heads.
    head_dim: width of each head (HF `d_kv`).
    num_encoder_layers: encoder blocks.
    num_decoder_layers: decoder blocks.
    mlp_dim: hidden width of the MLP (HF `d_ff`).
    mlp_activations: `('relu',)` (T5) or `('gelu', 'linear')` (T5 1.1 gated
      GELU); with several entries the MLP multiplies their branches.
    dropout_rate: dropout after the embedding, each sub-block, the MLP
      activation, the attention weights and the final norm.
    logits_via_embedding: tie the output projection to the embedding (and
      rescale the decoder output by `emb_dim ** -0.5`, as T5 does).
    relative_attention_num_buckets: relative position buckets.
    relative_attention_max_distance: distance mapped to the last bucket.
    layer_norm_epsilon: RMSNorm epsilon.
    dtype: activation dtype (parameters stay float32).
  """

  vocab_size: int
  emb_dim: int = 128
  num_heads: int = 6
  head_dim: int = 64
  num_encoder_layers: int = 4
  num_decoder_layers: int = 4
  mlp_dim: int = 1024
  mlp_activations: tuple[str, ...] = ("relu",)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = False
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dtype: DType = jnp.float32

  def __post_init__(self):
    object.__setattr__(self, "mlp_activations",
                       tuple(self.mlp_activations))
    positive = ("vocab_size", "emb_dim", "num_heads", "head_dim",
                "num_encoder_layers", "num_decoder_layers", "mlp_dim",
                "relative_attention_num_buckets",
                "relative_attention_max_distance")
    for name in positive:
      if int(getattr(self, name)) < 1:
        raise ConfigError(f"TransformerConfig.{name} must be >= 1, got "
                          f"{getattr(self, name)!r}.")
    unknown = [a for a in self.mlp_activations if a not in _ACTIVATIONS]
    if not self.mlp_activations or unknown:
      raise ConfigError(
          f"TransformerConfig.mlp_activations={self.mlp_activations!r}: "
          f"use names from {sorted(_ACTIVATIONS)}, e.g. ('relu',) or "
          "('gelu', 'linear').")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ConfigError("TransformerConfig.dropout_rate must be in [0, 1), "
                        f"got {self.dropout_rate}.")

  @property
  def inner_dim(self) -> int:
    """Total attention width, `num_heads * head_dim`."""
    return self.num_heads * self.head_dim


# -- relative positions -------------------------------------------------------


def relative_position_bucket(relative_position: np.ndarray,
                             bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """T5's bucketing of `memory_position - query_position` (numpy, static).

  Half of the buckets (per direction when bidirectional) hold exact small
  distances, the rest grow logarithmically up to `max_distance`. Arithmetic
  is done in float32 like the reference implementations.

  Args:
    relative_position: int array of key position minus query position.
    bidirectional: encoder (True) or causal decoder (False).
    num_buckets: number of buckets.
    max_distance: distances at or beyond this share the last bucket.

  Returns:
    int32 bucket ids of the same shape.
  """
  rel = np.asarray(relative_position, dtype=np.int64)
  buckets = np.zeros_like(rel)
  if bidirectional:
    num_buckets //= 2
    buckets += (rel > 0).astype(np.int64) * num_buckets
    rel = np.abs(rel)
  else:
    rel = -np.minimum(rel, 0)
  max_exact = num_buckets // 2
  is_small = rel < max_exact
  with np.errstate(divide="ignore"):
    scaled = (np.log(rel.astype(np.float32) / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact))
              * np.float32(num_buckets - max_exact))
  scaled = np.where(is_small, 0, scaled)  # avoid casting -inf below
  large = np.minimum(max_exact + scaled.astype(np.int64), num_buckets - 1)
  buckets += np.where(is_small, rel, large)
  return buckets.astype(np.int32)


class RelativePositionBiases(nn.Module):
  """Per-head bias for each relative position bucket.

  Attributes:
    num_buckets: number of buckets.
    max_distance: distance mapped to the last bucket.
    num_heads: attention heads.
    dtype: output dtype.
  """

  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, query_positions: np.ndarray, key_positions: np.ndarray,
               bidirectional: bool) -> Array:
    """Bias `[heads, queries, keys]` for static integer positions."""
    rel = (np.asarray(key_positions)[None, :] -
           np.asarray(query_positions)[:, None])
    buckets = relative_position_bucket(rel, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(nn.initializers.variance_scaling(
            1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), jnp.float32)
    return jnp.take(table, jnp.asarray(buckets), axis=1).astype(self.dtype)


# -- building blocks ----------------------------------------------------------


class RMSNorm(nn.Module):
  """T5 layer norm: scale by the root mean square, no bias or centering."""

  epsilon: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.ones,
                                              ("embed",)),
        (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale).astype(self.dtype)


def _kernel_init(scale: float = 1.0) -> nn.initializers.Initializer:
  return nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")


def _dense(features: int | tuple[int, ...], axis: int | tuple[int, ...],
           names: tuple[str, ...], dtype: DType, name: str,
           scale: float = 1.0) -> nn.DenseGeneral:
  return nn.DenseGeneral(
      features=features, axis=axis, use_bias=False, dtype=dtype,
      kernel_init=nn.with_logical_partitioning(_kernel_init(scale), names),
      name=name)


def _heads_first(x: Array) -> Array:
  """`[batch, length, heads, kv]` -> `[batch, heads, length, kv]`."""
  return jnp.transpose(x, (0, 2, 1, 3))


def _attend(query: Array, key: Array, value: Array, bias: Array | None,
            dropout: nn.Dropout, deterministic: bool,
            dtype: DType) -> Array:
  """Softmax attention without scaling (T5).

  Keys and values come heads-first: XLA:CPU runs the two batched matrix
  products several times faster in this layout (contracting the minor
  dimension, batch dimensions major) than on `[batch, length, heads, kv]`.

  Args:
    query: `[batch, q, heads, kv]`.
    key: `[batch, heads, k, kv]`.
    value: `[batch, heads, k, kv]`.
    bias: additive bias broadcastable to `[batch, heads, q, k]`.
    dropout: dropout on the attention weights.
    deterministic: disables dropout.
    dtype: output dtype.

  Returns:
    `[batch, q, heads, kv]`.
  """
  logits = jnp.einsum("bhqd,bhkd->bhqk", _heads_first(query), key,
                      preferred_element_type=jnp.float32)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
  weights = dropout(weights, deterministic=deterministic)
  return _heads_first(jnp.einsum("bhqk,bhkd->bhqd", weights, value))


class SelfAttention(nn.Module):
  """Multi-head self-attention with an optional incremental KV cache."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool,
               decode: bool = False,
               decode_step: int | None = None,
               max_decode_length: int | None = None) -> Array:
    """Attends `x` to itself.

    Args:
      x: `[batch, length, emb]`, or in decode mode `[batch, beams, emb]`
        holding one new token per beam.
      bias: full mode: `[batch or 1, heads, length, length]` (position bias
        plus mask); decode mode: `[heads, decode_step + 1]`.
      deterministic: disables dropout.
      decode: incremental decoding with the "cache" collection.
      decode_step: static position of the new token (decode mode).
      max_decode_length: cache length, used when the cache is created.

    Returns:
      Same shape as `x`.
    """
    cfg = self.config
    heads = (cfg.num_heads, cfg.head_dim)
    names = ("embed", "heads", "kv")
    q = _dense(heads, -1, names, cfg.dtype, "query")(x)
    k = _dense(heads, -1, names, cfg.dtype, "key")(x)
    v = _dense(heads, -1, names, cfg.dtype, "value")(x)
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=())
    if not decode:
      out = _attend(q, _heads_first(k), _heads_first(v), bias, dropout,
                    deterministic, cfg.dtype)
    else:
      if decode_step is None:
        raise ConfigError("decode=True needs a static decode_step.")
      batch, beams = x.shape[:2]
      if not self.has_variable("cache", "cached_key"):
        if max_decode_length is None:
          raise ConfigError("the first decode call must pass "
                            "max_decode_length to size the KV cache.")
        shape = (batch, beams, max_decode_length) + heads
      else:
        shape = None
      cached_key = self.variable("cache", "cached_key", jnp.zeros, shape,
                                 k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros,
                                   shape, v.dtype)
      keys = cached_key.value.at[:, :, decode_step].set(k)
      values = cached_value.value.at[:, :, decode_step].set(v)
      cached_key.value = keys
      cached_value.value = values
      keys = keys[:, :, :decode_step + 1]
      values = values[:, :, :decode_step + 1]
      # One query per beam attends to its own short prefix; products over
      # a handful of positions are cheaper as broadcasts than as batched
      # matrix products. logits: [b, w, t, h].
      logits = jnp.sum(q[:, :, None].astype(jnp.float32) * keys, axis=-1)
      logits = logits + jnp.transpose(bias).astype(jnp.float32)
      weights = jax.nn.softmax(logits, axis=2).astype(cfg.dtype)
      out = jnp.sum(weights[..., None] * values, axis=2)
    return _dense(cfg.emb_dim, (-2, -1), ("heads", "kv", "embed"), cfg.dtype,
                  "out")(out)


class CrossAttention(nn.Module):
  """Decoder-to-encoder attention; keys/values cacheable per user."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, encoded: Array | None, bias: Array,
               deterministic: bool, decode: bool = False) -> Array:
    """Attends decoder positions (or beams) to the encoder output.

    Args:
      x: `[batch, q, emb]`: decoder positions, or beams in decode mode.
      encoded: `[batch, enc_length, emb]`; may be None in decode mode once
        the "cross_kv" collection holds the projected keys and values.
      bias: encoder mask bias broadcastable to `[batch, heads, q, enc]`.
      deterministic: disables dropout.
      decode: read / fill the "cross_kv" collection.

    Returns:
      `[batch, q, emb]`.
    """
    cfg = self.config
    heads = (cfg.num_heads, cfg.head_dim)
    names = ("embed", "heads", "kv")
    q = _dense(heads, -1, names, cfg.dtype, "query")(x)
    key_proj = _dense(heads, -1, names, cfg.dtype, "key")
    value_proj = _dense(heads, -1, names, cfg.dtype, "value")
    if decode and self.has_variable("cross_kv", "key"):
      k = self.get_variable("cross_kv", "key")
      v = self.get_variable("cross_kv", "value")
    else:
      if encoded is None:
        raise ConfigError("the first decode call needs the encoder output.")
      k = _heads_first(key_proj(encoded))
      v = _heads_first(value_proj(encoded))
      if decode:
        self.put_variable("cross_kv", "key", k)
        self.put_variable("cross_kv", "value", v)
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=())
    out = _attend(q, k, v, bias, dropout, deterministic, cfg.dtype)
    return _dense(cfg.emb_dim, (-2, -1), ("heads", "kv", "embed"), cfg.dtype,
                  "out")(out)


class MlpBlock(nn.Module):
  """Position-wise MLP; several activations multiply their branches."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg = self.config
    acts = cfg.mlp_activations
    branches = []
    for i, act in enumerate(acts):
      name = "wi" if len(acts) == 1 else f"wi_{i}"
      h = _dense(cfg.mlp_dim, -1, ("embed", "mlp"), cfg.dtype, name)(x)
      branches.append(_ACTIVATIONS[act](h))
    h = functools.reduce(lambda a, b: a * b, branches)
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return _dense(cfg.emb_dim, -1, ("mlp", "embed"), cfg.dtype, "wo")(h)


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + MLP block."""

  config: TransformerConfig
  has_relative_bias: bool = False

  @nn.compact
  def __call__(self, x: Array, bias: Array | None, mask_bias: Array,
               deterministic: bool) -> tuple[Array, Array]:
    cfg = self.config
    if self.has_relative_bias:
      pos = np.arange(x.shape[1])
      bias = RelativePositionBiases(
          cfg.relative_attention_num_buckets,
          cfg.relative_attention_max_distance, cfg.num_heads, cfg.dtype,
          name="relpos_bias")(pos, pos, bidirectional=True)[None]
    drop = nn.Dropout(cfg.dropout_rate)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_attention_norm")(
        x)
    h = SelfAttention(cfg, name="attention")(h, bias + mask_bias,
                                             deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_mlp_norm")(x)
    h = MlpBlock(cfg, name="mlp")(h, deterministic)
    x = x + drop(h, deterministic=deterministic)
    return x, bias


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention + cross-attention + MLP block."""

  config: TransformerConfig
  has_relative_bias: bool = False

  @nn.compact
  def __call__(self, x: Array, encoded: Array | None, bias: Array | None,
               mask_bias: Array | None, cross_bias: Array,
               deterministic: bool, decode: bool = False,
               decode_step: int | None = None,
               max_decode_length: int | None = None
               ) -> tuple[Array, Array]:
    cfg = self.config
    if self.has_relative_bias:
      rel = RelativePositionBiases(
          cfg.relative_attention_num_buckets,
          cfg.relative_attention_max_distance, cfg.num_heads, cfg.dtype,
          name="relpos_bias")
      if decode:
        bias = rel(np.array([decode_step]), np.arange(decode_step + 1),
                   bidirectional=False)[:, 0]
      else:
        pos = np.arange(x.shape[1])
        bias = rel(pos, pos, bidirectional=False)[None]
    self_bias = bias if decode else bias + mask_bias
    drop = nn.Dropout(cfg.dropout_rate)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype,
                name="pre_self_attention_norm")(x)
    h = SelfAttention(cfg, name="self_attention")(
        h, self_bias, deterministic, decode=decode, decode_step=decode_step,
        max_decode_length=max_decode_length)
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype,
                name="pre_cross_attention_norm")(x)
    h = CrossAttention(cfg, name="encoder_decoder_attention")(
        h, encoded, cross_bias, deterministic, decode=decode)
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_mlp_norm")(x)
    h = MlpBlock(cfg, name="mlp")(h, deterministic)
    x = x + drop(h, deterministic=deterministic)
    return x, bias


def _mask_bias(mask: Array) -> Array:
  """Boolean mask -> additive float32 bias (0 where allowed)."""
  return jnp.where(mask, 0.0, _NEG_INF).astype(jnp.float32)


class Transformer(nn.Module):
  """T5 1.1-style encoder-decoder.

  Attributes:
    config: the hyper-parameters.
  """

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.shared_embedding = nn.Embed(
        cfg.vocab_size, cfg.emb_dim, dtype=cfg.dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(1.0), ("vocab", "embed")),
        name="token_embedder")
    self.encoder_layers = [
        EncoderLayer(cfg, has_relative_bias=(i == 0), name=f"encoder_{i}")
        for i in range(cfg.num_encoder_layers)]
    self.encoder_norm = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype,
                                name="encoder_norm")
    self.decoder_layers = [
        DecoderLayer(cfg, has_relative_bias=(i == 0), name=f"decoder_{i}")
        for i in range(cfg.num_decoder_layers)]
    self.decoder_norm = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype,
                                name="decoder_norm")
    if not cfg.logits_via_embedding:
      self.logits_dense = _dense(cfg.vocab_size, -1, ("embed", "vocab"),
                                 cfg.dtype, "logits_dense")
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def encode(self, encoder_input_tokens: Array,
             enable_dropout: bool = False) -> Array:
    """Encodes `[batch, enc_length]` tokens (PAD=0 masked) -> activations."""
    deterministic = not enable_dropout
    tokens = encoder_input_tokens.astype(jnp.int32)
    mask = tokens > 0
    mask_bias = _mask_bias(mask[:, None, None, :])
    x = self.shared_embedding(tokens)
    x = self.dropout(x, deterministic=deterministic)
    bias = None
    for layer in self.encoder_layers:
      x, bias = layer(x, bias, mask_bias, deterministic)
    x = self.encoder_norm(x)
    return self.dropout(x, deterministic=deterministic)

  def _logits(self, y: Array) -> Array:
    if self.config.logits_via_embedding:
      y = y * (self.config.emb_dim ** -0.5)
      logits = self.shared_embedding.attend(y)
    else:
      logits = self.logits_dense(y)
    return logits.astype(jnp.float32)

  def decode(self, encoded: Array | None, encoder_input_tokens: Array,
             decoder_input_tokens: Array,
             decoder_target_tokens: Array | None = None,
             enable_dropout: bool = False, decode: bool = False,
             decode_step: int | None = None,
             max_decode_length: int | None = None) -> Array:
    """Runs the decoder and returns float32 logits.

    Full mode (`decode=False`): `decoder_input_tokens [batch, length]` are
    teacher-forced with a causal mask (keys whose target is PAD masked when
    `decoder_target_tokens` is given); returns `[batch, length, vocab]`.

    Decode mode: `decoder_input_tokens [batch, beams]` holds the token at
    static position `decode_step` of every beam; returns `[batch, beams,
    vocab]` and updates the "cache" collection (mutable). The first call
    (step 0) must pass `encoded` and `max_decode_length` with "cache" and
    "cross_kv" mutable; later calls may pass `encoded=None`.

    Args:
      encoded: encoder output `[batch, enc_length, emb]`.
      encoder_input_tokens: `[batch, enc_length]`, for the encoder mask.
      decoder_input_tokens: see above.
      decoder_target_tokens: optional `[batch, length]` (full mode).
      enable_dropout: training mode.
      decode: incremental decoding.
      decode_step: static position of the decoded token.
      max_decode_length: KV cache length (first decode call).

    Returns:
      Logits, float32.
    """
    deterministic = not enable_dropout
    tokens = decoder_input_tokens.astype(jnp.int32)
    enc_mask = encoder_input_tokens > 0
    cross_bias = _mask_bias(enc_mask[:, None, None, :])
    if decode:
      mask_bias = None
    else:
      length = tokens.shape[1]
      causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
      if decoder_target_tokens is not None:
        causal = causal & (decoder_target_tokens > 0)[:, None, None, :]
      mask_bias = _mask_bias(causal)
    y = self.shared_embedding(tokens)
    y = self.dropout(y, deterministic=deterministic)
    bias = None
    for layer in self.decoder_layers:
      y, bias = layer(y, encoded, bias, mask_bias, cross_bias, deterministic,
                      decode=decode, decode_step=decode_step,
                      max_decode_length=max_decode_length)
    y = self.decoder_norm(y)
    y = self.dropout(y, deterministic=deterministic)
    return self._logits(y)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None = None,
               enable_dropout: bool = False) -> Array:
    """Teacher-forced forward pass -> logits `[batch, length, vocab]`."""
    encoded = self.encode(encoder_input_tokens, enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, enable_dropout=enable_dropout)


def count_flops_per_example(config: TransformerConfig, encoder_length: int,
                            decoder_length: int, num_queries: int = 1,
                            cross_kv_once: bool = True) -> float:
  """Analytic forward FLOPs (2 per multiply-add) for one example.

  Counts matrix products only (projections, attention scores and weighted
  sums, MLP, output logits); norms, softmax and biases are negligible.

  Args:
    config: the network.
    encoder_length: encoder tokens.
    decoder_length: decoder positions per query sequence.
    num_queries: decoder sequences per example (beams).
    cross_kv_once: cross-attention K/V projected once per example (True,
      recjax) or once per query sequence.

  Returns:
    FLOPs per example.
  """
  e, inner, f, v = (config.emb_dim, config.inner_dim, config.mlp_dim,
                    config.vocab_size)
  mlp = 2 * e * f * (len(config.mlp_activations) + 1)
  enc_tok = 2 * e * inner * 4 + mlp + 2 * 2 * encoder_length * inner
  enc = encoder_length * enc_tok * config.num_encoder_layers
  cross_kv = 2 * 2 * e * inner * encoder_length * config.num_decoder_layers
  dec_tok = (2 * e * inner * 4 + 2 * 2 * (decoder_length + 1) / 2 * inner +
             2 * e * inner * 2 + 2 * 2 * encoder_length * inner + mlp)
  dec = (num_queries * decoder_length *
         (dec_tok * config.num_decoder_layers + 2 * e * v))
  return float(enc + dec + cross_kv * (1 if cross_kv_once else
                                       num_queries * decoder_length))


def shift_right(targets: Sequence[Any] | np.ndarray) -> np.ndarray:
  """Decoder inputs from targets: shift right by one, BOS = PAD = 0."""
  targets = np.asarray(targets)
  out = np.zeros_like(targets)
  out[..., 1:] = targets[..., :-1]
  return out
