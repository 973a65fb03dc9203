"""RPG's graph-constrained decoding: beams over a code-space item graph.

Exact RPG scoring gathers D log-probs for every catalog item. For large
catalogs the paper walks a nearest-neighbour graph instead: items are
nodes, each linked to its `num_edges` most similar items in code space,
where the similarity of items i and j is the mean over digits of the
cosine between their codes' embeddings (the model's own table):

  sim(i, j) = (1 / D) sum_d cos(E[d, code_d(i)], E[d, code_d(j)])
            = <v_i, v_j>,  v_i = concat_d normalize(E[d, code_d(i)]) / sqrt(D)

A user's item score is, up to a per-user constant, <q, v_i> with q the
concatenated unit head outputs (the logits are cosines / tau), and every
v_i has the same norm: top-K items are nearest neighbours of q, and the
graph is a nearest-neighbour index over the same vectors.

Decoding scores a start set (fixed seed items, best the most popular
ones, and the user's last items with their neighbours) and keeps the best
`num_beams`. Each of `num_steps` steps expands the `num_expand` best
beams not expanded yet: their neighbours are scored and the beams become
the best of all. The cost per user is about
`num_seeds + num_steps * num_expand * num_edges` item scores, independent
of the catalog size; every result is a catalog item, and with a complete
graph the result equals exact scoring.

Graph building (`build_graph`) is separate and reported separately:
"exact" compares every pair in blocks (the official code's dense matrix,
without materialising it); "ivf" clusters the vectors (k-means) and
compares each item only with the members of its `num_probes` nearest
clusters, which scales to millions of items. The official code builds a
dense `[N, N]` matrix, which does not fit at 1M items.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError
from recjax.models.rpg.model import candidate_scores
from recjax.models.rpg.model import code_scores
from recjax.quantizers import kmeans as km

Array = jax.Array
GRAPH_METHODS = ("exact", "ivf")


def codes_checksum(codes: np.ndarray) -> str:
  """A short fingerprint of a catalog's codes (graphs record it)."""
  codes = np.ascontiguousarray(np.asarray(codes, np.int32))
  digest = hashlib.sha256(str(codes.shape).encode() + codes.tobytes())
  return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class ItemGraph:
  """Each item's nearest neighbours in code space.

  Attributes:
    neighbors: int32 `[num_items, num_edges]`, most similar first, never
      the item itself.
    codes_checksum: `codes_checksum` of the catalog it was built for.
    method: "exact" or "ivf".
    build_seconds: wall time of `build_graph`.
  """

  neighbors: np.ndarray
  codes_checksum: str
  method: str
  build_seconds: float

  @property
  def num_items(self) -> int:
    return int(self.neighbors.shape[0])

  @property
  def num_edges(self) -> int:
    return int(self.neighbors.shape[1])

  def check(self, codes: np.ndarray) -> None:
    """Raises ConfigError unless the graph was built for `codes`."""
    got = codes_checksum(codes)
    if self.num_items != len(codes) or got != self.codes_checksum:
      raise ConfigError(
          f"this item graph was built for another catalog ({self.num_items}"
          f" items, codes {self.codes_checksum}); the model's catalog has "
          f"{len(codes)} items, codes {got}. Rebuild it with "
          "build_graph(model.code_table(params), model.codes, ...).")


