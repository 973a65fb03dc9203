"""The canonical dataset: one form for every recommendation source.

A `CanonicalDataset` holds

* an item table: a dense item index `0..num_items-1`, the source's original
  item id, and text fields (`title`, `brand`, `categories`, `description`, and
  any other field the source has), all as strings;
* per-user chronological item sequences: a dense user index
  `0..num_users-1`, the source's original user id, the item indices in time
  order (oldest first) and, when the source has them, integer timestamps.

Sequences are stored CSR-style (`offsets` of shape `[num_users + 1]` into one
flat `items` array), so a dataset of millions of interactions is a handful of
numpy arrays. On disk a dataset is a directory with `meta.json`,
`sequences.npz`, `items.jsonl` and `users.json`; `save` writes it atomically.

This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from recjax.errors import DatasetError
from recjax.io_utils import atomic_directory

# Text fields every item table has (empty strings where the source lacks one).
STANDARD_FIELDS = ("title", "brand", "categories", "description")

_FORMAT_VERSION = 1


@dataclasses.dataclass
class ItemTable:
  """Items with their original ids and text fields.

  Attributes:
    original_ids: `[num_items]` original item ids as strings; the position is
      the dense item index.
    fields: field name -> list of `num_items` strings. Always contains the
      `STANDARD_FIELDS`; sources may add more (e.g. `price`, `year`).
  """

  original_ids: list[str]
  fields: dict[str, list[str]]

  def __post_init__(self):
    n = len(self.original_ids)
    for name in STANDARD_FIELDS:
      self.fields.setdefault(name, [""] * n)
    for name, values in self.fields.items():
      if len(values) != n:
        raise DatasetError(
            f"Item field {name!r} has {len(values)} values for {n} items; "
            "every field needs one value per item.")
    if len(set(self.original_ids)) != n:
      seen = set()
      dup = next(i for i in self.original_ids if i in seen or seen.add(i))
      raise DatasetError(
          f"Item id {dup!r} appears more than once in the item table; item "
          "ids must be unique.")

  def __len__(self) -> int:
    return len(self.original_ids)

  def record(self, index: int) -> dict[str, str]:
    """Returns item `index` as a dict with `item_id` and every text field."""
    rec = {"item_id": self.original_ids[index]}
    rec.update({k: v[index] for k, v in self.fields.items()})
    return rec

  def take(self, indices: np.ndarray) -> ItemTable:
    """Returns a new table with the rows `indices`, in that order."""
    idx = [int(i) for i in indices]
    return ItemTable(
        original_ids=[self.original_ids[i] for i in idx],
        fields={k: [v[i] for i in idx] for k, v in self.fields.items()})


@dataclasses.dataclass
class CanonicalDataset:
  """Per-user chronological sequences over an item table.

  Attributes:
    name: dataset name, e.g. `movielens_100k`.
    items: the item table.
    user_ids: `[num_users]` original user ids as strings.
    offsets: int64 `[num_users + 1]`; user `u`'s items are
      `items_flat[offsets[u]:offsets[u + 1]]`.
    items_flat: int32 `[num_interactions]` dense item indices.
    timestamps_flat: int64 `[num_interactions]` or None when the source has
      no timestamps.
    metadata: free-form provenance (source files, preprocessing config,
      counts removed by each filter).
  """

  name: str
  items: ItemTable
  user_ids: list[str]
  offsets: np.ndarray
  items_flat: np.ndarray
  timestamps_flat: np.ndarray | None = None
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.offsets = np.asarray(self.offsets, dtype=np.int64)
    self.items_flat = np.asarray(self.items_flat, dtype=np.int32)
    if self.timestamps_flat is not None:
      self.timestamps_flat = np.asarray(self.timestamps_flat, dtype=np.int64)
    self.validate()

  # -- sizes -----------------------------------------------------------------

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.items)

  @property
  def num_interactions(self) -> int:
    return int(self.items_flat.shape[0])

  @property
  def lengths(self) -> np.ndarray:
    """int64 `[num_users]` sequence lengths."""
    return np.diff(self.offsets)

  # -- access ----------------------------------------------------------------

  def sequence(self, user: int) -> np.ndarray:
    """Returns user `user`'s item indices, oldest first."""
    return self.items_flat[self.offsets[user]:self.offsets[user + 1]]

  def timestamps(self, user: int) -> np.ndarray | None:
    """Returns user `user`'s timestamps, or None if the source has none."""
    if self.timestamps_flat is None:
      return None
    return self.timestamps_flat[self.offsets[user]:self.offsets[user + 1]]

  def sequences(self) -> Iterator[np.ndarray]:
    """Yields every user's item indices in user order."""
    for u in range(self.num_users):
      yield self.sequence(u)

  def item_counts(self) -> np.ndarray:
    """int64 `[num_items]` number of interactions per item."""
    return np.bincount(self.items_flat, minlength=self.num_items)

  def statistics(self) -> dict[str, float]:
    """Summary statistics, as printed by the dataset stage."""
    lengths = self.lengths
    counts = self.item_counts()
    denom = max(self.num_users * self.num_items, 1)
    return {
        "users": self.num_users,
        "items": self.num_items,
        "interactions": self.num_interactions,
        "density": self.num_interactions / denom,
        "seq_len_min": int(lengths.min()) if len(lengths) else 0,
        "seq_len_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "seq_len_median": float(np.median(lengths)) if len(lengths) else 0.0,
        "seq_len_max": int(lengths.max()) if len(lengths) else 0,
        "item_freq_min": int(counts.min()) if len(counts) else 0,
        "item_freq_max": int(counts.max()) if len(counts) else 0,
        "has_timestamps": self.timestamps_flat is not None,
    }

  def fingerprint(self) -> str:
    """A sha256 over the sequences and item ids; equal data, equal value."""
    h = hashlib.sha256()
    h.update(self.offsets.tobytes())
    h.update(self.items_flat.tobytes())
    h.update("\x00".join(self.items.original_ids).encode())
    h.update("\x00".join(self.user_ids).encode())
    return h.hexdigest()

  # -- checks ----------------------------------------------------------------

  def validate(self) -> None:
    """Checks internal consistency; raises DatasetError naming the problem."""
    where = self.metadata.get("source", self.name)
    if self.offsets.ndim != 1 or len(self.offsets) != self.num_users + 1:
      raise DatasetError(
          f"{where}: offsets has shape {self.offsets.shape}, expected "
          f"[{self.num_users + 1}] for {self.num_users} users.")
    if self.offsets[0] != 0 or self.offsets[-1] != len(self.items_flat):
      raise DatasetError(
          f"{where}: offsets must start at 0 and end at the number of "
          f"interactions ({len(self.items_flat)}).")
    if np.any(np.diff(self.offsets) < 0):
      raise DatasetError(f"{where}: offsets must be non-decreasing.")
    if len(self.items_flat) and (self.items_flat.min() < 0 or
                                 self.items_flat.max() >= self.num_items):
      bad = int(np.flatnonzero((self.items_flat < 0) |
                               (self.items_flat >= self.num_items))[0])
      user = int(np.searchsorted(self.offsets, bad, side="right") - 1)
      raise DatasetError(
          f"{where}: user {self.user_ids[user]!r} refers to item index "
          f"{int(self.items_flat[bad])}, outside the item table of "
          f"{self.num_items} items.")
    if len(set(self.user_ids)) != self.num_users:
      raise DatasetError(f"{where}: user ids must be unique.")
    if self.timestamps_flat is not None:
      if self.timestamps_flat.shape != self.items_flat.shape:
        raise DatasetError(
            f"{where}: {len(self.timestamps_flat)} timestamps for "
            f"{len(self.items_flat)} interactions.")
      check_monotonic(self.offsets, self.timestamps_flat, self.user_ids,
                      where)

  # -- persistence -------------------------------------------------------------

  def save(self, directory: str | os.PathLike[str]) -> pathlib.Path:
    """Writes the dataset to `directory` atomically and returns its path.

    The files are written into a temporary sibling directory that is renamed
    into place at the end, so an interrupted save leaves no partial dataset.

    Args:
      directory: destination; replaced if it exists.

    Returns:
      The destination path.
    """
    dest = pathlib.Path(directory)
    with atomic_directory(dest) as tmp:
      arrays = {"offsets": self.offsets, "items": self.items_flat}
      if self.timestamps_flat is not None:
        arrays["timestamps"] = self.timestamps_flat
      np.savez(tmp / "sequences.npz", **arrays)
      with open(tmp / "items.jsonl", "w", encoding="utf-8") as f:
        for i in range(self.num_items):
          f.write(json.dumps(self.items.record(i), ensure_ascii=False) + "\n")
      with open(tmp / "users.json", "w", encoding="utf-8") as f:
        json.dump(self.user_ids, f)
      meta = {
          "format_version": _FORMAT_VERSION,
          "name": self.name,
          "fields": list(self.items.fields),
          "statistics": self.statistics(),
          "fingerprint": self.fingerprint(),
          "metadata": self.metadata,
      }
      with open(tmp / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True, default=str)
    return dest

  @classmethod
  def load(cls, directory: str | os.PathLike[str]) -> CanonicalDataset:
    """Reads a dataset written by `save`."""
    path = pathlib.Path(directory)
    meta_path = path / "meta.json"
    if not meta_path.exists():
      raise DatasetError(
          f"{path} is not a canonical dataset directory (no meta.json). "
          "Create one with `recjax.datasets.load(...).save(path)`.")
    with open(meta_path, encoding="utf-8") as f:
      meta = json.load(f)
    if meta.get("format_version") != _FORMAT_VERSION:
      raise DatasetError(
          f"{meta_path}: format_version {meta.get('format_version')} is not "
          f"supported (expected {_FORMAT_VERSION}); rebuild the dataset.")
    with np.load(path / "sequences.npz") as z:
      offsets = z["offsets"]
      items_flat = z["items"]
      timestamps = z["timestamps"] if "timestamps" in z else None
    ids, fields = [], {name: [] for name in meta["fields"]}
    with open(path / "items.jsonl", encoding="utf-8") as f:
      for rec in map(json.loads, f):
        ids.append(rec["item_id"])
        for name in fields:
          fields[name].append(rec.get(name, ""))
    with open(path / "users.json", encoding="utf-8") as f:
      user_ids = json.load(f)
    ds = cls(name=meta["name"], items=ItemTable(ids, fields),
             user_ids=user_ids, offsets=offsets, items_flat=items_flat,
             timestamps_flat=timestamps, metadata=meta.get("metadata", {}))
    if ds.fingerprint() != meta["fingerprint"]:
      raise DatasetError(
          f"{path}: contents do not match the fingerprint in meta.json; the "
          "directory was modified or is corrupt. Rebuild it.")
    return ds


