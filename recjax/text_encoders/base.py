"""A sentence encoder: tokenizer + Flax backbone + pooling, batched under jit.

`TextEncoder` is backbone-agnostic: the BERT and T5 modules supply a pure
`apply(params, input_ids, attention_mask) -> [B, T, H]` function. Texts are
tokenised without padding, sorted by length and padded to a few bucketed
lengths (and power-of-two batch sizes), so a catalogue of any size compiles
at most a handful of programs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
import tqdm

from recjax.text_encoders.checkpoint import SentenceConfig

ApplyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]

# Sequence-length buckets; the last bucket is the truncation length.
_LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)


def pool(states: jax.Array, mask: jax.Array, mode: str) -> jax.Array:
  """Pools token states `[B, T, H]` with `mask [B, T]` into `[B, H]`.

  Args:
    states: token representations.
    mask: 1 for real tokens, 0 for padding.
    mode: "mean", "cls", "max", "mean_sqrt_len" (sentence-transformers) or
      "last" (the last real token of right-padded rows: causal LMs).

  Returns:
    The pooled vectors.
  """
  m = mask.astype(states.dtype)[..., None]
  if mode == "cls":
    return states[:, 0]
  if mode == "last":
    last = jnp.maximum(jnp.sum(mask.astype(jnp.int32), axis=1) - 1, 0)
    return jnp.take_along_axis(states, last[:, None, None], axis=1)[:, 0]
  if mode == "max":
    return jnp.max(jnp.where(m > 0, states, -1e9), axis=1)
  total = jnp.sum(states * m, axis=1)
  count = jnp.maximum(jnp.sum(m, axis=1), 1e-9)
  if mode == "mean":
    return total / count
  if mode == "mean_sqrt_len":
    return total / jnp.sqrt(count)
  raise ValueError(f"unknown pooling mode {mode!r}")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Divides rows by their L2 norm (clamped at `eps`, as torch does)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def length_bucket(n: int, max_length: int) -> int:
  """The smallest bucket length >= n (capped at `max_length`)."""
  for b in _LENGTH_BUCKETS:
    if b >= n:
      return min(b, max_length)
  return max_length


def batch_bucket(n: int, batch_size: int) -> int:
  """The smallest power of two >= n, capped at `batch_size`."""
  b = 1
  while b < n:
    b *= 2
  return min(b, batch_size)


@dataclasses.dataclass
class TextEncoder:
  """Encodes texts into fixed-size vectors.

  Attributes:
    name: a model label for manifests (e.g. the checkpoint directory name).
    model_type: the backbone family ("bert", "roberta", "t5", ...).
    apply: pure backbone function `(params, ids, mask) -> [B, T, H]`.
    params: backbone parameters (a pytree of arrays).
    tokenizer: tokenizer with truncation at `max_length`.
    sentence: pooling / dense / normalisation config.
    max_length: maximum number of tokens per text.
    hidden_size: width of the backbone's token states.
    pad_id: token id used for padding.
    fingerprint: sha256 of the checkpoint files.
  """

  name: str
  model_type: str
  apply: ApplyFn
  params: Any
  tokenizer: tokenizers.Tokenizer
  sentence: SentenceConfig
  max_length: int
  hidden_size: int
  pad_id: int = 0
  fingerprint: str = ""

  def __post_init__(self):
    self._dense = [(jnp.asarray(d.kernel),
                    None if d.bias is None else jnp.asarray(d.bias))
                   for d in self.sentence.dense]
    self._activations = tuple(d.activation for d in self.sentence.dense)
    self._encode_jit = jax.jit(self._encode_padded)

  @property
  def dim(self) -> int:
    """Dimension of the output vectors."""
    if self.sentence.dense:
      return int(self.sentence.dense[-1].kernel.shape[1])
    return int(self.hidden_size)

  def _encode_padded(self, params: Any, dense: Any, ids: jax.Array,
                     mask: jax.Array) -> jax.Array:
    states = self.apply(params, ids, mask)
    x = pool(states, mask, self.sentence.pooling)
    for (kernel, bias), act in zip(dense, self._activations):
      x = jnp.dot(x, kernel, precision=jax.lax.Precision.HIGHEST)
      if bias is not None:
        x = x + bias
      if act == "tanh":
        x = jnp.tanh(x)
      elif act == "relu":
        x = jax.nn.relu(x)
    if self.sentence.normalize:
      x = l2_normalize(x)
    return x

  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (special tokens added, truncated)."""
    return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

  def encode(self, texts: Sequence[str], batch_size: int = 128,
             progress: bool = False) -> np.ndarray:
    """Embeds `texts` and returns float32 `[len(texts), dim]`.

    Args:
      texts: the input strings.
      batch_size: maximum number of texts per device call.
      progress: show a tqdm progress bar.

    Returns:
      One vector per text, in input order.
    """
    ids = self.tokenize(texts)
    out = np.zeros((len(ids), self.dim), np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    bar = tqdm.tqdm(total=len(ids), desc=f"embed[{self.name}]",
                    disable=not progress, unit="item")
    for start in range(0, len(order), batch_size):
      rows = order[start:start + batch_size]
      length = length_bucket(max(len(ids[r]) for r in rows), self.max_length)
      nb = batch_bucket(len(rows), batch_size)
      tok = np.full((nb, length), self.pad_id, np.int32)
      mask = np.zeros((nb, length), np.int32)
      for j, r in enumerate(rows):
        seq = ids[r][:length]
        tok[j, :len(seq)] = seq
        mask[j, :len(seq)] = 1
      mask[len(rows):, 0] = 1  # Padding rows: keep pooling well defined.
      vec = self._encode_jit(self.params, self._dense, jnp.asarray(tok),
                             jnp.asarray(mask))
      out[rows] = np.asarray(vec)[:len(rows)]
      bar.update(len(rows))
    bar.close()
    return out
