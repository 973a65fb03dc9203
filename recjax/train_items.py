"""`train_items(...)`: gin entry point for item-level models (T5X style).

  python -m recjax.train_items \
    --gin_file=runs/train_items.gin \
    --gin_file=experiments/sasrec_amazon_office.gin \
    --gin.MODEL_DIR=\"runs/sasrec_office\"

Loads a dataset and its leave-one-out splits (`recjax.item_sequences`),
optionally frozen item text embeddings (`embeddings_dir`, an embed-stage
directory), builds the model with `model_fn(dataset, item_embeddings)`,
trains it with periodic full-ranking validation (`EVAL_PERIOD = -1`: once
per epoch, RecBole's rhythm), the best checkpoint by
`TrainerConfig.best_metric` and early stopping (`TrainerConfig.patience`),
then restores the best parameters and evaluates the test split under both
history policies. `model_dir/metrics.json` gets `test/<metric>` (ranking
over all items, TIGER's protocol), `test_excl/<metric>` (each user's
history excluded), `best_step`, `final_step`, `train_seconds` and the data
sizes; models with `export_item_embeddings` (SASRec) also write
`model_dir/item_embeddings.npy` from the best parameters (LETTER's
collaborative embeddings). Restarting with the same `model_dir` resumes
from the latest checkpoint. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from recjax import embed
from recjax import evaluation
from recjax import item_sequences
from recjax import partitioning
from recjax import run_lib
from recjax import trainer as trainer_lib
from recjax.datasets import CanonicalDataset
from recjax.errors import ConfigError
from recjax.evaluation import EvalConfig
from recjax.item_sequences import ItemDataConfig
from recjax.models.base import ItemModel
from recjax.models.sasrec import make_sasrec
from recjax.optimizers import OptimizerConfig

METRICS_FILE = "metrics.json"
# An `eval_period` / `checkpoint_period` of -1 means once per epoch.
EVERY_EPOCH = -1
EMBEDDINGS_EXPORT = "item_embeddings.npy"

ModelFn = Callable[[CanonicalDataset, np.ndarray | None], ItemModel]


def load_item_embeddings(embeddings_dir: str, dataset: CanonicalDataset
                         ) -> np.ndarray:
  """Frozen item embeddings of an embed-stage directory, checked.

  Args:
    embeddings_dir: output of `python -m recjax.embed`.
    dataset: the dataset they must describe (one row per item).

  Returns:
    float32 `[num_items, dim]`.

  Raises:
    ConfigError: missing or modified files, or a row count other than the
      dataset's number of items.
  """
  emb, manifest = embed.load_embeddings(embeddings_dir)
  path = pathlib.Path(embeddings_dir) / embed.EMBEDDINGS_FILE
  if emb.ndim != 2 or emb.shape[0] != dataset.num_items:
    made_for = manifest.get("dataset", "another dataset")
    raise ConfigError(
        f"{path} has shape {emb.shape} (made for {made_for!r}), but dataset "
        f"{dataset.name!r} has {dataset.num_items} items; embed this "
        f"dataset (python -m recjax.embed) and point embeddings_dir at it.")
  return np.asarray(emb, np.float32)


def model_meta(model: ItemModel, dataset: CanonicalDataset,
               data: ItemDataConfig,
               item_embeddings: np.ndarray | None) -> dict[str, Any]:
  """`run_lib.model_meta` of an item-level run: the catalog and history
  length are its vocabulary."""
  extra = ({} if item_embeddings is None else
           {"item_embeddings": embed.array_checksum(item_embeddings)})
  # Models built on frozen parameters say which (VQ-Rec's transfers).
  extra.update(getattr(model, "checkpoint_description", None) or {})
  return run_lib.model_meta(
      model, {"dataset": dataset.name, "num_items": dataset.num_items,
              "fingerprint": dataset.fingerprint(),
              "max_length": data.max_length}, **extra)


def item_inputs(data: ItemDataConfig, dataset: CanonicalDataset,
                embeddings_dir: str | None,
                item_embeddings: np.ndarray | None) -> dict[str, Any]:
  """What an item-level run read: the data config, the dataset and the
  frozen item embeddings, with fingerprints."""
  out: dict[str, Any] = {
      "data": run_lib.json_ready(data),
      "dataset": {"name": dataset.name, "num_items": dataset.num_items,
                  "num_users": dataset.num_users,
                  "fingerprint": dataset.fingerprint()},
      "embeddings_dir": (None if embeddings_dir is None
                         else str(pathlib.Path(embeddings_dir).absolute()))}
  if item_embeddings is not None:
    out["item_embeddings"] = embed.array_checksum(item_embeddings)
  return out


def _takes(fn: Callable[..., Any], name: str) -> bool:
  """Whether `fn` (a gin configurable or a plain callable) takes `name`."""
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def build(data: ItemDataConfig, model_fn: ModelFn,
          embeddings_dir: str | None
          ) -> tuple[item_sequences.ItemData, np.ndarray | None, ItemModel]:
  """The data, frozen item embeddings and model of a run, checked.

  Args:
    data: dataset, history length and batch sizes.
    model_fn: `model_fn(dataset, item_embeddings) -> ItemModel`; one
      that takes `cold_items` gets the cold-start protocol's items.
    embeddings_dir: frozen item embeddings (embed stage) or None.

  Returns:
    `(item_data, item_embeddings or None, model)`; the model's
    `cold_items` are set under the cold-start protocol.

  Raises:
    ConfigError: a model over another catalog or a shorter history.
  """
  item_data = item_sequences.load(data)
  ds = item_data.dataset
  item_embeddings = None
  if embeddings_dir is not None:
    item_embeddings = load_item_embeddings(embeddings_dir, ds)
  kwargs = {}
  if item_data.cold is not None and _takes(model_fn, "cold_items"):
    kwargs["cold_items"] = item_data.cold  # e.g. VQ-Rec's transfer step.
  model = model_fn(ds, item_embeddings, **kwargs)
  if item_data.cold is not None:  # Out of the training softmax.
    model.cold_items = np.asarray(item_data.cold)
  if int(model.num_items) != ds.num_items:
    raise ConfigError(f"model_fn built a model over {model.num_items} items "
                      f"but {ds.name!r} has {ds.num_items}.")
  model_len = getattr(model, "max_length", None)
  if model_len is not None and model_len < data.max_length:
    raise ConfigError(
        f"ItemDataConfig.max_length={data.max_length} exceeds the model's "
        f"max_length={model_len}; bind both to %MAX_LENGTH.")
  return item_data, item_embeddings, model


def _resolve_epoch_periods(config: trainer_lib.TrainerConfig,
                           batches_per_epoch: int
                           ) -> trainer_lib.TrainerConfig:
  """Replaces `EVERY_EPOCH` periods and `num_train_epochs` by steps."""
  changes = {name: batches_per_epoch
             for name in ("eval_period", "checkpoint_period")
             if getattr(config, name) == EVERY_EPOCH}
  if config.num_train_epochs:
    changes.update(num_train_steps=config.num_train_epochs *
                   batches_per_epoch, num_train_epochs=0)
  for name in ("eval_period", "checkpoint_period"):
    if getattr(config, name) < 0 and name not in changes:
      raise ConfigError(f"TrainerConfig.{name}={getattr(config, name)}: use "
                        f">= 0 steps or {EVERY_EPOCH} (every epoch).")
  return dataclasses.replace(config, **changes) if changes else config


def train_items(model_dir: str,
                data: ItemDataConfig | None = None,
                model_fn: ModelFn = make_sasrec,
                optimizer: OptimizerConfig | None = None,
                trainer_config: trainer_lib.TrainerConfig | None = None,
                eval_config: EvalConfig | None = None,
                embeddings_dir: str | None = None,
                num_partitions: int = 1,
                distributed: partitioning.DistributedConfig | None = None,
                dry_run: bool = False) -> dict[str, float] | None:
  """Trains (or resumes) an item-level model and evaluates it on test.

  Args:
    model_dir: run directory (checkpoints, history, metrics.json).
    data: dataset, history length, training-example mode, batch sizes.
    model_fn: `model_fn(dataset, item_embeddings) -> ItemModel`.
    optimizer: optimizer and learning-rate schedule.
    trainer_config: steps, batch size, validation period, early stopping.
    eval_config: list length, `ks` and the history policy of validation
      (test reports both policies).
    embeddings_dir: frozen item embeddings for `model_fn` (embed stage).
    num_partitions: model-parallel mesh size.
    distributed: multi-process settings.
    dry_run: build the data, the model, the trainer and the evaluator,
      then return None without training or writing (checks a config).
    (None for a config argument means its defaults.)

  Returns:
    The metrics written to `model_dir/metrics.json`.

  Raises:
    ConfigError: inconsistent batch sizes, history lengths or embeddings.
  """
  data = data or ItemDataConfig()
  optimizer = optimizer or OptimizerConfig()
  trainer_config = trainer_config or trainer_lib.TrainerConfig()
  eval_config = eval_config or EvalConfig()
  partitioning.initialize_distributed(
      distributed or partitioning.DistributedConfig())
  if data.batch_size not in (None, trainer_config.batch_size):
    raise ConfigError(
        f"ItemDataConfig.batch_size={data.batch_size} differs from "
        f"TrainerConfig.batch_size={trainer_config.batch_size}; set one "
        "(or bind both to %BATCH_SIZE).")
  item_data, item_embeddings, model = build(data, model_fn, embeddings_dir)
  ds = item_data.dataset
  source = item_data.train_batches(trainer_config.batch_size)
  in_epochs = bool(trainer_config.num_train_epochs or
                  optimizer.schedule.warmup_epochs)
  trainer_config = _resolve_epoch_periods(trainer_config, source.num_batches)
  optimizer = dataclasses.replace(
      optimizer, schedule=optimizer.schedule.in_steps(source.num_batches))
  schedule, steps = optimizer.schedule, trainer_config.num_train_steps
  if (in_epochs and schedule.kind in ("cosine", "linear")
      and not schedule.decay_steps and steps <= schedule.warmup_steps):
    raise ConfigError(
        f"the run's {steps} steps ({source.num_batches} batches per epoch on "
        f"{ds.name}) do not exceed its {schedule.warmup_steps} warm-up "
        "steps; shorten the warm-up (WARMUP_EPOCHS / WARMUP_STEPS) or "
        "lengthen the run (TRAIN_EPOCHS / TRAIN_STEPS).")
  print(f"train_items: {ds.name}: {ds.num_users:,} users, "
        f"{ds.num_items:,} items; {source.num_examples:,} "
        f"{data.train_mode} examples, {source.num_batches:,} batches/epoch "
        f"of {source.batch_size}; {jax.device_count()} device(s), "
        f"{jax.process_count()} process(es)", flush=True)
  trainer = trainer_lib.Trainer(
      model, optimizer, trainer_config, source.input_shapes, model_dir,
      partitioner=partitioning.Partitioner(num_partitions),
      meta=model_meta(model, ds, data, item_embeddings))
  inputs = item_inputs(data, ds, embeddings_dir, item_embeddings)
  describe = lambda: run_lib.describe_run(
      model_dir, kind="item", entry="recjax.train_items.train_items",
      model=model, inputs=inputs)
  evaluator = evaluation.RankingEvaluator(model, config=eval_config)
  validation = item_data.eval_batches("validation")
  if dry_run:
    return None
  if trainer.checkpointer.latest_step() is None:
    # A resumed run keeps the description of what trained it until it
    # ends: a resume that fails (another model) must not rewrite it.
    describe()
  state = trainer.train(source,
                        lambda params: evaluator.evaluate(params, validation))
  # Wall time of training and validation since step 0, over resumes.
  train_seconds = trainer.elapsed_seconds
  final_step = int(state.step)
  params, best_step = state.params, final_step
  if trainer.checkpointer.best_step() is not None:
    # The full state (StandardRestore): the manager that saved it has a
    # StandardSave handler, and the params come back with their shardings.
    best_state, best_step = trainer.checkpointer.restore(
        trainer.abstract_state(), best=True)
    params = best_state.params
  results = evaluator.evaluate_both(params, item_data.eval_batches("test"))
  if item_data.cold is not None:  # The cold-start protocol's users.
    results.update(evaluator.evaluate_both(
        params, item_data.eval_batches("test", cold_only=True),
        prefix="test_cold"))
    results["num_cold_items"] = float(item_data.cold.size)
  results.update({"best_step": float(best_step),
                  "final_step": float(final_step),
                  "train_seconds": float(train_seconds),
                  "num_train_examples": float(source.num_examples),
                  "num_items": float(ds.num_items),
                  "num_users": float(ds.num_users)})
  export = getattr(model, "export_item_embeddings", None)
  if export is not None and jax.process_index() == 0:
    export(params, pathlib.Path(model_dir) / EMBEDDINGS_EXPORT)
  run_lib.write_json(pathlib.Path(model_dir) / METRICS_FILE, results)
  describe()
  shown = {k: round(v, 4) for k, v in results.items()
           if k.split("/")[-1] in ("recall@10", "ndcg@10")}
  print(f"test (best step {best_step}): {shown}", flush=True)
  return results


def main(argv: list[str] | None = None) -> Any:
  """Runs `train_items` from T5X-style gin flags."""
  return run_lib.gin_main("recjax.train_items.train_items",
                          sys.argv[1:] if argv is None else argv, __doc__)


if __name__ == "__main__":
  main()
