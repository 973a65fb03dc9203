"""Item-level training and evaluation data for sequential recommenders.

Turns a `CanonicalDataset` and its leave-one-out splits into the numpy
batches of `recjax.models.base` (`ITEM_PAD` = `NO_ITEM` = -1 pads, histories
right-aligned so the most recent item is in the last column). No TensorFlow.

Training examples come from each user's training sequence `s` (all items
but the validation and test ones, i.e. the train split's history plus its
target), in one of two modes:

* `"sequences"` (SASRec, Kang & McAuley 2018): one example per user with
  input `s[:-1]` and target `s[1:]` (every position has a loss), both
  right-aligned to `max_length`. A sequence with more than `max_length`
  transitions keeps its last `max_length` (the original SASRec), or, with
  `all_windows=True`, is cut from the end into non-overlapping chunks of
  `max_length` transitions, one example each, so every transition is
  trained on exactly once (older chunks see no context before their start).
  Users with a single training item have no transition and no example.
* `"prefixes"` (RecBole's augmentation): every prefix `s[:t]` (t >= 1),
  capped to its last `max_length` items, is an example whose only target is
  `s[t]`, in the last column; the other target columns are -1.

`TrainBatches` serves them to `recjax.trainer.Trainer`: a fresh permutation
per epoch from `numpy.random.default_rng((seed, epoch))`, the last partial
batch of every epoch dropped, step `s` always the same batch (so a resumed
run sees what an uninterrupted one would), and process `p` of `P` taking
rows `p::P` of each global batch (the sharding of
`recjax.numpy_batches.NumpyBatches`).

Evaluation batches (`EvalBatches`) of the validation or test split hold the
last `max_length` history items (`input_items`), the held-out
`target_item`, the user's full history before the target (`excluded_items`,
for the "seen items excluded" protocol) and `mask` (False on the padding
rows of the last batch).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from recjax import batches
from recjax import datasets
from recjax.datasets import CanonicalDataset
from recjax.datasets import Split
from recjax.datasets import stage
from recjax.errors import ConfigError
from recjax.tokens import EXCLUDED_ITEMS
from recjax.tokens import NO_ITEM

ITEM_PAD = NO_ITEM
TRAIN_MODES = ("sequences", "prefixes")
MASK_KEY = batches.MASK_KEY


@dataclasses.dataclass(frozen=True)
class ItemDataConfig:
  """Which dataset to read and how to turn it into item batches.

  Attributes:
    source: a `recjax.datasets.NAMES` entry, e.g. "amazon_lcrec".
    source_kwargs: further `recjax.datasets.load` arguments (source options
      such as the synthetic sizes and `seed`, and `PreprocessConfig`
      fields).
    data_dir: the source's `data_dir` (None: not passed).
    category: the source's `category` (Amazon sources; None: not passed).
    cache_dir: if set, the canonical dataset is staged there once
      (`recjax.datasets.stage.prepare`) and reused by later runs.
    max_length: history length of the model input (20 in SASRec, TIGER,
      LETTER).
    train_mode: "sequences" or "prefixes" (see the module docstring).
    all_windows: "sequences" mode: one example per non-overlapping window
      instead of only the last one.
    batch_size: global training batch size; None = the trainer's.
    eval_batch_size: evaluation batch size (every process evaluates all).
    seed: shuffling seed of the training batches.
    cold_fraction: the cold-start protocol: this share of the catalog
      (drawn with `cold_seed`) is removed from the training sequences
      entirely; those items stay as validation / test targets and in
      evaluation histories, and runs report `test_cold/<metric>` on the
      test users whose target is such an item (0: off).
    cold_seed: the draw of the cold items.
  """

  source: str = "amazon_lcrec"
  source_kwargs: Mapping[str, Any] | None = None
  data_dir: str | None = None
  category: str | None = None
  cache_dir: str | None = None
  max_length: int = 20
  train_mode: str = "sequences"
  all_windows: bool = False
  batch_size: int | None = None
  eval_batch_size: int = 256
  seed: int = 0
  cold_fraction: float = 0.0
  cold_seed: int = 0

  def __post_init__(self):
    if self.train_mode not in TRAIN_MODES:
      raise ConfigError(f"ItemDataConfig.train_mode={self.train_mode!r}; use "
                        f"one of {TRAIN_MODES}.")
    if self.max_length < 1:
      raise ConfigError(f"ItemDataConfig.max_length must be >= 1, got "
                        f"{self.max_length}.")
    if self.batch_size is not None and self.batch_size < 1:
      raise ConfigError(f"ItemDataConfig.batch_size must be >= 1 or None, "
                        f"got {self.batch_size}.")
    if self.eval_batch_size < 1:
      raise ConfigError(f"ItemDataConfig.eval_batch_size must be >= 1, got "
                        f"{self.eval_batch_size}.")
    if not 0.0 <= self.cold_fraction < 1.0:
      raise ConfigError(f"ItemDataConfig.cold_fraction must be in [0, 1), "
                        f"got {self.cold_fraction}.")

  def load_kwargs(self) -> dict[str, Any]:
    """The keyword arguments of `recjax.datasets.load`."""
    kwargs = dict(self.source_kwargs or {})
    if self.data_dir is not None:
      kwargs["data_dir"] = os.fspath(self.data_dir)
    if self.category is not None:
      kwargs["category"] = self.category
    return kwargs


# -- array construction -------------------------------------------------------


def right_aligned(flat: np.ndarray, start: np.ndarray, end: np.ndarray,
                  width: int) -> np.ndarray:
  """Rows `flat[max(start, end - width):end]`, right-aligned, -1 padded.

  Args:
    flat: int `[n]` items.
    start: int `[rows]` first index each row may read.
    end: int `[rows]` exclusive end of each row.
    width: output columns.

  Returns:
    int32 `[rows, width]`.
  """
  start = np.asarray(start, np.int64)
  end = np.asarray(end, np.int64)
  idx = end[:, None] - width + np.arange(width, dtype=np.int64)[None, :]
  valid = idx >= start[:, None]
  if not flat.size:
    return np.full(idx.shape, ITEM_PAD, np.int32)
  return np.where(valid, flat[np.where(valid, idx, 0)],
                  ITEM_PAD).astype(np.int32)


def training_sequences(train: Split) -> tuple[np.ndarray, np.ndarray]:
  """Each user's whole training sequence (train history + train target).

  Args:
    train: the (uncapped) train split of `recjax.datasets.leave_one_out`.

  Returns:
    `(offsets, items)`: int64 `[users + 1]` and int32 flat items, CSR.
  """
  n = len(train)
  hist_len = np.diff(train.offsets)
  offsets = (np.asarray(train.offsets, np.int64) +
             np.arange(n + 1, dtype=np.int64))
  items = np.empty(int(offsets[-1]), np.int32)
  owner = np.repeat(np.arange(n, dtype=np.int64), hist_len)
  items[np.arange(train.history_flat.size, dtype=np.int64) + owner] = (
      train.history_flat)
  items[offsets[1:] - 1] = train.targets
  return offsets, items


def cold_items(num_items: int, fraction: float, seed: int) -> np.ndarray:
  """The cold-start items: `round(fraction * num_items)` of them, sorted."""
  count = int(round(fraction * num_items))
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_items, count, replace=False)).astype(
      np.int32)


def without_items(train: Split, items: np.ndarray) -> Split:
  """The train split with `items` removed from every training sequence.

  Each user's whole training sequence (history + target) is filtered; the
  rest is split again into history and target. Users left with no item
  are dropped.

  Args:
    train: the train split of `recjax.datasets.leave_one_out`.
    items: item indices to remove.

  Returns:
    The filtered split.
  """
  offsets, flat = training_sequences(train)
  keep = ~np.isin(flat, items)
  owner = np.repeat(np.arange(len(train)), np.diff(offsets))
  counts = np.bincount(owner[keep], minlength=len(train))
  kept_flat = flat[keep]
  users = np.flatnonzero(counts > 0)
  ends = np.cumsum(counts)[users]
  hist_len = counts[users] - 1
  is_target = np.zeros(kept_flat.size, bool)
  is_target[ends - 1] = True
  return Split(name=train.name,
               users=np.asarray(train.users)[users].astype(np.int32),
               offsets=np.concatenate([[0], np.cumsum(hist_len)]).astype(
                   np.int64),
               history_flat=kept_flat[~is_target].astype(np.int32),
               targets=kept_flat[is_target].astype(np.int32))


def _windows(flat: np.ndarray, start: np.ndarray, end: np.ndarray,
             max_length: int) -> dict[str, np.ndarray]:
  """Inputs `flat[e-1-m:e-1]` and targets `flat[e-m:e]` (clipped at start)."""
  return {"input_items": right_aligned(flat, start, end - 1, max_length),
          "target_items": right_aligned(flat, start + 1, end, max_length)}


def sequence_examples(train: Split, max_length: int,
                      all_windows: bool = False) -> dict[str, np.ndarray]:
  """SASRec examples: input `s[:-1]`, target `s[1:]` (see module docstring).

  Args:
    train: the uncapped train split.
    max_length: columns (transitions per example).
    all_windows: every non-overlapping window, not only the last.

  Returns:
    `{'input_items', 'target_items'}` int32 `[examples, max_length]`, in
    user order (oldest window first).
  """
  offsets, flat = training_sequences(train)
  start, stop = offsets[:-1], offsets[1:]
  transitions = stop - start - 1
  if all_windows:
    count = -(-transitions // max_length)  # 0 for users with no transition
  else:
    count = (transitions > 0).astype(np.int64)
  user = np.repeat(np.arange(len(start)), count)
  # k-th window from the end of the sequence, emitted oldest first.
  first = np.repeat(np.cumsum(count) - count, count)
  k = np.repeat(count, count) - 1 - (np.arange(user.size) - first)
  end = stop[user] - k * max_length
  return _windows(flat, start[user], end, max_length)


def prefix_examples(train: Split, max_length: int) -> dict[str, np.ndarray]:
  """RecBole-style examples: every prefix, one target in the last column.

  Args:
    train: the uncapped train split.
    max_length: history cap and columns.

  Returns:
    `{'input_items', 'target_items'}` int32 `[examples, max_length]`, users
    in order, prefixes by increasing length.
  """
  offsets, flat = training_sequences(train)
  start, stop = offsets[:-1], offsets[1:]
  count = np.maximum(stop - start - 1, 0)
  user = np.repeat(np.arange(len(start)), count)
  first = np.repeat(np.cumsum(count) - count, count)
  t = np.arange(user.size) - first + 1  # prefix length, >= 1
  out = _windows(flat, start[user], start[user] + t + 1, max_length)
  out["target_items"][:, :-1] = ITEM_PAD
  return out


def training_examples(train: Split, max_length: int,
                      mode: str = "sequences",
                      all_windows: bool = False) -> dict[str, np.ndarray]:
  """Training examples in `mode` ("sequences" or "prefixes").

  Raises:
    ConfigError: an unknown mode.
  """
  if mode == "sequences":
    return sequence_examples(train, max_length, all_windows)
  if mode == "prefixes":
    return prefix_examples(train, max_length)
  raise ConfigError(f"Unknown train mode {mode!r}; use one of {TRAIN_MODES}.")


def eval_arrays(split: Split, max_length: int,
                history_width: int | None = None) -> dict[str, np.ndarray]:
  """Model inputs, targets and exclusion sets of an evaluation split.

  Args:
    split: a validation/test split. Its histories should be uncapped
      (`leave_one_out(ds, max_history=None)`): `excluded_items` is the whole
      stored history, `input_items` only its last `max_length` items.
    max_length: model input length.
    history_width: columns of `excluded_items` (default: the longest
      history; longer histories keep their most recent items).

  Returns:
    `input_items` int32 `[n, max_length]`, `target_item` int32 `[n]`,
    `excluded_items` int32 `[n, history_width]` and `user_index` int32
    `[n]`.
  """
  start = np.asarray(split.offsets[:-1], np.int64)
  end = np.asarray(split.offsets[1:], np.int64)
  if history_width is None:
    history_width = max(int((end - start).max(initial=0)), 1)
  flat = np.asarray(split.history_flat, np.int32)
  return {"input_items": right_aligned(flat, start, end, max_length),
          "target_item": np.asarray(split.targets, np.int32),
          EXCLUDED_ITEMS: right_aligned(flat, start, end, history_width),
          "user_index": np.asarray(split.users, np.int32)}


# -- batches ------------------------------------------------------------------


class TrainBatches(batches.ArrayBatches):
  """Shuffled, resumable, per-process training batches (a `BatchSource`).

  `batches.ArrayBatches` over examples in memory, the remainder dropped.

  Attributes:
    batch_size: global batch size (all processes).
    local_batch_size: rows this process yields per step.
    num_examples: examples per epoch.
    num_batches: global batches per epoch (the remainder is dropped).
  """

  def __init__(self, examples: Mapping[str, np.ndarray], batch_size: int, *,
               seed: int = 0, shuffle: bool = True,
               shard_index: int | None = None,
               num_shards: int | None = None):
    """Wraps example arrays.

    Args:
      examples: equally long arrays, rows = examples.
      batch_size: global batch size.
      seed: shuffling seed.
      shuffle: permute every epoch (False: file order every epoch).
      shard_index: this process (default `jax.process_index()`).
      num_shards: processes (default `jax.process_count()`).

    Raises:
      ConfigError: bad sizes, or fewer examples than one batch.
    """
    num_shards = jax.process_count() if num_shards is None else num_shards
    shard_index = (jax.process_index() if shard_index is None
                   else shard_index)
    super().__init__({k: np.asarray(v) for k, v in examples.items()},
                     batch_size, shuffle=shuffle, seed=seed,
                     shard_index=shard_index, num_shards=num_shards)
    if self.num_examples < batch_size:
      raise ConfigError(
          f"{self.num_examples} training examples make no batch of "
          f"{batch_size}; lower the batch size or use "
          "train_mode='prefixes' (more examples).")

  def batches(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Yields this process's batches from `start_step` on, forever."""
    return self.iterate(start_step)


