"""The model contracts every family implements (see DESIGN.md, "Contracts").

* `BaseModel`: T5X's contract (`loss_fn`, `predict_batch_with_aux`,
  `score_batch`, `get_initial_variables`, `FEATURE_CONVERTER_CLS`); the
  generative family implements it over semantic-ID tokens.
* `ItemModel`: the item-level contract: score the whole catalog by item
  index, top-K with per-user exclusion sets and catalog subsets
  (`top_k_items`). SASRec, LEARN and LITE implement it.
* `CountModel`: count baselines (popularity, transitions): fitted from the
  training sequences, no gradient steps, saved as arrays.

Item-level batches are dicts of int32 numpy / jax arrays (`NO_ITEM` = -1
pads):

  input_items     [batch, length]  history, right-aligned (most recent item
                                   in the last column), left-padded
  target_items    [batch, length]  training: the item that follows each
                                   input position, -1 where there is no loss
  target_item     [batch]          evaluation: the held-out next item
  excluded_items  [batch, m]       evaluation: each user's items before the
                                   target, the exclusion set of the "seen
                                   items excluded" protocol
                                   (`tokens.EXCLUDED_ITEMS`)
  mask            [batch] bool     evaluation: real rows of a padded batch

No TensorFlow.
"""

from __future__ import annotations

import abc
import importlib
import os
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError
from recjax.tokens import NO_ITEM

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any

# Deprecated name of `NO_ITEM` (item-level batches).
ITEM_PAD = NO_ITEM


class LazySeqioAttr:
  """Class attribute resolving to `seqio.<name>` on access (None without)."""

  def __init__(self, name: str):
    self.name = name

  def __get__(self, obj: Any, objtype: type | None = None) -> Any:
    try:
      seqio = importlib.import_module("seqio")
    except ImportError:
      return None
    return getattr(seqio, self.name)


