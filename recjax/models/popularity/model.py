"""Most-popular baseline: every user gets the catalog's most frequent items.

`PopularityModel.fit` counts each item's occurrences in the training
sequences (each user's items before the validation target); every history
scores the catalog by those counts, ties going to the smaller item index.
It is the floor under every model of the results table: a model that does
not beat it has learned nothing about users. No TensorFlow, no JAX.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np

from recjax import metrics as metrics_lib
from recjax.datasets.canonical import CanonicalDataset
from recjax.datasets.splits import Split
from recjax.datasets.splits import leave_one_out
from recjax.models.base import CountModel


class PopularityModel(CountModel):
  """Item counts of the training sequences, the same list for everyone."""

  def __init__(self, popularity: np.ndarray):
    """Wraps fitted counts.

    Args:
      popularity: `[num_items]` training interaction counts.

    Raises:
      ValueError: counts that are not a non-empty 1-D array.
    """
    popularity = np.asarray(popularity, np.float64)
    if popularity.ndim != 1 or not popularity.size:
      raise ValueError(f"popularity must be a non-empty [num_items] array, "
                       f"got shape {popularity.shape}.")
    self.popularity = popularity
    self.num_items = int(popularity.size)

  @classmethod
  def fit(cls, train: Split, num_items: int) -> PopularityModel:
    """Counts the items of the training split (histories and targets).

    Args:
      train: the leave-one-out training split.
      num_items: catalog size.

    Returns:
      The fitted model.
    """
    return cls(train.item_counts(num_items))

  def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
    """The counts, one row per history (histories are not read)."""
    return np.broadcast_to(self.popularity,
                           (len(histories), self.num_items)).copy()

  def state(self) -> dict[str, np.ndarray]:
    """The counts."""
    return {"popularity": self.popularity}

  @classmethod
  def from_state(cls, state: Mapping[str, np.ndarray]) -> PopularityModel:
    """The model `state()` describes."""
    return cls(state["popularity"])


def evaluate(dataset: CanonicalDataset, k: int = 20) -> dict[str, float]:
  """Fits on the training sequences and scores the test split.

  Args:
    dataset: the dataset.
    k: list length (capped at the catalog size).

  Returns:
    `test/<metric>` (all items) and `test_excl/<metric>` (each user's whole
    history excluded) of `recjax.metrics.ranking_metrics`.
  """
  splits = leave_one_out(dataset, max_history=None)
  model = PopularityModel.fit(splits["train"], dataset.num_items)
  test = splits["test"]
  histories = [test.history(i) for i in range(len(test))]
  k = min(k, dataset.num_items)
  out: dict[str, float] = {}
  for prefix, exclude in (("test", None), ("test_excl", histories)):
    lists = model.recommend(histories, k, exclude=exclude)
    out.update({f"{prefix}/{key}": float(value) for key, value in
                metrics_lib.ranking_metrics(
                    lists, test.targets,
                    num_items=dataset.num_items).items()})
  return out


def fit_run(dataset: CanonicalDataset, k: int = 20
            ) -> tuple[PopularityModel, dict[str, float]]:
  """`evaluate`, plus the fitted model (the count family's factory).

  Args:
    dataset: the dataset.
    k: list length.

  Returns:
    `(model, evaluate(...)'s metrics)`.
  """
  splits = leave_one_out(dataset, max_history=None)
  model = PopularityModel.fit(splits["train"], dataset.num_items)
  return model, evaluate(dataset, k=k)
