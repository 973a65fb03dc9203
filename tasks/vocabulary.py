"""`SemanticIdVocabulary`: the SeqIO vocabulary of items as semantic IDs.

Items are strings of space-separated dense item indices ("12 7 3"); each
item becomes its `levels` code tokens (token arithmetic is done by
`recjax.tokens.SemanticIdLayout` only), so

  encode("12 7") == [*tokens(12), *tokens(7)]    # len 2 * levels
  decode([*tokens(12), *tokens(7), EOS, PAD])  == "12 7"

Decoding drops PAD, EOS (and what follows it) and user-hash tokens, cuts the
rest into groups of `levels` tokens and looks each group up; a group that is
not the code tuple of an item (unknown tuple, UNK, a token of the wrong
level, or a trailing partial group) decodes to "-1", the invalid item.
Encoding "-1" gives `levels` UNK tokens, so "-1" round-trips too. Encoding
an index outside `[-1, num_items)` raises `ConfigError` in Python and fails
the tf.data pipeline with an `InvalidArgumentError` in TensorFlow.

Code tuples are found by a mixed-radix key (`sum_l code_l * prod(sizes[l+1:])`)
searched in a sorted table, identically in numpy and TensorFlow.

Two vocabularies are equal when their layouts and codes are equal (by a
fingerprint, `recjax.numpy_batches.vocabulary_fingerprint`), so a model
trained on other semantic IDs than a task's is caught. A vocabulary may be
lazy (`from_directory(..., lazy=True)`): it reads `codes.npy` on first use,
so registering tasks never needs the artefacts.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf

from recjax import tokens as tokens_lib
from recjax.errors import ConfigError
from recjax.numpy_batches import vocabulary_fingerprint

CODES_FILE = "codes.npy"
# JSON files of a semantic-ID directory that may name the codebook sizes, in
# the order they are consulted, with the key path of the sizes.
_SIZE_SOURCES = (
    ("manifest.json", ("layout", "codebook_sizes")),
    ("diagnostics.json", ("final_codebook_sizes",)),
    ("config.json", ("codebook_sizes",)),
)
_MAX_KEY = 2**62
INVALID_ITEM = tokens_lib.NO_ITEM

def _crc32_table() -> np.ndarray:
  """The 256-entry table of the reflected CRC-32 polynomial (zlib's)."""
  table = np.zeros((256,), dtype=np.int64)
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
    table[i] = c
  return table


_CRC32_TABLE = _crc32_table()


def _crc32_tf(s: tf.Tensor) -> tf.Tensor:
  """zlib.crc32 of a scalar string, as int64, in TensorFlow ops."""
  data = tf.cast(tf.io.decode_raw(s, tf.uint8), tf.int64)
  table = tf.constant(_CRC32_TABLE)

  def step(crc, byte):
    index = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(crc, byte), 0xFF)
    return tf.bitwise.bitwise_xor(tf.gather(table, index),
                                  tf.bitwise.right_shift(crc, 8))

  crc = tf.foldl(step, data,
                 initializer=tf.constant(0xFFFFFFFF, dtype=tf.int64))
  return tf.bitwise.bitwise_xor(crc, 0xFFFFFFFF)


class _Tables:
  """Resolved state: layout, codes and the lookup tables built from them."""

  def __init__(self, layout: tokens_lib.SemanticIdLayout, codes: np.ndarray,
               source: str):
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0:
      raise ConfigError(f"{source}: codes must be int [num_items, levels] "
                        f"with at least one item, got shape {codes.shape}.")
    if not np.issubdtype(codes.dtype, np.integer):
      raise ConfigError(f"{source}: codes must be integers, got "
                        f"{codes.dtype}.")
    try:
      layout.check_codes(codes)
    except ConfigError as e:
      raise ConfigError(f"{source}: {e}") from None
    self.layout = layout
    self.codes = codes.astype(np.int32)
    sizes = np.asarray(layout.codebook_sizes, dtype=np.int64)
    if float(np.prod(sizes.astype(np.float64))) >= _MAX_KEY:
      raise ConfigError(f"{source}: codebook_sizes {layout.codebook_sizes} "
                        "have too many code tuples for a 62-bit key.")
    self.radix = np.concatenate([np.cumprod(sizes[::-1])[::-1][1:],
                                 [1]]).astype(np.int64)
    keys = self.codes.astype(np.int64) @ self.radix
    order = np.argsort(keys, kind="stable")
    self.sorted_keys = keys[order]
    self.sorted_items = order.astype(np.int32)
    dup = np.flatnonzero(np.diff(self.sorted_keys) == 0)
    if dup.size:
      a, b = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
      raise ConfigError(
          f"{source}: items {a} and {b} share the semantic ID "
          f"{tuple(int(c) for c in self.codes[a])}; codes must be unique "
          "(re-run the semantic-ID stage with collision handling).")
    self.item_tokens = layout.codes_to_tokens(self.codes)
    # Row 0 is the invalid item (-1): all UNK.
    self.item_tokens_with_unk = np.concatenate(
        [np.full((1, layout.num_levels), tokens_lib.UNK_ID, np.int32),
         self.item_tokens])
    self.fingerprint = vocabulary_fingerprint(layout.describe(), self.codes)


