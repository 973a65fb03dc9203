"""SASRec (Kang & McAuley, ICDM'18) in `flax.linen`.

A causal Transformer encoder over the item history; the representation at
each position scores every catalog item through the (tied) item embedding:

  x = Dropout(E[item] + P[position]) * valid
  x = x + Dropout(Attention(LN(x)))         } num_layers times (pre-LN,
  x = x + Dropout(FFN(LN(x)))               } as the original SASRec)
  h = LN(x);  logits = h @ E^T              (full catalog)

or, with `norm="post"` (the BERT-style encoder of RecBole's SASRec):

  x = Dropout(LN(E[item] + P[position])) * valid
  x = LN(x + Dropout(Attention(x)))         } num_layers times
  x = LN(x + Dropout(FFN(x)))               }
  h = x;  logits = h @ E^T

Inputs follow `recjax.models.base` (right-aligned, -1 padded); positions
are column slots, so the most recent item always has the last position (as
in the original implementation, which also left-pads), or, with
`positions="first"`, count from each history's first item (RecBole).
Padding columns are zeroed and never attended to, so the output at a real
position depends on the real items up to it only.

Defaults follow RecBole's SASRec, the usual comparison point on the Amazon
datasets of TIGER and LETTER: hidden 64, 2 layers, 2 heads, FFN 256, GELU,
dropout 0.5 on hidden states and attention weights (RecBole's default;
SASRec's paper also uses 0.5 for its sparse Amazon data), normal(0.02)
initialisation and the full-softmax cross-entropy loss (`loss="softmax"`).
`loss="bce"` is the paper's binary cross-entropy with one uniformly sampled
negative per position. Items have no padding row: the embedding table is
`[num_items, hidden]`, so `item_embeddings` can be exported as is (LETTER's
collaborative embeddings). No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax import io_utils
from recjax.datasets import CanonicalDataset
from recjax.errors import ConfigError
from recjax.models.base import ItemModel
from recjax.models.layers import ACTIVATIONS
from recjax.models.layers import Block
from recjax.models.layers import causal_bias
from recjax.models.layers import check_config_fields
from recjax.models.layers import init_normal
from recjax.models.layers import layer_norm
from recjax.models.losses import softmax_item_loss

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any

LOSSES = ("softmax", "bce")
NORMS = ("pre", "post")
POSITIONS = ("recent", "first")
TRAIN_POSITIONS = ("all", "last")


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
  """Hyper-parameters of SASRec.

  Attributes:
    num_items: catalog size (set from the dataset by `make_sasrec`).
    hidden_dim: model width (item and position embedding size).
    num_layers: Transformer blocks.
    num_heads: attention heads (`hidden_dim` must divide evenly).
    mlp_dim: hidden width of the position-wise FFN.
    max_length: longest input (rows of the position embedding).
    dropout_rate: dropout on the embeddings and the sub-block outputs.
    attention_dropout_rate: dropout on the attention weights.
    activation: FFN activation, 'gelu' or 'relu'.
    layer_norm_epsilon: LayerNorm epsilon.
    init_std: std of the normal initialisation of embeddings and kernels.
    loss: 'softmax' (full-catalog cross-entropy) or 'bce' (one sampled
      negative per position).
    norm: 'pre' (LayerNorm before each sub-block and at the output, the
      original SASRec) or 'post' (LayerNorm after each residual sum and on
      the input embeddings, RecBole's SASRec).
    positions: which position-embedding row each column gets: 'recent'
      (the last column is always the last row, as the original SASRec's
      left padding does) or 'first' (a history's first item gets row 0,
      as RecBole's right padding does).
    train_positions: 'all' (a loss at every column with a target, for
      `train_mode="sequences"`) or 'last' (only the last column: the same
      loss for `train_mode="prefixes"`, whose other columns have no target,
      without scoring the catalog at the empty ones).
  """

  num_items: int = 0
  hidden_dim: int = 64
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  max_length: int = 20
  dropout_rate: float = 0.5
  attention_dropout_rate: float = 0.5
  activation: str = "gelu"
  layer_norm_epsilon: float = 1e-8
  init_std: float = 0.02
  loss: str = "softmax"
  norm: str = "pre"
  positions: str = "recent"
  train_positions: str = "all"

  def __post_init__(self):
    check_config_fields(
        self, positive=("hidden_dim", "num_layers", "num_heads", "mlp_dim",
                        "max_length"),
        rates=("dropout_rate", "attention_dropout_rate"),
        choices={"activation": tuple(sorted(ACTIVATIONS)), "loss": LOSSES,
                 "norm": NORMS, "positions": POSITIONS,
                 "train_positions": TRAIN_POSITIONS})

class SASRec(nn.Module):
  """The SASRec network: `__call__` encodes, `logits` scores the catalog."""

  config: SASRecConfig

  def setup(self):
    cfg = self.config
    if cfg.num_items < 1:
      raise ConfigError("SASRecConfig.num_items must be set (make_sasrec "
                        "fills it from the dataset).")
    self.item_embedding = self.param(
        "item_embedding", init_normal(cfg.init_std, ("vocab", "embed")),
        (cfg.num_items, cfg.hidden_dim), jnp.float32)
    self.position_embedding = self.param(
        "position_embedding", init_normal(cfg.init_std, ("length", "embed")),
        (cfg.max_length, cfg.hidden_dim), jnp.float32)
    self.blocks = [Block(cfg, name=f"layer_{i}")
                   for i in range(cfg.num_layers)]
    # Pre-LN normalises the output, post-LN the input embeddings.
    self.final_norm = layer_norm(
        cfg, "final_norm" if cfg.norm == "pre" else "embedding_norm")
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def __call__(self, input_items: Array, enable_dropout: bool = False
               ) -> Array:
    """Hidden states `[batch, length, hidden]` of right-aligned histories.

    Args:
      input_items: int `[batch, length]`, -1 padded, `length <=
        max_length`.
      enable_dropout: training mode.

    Returns:
      float32 hidden states (zero-input rows still give finite values).
    """
    cfg = self.config
    length = input_items.shape[-1]
    if length > cfg.max_length:
      raise ConfigError(f"input_items has {length} columns, more than "
                        f"SASRecConfig.max_length={cfg.max_length}.")
    deterministic = not enable_dropout
    items = jnp.asarray(input_items, jnp.int32)
    valid = items >= 0
    x = jnp.take(self.item_embedding, jnp.maximum(items, 0), axis=0)
    if cfg.positions == "recent":
      x = x + self.position_embedding[cfg.max_length - length:][None]
    else:  # rows count from each history's first (left-most real) item
      num_pad = jnp.sum(~valid, axis=-1, keepdims=True)
      rows = jnp.maximum(jnp.arange(length)[None] - num_pad, 0)
      x = x + jnp.take(self.position_embedding, rows, axis=0)
    if cfg.norm == "post":
      x = self.final_norm(x)
    x = self.dropout(x, deterministic=deterministic)
    x = x * valid[..., None]
    bias = causal_bias(valid)
    for block in self.blocks:
      x = block(x, bias, deterministic)
      x = x * valid[..., None]
    return self.final_norm(x) if cfg.norm == "pre" else x

  def logits(self, hidden: Array) -> Array:
    """Scores of every item, `hidden @ item_embedding^T`."""
    return jnp.einsum("...d,nd->...n", hidden, self.item_embedding)

  def item_vectors(self, items: Array) -> Array:
    """Embedding rows of `items` (clipped into the catalog)."""
    return jnp.take(self.item_embedding, jnp.maximum(items, 0), axis=0)


class SASRecModel(ItemModel):
  """SASRec behind the `ItemModel` contract.

  Attributes:
    module: the `SASRec` network.
    config: its hyper-parameters.
    num_items: catalog size.
    max_length: longest input.
  """

  def __init__(self, config: SASRecConfig):
    """Builds the model (`config.num_items` must be set)."""
    if config.num_items < 2:
      raise ConfigError(f"SASRecConfig.num_items must be >= 2, got "
                        f"{config.num_items}; build the model with "
                        "make_sasrec(dataset).")
    self.config = config
    self.module = SASRec(config)
    self.num_items = config.num_items
    self.max_length = config.max_length

  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    shape = tuple(input_shapes.get("input_items",
                                   (1, self.config.max_length)))
    return (jnp.zeros(shape, jnp.int32),), {"enable_dropout": False}

  def _hidden(self, params: PyTree, input_items: Array,
              dropout_rng: Array | None) -> Array:
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, jnp.asarray(input_items),
                             enable_dropout=dropout_rng is not None,
                             rngs=rngs)

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Next-item loss at every position with a target.

    With `train_positions="last"` only the last column counts (its hidden
    state alone is scored against the catalog).

    Args:
      params: parameters.
      batch: `input_items` and `target_items` (-1 = no loss).
      dropout_rng: enables dropout when given; with `loss='bce'` it also
        draws the negatives (a fixed key when None).

    Returns:
      `(loss, metrics)`: the mean over targets. Metrics `loss`,
      `cross_ent_loss` (sum), `accuracy` and `num_tokens`; for 'softmax'
      accuracy counts targets ranked first over the catalog, for 'bce'
      targets scored above their sampled negative.
    """
    neg_rng = jax.random.key(0)
    if dropout_rng is not None:
      dropout_rng, neg_rng = jax.random.split(dropout_rng)
    hidden = self._hidden(params, batch["input_items"], dropout_rng)
    targets = jnp.asarray(batch["target_items"], jnp.int32)
    if self.config.train_positions == "last":
      hidden, targets = hidden[:, -1], targets[:, -1]
    variables = {"params": params}
    if self.config.loss == "softmax":
      logits = self.module.apply(variables, hidden,
                                 method=SASRec.logits)
      return softmax_item_loss(self.training_logits(logits), targets)
    # One negative per position, uniform over the items != target.
    neg = jax.random.randint(neg_rng, targets.shape, 0, self.num_items - 1)
    neg = neg + (neg >= jnp.maximum(targets, 0))
    pos_vec = self.module.apply(variables, targets,
                                method=SASRec.item_vectors)
    neg_vec = self.module.apply(variables, neg, method=SASRec.item_vectors)
    pos = jnp.sum(hidden * pos_vec, axis=-1)
    negs = jnp.sum(hidden * neg_vec, axis=-1)
    weights = (targets >= 0).astype(jnp.float32)
    xent = (jax.nn.softplus(-pos) + jax.nn.softplus(negs)) * weights
    num = jnp.sum(weights)
    loss = jnp.sum(xent) / jnp.maximum(num, 1.0)
    return loss, {"loss": loss, "cross_ent_loss": jnp.sum(xent),
                  "accuracy": jnp.sum((pos > negs) * weights),
                  "num_tokens": num}

  def hidden_states(self, params: PyTree, input_items: Array) -> Array:
    """Deterministic hidden states `[batch, length, hidden]`."""
    return self._hidden(params, input_items, None)

  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Catalog scores from the representation at the last position."""
    hidden = self._hidden(params, batch["input_items"], None)[:, -1]
    return self.module.apply({"params": params}, hidden,
                             method=SASRec.logits).astype(jnp.float32)

  def item_embeddings(self, params: PyTree) -> np.ndarray:
    """The item embedding table, float32 `[num_items, hidden_dim]`."""
    return np.asarray(jax.device_get(params["item_embedding"]), np.float32)

  def export_item_embeddings(self, params: PyTree,
                             path: str | os.PathLike[str]) -> pathlib.Path:
    """Writes `item_embeddings(params)` to a `.npy` file atomically.

    Args:
      params: parameters.
      path: destination file (e.g. `.../sasrec_item_embeddings.npy`).

    Returns:
      The path written.
    """
    return io_utils.save_npy_atomic(path, self.item_embeddings(params))


def make_sasrec(dataset: CanonicalDataset,
                item_embeddings: np.ndarray | None = None,
                config: SASRecConfig = SASRecConfig()) -> SASRecModel:
  """SASRec over `dataset`'s catalog (gin: `train_items.model_fn`).

  Args:
    dataset: sets `num_items`.
    item_embeddings: ignored (SASRec learns its own item embeddings).
    config: hyper-parameters; `num_items` is overwritten.

  Returns:
    The model.
  """
  del item_embeddings
  return SASRecModel(dataclasses.replace(config,
                                         num_items=dataset.num_items))
