"""Pieces shared by the train / eval / infer entry points.

* `DatasetConfig`: which task split (or materialised numpy batches) to read;
* `open_batches`: a `NumpyBatches` reader for a dataset config, materialising
  the SeqIO task split once when no numpy directory is given;
* `load_semantic_ids`: the codes and token layout a run decodes with;
* `model_meta`: the description stored with checkpoints;
* `gin_main`: T5X-style flags (`--gin_file`, `--gin.NAME=value`,
  `--gin_search_paths`) around a gin-configured function.

Only `open_batches` without a numpy directory touches TensorFlow (through
the task layer); everything else runs on hosts with jax alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import re
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import gin
import gin.config
import jax
import numpy as np

from recjax import checkpoints
from recjax import deprecation
from recjax import gin_utils
from recjax import quiet
from recjax.errors import ConfigError
from recjax.errors import RecjaxError
from recjax.models.base import BaseModel
from recjax.numpy_batches import NumpyBatches
from recjax.numpy_batches import read_manifest
from recjax.numpy_batches import vocabulary_fingerprint
from recjax.tokens import SemanticIdLayout


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """A split to read, T5X style.

  Attributes:
    mixture_or_task_name: a registered SeqIO task (see `tasks/`).
    task_feature_lengths: `{'inputs': N, 'targets': M}`; None = the task's
      default.
    split: 'train', 'validation' or 'test'.
    batch_size: global batch size.
    shuffle: shuffle (training).
    seed: shuffle seed.
    numpy_dir: materialised batches to read instead of the task (hosts
      without TensorFlow); see `python -m recjax.tasks.materialize`.
  """

  mixture_or_task_name: str | None = None
  task_feature_lengths: Mapping[str, int] | None = None
  split: str = "train"
  batch_size: int = 256
  shuffle: bool = True
  seed: int = 0
  numpy_dir: str | None = None


def materialized_dir(cfg: DatasetConfig, cache_root: str | os.PathLike[str]
                     ) -> pathlib.Path:
  """Where a task split is materialised (one copy per process)."""
  if cfg.numpy_dir:
    return pathlib.Path(cfg.numpy_dir)
  if not cfg.mixture_or_task_name:
    raise ConfigError("DatasetConfig needs mixture_or_task_name or "
                      "numpy_dir.")
  name = f"{cfg.mixture_or_task_name}-{cfg.split}"
  if cfg.task_feature_lengths:
    name += "-" + "-".join(f"{k}{v}" for k, v in
                           sorted(cfg.task_feature_lengths.items()))
  if jax.process_count() > 1:
    name += f"-p{jax.process_index()}"
  out = pathlib.Path(cache_root) / name
  # Imported here: the task layer needs TensorFlow and SeqIO.
  from recjax import tasks  # pylint: disable=g-import-not-at-top
  from recjax.tasks import materialize  # pylint: disable=g-import-not-at-top
  del tasks
  materialize.materialize(cfg.mixture_or_task_name, cfg.split, out,
                          feature_lengths=cfg.task_feature_lengths)
  return out


# The features a model step consumes (the rest are for evaluation).
MODEL_FEATURES = ("encoder_input_tokens", "decoder_input_tokens",
                  "decoder_target_tokens", "decoder_loss_weights")


def open_batches(cfg: DatasetConfig, cache_root: str | os.PathLike[str], *,
                 remainder: str = "drop", shard: bool = True,
                 features: Sequence[str] | None = None) -> NumpyBatches:
  """A split as a seekable numpy reader.

  Args:
    cfg: the split.
    cache_root: where task splits are materialised.
    remainder: 'drop' (training) or 'pad' (evaluation, adds `mask`).
    shard: read only this process's shard, `batch_size / processes` rows
      per batch; False reads every example with the full batch size.
    features: features to read (default all).

  Returns:
    The reader.
  """
  directory = materialized_dir(cfg, cache_root)
  procs = jax.process_count() if shard else 1
  return NumpyBatches(directory, cfg.batch_size // procs, shuffle=cfg.shuffle,
                      seed=cfg.seed,
                      shard_index=jax.process_index() if shard else 0,
                      num_shards=procs, remainder=remainder,
                      features=None if features is None else tuple(features))


@dataclasses.dataclass(frozen=True)
class SemanticIds:
  """Item codes and the token layout of a run."""

  codes: np.ndarray
  layout: SemanticIdLayout
  fingerprint: str


def load_semantic_ids(batches_dir: str | os.PathLike[str],
                      semantic_ids_dir: str | None = None) -> SemanticIds:
  """Codes and layout, checked against the materialised batches.

  Args:
    batches_dir: a materialised split (its manifest names the layout).
    semantic_ids_dir: directory with `codes.npy`; default: the task's own
      semantic IDs (needs the task layer).

  Returns:
    The semantic IDs.

  Raises:
    ConfigError: missing codes, or codes of another vocabulary than the
      batches were made with.
  """
  manifest = read_manifest(batches_dir)
  vocab = manifest.get("vocabulary", {})
  layout_desc = vocab.get("layout") or {}
  if semantic_ids_dir is None:
    from recjax import tasks  # pylint: disable=g-import-not-at-top
    task = manifest.get("task")
    codes = np.asarray(tasks.get_vocabulary(task).codes)
  else:
    path = pathlib.Path(semantic_ids_dir) / "codes.npy"
    if not path.exists():
      raise ConfigError(f"{path} does not exist; run the semantic-ID stage "
                        "(python -m recjax.semantic_ids) first.")
    codes = np.load(path)
  layout = SemanticIdLayout(tuple(layout_desc["codebook_sizes"]),
                            int(layout_desc.get("num_user_buckets", 0)))
  fingerprint = vocabulary_fingerprint(layout.describe(), codes)
  if vocab.get("fingerprint") and vocab["fingerprint"] != fingerprint:
    raise ConfigError(
        f"{batches_dir}: the batches were made with vocabulary "
        f"{vocab['fingerprint'][:12]}, but the semantic IDs give "
        f"{fingerprint[:12]}. Re-materialise the batches or point at the "
        "semantic IDs they were made with.")
  layout.check_codes(codes)
  return SemanticIds(codes=codes.astype(np.int32), layout=layout,
                     fingerprint=fingerprint)


def model_meta(model: BaseModel,
               vocabulary: SemanticIds | Mapping[str, Any],
               **description: Any) -> dict[str, Any]:
  """What a checkpoint must match: the model and its vocabulary.

  One description for every family: the model's class and the fields of
  its config dataclass (`model.config`, else `model.module.config`), plus
  the vocabulary the model reads (a generative run's token layout and
  semantic-ID fingerprint, an item-level run's catalog). `Checkpointer`
  refuses a checkpoint whose description differs.

  Args:
    model: the model.
    vocabulary: the run's `SemanticIds`, or a dict describing the catalog.
    **description: more entries of the model's description (e.g. the
      checksum of frozen item embeddings).

  Returns:
    `{"model": ..., "vocabulary": ...}` plus the config's defaults.
  """
  desc: dict[str, Any] = {"class": type(model).__name__}
  meta: dict[str, Any] = {}
  config = getattr(model, "config", None)
  if not dataclasses.is_dataclass(config):
    config = getattr(getattr(model, "module", None), "config", None)
  if dataclasses.is_dataclass(config):
    cfg = dataclasses.asdict(config)
    if "dtype" in cfg:
      cfg["dtype"] = str(cfg["dtype"])
    desc["network"] = cfg
    meta.update(checkpoints.network_defaults_meta(config))
  desc.update(description)
  if isinstance(vocabulary, SemanticIds):
    vocabulary = {**vocabulary.layout.describe(),
                  "fingerprint": vocabulary.fingerprint}
  return {**meta, "model": desc, "vocabulary": dict(vocabulary)}


def json_ready(config: Any) -> Any:
  """A dataclass (or value) as plain JSON types (tuples become lists)."""
  if dataclasses.is_dataclass(config):
    config = dataclasses.asdict(config)
  return json.loads(json.dumps(config, default=str))


def write_json(path: str | os.PathLike[str], data: Any) -> None:
  """Writes JSON atomically (process 0 only)."""
  if jax.process_index() != 0:
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


# A run directory describes itself: `config.gin` is the operative gin
# config (T5X's), `run.json` the kind of run, the entry point that trained
# it, the model class and the inputs with their fingerprints. `recjax.eval`
# and `recjax.infer` need nothing else.
CONFIG_FILE = "config.gin"
RUN_FILE = "run.json"
RUN_FORMAT = 1


def family_of(obj: Any) -> str | None:
  """The registered family whose folder defines `obj` (a model, a fn)."""
  from recjax.models import registry  # pylint: disable=g-import-not-at-top
  module = getattr(obj, "__module__", None) or type(obj).__module__
  for name in registry.list_families():
    spec = registry.get_family(name)
    if module == f"recjax.models.{name}" or module.startswith(
        f"recjax.models.{name}.") or spec.factory.startswith(module + "."):
      return name
  return None


_RUN_FN = re.compile(r"^(recjax\.train\.)?run\.fn\s*=", re.MULTILINE)


def _with_entry(config: str, entry: str) -> str:
  """`config` naming its training function for `python -m recjax.train`.

  A run started through `recjax.train.run` has `run.fn` in its operative
  config; one whose training function was called directly (a script, a
  notebook) does not, and its `config.gin` would re-run as the generative
  `train`. The binding is added in that case.
  """
  if _RUN_FN.search(config):
    return config
  return (config.rstrip("\n") + "\n\n# Added by recjax.run_lib: the training "
          "function, so that\n# `python -m recjax.train --gin_file=config.gin` "
          f"re-runs this run.\nrecjax.train.run.fn = @{entry}\n")


def describe_run(model_dir: str | os.PathLike[str], *, kind: str,
                 entry: str, model: Any, inputs: Mapping[str, Any]) -> None:
  """Writes `config.gin` and `run.json` into `model_dir` (process 0).

  Called when a run starts and again when it ends, so the operative config
  also holds what validation and test evaluation used.

  Args:
    model_dir: the run directory.
    kind: "generative", "item" or "count" (`recjax.models.registry.KINDS`).
    entry: dotted name of the training function.
    model: the model (its class and family are recorded).
    inputs: what the run read, JSON-able, with fingerprints.
  """
  if jax.process_index() != 0:
    return
  from recjax import io_utils  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(model_dir)
  out.mkdir(parents=True, exist_ok=True)
  io_utils.write_text_atomic(out / CONFIG_FILE,
                             _with_entry(gin.operative_config_str(), entry))
  cls = type(model)
  write_json(out / RUN_FILE, {
      "format": RUN_FORMAT, "kind": kind, "entry": entry,
      "model_class": f"{cls.__module__}.{cls.__qualname__}",
      "family": family_of(model), "inputs": dict(inputs)})


def read_run(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
  """The `run.json` of a run directory, checked.

  Raises:
    ConfigError: not a run directory, or a run written before runs
      described themselves.
  """
  path = pathlib.Path(model_dir) / RUN_FILE
  if not path.exists():
    where = pathlib.Path(model_dir)
    hint = ("it holds no trained run; train one first (python -m "
            "recjax.train)" if not where.is_dir() or not any(
                where.iterdir()) else
            "it was written before runs described themselves; pass the "
            "run's gin files (--gin_file=...) as when it was trained")
    raise ConfigError(f"{path} does not exist: {hint}.")
  try:
    desc = json.loads(path.read_text())
  except ValueError as e:
    raise ConfigError(f"{path}: not valid JSON ({e}); re-train the run or "
                      "restore the file.") from None
  for key in ("kind", "entry", "inputs"):
    if key not in desc:
      raise ConfigError(f"{path} has no {key!r}; it is not a recjax run "
                        "description.")
  if not (pathlib.Path(model_dir) / CONFIG_FILE).exists():
    raise ConfigError(f"{pathlib.Path(model_dir) / CONFIG_FILE} is missing; "
                      "the run directory is incomplete.")
  return desc


def parse_run_config(model_dir: str | os.PathLike[str],
                     bindings: Sequence[str] = ()) -> None:
  """Parses a run's `config.gin` (unfinalised), then `bindings`.

  `import` lines of modules that no longer import here (a test's task
  module, say) are skipped: the run's inputs in `run.json` re-create what
  they registered.
  """
  import importlib  # pylint: disable=g-import-not-at-top
  gin_utils.register_all()
  lines = []
  for line in (pathlib.Path(model_dir) / CONFIG_FILE).read_text(
      ).splitlines():
    if line.startswith("import "):
      try:
        importlib.import_module(line.split()[1])
      except ImportError:
        logging.warning("%s: skipping %r (not importable here).",
                        model_dir, line)
        continue
    lines.append(line)
  gin.clear_config()
  gin.parse_config("\n".join(lines))
  gin.parse_config(list(bindings))


def _statements(config: str) -> dict[str, str]:
  """`{selector: value}` of a gin config string in gin's own layout."""
  out: dict[str, str] = {}
  key = None
  for line in config.splitlines():
    if not line.strip() or line.startswith(("#", "import ")):
      key = None
    elif line[0].isspace() and key is not None:
      out[key] = f"{out[key]} {line.strip()}".strip()
    else:
      key, sep, value = line.partition(" = ")
      if sep:
        key = key.strip()
        out[key] = value.strip()
      else:
        key = None
    if key is not None and out[key].endswith("\\"):  # A continued line.
      out[key] = out[key][:-1].rstrip()
  return out


