"""Leave-one-out splits of a canonical dataset.

For a user with chronological items `s[0..n-1]` (n >= 3):

* test: history `s[:n-1]`, target `s[n-1]`;
* validation: history `s[:n-2]`, target `s[n-2]`;
* train: history `s[:n-3]`, target `s[n-3]`, i.e. the whole training
  sequence `s[:n-2]`. Training keeps the history uncapped so the task layer
  can expand it into every prefix (TIGER's protocol) and cap each one.

Validation and test histories keep their last `max_history` items (20 by
default, the protocol of TIGER, LETTER and LC-Rec); None keeps them whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from recjax.datasets.canonical import CanonicalDataset
from recjax.errors import DatasetError

SPLITS = ("train", "validation", "test")
DEFAULT_MAX_HISTORY = 20


@dataclasses.dataclass
class Split:
  """One split: per-user history (CSR) and target.

  Attributes:
    name: 'train', 'validation' or 'test'.
    users: int32 `[num_examples]` dense user indices.
    offsets: int64 `[num_examples + 1]` into `history_flat`.
    history_flat: int32 flat history item indices.
    targets: int32 `[num_examples]` target item indices.
  """

  name: str
  users: np.ndarray
  offsets: np.ndarray
  history_flat: np.ndarray
  targets: np.ndarray

  def __len__(self) -> int:
    return len(self.users)

  def history(self, i: int) -> np.ndarray:
    return self.history_flat[self.offsets[i]:self.offsets[i + 1]]

  def item_counts(self, num_items: int) -> np.ndarray:
    """int64 `[num_items]`: how often each item occurs, histories and
    targets together (in 'train', the training interactions)."""
    return np.bincount(np.concatenate(
        [np.asarray(self.history_flat, np.int64),
         np.asarray(self.targets, np.int64)]), minlength=num_items)

  def examples(self) -> Iterator[dict[str, np.ndarray | int]]:
    """Yields `{'user_index', 'history', 'target'}` per example."""
    for i in range(len(self)):
      yield {"user_index": int(self.users[i]), "history": self.history(i),
             "target": int(self.targets[i])}


def leave_one_out(dataset: CanonicalDataset,
                  max_history: int | None = DEFAULT_MAX_HISTORY
                  ) -> dict[str, Split]:
  """Splits every user's sequence by leave-one-out.

  Args:
    dataset: the canonical dataset; every user needs at least 3 items.
    max_history: cap on validation/test histories (most recent kept).

  Returns:
    `{'train': Split, 'validation': Split, 'test': Split}`.

  Raises:
    DatasetError: a user with fewer than 3 interactions.
  """
  lengths = dataset.lengths
  short = np.flatnonzero(lengths < 3)
  if len(short):
    u = int(short[0])
    raise DatasetError(
        f"{dataset.name}: user {dataset.user_ids[u]!r} has "
        f"{int(lengths[u])} interactions; leave-one-out needs at least 3 "
        f"({len(short)} such users). Preprocess with min_history=3.")
  if max_history is not None and max_history < 1:
    raise DatasetError(f"max_history must be >= 1 or None, got "
                       f"{max_history}.")
  starts, ends = dataset.offsets[:-1], dataset.offsets[1:]
  users = np.arange(dataset.num_users, dtype=np.int32)
  out = {}
  for name, drop, cap in (("train", 3, None), ("validation", 2, max_history),
                          ("test", 1, max_history)):
    hist_end = ends - drop
    hist_start = starts if cap is None else np.maximum(starts, hist_end - cap)
    hist_len = hist_end - hist_start
    offsets = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    # Gather all history positions at once: position = start + (k - offset).
    pos = (np.arange(offsets[-1], dtype=np.int64) -
           np.repeat(offsets[:-1], hist_len) + np.repeat(hist_start, hist_len))
    out[name] = Split(name=name, users=users, offsets=offsets,
                      history_flat=dataset.items_flat[pos],
                      targets=dataset.items_flat[hist_end])
  return out
