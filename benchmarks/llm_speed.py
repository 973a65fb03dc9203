"""Benchmark: the Flax causal LM against torch `transformers` eager.

Loads the pinned SmolLM2-135M-Instruct GGUF into recjax's Flax Llama and,
where torch and transformers are installed (`pip install -e .[bench]`),
into `transformers` (eager attention, float32), and measures on the same
random tokens, in the same process:

  forward        tokens/s of logits for a [batch, length] block
  fwd+bwd        tokens/s of the loss gradient with respect to the input
                 vectors, the LM frozen (SAID stage 1's step)

for float32 and bfloat16 (Flax: `LlamaConfig.dtype`, bfloat16 matmul inputs
with float32 accumulation; torch: the model cast to bfloat16), then prints
one table with the ratio Flax / torch. Threads: both use the process's
default (all cores).

  python benchmarks/llm_speed.py [--batch 16] [--length 64] [--repeats 3]
      [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from recjax.text_encoders import llama


def _time(fn, repeats: int) -> float:
  fn()  # Compile / warm up.
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def flax_times(lm: llama.CausalLM, ids: np.ndarray, repeats: int
               ) -> dict[str, float]:
  """Seconds of one forward and one fwd+bwd (best of `repeats`)."""
  module, params = lm.module, lm.params
  mask = np.ones_like(ids)
  fwd = jax.jit(lambda p, x: module.apply({"params": p}, x, mask)[0])

  def loss(p, embeds):
    logits, _ = module.apply({"params": p}, None, mask, embeds=embeds)
    logp = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))

  grad = jax.jit(jax.grad(loss, argnums=1))
  embeds = jnp.take(params["embed"], ids, axis=0).astype(jnp.float32)
  return {
      "forward": _time(lambda: fwd(params, ids).block_until_ready(),
                       repeats),
      "fwd+bwd": _time(lambda: grad(params, embeds).block_until_ready(),
                       repeats),
  }


def torch_times(path: str, ids: np.ndarray, repeats: int,
                dtype: str = "float32") -> dict[str, float] | None:
  """The same with transformers (None when torch is not installed)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  import pathlib  # pylint: disable=g-import-not-at-top
  p = pathlib.Path(path)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      str(p.parent), gguf_file=p.name, dtype=getattr(torch, dtype),
      attn_implementation="eager")
  model.eval()
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

  return {"forward": _time(fwd, repeats), "fwd+bwd": _time(bwd, repeats)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtypes", default="float32,bfloat16")
  args = parser.parse_args()
  path = str(llama.default_lm_path())
  tokens = args.batch * args.length
  print(f"SmolLM2-135M-Instruct, batch {args.batch} x {args.length} tokens, "
        f"{jax.devices()[0].platform}")
  print(f"{'dtype':<10}{'pass':<10}{'flax tok/s':>12}{'torch tok/s':>13}"
        f"{'ratio':>8}")
  for dtype in args.dtypes.split(","):
    lm = llama.load_causal_lm(path, dtype=dtype)
    ids = np.random.default_rng(0).integers(
        100, lm.config.vocab_size, size=(args.batch, args.length)).astype(
            np.int32)
    ours = flax_times(lm, ids, args.repeats)
    theirs = torch_times(path, ids.astype(np.int64), args.repeats, dtype)
    for name, sec in ours.items():
      if theirs is None:
        print(f"{dtype:<10}{name:<10}{tokens / sec:>12.0f}{'n/a':>13}")
      else:
        print(f"{dtype:<10}{name:<10}{tokens / sec:>12.0f}"
              f"{tokens / theirs[name]:>13.0f}{theirs[name] / sec:>8.2f}")


if __name__ == "__main__":
  main()
