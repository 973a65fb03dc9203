"""Full-ranking evaluation of every family: one `RankingEvaluator`.

`RankingEvaluator` ranks the top-K items of every user and scores them
against the held-out target with `recjax.metrics`:

* generative models decode with a beam search restricted to the catalog
  trie, so every recommendation is a real item; with `exclude_seen=True`
  each user's history is excluded *inside* the beam search (the trie drops
  prefixes whose every completion was seen), so the user still gets K
  unseen items rather than a post-filtered shorter list;
* item-level models (`ItemModel`) score the whole catalog in one forward
  pass and take a top-K with the same exclusion set; both history policies
  come from one pass (`predict_both`).

Batches are dicts of numpy arrays with the model's inputs
(`encoder_input_tokens` or `input_items`), `target_item` (int) and, for
exclusion, `excluded_items` (`tokens.EXCLUDED_ITEMS`: every item the user
saw before the target, -1 padded). Batches written before that name read
their `seen_items`, else their `history_items`. An optional boolean `mask`
marks real rows of a padded last batch. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recjax import metrics as metrics_lib
from recjax import tokens
from recjax.errors import ConfigError
from recjax.models.base import BaseModel
from recjax.models.base import ItemModel
from recjax.models.base import top_k_items
from recjax.trie import ItemTrie

PyTree = Any
Batch = Mapping[str, np.ndarray]
EXCLUDED_ITEMS = tokens.EXCLUDED_ITEMS
# Names of the exclusion set in batches written before it had one name:
# materialised TIGER splits (`seen_items`), then a TIGER task's input window
# or an older item-level batch (`history_items`).
LEGACY_EXCLUSION_NAMES = ("seen_items", "history_items")


def excluded_items(batch: Mapping[str, np.ndarray]) -> np.ndarray:
  """The items to exclude for each row (`excluded_items`, or a legacy name).

  Raises:
    KeyError: the batch has no exclusion set.
  """
  for key in (EXCLUDED_ITEMS,) + LEGACY_EXCLUSION_NAMES:
    if key in batch:
      return np.asarray(batch[key])
  raise KeyError(f"exclude_seen needs an {EXCLUDED_ITEMS!r} feature (the "
                 f"items to exclude per row); the batch has "
                 f"{sorted(batch)}.")


class Predictions(NamedTuple):
  """Ranked lists of an evaluation, one row per user (best first).

  Attributes:
    items: int32 `[users, num_decodes]` item indices, -1 where the beam
      found no item.
    scores: float32 `[users, num_decodes]` ranking scores (-inf = none).
    targets: int32 `[users]` held-out items.
  """

  items: np.ndarray
  scores: np.ndarray
  targets: np.ndarray


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Decoding and metric settings.

  Attributes:
    num_decodes: beams = recommendations per user.
    exclude_seen: exclude each user's history inside the beam (the
      batch's `excluded_items`).
    ks: cut-offs of Recall@K / NDCG@K.
  """

  num_decodes: int = 20
  exclude_seen: bool = False
  ks: tuple[int, ...] = (1, 5, 10, 20)


