"""Full-ranking evaluation of generative models with constrained decoding.

`RankingEvaluator` decodes the top-K items of every user with beam search
restricted to the catalog trie (so every recommendation is a real item) and
scores them against the held-out target with `recjax.metrics`. With
`exclude_seen=True` each user's history is excluded *inside* the beam search
(the trie drops prefixes whose every completion was seen), so the user still
gets K unseen items rather than a post-filtered shorter list.

Batches are dicts of numpy arrays with `encoder_input_tokens`, `target_item`
(int) and, for exclusion, `seen_items` (every item the user saw before the
target, int, padded with -1; materialised validation/test splits have it) or
else `history_items` (the input window only). An optional boolean `mask`
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
from recjax.models.tiger import EncoderDecoderModel
from recjax.trie import ItemTrie

PyTree = Any
# The whole history before the target (exclusion); `history_items` is the
# model's input window (the last `max_history` items).
SEEN_ITEMS = "seen_items"
HISTORY_ITEMS = "history_items"


def excluded_items(batch: Mapping[str, np.ndarray]) -> np.ndarray:
  """The items to exclude for each row: `seen_items`, else `history_items`.

  Raises:
    KeyError: the batch has neither feature.
  """
  for key in (SEEN_ITEMS, HISTORY_ITEMS):
    if key in batch:
      return np.asarray(batch[key])
  raise KeyError(f"exclude_seen needs a {SEEN_ITEMS!r} or {HISTORY_ITEMS!r} "
                 f"feature; the batch has {sorted(batch)}.")


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
      batch's `seen_items`, else its `history_items`).
    ks: cut-offs of Recall@K / NDCG@K.
  """

  num_decodes: int = 20
  exclude_seen: bool = False
  ks: tuple[int, ...] = (1, 5, 10, 20)


class RankingEvaluator:
  """Top-K recommendation metrics of an encoder-decoder model."""

  def __init__(self, model: EncoderDecoderModel, trie: ItemTrie,
               config: EvalConfig = EvalConfig()):
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