def item_vectors(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
  """`v_i` of the module docstring: float32 `[num_items, D * hidden]`.

  Args:
    table: `[D, M, hidden]` code embeddings (`RPGModel.code_table`).
    codes: int `[num_items, D]`.

  Returns:
    Vectors whose inner products are the mean per-digit cosines.
  """
  table = np.asarray(table, np.float32)
  norm = np.linalg.norm(table, axis=-1, keepdims=True)
  unit = table / np.maximum(norm, 1e-12)
  d = table.shape[0]
  vecs = unit[np.arange(d), np.asarray(codes, np.int64)]  # [N, D, H]
  return (vecs.reshape(len(codes), -1) / np.sqrt(d)).astype(np.float32)


@functools.partial(jax.jit, static_argnums=(2,))
def _block_top(queries: Array, keys: Array, k: int,
               key_valid: Array | None = None) -> tuple[Array, Array]:
  sims = jnp.dot(queries, keys.T, precision=jax.lax.Precision.HIGHEST)
  if key_valid is not None:  # Padding keys never win.
    sims = jnp.where(key_valid[None], sims, -jnp.inf)
  return jax.lax.top_k(sims, k)


def _exact_neighbors(vecs: np.ndarray, num_edges: int,
                     block: int) -> np.ndarray:
  n = len(vecs)
  keys = jnp.asarray(vecs)
  out = np.empty((n, num_edges), np.int32)
  for start in range(0, n, block):
    stop = min(start + block, n)
    q = jnp.asarray(vecs[start:stop])
    if stop - start < block:  # One compiled shape.
      q = jnp.pad(q, ((0, block - (stop - start)), (0, 0)))
    sims, idx = _block_top(q, keys, num_edges + 1)
    idx, sims = np.asarray(idx)[:stop - start], np.asarray(sims)[
        :stop - start]
    out[start:stop] = _drop_self(idx, sims, np.arange(start, stop),
                                 num_edges)
  return out


def _drop_self(idx: np.ndarray, sims: np.ndarray, rows: np.ndarray,
               num_edges: int) -> np.ndarray:
  """Removes each row's own item (or its last entry) from `num_edges + 1`."""
  del sims
  is_self = idx == rows[:, None]
  drop = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1),
                  idx.shape[1] - 1)
  keep = np.ones_like(idx, bool)
  keep[np.arange(len(idx)), drop] = False
  return idx[keep].reshape(len(idx), num_edges)


def reduced_vectors(table: np.ndarray, codes: np.ndarray, dim: int,
                    sample: int = 20_000, seed: int = 0) -> np.ndarray:
  """`item_vectors` projected on their top `dim` principal directions.

  Never materialises the `[num_items, D * hidden]` vectors: each digit's
  unit code table is projected once (`[M, dim]`), and an item's reduced
  vector is the sum of its digits' rows. The directions come from a
  sample of at most `sample` items.

  Args:
    table: `[D, M, hidden]` code embeddings.
    codes: int `[num_items, D]`.
    dim: reduced width.
    sample: items used to find the directions.
    seed: sample seed.

  Returns:
    float32 `[num_items, dim]`.
  """
  table = np.asarray(table, np.float32)
  d, m, h = table.shape
  codes = np.asarray(codes, np.int64)
  rng = np.random.default_rng(seed)
  rows = rng.choice(len(codes), min(sample, len(codes)), replace=False)
  full = item_vectors(table, codes[rows])
  dim = min(dim, full.shape[1], len(rows))
  _, _, vt = np.linalg.svd(full - full.mean(axis=0), full_matrices=False)
  basis = vt[:dim].T.reshape(d, h, dim)  # [D, hidden, dim]
  unit = table / np.maximum(np.linalg.norm(table, axis=-1, keepdims=True),
                            1e-12)
  projected = np.einsum("dmh,dhr->dmr", unit, basis) / np.sqrt(d)
  out = np.zeros((len(codes), dim), np.float32)
  for digit in range(d):
    out += projected[digit][codes[:, digit]]
  return out


def _ivf_neighbors(vecs: np.ndarray, num_edges: int, num_clusters: int,
                   num_probes: int, seed: int) -> np.ndarray:
  n = len(vecs)
  rng = np.random.default_rng(seed)
  fit = vecs[rng.choice(n, min(n, 50 * num_clusters), replace=False)]
  cents = km.kmeans(jnp.asarray(fit), num_clusters, jax.random.key(seed),
                    num_iters=10)[0]
  assign = np.concatenate([
      np.asarray(km.assign(jnp.asarray(vecs[i:i + 65536]), cents))
      for i in range(0, n, 65536)])
  cents = np.asarray(cents)
  members = [np.flatnonzero(assign == c) for c in range(num_clusters)]
  probe = np.asarray(jax.lax.top_k(
      -km.sq_distances(jnp.asarray(cents), jnp.asarray(cents)),
      num_probes)[1])
  out = np.empty((n, num_edges), np.int32)
  for c in range(num_clusters):
    rows = members[c]
    if not len(rows):
      continue
    cand = np.concatenate([members[p] for p in probe[c]])
    if len(cand) < num_edges + 1:  # Tiny clusters: widen to everything.
      cand = np.arange(n)
    # Pad to powers of two so few shapes are compiled.
    qn, cn = _bucket(len(rows)), _bucket(len(cand))
    q = np.zeros((qn, vecs.shape[1]), np.float32)
    q[:len(rows)] = vecs[rows]
    keys = np.zeros((cn, vecs.shape[1]), np.float32)
    keys[:len(cand)] = vecs[cand]
    _, idx = _block_top(jnp.asarray(q), jnp.asarray(keys), num_edges + 1,
                        jnp.arange(cn) < len(cand))
    idx = cand[np.asarray(idx)[:len(rows)]]  # len(cand) > num_edges.
    out[rows] = _drop_self(idx, None, rows, num_edges)
  return out


