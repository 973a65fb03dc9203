"""Materialised task batches as numpy arrays, read without TensorFlow.

`tasks.materialize` runs a SeqIO task split through its feature converter
once and writes every model feature as one `.npy` file (rows = examples,
in SeqIO's order) next to a `manifest.json`:

  {"format_version": 1, "task": ..., "split": ..., "num_examples": N,
   "task_feature_lengths": {...}, "features": {name: {"dtype", "shape"}},
   "vocabulary": {"fingerprint": ..., "layout": {...}},
   "feature_converter": ..., "shuffle": false, "seed": null, "inputs": {...}}

`NumpyBatches` memory-maps those files and yields fixed-size batches (dicts
of numpy arrays) on hosts that have no TensorFlow:

* shuffling is a permutation drawn from `numpy.random.default_rng((seed,
  epoch))`, so every epoch's order is reproducible and identical on all
  hosts;
* with `num_shards > 1`, host `shard_index` takes every `num_shards`-th
  example of that order, so hosts never overlap and all hosts produce the
  same number of batches (what a multi-host step needs);
* `remainder="drop"` drops the last partial batch (like
  `seqio.get_dataset(batch_size=...)`); `remainder="pad"` fills it with
  copies of row 0 and adds a boolean `mask` feature (False on padding),
  for evaluation over every example.

Without shuffling and sharding, the batches equal those of
`seqio.get_dataset(task, lengths, converter, split, shuffle=False,
batch_size=B)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import numpy as np

from recjax.errors import ConfigError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
MASK_KEY = "mask"
REMAINDERS = ("drop", "pad")


def vocabulary_fingerprint(layout_description: Mapping[str, Any],
                           codes: np.ndarray) -> str:
  """sha256 over a token layout and the item codes (TF-free).

  `tasks.vocabulary.SemanticIdVocabulary.fingerprint` is this value, so a
  host without TensorFlow can check that materialised batches were made
  with the codes and layout of its model.

  Args:
    layout_description: `SemanticIdLayout.describe()`.
    codes: int `[num_items, levels]` semantic IDs.

  Returns:
    A hex digest.
  """
  codes = np.ascontiguousarray(np.asarray(codes, dtype=np.int32))
  h = hashlib.sha256(json.dumps(dict(layout_description), sort_keys=True)
                     .encode("utf-8"))
  h.update(f"{codes.shape}".encode())
  h.update(codes.tobytes())
  return h.hexdigest()


def feature_path(directory: str | os.PathLike[str], name: str) -> pathlib.Path:
  """The `.npy` file of one feature in a materialised directory."""
  return pathlib.Path(directory) / f"{name}.npy"


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads and checks `manifest.json` of a materialised directory.

  Raises:
    ConfigError: missing or malformed manifest, or missing feature files.
  """
  path = pathlib.Path(directory) / MANIFEST_FILE
  if not path.exists():
    raise ConfigError(f"{path} does not exist; materialise the task first "
                      "(python -m recjax.tasks.materialize --task ... "
                      f"--split ... --out {directory}).")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path}:{e.lineno}:{e.colno}: malformed JSON "
                      f"({e.msg}); re-run the materialisation.") from None
  for key in ("format_version", "num_examples", "features"):
    if key not in manifest:
      raise ConfigError(f"{path}: no '{key}' entry; re-run the "
                        "materialisation.")
  if manifest["format_version"] != FORMAT_VERSION:
    raise ConfigError(f"{path}: format_version {manifest['format_version']} "
                      f"is not {FORMAT_VERSION}; re-run the materialisation.")
  for name in manifest["features"]:
    if not feature_path(directory, name).exists():
      raise ConfigError(f"{feature_path(directory, name)} is missing; re-run "
                        "the materialisation.")
  return manifest


