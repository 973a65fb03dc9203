"""A Llama-family causal language model in Flax, loaded from GGUF.

RMSNorm, rotary positions, grouped-query attention, SwiGLU and a key/value
cache: the decoder of Llama, SmolLM2, Qwen2 (without biases) and friends.
`load_causal_lm(path)` reads a GGUF file (`gguf_checkpoint.read_gguf`),
converts its dequantised tensors into Flax parameters and returns a
`CausalLM` with the tokenizer of the file's metadata: logits, greedy
generation with the cache, and sentence vectors (mean-pooled or last-token
final hidden states) through the same `TextEncoder` interface as MiniLM.

Rotary positions rotate adjacent pairs `(x[2i], x[2i+1])`: that is the
order in which llama.cpp's converter stores the query and key projections,
so GGUF weights are used as stored. Padding is allowed on both sides; a
token's position counts the real tokens before it.

  lm = load_causal_lm()                   # the pinned SmolLM2-135M-Instruct
  lm.generate(["The capital of France is"], max_new_tokens=8)
  vectors = lm.text_encoder("mean").encode(["Title: Stapler"])
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from recjax.errors import ConfigError
from recjax.text_encoders.base import TextEncoder
from recjax.text_encoders.checkpoint import SentenceConfig
from recjax.text_encoders.gguf_checkpoint import GGUFModel
from recjax.text_encoders.gguf_checkpoint import LlamaConfig
from recjax.text_encoders.gguf_checkpoint import read_gguf

Array = jax.Array
PyTree = Any
Cache = dict[str, Any]

LM_ASSET = "smollm2_135m"
LM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
POOLINGS = ("mean", "last")


def _param(module: nn.Module, name: str, shape: tuple[int, ...],
           axes: tuple[str, ...], std: float = 0.02) -> Array:
  init = (nn.initializers.ones if axes == ("embed",) else
          nn.initializers.normal(std))
  return module.param(name, nn.with_logical_partitioning(init, axes), shape,
                      jnp.float32)


def _dot(a: Array, w: Array, transpose: bool) -> Array:
  """`a @ w` (`a @ w.T` when `transpose`), float32 accumulation."""
  dims = (((a.ndim - 1,), (1 if transpose else 0,)), ((), ()))
  return jax.lax.dot_general(a, w, dims, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_dot(a: Array, w: Array, transpose: bool) -> Array:
  return _dot(a, w, transpose)


def _low_dot_fwd(a, w, transpose):
  return _dot(a, w, transpose), (a, w)


def _low_dot_bwd(transpose, res, g):
  a, w = res
  g = g.astype(a.dtype)  # Keep the gradient products in the low dtype.
  da = _dot(g, w, not transpose).astype(a.dtype)
  flat_a = a.reshape(-1, a.shape[-1])
  flat_g = g.reshape(-1, g.shape[-1])
  # w is [out, in] when transposed (dw = g^T a), else [in, out] (a^T g).
  dw = (_dot(flat_g.T, flat_a, False) if transpose else
        _dot(flat_a.T, flat_g, False)).astype(w.dtype)
  return da, dw


_low_dot.defvjp(_low_dot_fwd, _low_dot_bwd)


def _mm(a: Array, w: Array, dtype: Any, transpose: bool = False) -> Array:
  """`a @ w` (or `a @ w.T`) with both in `dtype`, as float32.

  float32 is a plain dot. For bfloat16 the inputs are cast, the product is
  accumulated in float32 (the fast AMX path on CPU), and the gradient
  products are again bfloat16 x bfloat16 (a float32 cotangent against
  bfloat16 weights would fall off that path).
  """
  if jnp.dtype(dtype) == jnp.float32:
    return _dot(a.astype(jnp.float32), w.astype(jnp.float32), transpose)
  return _low_dot(a.astype(dtype), w.astype(dtype), transpose)


def _einsum(spec: str, a: Array, b: Array, dtype: Any) -> Array:
  """`jnp.einsum` with both operands in `dtype`, float32 accumulation."""
  return jnp.einsum(spec, a.astype(dtype), b.astype(dtype),
                    preferred_element_type=jnp.float32)


def rms_norm(x: Array, weight: Array, eps: float) -> Array:
  """RMSNorm in float32: `x / rms(x) * weight`."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + eps) * weight


