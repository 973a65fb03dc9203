"""Tests of `benchmarks/rpg_step.py`: its reference is the same loss."""

import bench_scripts
import jax
import numpy as np
import pytest

rpg_step = bench_scripts.load("rpg_step")


def test_reference_and_fused_losses_agree_in_value_metrics_and_gradient():
  """The benchmark times two ways of computing one loss: the fused VJP
  and autodiff of `log_softmax` give the same loss, accuracy and
  gradients, so its speed-up compares like with like."""
  items, digits = 40, 4
  codes = np.random.default_rng(0).integers(0, 256, (items, digits))
  config = rpg_step.RPGConfig(num_items=items, num_digits=digits,
                              hidden_dim=16, num_heads=2, mlp_dim=32,
                              max_length=6)
  batch = rpg_step.make_batch(items, batch=8, length=6, mean_length=3.0)
  assert np.any(batch["target_items"] >= 0)
  # Targets only where an input precedes them, right-aligned.
  assert np.all((batch["target_items"] >= 0) == (batch["input_items"] >= 0))
  fused = rpg_step.RPGModel(config, codes)
  reference = rpg_step.ReferenceLossRPG(config, codes)
  params = fused.get_initial_variables(
      jax.random.key(0), {"input_items": (1, 6)})["params"]
  params = dict(params, head_kernel=0.2 * jax.random.normal(
      jax.random.key(1), params["head_kernel"].shape))
  out = []
  for model in (fused, reference):
    (loss, metrics), grads = jax.value_and_grad(
        model.loss_fn, has_aux=True)(params, batch, None)
    out.append((loss, metrics, grads))
  assert float(out[0][0]) == pytest.approx(float(out[1][0]), rel=1e-5)
  assert float(out[0][1]["accuracy"]) == float(out[1][1]["accuracy"])
  for a, b in zip(jax.tree_util.tree_leaves(out[0][2]),
                  jax.tree_util.tree_leaves(out[1][2])):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
