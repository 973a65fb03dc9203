"""LEARN-style dual encoder: frozen text item embeddings, shared causal towers.

LEARN (Jia et al., Kuaishou, "Knowledge Adaptation from Large Language Model
to Recommendation for Practical Industrial Application") embeds every item's
text once with a frozen language model and trains only a preference-alignment
network on top of those content embeddings, as twin towers:

* the **user tower** runs a causal Transformer over the history's item
  embeddings (projected to `d_model`, plus learned positions); the user
  vector after item `j` is the output at position `j`;
* the **item tower** runs the *same* Transformer (shared weights) over a
  length-1 sequence holding the item's own projected embedding;
* a learned tower embedding (user / item) is added to the Transformer
  inputs (`tower_embedding=True`, a recjax addition): without it a one-item
  history's user vector would be exactly that item's item vector;
* both vectors are L2-normalised and trained with an in-batch softmax:
  `logits = logit_scale * user . item`, each example's target item is its
  positive and the other examples' targets are its negatives (LEARN uses
  `logit_scale = 20`). In-batch "negatives" that are the same item as the
  positive are masked out, so duplicate targets in a batch are not pushed
  apart from themselves.

The frozen table `[num_items, d_text]` (e.g. MiniLM vectors from
`recjax.embed`) is a constant held by `DualEncoderModel`, gathered outside
the Flax module and passed into `module.apply`; it is not in `params`, so the
optimizer, the gradients and the checkpoints never see it.

Positions are counted from the first real (non-padding) item of a row, so a
prefix gets the same position ids whether it is part of a longer training
row or an evaluation history of its own: with the causal mask, the user
vector at training position `j` is exactly the vector the model computes at
inference time for the history ending at `j`. The item tower's single item
sits at position 0.

Training uses every position that has a target (`train_positions="all"`:
the `[batch, length]` targets are flattened into one in-batch pool) or only
the last column (`"last"`). Retrieval (`item_scores`) runs the item tower
over the whole catalog on device in one pass and returns the scaled dot
products, i.e. the softmax logits of the training loss over the catalog.

No TensorFlow.
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
from recjax.datasets.canonical import CanonicalDataset
from recjax.errors import ConfigError
from recjax.models.base import Batch
from recjax.models.base import ItemModel
from recjax.models.layers import CausalTransformer
from recjax.models.layers import check_item_embeddings
from recjax.models.layers import check_tower_sizes
from recjax.models.layers import dense_init
from recjax.models.layers import logical
from recjax.models.losses import in_batch_softmax_loss
from recjax.models.losses import l2_normalize

Array = jax.Array
PyTree = Any

TRAIN_POSITIONS = ("all", "last")
_TOWERS = ("user", "item")


@dataclasses.dataclass(frozen=True)
class DualEncoderConfig:
  """Hyper-parameters of the LEARN dual encoder.

  The tower sizes are recjax's defaults for Amazon/MovieLens-scale data
  (LEARN's industrial model is larger); `logit_scale = 20` is LEARN's.

  Attributes:
    d_model: width of the shared Transformer and of the user/item vectors.
    num_layers: causal Transformer blocks.
    num_heads: attention heads (divide `d_model`).
    mlp_dim: hidden width of each block's MLP.
    dropout_rate: dropout on the inputs, attention weights and residuals.
    max_length: learned position table size (longest history).
    logit_scale: multiplies the cosine similarities (softmax logits).
    train_positions: "all" (every position with a target joins the
      in-batch pool) or "last" (only the last column's target).
    tower_embedding: add a learned per-tower vector (user / item) to the
      Transformer inputs. Without it the towers are literally the same
      function, so the user vector of a one-item history equals that
      item's own item vector (cosine 1): the history's last item would top
      every such ranking and training positions with a one-item history
      could never rank their target first when that item is in the batch.
  """

  d_model: int = 128
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  dropout_rate: float = 0.1
  max_length: int = 50
  logit_scale: float = 20.0
  train_positions: str = "all"
  tower_embedding: bool = True

  def __post_init__(self):
    check_tower_sizes("DualEncoderConfig", self.d_model, self.num_layers,
                      self.num_heads, self.mlp_dim, self.dropout_rate,
                      self.max_length)
    if not self.logit_scale > 0:
      raise ConfigError("DualEncoderConfig.logit_scale must be > 0, got "
                        f"{self.logit_scale}.")
    if self.train_positions not in TRAIN_POSITIONS:
      raise ConfigError(
          f"DualEncoderConfig.train_positions={self.train_positions!r}: use "
          f"one of {TRAIN_POSITIONS}.")


# -- the dual encoder ----------------------------------------------------------


class DualEncoderModule(nn.Module):
  """Projection of frozen text vectors + the shared causal Transformer.

  Attributes:
    config: the hyper-parameters.
  """

  config: DualEncoderConfig

  def setup(self):
    cfg = self.config
    self.projection = nn.Dense(
        cfg.d_model, name="projection",
        kernel_init=logical(dense_init(), (None, "embed")),
        bias_init=logical(nn.initializers.zeros, ("embed",)))
    self.encoder = CausalTransformer(
        cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.mlp_dim,
        cfg.dropout_rate, cfg.max_length, name="encoder")
    if cfg.tower_embedding:
      self.tower_table = self.param(
          "tower_embedding",
          logical(nn.initializers.normal(0.02), (None, "embed")),
          (len(_TOWERS), cfg.d_model), jnp.float32)

  def __call__(self, text_vectors: Array, valid: Array, tower: str = "user",
               enable_dropout: bool = False) -> Array:
    """L2-normalised tower outputs at every position.

    Args:
      text_vectors: float `[batch, length, d_text]` frozen item vectors
        (zeros at padding).
      valid: bool `[batch, length]`.
      tower: "user" or "item" (selects the tower embedding, if any).
      enable_dropout: training mode.

    Returns:
      float32 `[batch, length, d_model]`, unit norm.
    """
    cfg = self.config
    if tower not in _TOWERS:
      raise ConfigError(f"tower={tower!r}: use one of {_TOWERS}.")
    x = self.projection(text_vectors.astype(jnp.float32))
    if cfg.tower_embedding:
      x = x + self.tower_table[_TOWERS.index(tower)]
    x = self.encoder(x, valid, deterministic=not enable_dropout)
    return l2_normalize(x)


class DualEncoderModel(ItemModel):
  """LEARN twin towers over a frozen item-embedding table.

  Attributes:
    config: the hyper-parameters.
    module: the `DualEncoderModule`.
    num_items: catalog size.
    text_embeddings: the frozen table, float32 `[num_items, d_text]` on
      device (a constant, not a parameter).
  """

  def __init__(self, item_embeddings: np.ndarray,
               config: DualEncoderConfig = DualEncoderConfig()):
    """Builds the model.

    Args:
      item_embeddings: float `[num_items, d_text]` frozen text vectors.
      config: the hyper-parameters.
    """
    table = np.asarray(item_embeddings, np.float32)
    if table.ndim != 2:
      raise ConfigError(f"item_embeddings must be [num_items, d_text], got "
                        f"shape {table.shape}.")
    self.config = config
    self.num_items = int(table.shape[0])
    self.module = DualEncoderModule(config)
    self.text_embeddings = jnp.asarray(table)

  # -- towers ------------------------------------------------------------------

  def _encode(self, params: PyTree, items: Array, tower: str,
              dropout_rng: Array | None) -> Array:
    items = jnp.asarray(items, jnp.int32)
    valid = items >= 0
    vectors = jnp.take(self.text_embeddings, jnp.maximum(items, 0), axis=0)
    vectors = jnp.where(valid[..., None], vectors, 0.0)
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, vectors, valid, tower,
                             enable_dropout=dropout_rng is not None,
                             rngs=rngs)

  def user_vectors(self, params: PyTree, input_items: Array,
                   dropout_rng: Array | None = None) -> Array:
    """User-tower outputs after every history position.

    Args:
      params: model parameters.
      input_items: int `[batch, length]`, right-aligned, -1 padded.
      dropout_rng: enables dropout when given.

    Returns:
      float32 `[batch, length, d_model]`, unit norm; the last column is the
      user vector for predicting the next item.
    """
    return self._encode(params, input_items, "user", dropout_rng)

  def item_vectors(self, params: PyTree, items: Array | None = None,
                   dropout_rng: Array | None = None) -> Array:
    """Item-tower outputs (the shared Transformer over one item).

    Args:
      params: model parameters.
      items: int `[n]` item ids (-1 gives a padding vector); None: the whole
        catalog in one pass.
      dropout_rng: enables dropout when given.

    Returns:
      float32 `[n, d_model]` (or `[num_items, d_model]`), unit norm.
    """
    if items is None:
      items = jnp.arange(self.num_items, dtype=jnp.int32)
    items = jnp.asarray(items, jnp.int32)
    return self._encode(params, items[:, None], "item", dropout_rng)[:, 0]

  @property
  def max_length(self) -> int:
    """Longest history the position table covers."""
    return self.config.max_length

  def export_item_vectors(self, params: PyTree) -> np.ndarray:
    """The catalog's item vectors, float32 numpy `[num_items, d_model]`.

    Rows are unit norm; `item_scores` is `logit_scale * user . item`.

    Args:
      params: model parameters.

    Returns:
      The item tower output of every item, in item-index order.
    """
    return np.asarray(jax.jit(self.item_vectors)(params))

  def export_item_embeddings(self, params: PyTree,
                             path: str | os.PathLike[str]) -> pathlib.Path:
    """Writes `export_item_vectors(params)` to a `.npy` file atomically.

    `recjax.train_items` calls this with the best parameters, so a LEARN
    run leaves its item-tower vectors (for nearest-neighbour serving) next
    to its checkpoints.

    Args:
      params: model parameters.
      path: destination `.npy` file.

    Returns:
      The path written.
    """
    return io_utils.save_npy_atomic(path, self.export_item_vectors(params))

  # -- the T5X contract --------------------------------------------------------

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """In-batch softmax loss of a training batch.

    Args:
      params: model parameters.
      batch: `input_items` and `target_items`, int `[batch, length]`.
      dropout_rng: dropout key (None: deterministic).

    Returns:
      `(loss, metrics)`, see `in_batch_softmax_loss`.
    """
    user_rng = item_rng = None
    if dropout_rng is not None:
      user_rng, item_rng = jax.random.split(dropout_rng)
    users = self.user_vectors(params, batch["input_items"], user_rng)
    targets = jnp.asarray(batch["target_items"], jnp.int32)
    if targets.shape != users.shape[:2]:
      raise ConfigError(f"target_items shape {targets.shape} differs from "
                        f"input_items shape {users.shape[:2]}.")
    if self.config.train_positions == "last":
      users, targets = users[:, -1], targets[:, -1]
    else:
      users = users.reshape(-1, users.shape[-1])
      targets = targets.reshape(-1)
    items = self.item_vectors(params, targets, item_rng)
    return in_batch_softmax_loss(users, items, targets,
                                 self.config.logit_scale)

  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """`logit_scale * user . item` for every catalog item.

    Args:
      params: model parameters.
      batch: needs `input_items` `[batch, length]`.

    Returns:
      float32 `[batch, num_items]` logits.
    """
    users = self.user_vectors(params, batch["input_items"])[:, -1]
    items = self.item_vectors(params)
    return self.config.logit_scale * jnp.dot(users, items.T)

  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if "input_items" not in input_shapes:
      raise ConfigError("input_shapes needs 'input_items' [batch, length], "
                        f"got keys {sorted(input_shapes)}.")
    length = int(input_shapes["input_items"][-1])
    d_text = int(self.text_embeddings.shape[1])
    return ((jnp.zeros((1, length, d_text), jnp.float32),
             jnp.ones((1, length), bool)), {})


def make_dual_encoder(dataset: CanonicalDataset,
                      item_embeddings: np.ndarray | None,
                      config: DualEncoderConfig = DualEncoderConfig()
                      ) -> DualEncoderModel:
  """Builds the LEARN dual encoder for a dataset (the gin `model_fn`).

  Args:
    dataset: the canonical dataset (its catalog size is checked).
    item_embeddings: frozen text vectors `[num_items, d_text]` from the
      embed stage.
    config: the hyper-parameters.

  Returns:
    The model.

  Raises:
    ConfigError: no embeddings, or a table that does not match the catalog.
  """
  table = check_item_embeddings(item_embeddings, dataset.num_items,
                                "the LEARN dual encoder")
  return DualEncoderModel(table, config)
