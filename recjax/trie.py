"""The valid-ID constraint: a trie of semantic IDs compiled into device arrays.

`ItemTrie.build(codes, layout)` takes the codes of a catalog, `[num_items,
levels]` with unique rows, sorts them once (vectorised numpy: one argsort of
packed keys, or a lexsort, then a diff to find where prefixes change) and
stores the trie level by level:

* node ids: the nodes at depth `d` (distinct prefixes of length `d`) are
  numbered in sorted order, so the children of a node are a contiguous run
  of the nodes one level down and the leaves (depth `levels`) are the sorted
  catalog rows;
* `row_ptr[d]` (int32 `[nodes_d + 1]`): CSR offsets, children of node `n`
  are the depth-`d+1` nodes `row_ptr[d][n] .. row_ptr[d][n+1] - 1`;
* `child_codes[d]` (uint8 / uint16 / int32 `[nodes_{d+1}]`): the code of each
  depth-`d+1` node at level `d`, sorted within each run;
* `dense[d]` (int32 `[nodes_d, codebook_d]`, only where that table is small,
  e.g. the root and, for 256-code levels, depth 1): child node id, or -1;
* `leaf_item` / `item_leaf` (int32 `[num_items]`): sorted leaf <-> item index;
* `leaf_allowed_cum` (int32 `[num_items + 1]`, optional): prefix sums of a
  catalog-subset mask over the leaves (`with_subset`).

Inside `jit`, `children(level, nodes)` returns for every beam its candidate
next codes, their child nodes and a validity mask, `[..., fanout_level]`,
with a handful of gathers: the cost per step is `O(beams x max fan-out)`
(at most `beams x codebook_size`), independent of the catalog size.
`allowed_mask` turns that into a dense token mask where one is wanted.

The same arrays give, for any node, the range of its leaves (follow the
first-child pointers down), so the number of still-allowed items under a
candidate is `leaves - excluded leaves in range` (a subset mask via
`leaf_allowed_cum`, per-user exclusions by a binary search in the sorted
excluded leaves). A candidate whose every completion is excluded is dropped,
which makes exclusion exact inside the beam search.

Memory for 10M random 4-level IDs over 256-code levels is about 13 bytes per
item (`nbytes`). No TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError
from recjax.tokens import SemanticIdLayout

Array = jax.Array

# Levels whose dense child table has at most this many entries get one.
DEFAULT_DENSE_MAX_ENTRIES = 1 << 16


def _code_dtype(codebook_size: int) -> np.dtype:
  if codebook_size <= 1 << 8:
    return np.dtype(np.uint8)
  if codebook_size <= 1 << 16:
    return np.dtype(np.uint16)
  return np.dtype(np.int32)


def _sort_order(codes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
  """Row order sorting `codes` lexicographically (level 0 most significant)."""
  bits = [max(1, int(s - 1).bit_length()) for s in sizes]
  if sum(bits) <= 62:
    key = np.zeros(codes.shape[0], np.int64)
    for level, b in enumerate(bits):
      key = (key << b) | codes[:, level]
    return np.argsort(key, kind="stable")
  return np.lexsort(codes.T[::-1])


@flax.struct.dataclass
class ItemTrie:
  """Device-resident trie over the catalog's semantic IDs (a pytree).

  Build with `ItemTrie.build`; pass it into jitted functions as an argument.
  Static fields (layout, sizes) are part of the tree structure, arrays are
  leaves.
  """

  row_ptr: tuple[Array, ...]
  child_codes: tuple[Array, ...]
  dense: tuple[Array | None, ...]
  leaf_item: Array
  item_leaf: Array
  leaf_allowed_cum: Array | None
  layout: SemanticIdLayout = flax.struct.field(pytree_node=False)
  num_nodes: tuple[int, ...] = flax.struct.field(pytree_node=False)
  fanout: tuple[int, ...] = flax.struct.field(pytree_node=False)

  # -- construction -----------------------------------------------------------

  @classmethod
  def build(cls, codes: Any, layout: SemanticIdLayout | None = None,
            dense_max_entries: int = DEFAULT_DENSE_MAX_ENTRIES
            ) -> ItemTrie:
    """Compiles the catalog's codes into a trie.

    Args:
      codes: int `[num_items, num_levels]`, one unique row per item; row `i`
        is item index `i`.
      layout: the token layout (default: `SemanticIdLayout.from_codes`).
      dense_max_entries: levels whose `nodes x codebook` table has at most
        this many entries (and at most `max(num_items, 256)`, so it costs at
        most 4 bytes per item) also get a dense child table.

    Returns:
      The trie (arrays on the default device).

    Raises:
      ConfigError: empty or non-2-D codes, codes that do not fit the layout,
        or duplicate rows.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0:
      raise ConfigError(
          f"codes must be a non-empty int array [num_items, levels], got "
          f"shape {codes.shape}.")
    if not np.issubdtype(codes.dtype, np.integer):
      raise ConfigError(f"codes must be integers, got dtype {codes.dtype}.")
    if layout is None:
      layout = SemanticIdLayout.from_codes(codes)
    codes = layout.check_codes(codes).astype(np.int64)
    num_items, levels = codes.shape
    if num_items >= np.iinfo(np.int32).max:
      raise ConfigError(f"{num_items} items do not fit int32 indices.")
    order = _sort_order(codes, layout.codebook_sizes)
    srt = codes[order]
    # first_diff[i]: first level where sorted rows i and i+1 differ.
    neq = srt[1:] != srt[:-1]
    same = ~neq.any(axis=1)
    if same.any():
      i = int(np.flatnonzero(same)[0])
      a, b = sorted((int(order[i]), int(order[i + 1])))
      raise ConfigError(
          f"codes have duplicate rows: items {a} and {b} both have semantic "
          f"ID {srt[i].tolist()} ({int(same.sum())} duplicate pairs in all). "
          "Make IDs unique first (e.g. add a collision level).")
    first_diff = np.argmax(neq, axis=1)
    row_ptr, child_codes, dense, num_nodes, fanout = [], [], [], [1], []
    parent = np.zeros(num_items, np.int64)  # depth-d node of each row
    for d in range(levels):
      starts = np.ones(num_items, bool)
      starts[1:] = first_diff <= d
      child_parent = parent[starts]
      counts = np.bincount(child_parent, minlength=num_nodes[d])
      ptr = np.zeros(num_nodes[d] + 1, np.int64)
      np.cumsum(counts, out=ptr[1:])
      cc = srt[starts, d]
      n_child = int(starts.sum())
      row_ptr.append(ptr.astype(np.int32))
      child_codes.append(cc.astype(_code_dtype(layout.codebook_sizes[d])))
      fanout.append(int(counts.max()))
      entries = num_nodes[d] * layout.codebook_sizes[d]
      if entries <= min(dense_max_entries, max(num_items, 256)):
        table = np.full((num_nodes[d], layout.codebook_sizes[d]), -1,
                        np.int32)
        table[child_parent, cc] = np.arange(n_child, dtype=np.int32)
        dense.append(table)
      else:
        dense.append(None)
      num_nodes.append(n_child)
      parent = np.cumsum(starts) - 1
    item_leaf = np.empty(num_items, np.int32)
    item_leaf[order] = np.arange(num_items, dtype=np.int32)
    put = jnp.asarray
    return cls(
        row_ptr=tuple(put(p) for p in row_ptr),
        child_codes=tuple(put(c) for c in child_codes),
        dense=tuple(None if t is None else put(t) for t in dense),
        leaf_item=put(order.astype(np.int32)), item_leaf=put(item_leaf),
        leaf_allowed_cum=None, layout=layout, num_nodes=tuple(num_nodes),
        fanout=tuple(fanout))

  def with_subset(self, items: Any | None) -> ItemTrie:
    """Restricts decoding to a catalog subset without rebuilding.

    Args:
      items: bool mask `[num_items]`, or int item indices; None removes the
        restriction.

    Returns:
      A trie sharing this one's arrays, plus `leaf_allowed_cum`.

    Raises:
      ConfigError: for a mask of the wrong length or out-of-range indices.
    """
    if items is None:
      return dataclasses.replace(self, leaf_allowed_cum=None)
    items = np.asarray(items)
    n = self.num_items
    if items.dtype == bool:
      if items.shape != (n,):
        raise ConfigError(f"subset mask has shape {items.shape}, expected "
                          f"({n},).")
      mask = items
    else:
      items = items.astype(np.int64).ravel()
      if items.size and (items.min() < 0 or items.max() >= n):
        raise ConfigError(f"subset item indices must be in [0, {n}).")
      mask = np.zeros(n, bool)
      mask[items] = True
    allowed = mask[np.asarray(self.leaf_item)]
    cum = np.zeros(n + 1, np.int32)
    np.cumsum(allowed, out=cum[1:])
    return dataclasses.replace(self, leaf_allowed_cum=jnp.asarray(cum))

  # -- sizes ------------------------------------------------------------------

  @property
  def num_items(self) -> int:
    return self.num_nodes[-1]

  @property
  def num_levels(self) -> int:
    return self.layout.num_levels

  @property
  def nbytes(self) -> int:
    """Device bytes of all arrays."""
    return int(sum(x.nbytes for x in jax.tree.leaves(self)))

  # -- lookups (jit-friendly) ------------------------------------------------

  def children(self, level: int, nodes: Array
               ) -> tuple[Array, Array, Array]:
    """Candidate continuations of depth-`level` nodes.

    Args:
      level: static level (0 = root).
      nodes: int32 `[...]` node ids at depth `level` (clipped into range).

    Returns:
      `(codes, child_nodes, valid)`, each `[..., fanout]`: the code of each
      candidate at `level`, its node id at depth `level + 1` (the sorted leaf
      index at the last level), and whether it exists. Dense levels list all
      `codebook_size` codes in order; sparse levels list the node's children
      in code order.
    """
    nodes = jnp.clip(nodes, 0, self.num_nodes[level] - 1)
    table = self.dense[level]
    if table is not None:
      child = jnp.take(table, nodes, axis=0)
      codes = jnp.broadcast_to(
          jnp.arange(child.shape[-1], dtype=jnp.int32), child.shape)
      return codes, jnp.maximum(child, 0), child >= 0
    ptr = self.row_ptr[level]
    start = jnp.take(ptr, nodes)
    end = jnp.take(ptr, nodes + 1)
    pos = start[..., None] + jnp.arange(self.fanout[level], dtype=jnp.int32)
    valid = pos < end[..., None]
    pos = jnp.minimum(pos, self.num_nodes[level + 1] - 1)
    codes = jnp.take(self.child_codes[level], pos).astype(jnp.int32)
    return codes, pos, valid

  def leaf_range(self, depth: int, nodes: Array) -> tuple[Array, Array]:
    """`[start, stop)` sorted-leaf range under depth-`depth` nodes."""
    start = nodes
    stop = nodes + 1
    for d in range(depth, self.num_levels):
      start = jnp.take(self.row_ptr[d], start)
      stop = jnp.take(self.row_ptr[d], stop)
    return start, stop

  def prepare_exclusions(self, excluded_items: Array) -> Array:
    """Per-user excluded items -> sorted, de-duplicated leaf ids.

    Args:
      excluded_items: int `[batch, max_excluded]` item indices; -1 (or any
        index outside `[0, num_items)`) is padding.

    Returns:
      int32 `[batch, max_excluded]`, ascending, padding and duplicates (and
      items outside the subset) replaced by `num_items`.
    """
    n = self.num_items
    items = excluded_items.astype(jnp.int32)
    ok = (items >= 0) & (items < n)
    leaves = jnp.take(self.item_leaf, jnp.clip(items, 0, n - 1))
    if self.leaf_allowed_cum is not None:
      cum = self.leaf_allowed_cum
      ok = ok & (jnp.take(cum, leaves + 1) > jnp.take(cum, leaves))
    leaves = jnp.sort(jnp.where(ok, leaves, n), axis=-1)
    dup = jnp.concatenate(
        [jnp.zeros_like(leaves[:, :1], bool), leaves[:, 1:] == leaves[:, :-1]],
        axis=-1)
    return jnp.sort(jnp.where(dup, n, leaves), axis=-1)

  def count_allowed(self, depth: int, nodes: Array,
                    excluded_leaves: Array | None = None) -> Array:
    """Number of allowed items under depth-`depth` nodes.

    Args:
      depth: static depth of `nodes` (1..num_levels).
      nodes: int32 `[batch, ...]`.
      excluded_leaves: from `prepare_exclusions`, `[batch, m]`, or None.

    Returns:
      int32 `[batch, ...]`: leaves under each node that are in the subset
      (if any) and not excluded for that batch row.
    """
    start, stop = self.leaf_range(depth, nodes)
    if self.leaf_allowed_cum is None:
      count = stop - start
    else:
      cum = self.leaf_allowed_cum
      count = jnp.take(cum, stop) - jnp.take(cum, start)
    if excluded_leaves is not None and excluded_leaves.shape[-1] > 0:
      method = "compare_all" if excluded_leaves.shape[-1] <= 64 else "scan"
      search = jax.vmap(
          lambda e, q: jnp.searchsorted(e, q, side="left", method=method))
      shape = start.shape
      s = search(excluded_leaves, start.reshape(shape[0], -1))
      t = search(excluded_leaves, stop.reshape(shape[0], -1))
      count = count - (t - s).reshape(shape).astype(count.dtype)
    return count

  def item_of_leaf(self, leaves: Array) -> Array:
    """Item index of sorted leaf ids."""
    return jnp.take(self.leaf_item,
                    jnp.clip(leaves, 0, self.num_items - 1))

  def lookup(self, codes: Array) -> Array:
    """Item index of each code tuple, -1 if it is not in the catalog.

    Subset masks are ignored (this asks "is it a real item").

    Args:
      codes: int `[..., num_levels]`.

    Returns:
      int32 `[...]`.
    """
    codes = jnp.asarray(codes, jnp.int32)
    node = jnp.zeros(codes.shape[:-1], jnp.int32)
    found = jnp.ones(codes.shape[:-1], bool)
    for level in range(self.num_levels):
      cand, child, valid = self.children(level, node)
      hit = valid & (cand == codes[..., level:level + 1])
      found = found & hit.any(-1)
      node = jnp.sum(jnp.where(hit, child, 0), axis=-1).astype(jnp.int32)
    return jnp.where(found, self.item_of_leaf(node), -1)

  def lookup_tokens(self, tokens: Array) -> Array:
    """Like `lookup`, for ID tokens `[..., num_levels]` (-1 if invalid)."""
    offsets = jnp.asarray(self.layout.level_offsets)
    sizes = jnp.asarray(self.layout.codebook_sizes, jnp.int32)
    codes = jnp.asarray(tokens, jnp.int32) - offsets
    ok = jnp.all((codes >= 0) & (codes < sizes), axis=-1)
    return jnp.where(ok, self.lookup(jnp.clip(codes, 0, sizes - 1)), -1)

  def allowed_mask(self, level: int, nodes: Array,
                   excluded_leaves: Array | None = None) -> Array:
    """Dense allowed-token mask over the vocabulary for depth-`level` nodes.

    Args:
      level: static level.
      nodes: int32 `[batch, ...]` node ids at depth `level`.
      excluded_leaves: optional, from `prepare_exclusions`.

    Returns:
      bool `[batch, ..., vocab_size]`, True for ID tokens of `level` that lead
      to at least one allowed item.
    """
    codes, child, valid = self.children(level, nodes)
    if excluded_leaves is not None or self.leaf_allowed_cum is not None:
      valid = valid & (self.count_allowed(level + 1, child, excluded_leaves)
                       > 0)
    start = int(self.layout.level_offsets[level])
    tokens = jnp.where(valid, codes + start, self.layout.vocab_size)
    flat = tokens.reshape(-1, tokens.shape[-1])
    rows = jnp.arange(flat.shape[0])[:, None]
    mask = jnp.zeros((flat.shape[0], self.layout.vocab_size), bool)
    mask = mask.at[rows, flat].set(True, mode="drop")
    return mask.reshape(nodes.shape + (self.layout.vocab_size,))

  def describe(self) -> dict[str, Any]:
    """Sizes for logs and benchmarks."""
    return {"num_items": self.num_items, "num_nodes": list(self.num_nodes),
            "fanout": list(self.fanout),
            "dense_levels": [d for d, t in enumerate(self.dense)
                             if t is not None],
            "bytes": self.nbytes,
            "bytes_per_item": self.nbytes / self.num_items}