def rotary(x: Array, positions: Array, theta: float) -> Array:
  """Rotates adjacent pairs of `x [B, T, heads, head_dim]` by position.

  Args:
    x: queries or keys.
    positions: int `[B, T]`.
    theta: the base frequency.

  Returns:
    `x` with pair `i` of each head rotated by `pos * theta^(-2i/head_dim)`.
  """
  half = x.shape[-1] // 2
  inv = theta ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / x.shape[-1])
  angle = positions.astype(jnp.float32)[..., None] * inv  # [B, T, half]
  cos = jnp.cos(angle)[:, :, None, :]
  sin = jnp.sin(angle)[:, :, None, :]
  pairs = x.reshape(*x.shape[:-1], half, 2)
  a, b = pairs[..., 0], pairs[..., 1]
  out = jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1)
  return out.reshape(x.shape)


class _Block(nn.Module):
  """One decoder block: pre-RMSNorm attention and SwiGLU, residuals."""

  config: LlamaConfig

  @nn.compact
  def __call__(self, x: Array, positions: Array, bias: Array,
               kv: tuple[Array, Array] | None, index: Array | None
               ) -> tuple[Array, tuple[Array, Array] | None]:
    cfg = self.config
    h, nh, nkv, hd = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads,
                      cfg.head_dim)
    b, t, _ = x.shape
    dt = jnp.dtype(cfg.dtype)
    y = rms_norm(x, _param(self, "attn_norm", (h,), ("embed",)),
                 cfg.rms_eps)
    # Queries, keys and values in one matmul (one large GEMM is faster on
    # CPU than three small ones).
    qkv = _mm(y, _param(self, "qkv", (h, (nh + 2 * nkv) * hd),
                        ("embed", "joined_kv")), dt)
    q, k, v = jnp.split(qkv, [nh * hd, (nh + nkv) * hd], axis=-1)
    q = rotary(q.reshape(b, t, nh, hd), positions, cfg.rope_theta)
    k = rotary(k.reshape(b, t, nkv, hd), positions, cfg.rope_theta)
    v = v.reshape(b, t, nkv, hd)
    if kv is not None:
      k = jax.lax.dynamic_update_slice_in_dim(kv[0], k, index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(kv[1], v, index, axis=1)
      kv = (k, v)
    group = nh // nkv
    qg = q.reshape(b, t, nkv, group, hd)
    scores = _einsum("btkgd,bskd->bkgts", qg, k, dt) / np.sqrt(hd)
    scores = scores + bias[:, None, None]
    probs = jax.nn.softmax(scores, axis=-1)
    att = _einsum("bkgts,bskd->btkgd", probs, v, dt)
    att = att.reshape(b, t, nh * hd)
    x = x + _mm(att, _param(self, "o", (nh * hd, h), ("joined_kv", "embed")),
                dt)
    y = rms_norm(x, _param(self, "ffn_norm", (h,), ("embed",)), cfg.rms_eps)
    inner = cfg.intermediate_size
    gate_up = _mm(y, _param(self, "gate_up", (h, 2 * inner),
                            ("embed", "mlp")), dt)
    gate, up = jnp.split(gate_up, 2, axis=-1)
    x = x + _mm(jax.nn.silu(gate) * up,
                _param(self, "down", (inner, h), ("mlp", "embed")), dt)
    return x, kv


class Llama(nn.Module):
  """The decoder. `__call__` maps tokens (or input vectors) to logits.

  Attributes:
    config: the hyper-parameters.
  """

  config: LlamaConfig

  def setup(self):
    cfg = self.config
    self.embedding = _param(self, "embed", (cfg.vocab_size, cfg.hidden_size),
                            ("vocab", "embed"))
    self.blocks = [_Block(cfg, name=f"layer_{i}")
                   for i in range(cfg.num_layers)]
    self.norm = _param(self, "norm", (cfg.hidden_size,), ("embed",))
    if not cfg.tie_embeddings:
      self.output = _param(self, "output", (cfg.hidden_size, cfg.vocab_size),
                           ("embed", "vocab"))

  def embed(self, ids: Array) -> Array:
    """Token embeddings `[..., hidden]` (the LM's input space)."""
    return jnp.take(self.embedding, jnp.asarray(ids, jnp.int32),
                    axis=0).astype(jnp.float32)

  def logits(self, hidden: Array) -> Array:
    """Next-token logits of final hidden states."""
    dt = jnp.dtype(self.config.dtype)
    if self.config.tie_embeddings:
      # Contract with the [vocab, hidden] table as stored (no transpose).
      return _mm(hidden, self.embedding, dt, transpose=True)
    return _mm(hidden, self.output, dt)

  def __call__(self, ids: Array | None, mask: Array, *,
               embeds: Array | None = None, cache: Cache | None = None,
               output: str = "logits") -> tuple[Array, Cache | None]:
    """Runs the decoder over one chunk of tokens.

    Args:
      ids: int `[B, T]` tokens, or None when `embeds` is given.
      mask: `[B, T]`, 1 for real tokens, 0 for padding (either side).
      embeds: float `[B, T, hidden]` input vectors instead of `ids` (soft
        prompts).
      cache: from `init_cache` (or a previous call): the chunk is appended
        after the cached tokens. None: the chunk is the whole sequence.
      output: "logits" (`[B, T, vocab]`) or "hidden" (the final normed
        hidden states `[B, T, hidden]`).

    Returns:
      `(output, cache)`; the cache is None when none was given.
    """
    if output not in ("logits", "hidden"):
      raise ConfigError(f"output must be 'logits' or 'hidden', got "
                        f"{output!r}.")
    x = self.embed(ids) if embeds is None else embeds.astype(jnp.float32)
    mask = jnp.asarray(mask).astype(bool)
    t = x.shape[1]
    before = 0 if cache is None else cache["length"][:, None]
    positions = before + jnp.cumsum(mask, axis=1) - 1
    positions = jnp.maximum(positions, 0)
    if cache is None:
      valid = mask
      slots = jnp.arange(t)
      query_slots = slots
      index = None
    else:
      index = cache["index"]
      valid = jax.lax.dynamic_update_slice_in_dim(cache["valid"], mask,
                                                  index, axis=1)
      slots = jnp.arange(valid.shape[1])
      query_slots = index + jnp.arange(t)
    allowed = (slots[None, None, :] <= query_slots[None, :, None]) & (
        valid[:, None, :])
    # Padding queries see only themselves' slot, keeping softmax finite.
    allowed = allowed | (query_slots[None, :, None] == slots[None, None, :])
    bias = jnp.where(allowed, 0.0, -1e30).astype(jnp.float32)
    new_k, new_v = [], []
    for i, block in enumerate(self.blocks):
      kv = None if cache is None else (cache["k"][i], cache["v"][i])
      x, kv = block(x, positions, bias, kv, index)
      if kv is not None:
        new_k.append(kv[0])
        new_v.append(kv[1])
    hidden = rms_norm(x, self.norm, self.config.rms_eps)
    new_cache = None
    if cache is not None:
      new_cache = {"k": tuple(new_k), "v": tuple(new_v), "valid": valid,
                   "index": index + t,
                   "length": cache["length"] + jnp.sum(mask, axis=1)}
    if output == "hidden":
      return hidden, new_cache
    return self.logits(hidden), new_cache


def init_cache(config: LlamaConfig, batch: int, max_length: int) -> Cache:
  """An empty key/value cache for `batch` sequences of <= `max_length`."""
  shape = (batch, max_length, config.num_kv_heads, config.head_dim)
  zeros = tuple(jnp.zeros(shape, jnp.float32)
                for _ in range(config.num_layers))
  return {"k": zeros, "v": zeros,
          "valid": jnp.zeros((batch, max_length), bool),
          "index": jnp.zeros((), jnp.int32),
          "length": jnp.zeros((batch,), jnp.int32)}


def params_from_gguf(model: GGUFModel) -> PyTree:
  """Flax parameters of `Llama` from a read GGUF file (kernels `[in, out]`;
  the query, key and value kernels side by side, the gate and up ones too).

  Args:
    model: `read_gguf`'s result.

  Returns:
    The parameter tree.

  Raises:
    ConfigError: a missing tensor or a shape that does not fit the config.
  """
  cfg, w = model.config, model.weights

  def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in w:
      raise ConfigError(f"{model.path}: tensor {name!r} is missing; the file "
                        "is not a complete Llama-family model.")
    x = w[name]
    if x.ndim == 2:
      x = x.T  # GGUF [out, in] -> kernel [in, out].
    if x.shape != shape:
      raise ConfigError(f"{model.path}: tensor {name!r} has shape "
                        f"{x.shape}, expected {shape} from the metadata.")
    return np.ascontiguousarray(x)

  h, i = cfg.hidden_size, cfg.intermediate_size
  q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  params = {"embed": get("token_embd.weight", (h, cfg.vocab_size)).T,
            "norm": get("output_norm.weight", (h,))}
  if not cfg.tie_embeddings:
    params["output"] = get("output.weight", (h, cfg.vocab_size))
  for n in range(cfg.num_layers):
    p = f"blk.{n}."
    params[f"layer_{n}"] = {
        "attn_norm": get(p + "attn_norm.weight", (h,)),
        "qkv": np.concatenate([get(p + "attn_q.weight", (h, q)),
                               get(p + "attn_k.weight", (h, kv)),
                               get(p + "attn_v.weight", (h, kv))], axis=1),
        "o": get(p + "attn_output.weight", (q, h)),
        "ffn_norm": get(p + "ffn_norm.weight", (h,)),
        "gate_up": np.concatenate([get(p + "ffn_gate.weight", (h, i)),
                                   get(p + "ffn_up.weight", (h, i))],
                                  axis=1),
        "down": get(p + "ffn_down.weight", (i, h)),
    }
  return jax.tree_util.tree_map(jnp.asarray, params)


@dataclasses.dataclass
class CausalLM:
  """A loaded causal LM: module, parameters and tokenizer.

  Attributes:
    name: a label for manifests.
    config: the hyper-parameters.
    params: the Flax parameters.
    tokenizer: the byte-level BPE tokenizer.
    fingerprint: sha256 of the weights file.
  """

  name: str
  config: LlamaConfig
  params: PyTree
  tokenizer: tokenizers.Tokenizer
  fingerprint: str = ""

  def __post_init__(self):
    self.module = Llama(self.config)
    self._forward = jax.jit(
        lambda p, ids, mask: self.module.apply({"params": p}, ids, mask)[0])
    self._step = jax.jit(
        lambda p, ids, mask, cache: self.module.apply(
            {"params": p}, ids, mask, cache=cache))

  def encode_text(self, text: str) -> list[int]:
    """Token ids of `text` (BOS first when the model adds one)."""
    ids = self.tokenizer.encode(text, add_special_tokens=False).ids
    return ([self.config.bos_id] if self.config.add_bos else []) + ids

  def logits(self, ids: np.ndarray, mask: np.ndarray | None = None
             ) -> np.ndarray:
    """Logits `[B, T, vocab]` of token ids `[B, T]` (no cache)."""
    ids = np.asarray(ids, np.int32)
    mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int32)
    return np.asarray(self._forward(self.params, ids, mask))

  def generate(self, prompts: Sequence[str | Sequence[int]],
               max_new_tokens: int = 16, stop_at_eos: bool = True
               ) -> list[list[int]]:
    """Greedy decoding with the key/value cache.

    Prompts are left-padded into one batch, prefilled in one call, then
    extended one token per call.

    Args:
      prompts: texts or token-id lists.
      max_new_tokens: tokens to generate per prompt.
      stop_at_eos: stop a row after it emits `eos_id` (later tokens of a
        finished row are dropped).

    Returns:
      The generated token ids of each prompt (prompt excluded).
    """
    ids = [self.encode_text(p) if isinstance(p, str) else list(p)
           for p in prompts]
    if not all(ids):
      raise ConfigError("generate: every prompt needs at least one token.")
    width = max(len(x) for x in ids)
    batch = len(ids)
    tok = np.full((batch, width), self.config.pad_id, np.int32)
    mask = np.zeros((batch, width), np.int32)
    for r, x in enumerate(ids):
      tok[r, width - len(x):] = x
      mask[r, width - len(x):] = 1
    cache = init_cache(self.config, batch, width + max_new_tokens)
    logits, cache = self._step(self.params, tok, mask, cache)
    out = [[] for _ in range(batch)]
    done = np.zeros(batch, bool)
    ones = np.ones((batch, 1), np.int32)
    for _ in range(max_new_tokens):
      nxt = np.asarray(jnp.argmax(logits[:, -1], axis=-1), np.int32)
      for r in range(batch):
        if not done[r]:
          out[r].append(int(nxt[r]))
          done[r] = stop_at_eos and nxt[r] == self.config.eos_id
      if done.all():
        break
      logits, cache = self._step(self.params, nxt[:, None], ones, cache)
    return out

  def decode(self, ids: Sequence[int]) -> str:
    """Text of token ids."""
    return self.tokenizer.decode(list(ids), skip_special_tokens=True)

  def text_encoder(self, pooling: str = "mean", max_length: int = 64,
                   normalize: bool = False) -> TextEncoder:
    """The LM as a sentence encoder over its final hidden states.

    Args:
      pooling: "mean" (over the text's tokens) or "last" (the last token).
      max_length: truncation length in tokens.
      normalize: L2-normalise the vectors.

    Returns:
      A `TextEncoder` (same interface as MiniLM's) named
      `<name>-<pooling>`.
    """
    if pooling not in POOLINGS:
      raise ConfigError(f"pooling must be one of {POOLINGS}, got "
                        f"{pooling!r}.")
    tok = tokenizers.Tokenizer.from_str(self.tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    module = self.module

    def apply(params: PyTree, ids: Array, mask: Array) -> Array:
      return module.apply({"params": params}, ids, mask, output="hidden")[0]

    return TextEncoder(
        name=f"{self.name}-{pooling}", model_type="llama", apply=apply,
        params=self.params, tokenizer=tok,
        sentence=SentenceConfig(pooling=pooling, normalize=normalize,
                                max_seq_length=max_length),
        max_length=max_length, hidden_size=self.config.hidden_size,
        pad_id=self.config.pad_id, fingerprint=self.fingerprint)


def default_lm_path() -> os.PathLike[str]:
  """The pinned SmolLM2-135M-Instruct GGUF (fetched once, verified)."""
  from recjax import assets  # pylint: disable=g-import-not-at-top
  return assets.fetch(LM_ASSET) / LM_FILE


def load_causal_lm(path: str | os.PathLike[str] | None = None,
                   dtype: str = "float32") -> CausalLM:
  """Loads a Llama-family GGUF file as a `CausalLM`.

  Args:
    path: the .gguf file; None: the pinned SmolLM2-135M-Instruct asset.
    dtype: the matmuls' input type (`LlamaConfig.dtype`); with "bfloat16"
      the matrices are stored in bfloat16 (the norms stay float32).

  Returns:
    The model with its tokenizer.
  """
  path = path or default_lm_path()
  model = read_gguf(path)
  name = os.path.basename(os.fspath(path))
  if name.endswith(".gguf"):
    name = name[:-len(".gguf")]
  config = dataclasses.replace(model.config, dtype=dtype)
  params = params_from_gguf(model)
  if dtype != "float32":
    params = jax.tree_util.tree_map(
        lambda w: w.astype(dtype) if w.ndim == 2 else w, params)
  return CausalLM(name=name if dtype == "float32" else f"{name}-{dtype}",
                  config=config, params=params, tokenizer=model.tokenizer,
                  fingerprint=model.fingerprint)
