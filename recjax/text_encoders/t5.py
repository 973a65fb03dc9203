"""A Flax T5 encoder (the sentence-T5 backbone) for HF checkpoints.

Pre-LN Transformer with RMS layer norms (no bias, no mean subtraction),
unscaled attention logits plus a bucketed relative-position bias shared by
all layers (stored in the first block), and a ReLU or gated-GELU
feed-forward. Sentence-T5 then mean-pools the final states and applies a
bias-free dense projection (read by `checkpoint.read_sentence_config`).

`convert_weights` maps HF names (`encoder.block.0.layer.0.SelfAttention.q.
weight`, `shared.weight`, ...) onto `T5EncoderModule` parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError

T5_TYPES = ("t5", "mt5", "umt5")
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyperparameters read from a HF T5 `config.json`."""

  vocab_size: int
  d_model: int
  d_kv: int
  d_ff: int
  num_layers: int
  num_heads: int
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  feed_forward_proj: str = "relu"
  pad_token_id: int = 0
  n_positions: int = 512

  @classmethod
  def from_json(cls, conf: Mapping[str, Any]) -> T5Config:
    """Builds the config from a parsed `config.json`."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in conf.items() if k in names}
    kwargs["pad_token_id"] = conf.get("pad_token_id") or 0
    kwargs.setdefault("n_positions", 512)
    return cls(**kwargs)

  @property
  def gated(self) -> bool:
    return self.feed_forward_proj.startswith("gated-")

  @property
  def max_tokens(self) -> int:
    return self.n_positions


def relative_position_bucket(relative_position: jax.Array, num_buckets: int,
                             max_distance: int) -> jax.Array:
  """Bidirectional T5 bucket of `key_pos - query_pos`.

  Half the buckets are for positive offsets. Within each half, offsets below
  `num_buckets // 4` get their own bucket; larger ones share log-spaced
  buckets up to `max_distance`.

  Args:
    relative_position: int array of offsets.
    num_buckets: total number of buckets.
    max_distance: offsets at or beyond this share the last bucket.

  Returns:
    int32 bucket ids of the same shape.
  """
  half = num_buckets // 2
  base = jnp.where(relative_position > 0, half, 0)
  dist = jnp.abs(relative_position)
  exact = half // 2
  safe = jnp.maximum(dist, 1).astype(jnp.float32)
  far = exact + (jnp.log(safe / exact) / np.log(max_distance / exact) *
                 (half - exact)).astype(jnp.int32)
  far = jnp.minimum(far, half - 1)
  return (base + jnp.where(dist < exact, dist, far)).astype(jnp.int32)


class _RMSNorm(nn.Module):
  eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(var + self.eps) * scale


class _Block(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    c = self.config
    dense = lambda n, name: nn.Dense(n, use_bias=False, precision=_HIGHEST,
                                     name=name)
    b, t, _ = x.shape
    h = _RMSNorm(c.layer_norm_epsilon, name="attention_norm")(x)
    inner = c.num_heads * c.d_kv
    split = lambda y: y.reshape(b, t, c.num_heads, c.d_kv)
    q, k, v = (split(dense(inner, n)(h)) for n in ("q", "k", "v"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HIGHEST) + bias
    probs = jax.nn.softmax(scores, axis=-1)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=_HIGHEST)
    x = x + dense(c.d_model, "o")(ctx.reshape(b, t, inner))
    h = _RMSNorm(c.layer_norm_epsilon, name="ff_norm")(x)
    if c.gated:
      act = jax.nn.relu if c.feed_forward_proj.endswith("relu") else (
          lambda y: jax.nn.gelu(y, approximate=True))
      f = act(dense(c.d_ff, "wi_0")(h)) * dense(c.d_ff, "wi_1")(h)
    else:
      f = jax.nn.relu(dense(c.d_ff, "wi")(h))
    return x + dense(c.d_model, "wo")(f)


class T5EncoderModule(nn.Module):
  """T5 encoder returning the final-norm hidden states `[B, T, d_model]`."""

  config: T5Config

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    c = self.config
    x = nn.Embed(c.vocab_size, c.d_model, name="shared")(ids)
    t = ids.shape[1]
    rel = jnp.arange(t)[None, :] - jnp.arange(t)[:, None]
    buckets = relative_position_bucket(rel, c.relative_attention_num_buckets,
                                       c.relative_attention_max_distance)
    table = nn.Embed(c.relative_attention_num_buckets, c.num_heads,
                     name="relative_attention_bias")(buckets)  # [q, k, h]
    bias = jnp.transpose(table, (2, 0, 1))[None]
    bias = bias + jnp.where(mask[:, None, None, :] > 0, 0.0,
                            jnp.finfo(jnp.float32).min)
    for i in range(c.num_layers):
      x = _Block(c, name=f"block_{i}")(x, bias)
    return _RMSNorm(c.layer_norm_epsilon, name="final_norm")(x)


def convert_weights(weights: Mapping[str, np.ndarray],
                    config: T5Config) -> dict[str, Any]:
  """Maps HF T5 tensor names onto `T5EncoderModule` parameters.

  Args:
    weights: safetensors contents (HF names); decoder tensors are ignored.
    config: the model config.

  Returns:
    A `{"params": ...}` variable dict.

  Raises:
    ConfigError: a tensor is missing (not a T5 checkpoint).
  """

  def get(*names: str) -> np.ndarray:
    for name in names:
      if name in weights:
        return weights[name]
    raise ConfigError(f"checkpoint has no tensor {names[0]!r}; it is not a "
                      "T5 (encoder) model.safetensors.")

  params: dict[str, Any] = {
      "shared": {"embedding": get("shared.weight",
                                  "encoder.embed_tokens.weight")},
      "relative_attention_bias": {"embedding": get(
          "encoder.block.0.layer.0.SelfAttention.relative_attention_bias."
          "weight")},
      "final_norm": {"scale": get("encoder.final_layer_norm.weight")},
  }
  for i in range(config.num_layers):
    p = f"encoder.block.{i}.layer"
    block = {
        "attention_norm": {"scale": get(f"{p}.0.layer_norm.weight")},
        "ff_norm": {"scale": get(f"{p}.1.layer_norm.weight")},
    }
    for n in ("q", "k", "v", "o"):
      block[n] = {"kernel": get(f"{p}.0.SelfAttention.{n}.weight").T}
    ff = ("wi_0", "wi_1", "wo") if config.gated else ("wi", "wo")
    for n in ff:
      block[n] = {"kernel": get(f"{p}.1.DenseReluDense.{n}.weight").T}
    params[f"block_{i}"] = block
  return {"params": jax.tree_util.tree_map(jnp.asarray, params)}
