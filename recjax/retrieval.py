"""Full-catalog ranking evaluation of item-level models (`ItemModel`).

`ItemRankingEvaluator` scores every item for every user with one jitted
forward pass, takes the top `num_decodes` (optionally without each user's
`history_items`, the "seen items excluded" protocol) and reports
`recjax.metrics.ranking_metrics` over the real rows of the batches (rows
whose `mask` is False are padding). `evaluate_both` reports both history
policies from one forward pass and two top-Ks; `predict_both` returns
the ranked lists behind them (`recjax.evaluation.Predictions`).

Batches: `input_items` `[b, length]`, `target_item` `[b]`, `history_items`
`[b, m]` (-1 padded; needed for exclusion) and optional `mask` `[b]`; see
`recjax.item_sequences.EvalBatches`. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recjax import metrics as metrics_lib
from recjax.evaluation import EvalConfig
from recjax.evaluation import Predictions
from recjax.models.base import ItemModel
from recjax.models.base import top_k_items

PyTree = Any
Batch = Mapping[str, np.ndarray]


def _rows(batch: Batch, n: int) -> np.ndarray:
  return np.asarray(batch.get("mask", np.ones(n, bool)), bool)


class ItemRankingEvaluator:
  """Recall@K / NDCG@K of an `ItemModel` over the whole catalog."""

  def __init__(self, model: ItemModel, config: EvalConfig | None = None):
    """Builds the jitted ranking functions (compiled on first use).

    Args:
      model: the model.
      config: `num_decodes` (list length, capped at the catalog size),
        `exclude_seen` (policy of `evaluate`/`recommend`) and `ks`; None =
        `EvalConfig()`.
    """
    config = config or EvalConfig()
    self.model = model
    self.config = config
    self.num_items = int(model.num_items)
    self.k = min(int(config.num_decodes), self.num_items)
    self._predict = jax.jit(self._predict_impl)
    self._both = jax.jit(self._both_impl)

  def _predict_impl(self, params: PyTree, input_items: jax.Array,
                    excluded: jax.Array | None
                    ) -> tuple[jax.Array, jax.Array]:
    _, aux = self.model.predict_batch_with_aux(
        params, {"input_items": input_items}, num_decodes=self.k,
        excluded_items=excluded)
    return aux["items"], aux["scores"]

  def _both_impl(self, params: PyTree, input_items: jax.Array,
                 history_items: jax.Array
                 ) -> tuple[tuple[jax.Array, jax.Array],
                            tuple[jax.Array, jax.Array]]:
    scores = self.model.item_scores(params, {"input_items": input_items})
    return (top_k_items(scores, self.k),
            top_k_items(scores, self.k, history_items))

  def recommend(self, params: PyTree, batch: Batch
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-K item indices (-1 = none left) and scores of a batch.

    Args:
      params: model parameters.
      batch: `input_items`, and `history_items` when `exclude_seen`.

    Returns:
      int32 / float32 `[batch, K]`, best first.
    """
    excluded = None
    if self.config.exclude_seen:
      excluded = jnp.asarray(batch["history_items"], jnp.int32)
    items, scores = self._predict(
        params, jnp.asarray(batch["input_items"], jnp.int32), excluded)
    return np.asarray(items), np.asarray(scores)

  def _metrics(self, preds: list[np.ndarray], targets: list[np.ndarray]
               ) -> dict[str, float]:
    if not preds:
      return {}
    return metrics_lib.ranking_metrics(
        np.concatenate(preds), np.concatenate(targets), ks=self.config.ks,
        num_items=self.num_items)

  def evaluate(self, params: PyTree, batches: Iterable[Batch]
               ) -> dict[str, float]:
    """Metrics under the config's history policy over all real rows."""
    preds, targets = [], []
    for batch in batches:
      items, _ = self.recommend(params, batch)
      keep = _rows(batch, len(items))
      preds.append(items[keep])
      targets.append(np.asarray(batch["target_item"])[keep])
    return self._metrics(preds, targets)

  def predict_both(self, params: PyTree, batches: Iterable[Batch]
                   ) -> tuple[Predictions, Predictions]:
    """Ranked lists under both history policies, one forward pass a batch.

    Args:
      params: model parameters.
      batches: evaluation batches with `history_items`.

    Returns:
      `(all_items, seen_excluded)`: one row per real row of `batches`, in
      batch order; items -1 (score -inf) where none is left.
    """
    lists: list[list[np.ndarray]] = [[], [], [], []]
    targets = []
    for batch in batches:
      (a, sa), (b, sb) = self._both(
          params, jnp.asarray(batch["input_items"], jnp.int32),
          jnp.asarray(batch["history_items"], jnp.int32))
      keep = _rows(batch, len(a))
      for out, value in zip(lists, (a, sa, b, sb)):
        out.append(np.asarray(value)[keep])
      targets.append(np.asarray(batch["target_item"])[keep])
    if not targets:
      empty = Predictions(np.zeros((0, self.k), np.int32),
                          np.zeros((0, self.k), np.float32),
                          np.zeros(0, np.int32))
      return empty, empty
    target = np.concatenate(targets).astype(np.int32)
    items, scores, items_x, scores_x = (np.concatenate(v) for v in lists)
    return (Predictions(items.astype(np.int32), scores.astype(np.float32),
                        target),
            Predictions(items_x.astype(np.int32),
                        scores_x.astype(np.float32), target))

  def metrics(self, predictions: Predictions) -> dict[str, float]:
    """`recjax.metrics.ranking_metrics` of a `Predictions`."""
    return self._metrics([predictions.items], [predictions.targets])

  def evaluate_both(self, params: PyTree, batches: Iterable[Batch],
                    prefix: str = "test") -> dict[str, float]:
    """Both history policies from one forward pass per batch.

    Args:
      params: model parameters.
      batches: evaluation batches with `history_items`.
      prefix: metric-name prefix.

    Returns:
      `{prefix}/<metric>` ranking over all items and `{prefix}_excl/<metric>`
      with each user's `history_items` excluded.
    """
    every, unseen = self.predict_both(params, batches)
    if not len(every.targets):
      return {}
    out = {f"{prefix}/{k}": v for k, v in self.metrics(every).items()}
    out.update({f"{prefix}_excl/{k}": v
                for k, v in self.metrics(unseen).items()})
    return out