def _bucket(n: int) -> int:
  return 1 << max(int(np.ceil(np.log2(max(n, 1)))), 4)


def build_graph(table: np.ndarray, codes: np.ndarray, num_edges: int = 50,
                method: str = "auto", block: int = 1024,
                num_clusters: int | None = None, num_probes: int = 8,
                reduced_dim: int = 64, seed: int = 0) -> ItemGraph:
  """Each item's `num_edges` nearest items in code space.

  Args:
    table: `[D, M, hidden]` code embeddings of the trained model.
    codes: int `[num_items, D]`, the catalog's codes.
    num_edges: neighbours per item (`< num_items`).
    method: "exact", "ivf", or "auto" (exact up to 20,000 items).
    block: query rows per step of the exact method.
    num_clusters: IVF clusters (default: about sqrt(num_items)).
    num_probes: clusters each IVF cluster's items are compared with.
    reduced_dim: width of the vectors IVF clusters and compares
      (`reduced_vectors`).
    seed: k-means seed of IVF.

  Returns:
    The graph (with its build time).

  Raises:
    ConfigError: `num_edges` out of range or an unknown method.
  """
  start = time.time()
  codes = np.asarray(codes, np.int32)
  n = len(codes)
  if not 0 < num_edges < n:
    raise ConfigError(f"num_edges={num_edges} must be in [1, {n - 1}] for a "
                      f"catalog of {n} items.")
  if method == "auto":
    method = "exact" if n <= 20_000 else "ivf"
  if method not in GRAPH_METHODS:
    raise ConfigError(f"graph method {method!r}; use one of "
                      f"{GRAPH_METHODS} or 'auto'.")
  if method == "exact":
    neighbors = _exact_neighbors(item_vectors(table, codes), num_edges,
                                 min(block, n))
  else:
    clusters = num_clusters or max(int(np.sqrt(n)), 1)
    vecs = reduced_vectors(table, codes, reduced_dim, seed=seed)
    neighbors = _ivf_neighbors(vecs, num_edges, clusters,
                               min(num_probes, clusters), seed)
  return ItemGraph(neighbors=neighbors, codes_checksum=codes_checksum(codes),
                   method=method, build_seconds=time.time() - start)


def compact_codes(codes: np.ndarray) -> np.ndarray:
  """`codes` in the narrowest unsigned type that holds them.

  With 256 codes per digit an item's 32 codes are 32 bytes, one cache
  line, instead of 128 as int32: on a catalog too large for the caches,
  each scored item costs one memory read instead of two to four.

  Args:
    codes: int `[num_items, D]`, non-negative.

  Returns:
    uint8, uint16 or int32 codes, same values.
  """
  codes = np.asarray(codes)
  top = int(codes.max()) if codes.size else 0
  for dtype in (np.uint8, np.uint16):
    if top <= np.iinfo(dtype).max:
      return codes.astype(dtype)
  return codes.astype(np.int32)


