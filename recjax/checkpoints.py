"""Orbax checkpoints: periodic keep-N, best-by-metric, resume from latest.

A run's `model_dir` holds

  checkpoints/<step>/   the latest `keep` periodic checkpoints
  best/<step>/          the best checkpoint by a validation metric

Each checkpoint stores the train state (Orbax `StandardSave`) and a JSON
`meta` item: the step, the model description and the vocabulary
fingerprint. Restoring compares `meta` with the current run and refuses a
checkpoint written by another model or vocabulary, naming what differs (a
config field added since the checkpoint was written is accepted at its
default value).
Orbax writes into a temporary directory and renames it when complete, so a
run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from recjax.errors import RecjaxError

PyTree = Any


class CheckpointError(RecjaxError, RuntimeError):
  """A checkpoint is corrupt or belongs to another model or vocabulary."""


# `meta[DEFAULTS_KEY]` mirrors parts of `meta` with each field's default
# value; it is never saved, only used to read older checkpoints.
DEFAULTS_KEY = "defaults"
_MISSING = object()


def config_defaults(config: Any) -> dict[str, Any] | None:
  """The default value of every field of a config dataclass, as JSON.

  Fields without a default (e.g. a vocabulary size) keep the instance's
  value.

  Args:
    config: a dataclass instance.

  Returns:
    `{field: default}` (JSON-normalised like `meta`), or None when the class
    cannot be built that way.
  """
  required = {f.name: getattr(config, f.name)
              for f in dataclasses.fields(config)
              if f.init and f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING}
  try:
    fresh = type(config)(**required)
  except (TypeError, ValueError, RecjaxError):
    return None
  return json.loads(json.dumps(dataclasses.asdict(fresh), default=str))


def network_defaults_meta(config: Any) -> dict[str, Any]:
  """`{"defaults": {"model": {"network": ...}}}` for a run's `meta` (empty
  when the config class needs arguments); see `Checkpointer`."""
  defaults = config_defaults(config)
  if defaults is None:
    return {}
  return {DEFAULTS_KEY: {"model": {"network": defaults}}}


def _compatible(saved: Any, current: Any, defaults: Any) -> bool:
  """`saved == current`, except that a field the checkpoint lacks (added to
  a config since it was written) matches when the run keeps its default."""
  if not (isinstance(saved, dict) and isinstance(current, dict)):
    return saved == current
  if set(saved) - set(current):
    return False
  defaults = defaults if isinstance(defaults, dict) else {}
  for key, value in current.items():
    default = defaults.get(key, _MISSING)
    if key not in saved:
      if default is _MISSING or default != value:
        return False
    elif not _compatible(saved[key], value, default):
      return False
  return True


def _compare(saved: dict[str, Any], current: dict[str, Any],
             where: str, defaults: dict[str, Any] | None = None) -> None:
  defaults = defaults or {}
  for key in ("model", "vocabulary"):
    if key in current and key in saved and not _compatible(
        saved[key], current[key], defaults.get(key)):
      s = json.dumps(saved[key], sort_keys=True)
      c = json.dumps(current[key], sort_keys=True)
      raise CheckpointError(
          f"{where} was written with a different {key}:\n  checkpoint: {s}"
          f"\n  this run:   {c}\nUse another model_dir, or the same {key} "
          "configuration as the checkpoint.")


class Checkpointer:
  """Periodic and best checkpoints of one run.

  Attributes:
    model_dir: the run directory.
    meta: description of the model and vocabulary stored with each save.
  """

  def __init__(self, model_dir: str | os.PathLike[str], meta: dict[str, Any],
               keep: int = 3, best_metric: str | None = None,
               best_mode: str = "max", async_save: bool = True):
    """Opens (creating) the checkpoint directories.

    Args:
      model_dir: the run directory.
      meta: JSON-serialisable model/vocabulary description; an optional
        `meta["defaults"]` mirrors it with the default of each config field,
        so checkpoints written before a field existed still restore when
        the run leaves that field at its default.
      keep: number of periodic checkpoints to keep.
      best_metric: metric name for the best checkpoint; None disables it.
      best_mode: 'max' or 'min'.
      async_save: save in the background (Orbax async checkpointing).
    """
    self.model_dir = pathlib.Path(model_dir).absolute()
    self.meta = json.loads(json.dumps(meta, default=str))
    self.defaults = self.meta.pop(DEFAULTS_KEY, {})
    self.best_metric = best_metric
    item_names = ("state", "meta")
    self._latest = ocp.CheckpointManager(
        self.model_dir / "checkpoints", item_names=item_names,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save))
    self._best = None
    if best_metric is not None:
      self._best = ocp.CheckpointManager(
          self.model_dir / "best", item_names=item_names,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1, create=True,
              best_fn=lambda m: next(iter(m.values())),
              best_mode=best_mode, keep_checkpoints_without_metrics=False,
              enable_async_checkpointing=async_save))

  def _args(self, state: PyTree, step: int) -> ocp.args.Composite:
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave({**self.meta, "step": int(step)}))

  def save(self, step: int, state: PyTree, force: bool = False) -> None:
    """Saves a periodic checkpoint at `step` (once; repeats are no-ops)."""
    if step in self._latest.all_steps():
      return
    self._latest.save(step, args=self._args(state, step), force=force)

  def save_best(self, step: int, state: PyTree,
                metrics: dict[str, float]) -> None:
    """Saves `state` as the best checkpoint (the caller compares metrics).

    Orbax keeps only the checkpoint with the best `best_metric`.
    """
    if self._best is None:
      return
    value = metrics.get(self.best_metric)
    if value is None:
      raise CheckpointError(f"best_metric {self.best_metric!r} not among the "
                            f"validation metrics {sorted(metrics)}.")
    self._best.save(step, args=self._args(state, step),
                    metrics={self.best_metric: float(value)}, force=True)

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def best_step(self) -> int | None:
    return None if self._best is None else self._best.best_step()

  def restore(self, abstract_state: PyTree, step: int | None = None,
              best: bool = False) -> tuple[PyTree, int] | None:
    """Restores the latest (or given, or best) checkpoint.

    Args:
      abstract_state: a tree of `jax.ShapeDtypeStruct` (with shardings) of
        the train state.
      step: a specific step; default the latest (or best).
      best: restore from the best-checkpoint directory.

    Returns:
      `(state, step)`, or None when there is no checkpoint.

    Raises:
      CheckpointError: corrupt, or written by another model or vocabulary.
    """
    manager = self._best if best else self._latest
    if manager is None:
      return None
    if step is None:
      step = manager.best_step() if best else manager.latest_step()
    if step is None:
      return None
    where = f"checkpoint {manager.directory / str(step)}"
    try:
      meta = manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # Orbax raises many types for bad files.
      raise CheckpointError(
          f"{where} is corrupt or unreadable ({type(e).__name__}: {e}). "
          "Delete that step directory to resume from an earlier one.") from e
    _compare(meta, self.meta, where, self.defaults)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:
      raise CheckpointError(
          f"{where} is corrupt or does not match this model's parameter "
          f"shapes ({type(e).__name__}: {str(e)[:300]}). Delete that step "
          "directory or use another model_dir.") from e
    logging.info("Restored %s.", where)
    return restored.state, int(step)

  def restore_params(self, step: int | None = None, best: bool = False
                     ) -> tuple[PyTree, int]:
    """Restores only the model parameters (no optimizer needed).

    Args:
      step: a specific step; default the latest (or best).
      best: read the best-checkpoint directory.

    Returns:
      `(params, step)`; arrays on the default device, as saved.

    Raises:
      CheckpointError: no checkpoint, corrupt, or another model/vocabulary.
    """
    manager = self._best if best else self._latest
    kind = "best" if best else "periodic"
    if manager is None or (step is None and (
        manager.best_step() if best else manager.latest_step()) is None):
      raise CheckpointError(
          f"no {kind} checkpoint in {self.model_dir}; train first (python -m "
          "recjax.train) or point model_dir at a trained run.")
    if step is None:
      step = manager.best_step() if best else manager.latest_step()
    where = f"checkpoint {manager.directory / str(step)}"
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore(), state=ocp.args.StandardRestore()))
    except Exception as e:
      raise CheckpointError(
          f"{where} is corrupt or unreadable ({type(e).__name__}: "
          f"{str(e)[:300]}). Delete that step directory or retrain.") from e
    _compare(restored.meta, self.meta, where, self.defaults)
    return restored.state["params"], int(step)

  def wait(self) -> None:
    """Blocks until background saves are finished."""
    self._latest.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._latest.close()
    if self._best is not None:
      self._best.close()


def saved_meta(model_dir: str | os.PathLike[str], best: bool = True
               ) -> dict[str, Any]:
  """The model/vocabulary description saved with a run's newest checkpoint.

  Every checkpoint of a run stores the same description, so the newest
  step's is read (a plain JSON file; no model needed).

  Args:
    model_dir: the run directory.
    best: read the best-checkpoint directory, else the periodic one.

  Returns:
    The description (`{"model": ..., "vocabulary": ...}`).

  Raises:
    CheckpointError: no checkpoint with a description.
  """
  where = pathlib.Path(model_dir) / ("best" if best else "checkpoints")
  steps = sorted((int(p.name) for p in where.glob("*")
                  if p.name.isdigit() and (p / "meta" / "metadata").exists()),
                 reverse=True)
  if not steps:
    raise CheckpointError(
        f"no checkpoint with a model description in {where}; train first "
        "(python -m recjax.train) or point model_dir at a trained run.")
  path = where / str(steps[0]) / "meta" / "metadata"
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path} is unreadable ({e}); delete that step "
                          "directory or retrain.") from e


def abstract_like(tree: PyTree) -> PyTree:
  """`ShapeDtypeStruct`s (keeping shardings) of a tree of arrays."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=getattr(x, "sharding", None)),
      tree)
