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

Training speed (XLA:CPU, see `benchmarks/train_step.py`): the parameter tree
is the one `nn.DenseGeneral` would make, but layers multiply flattened
`[tokens, features]` activations by `[in, out]` matrices, and self-attention
concatenates its query, key and value kernels into one product. Attention
and RMSNorm have hand-written gradients (broadcast-parameter gradients as
matrix products, dropout masks recomputed), and dropout masks are a hash of
position and a per-call seed from the "dropout" RNG stream, fused into the
kernels that use them. These primitives are in `recjax.network_ops`.
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
from recjax.network_ops import Dropout
from recjax.network_ops import Kernel
from recjax.network_ops import RMSNorm
from recjax.network_ops import attention
from recjax.network_ops import dropout_seed
from recjax.network_ops import matmul
from recjax.network_ops import merge_heads
from recjax.network_ops import split_heads

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
    vocab_size: number of token ids (input and output share the vocabulary);
      0 until the run's token layout sets it (`make_encoder_decoder` does).
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

  vocab_size: int = 0
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
    if int(self.vocab_size) < 0:
      raise ConfigError(f"TransformerConfig.vocab_size must be >= 0 (0: set "
                        f"from the token layout), got {self.vocab_size!r}.")
    positive = ("emb_dim", "num_heads", "head_dim",
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


def _projection_kernels(cfg: TransformerConfig, names: Sequence[str]
                        ) -> list[Array]:
  """`[emb, heads * kv]` matrices of the named projections (in a module)."""
  return [Kernel((cfg.emb_dim, cfg.num_heads, cfg.head_dim),
                 ("embed", "heads", "kv"), 1, cfg.dtype, name=name)()
          for name in names]


def _output_projection(cfg: TransformerConfig, x: Array) -> Array:
  """`[b, l, heads * kv]` -> `[b, l, emb]` through the "out" kernel."""
  kernel = Kernel((cfg.num_heads, cfg.head_dim, cfg.emb_dim),
                  ("heads", "kv", "embed"), 2, cfg.dtype, name="out")()
  return matmul(x, kernel)


class SelfAttention(nn.Module):
  """Multi-head self-attention with an optional incremental KV cache.

  The query, key and value kernels stay separate parameters but are
  concatenated for one `[emb, 3 * heads * kv]` product.
  """

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, bias: Array | None, mask: Array | None,
               deterministic: bool, decode: bool = False,
               decode_step: int | None = None,
               max_decode_length: int | None = None) -> Array:
    """Attends `x` to itself.

    Args:
      x: `[batch, length, emb]`, or in decode mode `[batch, beams, emb]`
        holding one new token per beam.
      bias: full mode: relative position bias `[heads, length, length]`;
        decode mode: `[heads, decode_step + 1]`.
      mask: full mode: additive mask broadcastable to `[batch, heads,
        length, length]`; unused in decode mode.
      deterministic: disables dropout.
      decode: incremental decoding with the "cache" collection.
      decode_step: static position of the new token (decode mode).
      max_decode_length: cache length, used when the cache is created.

    Returns:
      Same shape as `x`.
    """
    cfg = self.config
    h, d = cfg.num_heads, cfg.head_dim
    kernel = jnp.concatenate(
        _projection_kernels(cfg, ("query", "key", "value")), axis=1)
    qkv = matmul(x, kernel)
    if not decode:
      q, k, v = split_heads(qkv, 3, h)
      seed = None
      if not deterministic and cfg.dropout_rate > 0:
        seed = dropout_seed(self)
      out = merge_heads(attention(q, k, v, bias, mask, seed,
                                    cfg.dropout_rate))
      return _output_projection(cfg, out)
    if decode_step is None:
      raise ConfigError("decode=True needs a static decode_step.")
    batch, beams = x.shape[:2]
    q, k, v = (qkv.reshape(batch, beams, 3, h, d)[:, :, i] for i in range(3))
    if not self.has_variable("cache", "cached_key"):
      if max_decode_length is None:
        raise ConfigError("the first decode call must pass "
                          "max_decode_length to size the KV cache.")
      shape = (batch, beams, max_decode_length, h, d)
    else:
      shape = None
    cached_key = self.variable("cache", "cached_key", jnp.zeros, shape,
                               k.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, shape,
                                 v.dtype)
    keys = cached_key.value.at[:, :, decode_step].set(k)
    values = cached_value.value.at[:, :, decode_step].set(v)
    cached_key.value = keys
    cached_value.value = values
    keys = keys[:, :, :decode_step + 1]
    values = values[:, :, :decode_step + 1]
    # One query per beam attends to its own short prefix; products over a
    # handful of positions are cheaper as broadcasts than as batched matrix
    # products. logits: [b, w, t, h].
    logits = jnp.sum(q[:, :, None].astype(jnp.float32) * keys, axis=-1)
    logits = logits + jnp.transpose(bias).astype(jnp.float32)
    weights = jax.nn.softmax(logits, axis=2).astype(cfg.dtype)
    out = jnp.sum(weights[..., None] * values, axis=2)
    return _output_projection(cfg, out.reshape(batch, beams, h * d))