def config_changes(model_dir: str | os.PathLike[str],
                   gin_files: Sequence[str], bindings: Sequence[str] = (),
                   depth: int = 0) -> list[tuple[str, str, str]]:
  """What `gin_files` + `bindings` bind otherwise than the run's config.

  Compares the run's `config.gin` with a configuration about to train in
  `model_dir` again (resume, or reuse of a finished run): every parameter
  bound in both must have the same value, or the run was trained with
  another configuration. `MODEL_DIR` is not compared. A run directory
  that moved with its whole cache compares equal: when `depth` > 0, the
  run was `depth` levels below a root, and the old root's path in the old
  values is read as the new one's.

  Args:
    model_dir: the run directory (holding `config.gin`).
    gin_files: the new configuration's gin files.
    bindings: its bindings.
    depth: how many levels the run directory is below the cache root whose
      paths the configuration mentions (0: paths compared as they are).

  Returns:
    `(parameter, value in the run, new value)` of each difference, sorted;
    empty when the configurations agree. The gin config is cleared.
  """
  gin.clear_config()
  try:
    gin_utils.parse_gin(gin_files, bindings, finalize=False)
    new = _statements(gin.config_str())
    parse_run_config(model_dir)
    old = _statements(gin.config_str())
  finally:
    gin.clear_config()
  old_dir, new_dir = old.pop("MODEL_DIR", None), new.pop("MODEL_DIR", None)
  if depth > 0 and old_dir and new_dir and old_dir != new_dir:
    old_root = str(pathlib.PurePath(old_dir.strip("'\"")).parents[depth - 1])
    new_root = str(pathlib.PurePath(new_dir.strip("'\"")).parents[depth - 1])
    old = {k: v.replace(old_root + "/", new_root + "/").replace(
        f"'{old_root}'", f"'{new_root}'") for k, v in old.items()}
  return [(k, old[k], new[k]) for k in sorted(old.keys() & new.keys())
          if old[k] != new[k]]


