"""The one array-batch reader of every family (no TensorFlow).

`ArrayBatches` serves fixed-size batches from equally long arrays (rows =
examples) that live in memory or in memory maps: shuffled per epoch by
`(seed, epoch)`, seekable (global step `s` is batch `s % num_batches` of
epoch `s // num_batches`, so a resumed run sees exactly the batches it would
have seen), sharded over processes (process `i` of `n` reads rows `i::n` of
each global batch) and, with `remainder="pad"`, padded to a full last batch
whose real rows a boolean `mask` marks. It knows no feature names: a family
adds inputs (item features, timestamps, queries) as more named arrays.

Three front ends build on it:

* `numpy_batches.NumpyBatches`: a materialised SeqIO task split on disk
  (memory-mapped `.npy` files and a manifest);
* `item_sequences.TrainBatches`: item-level training examples in memory;
* `item_sequences.EvalBatches`: evaluation arrays, every row once, padded.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping

import numpy as np

from recjax.errors import ConfigError

MASK_KEY = "mask"
REMAINDERS = ("drop", "pad")


def check_lengths(arrays: Mapping[str, np.ndarray]) -> int:
  """The common number of rows of `arrays`.

  Raises:
    ConfigError: no arrays, or arrays of different lengths.
  """
  if not arrays:
    raise ConfigError("no example arrays given.")
  sizes = {k: len(v) for k, v in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ConfigError(f"example arrays differ in length: {sizes}.")
  return next(iter(sizes.values()))


class ArrayBatches:
  """Shuffled, seekable, per-process batches of named arrays.

  Attributes:
    batch_size: rows of one global batch (all processes together).
    local_batch_size: rows this process yields per step.
    num_examples: examples per epoch.
    num_batches: global batches per epoch.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, *,
               shuffle: bool = False, seed: int = 0, shard_index: int = 0,
               num_shards: int = 1, remainder: str = "drop"):
    """Wraps the arrays (not copied; memory maps stay maps).

    Args:
      arrays: equally long arrays, rows = examples.
      batch_size: global batch size (a multiple of `num_shards`).
      shuffle: permute the examples every epoch (by `seed` and the epoch).
      seed: shuffling seed.
      shard_index: this process, in `[0, num_shards)`.
      num_shards: processes reading disjoint rows of each batch.
      remainder: "drop" the last partial batch or "pad" it (adds `mask`).

    Raises:
      ConfigError: bad sizes or arguments.
    """
    self.num_examples = check_lengths(arrays)
    if num_shards < 1 or not 0 <= shard_index < num_shards:
      raise ConfigError(f"need 0 <= shard_index < num_shards, got "
                        f"shard_index={shard_index}, num_shards={num_shards}.")
    if batch_size < 1 or batch_size % num_shards:
      raise ConfigError(f"batch_size={batch_size} must be a positive "
                        f"multiple of the {num_shards} process(es).")
    if remainder not in REMAINDERS:
      raise ConfigError(f"remainder must be one of {REMAINDERS}, got "
                        f"{remainder!r}.")
    self._arrays = dict(arrays)
    self.batch_size = int(batch_size)
    self._global_batch = self.batch_size
    self.local_batch_size = self.batch_size // num_shards
    if remainder == "drop":
      self.num_batches = self.num_examples // self.batch_size
    else:
      self.num_batches = -(-self.num_examples // self.batch_size)
    self._shuffle = bool(shuffle)
    self._seed = int(seed)
    self._shard_index = int(shard_index)
    self._num_shards = int(num_shards)
    self._remainder = remainder
    self._epoch_cache: tuple[int, np.ndarray] | None = None

  @property
  def features(self) -> tuple[str, ...]:
    """The feature names (without `mask`)."""
    return tuple(self._arrays)

  def __len__(self) -> int:
    return self.num_batches

  @property
  def input_shapes(self) -> dict[str, tuple[int, ...]]:
    """Feature shapes of one *global* batch (for `Trainer`)."""
    return {k: (self._global_batch,) + v.shape[1:]
            for k, v in self._arrays.items()}

  def element_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """`{feature: (local batch shape, dtype)}` of every batch."""
    spec = {k: ((self.local_batch_size,) + v.shape[1:], v.dtype)
            for k, v in self._arrays.items()}
    if self._remainder == "pad":
      spec[MASK_KEY] = ((self.local_batch_size,), np.dtype(bool))
    return spec

  def order(self, epoch: int) -> np.ndarray:
    """The global example order of `epoch` (int64 `[num_examples]`)."""
    if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
      return self._epoch_cache[1]
    if self._shuffle:
      order = np.random.default_rng((self._seed, int(epoch))).permutation(
          self.num_examples)
    else:
      order = np.arange(self.num_examples)
    self._epoch_cache = (int(epoch), order)
    return order

  def global_indices(self, step: int) -> np.ndarray:
    """Example indices of global batch `step` (all processes' rows)."""
    self._check_nonempty()
    epoch, b = divmod(int(step), self.num_batches)
    size = self._global_batch
    return self.order(epoch)[b * size:(b + 1) * size]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch `step`."""
    idx = self.global_indices(step)[self._shard_index::self._num_shards]
    n = idx.size
    if self._remainder == "pad":  # Pad with the first example, masked.
      idx = np.concatenate([idx, np.zeros(self.local_batch_size - n,
                                          idx.dtype)])
    # Reading in sorted order is kinder to memory maps.
    sort = np.argsort(idx, kind="stable")
    inverse = np.empty_like(sort)
    inverse[sort] = np.arange(sort.size)
    out = {k: np.asarray(v[idx[sort]])[inverse]
           for k, v in self._arrays.items()}
    if self._remainder == "pad":
      out[MASK_KEY] = np.arange(self.local_batch_size) < n
    return out

  def epoch(self, epoch: int = 0, start_batch: int = 0
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yields the batches of one epoch, from batch `start_batch` on."""
    for b in range(int(start_batch), self.num_batches):
      yield self.batch(int(epoch) * self.num_batches + b)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self.epoch(0)

  def iterate(self, start_step: int = 0, num_epochs: int | None = None
              ) -> Iterator[dict[str, np.ndarray]]:
    """Yields batches over epochs, resuming at global step `start_step`.

    Args:
      start_step: first global step.
      num_epochs: epochs in total (counting from epoch 0); None = forever.
    """
    self._check_nonempty()
    step = int(start_step)
    while num_epochs is None or step < num_epochs * self.num_batches:
      yield self.batch(step)
      step += 1

  def _check_nonempty(self) -> None:
    if self.num_batches == 0:
      raise ConfigError(
          f"{self.num_examples} examples make no batch of "
          f"{self._global_batch}; "
          "lower batch_size or use remainder='pad'.")
