"""`python -m recjax.train`: the one training entry point (T5X style).

  python -m recjax.train \
    --gin_file=runs/train.gin --gin_file=experiments/tiger_movielens_100k.gin \
    --gin.MODEL_DIR=\"runs/tiger_ml100k\" --gin.TRAIN_STEPS=2000

The run file chooses the kind of training (`recjax.train.run.fn`):
`runs/train.gin` (generative, `train` below), `runs/train_items.gin`
(item-level, `recjax.train_items`) or `runs/train_counts.gin` (count
baselines, `recjax.train_counts`). Every kind leaves a self-describing run
directory (`config.gin`, `run.json`): `python -m recjax.eval --model_dir=D`
and `python -m recjax.infer --model_dir=D ...` need nothing else.

`train` (generative):
Reads the task split (materialised once to numpy batches, or a given numpy
directory on hosts without TensorFlow), builds the model for the task's
vocabulary, trains with periodic constrained-beam validation, checkpoints
(periodic + best by validation NDCG@10), and resumes from the latest
checkpoint when restarted.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import sys
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import jax

from recjax import evaluation
from recjax import partitioning
from recjax import run_lib
from recjax import trainer as trainer_lib
from recjax.errors import ConfigError
from recjax.models.base import BaseModel
from recjax.optimizers import OptimizerConfig
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie


class _Source:
  """Adapts `NumpyBatches` to the trainer's seekable `BatchSource`."""

  def __init__(self, batches):
    self._batches = batches

  def batches(self, start_step: int) -> Iterator[dict]:
    return self._batches.iterate(start_step)


