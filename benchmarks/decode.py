"""Recommendation throughput of constrained beam search (users per second).

TIGER-size model (4+4 layers, d_model 128, 6x64 heads, d_ff 1024, ReLU),
histories of 20 items (81 input tokens: a user token and 20 x 4 ID tokens),
4-token IDs over 256-code levels, 20 beams. Rows:

  recjax                constrained by `recjax.trie.ItemTrie`
  recjax_unconstrained  the same beam search, any code at each level
  hf / hf_jemalloc      Hugging Face `generate(num_beams=20,
                        num_return_sequences=20, prefix_allowed_tokens_fn=...)`
                        with a Python dict trie (as TIGER/LETTER ports do),
                        same weights; default allocator, then jemalloc
                        (LD_PRELOAD, in a subprocess) when it is installed

Also: trie build time and bytes, analytic model FLOPs per user, the float32
GEMM peak of this machine measured in the same run, and the achieved
fraction. Run `python benchmarks/decode.py --help`; a quick run is
`--catalogs 12000 --batches 32 --no-hf`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recjax import network
from recjax.models import tiger
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie

LEVELS, CODES, USERS, HISTORY = 4, 256, 2000, 20
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def tiger_model() -> tiger.EncoderDecoderModel:
  layout = SemanticIdLayout((CODES,) * LEVELS, num_user_buckets=USERS)
  cfg = network.TransformerConfig(
      vocab_size=layout.vocab_size, emb_dim=128, num_heads=6, head_dim=64,
      num_encoder_layers=4, num_decoder_layers=4, mlp_dim=1024,
      mlp_activations=("relu",), dropout_rate=0.1)
  return tiger.EncoderDecoderModel(network.Transformer(cfg), layout=layout)


def random_catalog(n: int, seed: int = 0) -> np.ndarray:
  """`n` distinct random 4-level codes, in random order."""
  rng = np.random.default_rng(seed)
  keys = np.unique(rng.integers(0, CODES ** LEVELS, int(n * 1.02) + 64))
  keys = rng.permutation(keys)[:n]
  shifts = 8 * np.arange(LEVELS - 1, -1, -1)
  return ((keys[:, None] >> shifts) & (CODES - 1)).astype(np.int32)


def user_batch(model: tiger.EncoderDecoderModel, codes: np.ndarray,
               batch: int, seed: int = 1) -> np.ndarray:
  rng = np.random.default_rng(seed)
  hist = codes[rng.integers(0, len(codes), (batch, HISTORY))]
  tokens = model.layout.codes_to_tokens(hist).reshape(batch, -1)
  users = model.layout.user_offset + rng.integers(0, USERS, (batch, 1))
  return np.concatenate([users, tokens], axis=1).astype(np.int32)


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
  """float32 GEMM GFLOP/s of this machine (jnp.matmul, best of repeats)."""
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  best = min(_timed(lambda: mm(a).block_until_ready()) for _ in range(repeats))
  return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def time_recjax(model, params, trie, enc, beams, constrain, repeats):
  predict = jax.jit(functools.partial(
      model.predict_batch_with_aux, num_decodes=beams, constrain=constrain))
  batch = {"encoder_input_tokens": enc}
  out = predict(params, batch, trie=trie)
  jax.block_until_ready(out)
  times = []
  for _ in range(repeats):
    times.append(_timed(lambda: jax.block_until_ready(
        predict(params, batch, trie=trie))))
  aux = out[1]
  real = np.asarray(trie.lookup_tokens(aux["tokens"])) >= 0
  valid = np.asarray(aux["valid"])
  invalid_rate = float(np.mean(~real[valid])) if valid.any() else 0.0
  return float(np.median(times)), invalid_rate


# -- Hugging Face -------------------------------------------------------------


def hf_model(model, params):
  import torch
  import transformers

  from recjax import hf_t5

  cfg = model.module.config
  hf_cfg = transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim,
      d_ff=cfg.mlp_dim, num_layers=cfg.num_encoder_layers,
      num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
      feed_forward_proj="relu", tie_word_embeddings=False, dropout_rate=0.0,
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
  state = hf_t5.hf_state_dict_from_params(jax.device_get(params), cfg)
  with torch.no_grad():
    if not cfg.logits_via_embedding:
      hf.lm_head.weight = torch.nn.Parameter(
          torch.from_numpy(state["lm_head.weight"]))
    hf.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state.items()},
        strict=False)
  return hf


def dict_trie(tokens: np.ndarray) -> dict[tuple[int, ...], list[int]]:
  """prefix tuple -> allowed next tokens (the TIGER / LETTER port style)."""
  children: dict[tuple[int, ...], set[int]] = {}
  for row in tokens.tolist():
    for d in range(len(row)):
      children.setdefault(tuple(row[:d]), set()).add(row[d])
  return {k: sorted(v) for k, v in children.items()}


def time_hf(hf, trie_dict, enc, beams, repeats):
  import torch

  torch.set_num_threads(os.cpu_count() or 1)

  def allowed(batch_id, sent):
    del batch_id
    prefix = tuple(sent.tolist()[1:])
    return trie_dict.get(prefix, [1])

  ids = torch.from_numpy(enc.astype(np.int64))
  mask = (ids > 0).long()

  def run(n):
    with torch.no_grad():
      return hf.generate(
          input_ids=ids[:n], attention_mask=mask[:n], num_beams=beams,
          num_return_sequences=beams, max_new_tokens=LEVELS,
          min_new_tokens=LEVELS, do_sample=False, early_stopping=True,
          prefix_allowed_tokens_fn=allowed)

  run(2)  # warm-up
  times = [_timed(lambda: run(len(enc))) for _ in range(repeats)]
  return float(np.median(times))


# -- driver ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--catalogs", type=int, nargs="+",
                 default=[12_000, 1_000_000, 10_000_000])
  p.add_argument("--batches", type=int, nargs="+", default=[32, 256])
  p.add_argument("--beams", type=int, default=20)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--no-hf", action="store_true", help="skip Hugging Face")
  p.add_argument("--hf-max-catalog", type=int, default=1_000_000,
                 help="largest catalog for the Python dict trie")
  p.add_argument("--hf-repeats", type=int, default=1)
  p.add_argument("--no-jemalloc", action="store_true")
  p.add_argument("--hf-only", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--impl-name", default="hf", help=argparse.SUPPRESS)
  p.add_argument("--json", action="store_true", help="one JSON per row")
  args = p.parse_args(argv)

  model = tiger_model()
  cfg = model.module.config
  params = model.get_initial_variables(
      jax.random.key(0), {"encoder_input_tokens": (1, 1 + LEVELS * HISTORY),
                          "decoder_input_tokens": (1, LEVELS)})["params"]
  flops = network.count_flops_per_example(
      cfg, 1 + LEVELS * HISTORY, LEVELS, num_queries=args.beams)
  peak = gemm_peak()
  have_hf = False
  if not args.no_hf:
    try:
      import torch  # noqa: F401
      import transformers  # noqa: F401
      have_hf = True
    except ImportError:
      print("# torch/transformers not importable: no HF rows",
            file=sys.stderr)
  rows: list[dict[str, Any]] = []

  def emit(row: dict[str, Any]) -> None:
    # The machine is shared: the ceiling is re-measured next to each row.
    row_peak = max(gemm_peak(repeats=3), 1e-9)
    row["gflops"] = round(flops * row["users_per_s"] / 1e9, 2)
    row["peak_gflops"] = round(row_peak, 1)
    row["fraction_of_peak"] = round(row["gflops"] / row_peak, 3)
    rows.append(row)
    if args.json:
      print(json.dumps(row), flush=True)

  for n in args.catalogs:
    codes = random_catalog(n)
    start = time.perf_counter()
    trie = ItemTrie.build(codes, model.layout)
    jax.block_until_ready(trie)
    build_s = time.perf_counter() - start
    base = {"beams": args.beams, "catalog": n, "trie_bytes": trie.nbytes,
            "trie_bytes_per_item": round(trie.nbytes / n, 2),
            "trie_build_s": round(build_s, 2),
            "flops_per_user": round(flops)}
    hf = trie_dict = None
    for b in args.batches:
      enc = user_batch(model, codes, b)
      if not args.hf_only:
        for impl, constrain in (("recjax", True),
                                ("recjax_unconstrained", False)):
          t, invalid = time_recjax(model, params, trie, enc, args.beams,
                                   constrain, args.repeats)
          emit({"impl": impl, "batch": b, **base,
                "users_per_s": round(b / t, 2), "invalid_rate": invalid})
      if have_hf and n <= args.hf_max_catalog:
        if hf is None:
          hf = hf_model(model, params)
          start = time.perf_counter()
          trie_dict = dict_trie(model.layout.codes_to_tokens(codes))
          dict_s = time.perf_counter() - start
        t = time_hf(hf, trie_dict, enc, args.beams, args.hf_repeats)
        emit({"impl": args.impl_name, "batch": b, **base,
              "trie_build_s": round(dict_s, 2), "trie_bytes": None,
              "trie_bytes_per_item": None,
              "users_per_s": round(b / t, 2), "invalid_rate": 0.0})
        if (not args.hf_only and not args.no_jemalloc and
            os.path.exists(JEMALLOC)):
          cmd = [sys.executable, __file__, "--hf-only", "--json",
                 "--impl-name", "hf_jemalloc", "--catalogs", str(n),
                 "--batches", str(b), "--beams", str(args.beams),
                 "--hf-repeats", str(args.hf_repeats)]
          env = dict(os.environ, LD_PRELOAD=JEMALLOC)
          out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               check=False)
          for line in out.stdout.splitlines():
            if line.startswith("{"):
              row = json.loads(line)
              rows.append(row)
              if args.json:
                print(line, flush=True)
          if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)

  if not args.json:
    _print_table(rows, peak, flops)


def _print_table(rows: list[dict[str, Any]], peak: float,
                 flops: float) -> None:
  print(f"float32 GEMM peak at start: {peak:.1f} GFLOP/s; model: "
        f"{flops / 1e9:.3f} GFLOP per user")
  head = ("impl", "batch", "catalog", "users_per_s", "invalid_rate",
          "trie_bytes_per_item", "trie_build_s", "gflops", "peak_gflops",
          "fraction_of_peak")
  print(" | ".join(head))
  for r in rows:
    print(" | ".join(str(r.get(h)) for h in head))


if __name__ == "__main__":
  main()