class BaseModel(abc.ABC):
  """The T5X model contract (see DESIGN.md, "Contracts").

  Subclasses implement the four methods; `FEATURE_CONVERTER_CLS` names the
  SeqIO feature converter that produces their batches.
  """

  FEATURE_CONVERTER_CLS: Any = None

  @abc.abstractmethod
  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Returns `(loss, metrics)` for a training batch."""

  @abc.abstractmethod
  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None,
                             **decode_kwargs: Any
                             ) -> tuple[Array, dict[str, Array]]:
    """Returns `(predictions, aux)` for an inference batch."""

  @abc.abstractmethod
  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Returns the log-likelihood of each example's targets, `[batch]`."""

  @abc.abstractmethod
  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Returns freshly initialised variables (`{"params": ...}`)."""

  def predict_batch(self, params: PyTree, batch: Batch,
                    rng: Array | None = None, **decode_kwargs: Any) -> Array:
    """`predict_batch_with_aux` without the aux dict."""
    return self.predict_batch_with_aux(params, batch, rng,
                                       **decode_kwargs)[0]


def exclusion_mask(num_items: int, excluded_items: Array) -> Array:
  """Boolean `[batch, num_items]`, True for each user's excluded items.

  Args:
    num_items: catalog size.
    excluded_items: int `[batch, m]`, `NO_ITEM`-padded.

  Returns:
    The mask (padding entries exclude nothing).
  """
  excluded_items = jnp.asarray(excluded_items, jnp.int32)
  b = excluded_items.shape[0]
  valid = excluded_items >= 0
  idx = jnp.where(valid, excluded_items, num_items)  # Out of range: dropped.
  mask = jnp.zeros((b, num_items), bool)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], idx.shape)
  return mask.at[rows, idx].set(True, mode="drop")


def top_k_items(scores: Array, k: int, excluded_items: Array | None = None,
                allowed: Array | None = None) -> tuple[Array, Array]:
  """Best `k` items per row of a full-catalog score matrix, on device.

  Args:
    scores: float `[batch, num_items]`.
    k: results per row (`k <= num_items`).
    excluded_items: optional int `[batch, m]` (`NO_ITEM`-padded) per-user
      exclusion sets.
    allowed: optional bool `[num_items]` (or `[batch, num_items]`) catalog
      subset (in stock, a category).

  Returns:
    `(items, scores)`, int32 / float32 `[batch, k]`, best first; when fewer
    than `k` items remain, the rest are -1 with score -inf.

  Raises:
    ConfigError: `k` larger than the catalog.
  """
  num_items = scores.shape[-1]
  if not 0 < k <= num_items:
    raise ConfigError(f"k={k} must be in [1, num_items={num_items}].")
  scores = scores.astype(jnp.float32)
  if excluded_items is not None:
    scores = jnp.where(exclusion_mask(num_items, excluded_items), -jnp.inf,
                       scores)
  if allowed is not None:
    scores = jnp.where(jnp.asarray(allowed, bool), scores, -jnp.inf)
  top, idx = jax.lax.top_k(scores, k)
  idx = jnp.where(jnp.isneginf(top), NO_ITEM, idx).astype(jnp.int32)
  return idx, top


class ItemModel(BaseModel):
  """A model that scores every catalog item as the user's next item.

  Subclasses set `self.module` (a `flax.linen` module), `self.num_items`,
  implement `loss_fn`, `item_scores` and `_init_inputs`; this class gives
  them top-K prediction with exclusion, `score_batch`, initialisation and
  logical axes.
  """

  module: nn.Module
  num_items: int

  @abc.abstractmethod
  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Scores of every item as the next one after `input_items`.

    Args:
      params: model parameters.
      batch: needs `input_items`.

    Returns:
      float32 `[batch, num_items]` (higher is better; softmax logits for
      models trained with a softmax loss).
    """

  @abc.abstractmethod
  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """`(args, kwargs)` of `module.init` for a batch of these shapes."""

  # -- training catalog --------------------------------------------------------

  # The items outside the training catalog: the cold-start protocol's
  # items (`ItemDataConfig.cold_fraction`), set by `train_items.build`.
  # They do not exist while the model trains, so a full-softmax loss
  # leaves them out of its denominator (`training_logits`) rather than
  # pushing them down as negatives of every target. None: every item.
  cold_items: np.ndarray | None = None

  def training_logits(self, logits: Array) -> Array:
    """`logits` `[..., num_items]` with the cold items out of the softmax.

    Args:
      logits: a full-catalog training softmax's logits.

    Returns:
      The same logits, the columns of `cold_items` at the dtype's minimum
      (their softmax weight and gradient are zero).
    """
    if self.cold_items is None or not len(self.cold_items):
      return logits
    keep = np.ones(self.num_items, bool)
    keep[np.asarray(self.cold_items, np.int64)] = False
    return jnp.where(jnp.asarray(keep), logits,
                     jnp.finfo(logits.dtype).min)

  # -- initialisation --------------------------------------------------------

  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Initialises the module; returns `{"params": ...}` of plain arrays."""
    del input_types
    args, kwargs = self._init_inputs(input_shapes)
    init = jax.jit(lambda r: self.module.init({"params": r}, *args,
                                              **kwargs))
    return nn.meta.unbox(init(rng))

  def get_logical_axes(self, input_shapes: Mapping[str, Sequence[int]],
                       input_types: Mapping[str, Any] | None = None
                       ) -> PyTree:
    """Logical axis names (`PartitionSpec`s) of the variables, no compute."""
    del input_types
    args, kwargs = self._init_inputs(input_shapes)
    abstract = jax.eval_shape(
        lambda: self.module.init({"params": jax.random.key(0)}, *args,
                                 **kwargs))
    return nn.get_partition_spec(abstract)

  # -- inference ---------------------------------------------------------------

  # True when `predict_batch_with_aux` ranks `item_scores` exactly (then
  # both history policies come from one `item_scores` call).
  exact_ranking: bool = True

  def with_decoding(self, decoding: str, params: PyTree,
                    item_counts: np.ndarray | None = None) -> ItemModel:
    """This model, ranking the catalog by `decoding`.

    Item-level families rank by exact scores ("exact", this model).
    A family with an approximate decoder (RPG's item graph) overrides
    this and returns a model whose `predict_batch_with_aux` uses it.

    Args:
      decoding: "exact", or a decoder the family names.
      params: the trained parameters (a decoder may index them).
      item_counts: `[num_items]` training interaction counts (a decoder
        may start from popular items).

    Returns:
      A model with the same parameters and scores.

    Raises:
      ConfigError: a decoding this family does not have.
    """
    del params, item_counts
    if decoding == "exact":
      return self
    raise ConfigError(
        f"decoding={decoding!r}: {type(self).__name__} ranks the catalog "
        "by exact scores only; use decoding 'exact' (graph decoding is "
        "RPG's).")

  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Log-softmax score of each row's `target_item`, float32 `[batch]`."""
    log_p = jax.nn.log_softmax(self.item_scores(params, batch), axis=-1)
    target = jnp.asarray(batch["target_item"], jnp.int32)
    return jnp.take_along_axis(log_p, target[:, None], axis=-1)[:, 0]

  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None, *,
                             num_decodes: int = 20,
                             excluded_items: Array | None = None,
                             allowed: Array | None = None
                             ) -> tuple[Array, dict[str, Array]]:
    """Top-`num_decodes` items per user over the whole catalog, best first.

    Args:
      params: model parameters.
      batch: needs `input_items`; `excluded_items` in the batch is used when
        the keyword is not given.
      rng: unused (ranking is deterministic).
      num_decodes: results per user.
      excluded_items: int `[batch, m]` per-user exclusion sets (-1 padded).
      allowed: bool `[num_items]` catalog subset.

    Returns:
      `(items, aux)`: int32 `[batch, num_decodes]` (-1 = none left); aux has
      `items`, `scores` and `valid`.
    """
    del rng
    if excluded_items is None and "excluded_items" in batch:
      excluded_items = batch["excluded_items"]
    items, scores = top_k_items(self.item_scores(params, batch), num_decodes,
                                excluded_items, allowed)
    return items, {"items": items, "scores": scores, "valid": items >= 0}


