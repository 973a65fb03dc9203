"""Layers shared by the item-level families.

* `CausalTransformer`: a pre-LN causal Transformer over item vectors with
  learned positions counted from each row's first real item (LEARN, LITE;
  the next families' sequence encoder);
* `check_tower_sizes`: the hyper-parameter checks of such a stack;
* `check_item_embeddings`: the frozen item-text table an input layer reads
  (LEARN's towers, LITE's frozen item encoder).

Positions count from the first real (non-padding) item of a row, so a
prefix gets the same position ids whether it is part of a longer training
row or an evaluation history of its own: with the causal mask, the output
at training position `j` is exactly what inference computes for the history
ending at `j`.

SASRec keeps its own block (`recjax.models.sasrec`), whose parameter names
its recorded checkpoints carry. No TensorFlow.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError

Array = jax.Array

# Additive mask value for attention: finite, so rows with nothing to attend
# to stay NaN-free.
_NEG = -1e9


def logical(init: nn.initializers.Initializer,
            names: tuple[str | None, ...]) -> nn.initializers.Initializer:
  """`init` with logical axis names (for the partitioner)."""
  return nn.with_logical_partitioning(init, names)


def dense_init(scale: float = 1.0) -> nn.initializers.Initializer:
  """Fan-in truncated-normal initialisation of dense kernels."""
  return nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")


def check_tower_sizes(owner: str, d_model: int, num_layers: int,
                      num_heads: int, mlp_dim: int, dropout_rate: float,
                      max_length: int) -> None:
  """Validates the causal Transformer's hyper-parameters.

  Args:
    owner: config class name for messages.
    d_model: model width.
    num_layers: Transformer blocks.
    num_heads: attention heads (must divide `d_model`).
    mlp_dim: MLP hidden width.
    dropout_rate: dropout in [0, 1).
    max_length: size of the learned position table.

  Raises:
    ConfigError: a value out of range.
  """
  sizes = {"d_model": d_model, "num_layers": num_layers,
           "num_heads": num_heads, "mlp_dim": mlp_dim,
           "max_length": max_length}
  for name, value in sizes.items():
    if int(value) < 1:
      raise ConfigError(f"{owner}.{name} must be >= 1, got {value!r}.")
  if d_model % num_heads:
    raise ConfigError(f"{owner}.num_heads={num_heads} must divide "
                      f"d_model={d_model}.")
  if not 0.0 <= dropout_rate < 1.0:
    raise ConfigError(f"{owner}.dropout_rate must be in [0, 1), got "
                      f"{dropout_rate}.")


class _Block(nn.Module):
  """Pre-LayerNorm causal self-attention + GELU MLP block."""

  d_model: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    heads = self.num_heads
    head_dim = self.d_model // heads
    drop = nn.Dropout(self.dropout_rate)

    def proj(name: str) -> nn.DenseGeneral:
      return nn.DenseGeneral(
          (heads, head_dim), axis=-1, name=name,
          kernel_init=logical(dense_init(), ("embed", "heads", "kv")),
          bias_init=logical(nn.initializers.zeros, ("heads", "kv")))

    y = _layer_norm("attention_norm")(x)
    q, k, v = proj("query")(y), proj("key")(y), proj("value")(y)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
    logits = jnp.where(mask[:, None], logits.astype(jnp.float32), _NEG)
    weights = drop(jax.nn.softmax(logits, axis=-1),
                   deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    out = nn.DenseGeneral(
        self.d_model, axis=(-2, -1), name="out",
        kernel_init=logical(dense_init(), ("heads", "kv", "embed")),
        bias_init=logical(nn.initializers.zeros, ("embed",)))(out)
    x = x + drop(out, deterministic=deterministic)
    y = _layer_norm("mlp_norm")(x)
    y = nn.Dense(self.mlp_dim, name="wi",
                 kernel_init=logical(dense_init(), ("embed", "mlp")),
                 bias_init=logical(nn.initializers.zeros, ("mlp",)))(y)
    y = jax.nn.gelu(y)
    y = nn.Dense(self.d_model, name="wo",
                 kernel_init=logical(dense_init(), ("mlp", "embed")),
                 bias_init=logical(nn.initializers.zeros, ("embed",)))(y)
    return x + drop(y, deterministic=deterministic)


def _layer_norm(name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=1e-6, name=name,
      scale_init=logical(nn.initializers.ones, ("embed",)),
      bias_init=logical(nn.initializers.zeros, ("embed",)))


def attention_mask(valid: Array) -> Array:
  """Causal self-attention mask over real items, `[batch, query, key]`.

  A query attends to keys at or before it that are real items; every query
  also attends to itself, so padding rows stay well defined.

  Args:
    valid: bool `[batch, length]`, True for real items.

  Returns:
    bool `[batch, length, length]`.
  """
  length = valid.shape[1]
  idx = jnp.arange(length)
  causal = idx[None, :] <= idx[:, None]
  own = jnp.eye(length, dtype=bool)
  return causal[None] & (valid[:, None, :] | own[None])


def item_positions(valid: Array) -> Array:
  """Position ids counted from each row's first real item (0 for padding)."""
  return jnp.maximum(jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1, 0)


