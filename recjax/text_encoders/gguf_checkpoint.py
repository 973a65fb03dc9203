"""Reads a Llama-family GGUF file: config, dequantised weights, tokenizer.

GGUF (llama.cpp's format) keeps a model's hyper-parameters, its tokenizer
and its tensors in one file. `read_gguf` returns them as a `LlamaConfig`,
float32 numpy weights (Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / F16 / BF16 / F32
are dequantised with the `gguf` package) and a `tokenizers.Tokenizer`
rebuilt from the vocabulary and merges in the metadata.

Weights keep GGUF's layout: matrices are `[out, in]`, and the query / key
projections are in llama.cpp's rotary order (the two halves of each head
interleaved), which `llama.Llama` applies directly; no permutation back to
the Hugging Face order is needed.

Every failure names the file and what to do: a truncated or corrupt file,
an architecture other than llama, an unsupported tensor type, a tokenizer
that is not byte-level BPE or has no merges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import tokenizers
from tokenizers import decoders
from tokenizers import models as tok_models
from tokenizers import pre_tokenizers

from recjax.errors import ConfigError

SUPPORTED_ARCHITECTURES = ("llama",)
# Tensor types `dequantize` turns into float32 here.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                   "Q8_0")
# tokenizer.ggml.pre values with a byte-level BPE pre-tokenizer we rebuild.
# "smollm" (like starcoder, refact) isolates every digit before the GPT-2
# split; "gpt2" / "default" use the GPT-2 split alone.
_DIGIT_PRE = ("smollm", "starcoder", "refact", "codeshell")
_PLAIN_PRE = ("gpt2", "default")
_CONTROL = 3  # token_type of special (control) tokens.


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Hyper-parameters of a Llama-family decoder.

  Attributes:
    vocab_size: number of tokens.
    hidden_size: model width.
    intermediate_size: SwiGLU width.
    num_layers: decoder blocks.
    num_heads: query heads.
    num_kv_heads: key / value heads (grouped-query attention).
    head_dim: width of one head.
    rope_theta: rotary base frequency.
    rms_eps: RMSNorm epsilon.
    max_positions: the context length the model was trained for.
    tie_embeddings: the output layer is the token embedding.
    bos_id: beginning-of-sequence token.
    eos_id: end-of-sequence token.
    pad_id: padding token.
    add_bos: the tokenizer prepends `bos_id`.
    dtype: the matmuls' input type ("float32", or "bfloat16": float32
      accumulation, norms and softmax in float32; on CPUs with AMX about
      8x the float32 matmul speed).
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rms_eps: float = 1e-5
  max_positions: int = 2048
  tie_embeddings: bool = True
  bos_id: int = 1
  eos_id: int = 2
  pad_id: int = 0
  add_bos: bool = False
  dtype: str = "float32"

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(f"LlamaConfig: num_heads={self.num_heads} is not a "
                        f"multiple of num_kv_heads={self.num_kv_heads}.")
    if self.dtype not in ("float32", "bfloat16"):
      raise ConfigError(f"LlamaConfig.dtype must be 'float32' or "
                        f"'bfloat16', got {self.dtype!r}.")
    if self.head_dim % 2:
      raise ConfigError(f"LlamaConfig: head_dim={self.head_dim} must be "
                        "even for rotary positions.")


@dataclasses.dataclass
class GGUFModel:
  """What `read_gguf` returns.

  Attributes:
    path: the file.
    config: the decoder's hyper-parameters.
    weights: float32 arrays by GGUF tensor name.
    tensor_types: the stored type of each tensor ("Q4_1", "F32", ...).
    tokenizer: the byte-level BPE tokenizer of the metadata.
    metadata: the scalar metadata (strings and numbers).
    fingerprint: sha256 of the file.
  """

  path: pathlib.Path
  config: LlamaConfig
  weights: dict[str, np.ndarray]
  tensor_types: dict[str, str]
  tokenizer: tokenizers.Tokenizer
  metadata: dict[str, Any]
  fingerprint: str


def _fail(path: pathlib.Path, what: str) -> ConfigError:
  return ConfigError(f"{path}: {what}")


def _reader(path: pathlib.Path):
  import gguf  # pylint: disable=g-import-not-at-top
  if not path.is_file():
    raise _fail(path, "no such GGUF file. Pass the path of a .gguf model, "
                "or fetch the pinned one with recjax.assets.fetch("
                "'smollm2_135m').")
  with open(path, "rb") as f:
    magic = f.read(4)
  if magic != b"GGUF":
    raise _fail(path, f"not a GGUF file (magic {magic!r}, expected b'GGUF'); "
                "the file is corrupt or of another format. Re-fetch it.")
  try:
    return gguf.GGUFReader(str(path))
  except Exception as e:  # pylint: disable=broad-except
    raise _fail(path, f"cannot be read as GGUF ({type(e).__name__}: {e}); "
                "the file is truncated or corrupt. Delete it and fetch it "
                "again (recjax.assets verifies the sha256).") from e


def _scalar(field) -> Any:
  value = field.contents()
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  return value


def read_metadata(reader, path: pathlib.Path) -> dict[str, Any]:
  """The metadata fields of a GGUF reader as Python values (lists too)."""
  out = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    try:
      out[key] = _scalar(field)
    except Exception as e:  # pylint: disable=broad-except
      raise _fail(path, f"metadata field {key!r} cannot be decoded "
                  f"({e}); the file is corrupt. Fetch it again.") from e
  return out


def _config(meta: Mapping[str, Any], path: pathlib.Path) -> LlamaConfig:
  arch = meta.get("general.architecture")
  if arch not in SUPPORTED_ARCHITECTURES:
    raise _fail(path, f"architecture {arch!r} is not supported (recjax's "
                f"causal LM implements {SUPPORTED_ARCHITECTURES}). Use a "
                "Llama-family GGUF such as SmolLM2.")

  def need(name: str) -> Any:
    key = f"{arch}.{name}"
    if key not in meta:
      raise _fail(path, f"metadata {key!r} is missing; the file was not "
                  "written by a llama.cpp converter. Re-convert it.")
    return meta[key]

  hidden = int(need("embedding_length"))
  heads = int(need("attention.head_count"))
  tokens = meta.get("tokenizer.ggml.tokens") or []
  vocab = int(meta.get(f"{arch}.vocab_size", len(tokens)))
  head_dim = int(meta.get(f"{arch}.rope.dimension_count", hidden // heads))
  if head_dim * heads != hidden:
    raise _fail(path, f"rope.dimension_count {head_dim} x {heads} heads != "
                f"width {hidden}: partial rotary is not supported.")
  return LlamaConfig(
      vocab_size=vocab,
      hidden_size=hidden,
      intermediate_size=int(need("feed_forward_length")),
      num_layers=int(need("block_count")),
      num_heads=heads,
      num_kv_heads=int(meta.get(f"{arch}.attention.head_count_kv", heads)),
      head_dim=head_dim,
      rope_theta=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
      rms_eps=float(need("attention.layer_norm_rms_epsilon")),
      max_positions=int(meta.get(f"{arch}.context_length", 2048)),
      tie_embeddings=True,  # Overridden by `read_gguf` if output.weight.
      bos_id=int(meta.get("tokenizer.ggml.bos_token_id", 1)),
      eos_id=int(meta.get("tokenizer.ggml.eos_token_id", 2)),
      pad_id=int(meta.get("tokenizer.ggml.padding_token_id",
                          meta.get("tokenizer.ggml.eos_token_id", 0))),
      add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)))


def build_tokenizer(meta: Mapping[str, Any],
                    path: pathlib.Path) -> tokenizers.Tokenizer:
  """A byte-level BPE `tokenizers.Tokenizer` from GGUF tokenizer metadata.

  Args:
    meta: the file's metadata (`read_metadata`).
    path: the file, for error messages.

  Returns:
    The tokenizer; control tokens (token_type 3) are special tokens.

  Raises:
    ConfigError: not a "gpt2" (byte-level BPE) tokenizer, an unknown
      pre-tokenizer, or no vocabulary / merges.
  """
  kind = meta.get("tokenizer.ggml.model")
  if kind != "gpt2":
    raise _fail(path, f"tokenizer.ggml.model is {kind!r}; recjax rebuilds "
                "byte-level BPE tokenizers ('gpt2') only. Use a GGUF whose "
                "tokenizer is byte-level BPE (SmolLM2, Llama 3, Qwen).")
  tokens = list(meta.get("tokenizer.ggml.tokens") or [])
  merges = list(meta.get("tokenizer.ggml.merges") or [])
  if not tokens:
    raise _fail(path, "the metadata has no tokenizer.ggml.tokens; the file "
                "carries no tokenizer. Re-convert it with its tokenizer.")
  if not merges:
    raise _fail(path, "the tokenizer has no merges (tokenizer.ggml.merges "
                "is missing or empty), so BPE cannot split words. "
                "Re-convert the model with its merges.")
  pre = meta.get("tokenizer.ggml.pre", "default")
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                        use_regex=True)
  if pre in _DIGIT_PRE:
    pre_tok = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level])
  elif pre in _PLAIN_PRE:
    pre_tok = byte_level
  else:
    raise _fail(path, f"tokenizer.ggml.pre {pre!r} is not supported (known: "
                f"{_DIGIT_PRE + _PLAIN_PRE}).")
  pairs = []
  for i, m in enumerate(merges):
    parts = m.split(" ")
    if len(parts) != 2:
      raise _fail(path, f"tokenizer merge #{i} {m!r} is not two tokens "
                  "separated by a space; the file is corrupt.")
    pairs.append((parts[0], parts[1]))
  vocab = {t: i for i, t in enumerate(tokens)}
  tok = tokenizers.Tokenizer(tok_models.BPE(vocab=vocab, merges=pairs,
                                            fuse_unk=False))
  tok.pre_tokenizer = pre_tok
  tok.decoder = decoders.ByteLevel()
  types = list(meta.get("tokenizer.ggml.token_type") or [])
  special = [tokenizers.AddedToken(tokens[i], special=True, normalized=False)
             for i, t in enumerate(types) if int(t) == _CONTROL]
  if special:
    tok.add_special_tokens(special)
  return tok


def file_sha256(path: pathlib.Path) -> str:
  """sha256 of a file."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