class CountModel(abc.ABC):
  """A baseline counted from the training sequences (no gradient steps).

  Subclasses hold their fitted arrays, score histories on the host (numpy)
  and round-trip through `state()` / `from_state()`, which the one `train`
  entry point saves as `model_dir/count_model.npz`.

  Attributes:
    num_items: catalog size.
  """

  num_items: int

  @abc.abstractmethod
  def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
    """float64 `[len(histories), num_items]`, higher is better."""

  @abc.abstractmethod
  def state(self) -> dict[str, np.ndarray]:
    """The fitted arrays and settings, as named numpy arrays."""

  @classmethod
  @abc.abstractmethod
  def from_state(cls, state: Mapping[str, np.ndarray]) -> CountModel:
    """The model `state()` describes."""

  def recommend(self, histories: Sequence[np.ndarray], k: int,
                exclude: Sequence[np.ndarray] | None = None,
                batch_size: int = 1024, return_scores: bool = False
                ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-`k` items of each history, best first.

    Args:
      histories: each user's scored history (oldest first).
      k: list length (at most the catalog).
      exclude: optional per-user items left out of the list (e.g. the
        whole history, the "seen items excluded" policy).
      batch_size: users scored at once (memory: batch x catalog floats).
      return_scores: also return the lists' scores.

    Returns:
      int64 `[len(histories), k]`; `NO_ITEM` where fewer than `k` items are
      left. Equal scores rank the smaller item index first. With
      `return_scores`, `(items, scores)`, scores float64 (-inf where no
      item is left).

    Raises:
      ValueError: `k` outside `[1, num_items]`, or `exclude` of another
        length than `histories`.
    """
    if not 1 <= k <= self.num_items:
      raise ValueError(f"k={k} must be in [1, {self.num_items}].")
    if exclude is not None and len(exclude) != len(histories):
      raise ValueError(f"exclude has {len(exclude)} rows for "
                       f"{len(histories)} histories.")
    out = np.full((len(histories), k), NO_ITEM, np.int64)
    scores = np.full((len(histories), k), -np.inf, np.float64)
    for start in range(0, len(histories), batch_size):
      stop = min(start + batch_size, len(histories))
      s = np.array(self.scores(histories[start:stop]), np.float64)
      if exclude is not None:
        for r, items in enumerate(exclude[start:stop]):
          items = np.asarray(items, np.int64)
          s[r, items[items >= 0]] = -np.inf
      # Stable: equal scores go to the smaller item index.
      top = np.argsort(-s, axis=1, kind="stable")[:, :k]
      ranked = np.take_along_axis(s, top, axis=1)
      out[start:stop] = np.where(np.isneginf(ranked), NO_ITEM, top)
      scores[start:stop] = ranked
    return (out, scores) if return_scores else out

  def save(self, path: str | os.PathLike[str]) -> None:
    """Writes `state()` to an `.npz` file atomically."""
    from recjax import io_utils  # pylint: disable=g-import-not-at-top
    io_utils.save_npz_atomic(path, **self.state())
