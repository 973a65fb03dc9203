"""Writes a task split's model features to numpy files (TF-free training).

`materialize(task, split, out_dir)` runs `seqio.get_dataset` with the
task's feature converter (unshuffled by default) and writes one `.npy` per
model feature (rows = examples, in SeqIO's order) and a `manifest.json`
(task, split, feature lengths, feature shapes and dtypes, number of
examples, vocabulary fingerprint, converter, shuffle/seed), atomically: the
directory appears complete or not at all. Re-running with the same inputs
is a no-op. `recjax.numpy_batches.NumpyBatches` reads it back without
TensorFlow:

  python -m recjax.tasks.materialize --task tiger_amazon_office --split train \
      --out runs/batches/office/train

Validation and test splits of TIGER tasks also get `excluded_items` (int32
`[examples, width]`, -1 padded): every item the user saw before the target,
not just the `history_items` input window, so that "seen items excluded"
removes the same items for generative and item-level models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
import seqio

from recjax import evaluation
from recjax import numpy_batches
from recjax.errors import ConfigError
from recjax.io_utils import atomic_directory
from recjax.tasks import tiger
from recjax.tasks.vocabulary import SemanticIdVocabulary

_CHUNK = 1024
EXCLUDED_ITEMS = evaluation.EXCLUDED_ITEMS


def _vocabulary_info(task: seqio.Task) -> dict[str, Any]:
  vocab = task.output_features["targets"].vocabulary
  if isinstance(vocab, SemanticIdVocabulary):
    return {"fingerprint": vocab.fingerprint, "layout": vocab.describe()}
  return {"fingerprint": None, "layout": str(vocab)}


def _dataset_fingerprint(task: seqio.Task) -> str | None:
  source = task.source
  if isinstance(source, tiger.RecjaxTfdsSource):
    meta = source.prepare().info.metadata or {}
    return meta.get("fingerprint")
  return None


def _converter_info(converter: seqio.FeatureConverter) -> dict[str, Any]:
  info = {"class": f"{type(converter).__module__}."
                   f"{type(converter).__qualname__}",
          "pack": converter.pack}
  max_history = getattr(converter, "max_history", None)
  if max_history is not None:
    info["max_history"] = max_history
  return info


def materialize(task_name: str, split: str,
                out_dir: str | os.PathLike[str], *,
                feature_lengths: Mapping[str, int] | None = None,
                feature_converter: seqio.FeatureConverter | None = None,
                shuffle: bool = False, seed: int | None = None,
                force: bool = False) -> pathlib.Path:
  """Writes the feature-converted examples of a task split.

  Args:
    task_name: a registered task.
    split: its split.
    out_dir: output directory (replaced atomically).
    feature_lengths: task feature lengths; default (TIGER tasks)
      `tiger.default_feature_lengths(task_name)`.
    feature_converter: default (TIGER tasks) `tiger.feature_converter`.
    shuffle: shuffle with SeqIO (usually False: `NumpyBatches` shuffles).
    seed: SeqIO's shuffle seed.
    force: rewrite even when the directory is up to date.

  Returns:
    `out_dir`.

  Raises:
    ConfigError: unknown task or split, too-short lengths, or no examples.
  """
  out = pathlib.Path(out_dir)
  is_tiger = _is_tiger(task_name)
  if is_tiger:
    task = tiger.get_task(task_name)
    if feature_lengths is None:
      feature_lengths = tiger.default_feature_lengths(task_name)
    tiger.check_feature_lengths(task_name, feature_lengths)
    if feature_converter is None:
      feature_converter = tiger.feature_converter(task_name)
  else:
    try:
      task = seqio.get_mixture_or_task(task_name)
    except ValueError:
      raise ConfigError(f"unknown task {task_name!r}; register it first "
                        "(import tasks).") from None
    if feature_lengths is None or feature_converter is None:
      raise ConfigError(f"{task_name!r} is not a TIGER task: pass "
                        "feature_lengths and feature_converter.")
  if split not in task.splits:
    raise ConfigError(f"task {task_name!r} has no split {split!r}; it has "
                      f"{list(task.splits)}.")
  inputs = {
      "task": task_name,
      "task_config": (dataclasses.asdict(tiger.get_config(task_name))
                      if is_tiger else None),
      "split": split,
      "task_feature_lengths": dict(feature_lengths),
      "feature_converter": _converter_info(feature_converter),
      "shuffle": bool(shuffle),
      "seed": seed,
      "vocabulary_fingerprint": _vocabulary_info(task)["fingerprint"],
      "dataset_fingerprint": _dataset_fingerprint(task),
      "excluded_items": is_tiger and split != tiger.TRAIN_SPLIT,
  }
  inputs = json.loads(json.dumps(inputs, default=str))
  if not force and (out / numpy_batches.MANIFEST_FILE).exists():
    try:
      old = numpy_batches.read_manifest(out)
    except ConfigError:
      old = None
    if old is not None and old.get("inputs") == inputs:
      logging.info("materialize: %s is up to date.", out)
      return out

  ds = seqio.get_dataset(task, dict(feature_lengths), feature_converter,
                         dataset_split=split, shuffle=shuffle,
                         num_epochs=1, seed=seed, verbose=False)
  chunks: dict[str, list[np.ndarray]] = {}
  for batch in ds.batch(_CHUNK).as_numpy_iterator():
    for key, value in batch.items():
      chunks.setdefault(key, []).append(np.asarray(value))
  if not chunks:
    raise ConfigError(f"task {task_name!r} split {split!r} has no examples.")
  arrays = {k: np.concatenate(v) for k, v in chunks.items()}
  if inputs["excluded_items"]:
    arrays[EXCLUDED_ITEMS] = tiger.seen_items_matrix(task_name, split,
                                                     arrays["user_index"])
  num_examples = int(next(iter(arrays.values())).shape[0])
  manifest = {
      "format_version": numpy_batches.FORMAT_VERSION,
      "task": task_name,
      "split": split,
      "num_examples": num_examples,
      "task_feature_lengths": dict(feature_lengths),
      "features": {k: {"dtype": a.dtype.str, "shape": list(a.shape[1:])}
                   for k, a in arrays.items()},
      "vocabulary": _vocabulary_info(task),
      "feature_converter": inputs["feature_converter"],
      "shuffle": bool(shuffle),
      "seed": seed,
      "inputs": inputs,
  }
  with atomic_directory(out) as tmp:
    for key, a in arrays.items():
      np.save(numpy_batches.feature_path(tmp, key), a, allow_pickle=False)
    with open(tmp / numpy_batches.MANIFEST_FILE, "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=2, sort_keys=True, default=str)
  return out


def _is_tiger(task_name: str) -> bool:
  try:
    tiger.get_config(task_name)
  except ConfigError:
    return False
  return True


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m recjax.tasks.materialize --task T --split S --out DIR`."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--task", required=True)
  parser.add_argument("--split", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--inputs_length", type=int, default=None)
  parser.add_argument("--targets_length", type=int, default=None)
  parser.add_argument("--force", action="store_true")
  args = parser.parse_args(argv)
  from recjax import tasks  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  lengths = None
  if args.inputs_length or args.targets_length:
    lengths = dict(tiger.default_feature_lengths(args.task))
    if args.inputs_length:
      lengths["inputs"] = args.inputs_length
    if args.targets_length:
      lengths["targets"] = args.targets_length
  out = materialize(args.task, args.split, args.out, feature_lengths=lengths,
                    force=args.force)
  manifest = numpy_batches.read_manifest(out)
  print(f"{out}: {manifest['num_examples']} examples of "
        f"{args.task}/{args.split}")


if __name__ == "__main__":
  main()