class CausalTransformer(nn.Module):
  """A small causal Transformer over item vectors with learned positions.

  Attributes:
    d_model: width.
    num_layers: blocks.
    num_heads: attention heads.
    mlp_dim: MLP hidden width.
    dropout_rate: dropout rate.
    max_length: position table size.
  """

  d_model: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float
  max_length: int

  @nn.compact
  def __call__(self, x: Array, valid: Array,
               deterministic: bool = True) -> Array:
    """Encodes a batch of item-vector sequences.

    Args:
      x: float `[batch, length, d_model]` item vectors.
      valid: bool `[batch, length]`, True for real items (left padding).
      deterministic: disables dropout.

    Returns:
      float32 `[batch, length, d_model]`; position `j` depends only on the
      real items at positions `<= j`.

    Raises:
      ConfigError: `length` exceeds `max_length`.
    """
    length = x.shape[1]
    if length > self.max_length:
      raise ConfigError(
          f"sequences of length {length} exceed max_length="
          f"{self.max_length}; raise the model config's max_length or cap "
          "the history length of the data.")
    table = self.param(
        "position_embedding",
        logical(nn.initializers.normal(0.02), ("length", "embed")),
        (self.max_length, self.d_model), jnp.float32)
    x = x + jnp.take(table, item_positions(valid), axis=0)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    mask = attention_mask(valid)
    for i in range(self.num_layers):
      x = _Block(self.d_model, self.num_heads, self.mlp_dim,
                 self.dropout_rate, name=f"layer_{i}")(x, mask, deterministic)
    return _layer_norm("final_norm")(x)


def check_item_embeddings(item_embeddings: np.ndarray | None, num_items: int,
                          method: str) -> np.ndarray:
  """Validates a frozen item-embedding table against the catalog.

  Args:
    item_embeddings: float `[num_items, d_text]` or None.
    num_items: catalog size.
    method: model name for messages.

  Returns:
    The table as float32 numpy.

  Raises:
    ConfigError: missing table, wrong rank or row count, non-finite values.
  """
  if item_embeddings is None:
    raise ConfigError(
        f"{method} needs frozen item text embeddings [num_items, d_text]; "
        "run the embed stage (python -m recjax.embed) on this dataset and "
        "pass its output directory as train_items' embeddings_dir.")
  table = np.asarray(item_embeddings, dtype=np.float32)
  if table.ndim != 2 or table.shape[0] != num_items or table.shape[1] < 1:
    raise ConfigError(
        f"{method}: item embeddings have shape {table.shape}, expected "
        f"[num_items={num_items}, d_text]; they were computed for a "
        "different dataset or item table. Re-run the embed stage on this "
        "dataset.")
  if not np.all(np.isfinite(table)):
    bad = int(np.flatnonzero(~np.all(np.isfinite(table), axis=1))[0])
    raise ConfigError(f"{method}: item embedding row {bad} is not finite; "
                      "re-run the embed stage.")
  return table
