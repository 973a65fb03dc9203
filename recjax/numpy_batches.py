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
from collections.abc import Mapping
from typing import Any

import numpy as np

from recjax import batches
from recjax.errors import ConfigError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
MASK_KEY = batches.MASK_KEY
REMAINDERS = batches.REMAINDERS


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


class NumpyBatches(batches.ArrayBatches):
  """Fixed-size batches of a materialised task split (no TensorFlow).

  `batches.ArrayBatches` over the split's memory-mapped feature files.

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
    num_examples = int(self.manifest["num_examples"])
    arrays = {n: np.load(feature_path(self.directory, n), mmap_mode="r")
              for n in names}
    for n, a in arrays.items():
      if a.shape[:1] != (num_examples,):
        raise ConfigError(f"{feature_path(self.directory, n)} has shape "
                          f"{a.shape}, but the manifest says "
                          f"{num_examples} examples; re-run the "
                          "materialisation.")
    super().__init__(arrays, int(batch_size) * max(int(num_shards), 1),
                     shuffle=shuffle, seed=seed, shard_index=shard_index,
                     num_shards=num_shards, remainder=remainder)
    self.batch_size = self.local_batch_size  # Per host, as given.
    self.num_examples = num_examples

  @property
  def examples_per_shard(self) -> int:
    """Examples every shard gets (the largest shard when uneven)."""
    return -(-self.num_examples // self._num_shards)

  def _check_nonempty(self) -> None:
    if self.num_batches == 0:
      raise ConfigError(
          f"{self.directory}: {self.num_examples} examples over "
          f"{self._num_shards} shard(s) make no batch of {self.batch_size}; "
          "lower batch_size or use remainder='pad'.")
