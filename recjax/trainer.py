"""The training loop: sharded train state, jitted steps, eval, checkpoints.

`Trainer` owns a model (the T5X `BaseModel` contract), an optax optimizer, a
`Partitioner` and a `Checkpointer`. Its jitted `train_step`

* folds the step into the dropout key (same seed, same run; a resumed run
  sees the same keys),
* splits the batch into `num_microbatches` and accumulates gradients with
  `lax.scan` (gradient accumulation),
* applies the optimizer, and
* is compiled with explicit in/out shardings and a donated state.

`Trainer.train` resumes from the latest checkpoint, feeds batches from a
`BatchSource` positioned at the resumed step, logs throughput and metrics,
runs the caller's validation function every `eval_period` steps, keeps the
best checkpoint by `best_metric`, and stops early after `patience`
evaluations without improvement. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import Protocol

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from recjax import checkpoints
from recjax import summaries
from recjax.errors import ConfigError
from recjax.models.base import BaseModel
from recjax.optimizers import OptimizerConfig
from recjax.partitioning import Partitioner

PyTree = Any
Batch = Mapping[str, np.ndarray]

# Metrics that models report as batch means (the rest are sums that the loop
# normalises by `num_tokens`); logged as `train/<name>` when present.
MEAN_METRICS = ("loss", "alignment_loss")


class BatchSource(Protocol):
  """Deterministic training batches that can start at any step."""

  def batches(self, start_step: int) -> Iterator[Batch]:
    """Yields this process's rows of global batches from `start_step` on."""


@flax.struct.dataclass
class TrainState:
  """Step, parameters and optimizer state."""

  step: jax.Array
  params: PyTree
  opt_state: PyTree


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """Loop settings.

  Attributes:
    num_train_steps: total steps of the run.
    num_train_epochs: item-level runs only: when > 0, the run lasts this
      many passes over the training batches (`recjax.train_items` sets
      `num_train_steps` from the data; the learning-rate schedule follows),
      so one schedule means the same on every data set. Leave
      `num_train_steps` at 0 then.
    batch_size: global batch size (all processes together).
    num_microbatches: gradient-accumulation microbatches per step.
    seed: parameter-init and dropout seed.
    log_period: steps between training-metric summaries.
    eval_period: steps between validations (0 = only at the end).
    checkpoint_period: steps between periodic checkpoints (0 = only at the
      end).
    keep_checkpoints: periodic checkpoints kept.
    best_metric: validation metric of the best checkpoint (None = off).
    patience: stop after this many validations without improvement
      (0 = never stop early).
    async_checkpoints: save checkpoints in the background.
    max_train_seconds: wall-clock budget of one `train` call (0 = none):
      once exceeded (checked every `log_period` steps, agreed by all
      processes), the loop validates, checkpoints and returns early; a
      later call with the same `model_dir` resumes towards
      `num_train_steps`. For time-boxed machines.
  """

  num_train_steps: int = 1000
  num_train_epochs: int = 0
  batch_size: int = 256
  num_microbatches: int = 1
  seed: int = 0
  log_period: int = 100
  eval_period: int = 0
  checkpoint_period: int = 1000
  keep_checkpoints: int = 3
  best_metric: str | None = "validation/ndcg@10"
  patience: int = 0
  async_checkpoints: bool = True
  max_train_seconds: float = 0.0

  def __post_init__(self):
    if self.num_train_steps < 0 or self.batch_size < 1:
      raise ConfigError("num_train_steps must be >= 0 and batch_size >= 1.")
    if self.num_train_epochs < 0:
      raise ConfigError(f"num_train_epochs={self.num_train_epochs} must be "
                        ">= 0 (0 = num_train_steps sets the length).")
    if self.num_train_epochs and self.num_train_steps:
      raise ConfigError(
          f"num_train_steps={self.num_train_steps} and num_train_epochs="
          f"{self.num_train_epochs} are both set; set one and leave the "
          "other at 0 (gin: TRAIN_STEPS = 0 or TRAIN_EPOCHS = 0).")
    if self.max_train_seconds < 0:
      raise ConfigError(f"max_train_seconds must be >= 0 (0 = no limit), "
                        f"got {self.max_train_seconds}.")
    if self.num_microbatches < 1 or self.batch_size % self.num_microbatches:
      raise ConfigError(
          f"num_microbatches={self.num_microbatches} must divide "
          f"batch_size={self.batch_size}.")