class NumpyBatches:
  """Fixed-size batches of a materialised task split (no TensorFlow).

  Example:
    >>> batches = NumpyBatches("runs/batches/ml100k/train", batch_size=256,
    ...                        shuffle=True, seed=0)
    >>> for batch in batches.epoch(0):
    ...   loss = train_step(batch)

  Attributes:
    directory: the materialised directory.
    manifest: its manifest.
    batch_size: examples per batch on this host.
    num_examples: examples in the whole split.
  """

  def __init__(self, directory: str | os.PathLike[str], batch_size: int, *,
               shuffle: bool = False, seed: int = 0, shard_index: int = 0,
               num_shards: int = 1, remainder: str = "drop",
               features: tuple[str, ...] | None = None,
               vocabulary_fingerprint: str | None = None):
    """Opens a materialised directory.

    Args:
      directory: output of `tasks.materialize.materialize`.
      batch_size: examples per batch (per host).
      shuffle: permute the examples every epoch (by `seed` and the epoch).
      seed: shuffling seed.
      shard_index: this host's shard, in `[0, num_shards)`.
      num_shards: number of hosts reading disjoint shards.
      remainder: "drop" the last partial batch or "pad" it (adds `mask`).
      features: features to read; default all.
      vocabulary_fingerprint: if given, must equal the manifest's (the
        fingerprint of the model's vocabulary).

    Raises:
      ConfigError: bad arguments, a missing or malformed directory, or a
        vocabulary mismatch.
    """
    self.directory = pathlib.Path(directory)
    self.manifest = read_manifest(self.directory)
    if batch_size <= 0:
      raise ConfigError(f"batch_size must be positive, got {batch_size}.")
    if num_shards <= 0 or not 0 <= shard_index < num_shards:
      raise ConfigError(f"need 0 <= shard_index < num_shards, got "
                        f"shard_index={shard_index}, num_shards={num_shards}.")
    if remainder not in REMAINDERS:
      raise ConfigError(f"remainder must be one of {REMAINDERS}, got "
                        f"{remainder!r}.")
    if vocabulary_fingerprint is not None:
      have = self.manifest.get("vocabulary", {}).get("fingerprint")
      if have != vocabulary_fingerprint:
        raise ConfigError(
            f"{self.directory}: batches were made with vocabulary "
            f"{have}, but the model's is {vocabulary_fingerprint}; "
            "re-materialise the task with the model's semantic IDs.")
    names = tuple(self.manifest["features"])
    if features is not None:
      unknown = sorted(set(features) - set(names))
      if unknown:
        raise ConfigError(f"{self.directory}: no features {unknown}; it has "
                          f"{list(names)}.")
      names = tuple(features)
    self.batch_size = int(batch_size)
    self.num_examples = int(self.manifest["num_examples"])
    self._shuffle = shuffle
    self._seed = int(seed)
    self._shard_index = shard_index
    self._num_shards = num_shards
    self._remainder = remainder
    self._arrays = {n: np.load(feature_path(self.directory, n), mmap_mode="r")
                    for n in names}
    for n, a in self._arrays.items():
      if a.shape[:1] != (self.num_examples,):
        raise ConfigError(f"{feature_path(self.directory, n)} has shape "
                          f"{a.shape}, but the manifest says "
                          f"{self.num_examples} examples; re-run the "
                          "materialisation.")

  @property
  def features(self) -> tuple[str, ...]:
    return tuple(self._arrays)

  @property
  def examples_per_shard(self) -> int:
    """Examples every shard gets (the largest shard when uneven)."""
    return -(-self.num_examples // self._num_shards)

  @property
  def num_batches(self) -> int:
    """Batches per epoch, the same on every shard."""
    if self._remainder == "drop":
      return (self.num_examples // self._num_shards) // self.batch_size
    return -(-self.examples_per_shard // self.batch_size)

  def __len__(self) -> int:
    return self.num_batches

  def element_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """`{feature: (batch shape, dtype)}` of every batch."""
    spec = {n: ((self.batch_size,) + a.shape[1:], a.dtype)
            for n, a in self._arrays.items()}
    if self._remainder == "pad":
      spec[MASK_KEY] = ((self.batch_size,), np.dtype(bool))
    return spec

  def order(self, epoch: int) -> np.ndarray:
    """Example indices this shard reads in `epoch`, int64."""
    if self._shuffle:
      rng = np.random.default_rng((self._seed, int(epoch)))
      order = rng.permutation(self.num_examples)
    else:
      order = np.arange(self.num_examples)
    return order[self._shard_index::self._num_shards]

  def _batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    n = indices.size
    if self._remainder == "pad":
      padded = np.zeros((self.batch_size,), dtype=np.int64)
      padded[:n] = indices
      mask = np.arange(self.batch_size) < n
      indices = padded
    out = {}
    # Reading in sorted order is kinder to memory maps.
    sort = np.argsort(indices, kind="stable")
    inverse = np.empty_like(sort)
    inverse[sort] = np.arange(sort.size)
    for name, arr in self._arrays.items():
      out[name] = np.asarray(arr[indices[sort]])[inverse]
    if self._remainder == "pad":
      out[MASK_KEY] = mask
    return out

  def epoch(self, epoch: int = 0, start_batch: int = 0
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yields the batches of one epoch, from batch `start_batch` on."""
    order = self.order(epoch)
    if self._remainder == "drop":
      order = order[:self.num_batches * self.batch_size]
    for b in range(start_batch, self.num_batches):
      yield self._batch(order[b * self.batch_size:(b + 1) * self.batch_size])

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self.epoch(0)

  def iterate(self, start_step: int = 0, num_epochs: int | None = None
              ) -> Iterator[dict[str, np.ndarray]]:
    """Yields batches over epochs, resuming at global step `start_step`.

    Step `s` is batch `s % num_batches` of epoch `s // num_batches`, so a
    restarted run that passes its checkpointed step sees exactly the
    batches it would have seen.

    Args:
      start_step: first global step.
      num_epochs: epochs in total (counting from epoch 0); None = forever.
    """
    if self.num_batches == 0:
      raise ConfigError(
          f"{self.directory}: {self.num_examples} examples over "
          f"{self._num_shards} shard(s) make no batch of {self.batch_size}; "
          "lower batch_size or use remainder='pad'.")
    epoch, start = divmod(int(start_step), self.num_batches)
    while num_epochs is None or epoch < num_epochs:
      yield from self.epoch(epoch, start)
      epoch, start = epoch + 1, 0
