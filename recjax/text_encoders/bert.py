"""A Flax BERT-family encoder (BERT, MiniLM, RoBERTa) for HF checkpoints.

The module mirrors the Hugging Face `BertModel` encoder: token + position +
token-type embeddings with LayerNorm, then post-LN Transformer layers
(self-attention with biases, GELU feed-forward). RoBERTa-style checkpoints
differ only in their position ids (counted from `pad_token_id + 1` over
non-padding tokens), which `BertConfig.roberta_positions` switches on.

`convert_weights` maps the HF safetensors names (`encoder.layer.3.attention.
self.query.weight`, ...) onto this module's parameter tree.
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

_ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert")
BERT_TYPES = ("bert",) + _ROBERTA_TYPES
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyperparameters read from a HF `config.json`."""

  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  roberta_positions: bool = False

  @classmethod
  def from_json(cls, conf: Mapping[str, Any]) -> BertConfig:
    """Builds the config from a parsed `config.json`."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in conf.items() if k in names}
    kwargs["pad_token_id"] = conf.get("pad_token_id") or 0
    kwargs["roberta_positions"] = conf.get("model_type") in _ROBERTA_TYPES
    return cls(**kwargs)

  @property
  def max_tokens(self) -> int:
    """Longest input the position table allows."""
    offset = self.pad_token_id + 1 if self.roberta_positions else 0
    return self.max_position_embeddings - offset


def _activation(name: str):
  if name == "gelu":
    return lambda x: jax.nn.gelu(x, approximate=False)
  if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ConfigError(f"hidden_act {name!r} is not supported (gelu, gelu_new, "
                    "relu).")


class _Layer(nn.Module):
  """One post-LN Transformer layer."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    c = self.config
    heads, dh = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    dense = lambda n, name: nn.Dense(n, precision=_HIGHEST, name=name)
    b, t, _ = x.shape
    split = lambda y: y.reshape(b, t, heads, dh)
    q = split(dense(c.hidden_size, "query")(x))
    k = split(dense(c.hidden_size, "key")(x))
    v = split(dense(c.hidden_size, "value")(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HIGHEST)
    probs = jax.nn.softmax(scores / np.sqrt(dh) + bias, axis=-1)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=_HIGHEST)
    attn = dense(c.hidden_size, "attention_output")(ctx.reshape(b, t, -1))
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="attention_ln")(x + attn)
    h = _activation(c.hidden_act)(dense(c.intermediate_size,
                                        "intermediate")(x))
    h = dense(c.hidden_size, "output")(h)
    return nn.LayerNorm(epsilon=c.layer_norm_eps, name="output_ln")(x + h)


class BertModule(nn.Module):
  """BERT encoder returning the last hidden states `[B, T, H]`."""

  config: BertConfig

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    c = self.config
    if c.roberta_positions:
      pos = jnp.cumsum(mask, axis=1) * mask + c.pad_token_id
    else:
      pos = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    x = nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(ids)
    x = x + nn.Embed(c.max_position_embeddings, c.hidden_size,
                     name="position_embeddings")(pos)
    x = x + nn.Embed(c.type_vocab_size, c.hidden_size,
                     name="token_type_embeddings")(jnp.zeros_like(ids))
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="embeddings_ln")(x)
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0,
                     jnp.finfo(jnp.float32).min)
    for i in range(c.num_hidden_layers):
      x = _Layer(c, name=f"layer_{i}")(x, bias)
    return x


def _strip_prefix(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  for prefix in ("bert.", "roberta.", "model."):
    if any(k.startswith(prefix + "embeddings.") for k in weights):
      return {k[len(prefix):]: v for k, v in weights.items()
              if k.startswith(prefix)}
  return dict(weights)


def convert_weights(weights: Mapping[str, np.ndarray],
                    config: BertConfig) -> dict[str, Any]:
  """Maps HF BERT tensor names onto `BertModule` parameters.

  Args:
    weights: safetensors contents (HF names).
    config: the model config.

  Returns:
    A `{"params": ...}` variable dict for `BertModule`.

  Raises:
    ConfigError: a tensor is missing (not a BERT-family checkpoint).
  """
  w = _strip_prefix(weights)

  def get(name: str) -> np.ndarray:
    for alias in (name, name.replace(".weight", ".gamma").replace(
        "LayerNorm.bias", "LayerNorm.beta")):
      if alias in w:
        return w[alias]
    raise ConfigError(
        f"checkpoint has no tensor {name!r}; it is not a BERT-family "
        "model.safetensors (model_type bert/roberta).")

  def ln(prefix: str) -> dict[str, np.ndarray]:
    return {"scale": get(prefix + ".LayerNorm.weight"),
            "bias": get(prefix + ".LayerNorm.bias")}

  def dense(prefix: str) -> dict[str, np.ndarray]:
    return {"kernel": get(prefix + ".weight").T, "bias": get(prefix + ".bias")}

  params: dict[str, Any] = {
      "word_embeddings": {
          "embedding": get("embeddings.word_embeddings.weight")},
      "position_embeddings": {
          "embedding": get("embeddings.position_embeddings.weight")},
      "embeddings_ln": ln("embeddings"),
  }
  if config.type_vocab_size > 0:
    params["token_type_embeddings"] = {
        "embedding": get("embeddings.token_type_embeddings.weight")}
  for i in range(config.num_hidden_layers):
    p = f"encoder.layer.{i}"
    params[f"layer_{i}"] = {
        "query": dense(p + ".attention.self.query"),
        "key": dense(p + ".attention.self.key"),
        "value": dense(p + ".attention.self.value"),
        "attention_output": dense(p + ".attention.output.dense"),
        "attention_ln": ln(p + ".attention.output"),
        "intermediate": dense(p + ".intermediate.dense"),
        "output": dense(p + ".output.dense"),
        "output_ln": ln(p + ".output"),
    }
  return {"params": jax.tree_util.tree_map(jnp.asarray, params)}
