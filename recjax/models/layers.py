"""Layers shared by the item-level families.

* `Block` (with `CausalSelfAttention`, `FeedForward`, `causal_bias`): the
  causal Transformer block of the sequence encoders, pre-LN or post-LN
  (SASRec's, bit for bit; new families such as code-embedding models build
  their encoder from it), configured by a `BlockConfig`-shaped object;
* `CausalTransformer`: LEARN's and LITE's stack of `Block`s over item
  vectors with learned positions counted from each row's first real item
  (`upgrade_legacy_blocks` renames the parameters of runs saved before it
  used `Block`);
* `CodeEmbedding`: an item as the mean of its codes' embeddings (one
  table per digit), the input layer of the code-based families (RPG,
  VQ-Rec): any item with codes has a vector, seen in training or not;
* `check_tower_sizes`: the hyper-parameter checks of such a stack;
  `check_config_fields`: a config's checks by kind of field (sizes, rates,
  choices), shared by the `Block`-based configs;
* `check_item_embeddings`: the frozen item-text table an input layer reads
  (LEARN's towers, LITE's frozen item encoder).

Positions count from the first real (non-padding) item of a row, so a
prefix gets the same position ids whether it is part of a longer training
row or an evaluation history of its own: with the causal mask, the output
at training position `j` is exactly what inference computes for the history
ending at `j`.

No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "relu": jax.nn.relu,
}

# Additive attention bias of masked keys (the softmax is in float32).
_NEG_INF = -1e10


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """The fields `Block` reads (any config object with them will do).

  Attributes:
    hidden_dim: model width.
    num_heads: attention heads (`hidden_dim` must divide evenly).
    mlp_dim: hidden width of the position-wise FFN.
    dropout_rate: dropout on the sub-block outputs (and, pre-LN, the FFN).
    attention_dropout_rate: dropout on the attention weights.
    activation: FFN activation, a key of `ACTIVATIONS`.
    layer_norm_epsilon: LayerNorm epsilon.
    init_std: std of the normal initialisation of the kernels.
    norm: "pre" or "post" LayerNorm.
    kernel_init: "normal" (`init_std`) or "fan_in" (truncated normal
      scaled by fan-in, LEARN/LITE's).
    mlp_dropout: dropout inside the pre-LN FFN (post-LN has none).
  """

  hidden_dim: int = 64
  num_heads: int = 2
  mlp_dim: int = 256
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  activation: str = "gelu"
  layer_norm_epsilon: float = 1e-8
  init_std: float = 0.02
  norm: str = "pre"
  kernel_init: str = "normal"
  mlp_dropout: bool = True


def causal_bias(valid: Array) -> Array:
  """Additive bias `[batch, 1, length, length]` of causal self-attention
  over the real (`valid`) positions of right-aligned rows."""
  length = valid.shape[-1]
  causal = jnp.tril(jnp.ones((length, length), bool))
  allowed = causal[None] & valid[:, None, :]
  return jnp.where(allowed, 0.0, _NEG_INF)[:, None].astype(jnp.float32)


def logical(init: nn.initializers.Initializer,
            names: tuple[str | None, ...]) -> nn.initializers.Initializer:
  """`init` with logical axis names (for the partitioner)."""
  return nn.with_logical_partitioning(init, names)


def dense_init(scale: float = 1.0) -> nn.initializers.Initializer:
  """Fan-in truncated-normal initialisation of dense kernels."""
  return nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")


def init_normal(std: float, names: tuple[str, ...]) -> Callable[..., Array]:
  """normal(std) initialisation with logical axis names."""
  return nn.with_logical_partitioning(nn.initializers.normal(std), names)


def kernel_init(cfg: Any, names: tuple[str, ...]) -> Callable[..., Array]:
  """The kernel initialisation `cfg` asks for (`BlockConfig.kernel_init`)."""
  kind = getattr(cfg, "kernel_init", "normal")
  if kind == "fan_in":
    return logical(dense_init(), names)
  if kind != "normal":
    raise ConfigError(f"kernel_init={kind!r}; use 'normal' or 'fan_in'.")
  return init_normal(cfg.init_std, names)


def _zeros(names: tuple[str, ...]) -> Callable[..., Array]:
  """Zero initialisation with logical axis names."""
  return nn.with_logical_partitioning(nn.initializers.zeros, names)


def layer_norm(cfg: Any, name: str) -> nn.LayerNorm:
  """LayerNorm with `cfg.layer_norm_epsilon` over the `embed` axis."""
  return nn.LayerNorm(
      epsilon=cfg.layer_norm_epsilon, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones,
                                              ("embed",)),
      bias_init=_zeros(("embed",)))


class CausalSelfAttention(nn.Module):
  """Multi-head causal self-attention with a key-padding bias."""

  config: Any

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool) -> Array:
    """Attends `x` `[b, l, d]` with additive `bias` `[b, 1, l, l]`."""
    cfg = self.config
    heads, head_dim = cfg.num_heads, cfg.hidden_dim // cfg.num_heads

    def proj(name: str) -> Array:
      return nn.DenseGeneral(
          (heads, head_dim), axis=-1, name=name,
          kernel_init=kernel_init(cfg, ("embed", "heads", "kv")),
          bias_init=_zeros(("heads", "kv")))(x)

    q, k, v = proj("query"), proj("key"), proj("value")
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim)
    weights = jax.nn.softmax(logits.astype(jnp.float32) + bias, axis=-1)
    weights = nn.Dropout(cfg.attention_dropout_rate)(
        weights, deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return nn.DenseGeneral(
        cfg.hidden_dim, axis=(-2, -1), name="out",
        kernel_init=kernel_init(cfg, ("heads", "kv", "embed")),
        bias_init=_zeros(("embed",)))(out)


class FeedForward(nn.Module):
  """Position-wise FFN: Dense -> activation (-> dropout) -> Dense."""

  config: Any

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg = self.config
    h = nn.Dense(cfg.mlp_dim, name="wi",
                 kernel_init=kernel_init(cfg, ("embed", "mlp")),
                 bias_init=_zeros(("mlp",)))(x)
    h = ACTIVATIONS[cfg.activation](h)
    # RecBole's (post-LN) FFN has no inner dropout.
    if cfg.norm == "pre" and getattr(cfg, "mlp_dropout", True):
      h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return nn.Dense(cfg.hidden_dim, name="wo",
                    kernel_init=kernel_init(cfg, ("mlp", "embed")),
                    bias_init=_zeros(("embed",)))(h)


class Block(nn.Module):
  """A pre-LN (or, with `norm="post"`, post-LN) causal Transformer block.

  The shared block of the item-level sequence encoders (SASRec's; the
  code-embedding and side-information families build on it). `config` is
  any object with the fields of `BlockConfig` (e.g. `SASRecConfig`);
  parameters are named `attention/{query,key,value,out}`, `mlp/{wi,wo}`
  and `{pre,post}_{attention,mlp}_norm`.
  """

  config: Any

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool) -> Array:
    cfg = self.config
    drop = nn.Dropout(cfg.dropout_rate)
    if cfg.norm == "post":
      h = CausalSelfAttention(cfg, name="attention")(x, bias, deterministic)
      x = layer_norm(cfg, "post_attention_norm")(
          x + drop(h, deterministic=deterministic))
      h = FeedForward(cfg, name="mlp")(x, deterministic)
      return layer_norm(cfg, "post_mlp_norm")(
          x + drop(h, deterministic=deterministic))
    h = CausalSelfAttention(cfg, name="attention")(
        layer_norm(cfg, "pre_attention_norm")(x), bias, deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = FeedForward(cfg, name="mlp")(layer_norm(cfg, "pre_mlp_norm")(x),
                                     deterministic)
    return x + drop(h, deterministic=deterministic)



class CodeEmbedding(nn.Module):
  """Item vectors from codes: the mean of one embedding per digit.

  The table is `[num_digits, codebook_size, features]` (logical axes
  `("digits", "codes", "embed")`): digit `d` of an item looks up row
  `codes[d]` of slice `d`. A negative code is a missing digit (VQ-Rec's
  padding code); it is left out of the mean, and an item with no digit at
  all gets the zero vector. The same table serves as the output layer of
  models that predict codes (RPG's per-digit heads, tied to it).

  Attributes:
    num_digits: D, digits per item.
    codebook_size: M, codes per digit.
    features: vector width.
    init_std: std of the normal initialisation.
  """

  num_digits: int
  codebook_size: int
  features: int
  init_std: float = 0.02

  def setup(self):
    if min(self.num_digits, self.codebook_size, self.features) < 1:
      raise ConfigError(
          f"CodeEmbedding needs num_digits, codebook_size and features >= "
          f"1, got {self.num_digits}, {self.codebook_size}, "
          f"{self.features}.")
    self.embedding = self.param(
        "embedding", init_normal(self.init_std, ("digits", "codes", "embed")),
        (self.num_digits, self.codebook_size, self.features), jnp.float32)

  def __call__(self, codes: Array) -> Array:
    """Vectors `[..., features]` of items with codes `[..., num_digits]`."""
    codes = jnp.asarray(codes, jnp.int32)
    if codes.shape[-1] != self.num_digits:
      raise ConfigError(f"codes have {codes.shape[-1]} digits; this "
                        f"CodeEmbedding has {self.num_digits}.")
    valid = codes >= 0
    rows = jnp.clip(codes, 0, self.codebook_size - 1)
    digits = jnp.arange(self.num_digits)
    vectors = self.embedding[digits, rows]  # [..., D, features]
    vectors = vectors * valid[..., None]
    count = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1)
    return jnp.sum(vectors, axis=-2) / count

  def table(self) -> Array:
    """The table `[num_digits, codebook_size, features]`."""
    return self.embedding

  def catalog(self, codes: Array) -> Array:
    """`__call__` for a whole catalog `[num_items, num_digits]`, digit by
    digit: memory `num_items x features`, not `x num_digits` as well."""
    return catalog_vectors(self.embedding, codes)


def catalog_vectors(table: Array, codes: Array) -> Array:
  """Mean code vectors `[num_items, features]` of a table `[D, M, F]`.

  The same vectors as `CodeEmbedding.__call__` (negative codes are missing
  digits, an item with none gets zeros), accumulated over digits with a
  loop so that no `[num_items, D, F]` array is built.

  Args:
    table: float `[num_digits, codebook_size, features]`.
    codes: int `[num_items, num_digits]`.

  Returns:
    float32 `[num_items, features]`.
  """
  codes = jnp.asarray(codes, jnp.int32)
  if codes.ndim != 2 or codes.shape[1] != table.shape[0]:
    raise ConfigError(f"codes have shape {codes.shape}; the table has "
                      f"{table.shape[0]} digits.")
  valid = codes >= 0
  rows = jnp.clip(codes, 0, table.shape[1] - 1)

  def add(d, acc):
    slab = jax.lax.dynamic_index_in_dim(table, d, axis=0, keepdims=False)
    col = jax.lax.dynamic_index_in_dim(rows, d, axis=1, keepdims=False)
    ok = jax.lax.dynamic_index_in_dim(valid, d, axis=1, keepdims=False)
    return acc + jnp.take(slab, col, axis=0) * ok[:, None]

  init = jnp.zeros((codes.shape[0], table.shape[-1]), jnp.float32)
  total = jax.lax.fori_loop(0, table.shape[0], add, init)
  count = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1)
  return total / count


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


def check_config_fields(config: Any, *, positive: tuple[str, ...] = (),
                        rates: tuple[str, ...] = (),
                        choices: Mapping[str, tuple[str, ...]] | None = None
                        ) -> None:
  """Validates a model config's fields by kind (the `__post_init__` checks).

  Also checks that `num_heads` divides `hidden_dim` when the config has
  both.

  Args:
    config: a config dataclass; its class name starts each message.
    positive: integer fields that must be >= 1.
    rates: dropout-like fields that must lie in [0, 1).
    choices: field -> the values it may take.

  Raises:
    ConfigError: the first field out of range, naming it and the fix.
  """
  owner = type(config).__name__
  for name in positive:
    if int(getattr(config, name)) < 1:
      raise ConfigError(f"{owner}.{name} must be >= 1, got "
                        f"{getattr(config, name)!r}.")
  hidden = getattr(config, "hidden_dim", None)
  heads = getattr(config, "num_heads", None)
  if hidden is not None and heads is not None and hidden % heads:
    raise ConfigError(f"{owner}.hidden_dim={hidden} must be divisible by "
                      f"num_heads={heads}.")
  for name in rates:
    if not 0.0 <= getattr(config, name) < 1.0:
      raise ConfigError(f"{owner}.{name} must be in [0, 1), got "
                        f"{getattr(config, name)}.")
  for name, allowed in (choices or {}).items():
    if getattr(config, name) not in allowed:
      raise ConfigError(f"{owner}.{name}={getattr(config, name)!r}; use one "
                        f"of {allowed}.")


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

  LEARN's and LITE's sequence encoder: positions counted from each row's
  first real item, then `num_layers` shared pre-LN `Block`s (fan-in
  initialisation, no dropout inside the FFN, LayerNorm epsilon 1e-6) and a
  final LayerNorm. Runs saved before it used `Block` (flat parameter names)
  restore through `upgrade_legacy_blocks`.

  Attributes:
    d_model: width.
    num_layers: blocks.
    num_heads: attention heads.
    mlp_dim: MLP hidden width.
    dropout_rate: dropout on the inputs, attention weights and residuals.
    max_length: position table size.
  """

  d_model: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float
  max_length: int

  def block_config(self) -> BlockConfig:
    """The `Block` settings of this stack."""
    return BlockConfig(
        hidden_dim=self.d_model, num_heads=self.num_heads,
        mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.dropout_rate, activation="gelu",
        layer_norm_epsilon=1e-6, norm="pre", kernel_init="fan_in",
        mlp_dropout=False)

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
    bias = jnp.where(attention_mask(valid), 0.0,
                     _NEG_INF)[:, None].astype(jnp.float32)
    cfg = self.block_config()
    for i in range(self.num_layers):
      x = Block(cfg, name=f"layer_{i}")(x, bias, deterministic)
    return layer_norm(cfg, "final_norm")(x)


# The flat parameter names of the block LEARN and LITE used before `Block`.
_LEGACY_BLOCK_NAMES = {
    "attention_norm": ("pre_attention_norm",),
    "query": ("attention", "query"), "key": ("attention", "key"),
    "value": ("attention", "value"), "out": ("attention", "out"),
    "mlp_norm": ("pre_mlp_norm",),
    "wi": ("mlp", "wi"), "wo": ("mlp", "wo"),
}


def upgrade_legacy_blocks(params: Any) -> Any:
  """Renames old flat block parameters to `Block`'s names.

  Runs of LEARN and LITE saved before both moved onto the shared `Block`
  stored each layer as `{attention_norm, query, key, value, out, mlp_norm,
  wi, wo}`; `Block` nests them as `attention/*`, `mlp/*` and
  `pre_*_norm`. The values are unchanged: the old block computed the same
  function. Trees without old blocks are returned as they are.

  Args:
    params: a parameter tree (nested mappings of arrays).

  Returns:
    The tree with every old block renamed.
  """
  if not isinstance(params, Mapping):
    return params
  if set(params) == set(_LEGACY_BLOCK_NAMES):
    out: dict[str, Any] = {}
    for old, path in _LEGACY_BLOCK_NAMES.items():
      node = out
      for name in path[:-1]:
        node = node.setdefault(name, {})
      node[path[-1]] = params[old]
    return out
  return {k: upgrade_legacy_blocks(v) for k, v in params.items()}


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