def train(*, model_dir: str,
          train_dataset_cfg: run_lib.DatasetConfig,
          model_fn: Callable[[SemanticIdLayout], BaseModel],
          optimizer: OptimizerConfig,
          trainer_config: trainer_lib.TrainerConfig,
          eval_dataset_cfg: run_lib.DatasetConfig | None = None,
          eval_config: evaluation.EvalConfig | None = None,
          semantic_ids_dir: str | None = None,
          num_partitions: int = 1,
          distributed: partitioning.DistributedConfig | None = None,
          max_eval_examples: int | None = None,
          dry_run: bool = False) -> trainer_lib.TrainState | None:
  """Trains (or resumes) a model; returns the final train state.

  Args:
    model_dir: run directory: checkpoints, TensorBoard, history, curves.
    train_dataset_cfg: the training split.
    model_fn: builds the model for the vocabulary's token layout.
    optimizer: optimizer and learning-rate schedule.
    trainer_config: steps, batch size, periods, early stopping.
    eval_dataset_cfg: validation split (None = no validation).
    eval_config: beams and history policy of validation.
    semantic_ids_dir: codes for the trie (default: the task's).
    num_partitions: model-parallel mesh size.
    distributed: multi-process settings.
    max_eval_examples: validate on the split's first examples only (whole
      batches, the same users at every validation; None: all). Constrained
      beam search over a large validation split (Beauty: 22k users) can
      cost more than the training between two validations on a CPU.
    dry_run: build the data, the model, the trainer and the evaluator,
      then return None without training or writing (checks a config).

  Returns:
    The final train state.

  Raises:
    ConfigError: `max_eval_examples` < 1, or `num_train_epochs` set.
  """
  if max_eval_examples is not None and max_eval_examples < 1:
    raise ConfigError(f"max_eval_examples must be >= 1 or None, got "
                      f"{max_eval_examples}.")
  if trainer_config.num_train_epochs:
    raise ConfigError(
        f"TrainerConfig.num_train_epochs={trainer_config.num_train_epochs}:"
        " generative runs count steps (their SeqIO inputs repeat without "
        "epochs); set num_train_steps instead.")
  eval_config = eval_config or evaluation.EvalConfig()
  partitioning.initialize_distributed(
      distributed or partitioning.DistributedConfig())
  cache = pathlib.Path(model_dir) / "data"
  batches = run_lib.open_batches(train_dataset_cfg, cache,
                                 features=run_lib.MODEL_FEATURES)
  ids = run_lib.load_semantic_ids(batches.directory, semantic_ids_dir)
  model = model_fn(ids.layout)
  spec = batches.element_spec()
  shapes = {k: (trainer_config.batch_size,) + tuple(v[0][1:])
            for k, v in spec.items()}
  print(f"train: {batches.num_examples:,} examples, "
        f"{batches.num_batches:,} batches/epoch of "
        f"{trainer_config.batch_size}; {jax.device_count()} device(s), "
        f"{jax.process_count()} process(es)", flush=True)
  trainer = trainer_lib.Trainer(
      model, optimizer, trainer_config, shapes, model_dir,
      partitioner=partitioning.Partitioner(num_partitions),
      meta=run_lib.model_meta(model, ids))
  inputs = generative_inputs(train_dataset_cfg, ids, semantic_ids_dir)
  describe = lambda: run_lib.describe_run(
      model_dir, kind="generative", entry="recjax.train.train", model=model,
      inputs=inputs)
  if not dry_run and trainer.checkpointer.latest_step() is None:
    # A resumed run keeps the description of what trained it until it
    # ends: a resume that fails (another model) must not rewrite it.
    describe()
  evaluate = None
  if eval_dataset_cfg is not None:
    # Every process evaluates the whole split (validation is small).
    eval_batches = run_lib.open_batches(
        eval_dataset_cfg, cache, remainder="pad", shard=False)
    evaluator = evaluation.RankingEvaluator(
        model, ItemTrie.build(ids.codes, ids.layout), eval_config)
    num_eval_batches = eval_batches.num_batches
    if max_eval_examples is not None:
      num_eval_batches = min(num_eval_batches,
                             -(-max_eval_examples // eval_batches.batch_size))
    evaluate = lambda params: evaluator.evaluate(
        params, itertools.islice(eval_batches.epoch(0), num_eval_batches))
  if dry_run:
    return None
  state = trainer.train(_Source(batches), evaluate)
  describe()
  return state


def generative_inputs(cfg: run_lib.DatasetConfig, ids: run_lib.SemanticIds,
                      semantic_ids_dir: str | None) -> dict[str, Any]:
  """What a generative run read: its task (how to re-register it) or its
  numpy batches, and its semantic IDs with their fingerprint."""
  inputs: dict[str, Any] = {
      "task": cfg.mixture_or_task_name,
      "task_feature_lengths": (None if cfg.task_feature_lengths is None
                               else dict(cfg.task_feature_lengths)),
      "numpy_dir": cfg.numpy_dir,
      "semantic_ids_dir": semantic_ids_dir,
      "vocabulary": {**ids.layout.describe(),
                     "fingerprint": ids.fingerprint}}
  if cfg.mixture_or_task_name and not cfg.numpy_dir:
    from recjax import tasks  # pylint: disable=g-import-not-at-top
    try:
      config = tasks.tiger.get_config(cfg.mixture_or_task_name)
    except ConfigError:
      config = None  # Another kind of task: its module must register it.
    if config is not None:
      task = dataclasses.asdict(config)
      task["semantic_ids_dir"] = str(config.resolved_semantic_ids_dir())
      inputs["tiger_task"] = task
      if semantic_ids_dir is None:
        inputs["semantic_ids_dir"] = task["semantic_ids_dir"]
  return inputs


def run(fn: Callable[[], Any] | None = None) -> Any:
  """Calls the training function the run's gin files chose.

  `runs/train.gin` binds `fn` to `train` (generative families),
  `runs/train_items.gin` to `recjax.train_items.train_items` (item-level)
  and `runs/train_counts.gin` to `recjax.train_counts.train_counts` (count
  baselines): one `python -m recjax.train` for every family.

  Args:
    fn: the gin-configured training function (None: `train`).

  Returns:
    What it returns.
  """
  return (fn or train)()


def main(argv: list[str] | None = None) -> Any:
  """Runs `run` from T5X-style gin flags."""
  return run_lib.gin_main("recjax.train.run",
                          sys.argv[1:] if argv is None else argv, __doc__)


if __name__ == "__main__":
  main()