def _read_sizes(directory: pathlib.Path) -> tuple[tuple[int, ...], str] | None:
  """Codebook sizes recorded in a semantic-ID directory, and the file."""
  for name, keys in _SIZE_SOURCES:
    path = directory / name
    if not path.exists():
      continue
    try:
      with open(path, encoding="utf-8") as f:
        value: Any = json.load(f)
    except json.JSONDecodeError as e:
      raise ConfigError(f"{path}:{e.lineno}:{e.colno}: malformed JSON "
                        f"({e.msg}).") from None
    for key in keys:
      value = value.get(key) if isinstance(value, dict) else None
    if value is None:
      continue
    if (not isinstance(value, list) or
        not all(isinstance(v, int) for v in value)):
      raise ConfigError(f"{path}: {'.'.join(keys)} must be a list of "
                        f"integers, got {value!r}.")
    return tuple(value), str(path)
  return None


def load_codes(semantic_ids_dir: str | os.PathLike[str],
               codebook_sizes: Sequence[int] | None = None,
               num_user_buckets: int = 0
               ) -> tuple[tokens_lib.SemanticIdLayout, np.ndarray]:
  """Reads `codes.npy` of a semantic-ID directory and builds its layout.

  The codebook sizes are, in order: `codebook_sizes`; `layout.codebook_sizes`
  of `manifest.json`; `final_codebook_sizes` of `diagnostics.json`;
  `codebook_sizes` of `config.json`; else the largest code + 1 per level.

  Args:
    semantic_ids_dir: output directory of the semantic-ID stage.
    codebook_sizes: explicit sizes.
    num_user_buckets: user-hash tokens of the layout.

  Returns:
    `(layout, codes)`.

  Raises:
    ConfigError: a missing or unreadable file, or codes that do not fit.
  """
  directory = pathlib.Path(semantic_ids_dir)
  path = directory / CODES_FILE
  if not path.exists():
    raise ConfigError(
        f"{path} does not exist: run the semantic-ID stage first "
        f"(python -m recjax.semantic_ids --embeddings_dir E --dataset_dir D "
        f"--out {directory} --method rqvae) or pass the directory that "
        "holds its codes.npy.")
  try:
    codes = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise ConfigError(f"{path}: not a readable .npy file ({e}); re-run the "
                      "semantic-ID stage.") from None
  source = str(path)
  if codebook_sizes is None:
    found = _read_sizes(directory)
    if found is not None:
      codebook_sizes, size_file = found
      source = f"{path} (codebook sizes from {size_file})"
  if codes.ndim != 2:
    raise ConfigError(f"{path}: codes must be int [num_items, levels], got "
                      f"shape {codes.shape}.")
  if codebook_sizes is None and codes.size and np.issubdtype(codes.dtype,
                                                             np.integer):
    codebook_sizes = tuple(max(int(m) + 1, 1) for m in codes.max(axis=0))
  try:
    layout = tokens_lib.SemanticIdLayout(tuple(codebook_sizes or ()),
                                         num_user_buckets)
  except ConfigError as e:
    raise ConfigError(f"{source}: {e}") from None
  _Tables(layout, codes, source)  # validates
  return layout, codes.astype(np.int32)


