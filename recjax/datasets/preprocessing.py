"""Preprocessing of raw interaction logs into a canonical dataset.

Sources produce `Interactions`: flat arrays of (user, item, timestamp,
rating) in file order, with original string ids. `preprocess` then applies, in
this order: the rating threshold, chronological ordering, removal of
consecutive repeats, iterative k-core filtering, the minimum history length,
and dense re-indexing of users and items. Every filter logs how much it
removed, and those counts are stored in the dataset metadata.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from recjax.datasets import canonical
from recjax.errors import DatasetError


@dataclasses.dataclass
class Interactions:
  """Raw interactions in file order, as read by a source.

  Attributes:
    user_ids: `[n]` original user id of each interaction.
    item_ids: `[n]` original item id of each interaction.
    timestamps: int64 `[n]`, or None when the source has no time (its order
      within a user is then taken as chronological).
    ratings: float32 `[n]`, or None.
    source: file name(s), for messages.
  """

  user_ids: np.ndarray
  item_ids: np.ndarray
  timestamps: np.ndarray | None
  ratings: np.ndarray | None
  source: str

  def __len__(self) -> int:
    return len(self.user_ids)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
  """How raw interactions become sequences.

  Attributes:
    kcore: iterative k-core: keep users and items with at least `kcore`
      interactions, repeated until stable. 0 disables it.
    min_rating: drop interactions rated below this (e.g. 4 for "positive"
      only). None keeps all.
    dedupe_consecutive: remove an interaction whose item equals the user's
      previous item.
    min_history: users with fewer interactions are dropped (and counted);
      leave-one-out needs at least 3.
    order: 'timestamp' sorts each user's interactions by time (stable, so
      ties keep file order); 'file' keeps file order and requires the
      timestamps, if any, to be non-decreasing.
    drop_unused_items: remove items that no remaining user interacted with.
  """

  kcore: int = 0
  min_rating: float | None = None
  dedupe_consecutive: bool = False
  min_history: int = 3
  order: str = "timestamp"
  drop_unused_items: bool = True

  def __post_init__(self):
    if self.order not in ("timestamp", "file"):
      raise DatasetError(f"order must be 'timestamp' or 'file', got "
                         f"{self.order!r}.")
    if self.kcore < 0 or self.min_history < 1:
      raise DatasetError("kcore must be >= 0 and min_history >= 1.")


def _kcore_mask(users: np.ndarray, items: np.ndarray, k: int,
                keep: np.ndarray) -> np.ndarray:
  """Iterates the k-core filter on integer-coded users/items."""
  keep = keep.copy()
  num_users = int(users.max()) + 1 if len(users) else 0
  num_items = int(items.max()) + 1 if len(items) else 0
  while True:
    uc = np.bincount(users[keep], minlength=num_users)
    ic = np.bincount(items[keep], minlength=num_items)
    new = keep & (uc[users] >= k) & (ic[items] >= k)
    if new.sum() == keep.sum():
      return new
    keep = new


def _natural_unique(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """np.unique with numeric order when every id is a decimal number."""
  uniques, codes = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
  if len(uniques) and all(s.isdigit() for s in uniques):
    perm = np.argsort(uniques.astype(np.int64), kind="stable")
    rank = np.empty_like(perm)
    rank[perm] = np.arange(len(perm))
    uniques, codes = uniques[perm], rank[codes]
  return uniques, codes.reshape(-1)


def preprocess(name: str, inter: Interactions, items: canonical.ItemTable,
               config: PreprocessConfig,
               unknown_items: str = "error") -> canonical.CanonicalDataset:
  """Turns raw interactions into a canonical dataset.

  Args:
    name: dataset name.
    inter: the raw interactions.
    items: the item table of the source (original ids and text); items that
      no kept interaction uses are dropped if `config.drop_unused_items`.
    config: preprocessing options.
    unknown_items: 'error' raises on an interaction whose item is not in the
      item table; 'drop' drops such interactions and logs the count.

  Returns:
    The canonical dataset, users and items densely re-indexed in order of
    first appearance in the item table (items) and of original id (users).

  Raises:
    DatasetError: unknown items (with 'error'), an empty result, or
      non-monotonic timestamps with order='file'.
  """
  removed: dict[str, int] = {}
  n0 = len(inter)
  if n0 == 0:
    raise DatasetError(f"{inter.source}: no interactions were read. Check "
                       "that the file is the right one and not empty.")
  item_index = {iid: i for i, iid in enumerate(items.original_ids)}
  item_codes = np.fromiter((item_index.get(i, -1) for i in inter.item_ids),
                           dtype=np.int64, count=n0)
  unknown = item_codes < 0
  if unknown.any():
    first = int(np.flatnonzero(unknown)[0])
    if unknown_items == "error":
      raise DatasetError(
          f"{inter.source}: interaction {first} (user "
          f"{str(inter.user_ids[first])!r}) refers to item "
          f"{str(inter.item_ids[first])!r}, which is not in the item table "
          f"({int(unknown.sum())} such interactions). Add the item to the "
          "item file, or pass unknown_items='drop' to skip them.")
    removed["unknown_item"] = int(unknown.sum())
    logging.warning("%s: dropped %d interactions with unknown items (first: "
                    "%r).", inter.source, unknown.sum(),
                    str(inter.item_ids[first]))
  keep = ~unknown
  if config.min_rating is not None:
    if inter.ratings is None:
      raise DatasetError(f"{inter.source}: min_rating={config.min_rating} "
                         "needs ratings, and this source has none. Set "
                         "min_rating=None.")
    low = keep & (inter.ratings < config.min_rating)
    removed["below_min_rating"] = int(low.sum())
    keep &= ~low

  user_uniques, user_codes = _natural_unique(inter.user_ids)
  # Chronological order within each user; stable so ties keep file order.
  idx = np.flatnonzero(keep)
  if inter.timestamps is not None and config.order == "timestamp":
    order = np.lexsort((idx, inter.timestamps[idx], user_codes[idx]))
  else:
    order = np.lexsort((idx, user_codes[idx]))
  idx = idx[order]
  if inter.timestamps is not None and config.order == "file":
    ucodes = user_codes[idx]
    offsets = np.concatenate(
        [[0], np.flatnonzero(np.diff(ucodes)) + 1, [len(idx)]])
    canonical.check_monotonic(offsets, inter.timestamps[idx],
                              [str(user_uniques[c]) for c in
                               ucodes[offsets[:-1]]], inter.source)

  if config.dedupe_consecutive and len(idx) > 1:
    u, it = user_codes[idx], item_codes[idx]
    rep = np.concatenate([[False], (u[1:] == u[:-1]) & (it[1:] == it[:-1])])
    removed["consecutive_repeat"] = int(rep.sum())
    idx = idx[~rep]

  mask = np.ones(len(idx), dtype=bool)
  if config.kcore > 0:
    mask = _kcore_mask(user_codes[idx], item_codes[idx], config.kcore, mask)
    removed["kcore"] = int((~mask).sum())
  u = user_codes[idx]
  counts = np.bincount(u[mask], minlength=len(user_uniques))
  short = mask & (counts[u] < config.min_history)
  removed["short_history_users"] = int(
      ((counts > 0) & (counts < config.min_history)).sum())
  removed["short_history_interactions"] = int(short.sum())
  mask &= ~short
  idx = idx[mask]
  if len(idx) == 0:
    raise DatasetError(
        f"{inter.source}: no user is left after preprocessing (kcore="
        f"{config.kcore}, min_rating={config.min_rating}, min_history="
        f"{config.min_history}); every user and item vanished. Lower kcore "
        "or min_history, or check the input.")
  for what, count in removed.items():
    if count:
      logging.info("%s: removed %d (%s).", inter.source, count, what)

  # Dense re-indexing.
  kept_items = item_codes[idx]
  if config.drop_unused_items:
    used = np.unique(kept_items)
    removed["unused_items"] = len(items) - len(used)
    remap = np.full(len(items), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    table = items.take(used)
    kept_items = remap[kept_items]
  else:
    table = items
  ucodes = user_codes[idx]
  present, dense_users = np.unique(ucodes, return_inverse=True)
  lengths = np.bincount(dense_users, minlength=len(present))
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  # idx is sorted by user code, so dense users are already contiguous.
  ts = None
  if inter.timestamps is not None:
    ts = inter.timestamps[idx].astype(np.int64)
  metadata: dict[str, Any] = {
      "source": inter.source,
      "preprocess": dataclasses.asdict(config),
      "removed": removed,
      "raw_interactions": n0,
  }
  return canonical.CanonicalDataset(
      name=name, items=table,
      user_ids=[str(user_uniques[c]) for c in present],
      offsets=offsets, items_flat=kept_items.astype(np.int32),
      timestamps_flat=ts, metadata=metadata)