def neighbor_codes(codes: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
  """Each item's neighbours' codes, `[num_items, E, D]` (compact type).

  Stored beside the graph, they turn the walk's scattered reads (one
  code row per scored neighbour) into one contiguous read per expanded
  beam, the layout of disk-based graph indexes. The price is memory: E x
  D bytes per item with 256-code digits (50 x 32: 1.6 KB, 1.6 GB at 1M
  items).

  Args:
    codes: int `[num_items, D]`.
    neighbors: int `[num_items, E]` (`ItemGraph.neighbors`).

  Returns:
    `compact_codes(codes)[neighbors]`.
  """
  return compact_codes(codes)[np.asarray(neighbors)]


def seed_items(num_items: int, num_seeds: int, seed: int = 0) -> np.ndarray:
  """A fixed sample of `num_seeds` distinct items (the walk's start)."""
  num_seeds = min(num_seeds, num_items)
  return np.sort(np.random.default_rng(seed).choice(
      num_items, num_seeds, replace=False)).astype(np.int32)


def popular_items(counts: np.ndarray, num_seeds: int) -> np.ndarray:
  """The `num_seeds` most frequent items (ties: lower index first).

  The better start: a top-10 that the model ranks highly for many users
  is near popular items, so the walk starts where it is likely to end.

  Args:
    counts: `[num_items]` training interaction counts.
    num_seeds: items returned (at most the catalog).

  Returns:
    int32 `[min(num_seeds, num_items)]`, most frequent first.

  Raises:
    ConfigError: counts that are not a non-empty 1-D array.
  """
  counts = np.asarray(counts)
  if counts.ndim != 1 or not counts.size:
    raise ConfigError(f"counts must be a non-empty [num_items] array, got "
                      f"shape {counts.shape}.")
  order = np.argsort(-counts.astype(np.float64), kind="stable")
  return order[:num_seeds].astype(np.int32)


def _distinct_count(cand: Array) -> Array:
  """int32 `[batch]`: distinct items per row (a sort; diagnostics only)."""
  cand = jnp.sort(cand, axis=1)
  return jnp.sum(jnp.concatenate(
      [jnp.ones_like(cand[:, :1], bool), cand[:, 1:] != cand[:, :-1]],
      axis=1), axis=1).astype(jnp.int32)


def _best_distinct(cand: Array, scores: Array, num_beams: int,
                   flags: Array | None = None
                   ) -> tuple[Array, Array, Array]:
  """The `num_beams` best distinct items of each row, best first.

  Order: score descending, then item ascending (as `top_k` over the
  catalog breaks ties). A repeated candidate has one score, so picking
  the best item and masking all its copies, `num_beams` times, is exact;
  it costs `num_beams` passes over the candidates, far less on a CPU than
  sorting them. Rows with fewer distinct items than `num_beams` end with
  -inf scores.

  Args:
    cand: int32 `[batch, C]` items (repeats allowed).
    scores: float32 `[batch, C]` their scores (-inf = never chosen first).
    num_beams: items kept.
    flags: optional bool `[batch, C]`; a kept item's flag is true when
      any of its copies' is (the walk's "already expanded" mark).

  Returns:
    `(items, scores, flags)`, int32 / float32 / bool `[batch, num_beams]`.
  """
  big = jnp.iinfo(jnp.int32).max

  def pick(j, carry):
    scores, items, tops, kept = carry
    top = jnp.max(scores, axis=1)
    item = jnp.min(jnp.where(scores == top[:, None], cand, big), axis=1)
    copies = cand == item[:, None]
    scores = jnp.where(copies, -jnp.inf, scores)
    if flags is not None:  # (A constant all-false `flags` makes XLA slow.)
      kept = kept.at[:, j].set(jnp.any(copies & flags, axis=1))
    return (scores, items.at[:, j].set(item), tops.at[:, j].set(top), kept)

  b = cand.shape[0]
  init = (scores, jnp.zeros((b, num_beams), jnp.int32),
          jnp.zeros((b, num_beams), jnp.float32),
          jnp.zeros((b, num_beams), bool))
  _, items, tops, kept = jax.lax.fori_loop(0, num_beams, pick, init)
  return items, tops, kept


def _excluded(cand: Array, excluded: Array | None) -> Array:
  if excluded is None:
    return jnp.zeros(cand.shape, bool)
  excluded = jnp.asarray(excluded, jnp.int32)
  return jnp.any((cand[:, :, None] == excluded[:, None, :]) &
                 (excluded[:, None, :] >= 0), axis=-1)


@functools.partial(jax.jit, static_argnames=("k", "num_beams", "num_steps",
                                             "num_expand", "count_scored"))
def graph_decode(log_probs: Array, codes: Array, neighbors: Array,
                 seeds: Array, history: Array, excluded: Array | None,
                 *, k: int, num_beams: int, num_steps: int,
                 num_expand: int | None = None, count_scored: bool = False,
                 inline_codes: Array | None = None
                 ) -> tuple[Array, Array, Array]:
  """Top-`k` items by beams over the item graph.

  The walk keeps the `num_beams` best items scored so far. Each step
  expands the `num_expand` best beams not expanded yet: their neighbours
  are scored and the beams become the best of themselves and those. With
  `num_expand=None` every beam is expanded at every step (the paper's
  propagation); a beam expanded once adds nothing new when expanded again,
  so a smaller `num_expand` with more steps reaches further for the same
  number of scores (best-first search, as in graph ANN indexes).

  Args:
    log_probs: float `[batch, D, M]` digit log-probs of each user.
    codes: int `[num_items, D]`; `compact_codes` for large catalogs.
    neighbors: int `[num_items, E]` (`ItemGraph.neighbors`).
    seeds: int `[S]` fixed start items (`popular_items`, `seed_items`).
    history: int `[batch, h]` the user's last items (-1 = none), which
      join the start set with their neighbours.
    excluded: optional int `[batch, m]` items never returned (-1 padded).
    k: results per user (`<= num_beams`).
    num_beams: items kept per step.
    num_steps: expansion steps.
    num_expand: beams expanded per step (`<= num_beams`; None = all).
    count_scored: also count the distinct items scored per user over the
      whole walk (a sort: for the cost table of `benchmarks/rpg_decode.py`,
      not for serving).
    inline_codes: optional `[num_items, E, D]` (`neighbor_codes`): score
      an expanded beam's neighbours from one contiguous row instead of E
      scattered code rows. Same results.

  Returns:
    `(items, scores, scored)`: int32 / float32 `[batch, k]`, best first
    (-1 / -inf when fewer than `k` items are reachable), and int32
    `[batch]` the number of distinct items whose score the walk computed
    (the catalog share it visited), zeros unless `count_scored`.

  Raises:
    ConfigError: `neighbors` (or `inline_codes`) of another catalog size.
      Same size, other codes: `ItemGraph.check` tells.
  """
  if neighbors.shape[0] != codes.shape[0] or (
      inline_codes is not None and inline_codes.shape[:2] !=
      neighbors.shape):
    raise ConfigError(
        f"the item graph has {neighbors.shape[0]} rows (inline codes: "
        f"{None if inline_codes is None else inline_codes.shape[:2]}) but "
        f"the catalog has {codes.shape[0]} items: it was built for another "
        "catalog. Rebuild it with build_graph(model.code_table(params), "
        "model.codes, ...) and neighbor_codes(model.codes, "
        "graph.neighbors).")
  b = log_probs.shape[0]
  expand = num_beams if num_expand is None else min(num_expand, num_beams)
  codes = jnp.asarray(codes)
  neighbors = jnp.asarray(neighbors, jnp.int32)
  history = jnp.asarray(history, jnp.int32)
  hist_nb = jnp.take(neighbors, jnp.maximum(history, 0), axis=0)
  hist_nb = jnp.where(history[..., None] >= 0, hist_nb, seeds[0])
  start = jnp.concatenate(
      [jnp.broadcast_to(seeds[None], (b, seeds.shape[0])),
       jnp.maximum(history, 0), hist_nb.reshape(b, -1)], axis=1)

  def score(cand: Array) -> Array:
    scores = candidate_scores(log_probs, codes, cand)
    return jnp.where(_excluded(cand, excluded), -jnp.inf, scores)

  beams, top, expanded = _best_distinct(start, score(start), num_beams)
  visited = [start]
  rows = jnp.arange(b)[:, None]
  for _ in range(num_steps):
    # The best beams not expanded yet (-inf beams are never worth it).
    priority = jnp.where(expanded | jnp.isneginf(top), -jnp.inf, top)
    chosen_priority, chosen = jax.lax.top_k(priority, expand)
    expanded = expanded.at[rows, chosen].set(True)
    chosen_items = jnp.take_along_axis(beams, chosen, 1)
    nb = jnp.take(neighbors, chosen_items, axis=0)
    # Fewer than `expand` beams left to expand: the others add the best
    # beam again (already scored), so no new item is visited.
    idle = jnp.isneginf(chosen_priority)[..., None]
    nb = jnp.where(idle, beams[:, :1, None], nb).reshape(b, -1)
    visited.append(nb)
    if inline_codes is None:
      nb_scores = score(nb)
    else:
      nb_codes = jnp.take(inline_codes, chosen_items, axis=0)
      nb_scores = jnp.where(
          idle, top[:, :1, None],
          code_scores(log_probs, nb_codes.reshape(b, -1, nb_codes.shape[-1])
                      ).reshape(idle.shape[0], idle.shape[1], -1))
      nb_scores = jnp.where(_excluded(nb, excluded), -jnp.inf,
                            nb_scores.reshape(b, -1))
    beams, top, expanded = _best_distinct(
        jnp.concatenate([beams, nb], axis=1),
        jnp.concatenate([top, nb_scores], axis=1), num_beams,
        jnp.concatenate([expanded, jnp.zeros(nb.shape, bool)], axis=1))
  scored = (_distinct_count(jnp.concatenate(visited, axis=1))
            if count_scored else jnp.zeros((b,), jnp.int32))
  items = jnp.where(jnp.isneginf(top[:, :k]), -1, beams[:, :k])
  return items.astype(jnp.int32), top[:, :k], scored.astype(jnp.int32)
