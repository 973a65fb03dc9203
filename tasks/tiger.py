"""TIGER tasks: next-item generation over semantic-ID tokens.

`register_tiger_task(name, tfds_name, semantic_ids_dir, ...)` adds a
`seqio.Task` that reads a recjax TFDS builder (prepared offline on first
use, with a manual dir for Amazon), expands training sequences into every
prefix, caps histories at `max_history` items and tokenises

  inputs  = [user token] + semantic IDs of the history items
  targets = semantic ID of the target item + EOS

with pass-through features `target_item`, `user_index` and `history_items`
for evaluation and constrained decoding. Read it through
`RecFeatureConverter` (see `feature_converter(name)`), with the lengths of
`default_feature_lengths(name)`: `inputs = 1 + max_history * levels`,
`targets = levels + 1`.

Importing `tasks` registers, without touching any file:

  tiger_movielens_100k  recjax_movielens100k
  tiger_amazon_office   recjax_amazon_lcrec/office (manual dir
                        $RECJAX_DATA/amazon-office)
  tiger_amazon_beauty   recjax_amazon_lcrec/beauty ($RECJAX_DATA/amazon-beauty)

whose codes are read on first use from
`$RECJAX_ARTIFACTS/semantic_ids/<dataset>/rqvae/codes.npy` (RECJAX_ARTIFACTS
defaults to `runs/artifacts`; <dataset> is the task name without `tiger_`),
and whose TFDS data live in `$RECJAX_TFDS_DIR` (default: TFDS's own).

Evaluation: the model returns ranked semantic IDs; the vocabulary decodes
each to an item index (-1 when it is no item) and the metric function
reports Recall@K / NDCG@K (K = 1, 5, 10, 20, up to the number of returned
items), MRR, the invalid-ID rate and catalog coverage (`recjax.metrics`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import threading
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from recjax import io_utils
from recjax import metrics as metrics_lib
from recjax.datasets import tfds_builders  # noqa: F401  (registers builders)
from recjax.errors import ConfigError
from recjax.tasks import preprocessors as prep
from recjax.tasks import vocabulary as vocab_lib
from recjax.tasks.vocabulary import SemanticIdVocabulary

SPLITS = ("train", "validation", "test")
TRAIN_SPLIT = "train"
DEFAULT_MAX_HISTORY = 20
DEFAULT_USER_BUCKETS = 2000
DEFAULT_METHOD = "rqvae"
_REPO = pathlib.Path(__file__).resolve().parents[1]

# name -> (TFDS name, manual-dir folder under $RECJAX_DATA or None)
DEFAULT_TASKS: dict[str, tuple[str, str | None]] = {
    "tiger_movielens_100k": ("recjax_movielens100k", None),
    "tiger_amazon_office": ("recjax_amazon_lcrec/office", "amazon-office"),
    "tiger_amazon_beauty": ("recjax_amazon_lcrec/beauty", "amazon-beauty"),
}


def artifacts_root() -> pathlib.Path:
  """`$RECJAX_ARTIFACTS`, default `runs/artifacts`."""
  return pathlib.Path(os.environ.get("RECJAX_ARTIFACTS", "runs/artifacts"))


def default_semantic_ids_dir(dataset: str,
                             method: str = DEFAULT_METHOD) -> pathlib.Path:
  """`<artifacts root>/semantic_ids/<dataset>/<method>`."""
  return artifacts_root() / "semantic_ids" / dataset / method


def _data_root() -> pathlib.Path:
  return pathlib.Path(os.environ.get("RECJAX_DATA",
                                     _REPO.parent / "shared" / "data"))


# -- data source --------------------------------------------------------------


def _with_version(tfds_name: str) -> str:
  """`name[/config]` -> `name[/config]:VERSION` (SeqIO wants a version)."""
  if ":" in tfds_name:
    return tfds_name
  try:
    cls = tfds.builder_cls(tfds_name.split("/")[0])
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f"unknown TFDS builder {tfds_name!r}; recjax builders: "
                      "recjax_movielens100k, recjax_amazon_lcrec/<category>, "
                      "recjax_synthetic/{small,tiny}.") from None
  return f"{tfds_name}:{cls.VERSION}"


class RecjaxTfdsSource(seqio.TfdsDataSource):
  """`TfdsDataSource` over a recjax builder, prepared offline on first use.

  seqio 0.0.20's `TfdsDataSource` takes builder kwargs but no
  `download_and_prepare` arguments, so a builder that needs a manual dir
  (Amazon) cannot be prepared through it. This source prepares the builder
  itself (`download_and_prepare(download_config=DownloadConfig(
  manual_dir=...))`), then reads the prepared data read-only, and tags
  every example with `is_train` (True on the `train` split) so that
  `expand_prefixes` expands training sequences only. Files are read in
  order (the builders are ordered); the Task shuffles examples.
  """

  def __init__(self, tfds_name: str, *, data_dir: str | None = None,
               manual_dir: str | None = None,
               splits: Sequence[str] = SPLITS,
               train_split: str = TRAIN_SPLIT):
    """Creates the source; nothing is read or prepared yet.

    Args:
      tfds_name: a recjax builder, e.g. `recjax_synthetic/tiny`.
      data_dir: TFDS data directory (None: TFDS's default).
      manual_dir: the builder's manual dir (Amazon: the LC-Rec JSON files).
      splits: split names.
      train_split: the split whose sequences are expanded into prefixes.
    """
    super().__init__(_with_version(tfds_name), tfds_data_dir=data_dir,
                     splits=tuple(splits), read_only=True)
    self._manual_dir = None if manual_dir is None else os.fspath(manual_dir)
    self._train_split = train_split
    self._lock = threading.Lock()

  @property
  def manual_dir(self) -> str | None:
    return self._manual_dir

  def prepare(self) -> tfds.core.DatasetBuilder:
    """Prepares the builder if needed (offline) and returns it."""
    builder = self.tfds_dataset.builder
    if builder.is_prepared():
      return builder
    # Threads and processes (parallel runs over one data_dir) take turns;
    # TFDS itself fails when two prepare the same dataset at once.
    lock = os.path.join(os.path.dirname(builder.data_dir),
                        f".{os.path.basename(builder.data_dir)}.recjax-lock")
    with self._lock, io_utils.file_lock(lock):
      if builder.is_prepared():
        # Another process prepared it while this one waited: the memoised
        # builder still holds the empty info it was made with; make it anew.
        loader = self.tfds_dataset
        key = loader._get_builder_key(*loader.get_split_params(None))  # pylint: disable=protected-access
        seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.pop(key, None)  # pylint: disable=protected-access
        return loader.builder
      config = tfds.download.DownloadConfig(manual_dir=self._manual_dir)
      builder.download_and_prepare(download_config=config)
    return builder

  def get_dataset(self, split: str | None = None, shuffle: bool = True,
                  seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None,
                  **kwargs: Any) -> tf.data.Dataset:
    # The recjax builders are ordered (`disable_shuffling=True`), so TFDS
    # refuses to shuffle their files; the Task's example shuffle buffer
    # still shuffles when `shuffle` is True.
    del shuffle
    self.prepare()
    split = split or self._train_split
    ds = super().get_dataset(split=split, shuffle=False, seed=seed,
                             shard_info=shard_info, **kwargs)
    return prep.tag_split(ds, split == self._train_split)

  def num_input_examples(self, split: str) -> int | None:
    self.prepare()
    return super().num_input_examples(split)

  def list_shards(self, split: str) -> Sequence[str]:
    self.prepare()
    return super().list_shards(split)


# -- postprocessing and metrics ------------------------------------------------


def _first_item(text: Any) -> int:
  if isinstance(text, bytes):
    text = text.decode("utf-8")
  if isinstance(text, str):
    words = text.split()
    try:
      return int(words[0]) if words else metrics_lib.INVALID
    except ValueError:
      return metrics_lib.INVALID
  return int(text)


def postprocess(output: Any, example: Mapping[str, Any] | None = None,
                is_target: bool = False) -> Any:
  """Decoded model output -> item indices; targets -> the target item.

  Args:
    output: for predictions, the decoded string of one beam ("12"; "" or
      "-1" when it is no item) or a list of them (top-k decoding, best
      first), or item indices; for targets, the decoded target.
    example: the task example (its `target_item` is the target).
    is_target: whether `output` is the target.

  Returns:
    The target item index (int), or the ranked item indices (list of int,
    -1 where a beam is no item).
  """
  if is_target:
    if example is not None and "target_item" in example:
      return int(np.asarray(example["target_item"]))
    return _first_item(output)
  if isinstance(output, (str, bytes)) or np.ndim(output) == 0:
    return [_first_item(output)]
  return [_first_item(o) for o in output]


def make_metric_fn(vocabulary: SemanticIdVocabulary,
                   ks: Sequence[int] = metrics_lib.DEFAULT_KS
                   ) -> Callable[..., dict[str, float]]:
  """A SeqIO metric function `(targets, predictions) -> metrics`.

  Args:
    vocabulary: gives the catalog size for coverage (read when called).
    ks: cut-offs.

  Returns:
    The metric function; `targets` are item indices, `predictions` ranked
    item-index lists (see `postprocess`).
  """

  def recommendation_metrics(targets: Sequence[int],
                             predictions: Sequence[Sequence[int]]
                             ) -> dict[str, float]:
    ranked = metrics_lib.pad_ranked_lists(
        [p if np.ndim(p) else [p] for p in predictions])
    return metrics_lib.ranking_metrics(ranked, np.asarray(targets,
                                                          dtype=np.int64),
                                       ks=ks, num_items=vocabulary.num_items)

  return recommendation_metrics


# -- registration --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TigerTaskConfig:
  """Everything a TIGER task is built from (re-registration compares it).

  Attributes:
    name: task name.
    tfds_name: recjax TFDS builder (with config).
    semantic_ids_dir: directory of `codes.npy`; None: the default artefact
      directory, resolved on first use.
    data_dir: TFDS data directory.
    manual_dir: TFDS manual dir (Amazon).
    max_history: history cap in items.
    num_user_buckets: user-hash buckets (0: no user token).
    codebook_sizes: explicit codebook sizes (else from the directory).
    use_user_token: prepend the user token to `inputs`.
    ks: metric cut-offs.
    max_train_prefixes: keep each user's most recent training prefixes
      only (None: every prefix, TIGER's protocol).
  """

  name: str
  tfds_name: str
  semantic_ids_dir: str | None
  data_dir: str | None = None
  manual_dir: str | None = None
  max_history: int = DEFAULT_MAX_HISTORY
  num_user_buckets: int = DEFAULT_USER_BUCKETS
  codebook_sizes: tuple[int, ...] | None = None
  use_user_token: bool = True
  ks: tuple[int, ...] = metrics_lib.DEFAULT_KS
  max_train_prefixes: int | None = None

  def resolved_semantic_ids_dir(self) -> pathlib.Path:
    if self.semantic_ids_dir is not None:
      return pathlib.Path(self.semantic_ids_dir)
    return default_semantic_ids_dir(self.name.removeprefix("tiger_"))


_CONFIGS: dict[str, TigerTaskConfig] = {}
_VOCABS: dict[tuple[Any, ...], SemanticIdVocabulary] = {}
_REGISTRY_LOCK = threading.RLock()


def _lazy_vocabulary(config: TigerTaskConfig) -> SemanticIdVocabulary:
  """A shared lazy vocabulary; the directory is resolved on first use."""
  key = (config.semantic_ids_dir,
         config.name if config.semantic_ids_dir is None else None,
         config.codebook_sizes, config.num_user_buckets)
  if key not in _VOCABS:
    def load():
      directory = config.resolved_semantic_ids_dir()
      try:
        return vocab_lib.load_codes(directory, config.codebook_sizes,
                                    config.num_user_buckets)
      except ConfigError as e:
        raise ConfigError(f"task {config.name!r}: {e}") from None

    description = (config.semantic_ids_dir or
                   f"<default semantic IDs of {config.name}>")
    _VOCABS[key] = SemanticIdVocabulary(loader=load, description=description)
  return _VOCABS[key]


def _check_lengths_preprocessor(config: TigerTaskConfig,
                                vocabulary: SemanticIdVocabulary
                                ) -> Callable[..., tf.data.Dataset]:

  def check_sequence_lengths(dataset: tf.data.Dataset,
                             sequence_length: Mapping[str, int] | None = None
                             ) -> tf.data.Dataset:
    if sequence_length:
      prep.check_lengths_fit(sequence_length,
                             num_levels=vocabulary.num_levels,
                             max_history=config.max_history,
                             use_user_token=config.use_user_token,
                             name=f"task {config.name!r}")
    return dataset

  return check_sequence_lengths


def _build_task(config: TigerTaskConfig) -> seqio.Task:
  vocab = _lazy_vocabulary(config)
  source = RecjaxTfdsSource(config.tfds_name, data_dir=config.data_dir,
                            manual_dir=config.manual_dir)
  return seqio.TaskRegistry.add(
      config.name,
      source=source,
      output_features={
          "inputs": seqio.Feature(vocab, add_eos=False, dtype=tf.int32),
          "targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32),
      },
      preprocessors=[
          *([functools.partial(prep.add_user_token, vocabulary=vocab)]
            if config.use_user_token else []),
          functools.partial(prep.expand_prefixes,
                            max_history=config.max_history,
                            max_prefixes=config.max_train_prefixes),
          functools.partial(prep.to_inputs_targets, vocabulary=vocab,
                            use_user_token=config.use_user_token),
          seqio.CacheDatasetPlaceholder(),
          _check_lengths_preprocessor(config, vocab),
          seqio.preprocessors.append_eos_after_trim,
      ],
      postprocess_fn=postprocess,
      metric_fns=[make_metric_fn(vocab, config.ks)],
  )


def register_tiger_task(name: str, tfds_name: str,
                        semantic_ids_dir: str | os.PathLike[str] | None, *,
                        data_dir: str | os.PathLike[str] | None = None,
                        manual_dir: str | os.PathLike[str] | None = None,
                        max_history: int = DEFAULT_MAX_HISTORY,
                        num_user_buckets: int = DEFAULT_USER_BUCKETS,
                        codebook_sizes: Sequence[int] | None = None,
                        use_user_token: bool | None = None,
                        ks: Sequence[int] = metrics_lib.DEFAULT_KS,
                        max_train_prefixes: int | None = None
                        ) -> seqio.Task:
  """Registers (or re-registers) a TIGER task.

  Nothing is read: the TFDS builder is prepared and `codes.npy` is read when
  the task is first used. Registering a name again with the same arguments
  returns the registered task; with other arguments it replaces it.

  Args:
    name: task name, e.g. `tiger_amazon_office`.
    tfds_name: a recjax TFDS builder, e.g. `recjax_amazon_lcrec/office`.
    semantic_ids_dir: the semantic-ID stage's output directory (`codes.npy`
      plus `manifest.json` with the codebook sizes); None: the default
      artefact directory `default_semantic_ids_dir(name minus 'tiger_')`.
    data_dir: TFDS data directory.
    manual_dir: TFDS manual dir (Amazon LC-Rec files).
    max_history: history cap in items (TIGER: 20).
    num_user_buckets: user-hash tokens (TIGER: 2000; 0: no user token).
    codebook_sizes: explicit codebook sizes.
    use_user_token: prepend the user token; default `num_user_buckets > 0`.
    ks: metric cut-offs.
    max_train_prefixes: keep each user's most recent training prefixes
      only (None: every prefix, TIGER's protocol).

  Returns:
    The registered task.

  Raises:
    ConfigError: bad arguments.
  """
  if max_history < 1:
    raise ConfigError(f"max_history must be >= 1, got {max_history}.")
  if num_user_buckets < 0:
    raise ConfigError(f"num_user_buckets must be >= 0, got "
                      f"{num_user_buckets}.")
  if use_user_token is None:
    use_user_token = num_user_buckets > 0
  if use_user_token and num_user_buckets == 0:
    raise ConfigError(f"task {name!r}: use_user_token=True needs "
                      "num_user_buckets > 0.")
  fspath = lambda p: None if p is None else os.fspath(p)
  config = TigerTaskConfig(
      name=name, tfds_name=tfds_name,
      semantic_ids_dir=fspath(semantic_ids_dir), data_dir=fspath(data_dir),
      manual_dir=fspath(manual_dir), max_history=int(max_history),
      num_user_buckets=int(num_user_buckets),
      codebook_sizes=(None if codebook_sizes is None
                      else tuple(int(s) for s in codebook_sizes)),
      use_user_token=bool(use_user_token),
      ks=tuple(int(k) for k in ks),
      max_train_prefixes=(None if max_train_prefixes is None
                          else int(max_train_prefixes)))
  with _REGISTRY_LOCK:
    registered = name in seqio.TaskRegistry.names()
    if registered and _CONFIGS.get(name) == config:
      return seqio.TaskRegistry.get(name)
    if registered:
      logging.info("Replacing task %s.", name)
      seqio.TaskRegistry.remove(name)
    task = _build_task(config)
    _CONFIGS[name] = config
    return task


def register_default_tasks() -> None:
  """Registers the stable TIGER tasks (idempotent; reads no file)."""
  data_dir = os.environ.get("RECJAX_TFDS_DIR") or None
  for name, (tfds_name, folder) in DEFAULT_TASKS.items():
    manual = None if folder is None else str(_data_root() / folder)
    register_tiger_task(name, tfds_name, None, data_dir=data_dir,
                        manual_dir=manual)


# -- lookups -------------------------------------------------------------------


def get_config(name: str) -> TigerTaskConfig:
  """The config of a registered TIGER task.

  Raises:
    ConfigError: the name is not a registered TIGER task.
  """
  if name not in _CONFIGS or name not in seqio.TaskRegistry.names():
    raise ConfigError(
        f"unknown task {name!r}; registered TIGER tasks: "
        f"{sorted(n for n in _CONFIGS if n in seqio.TaskRegistry.names())}. "
        "Import `tasks` and call tasks.register_tiger_task(...) first.")
  return _CONFIGS[name]


def get_task(name: str) -> seqio.Task:
  """The registered `seqio.Task` of a TIGER task (ConfigError if unknown)."""
  get_config(name)
  return seqio.TaskRegistry.get(name)


def get_vocabulary(name: str) -> SemanticIdVocabulary:
  """The vocabulary of a registered TIGER task."""
  return get_task(name).output_features["targets"].vocabulary


def default_feature_lengths(name: str) -> dict[str, int]:
  """`{'inputs': [1 +] max_history * levels, 'targets': levels + 1}`."""
  config = get_config(name)
  levels = get_vocabulary(name).num_levels
  return {"inputs": prep.required_inputs_length(levels, config.max_history,
                                                config.use_user_token),
          "targets": prep.required_targets_length(levels)}


def feature_converter(name: str, **kwargs: Any) -> prep.RecFeatureConverter:
  """The `RecFeatureConverter` of a task (its `max_history`)."""
  return prep.RecFeatureConverter(max_history=get_config(name).max_history,
                                  **kwargs)


def check_feature_lengths(task_or_vocabulary: str | SemanticIdVocabulary,
                          feature_lengths: Mapping[str, int],
                          max_history: int | None = None, *,
                          use_user_token: bool | None = None) -> None:
  """Checks that feature lengths hold the longest history and a target.

  Args:
    task_or_vocabulary: a registered task name, or a vocabulary.
    feature_lengths: task feature lengths (`inputs`, `targets`).
    max_history: history cap (default: the task's; needed for a
      vocabulary).
    use_user_token: whether inputs start with a user token (default: the
      task's; True for a vocabulary).

  Raises:
    ConfigError: an unknown task, a missing `max_history`, or lengths
      shorter than `1 + max_history * levels` / `levels + 1`, naming the
      needed lengths.
  """
  if isinstance(task_or_vocabulary, str):
    config = get_config(task_or_vocabulary)
    vocab = get_vocabulary(task_or_vocabulary)
    label = f"task {task_or_vocabulary!r}"
    if max_history is None:
      max_history = config.max_history
    if use_user_token is None:
      use_user_token = config.use_user_token
  else:
    vocab = task_or_vocabulary
    label = "vocabulary"
    if max_history is None:
      raise ConfigError("check_feature_lengths needs max_history with a "
                        "vocabulary.")
  if use_user_token is None:
    use_user_token = True
  missing = {"inputs", "targets"} - set(feature_lengths)
  if missing:
    raise ConfigError(f"{label}: feature lengths {dict(feature_lengths)} "
                      f"lack {sorted(missing)}.")
  prep.check_lengths_fit(feature_lengths, num_levels=vocab.num_levels,
                         max_history=max_history,
                         use_user_token=use_user_token, name=label)


def seen_items(name: str, split: str) -> dict[int, np.ndarray]:
  """Every item each user saw before their `split` target.

  Validation and test examples carry only the last `max_history` items
  (the model's input window); the "seen items excluded" policy removes the
  user's *whole* history, as the item-level models do. Under leave-one-out
  that history is the user's training sequence (the `train` split's history
  and target), plus the validation target for `test`.

  Args:
    name: a registered TIGER task.
    split: 'validation' or 'test' ('train': each user's training history).

  Returns:
    `{user_index: int32 item indices, oldest first}`.

  Raises:
    ConfigError: an unknown task or split.
  """
  if split not in SPLITS:
    raise ConfigError(f"task {name!r}: no split {split!r}; seen items exist "
                      f"for {list(SPLITS)}.")
  source: RecjaxTfdsSource = get_task(name).source
  builder = source.prepare()
  seen: dict[int, list[np.ndarray]] = {}
  for ex in tfds.as_numpy(builder.as_dataset(split=TRAIN_SPLIT)):
    parts = [np.asarray(ex["history"], np.int32)]
    if split != TRAIN_SPLIT:
      parts.append(np.asarray([ex["target"]], np.int32))
    seen[int(ex["user_index"])] = parts
  if split == "test":
    for ex in tfds.as_numpy(builder.as_dataset(split="validation")):
      seen.setdefault(int(ex["user_index"]), []).append(
          np.asarray([ex["target"]], np.int32))
  return {u: np.concatenate(parts) for u, parts in seen.items()}


def seen_items_matrix(name: str, split: str, user_index: np.ndarray
                      ) -> np.ndarray:
  """`seen_items` of each row as an int32 `[rows, width]` matrix (-1 pad).

  Args:
    name: a registered TIGER task.
    split: the split whose targets the rows hold.
    user_index: int `[rows]` dense user index of each row.

  Returns:
    Row i holds the items user `user_index[i]` saw before the target, left
    aligned; `width` is the longest such history (at least 1).

  Raises:
    ConfigError: a row's user has no examples in the task.
  """
  table = seen_items(name, split)
  users = np.asarray(user_index).reshape(-1)
  missing = sorted({int(u) for u in users} - set(table))
  if missing:
    raise ConfigError(
        f"task {name!r} split {split!r}: users {missing[:5]} have no "
        "training sequence; the examples do not come from this task's data. "
        "Re-materialise the split from the task.")
  width = max([1] + [len(table[int(u)]) for u in users])
  out = np.full((len(users), width), prep.HISTORY_PAD, np.int32)
  for i, u in enumerate(users):
    h = table[int(u)]
    out[i, :len(h)] = h
  return out


def popularity_baseline_metrics(name: str, split: str = "test",
                                exclude_seen: bool = False,
                                k: int = 20) -> dict[str, float]:
  """Metrics of the most-popular baseline on a task split.

  Popularity counts every item of the users' training sequences (history +
  target of the `train` split).

  Args:
    name: a registered TIGER task.
    split: split to score ('validation' or 'test').
    exclude_seen: leave every item the user saw before the target
      (`seen_items`, what the models exclude) out of its list.
    k: list length.

  Returns:
    `recjax.metrics.ranking_metrics` of the baseline.
  """
  config = get_config(name)
  task = get_task(name)
  vocab = get_vocabulary(name)
  source: RecjaxTfdsSource = task.source
  source.prepare()
  train = source.tfds_dataset.builder.as_dataset(split="train")
  items = [np.concatenate([ex["history"], [ex["target"]]])
           for ex in tfds.as_numpy(train)]
  counts = metrics_lib.item_counts(np.concatenate(items), vocab.num_items)
  examples = list(tfds.as_numpy(source.tfds_dataset.builder.as_dataset(
      split=split)))
  targets = np.array([ex["target"] for ex in examples], dtype=np.int64)
  if exclude_seen:
    table = seen_items(name, split)
    seen = [table[int(ex["user_index"])] for ex in examples]
    ranked = metrics_lib.popularity_baseline(counts, k, exclude=seen)
  else:
    ranked = np.tile(metrics_lib.popularity_baseline(counts, k),
                     (len(examples), 1))
  return metrics_lib.ranking_metrics(ranked, targets, ks=config.ks,
                                     num_items=vocab.num_items)


def task_catalog(name: str) -> list[str]:
  """The original item ids of a TIGER task's dataset, by item index."""
  source: RecjaxTfdsSource = get_task(name).source
  return list(tfds_builders.item_table(source.prepare()).original_ids)


def task_histories(name: str, split: str) -> list[tuple[str, np.ndarray]]:
  """`(user_id, whole history before the target)` of every user of a split.

  Args:
    name: a registered TIGER task.
    split: 'validation' or 'test'.

  Returns:
    One pair per example of the split, in split order.
  """
  source: RecjaxTfdsSource = get_task(name).source
  builder = source.prepare()
  table = seen_items(name, split)
  out = []
  for ex in tfds.as_numpy(builder.as_dataset(split=split)):
    user = ex["user_id"]
    user = user.decode("utf-8") if isinstance(user, bytes) else str(user)
    out.append((user, table[int(ex["user_index"])]))
  return out
