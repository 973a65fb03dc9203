"""A tiny random Llama written as GGUF, for tests (no downloads).

`write_tiny` stores a 2-block Llama (width 64, 4 query / 2 key-value heads,
SwiGLU 96, a 275-token byte-level BPE vocabulary) the way the pinned SmolLM2
file is stored: Q4_1 matrices, a Q8_0 token embedding tied to the output,
F32 norms. Options write the broken variants of the bad-input tests.
"""

from __future__ import annotations

import pathlib

import gguf
import numpy as np


def _byte_symbols() -> list[str]:
  """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
  keep = (list(range(ord("!"), ord("~") + 1)) +
          list(range(ord("\xa1"), ord("\xac") + 1)) +
          list(range(ord("\xae"), ord("\xff") + 1)))
  out, extra = {}, 0
  for b in range(256):
    if b in keep:
      out[b] = chr(b)
    else:
      out[b] = chr(256 + extra)
      extra += 1
  return [out[b] for b in range(256)]


def write_tiny(path: pathlib.Path, arch: str = "llama",
               tokenizer_model: str = "gpt2", with_merges: bool = True,
               extra_tensor: np.ndarray | None = None, layers: int = 2,
               seed: int = 0) -> None:
  """Writes a random tiny Llama GGUF.

  Args:
    path: the file to write.
    arch: `general.architecture` (bad-input tests write others).
    tokenizer_model: `tokenizer.ggml.model`.
    with_merges: write the BPE merges.
    extra_tensor: a float64 tensor to add as "extra.weight" (an F64 tensor,
      a type recjax does not read).
    layers: decoder blocks.
    seed: the weights' seed.
  """
  rng = np.random.default_rng(seed)
  specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "e r", "Ġ s", "o n",
            "r e", "a t", "Ġ o", "e n", "Ġ c", "o r", "Ġ p", "Ġt h"]
  tokens = specials + _byte_symbols()
  for m in merges:
    tokens.append(m.replace(" ", ""))
  types = [3] * len(specials) + [1] * (len(tokens) - len(specials))
  vocab, hidden, inner, heads, kv_heads = len(tokens), 64, 96, 4, 2
  hd = hidden // heads
  w = gguf.GGUFWriter(str(path), arch)
  w.add_name("recjax tiny llama")
  w.add_context_length(128)
  w.add_embedding_length(hidden)
  w.add_feed_forward_length(inner)
  w.add_block_count(layers)
  w.add_head_count(heads)
  w.add_head_count_kv(kv_heads)
  w.add_rope_dimension_count(hd)
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_vocab_size(vocab)
  w.add_tokenizer_model(tokenizer_model)
  w.add_tokenizer_pre("smollm")
  w.add_token_list(tokens)
  w.add_token_types(types)
  if with_merges:
    w.add_token_merges(merges)
  w.add_bos_token_id(0)
  w.add_eos_token_id(0)
  w.add_pad_token_id(0)
  w.add_add_bos_token(False)

  def add(name: str, x: np.ndarray, kind) -> None:
    x = np.asarray(x, np.float32)
    if kind == gguf.GGMLQuantizationType.F32:
      w.add_tensor(name, x)
    else:
      w.add_tensor(name, gguf.quants.quantize(x, kind), raw_dtype=kind)

  q41, q80, f32 = (gguf.GGMLQuantizationType.Q4_1,
                   gguf.GGMLQuantizationType.Q8_0,
                   gguf.GGMLQuantizationType.F32)
  add("token_embd.weight", rng.normal(0, 0.5, (vocab, hidden)), q80)
  add("output_norm.weight", 1 + 0.1 * rng.normal(size=hidden), f32)
  for i in range(layers):
    p = f"blk.{i}."
    add(p + "attn_norm.weight", 1 + 0.1 * rng.normal(size=hidden), f32)
    add(p + "ffn_norm.weight", 1 + 0.1 * rng.normal(size=hidden), f32)
    add(p + "attn_q.weight", rng.normal(0, 0.2, (hidden, hidden)), q41)
    add(p + "attn_k.weight", rng.normal(0, 0.2, (kv_heads * hd, hidden)), q41)
    add(p + "attn_v.weight", rng.normal(0, 0.2, (kv_heads * hd, hidden)), q41)
    add(p + "attn_output.weight", rng.normal(0, 0.2, (hidden, hidden)), q41)
    add(p + "ffn_gate.weight", rng.normal(0, 0.2, (inner, hidden)), q41)
    add(p + "ffn_up.weight", rng.normal(0, 0.2, (inner, hidden)), q41)
    add(p + "ffn_down.weight", rng.normal(0, 0.2, (hidden, inner)), q41)
  if extra_tensor is not None:
    w.add_tensor("extra.weight", np.asarray(extra_tensor, np.float64))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