def read_gguf(path: str | os.PathLike[str],
              fingerprint: str | None = None) -> GGUFModel:
  """Reads a Llama-family GGUF file.

  Args:
    path: the .gguf file.
    fingerprint: its sha256 if already known (pinned assets); None hashes it.

  Returns:
    Config, float32 weights, tokenizer and metadata.

  Raises:
    ConfigError: a missing, truncated or corrupt file, an unsupported
      architecture, tensor type or tokenizer (naming the file and the fix).
  """
  import gguf  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  reader = _reader(path)
  meta = read_metadata(reader, path)
  config = _config(meta, path)
  tokenizer = build_tokenizer(meta, path)
  weights, types = {}, {}
  for t in reader.tensors:
    kind = t.tensor_type.name
    if kind not in SUPPORTED_TYPES:
      raise _fail(path, f"tensor {t.name!r} has type {kind}, which recjax "
                  f"does not dequantise (supported: {SUPPORTED_TYPES}). "
                  "Use a Q4_0/Q4_1/Q5_x/Q8_0/F16/F32 file.")
    try:
      w = gguf.quants.dequantize(t.data, t.tensor_type)
    except Exception as e:  # pylint: disable=broad-except
      raise _fail(path, f"tensor {t.name!r} ({kind}) cannot be dequantised "
                  f"({e}); the file is corrupt. Fetch it again.") from e
    shape = tuple(int(s) for s in reversed(t.shape))
    weights[t.name] = np.asarray(w, np.float32).reshape(shape)
    types[t.name] = kind
  if "output.weight" in weights:
    config = dataclasses.replace(config, tie_embeddings=False)
  emb = weights.get("token_embd.weight")
  if emb is None or emb.shape != (config.vocab_size, config.hidden_size):
    raise _fail(path, "token_embd.weight is missing or has shape "
                f"{None if emb is None else emb.shape}, expected "
                f"{(config.vocab_size, config.hidden_size)}.")
  if tokenizer.get_vocab_size() != config.vocab_size:
    raise _fail(path, f"the tokenizer has {tokenizer.get_vocab_size()} "
                f"tokens, the model {config.vocab_size}.")
  return GGUFModel(path=path, config=config, weights=weights,
                   tensor_types=types, tokenizer=tokenizer,
                   metadata={k: v for k, v in meta.items()
                             if not isinstance(v, list)},
                   fingerprint=fingerprint or file_sha256(path))
