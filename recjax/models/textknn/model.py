"""Text nearest neighbours: the items most similar in text to the last one.

A baseline with no training: an item's score is the cosine similarity of
its frozen text embedding (e.g. MiniLM, `recjax.embed`) to that of the
user's most recent item,

  score(i | history) = scale * cos(e_i, e_last),

with `scale` a fixed logit scale (ranking does not depend on it). It is the
bar of text-based zero-shot ranking (VQ-Rec's zero-shot transfer must
beat it) and the simplest cold-start model: any item with text is scored.
A run trains for 0 steps (`schedules/textknn.gin`): it is validated, saved
and tested as it is. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.datasets.canonical import CanonicalDataset
from recjax.models.base import ItemModel
from recjax.models.layers import check_item_embeddings

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any


def _l2_normalize(x: Array) -> Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True),
                                       1e-24))


class TextKNN(nn.Module):
  """Cosine scores of every item against each history's last item.

  Attributes:
    scale: the initial logit scale (the one parameter).
  """

  scale: float = 20.0

  @nn.compact
  def __call__(self, last_items: Array, table: Array) -> Array:
    """Scores `[batch, num_items]` of histories ending with `last_items`.

    Args:
      last_items: int `[batch]` (-1: an empty history, scored 0).
      table: float `[num_items, d_text]`, L2-normalised rows.

    Returns:
      float32 scores.
    """
    scale = self.param("scale", nn.initializers.constant(self.scale), (),
                       jnp.float32)
    query = jnp.take(table, jnp.maximum(last_items, 0), axis=0)
    query = query * (last_items >= 0)[:, None]
    return scale * query @ table.T


class TextKNNModel(ItemModel):
  """`TextKNN` behind the `ItemModel` contract.

  Attributes:
    module: the network.
    table: float32 `[num_items, d_text]`, the normalised text embeddings.
    num_items: catalog size.
  """

  def __init__(self, item_embeddings: np.ndarray):
    """Builds the model over a frozen text-embedding table."""
    table = np.asarray(item_embeddings, np.float32)
    self.table = table / np.maximum(
        np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    self.module = TextKNN()
    self.num_items = table.shape[0]

  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    shape = tuple(input_shapes.get("input_items", (1, 1)))
    return ((jnp.zeros(shape[:1], jnp.int32), jnp.asarray(self.table)), {})

  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Scaled cosine similarity of every item to the last history item."""
    last = jnp.asarray(batch["input_items"], jnp.int32)[:, -1]
    return self.module.apply({"params": params}, last,
                             jnp.asarray(self.table))

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Full-softmax cross-entropy of the last column's target (only the
    scale could learn; the recipe trains 0 steps)."""
    del dropout_rng
    from recjax.models.losses import softmax_item_loss  # pylint: disable=g-import-not-at-top
    targets = jnp.asarray(batch["target_items"], jnp.int32)[:, -1]
    return softmax_item_loss(self.item_scores(params, batch), targets)


def make_textknn(dataset: CanonicalDataset,
                 item_embeddings: np.ndarray | None = None) -> TextKNNModel:
  """The text nearest-neighbour model of `dataset` (gin: `model_fn`).

  Raises:
    ConfigError: no item embeddings (bind EMBEDDINGS_DIR), or a table of
      another catalog.
  """
  table = check_item_embeddings(item_embeddings, dataset.num_items,
                                "textknn")
  return TextKNNModel(table)
