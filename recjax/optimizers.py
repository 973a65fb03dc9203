"""Optimizers and learning-rate schedules, chosen by config (gin).

`OptimizerConfig` names an optax optimizer (`adamw`, `adafactor`, `adagrad`,
`adam`, `sgd`) with its hyper-parameters; `ScheduleConfig` names a schedule:

* `constant`: `learning_rate` throughout;
* `rsqrt` (TIGER): constant `learning_rate` for `warmup_steps`, then
  `learning_rate * sqrt(warmup_steps / step)`;
* `cosine`: linear warm-up to `learning_rate` over `warmup_steps`, then
  cosine decay to `end_factor * learning_rate` at `decay_steps` (default: the
  run's total steps);
* `linear`: warm-up, then linear decay to `end_factor * learning_rate`.

No TensorFlow.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax

from recjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """A learning-rate schedule.

  Attributes:
    kind: 'constant', 'rsqrt', 'cosine' or 'linear'.
    learning_rate: peak learning rate.
    warmup_steps: warm-up (or, for 'rsqrt', constant) steps.
    warmup_epochs: item-level runs only: when > 0, the warm-up lasts this
      many passes over the training batches (`recjax.train_items` sets
      `warmup_steps` from the data), so one schedule means the same on
      every data set. Leave `warmup_steps` at 0 then.
    decay_steps: end of the decay for 'cosine'/'linear'; None = total steps.
    end_factor: final learning rate as a fraction of the peak.
  """

  kind: str = "cosine"
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  warmup_epochs: int = 0
  decay_steps: int | None = None
  end_factor: float = 0.0

  def __post_init__(self):
    if self.warmup_epochs < 0:
      raise ConfigError(f"warmup_epochs={self.warmup_epochs} must be >= 0 "
                        "(0 = warmup_steps sets the warm-up).")
    if self.warmup_epochs and self.warmup_steps:
      raise ConfigError(
          f"warmup_steps={self.warmup_steps} and warmup_epochs="
          f"{self.warmup_epochs} are both set; set one and leave the other "
          "at 0 (gin: WARMUP_STEPS = 0 or WARMUP_EPOCHS = 0).")

  def in_steps(self, batches_per_epoch: int) -> ScheduleConfig:
    """This schedule with `warmup_epochs` turned into `warmup_steps`."""
    if not self.warmup_epochs:
      return self
    return dataclasses.replace(
        self, warmup_steps=self.warmup_epochs * batches_per_epoch,
        warmup_epochs=0)

  def build(self, total_steps: int) -> optax.Schedule:
    """Returns the optax schedule for a run of `total_steps`."""
    if self.warmup_epochs:
      raise ConfigError(
          f"ScheduleConfig.warmup_epochs={self.warmup_epochs} is resolved by "
          "item-level training (recjax.train_items); generative runs count "
          "steps: set warmup_steps instead.")
    lr, warm = self.learning_rate, max(int(self.warmup_steps), 0)
    if self.kind == "constant":
      return optax.constant_schedule(lr)
    if self.kind == "rsqrt":
      warm = max(warm, 1)
      return lambda step: lr * jnp.sqrt(warm / jnp.maximum(step + 1, warm))
    decay = int(self.decay_steps or total_steps)
    if decay <= warm:
      raise ConfigError(f"{self.kind} schedule: decay_steps ({decay}) must "
                        f"exceed warmup_steps ({warm}).")
    if self.kind == "cosine":
      return optax.warmup_cosine_decay_schedule(
          0.0 if warm else lr, lr, warm, decay, end_value=lr * self.end_factor)
    if self.kind == "linear":
      return optax.join_schedules(
          [optax.linear_schedule(0.0 if warm else lr, lr, max(warm, 1)),
           optax.linear_schedule(lr, lr * self.end_factor, decay - warm)],
          [warm])
    raise ConfigError(f"Unknown schedule kind {self.kind!r}; use 'constant', "
                      "'rsqrt', 'cosine' or 'linear'.")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """An optax optimizer.

  Attributes:
    name: 'adamw', 'adam', 'adafactor', 'adagrad' or 'sgd'.
    schedule: the learning-rate schedule.
    weight_decay: decoupled weight decay (adamw, adafactor).
    b1: first-moment decay (adam/adamw).
    b2: second-moment decay (adam/adamw).
    eps: numerical epsilon.
    grad_clip_norm: clip the global gradient norm; 0 = off.
  """

  name: str = "adamw"
  schedule: ScheduleConfig = ScheduleConfig()
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  grad_clip_norm: float = 0.0

  def build(self, total_steps: int) -> optax.GradientTransformation:
    """Returns the optax transformation for a run of `total_steps`."""
    lr = self.schedule.build(total_steps)
    if self.name == "adamw":
      opt = optax.adamw(lr, b1=self.b1, b2=self.b2, eps=self.eps,
                        weight_decay=self.weight_decay)
    elif self.name == "adam":
      opt = optax.adam(lr, b1=self.b1, b2=self.b2, eps=self.eps)
    elif self.name == "adafactor":
      opt = optax.adafactor(lr, weight_decay_rate=self.weight_decay or None)
    elif self.name == "adagrad":
      opt = optax.adagrad(lr, eps=self.eps)
    elif self.name == "sgd":
      opt = optax.sgd(lr)
    else:
      raise ConfigError(f"Unknown optimizer {self.name!r}; use 'adamw', "
                        "'adam', 'adafactor', 'adagrad' or 'sgd'.")
    if self.grad_clip_norm > 0:
      opt = optax.chain(optax.clip_by_global_norm(self.grad_clip_norm), opt)
    return opt
