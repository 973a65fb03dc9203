"""Benchmark: the Flax causal LM against torch `transformers` eager.

Loads the pinned SmolLM2-135M-Instruct GGUF into recjax's Flax Llama and,
where torch and transformers are installed (`pip install -e .[bench]`),
into `transformers` (eager attention, float32), and measures on the same
random tokens, in the same process:

  forward        tokens/s of logits for a [batch, length] block
  fwd+bwd        tokens/s of the loss gradient with respect to the input
                 vectors, the LM frozen (SAID stage 1's step)

for float32 and bfloat16 (Flax: `LlamaConfig.dtype`, bfloat16 matmul inputs
with float32 accumulation; torch: the dense model in bfloat16). Both are
built and warmed up first, then timed in turns (median of `--repeats`), so
that load on a shared machine hits them alike. Prints one table with the
ratio Flax / torch and the versions. Threads: both use the process's
default (all cores).

  python benchmarks/llm_speed.py [--batch 16] [--length 64] [--repeats 5]
      [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Shared with the training-step benchmark (this directory is on sys.path).
from train_step import time_round_robin

from recjax.text_encoders import llama


def time_in_turns(fns: dict[str, Callable[[], Any]], repeats: int
                  ) -> dict[str, float]:
  """Median seconds of each callable: each called once first (compilation,
  warm-up), then all timed in turns (`train_step.time_round_robin`)."""
  for fn in fns.values():
    fn()
  return time_round_robin(fns, repeats)


def flax_fns(lm: llama.CausalLM, ids: np.ndarray
             ) -> dict[str, Callable[[], Any]]:
  """One forward and one fwd+bwd of the Flax LM, as callables."""
  module, params = lm.module, lm.params
  mask = np.ones_like(ids)
  fwd = jax.jit(lambda p, x: module.apply({"params": p}, x, mask)[0])

  def loss(p, embeds):
    logits, _ = module.apply({"params": p}, None, mask, embeds=embeds)
    logp = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))

  grad = jax.jit(jax.grad(loss, argnums=1))
  embeds = jnp.take(params["embed"], ids, axis=0).astype(jnp.float32)
  return {"forward": lambda: fwd(params, ids).block_until_ready(),
          "fwd+bwd": lambda: grad(params, embeds).block_until_ready()}


def torch_fns(path: str, ids: np.ndarray, dtype: str = "float32"
              ) -> dict[str, Callable[[], Any]] | None:
  """The same with transformers (None when torch is not installed).

  The GGUF is loaded dequantised into dense `dtype` weights (plain
  `nn.Linear`), as recjax holds it.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  import pathlib  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()
  transformers.logging.disable_progress_bar()
  p = pathlib.Path(path)
  # Its GGUF converter draws a progress bar of its own on stderr.
  with contextlib.redirect_stderr(io.StringIO()):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(p.parent), gguf_file=p.name, dtype=getattr(torch, dtype),
        attn_implementation="eager")
  model.eval()
  packed = [n for n, m in model.named_modules()
            if n.endswith("_proj") and (
                type(m) is not torch.nn.Linear  # pylint: disable=unidiomatic-typecheck
                or m.weight.dtype != getattr(torch, dtype))]
  if packed:
    raise RuntimeError(f"transformers kept {packed[0]} (and "
                       f"{len(packed) - 1} more) packed or in another "
                       f"dtype; this benchmark compares dense {dtype} "
                       "models.")
  for w in model.parameters():
    w.requires_grad_(False)
  x = torch.tensor(ids)

  def fwd():
    with torch.no_grad():
      model(input_ids=x).logits.sum().item()

  def bwd():
    embeds = model.get_input_embeddings()(x).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    loss.backward()

  return {"forward": fwd, "fwd+bwd": bwd}


def _torch_versions() -> str:
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ""
  return f", torch {torch.__version__}, transformers {transformers.__version__}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtypes", default="float32,bfloat16")
  args = parser.parse_args()
  path = str(llama.default_lm_path())
  tokens = args.batch * args.length
  print(f"SmolLM2-135M-Instruct, batch {args.batch} x {args.length} tokens, "
        f"{jax.devices()[0].platform}, jax {jax.__version__}"
        f"{_torch_versions()}")
  print(f"{'dtype':<10}{'pass':<10}{'flax tok/s':>12}{'torch tok/s':>13}"
        f"{'ratio':>8}")
  for dtype in args.dtypes.split(","):
    lm = llama.load_causal_lm(path, dtype=dtype)
    ids = np.random.default_rng(0).integers(
        100, lm.config.vocab_size, size=(args.batch, args.length)).astype(
            np.int32)
    fns = {("flax", k): f for k, f in flax_fns(lm, ids).items()}
    theirs = torch_fns(path, ids.astype(np.int64), dtype)
    fns.update({("torch", k): f for k, f in (theirs or {}).items()})
    sec = time_in_turns(fns, args.repeats)
    for name in ("forward", "fwd+bwd"):
      ours = sec[("flax", name)]
      if theirs is None:
        print(f"{dtype:<10}{name:<10}{tokens / ours:>12.0f}{'n/a':>13}")
      else:
        other = sec[("torch", name)]
        print(f"{dtype:<10}{name:<10}{tokens / ours:>12.0f}"
              f"{tokens / other:>13.0f}{other / ours:>8.2f}")

if __name__ == "__main__":
  main()
