"""The token layout of semantic IDs; the only place that does id arithmetic.

Layout (DESIGN.md, "Tokens"):

  0            PAD
  1            EOS
  2            UNK
  3 ...        semantic-ID codes: level l, code c -> 3 + offset[l] + c, where
               offset[l] is the sum of the codebook sizes of levels < l
  ... then     user-hash tokens: bucket b -> 3 + sum(codebook_sizes) + b

`SemanticIdLayout` is a frozen dataclass, so two layouts compare equal exactly
when they describe the same vocabulary. The SeqIO vocabulary of the task layer
wraps it; the core (network, decoding, trie) uses it directly. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from recjax.errors import ConfigError

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NUM_SPECIAL = 3
# "No item": pads item-index arrays (histories, exclusion sets, ranked
# lists) and marks a slot without a valid item. The one definition.
NO_ITEM = -1
# The one name of a batch's exclusion set: every item the user saw before
# the target (NO_ITEM padded), what "seen items excluded" removes.
EXCLUDED_ITEMS = "excluded_items"


@dataclasses.dataclass(frozen=True)
class SemanticIdLayout:
  """Token layout for items as tuples of per-level codes.

  Attributes:
    codebook_sizes: number of codes at each level, e.g. `(256, 256, 256, 8)`
      for TIGER's 3 levels of 256 plus a collision level.
    num_user_buckets: number of user-hash tokens (TIGER: 2000); 0 for none.
  """

  codebook_sizes: tuple[int, ...]
  num_user_buckets: int = 0

  def __post_init__(self):
    sizes = tuple(int(s) for s in self.codebook_sizes)
    object.__setattr__(self, "codebook_sizes", sizes)
    if not sizes or any(s <= 0 for s in sizes):
      raise ConfigError(
          f"codebook_sizes must be a non-empty tuple of positive sizes, got "
          f"{self.codebook_sizes!r}.")
    if self.num_user_buckets < 0:
      raise ConfigError("num_user_buckets must be >= 0, got "
                        f"{self.num_user_buckets}.")

  # -- sizes -------------------------------------------------------------------

  @property
  def num_levels(self) -> int:
    return len(self.codebook_sizes)

  @property
  def level_offsets(self) -> np.ndarray:
    """int32 `[num_levels]` first token id of each level."""
    return (NUM_SPECIAL +
            np.concatenate([[0], np.cumsum(self.codebook_sizes)[:-1]])
            ).astype(np.int32)

  @property
  def num_code_tokens(self) -> int:
    return int(sum(self.codebook_sizes))

  @property
  def user_offset(self) -> int:
    """First user-hash token id."""
    return NUM_SPECIAL + self.num_code_tokens

  @property
  def vocab_size(self) -> int:
    """Total number of token ids (specials, codes, user buckets)."""
    return self.user_offset + self.num_user_buckets

  # -- codes <-> tokens -------------------------------------------------------

  def check_codes(self, codes: np.ndarray) -> np.ndarray:
    """Validates `codes [..., num_levels]` against the layout and returns it.

    Raises:
      ConfigError: if the last axis is not `num_levels` or a code does not fit
        its level's codebook.
    """
    codes = np.asarray(codes)
    if codes.shape[-1:] != (self.num_levels,):
      raise ConfigError(
          f"codes have {codes.shape[-1] if codes.ndim else 0} levels but the "
          f"vocabulary layout has {self.num_levels} (codebook_sizes="
          f"{self.codebook_sizes}). Build the layout from the same semantic "
          "IDs.")
    sizes = np.asarray(self.codebook_sizes)
    bad = (codes < 0) | (codes >= sizes)
    if np.any(bad):
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      level = where[-1]
      raise ConfigError(
          f"code {int(codes[where])} at index {where} does not fit level "
          f"{level}, whose codebook has {sizes[level]} codes. Enlarge "
          "codebook_sizes or re-run the semantic-ID stage.")
    return codes

  def codes_to_tokens(self, codes: np.ndarray) -> np.ndarray:
    """Maps codes `[..., num_levels]` to token ids of the same shape."""
    codes = self.check_codes(codes)
    return (codes + self.level_offsets).astype(np.int32)

  def tokens_to_codes(self, tokens: np.ndarray) -> np.ndarray:
    """Maps token ids `[..., num_levels]` back to codes; -1 where invalid."""
    tokens = np.asarray(tokens, dtype=np.int64)
    codes = tokens - self.level_offsets
    ok = (codes >= 0) & (codes < np.asarray(self.codebook_sizes))
    return np.where(ok, codes, -1).astype(np.int32)

  def level_token_range(self, level: int) -> tuple[int, int]:
    """Returns `[start, stop)` token ids of codes at `level`."""
    start = int(self.level_offsets[level])
    return start, start + self.codebook_sizes[level]

  # -- users -----------------------------------------------------------------

  def user_token(self, user_id: str | int) -> int:
    """Hashes an original user id to its user token (stable across runs).

    Raises:
      ConfigError: if the layout has no user buckets.
    """
    if self.num_user_buckets == 0:
      raise ConfigError("this vocabulary layout has no user-hash tokens; set "
                        "num_user_buckets > 0 (TIGER uses 2000).")
    bucket = zlib.crc32(str(user_id).encode("utf-8")) % self.num_user_buckets
    return self.user_offset + bucket

  def describe(self) -> dict[str, object]:
    """A JSON-friendly description, stored with checkpoints and tasks."""
    return {"codebook_sizes": list(self.codebook_sizes),
            "num_user_buckets": self.num_user_buckets,
            "vocab_size": self.vocab_size}

  @classmethod
  def from_codes(cls, codes: np.ndarray,
                 codebook_sizes: Sequence[int] | None = None,
                 num_user_buckets: int = 0) -> SemanticIdLayout:
    """A layout for `codes [num_items, levels]`.

    Args:
      codes: the semantic IDs.
      codebook_sizes: explicit sizes; default: `max code + 1` per level.
      num_user_buckets: user-hash buckets.

    Returns:
      The layout, validated against `codes`.
    """
    codes = np.asarray(codes)
    if codebook_sizes is None:
      codebook_sizes = tuple(int(m) + 1 for m in codes.max(axis=0))
    layout = cls(tuple(codebook_sizes), num_user_buckets)
    layout.check_codes(codes)
    return layout