def configured(name: str) -> Any:
  """The value bound to gin parameter `name`, references evaluated."""
  value = gin.query_parameter(name)
  if isinstance(value, gin.config.ConfigurableReference):
    fn = value.scoped_configurable_fn
    return fn() if value.evaluate else fn
  return value


def gin_bindings(parser: argparse.ArgumentParser,
                 rest: Sequence[str]) -> list[str]:
  """`NAME=VALUE` of each `--gin.NAME=VALUE` flag; other flags are errors."""
  bindings = []
  for arg in rest:
    if not arg.startswith("--gin."):
      parser.error(f"unknown argument {arg!r}")
    body = arg[len("--gin."):]
    if "=" not in body:
      parser.error(f"{arg!r}: expected --gin.NAME=VALUE")
    bindings.append(body)
  return bindings


def gin_main(fn_name: str, argv: Sequence[str] | None = None,
             description: str = "") -> Any:
  """Parses T5X-style gin flags, then calls configurable `fn_name`.

  Flags: `--gin_file F` (repeatable), `--gin.NAME=VALUE` (repeatable),
  `--gin_search_paths a,b`.

  Returns:
    What the function returns; exits with status 2 on a `RecjaxError`.
  """
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--gin_search_paths", default="")
  quiet.add_verbose_flag(parser)
  args, rest = parser.parse_known_args(argv)
  bindings = gin_bindings(parser, rest)
  quiet.configure_logging()
  search = [p for p in args.gin_search_paths.split(",") if p]
  try:
    gin_utils.parse_gin(args.gin_file, bindings, search)
    return gin.get_configurable(fn_name)()
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except (ValueError, OSError) as e:
    if "gin" in type(e).__module__ or "configurable" in str(e) or \
        "gin" in str(e).lower():
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    raise


__getattr__ = deprecation.alias_module(__name__)