class SemanticIdVocabulary(seqio.Vocabulary):
  """SeqIO vocabulary over item indices, tokenised as semantic IDs.

  Example:
    >>> layout = SemanticIdLayout((4, 4), num_user_buckets=10)
    >>> vocab = SemanticIdVocabulary(layout, np.array([[0, 1], [3, 2]]))
    >>> vocab.encode("1 0")
    [6, 9, 3, 8]
    >>> vocab.decode([6, 9, 1, 0])
    '1'
  """

  def __init__(self, layout: tokens_lib.SemanticIdLayout | None = None,
               codes: np.ndarray | None = None, *,
               loader: Callable[[], tuple[tokens_lib.SemanticIdLayout,
                                          np.ndarray]] | None = None,
               description: str = ""):
    """Builds the vocabulary now (layout + codes) or on first use (loader).

    Args:
      layout: the token layout.
      codes: int `[num_items, levels]` unique semantic IDs, row = item.
      loader: instead of `layout` and `codes`, a function returning them,
        called on first use.
      description: where the codes come from (for messages and repr).

    Raises:
      ConfigError: codes that do not fit the layout or are not unique.
    """
    super().__init__(extra_ids=0)
    if (loader is None) == (layout is None or codes is None):
      raise ConfigError("SemanticIdVocabulary needs either layout and codes "
                        "or a loader.")
    self._loader = loader
    self._description = description
    self._lock = threading.Lock()
    self._tables: _Tables | None = None
    if loader is None:
      self._tables = _Tables(layout, codes, description or "codes")

  # -- construction --------------------------------------------------------

  @classmethod
  def from_directory(cls, semantic_ids_dir: str | os.PathLike[str], *,
                     codebook_sizes: Sequence[int] | None = None,
                     num_user_buckets: int = 0,
                     lazy: bool = False) -> SemanticIdVocabulary:
    """The vocabulary of a semantic-ID stage directory (see `load_codes`).

    Args:
      semantic_ids_dir: directory holding `codes.npy`.
      codebook_sizes: explicit sizes (else read from the directory's JSON).
      num_user_buckets: user-hash tokens.
      lazy: read the directory on first use instead of now.

    Returns:
      The vocabulary.
    """
    path = os.fspath(semantic_ids_dir)
    sizes = None if codebook_sizes is None else tuple(codebook_sizes)
    load = lambda: load_codes(path, sizes, num_user_buckets)
    if lazy:
      return cls(loader=load, description=path)
    layout, codes = load()
    return cls(layout, codes, description=path)

  def _resolve(self) -> _Tables:
    if self._tables is None:
      with self._lock:
        if self._tables is None:
          layout, codes = self._loader()
          self._tables = _Tables(layout, codes, self._description)
    return self._tables

  @property
  def is_loaded(self) -> bool:
    """Whether the codes have been read (always True for eager ones)."""
    return self._tables is not None

  # -- properties ----------------------------------------------------------

  @property
  def layout(self) -> tokens_lib.SemanticIdLayout:
    return self._resolve().layout

  @property
  def codes(self) -> np.ndarray:
    """int32 `[num_items, levels]` (read-only view)."""
    view = self._resolve().codes.view()
    view.flags.writeable = False
    return view

  @property
  def num_items(self) -> int:
    return int(self._resolve().codes.shape[0])

  @property
  def num_levels(self) -> int:
    return self.layout.num_levels

  @property
  def fingerprint(self) -> str:
    """sha256 of the layout and codes (equal vocabularies, equal prints)."""
    return self._resolve().fingerprint

  @property
  def eos_id(self) -> int:
    return tokens_lib.EOS_ID

  @property
  def unk_id(self) -> int:
    return tokens_lib.UNK_ID

  @property
  def pad_id(self) -> int:
    return tokens_lib.PAD_ID

  @property
  def _base_vocab_size(self) -> int:
    return self.layout.vocab_size

  def describe(self) -> dict[str, Any]:
    """JSON-friendly summary: layout, number of items and fingerprint."""
    return {**self.layout.describe(), "num_items": self.num_items,
            "fingerprint": self.fingerprint}

  # -- items <-> tokens, numpy -----------------------------------------------

  def item_tokens(self, item_indices: Any) -> np.ndarray:
    """Tokens of items: int `[...]` -> int32 `[..., levels]`; -1 -> UNKs.

    Raises:
      ConfigError: an index outside `[-1, num_items)`.
    """
    t = self._resolve()
    items = np.asarray(item_indices)
    if items.size and not np.issubdtype(items.dtype, np.integer):
      raise ConfigError(f"item indices must be integers, got {items.dtype}.")
    items = items.astype(np.int64)
    bad = (items < INVALID_ITEM) | (items >= t.codes.shape[0])
    if np.any(bad):
      raise ConfigError(
          f"item index {int(items[bad][0])} is outside the catalog of "
          f"{t.codes.shape[0]} items of vocabulary {self._name()}; the "
          "dataset and the semantic IDs do not belong together.")
    return t.item_tokens_with_unk[items + 1]

  def tokens_to_items(self, tokens: Any) -> np.ndarray:
    """Items of token groups: int `[..., levels]` -> int32 `[...]`, -1 if none.
    """
    t = self._resolve()
    tokens = np.asarray(tokens, dtype=np.int64)
    codes = t.layout.tokens_to_codes(tokens).astype(np.int64)
    valid = np.all(codes >= 0, axis=-1)
    keys = np.where(valid, codes @ t.radix, -1)
    pos = np.searchsorted(t.sorted_keys, keys)
    pos = np.minimum(pos, t.sorted_keys.size - 1)
    found = valid & (t.sorted_keys[pos] == keys)
    return np.where(found, t.sorted_items[pos], INVALID_ITEM).astype(np.int32)

  def user_token(self, user_id: str | int) -> int:
    """The user-hash token of an original user id (`layout.user_token`)."""
    return self.layout.user_token(user_id)

  def _parse(self, s: str | bytes | Iterable[int]) -> np.ndarray:
    if isinstance(s, bytes):
      s = s.decode("utf-8")
    if isinstance(s, str):
      try:
        return np.array([int(w) for w in s.split()], dtype=np.int64)
      except ValueError:
        raise ConfigError(
            f"cannot encode {s!r}: expected space-separated item indices "
            "such as '12 7 3'.") from None
    return np.asarray(list(s), dtype=np.int64)

  def _encode(self, s: str | bytes | Iterable[int]) -> list[int]:
    items = self._parse(s)
    return self.item_tokens(items).reshape(-1).tolist()

  def _keep_mask(self, ids: np.ndarray) -> np.ndarray:
    return ((ids != tokens_lib.PAD_ID) & (ids != tokens_lib.EOS_ID) &
            (ids < self.layout.user_offset))

  def decode_items(self, ids: Iterable[int]) -> np.ndarray:
    """Item indices of a token sequence (through the first EOS), -1 if none.
    """
    ids = np.asarray(list(ids), dtype=np.int64).reshape(-1)
    eos = np.flatnonzero(ids == tokens_lib.EOS_ID)
    if eos.size:
      ids = ids[:eos[0]]
    ids = ids[self._keep_mask(ids)]
    levels = self.num_levels
    num_groups = -(-ids.size // levels)
    padded = np.full((num_groups * levels,), tokens_lib.UNK_ID, np.int64)
    padded[:ids.size] = ids
    return self.tokens_to_items(padded.reshape(num_groups, levels))

  def _decode(self, ids: Sequence[int]) -> str:
    return " ".join(str(int(i)) for i in self.decode_items(ids))

  # -- items <-> tokens, TensorFlow ------------------------------------------

  def item_tokens_tf(self, item_indices: tf.Tensor) -> tf.Tensor:
    """Tokens of items in TF: int `[...]` -> int32 `[..., levels]`.

    -1 maps to UNK tokens; other out-of-range indices fail the pipeline with
    an `InvalidArgumentError` naming the vocabulary.
    """
    t = self._resolve()
    items = tf.cast(item_indices, tf.int32)
    num_items = t.codes.shape[0]
    msg = (f"item index outside [-1, {num_items}) for vocabulary "
           f"{self._name()}: the dataset and the semantic IDs do not belong "
           "together")
    checks = [
        tf.debugging.assert_greater_equal(items, INVALID_ITEM, message=msg),
        tf.debugging.assert_less(items, num_items, message=msg),
    ]
    with tf.control_dependencies(checks):
      return tf.gather(tf.constant(t.item_tokens_with_unk), items + 1)

  def tokens_to_items_tf(self, tokens: tf.Tensor) -> tf.Tensor:
    """TF twin of `tokens_to_items`: int `[..., levels]` -> int32 `[...]`."""
    t = self._resolve()
    tokens = tf.cast(tokens, tf.int64)
    codes = tokens - tf.constant(t.layout.level_offsets, tf.int64)
    sizes = tf.constant(t.layout.codebook_sizes, tf.int64)
    valid = tf.reduce_all((codes >= 0) & (codes < sizes), axis=-1)
    keys = tf.reduce_sum(codes * tf.constant(t.radix), axis=-1)
    keys = tf.where(valid, keys, -1)
    sorted_keys = tf.constant(t.sorted_keys)
    flat = tf.reshape(keys, [-1])
    pos = tf.searchsorted(sorted_keys, flat, side="left", out_type=tf.int64)
    pos = tf.minimum(pos, t.sorted_keys.size - 1)
    found = tf.reshape(tf.gather(sorted_keys, pos) == flat, tf.shape(keys))
    items = tf.reshape(tf.gather(tf.constant(t.sorted_items), pos),
                       tf.shape(keys))
    return tf.where(valid & found, items, INVALID_ITEM)

  def user_token_tf(self, user_id: tf.Tensor) -> tf.Tensor:
    """TF twin of `user_token` for a scalar string id: int32 scalar."""
    layout = self.layout
    if layout.num_user_buckets == 0:
      layout.user_token("")  # raises the layout's ConfigError
    bucket = tf.math.floormod(_crc32_tf(user_id), layout.num_user_buckets)
    return tf.cast(bucket + layout.user_offset, tf.int32)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Encodes a scalar string of item indices to int32 `[n * levels]`."""
    items = tf.strings.to_number(tf.strings.split(s), out_type=tf.int32)
    return tf.reshape(self.item_tokens_tf(items), [-1])

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    # decode_tf has already replaced everything after the first EOS by PAD.
    ids = tf.convert_to_tensor(ids)
    ids = tf.cast(ids, tf.int64)
    rank = ids.shape.rank
    if rank is None or rank == 0:
      raise ConfigError("decode_tf needs ids of known rank >= 1.")
    lead = tf.shape(ids)[:-1]
    rows = tf.reshape(ids, [-1, tf.shape(ids)[-1]])
    layout = self.layout
    keep = ((rows != tokens_lib.PAD_ID) & (rows != tokens_lib.EOS_ID) &
            (rows < layout.user_offset))
    kept = tf.ragged.boolean_mask(rows, keep)
    levels = layout.num_levels
    lengths = kept.row_lengths()
    groups = (lengths + levels - 1) // levels
    width = tf.reduce_max(tf.concat([groups, [0]], axis=0)) * levels
    num_rows = tf.shape(rows, out_type=tf.int64)[0]
    dense = kept.to_tensor(default_value=tokens_lib.UNK_ID,
                           shape=tf.stack([num_rows, width]))
    dense = tf.reshape(dense, tf.stack([num_rows, width // levels, levels]))
    items = self.tokens_to_items_tf(dense)
    items = tf.RaggedTensor.from_tensor(items, lengths=groups)
    text = tf.strings.reduce_join(tf.strings.as_string(items), axis=-1,
                                  separator=" ")
    return tf.reshape(text, lead)

  # -- identity --------------------------------------------------------------

  def _name(self) -> str:
    return self._description or "<in-memory codes>"

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, SemanticIdVocabulary):
      return NotImplemented
    if self is other:
      return True
    return (self.layout == other.layout and
            self.fingerprint == other.fingerprint)

  def __hash__(self) -> int:
    return hash(self.fingerprint)

  def __repr__(self) -> str:
    if not self.is_loaded:
      return f"SemanticIdVocabulary(lazy, {self._name()!r})"
    return (f"SemanticIdVocabulary(codebook_sizes="
            f"{self.layout.codebook_sizes}, num_user_buckets="
            f"{self.layout.num_user_buckets}, num_items={self.num_items}, "
            f"fingerprint={self.fingerprint[:12]})")