def check_monotonic(offsets: np.ndarray, timestamps: np.ndarray,
                    user_ids: Sequence[str], where: str) -> None:
  """Raises DatasetError if any user's timestamps decrease.

  Args:
    offsets: CSR offsets `[num_users + 1]`.
    timestamps: flat timestamps aligned with the interactions.
    user_ids: original user ids, for the message.
    where: file or dataset name, for the message.
  """
  if len(timestamps) < 2:
    return
  dec = np.diff(timestamps) < 0
  # A decrease across a user boundary is fine: mask those positions out.
  boundary = np.zeros(len(timestamps) - 1, dtype=bool)
  starts = offsets[1:-1]
  starts = starts[(starts > 0) & (starts < len(timestamps))]
  boundary[starts - 1] = True
  bad = np.flatnonzero(dec & ~boundary)
  if len(bad):
    pos = int(bad[0]) + 1
    user = int(np.searchsorted(offsets, pos, side="right") - 1)
    k = pos - int(offsets[user])
    raise DatasetError(
        f"{where}: timestamps of user {user_ids[user]!r} decrease at "
        f"position {k} ({int(timestamps[pos - 1])} -> {int(timestamps[pos])}"
        "). Sequences must be in time order: sort the interactions by "
        "timestamp (order='timestamp') or fix the source.")


def from_sequences(name: str, items: ItemTable, user_ids: Sequence[str],
                   sequences: Sequence[Sequence[int]],
                   timestamps: Sequence[Sequence[int]] | None = None,
                   metadata: Mapping[str, Any] | None = None
                   ) -> CanonicalDataset:
  """Builds a CanonicalDataset from per-user lists.

  Args:
    name: dataset name.
    items: the item table.
    user_ids: original user ids, one per sequence.
    sequences: per-user item indices, oldest first.
    timestamps: optional per-user timestamps aligned with `sequences`.
    metadata: provenance to store with the dataset.

  Returns:
    The dataset.
  """
  lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64,
                        count=len(sequences))
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  flat = (np.concatenate([np.asarray(s, np.int32) for s in sequences])
          if len(sequences) else np.zeros(0, np.int32))
  ts = None
  if timestamps is not None:
    ts = (np.concatenate([np.asarray(t, np.int64) for t in timestamps])
          if len(timestamps) else np.zeros(0, np.int64))
  return CanonicalDataset(name=name, items=items, user_ids=list(user_ids),
                          offsets=offsets, items_flat=flat,
                          timestamps_flat=ts, metadata=dict(metadata or {}))