class Trainer:
  """Trains one model; see the module docstring."""

  def __init__(self, model: BaseModel, optimizer: OptimizerConfig,
               config: TrainerConfig, input_shapes: Mapping[str, tuple[int,
                                                                       ...]],
               model_dir: str, partitioner: Partitioner | None = None,
               meta: dict[str, Any] | None = None):
    """Builds the jitted functions (compiled lazily on first use).

    Args:
      model: the model.
      optimizer: optimizer and schedule.
      config: loop settings.
      input_shapes: feature shapes of one global batch (for init).
      model_dir: run directory (checkpoints, summaries).
      partitioner: device mesh; default all devices data-parallel.
      meta: model/vocabulary description stored with checkpoints.
    """
    self.model = model
    self.config = config
    self.model_dir = model_dir
    # Wall seconds of training + validation since step 0, resumes included
    # (also logged as `train/elapsed_seconds`); set by `train`.
    self.elapsed_seconds = 0.0
    self.partitioner = partitioner or Partitioner()
    self.partitioner.check_batch_size(config.batch_size)
    self.tx = optimizer.build(max(config.num_train_steps, 1))
    self.schedule = optimizer.schedule.build(max(config.num_train_steps, 1))
    self.input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
    p = self.partitioner
    logical = model.get_logical_axes(self.input_shapes)["params"]
    param_shardings = p.logical_to_sharding(logical)
    abstract = jax.eval_shape(self._init_state, jax.random.key(0))
    opt_shardings = p.optimizer_state_sharding(
        self.tx, abstract.opt_state, param_shardings)
    self.state_shardings = TrainState(step=p.replicated,
                                      params=param_shardings,
                                      opt_state=opt_shardings)
    self._jit_init = jax.jit(self._init_state,
                             out_shardings=self.state_shardings)
    self._jit_step = jax.jit(
        self._train_step,
        in_shardings=(self.state_shardings, p.data_sharding),
        out_shardings=(self.state_shardings, p.replicated),
        donate_argnums=(0,))
    self.checkpointer = checkpoints.Checkpointer(
        model_dir, meta or {}, keep=config.keep_checkpoints,
        best_metric=config.best_metric,
        async_save=config.async_checkpoints)

  # -- state -------------------------------------------------------------------

  def _init_state(self, rng: jax.Array) -> TrainState:
    variables = self.model.get_initial_variables(rng, self.input_shapes)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.tx.init(params))

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and shardings of the train state."""
    shapes = jax.eval_shape(self._init_state, jax.random.key(0))
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        shapes, self.state_shardings)

  def initial_state(self) -> TrainState:
    """The latest checkpoint's state, or a fresh one from the seed."""
    restored = self.checkpointer.restore(self.abstract_state())
    if restored is not None:
      return restored[0]
    return self._jit_init(jax.random.key(self.config.seed))

  # -- step ------------------------------------------------------------------

  def _train_step(self, state: TrainState, batch: PyTree
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(jax.random.key(self.config.seed + 1),
                             state.step)
    grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
    n = self.config.num_microbatches
    if n == 1:
      (_, metrics), grads = grad_fn(state.params, batch, rng)
    else:
      micro = jax.tree.map(
          lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), batch)

      def body(carry, inputs):
        i, mb = inputs
        (_, m), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (g, m)), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      _, m0 = jax.eval_shape(grad_fn, state.params,
                             jax.tree.map(lambda x: x[0], micro), rng)[0]
      zero_m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m0)
      (grads, metrics), _ = jax.lax.scan(body, (zeros, zero_m),
                                         (jnp.arange(n), micro))
      grads = jax.tree.map(lambda g: g / n, grads)
      metrics = {k: v / n if k in MEAN_METRICS else v
                 for k, v in metrics.items()}
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return TrainState(step=state.step + 1, params=params,
                      opt_state=opt_state), metrics

  def train_step(self, state: TrainState, local_batch: Batch
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on this process's rows of a global batch."""
    return self._jit_step(state, self.partitioner.shard_batch(local_batch))

  # -- loop --------------------------------------------------------------------

  def train(self, source: BatchSource,
            evaluate: Callable[[PyTree], dict[str, float]] | None = None
            ) -> TrainState:
    """Runs (or resumes) training to `num_train_steps`.

    Args:
      source: training batches.
      evaluate: `params -> {metric: value}` run every `eval_period` steps
        and at the end; metric names get a `validation/` prefix.

    Returns:
      The final train state (the best one is in `model_dir/best`).
    """
    cfg = self.config
    state = self.initial_state()
    start = int(state.step)
    writer = summaries.Summaries(self.model_dir)
    if start:
      print(f"Resuming from step {start} ({self.model_dir}).", flush=True)
    best, stale = self._best_so_far() if start else (-np.inf, 0)
    batches = source.batches(start)
    t0, seen, accum = time.time(), 0, {}
    began = t0
    # Wall time since step 0, carried over resumes (from the history).
    offset = self._elapsed_at(start) if start else 0.0
    step = start
    try:
      if cfg.num_train_steps == 0 and self.checkpointer.latest_step() is None:
        # A model used as it is (e.g. zero-shot transfer): validated and
        # saved once, so that evaluation and inference can restore it.
        if evaluate is not None:
          results = {f"validation/{k}": float(v)
                     for k, v in evaluate(state.params).items()}
          writer.write(0, results)
          if cfg.best_metric in results:
            self.checkpointer.save_best(0, state, results)
        self.checkpointer.save(0, state, force=True)
      for step in range(start + 1, cfg.num_train_steps + 1):
        state, metrics = self.train_step(state, next(batches))
        accum = jax.tree.map(jnp.add, accum, metrics) if accum else metrics
        seen += 1
        out_of_time = (step % cfg.log_period == 0 and
                       self._out_of_time(began))
        if out_of_time:
          print(f"max_train_seconds={cfg.max_train_seconds:g} reached at "
                f"step {step}; stopping (rerun to resume).", flush=True)
        if (step % cfg.log_period == 0 or step == cfg.num_train_steps
            or out_of_time):
          host = jax.device_get(accum)
          dt = max(time.time() - t0, 1e-9)
          scalars = {
              "train/loss": float(host["loss"]) / seen,
              "train/accuracy": float(host["accuracy"]) /
                                max(float(host["num_tokens"]), 1.0),
              "train/grad_norm": float(host["grad_norm"]) / seen,
              "train/learning_rate": float(self._learning_rate(step)),
              "train/steps_per_s": seen / dt,
              "train/examples_per_s": seen * cfg.batch_size / dt,
              "train/elapsed_seconds": offset + time.time() - began,
          }
          for name in MEAN_METRICS[1:]:
            if name in host:
              scalars[f"train/{name}"] = float(host[name]) / seen
          writer.write(step, scalars)
          t0, seen, accum = time.time(), 0, {}
        if cfg.checkpoint_period and step % cfg.checkpoint_period == 0:
          self.checkpointer.save(step, state)
        last = step == cfg.num_train_steps or out_of_time
        if evaluate is not None and (
            last or (cfg.eval_period and step % cfg.eval_period == 0)):
          results = {f"validation/{k}": float(v)
                     for k, v in evaluate(state.params).items()}
          writer.write(step, results)
          if cfg.best_metric is not None:
            if cfg.best_metric not in results:
              raise ConfigError(
                  f"best_metric {cfg.best_metric!r} is not a validation "
                  f"metric; choose one of {sorted(results)}.")
            if results[cfg.best_metric] > best:
              best, stale = results[cfg.best_metric], 0
              self.checkpointer.save_best(step, state, results)
            else:
              stale += 1
            if cfg.patience and stale >= cfg.patience:
              logging.info("Early stopping at step %d: %s has not improved "
                           "for %d validations.", step, cfg.best_metric,
                           stale)
              print(f"early stopping at step {step}", flush=True)
              break
        if out_of_time:
          break
      self.elapsed_seconds = offset + time.time() - began
      if step > start:
        self.checkpointer.save(step, state, force=True)
        writer.write(step, {"train/elapsed_seconds": self.elapsed_seconds})
    finally:
      self.checkpointer.wait()
      writer.close()
    if jax.process_index() == 0:
      summaries.plot_curves(self.model_dir)
    return state

  def _elapsed_at(self, step: int) -> float:
    """`train/elapsed_seconds` logged at or before `step` (0 if none)."""
    values = [r["train/elapsed_seconds"]
              for r in summaries.read_history(self.model_dir)
              if r["step"] <= step and "train/elapsed_seconds" in r]
    return max(values, default=0.0)

  def _out_of_time(self, began: float) -> bool:
    """Whether the time budget is spent, as process 0 sees it."""
    if not self.config.max_train_seconds:
      return False
    spent = time.time() - began > self.config.max_train_seconds
    if jax.process_count() > 1:  # every process must stop at one step
      spent = bool(multihost_utils.broadcast_one_to_all(np.int32(spent)))
    return spent

  def _learning_rate(self, step: int) -> float:
    return float(self.schedule(step))

  def _best_so_far(self) -> tuple[float, int]:
    """Best validation value and evaluations since, from the history."""
    best, stale = -np.inf, 0
    metric = self.config.best_metric
    for row in summaries.read_history(self.model_dir):
      if metric in row:
        if row[metric] > best:
          best, stale = row[metric], 0
        else:
          stale += 1
    return best, stale
