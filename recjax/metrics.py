"""Ranking metrics for leave-one-out recommendation, and a popularity baseline.

Every example has exactly one relevant item (its held-out target), and a
model returns a ranked list of item indices, best first. With `rank` the
1-based position of the target in that list (infinite when absent):

  recall@k      mean over examples of [rank <= k]  (= hit rate@k)
  ndcg@k        mean of 1 / log2(rank + 1) if rank <= k, else 0 (the ideal
                DCG of one relevant item is 1)
  mrr           mean of 1 / rank over the whole returned list, 0 if absent
  invalid_rate  fraction of returned slots that hold -1, the marker of an
                empty beam or of tokens that decode to no item (over all
                `N x K` slots of the prediction matrix)
  coverage@k    distinct valid items among the top k of all examples,
                divided by `num_items` (only when `num_items` is given)

Metrics at a cut-off `k` larger than the width `K` of the prediction matrix
are not reported, so a value is never labelled with a cut-off the model did
not rank. A target that appears twice in a list counts at its first
position. No TensorFlow: this module is part of the core.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

import numpy as np

from recjax.tokens import NO_ITEM

DEFAULT_KS = (1, 5, 10, 20)
INVALID = NO_ITEM


def _check_inputs(predictions: np.ndarray, targets: np.ndarray,
                  num_items: int | None) -> tuple[np.ndarray, np.ndarray]:
  predictions = np.asarray(predictions)
  targets = np.asarray(targets)
  if predictions.ndim != 2:
    raise ValueError("predictions must be item indices [num_examples, K], "
                     f"got shape {predictions.shape}.")
  if targets.shape != predictions.shape[:1]:
    raise ValueError(f"targets must have shape [{predictions.shape[0]}] to "
                     f"match predictions, got {targets.shape}.")
  for name, x in (("predictions", predictions), ("targets", targets)):
    if x.size and not np.issubdtype(x.dtype, np.integer):
      raise ValueError(f"{name} must be integer item indices, got dtype "
                       f"{x.dtype}.")
  predictions = predictions.astype(np.int64)
  targets = targets.astype(np.int64)
  if np.any(predictions < INVALID):
    raise ValueError("predictions hold item indices >= 0 or -1 (invalid), "
                     f"got {int(predictions.min())}.")
  if np.any(targets < 0):
    raise ValueError(f"targets must be item indices >= 0, got "
                     f"{int(targets.min())}.")
  if num_items is not None:
    if num_items <= 0:
      raise ValueError(f"num_items must be positive, got {num_items}.")
    for name, x in (("predictions", predictions), ("targets", targets)):
      if x.size and int(x.max()) >= num_items:
        raise ValueError(f"{name} hold item {int(x.max())} but the catalog "
                         f"has num_items={num_items}.")
  return predictions, targets


def target_ranks(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """1-based rank of each target in its prediction row; 0 where absent.

  Args:
    predictions: int `[N, K]` item indices, best first; -1 = invalid.
    targets: int `[N]` target item indices.

  Returns:
    int64 `[N]` ranks (1..K), 0 when the target is not in the row.
  """
  predictions, targets = _check_inputs(predictions, targets, None)
  hits = predictions == targets[:, None]
  found = hits.any(axis=1)
  return np.where(found, hits.argmax(axis=1) + 1, 0).astype(np.int64)


def ranking_metrics(predictions: np.ndarray, targets: np.ndarray,
                    ks: Sequence[int] = DEFAULT_KS,
                    num_items: int | None = None) -> dict[str, float]:
  """Recall@k, NDCG@k, MRR, invalid-ID rate and coverage@k.

  Args:
    predictions: int `[N, K]` ranked item indices per example, best first;
      -1 marks an empty or invalid slot.
    targets: int `[N]` the held-out item of each example.
    ks: cut-offs; those larger than `K` are skipped.
    num_items: catalog size; enables `coverage@k` and range checks.

  Returns:
    `{'recall@k', 'ndcg@k', 'coverage@k' (with num_items), 'mrr',
    'invalid_rate', 'num_examples'}` as floats. With no examples every
    metric is 0.

  Raises:
    ValueError: shapes, dtypes or item indices out of range.
  """
  predictions, targets = _check_inputs(predictions, targets, num_items)
  n, width = predictions.shape
  if any(int(k) <= 0 for k in ks):
    raise ValueError(f"cut-offs must be positive, got {tuple(ks)}.")
  ranks = target_ranks(predictions, targets)
  found = ranks > 0
  denom = max(n, 1)
  safe_ranks = np.maximum(ranks, 1).astype(np.float64)  # 0 = absent
  out: dict[str, float] = {}
  for k in sorted({int(k) for k in ks}):
    if k > width:
      continue
    hit = found & (ranks <= k)
    out[f"recall@{k}"] = float(hit.sum() / denom)
    gains = np.where(hit, 1.0 / np.log2(safe_ranks + 1.0), 0.0)
    out[f"ndcg@{k}"] = float(gains.sum() / denom)
    if num_items is not None:
      top = predictions[:, :k]
      distinct = np.unique(top[top != INVALID]).size
      out[f"coverage@{k}"] = float(distinct / num_items)
  rr = np.where(found, 1.0 / safe_ranks, 0.0)
  out["mrr"] = float(rr.sum() / denom)
  out["invalid_rate"] = float(np.mean(predictions == INVALID)
                              if predictions.size else 0.0)
  out["num_examples"] = float(n)
  return out


def pad_ranked_lists(ranked: Iterable[Sequence[int]],
                     width: int | None = None) -> np.ndarray:
  """Stacks ranked lists of different lengths, padding with -1.

  Args:
    ranked: one list of item indices per example.
    width: output width; default the longest list. Longer lists are cut.

  Returns:
    int64 `[N, width]`.
  """
  rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in ranked]
  if width is None:
    width = max((len(r) for r in rows), default=0)
  out = np.full((len(rows), width), INVALID, dtype=np.int64)
  for i, r in enumerate(rows):
    r = r[:width]
    out[i, :len(r)] = r
  return out


def item_counts(item_indices: np.ndarray, num_items: int) -> np.ndarray:
  """Interactions per item, int64 `[num_items]` (e.g. over training data)."""
  item_indices = np.asarray(item_indices, dtype=np.int64).reshape(-1)
  if item_indices.size and (item_indices.min() < 0 or
                            item_indices.max() >= num_items):
    raise ValueError(f"item indices must lie in [0, {num_items}).")
  return np.bincount(item_indices, minlength=num_items)


def popularity_baseline(train_item_counts: np.ndarray, k: int = 20,
                        exclude: Sequence[Iterable[int]] | None = None
                        ) -> np.ndarray:
  """The most popular items, optionally without each user's seen items.

  Items are ranked by count, descending; ties go to the smaller item index.

  Args:
    train_item_counts: `[num_items]` interaction counts (see `item_counts`).
    k: list length.
    exclude: optional per-example item sets (e.g. each user's history) to
      leave out of that example's list.

  Returns:
    int64 `[k]` without `exclude`; `[len(exclude), k]` with it. Slots beyond
    the catalog (too few items left) hold -1.
  """
  counts = np.asarray(train_item_counts)
  if counts.ndim != 1:
    raise ValueError(f"train_item_counts must be 1-D, got {counts.shape}.")
  if k <= 0:
    raise ValueError(f"k must be positive, got {k}.")
  order = np.lexsort((np.arange(counts.size), -counts.astype(np.float64)))
  if exclude is None:
    top = np.full((k,), INVALID, dtype=np.int64)
    top[:min(k, order.size)] = order[:k]
    return top
  exclude = [np.unique(np.asarray(list(e), dtype=np.int64)) for e in exclude]
  longest = max((e.size for e in exclude), default=0)
  candidates = order[:k + longest]
  out = np.full((len(exclude), k), INVALID, dtype=np.int64)
  for i, seen in enumerate(exclude):
    keep = candidates[~np.isin(candidates, seen)][:k]
    out[i, :keep.size] = keep
  return out
