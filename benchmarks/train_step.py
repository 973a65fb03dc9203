"""Training throughput (examples per second) of one full training step.

TIGER-size model (4+4 layers, d_model 128, 6x64 heads, d_ff 1024, ReLU,
dropout 0.1), batch 256, encoder length 81, decoder length 5 (4 ID tokens +
EOS), float32: forward, backward and AdamW. Rows:

  recjax          one jitted step (`EncoderDecoderModel.loss_fn` + optax)
  hf              Hugging Face `T5ForConditionalGeneration`, PyTorch eager
  hf_compile      the same under `torch.compile` (skipped if it fails or
                  `--no-compile`)

Also the float32 GEMM peak of this machine, measured in the same run, and the
achieved GFLOP/s (3x the analytic forward FLOPs: forward + backward).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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


def time_recjax(model, batch, steps: int) -> float:
  params = model.get_initial_variables(
      jax.random.key(0), {k: v.shape for k, v in batch.items()})["params"]
  tx = optax.adamw(1e-3, weight_decay=0.01)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
        params, batch, key)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  key = jax.random.key(0, impl="unsafe_rbg")
  params, opt, loss = step(params, opt, key)
  jax.block_until_ready(loss)
  times = []
  for i in range(steps):
    key = jax.random.fold_in(key, i)
    start = time.perf_counter()
    params, opt, loss = step(params, opt, key)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def time_hf(model, batch, steps: int, compile_: bool) -> float:
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

  def step():
    opt.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    opt.step()

  step()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--no-hf", action="store_true")
  p.add_argument("--no-compile", action="store_true")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)

  model = tiger_model()
  cfg = model.module.config
  batch = make_batch(cfg.vocab_size, args.batch)
  flops = 3 * network.count_flops_per_example(cfg, ENC_LEN, DEC_LEN)
  peak = gemm_peak()
  rows = []

  def emit(impl: str, seconds: float) -> None:
    eps = args.batch / seconds
    row = {"impl": impl, "batch": args.batch, "examples_per_s": round(eps, 1),
           "step_s": round(seconds, 3),
           "gflops": round(flops * eps / 1e9, 2), "peak_gflops": round(peak, 1),
           "fraction_of_peak": round(flops * eps / 1e9 / peak, 3)}
    rows.append(row)
    print(json.dumps(row) if args.json else
          " | ".join(f"{k}={v}" for k, v in row.items()), flush=True)

  emit("recjax", time_recjax(model, batch, args.steps))
  if not args.no_hf:
    try:
      import torch  # noqa: F401
      import transformers  # noqa: F401
    except ImportError:
      print("# torch/transformers not importable: no HF rows",
            file=sys.stderr)
      return
    emit("hf", time_hf(model, batch, args.steps, compile_=False))
    if not args.no_compile:
      try:
        emit("hf_compile", time_hf(model, batch, args.steps, compile_=True))
      except Exception as e:  # noqa: BLE001  (torch.compile may be absent)
        print(f"# torch.compile failed: {type(e).__name__}: {e}",
              file=sys.stderr)


if __name__ == "__main__":
  main()
