"""Item-level models: the contract of sequential and dual-encoder towers.

The generative family (`recjax.models.EncoderDecoderModel`) reads semantic-ID
tokens. The families here read *item indices* (0..num_items-1) and score the
whole catalog at once: SASRec (`recjax.sequential`), the LEARN dual encoder
(`recjax.dual_encoder`) and LITE-LLM4Rec (`recjax.lite`). They share the
batch layout below, a full-catalog top-K with per-user exclusion sets, and
the T5X `BaseModel` contract, so the same `Trainer`, checkpoints and metrics
serve them.

Batches are dicts of int32 numpy / jax arrays (`ITEM_PAD` = -1 pads):

  input_items     [batch, length]  history, right-aligned (most recent item
                                   in the last column), left-padded
  target_items    [batch, length]  training: the item that follows each
                                   input position, -1 where there is no loss
  target_item     [batch]          evaluation: the held-out next item
  history_items   [batch, m]       evaluation: items to exclude for the
                                   "seen items excluded" protocol
  mask            [batch] bool     evaluation: real rows of a padded batch

No TensorFlow.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.errors import ConfigError
from recjax.models import BaseModel

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any

ITEM_PAD = -1


def exclusion_mask(num_items: int, excluded_items: Array) -> Array:
  """Boolean `[batch, num_items]`, True for each user's excluded items.

  Args:
    num_items: catalog size.
    excluded_items: int `[batch, m]`, `ITEM_PAD`-padded.

  Returns:
    The mask (padding entries exclude nothing).
  """
  excluded_items = jnp.asarray(excluded_items, jnp.int32)
  b = excluded_items.shape[0]
  valid = excluded_items >= 0
  idx = jnp.where(valid, excluded_items, num_items)  # Out of range: dropped.
  mask = jnp.zeros((b, num_items), bool)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], idx.shape)
  return mask.at[rows, idx].set(True, mode="drop")


def top_k_items(scores: Array, k: int, excluded_items: Array | None = None,
                allowed: Array | None = None) -> tuple[Array, Array]:
  """Best `k` items per row of a full-catalog score matrix, on device.

  Args:
    scores: float `[batch, num_items]`.
    k: results per row (`k <= num_items`).
    excluded_items: optional int `[batch, m]` (`ITEM_PAD`-padded) per-user
      exclusion sets.
    allowed: optional bool `[num_items]` (or `[batch, num_items]`) catalog
      subset (in stock, a category).

  Returns:
    `(items, scores)`, int32 / float32 `[batch, k]`, best first; when fewer
    than `k` items remain, the rest are -1 with score -inf.

  Raises:
    ConfigError: `k` larger than the catalog.
  """
  num_items = scores.shape[-1]
  if not 0 < k <= num_items:
    raise ConfigError(f"k={k} must be in [1, num_items={num_items}].")
  scores = scores.astype(jnp.float32)
  if excluded_items is not None:
    scores = jnp.where(exclusion_mask(num_items, excluded_items), -jnp.inf,
                       scores)
  if allowed is not None:
    scores = jnp.where(jnp.asarray(allowed, bool), scores, -jnp.inf)
  top, idx = jax.lax.top_k(scores, k)
  idx = jnp.where(jnp.isneginf(top), ITEM_PAD, idx).astype(jnp.int32)
  return idx, top


def softmax_item_loss(logits: Array, targets: Array
                      ) -> tuple[Array, dict[str, Array]]:
  """Full-softmax cross-entropy over the catalog at every target position.

  Args:
    logits: float `[..., num_items]`.
    targets: int `[...]`, `ITEM_PAD` where there is no loss.

  Returns:
    `(loss, metrics)`: the mean over targets; metrics `loss`,
    `cross_ent_loss` (sum), `accuracy` (correct top-1, summed) and
    `num_tokens` (number of targets), the keys the trainer logs.
  """
  logits = logits.astype(jnp.float32)
  targets = jnp.asarray(targets, jnp.int32)
  weights = (targets >= 0).astype(jnp.float32)
  safe = jnp.maximum(targets, 0)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
  xent = (log_z - target_logit) * weights
  num = jnp.sum(weights)
  loss = jnp.sum(xent) / jnp.maximum(num, 1.0)
  correct = (jnp.argmax(logits, axis=-1) == safe).astype(jnp.float32)
  return loss, {"loss": loss, "cross_ent_loss": jnp.sum(xent),
                "accuracy": jnp.sum(correct * weights), "num_tokens": num}


class ItemModel(BaseModel):
  """A model that scores every catalog item as the user's next item.

  Subclasses set `self.module` (a `flax.linen` module), `self.num_items`,
  implement `loss_fn`, `item_scores` and `_init_inputs`; this class gives
  them top-K prediction with exclusion, `score_batch`, initialisation and
  logical axes.
  """

  module: nn.Module
  num_items: int

  @abc.abstractmethod
  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Scores of every item as the next one after `input_items`.

    Args:
      params: model parameters.
      batch: needs `input_items`.

    Returns:
      float32 `[batch, num_items]` (higher is better; softmax logits for
      models trained with a softmax loss).
    """

  @abc.abstractmethod
  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """`(args, kwargs)` of `module.init` for a batch of these shapes."""

  # -- initialisation --------------------------------------------------------

  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Initialises the module; returns `{"params": ...}` of plain arrays."""
    del input_types
    args, kwargs = self._init_inputs(input_shapes)
    init = jax.jit(lambda r: self.module.init({"params": r}, *args,
                                              **kwargs))
    return nn.meta.unbox(init(rng))

  def get_logical_axes(self, input_shapes: Mapping[str, Sequence[int]],
                       input_types: Mapping[str, Any] | None = None
                       ) -> PyTree:
    """Logical axis names (`PartitionSpec`s) of the variables, no compute."""
    del input_types
    args, kwargs = self._init_inputs(input_shapes)
    abstract = jax.eval_shape(
        lambda: self.module.init({"params": jax.random.key(0)}, *args,
                                 **kwargs))
    return nn.get_partition_spec(abstract)

  # -- inference ---------------------------------------------------------------

  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Log-softmax score of each row's `target_item`, float32 `[batch]`."""
    log_p = jax.nn.log_softmax(self.item_scores(params, batch), axis=-1)
    target = jnp.asarray(batch["target_item"], jnp.int32)
    return jnp.take_along_axis(log_p, target[:, None], axis=-1)[:, 0]

  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None, *,
                             num_decodes: int = 20,
                             excluded_items: Array | None = None,
                             allowed: Array | None = None
                             ) -> tuple[Array, dict[str, Array]]:
    """Top-`num_decodes` items per user over the whole catalog, best first.

    Args:
      params: model parameters.
      batch: needs `input_items`; `excluded_items` in the batch is used when
        the keyword is not given.
      rng: unused (ranking is deterministic).
      num_decodes: results per user.
      excluded_items: int `[batch, m]` per-user exclusion sets (-1 padded).
      allowed: bool `[num_items]` catalog subset.

    Returns:
      `(items, aux)`: int32 `[batch, num_decodes]` (-1 = none left); aux has
      `items`, `scores` and `valid`.
    """
    del rng
    if excluded_items is None and "excluded_items" in batch:
      excluded_items = batch["excluded_items"]
    items, scores = top_k_items(self.item_scores(params, batch), num_decodes,
                                excluded_items, allowed)
    return items, {"items": items, "scores": scores, "valid": items >= 0}