class CrossAttention(nn.Module):
  """Decoder-to-encoder attention; keys/values cacheable per user."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, encoded: Array | None, mask: Array,
               deterministic: bool, decode: bool = False) -> Array:
    """Attends decoder positions (or beams) to the encoder output.

    Args:
      x: `[batch, q, emb]`: decoder positions, or beams in decode mode.
      encoded: `[batch, enc_length, emb]`; may be None in decode mode once
        the "cross_kv" collection holds the projected keys and values.
      mask: encoder mask bias broadcastable to `[batch, heads, q, enc]`.
      deterministic: disables dropout.
      decode: read / fill the "cross_kv" collection.

    Returns:
      `[batch, q, emb]`.
    """
    cfg = self.config
    h = cfg.num_heads
    q_kernel, k_kernel, v_kernel = _projection_kernels(
        cfg, ("query", "key", "value"))
    (q,) = split_heads(matmul(x, q_kernel), 1, h)
    if decode and self.has_variable("cross_kv", "key"):
      k = self.get_variable("cross_kv", "key")
      v = self.get_variable("cross_kv", "value")
    else:
      if encoded is None:
        raise ConfigError("the first decode call needs the encoder output.")
      kv = matmul(encoded, jnp.concatenate([k_kernel, v_kernel], axis=1))
      k, v = split_heads(kv, 2, h)
      if decode:
        self.put_variable("cross_kv", "key", k)
        self.put_variable("cross_kv", "value", v)
    seed = None
    if not deterministic and cfg.dropout_rate > 0:
      seed = dropout_seed(self)
    out = attention(q, k, v, None, mask, seed, cfg.dropout_rate)
    return _output_projection(cfg, merge_heads(out))


class MlpBlock(nn.Module):
  """Position-wise MLP; several activations multiply their branches."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg = self.config
    acts = cfg.mlp_activations
    names = ["wi"] if len(acts) == 1 else [f"wi_{i}" for i in range(len(acts))]
    kernels = [Kernel((cfg.emb_dim, cfg.mlp_dim), ("embed", "mlp"), 1,
                      cfg.dtype, name=name)() for name in names]
    hidden = matmul(x, jnp.concatenate(kernels, axis=1))
    branches = [_ACTIVATIONS[act](hidden[..., i * cfg.mlp_dim:
                                         (i + 1) * cfg.mlp_dim])
                for i, act in enumerate(acts)]
    hidden = functools.reduce(lambda a, b: a * b, branches)
    hidden = Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    kernel = Kernel((cfg.mlp_dim, cfg.emb_dim), ("mlp", "embed"), 1,
                    cfg.dtype, name="wo")()
    return matmul(hidden, kernel)


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
          name="relpos_bias")(pos, pos, bidirectional=True)
    drop = Dropout(cfg.dropout_rate)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_attention_norm")(
        x)
    h = SelfAttention(cfg, name="attention")(h, bias, mask_bias,
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
        bias = rel(pos, pos, bidirectional=False)
    drop = Dropout(cfg.dropout_rate)
    h = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype,
                name="pre_self_attention_norm")(x)
    h = SelfAttention(cfg, name="self_attention")(
        h, bias, mask_bias, deterministic, decode=decode,
        decode_step=decode_step, max_decode_length=max_decode_length)
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
    if cfg.vocab_size < 1:
      raise ConfigError(
          "TransformerConfig.vocab_size is not set; build the network with "
          "recjax.models.tiger.make_encoder_decoder, which sets it from the "
          "run's token layout, or bind it (>= 1).")
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
      self.logits_dense = Kernel((cfg.emb_dim, cfg.vocab_size),
                                 ("embed", "vocab"), 1, cfg.dtype,
                                 name="logits_dense")
    self.dropout = Dropout(cfg.dropout_rate)

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
      kernel = jnp.transpose(self.shared_embedding.embedding).astype(y.dtype)
    else:
      kernel = self.logits_dense()
    return matmul(y, kernel).astype(jnp.float32)

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
