"""Training throughput (examples per second) of one full training step.

TIGER-size model (4+4 layers, d_model 128, 6x64 heads, d_ff 1024, ReLU,
dropout 0.1), batch 256, encoder length 81, decoder length 5 (4 ID tokens +
EOS), float32: forward, backward and AdamW. Rows:

  recjax          one jitted step (`EncoderDecoderModel.loss_fn` + optax),
                  dropout key as the trainer makes it (`--key-impl`)
  hf              Hugging Face `T5ForConditionalGeneration`, PyTorch eager
  hf_compile      the same under `torch.compile` (skipped if it fails or
                  `--no-compile`)

All implementations are built and warmed up first, then their steps are
timed round-robin (recjax, hf, hf_compile, recjax, ...), so a change in the
machine's load during the run affects them alike; each row reports the
median step. `vs_best_hf` is the row's throughput over the best HF row's.

Also the float32 GEMM peak of this machine, measured in the same run, and the
achieved GFLOP/s (3x the analytic forward FLOPs: forward + backward).
Example: `python benchmarks/train_step.py --steps 7 --json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

# Shared with the decode benchmark (this directory is on sys.path).
from decode import gemm_peak
from decode import tiger_model

from recjax import network

ENC_LEN, DEC_LEN = 81, 5


def make_batch(vocab: int, batch: int, seed: int = 0) -> dict[str, Any]:
  rng = np.random.default_rng(seed)
  targets = rng.integers(3, vocab, (batch, DEC_LEN)).astype(np.int32)
  targets[:, -1] = 1  # EOS
  return {"encoder_input_tokens": rng.integers(
              3, vocab, (batch, ENC_LEN)).astype(np.int32),
          "decoder_input_tokens": network.shift_right(targets),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": np.ones_like(targets)}


def recjax_step(model, batch, key_impl: str | None) -> Callable[[], None]:
  """A function that runs one jitted training step (compiled on first use).

  Args:
    model: the `EncoderDecoderModel`.
    batch: the training batch (numpy, baked into the jitted step).
    key_impl: PRNG implementation of the dropout key (None: JAX's default,
      threefry, which is what `recjax.trainer` uses).

  Returns:
    A no-argument callable that steps and blocks until done.
  """
  params = model.get_initial_variables(
      jax.random.key(0), {k: v.shape for k, v in batch.items()})["params"]
  tx = optax.adamw(1e-3, weight_decay=0.01)

  @jax.jit
  def step(params, opt, key):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
        params, batch, key)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  # As the trainer does: fold the step number into a fixed key.
  state = {"params": params, "opt": tx.init(params), "step": 0,
           "key": jax.random.key(1, impl=key_impl)}

  def run() -> None:
    key = jax.random.fold_in(state["key"], state["step"])
    state["params"], state["opt"], loss = step(state["params"], state["opt"],
                                               key)
    state["step"] += 1
    jax.block_until_ready(loss)

  return run


def hf_step(model, batch, compile_: bool) -> Callable[[], None]:
  """The same step in Hugging Face PyTorch T5 (eager or `torch.compile`)."""
  import torch
  import transformers

  cfg = model.module.config
  hf_cfg = transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim,
      d_ff=cfg.mlp_dim, num_layers=cfg.num_encoder_layers,
      num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
      feed_forward_proj="relu", tie_word_embeddings=False,
      dropout_rate=cfg.dropout_rate, decoder_start_token_id=0,
      pad_token_id=0, eos_token_id=1)
  hf = transformers.T5ForConditionalGeneration(hf_cfg).train()
  opt = torch.optim.AdamW(hf.parameters(), lr=1e-3, weight_decay=0.01)
  enc = torch.from_numpy(batch["encoder_input_tokens"].astype(np.int64))
  dec = torch.from_numpy(batch["decoder_input_tokens"].astype(np.int64))
  tgt = torch.from_numpy(batch["decoder_target_tokens"].astype(np.int64))

  def loss_fn():
    return hf(input_ids=enc, attention_mask=(enc > 0).long(),
              decoder_input_ids=dec, labels=tgt).loss

  fn = torch.compile(loss_fn) if compile_ else loss_fn

  def run() -> None:
    opt.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    opt.step()

  return run


def time_round_robin(runs: dict[str, Callable[[], None]],
                     steps: int) -> dict[str, float]:
  """Median seconds per step of each run, timed in turns."""
  times: dict[str, list[float]] = {name: [] for name in runs}
  for _ in range(steps):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=5,
                 help="timed steps per implementation (after one warm-up)")
  p.add_argument("--key-impl", default=None,
                 choices=["threefry2x32", "rbg", "unsafe_rbg"],
                 help="PRNG implementation of recjax's dropout key "
                      "(default: JAX's default, as the trainer)")
  p.add_argument("--no-hf", action="store_true")
  p.add_argument("--no-compile", action="store_true")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)

  model = tiger_model()
  cfg = model.module.config
  batch = make_batch(cfg.vocab_size, args.batch)
  flops = 3 * network.count_flops_per_example(cfg, ENC_LEN, DEC_LEN)
  peak = gemm_peak()

  runs = {"recjax": recjax_step(model, batch, args.key_impl)}
  if not args.no_hf:
    try:
      import torch  # noqa: F401
      import transformers  # noqa: F401
    except ImportError:
      print("# torch/transformers not importable: no HF rows",
            file=sys.stderr)
    else:
      runs["hf"] = hf_step(model, batch, compile_=False)
      if not args.no_compile:
        runs["hf_compile"] = hf_step(model, batch, compile_=True)
  for name, run in list(runs.items()):
    try:
      run()  # compile / warm up
    except Exception as e:  # noqa: BLE001  (torch.compile may be absent)
      if name != "hf_compile":
        raise
      print(f"# torch.compile failed: {type(e).__name__}: {e}",
            file=sys.stderr)
      del runs[name]

  seconds = time_round_robin(runs, args.steps)
  hf_best = min((s for n, s in seconds.items() if n.startswith("hf")),
                default=None)
  for impl, s in seconds.items():
    eps = args.batch / s
    row = {"impl": impl, "batch": args.batch, "examples_per_s": round(eps, 1),
           "step_s": round(s, 3),
           "gflops": round(flops * eps / 1e9, 2), "peak_gflops": round(peak, 1),
           "fraction_of_peak": round(flops * eps / 1e9 / peak, 3)}
    if hf_best is not None:
      row["vs_best_hf"] = round(hf_best / s, 2)
    print(json.dumps(row) if args.json else
          " | ".join(f"{k}={v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
  main()
