"""Item-to-item transition baseline (first-order Markov chain).

`TransitionModel.fit` counts, over the training sequences (each user's
items before the validation target), how often item `b` directly follows
item `a`: `C[a, b]`. A user whose history ends `..., h[-2], h[-1]` gets

    score(b) = sum_{j=1..m} decay ** (j - 1) * C[h[-j], b]

over the last `m = max_history` items; `decay = 0` (the default) keeps
only the last item, the "most frequent successor" of a first-order Markov
chain. Training popularity breaks ties (it adds at most 1e-9 to a score)
and fills the list where the history has fewer than K successors, so the
list always holds K items. Nothing is learned by gradient descent; a
catalog of 12k items and 22k users ranks in seconds on a CPU. `evaluate`
runs the leave-one-out protocol end to end (decay chosen on validation).

It is the sequential counterpart of the most-popular baseline: on the
Amazon data sets of `benchmarks/quality.py` a first-order chain comes close
to a tuned SASRec, and every learned sequential model should be read
against it. No TensorFlow, no JAX.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from recjax import metrics as metrics_lib
from recjax.datasets.canonical import CanonicalDataset
from recjax.datasets.splits import Split
from recjax.datasets.splits import leave_one_out
from recjax.errors import ConfigError
from recjax.models.base import CountModel

# Popularity adds at most this much to a score: a tie-break only.
_TIE_BREAK = 1e-9


@dataclasses.dataclass(frozen=True)
class MarkovConfig:
  """Scoring of `TransitionModel`.

  Attributes:
    decay: weight of the j-th most recent history item is `decay**(j-1)`;
      0 scores by the last item only.
    max_history: most recent history items scored (at least 1).
  """

  decay: float = 0.0
  max_history: int = 20

  def __post_init__(self):
    if not 0.0 <= self.decay <= 1.0:
      raise ConfigError(f"MarkovConfig.decay={self.decay} must be in [0, 1] "
                        "(0: the last item only).")
    if self.max_history < 1:
      raise ConfigError(f"MarkovConfig.max_history={self.max_history} must "
                        "be >= 1.")


class TransitionModel(CountModel):
  """Transition counts of the training sequences, and top-K lists."""

  def __init__(self, counts: sparse.csr_matrix, popularity: np.ndarray,
               config: MarkovConfig | None = None):
    """Wraps fitted counts.

    Args:
      counts: `[num_items, num_items]` `C[a, b]`, b directly after a.
      popularity: `[num_items]` training interaction counts.
      config: scoring; None = `MarkovConfig()`.

    Raises:
      ValueError: shapes that disagree.
    """
    num_items = len(popularity)
    if counts.shape != (num_items, num_items):
      raise ValueError(f"counts {counts.shape} must be [{num_items}, "
                       f"{num_items}] (one row and column per item).")
    self.counts = sparse.csr_matrix(counts, dtype=np.float64)
    self.popularity = np.asarray(popularity, np.float64)
    self.config = config or MarkovConfig()
    self.num_items = num_items
    self._prior = _TIE_BREAK * self.popularity / (self.popularity.max() + 1)

  @classmethod
  def fit(cls, train: Split, num_items: int,
          config: MarkovConfig | None = None) -> TransitionModel:
    """Counts the transitions and items of the training split.

    Args:
      train: the leave-one-out training split (history + target is each
        user's training sequence).
      num_items: catalog size.
      config: scoring; None = `MarkovConfig()`.

    Returns:
      The fitted model.
    """
    sources, dests, items = [], [], []
    for i in range(len(train)):
      seq = np.append(train.history(i), train.targets[i]).astype(np.int64)
      sources.append(seq[:-1])
      dests.append(seq[1:])
      items.append(seq)
    src = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    dst = np.concatenate(dests) if dests else np.zeros(0, np.int64)
    counts = sparse.coo_matrix(
        (np.ones(len(src)), (src, dst)),
        shape=(num_items, num_items)).tocsr()  # Duplicates are summed.
    popularity = np.bincount(
        np.concatenate(items) if items else np.zeros(0, np.int64),
        minlength=num_items)
    return cls(counts, popularity, config)

  def state(self) -> dict[str, np.ndarray]:
    """The counts (CSR arrays), popularity and scoring config."""
    c = self.counts
    return {"data": c.data, "indices": c.indices, "indptr": c.indptr,
            "popularity": self.popularity,
            "decay": np.float64(self.config.decay),
            "max_history": np.int64(self.config.max_history)}

  @classmethod
  def from_state(cls, state: Mapping[str, np.ndarray]) -> TransitionModel:
    """The model `state()` describes."""
    n = len(state["popularity"])
    counts = sparse.csr_matrix(
        (state["data"], state["indices"], state["indptr"]), shape=(n, n))
    return cls(counts, state["popularity"],
               MarkovConfig(float(state["decay"]),
                            int(state["max_history"])))

  def with_config(self, config: MarkovConfig) -> TransitionModel:
    """The same counts scored under another config."""
    return TransitionModel(self.counts, self.popularity, config)

  def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
    """float64 `[len(histories), num_items]` scores (tie-break included).

    An empty history scores by popularity alone (the tie-break).

    Args:
      histories: each user's items, oldest first.

    Raises:
      ValueError: an item outside the catalog.
    """
    m, decay = self.config.max_history, self.config.decay
    rows, cols, weights = [], [], []
    for u, history in enumerate(histories):
      h = np.asarray(history, np.int64)[::-1][:m]  # Most recent first.
      if not h.size:  # No transitions to score: popularity order.
        continue
      if h.min() < 0 or h.max() >= self.num_items:
        raise ValueError(f"history {u} holds item {int(h.max())} or "
                         f"{int(h.min())}, outside [0, {self.num_items}).")
      w = decay ** np.arange(len(h)) if decay > 0 else np.eye(1, len(h))[0]
      keep = w > 0
      rows.append(np.full(int(keep.sum()), u))
      cols.append(h[keep])
      weights.append(w[keep])
    if not rows:
      return np.tile(self._prior, (len(histories), 1))
    user_weights = sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows),
                                   np.concatenate(cols))),
        shape=(len(histories), self.num_items))
    return (user_weights @ self.counts).toarray() + self._prior

  def candidate_scores(self, histories: Sequence[np.ndarray],
                       candidates: np.ndarray,
                       batch_size: int = 1024) -> np.ndarray:
    """Transition scores of given candidates (e.g. a generative beam).

    Args:
      histories: each user's history (oldest first).
      candidates: int `[len(histories), n]` items; -1 slots score 0.
      batch_size: users scored at once.

    Returns:
      float64 `[len(histories), n]`: the weighted transition counts, without
      the popularity tie-break.

    Raises:
      ValueError: `candidates` with another number of rows.
    """
    candidates = np.asarray(candidates, np.int64)
    if candidates.ndim != 2 or len(candidates) != len(histories):
      raise ValueError(f"candidates {candidates.shape} must be "
                       f"[{len(histories)}, n] (one row per history).")
    out = np.zeros(candidates.shape, np.float64)
    for start in range(0, len(histories), batch_size):
      stop = min(start + batch_size, len(histories))
      s = self.scores(histories[start:stop]) - self._prior
      rows = candidates[start:stop]
      got = np.take_along_axis(s, np.maximum(rows, 0), axis=1)
      out[start:stop] = np.where(rows >= 0, got, 0.0)
    return out


# History decays tried on validation by `evaluate` (0: the last item only).
DECAYS = (0.0, 0.25, 0.5, 0.75, 1.0)


def evaluate(dataset: CanonicalDataset, decays: Sequence[float] = DECAYS,
             k: int = 20, max_history: int = 20) -> dict[str, float]:
  """Fits on the training sequences, picks the decay, scores the test split.

  The leave-one-out protocol of every model here: counts from the items
  before each user's validation target, the decay with the best
  validation NDCG@10 (ties: the smaller decay), then test under both
  history policies.

  Args:
    dataset: the dataset (every user has at least 3 items).
    decays: candidate `MarkovConfig.decay` values.
    k: list length (capped at the catalog size).
    max_history: most recent history items scored.

  Returns:
    `test/<metric>` (all items) and `test_excl/<metric>` (each user's
    whole history excluded) of `recjax.metrics.ranking_metrics`,
    `validation/ndcg@10/decay=<d>` for every candidate and `markov/decay`.

  Raises:
    ConfigError: no or invalid decays, or lists shorter than 10.
  """
  if not decays:
    raise ConfigError("evaluate needs at least one decay.")
  if min(k, dataset.num_items) < 10:
    raise ConfigError(
        f"evaluate picks the decay by NDCG@10, so it needs lists of >= 10 "
        f"items: k={k}, {dataset.name!r} has {dataset.num_items} items.")
  splits = leave_one_out(dataset, max_history=None)
  model = TransitionModel.fit(splits["train"], dataset.num_items)
  k = min(k, dataset.num_items)

  def scores(split: str, decay: float, exclude: bool) -> dict[str, float]:
    part = splits[split]
    histories = [part.history(i) for i in range(len(part))]
    lists = model.with_config(MarkovConfig(decay, max_history)).recommend(
        histories, k, exclude=histories if exclude else None)
    return metrics_lib.ranking_metrics(lists, part.targets,
                                       num_items=dataset.num_items)

  out: dict[str, float] = {}
  for decay in decays:
    out[f"validation/ndcg@10/decay={decay:g}"] = scores(
        "validation", decay, False)["ndcg@10"]
  best = max(decays, key=lambda d: (out[f"validation/ndcg@10/decay={d:g}"],
                                    -d))
  out["markov/decay"] = float(best)
  for prefix, exclude in (("test", False), ("test_excl", True)):
    out.update({f"{prefix}/{key}": float(value)
                for key, value in scores("test", best, exclude).items()})
  return out


def fit_run(dataset: CanonicalDataset, decays: Sequence[float] = DECAYS,
            k: int = 20, max_history: int = 20
            ) -> tuple[TransitionModel, dict[str, float]]:
  """`evaluate`, plus the fitted model with the decay it chose.

  The count family's factory: `recjax.train_counts` saves the model and
  the metrics into a run directory.

  Args:
    dataset: the dataset.
    decays: candidate decays (chosen on validation NDCG@10).
    k: list length.
    max_history: most recent history items scored.

  Returns:
    `(model, evaluate(...)'s metrics)`.
  """
  metrics = evaluate(dataset, decays, k=k, max_history=max_history)
  splits = leave_one_out(dataset, max_history=None)
  model = TransitionModel.fit(
      splits["train"], dataset.num_items,
      MarkovConfig(metrics["markov/decay"], max_history))
  return model, metrics
