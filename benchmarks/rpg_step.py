"""Benchmark: one RPG training step, with the fused code cross-entropy.

RPG's step is dominated by its `[digits, targets, codes]` logits (32 x
targets x 256). The model scales the unit states by 1 / tau before the
product (4x fewer values than the logits) and computes the loss with
`recjax.models.rpg.model.code_cross_entropy`, its own VJP (one pass for the
log-sum-exp, one fused pass for `softmax - onehot`). The reference row
divides the logits by tau and differentiates `log_softmax` and a gather,
as the model did before. Both run the same jitted step (forward,
backward, AdamW) on the same batch: random codes, right-aligned histories
whose lengths follow Amazon's (geometric, about a third of the
`[batch, length]` grid has a target). Built and warmed up first, then
timed in turns (median of `--repeats`), so that load hits both alike.

Prints ms per step, the fused / reference speed-up, and the minutes an
epoch of `--epoch_steps` steps takes (Beauty at batch 256: 92 steps).

  python benchmarks/rpg_step.py [--widths 64,448] [--repeats 5]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
# Shared with the training-step benchmark.
from train_step import time_round_robin  # noqa: E402

from recjax.models.rpg.model import RPG  # noqa: E402
from recjax.models.rpg.model import RPGConfig  # noqa: E402
from recjax.models.rpg.model import RPGModel  # noqa: E402
from recjax.models.rpg.model import _l2_normalize  # noqa: E402  # pylint: disable=protected-access


def _reference_log_probs(module: RPG, hidden: jax.Array) -> jax.Array:
  """The digit-major log-probs as the model computed them before: the
  logits divided by tau, then `log_softmax`."""
  z = jnp.einsum("kh,dhj->dkj", hidden, module.head_kernel)
  states = hidden[None] + jax.nn.silu(z + module.head_bias[:, None])
  states = _l2_normalize(states)
  table = _l2_normalize(module.codes_embedding.table())
  logits = jnp.einsum("dkh,dmh->dkm", states, table)
  return jax.nn.log_softmax(logits / module.config.temperature, axis=-1)


class ReferenceLossRPG(RPGModel):
  """RPG whose loss is autodiff of `log_softmax` and a gather."""

  def _target_loss(self, params, hidden, targets):
    log_p = self.module.apply({"params": params}, hidden,
                              method=_reference_log_probs)
    codes = jnp.take(jnp.asarray(self.codes), jnp.maximum(targets, 0),
                     axis=0).T
    picked = jnp.take_along_axis(log_p, codes[..., None], axis=-1)[..., 0]
    weights = (targets >= 0).astype(jnp.float32)
    hits = jnp.all(jnp.argmax(log_p, axis=-1) == codes, axis=0)
    return (jnp.sum(-jnp.mean(picked, axis=0) * weights),
            jnp.sum(hits * weights))


def make_batch(num_items: int, batch: int, length: int, mean_length: float,
               seed: int = 0) -> dict[str, np.ndarray]:
  """Right-aligned histories with geometric lengths (-1 padded)."""
  rng = np.random.default_rng(seed)
  inputs = -np.ones((batch, length), np.int32)
  targets = -np.ones((batch, length), np.int32)
  for row in range(batch):
    n = int(min(rng.geometric(1.0 / mean_length) + 1, length + 1))
    seq = rng.integers(0, num_items, n)
    if n > 1:
      inputs[row, length - n + 1:] = seq[:-1]
      targets[row, length - n + 1:] = seq[1:]
  return {"input_items": inputs, "target_items": targets}


def step_fn(model: RPGModel, batch: dict[str, np.ndarray]
            ) -> Callable[[], None]:
  """One jitted training step of `model` on `batch`, as a callable."""
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (1, model.max_length)})["params"]
  opt = optax.adamw(1e-3)
  state = opt.init(params)
  key = jax.random.key(1)

  @jax.jit
  def step(params, state, key):
    # The metrics are returned, as the trainer logs them.
    (_, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
        params, batch, key)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, metrics

  return lambda: jax.block_until_ready(step(params, state, key))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--widths", default="64,448")
  parser.add_argument("--items", type=int, default=12101)
  parser.add_argument("--digits", type=int, default=32)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--length", type=int, default=20)
  parser.add_argument("--mean_length", type=float, default=7.0)
  parser.add_argument("--epoch_steps", type=int, default=92)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  batch = make_batch(args.items, args.batch, args.length, args.mean_length)
  codes = np.random.default_rng(1).integers(
      0, 256, (args.items, args.digits)).astype(np.int32)
  print(f"RPG training step: batch {args.batch} x {args.length}, "
        f"{int(np.sum(batch['target_items'] >= 0))} targets, "
        f"{args.digits} x 256 codes, {args.items:,} items; "
        f"{jax.devices()[0].platform}, jax {jax.__version__}")
  print(f"{'width':>6}{'reference ms':>14}{'fused ms':>10}{'speed-up':>10}"
        f"{'min/epoch':>11}")
  for width in (int(w) for w in args.widths.split(",")):
    config = RPGConfig(num_items=args.items, num_digits=args.digits,
                       hidden_dim=width, num_heads=2 if width < 128 else 4,
                       mlp_dim=4 * width if width < 128 else 1024,
                       max_length=args.length)
    fns = {"reference": step_fn(ReferenceLossRPG(config, codes), batch),
           "fused": step_fn(RPGModel(config, codes), batch)}
    for fn in fns.values():
      fn()
    sec = time_round_robin(fns, args.repeats)
    print(f"{width:>6}{sec['reference'] * 1e3:>14.0f}"
          f"{sec['fused'] * 1e3:>10.0f}"
          f"{sec['reference'] / sec['fused']:>10.2f}"
          f"{sec['fused'] * args.epoch_steps / 60:>11.1f}")


if __name__ == "__main__":
  main()
