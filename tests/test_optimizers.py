"""Tests for recjax.optimizers: schedules against their formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from recjax import optimizers
from recjax.errors import ConfigError

Schedule = optimizers.ScheduleConfig


def _values(schedule: optax.Schedule, steps) -> np.ndarray:
  return np.asarray([float(schedule(jnp.asarray(s))) for s in steps])


def test_constant():
  sched = Schedule("constant", 3e-3, warmup_steps=50).build(100)
  np.testing.assert_allclose(_values(sched, [0, 49, 50, 1000]), 3e-3)


def test_rsqrt_is_flat_then_inverse_square_root():
  sched = Schedule("rsqrt", 1e-2, warmup_steps=100).build(10)
  assert float(sched(0)) == pytest.approx(1e-2)
  assert float(sched(50)) == pytest.approx(1e-2)
  # Step s (0-based) is the (s + 1)-th update: lr * sqrt(warmup / (s + 1)).
  assert float(sched(399)) == pytest.approx(1e-2 * 0.5)
  assert float(sched(9_999)) == pytest.approx(1e-2 * 0.1)


def test_cosine_warmup_and_decay_to_end_factor():
  sched = Schedule("cosine", 1.0, warmup_steps=10, end_factor=0.1).build(110)
  assert float(sched(0)) == 0.0
  assert float(sched(5)) == pytest.approx(0.5)
  assert float(sched(10)) == pytest.approx(1.0)
  # Halfway through the decay: the mean of peak and end value.
  assert float(sched(60)) == pytest.approx(0.55, rel=1e-5)
  assert float(sched(110)) == pytest.approx(0.1, rel=1e-5)
  assert float(sched(500)) == pytest.approx(0.1, rel=1e-5)


def test_cosine_without_warmup_starts_at_peak():
  sched = Schedule("cosine", 2.0).build(100)
  assert float(sched(0)) == pytest.approx(2.0)
  assert float(sched(100)) == pytest.approx(0.0, abs=1e-6)


def test_warmup_in_epochs_becomes_steps_of_the_data_set():
  config = optimizers.ScheduleConfig("cosine", 1.0, warmup_epochs=2)
  resolved = config.in_steps(7)  # 7 batches per epoch: 14 warm-up steps.
  assert (resolved.warmup_steps, resolved.warmup_epochs) == (14, 0)
  schedule = resolved.build(100)
  assert float(schedule(7)) == pytest.approx(0.5)
  assert float(schedule(14)) == pytest.approx(1.0)
  assert optimizers.ScheduleConfig("cosine", 1.0, 5).in_steps(7).warmup_steps \
      == 5
  with pytest.raises(ConfigError, match=r"ScheduleConfig\.warmup_epochs=2 is "
                     r"resolved by item-level training \(recjax\.train_items"
                     r"\); generative runs count steps: set warmup_steps "
                     r"instead\."):
    config.build(100)
  with pytest.raises(ConfigError, match=r"warmup_steps=5 and warmup_epochs=2 "
                     r"are both set; set one and leave the other at 0 \(gin: "
                     r"WARMUP_STEPS = 0 or WARMUP_EPOCHS = 0\)\."):
    optimizers.ScheduleConfig("cosine", 1.0, 5, warmup_epochs=2)


def test_decay_steps_overrides_total_steps():
  sched = Schedule("cosine", 1.0, decay_steps=50).build(1_000)
  assert float(sched(50)) == pytest.approx(0.0, abs=1e-6)


def test_linear():
  sched = Schedule("linear", 1.0, warmup_steps=10, end_factor=0.0).build(110)
  assert float(sched(5)) == pytest.approx(0.5)
  assert float(sched(10)) == pytest.approx(1.0)
  assert float(sched(60)) == pytest.approx(0.5)
  assert float(sched(110)) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["rsqrt", "cosine", "linear"]),
       warmup=st.integers(0, 50), extra=st.integers(1, 200),
       end_factor=st.floats(0.0, 1.0))
def test_never_above_peak_and_monotone_after_warmup(kind, warmup, extra,
                                                    end_factor):
  total = warmup + extra
  sched = Schedule(kind, 0.5, warmup_steps=warmup,
                   end_factor=end_factor).build(total)
  after = _values(sched, range(warmup, total + 1))
  assert np.all(after <= 0.5 * (1 + 1e-6))
  assert np.all(np.diff(after) <= 1e-7), after
  if kind != "rsqrt":
    before = _values(sched, range(0, warmup + 1))
    assert np.all(np.diff(before) >= -1e-7)


def test_bad_schedules():
  with pytest.raises(ConfigError, match=r"Unknown schedule kind 'nope'; use "
                     r"'constant', 'rsqrt', 'cosine' or 'linear'\."):
    Schedule("nope").build(10)
  with pytest.raises(ConfigError, match=r"decay_steps \(10\) must exceed "
                     r"warmup_steps \(10\)"):
    Schedule("cosine", warmup_steps=10).build(10)


@pytest.mark.parametrize("name", ["adamw", "adam", "adafactor", "adagrad",
                                  "sgd"])
def test_every_optimizer_descends_a_quadratic(name):
  tx = optimizers.OptimizerConfig(
      name, Schedule("constant", 0.1), grad_clip_norm=1.0).build(100)
  params = {"w": jnp.full((4, 4), 3.0)}
  loss = lambda p: jnp.sum(p["w"] ** 2)
  state = tx.init(params)
  start = float(loss(params))
  for _ in range(20):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < start


def test_gradient_clipping_bounds_the_sgd_step():
  tx = optimizers.OptimizerConfig(
      "sgd", Schedule("constant", 1.0), grad_clip_norm=0.5).build(10)
  params = jnp.zeros(3)
  updates, _ = tx.update(jnp.asarray([30.0, 40.0, 0.0]), tx.init(params),
                         params)
  assert math.isclose(float(jnp.linalg.norm(updates)), 0.5, rel_tol=1e-5)
  np.testing.assert_allclose(updates, [-0.3, -0.4, 0.0], rtol=1e-5)


def test_unknown_optimizer():
  with pytest.raises(ConfigError, match="Unknown optimizer 'nope'"):
    optimizers.OptimizerConfig("nope").build(10)