class EvalBatches(batches.ArrayBatches):
  """Fixed-size evaluation batches over every example (re-iterable).

  `batches.ArrayBatches` in file order: the last batch is padded with
  copies of the first row and a boolean `mask` marks the real rows.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int):
    if batch_size < 1:
      raise ConfigError(f"eval batch_size must be >= 1, got {batch_size}.")
    super().__init__({k: np.asarray(v) for k, v in arrays.items()},
                     batch_size, remainder="pad")

  @property
  def arrays(self) -> dict[str, np.ndarray]:
    """The evaluation arrays, one row per example."""
    return self._arrays


# -- loading ------------------------------------------------------------------


@dataclasses.dataclass
class ItemData:
  """A loaded dataset with its uncapped leave-one-out splits.

  Attributes:
    dataset: the canonical dataset.
    splits: `{'train', 'validation', 'test'}` with whole histories.
    config: how it was loaded.
  """

  dataset: CanonicalDataset
  splits: dict[str, Split]
  config: ItemDataConfig
  cold: np.ndarray | None = None

  @property
  def num_items(self) -> int:
    return self.dataset.num_items

  def train_examples(self) -> dict[str, np.ndarray]:
    """Training examples in the config's mode."""
    c = self.config
    return training_examples(self.splits["train"], c.max_length,
                             c.train_mode, c.all_windows)

  def train_batches(self, batch_size: int | None = None) -> TrainBatches:
    """The training `BatchSource` (batch size: argument, else config)."""
    batch_size = batch_size or self.config.batch_size
    if batch_size is None:
      raise ConfigError("No training batch size: set ItemDataConfig."
                        "batch_size or pass one.")
    return TrainBatches(self.train_examples(), batch_size,
                        seed=self.config.seed)

  def eval_batches(self, split: str, cold_only: bool = False
                   ) -> EvalBatches:
    """Evaluation batches of 'validation' or 'test'.

    Args:
      split: 'validation' or 'test'.
      cold_only: only the examples whose target is a cold item (the
        cold-start protocol, `ItemDataConfig.cold_fraction`).

    Raises:
      ConfigError: an unknown split, or `cold_only` without cold items.
    """
    if split not in ("validation", "test"):
      raise ConfigError(f"evaluation split must be 'validation' or 'test', "
                        f"got {split!r}.")
    arrays = eval_arrays(self.splits[split], self.config.max_length)
    if cold_only:
      if self.cold is None:
        raise ConfigError("cold_only needs ItemDataConfig.cold_fraction "
                          "> 0.")
      rows = np.isin(arrays["target_item"], self.cold)
      arrays = {k: v[rows] for k, v in arrays.items()}
    return EvalBatches(arrays, self.config.eval_batch_size)


def load_dataset(config: ItemDataConfig) -> CanonicalDataset:
  """The canonical dataset of `config` (staged under `cache_dir` if set)."""
  kwargs = config.load_kwargs()
  if config.cache_dir is None:
    return datasets.load(config.source, **kwargs)
  name = datasets.dataset_name(config.source, **kwargs)
  if jax.process_count() > 1:  # No two processes write one directory.
    name += f"-p{jax.process_index()}"
  return stage.prepare(config.source, out_dir=pathlib.Path(config.cache_dir)
                       / name, **kwargs)


def load(config: ItemDataConfig) -> ItemData:
  """Loads the dataset of `config` and splits it by leave-one-out."""
  ds = load_dataset(config)
  splits = datasets.leave_one_out(ds, max_history=None)
  if not config.cold_fraction:
    return ItemData(ds, splits, config)
  cold = cold_items(ds.num_items, config.cold_fraction, config.cold_seed)
  splits = dict(splits, train=without_items(splits["train"], cold))
  return ItemData(ds, splits, config, cold)