class _BeamRanker:
  """Constrained beam search of a generative model over the catalog trie."""

  def __init__(self, model: BaseModel, trie: ItemTrie, config: EvalConfig):
    self.model = model
    self.trie = trie
    self.config = config
    self._decode = jax.jit(functools.partial(self._decode_impl,
                                             num_decodes=config.num_decodes))

  def _decode_impl(self, params: PyTree, trie: ItemTrie,
                   encoder_input_tokens: jax.Array,
                   excluded: jax.Array | None, *, num_decodes: int
                   ) -> tuple[jax.Array, jax.Array]:
    _, aux = self.model.predict_batch_with_aux(
        params, {"encoder_input_tokens": encoder_input_tokens},
        num_decodes=num_decodes, trie=trie, excluded_items=excluded)
    return aux["items"], aux["scores"]

  def recommend(self, params: PyTree, batch: Mapping[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-K item indices (-1 = none) and scores for a batch."""
    excluded = None
    if self.config.exclude_seen:
      excluded = jnp.asarray(excluded_items(batch), jnp.int32)
    items, scores = self._decode(params, self.trie,
                                 jnp.asarray(batch["encoder_input_tokens"]),
                                 excluded)
    return np.asarray(items), np.asarray(scores)

  def predict(self, params: PyTree,
              batches: Iterable[Mapping[str, np.ndarray]]) -> Predictions:
    """Ranked lists of every (unmasked) row of `batches`, in batch order."""
    items, scores, targets = [], [], []
    for batch in batches:
      rec, score = self.recommend(params, batch)
      mask = np.asarray(batch.get("mask", np.ones(len(rec), bool)), bool)
      items.append(rec[mask])
      scores.append(score[mask])
      targets.append(np.asarray(batch["target_item"])[mask])
    k = self.config.num_decodes
    if not items:
      return Predictions(np.zeros((0, k), np.int32),
                         np.zeros((0, k), np.float32), np.zeros(0, np.int32))
    return Predictions(np.concatenate(items).astype(np.int32),
                       np.concatenate(scores).astype(np.float32),
                       np.concatenate(targets).astype(np.int32))

  def evaluate(self, params: PyTree,
               batches: Iterable[Mapping[str, np.ndarray]]
               ) -> dict[str, float]:
    """Metrics over all (unmasked) rows of `batches`."""
    return self.metrics(self.predict(params, batches))

  def metrics(self, predictions: Predictions) -> dict[str, float]:
    """`recjax.metrics.ranking_metrics` of `predict`'s lists."""
    if not len(predictions.targets):
      return {}
    return metrics_lib.ranking_metrics(
        predictions.items, predictions.targets, ks=self.config.ks,
        num_items=self.trie.num_items)

  def predict_both(self, params: PyTree,
                   batches: Iterable[Mapping[str, np.ndarray]]
                   ) -> tuple[Predictions, Predictions]:
    """Ranked lists under both history policies (two beam searches)."""
    batches = list(batches)
    out = []
    for exclude in (False, True):
      ranker = _BeamRanker(self.model, self.trie, dataclasses.replace(
          self.config, exclude_seen=exclude))
      out.append(ranker.predict(params, batches))
    return out[0], out[1]


def _rows(batch: Batch, n: int) -> np.ndarray:
  """The real rows of a padded batch (its `mask`, else all)."""
  return np.asarray(batch.get("mask", np.ones(n, bool)), bool)


class _CatalogRanker:
  """Full-catalog ranking of an `ItemModel` (one forward pass a batch)."""

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
                 excluded: jax.Array
                 ) -> tuple[tuple[jax.Array, jax.Array],
                            tuple[jax.Array, jax.Array]]:
    if not self.model.exact_ranking:  # E.g. RPG's graph decoding.
      return (self._predict_impl(params, input_items, None),
              self._predict_impl(params, input_items, excluded))
    scores = self.model.item_scores(params, {"input_items": input_items})
    return (top_k_items(scores, self.k),
            top_k_items(scores, self.k, excluded))

  def recommend(self, params: PyTree, batch: Batch
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-K item indices (-1 = none left) and scores of a batch.

    Args:
      params: model parameters.
      batch: `input_items`, and `excluded_items` when `exclude_seen`.

    Returns:
      int32 / float32 `[batch, K]`, best first.
    """
    excluded = None
    if self.config.exclude_seen:
      excluded = jnp.asarray(excluded_items(batch), jnp.int32)
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
      batches: evaluation batches with `excluded_items`.

    Returns:
      `(all_items, seen_excluded)`: one row per real row of `batches`, in
      batch order; items -1 (score -inf) where none is left.
    """
    lists: list[list[np.ndarray]] = [[], [], [], []]
    targets = []
    for batch in batches:
      (a, sa), (b, sb) = self._both(
          params, jnp.asarray(batch["input_items"], jnp.int32),
          jnp.asarray(excluded_items(batch), jnp.int32))
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


class RankingEvaluator:
  """Top-K recommendation metrics of any model under one protocol.

  Generative models decode with a beam search constrained to the catalog
  `trie` (every recommendation is a real item); item-level models
  (`ItemModel`) rank the whole catalog from one forward pass. Either way
  `exclude_seen` removes each user's history (the batch's
  `excluded_items`) inside the ranking, so a user still gets K items.
  """

  def __init__(self, model: BaseModel, trie: ItemTrie | None = None,
               config: EvalConfig | None = None):
    """Builds the ranking (compiled on first use).

    Args:
      model: a generative model or an `ItemModel`.
      trie: the catalog constraint; generative models need it.
      config: list length, history policy and cut-offs.

    Raises:
      ConfigError: a generative model without a trie.
    """
    config = config or EvalConfig()
    self.model = model
    self.config = config
    if isinstance(model, ItemModel):
      self._impl: Any = _CatalogRanker(model, config)
    else:
      if trie is None:
        raise ConfigError(
            f"{type(model).__name__} generates semantic IDs: pass the "
            "catalog trie (recjax.trie.ItemTrie.build(codes, layout)).")
      self._impl = _BeamRanker(model, trie, config)

  def recommend(self, params: PyTree, batch: Mapping[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-K item indices (-1 = none left) and scores of a batch."""
    return self._impl.recommend(params, batch)

  def predict(self, params: PyTree,
              batches: Iterable[Mapping[str, np.ndarray]]) -> Predictions:
    """Ranked lists of every real row of `batches`, in batch order."""
    if isinstance(self._impl, _BeamRanker):
      return self._impl.predict(params, batches)
    every, unseen = self._impl.predict_both(params, batches)
    return unseen if self.config.exclude_seen else every

  def predict_both(self, params: PyTree,
                   batches: Iterable[Mapping[str, np.ndarray]]
                   ) -> tuple[Predictions, Predictions]:
    """`(all_items, seen_excluded)` ranked lists."""
    return self._impl.predict_both(params, batches)

  def metrics(self, predictions: Predictions) -> dict[str, float]:
    """`recjax.metrics.ranking_metrics` of a `Predictions`."""
    return self._impl.metrics(predictions)

  def evaluate(self, params: PyTree,
               batches: Iterable[Mapping[str, np.ndarray]]
               ) -> dict[str, float]:
    """Metrics under the config's history policy over all real rows."""
    return self._impl.evaluate(params, batches)

  def evaluate_both(self, params: PyTree,
                    batches: Iterable[Mapping[str, np.ndarray]],
                    prefix: str = "test") -> dict[str, float]:
    """`{prefix}/<metric>` (all items) and `{prefix}_excl/<metric>`."""
    every, unseen = self.predict_both(params, batches)
    if not len(every.targets):
      return {}
    out = {f"{prefix}/{k}": v for k, v in self.metrics(every).items()}
    out.update({f"{prefix}_excl/{k}": v
                for k, v in self.metrics(unseen).items()})
    return out
