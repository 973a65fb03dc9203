"""Making semantic IDs unique: TIGER's extra level or Sinkhorn re-assignment.

Three strategies, chosen in config:

* "append" (TIGER): add one level; items sharing a full code get 0, 1, ...,
  n-1 there in item-index order, and every other item gets 0.
* "sinkhorn" (LC-Rec / LETTER): keep the number of levels. Within each
  prefix (first L-1 codes) that has collisions, the item closest to a
  contested last-level code keeps it; the displaced items are re-assigned
  to the prefix's free last-level codes with an entropic (Sinkhorn) plan
  over their last-level distances, rounded greedily to distinct codes.
  Only displaced items change, and only in their last code.
* "none" (VQ-Rec, RPG): keep the quantizer's codes; items may share one.
  For models that read an item's codes as features and rank items by
  index, never decode a code back into an item.

All are pure numpy and deterministic.
"""

from __future__ import annotations

import numpy as np

from recjax.errors import ConfigError
from recjax.quantizers.diagnostics import group_index

STRATEGIES = ("append", "sinkhorn", "none")


def append_level(codes: np.ndarray,
                 max_codes: int | None = None) -> np.ndarray:
  """Appends TIGER's disambiguation level.

  Args:
    codes: int `[n, L]`.
    max_codes: size of the extra level's codebook, if fixed by the vocabulary;
      None: as large as needed.

  Returns:
    int32 `[n, L + 1]` with unique rows.

  Raises:
    ConfigError: more items share one code than `max_codes`.
  """
  codes = np.asarray(codes, np.int32)
  n = codes.shape[0]
  inverse, counts = group_index(codes)
  if max_codes is not None and n and counts.max() > max_codes:
    raise ConfigError(
        f"{int(counts.max())} items share the code "
        f"{codes[np.argmax(counts[inverse])].tolist()}, but the collision "
        f"level has only {max_codes} codes. Raise collision_codebook_size "
        "(or the vocabulary size), train a larger codebook, or use "
        "collisions='sinkhorn'.")
  order = np.lexsort((np.arange(n), inverse))
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(n, np.int32)
  rank[order] = np.arange(n) - np.repeat(starts, counts)
  return np.concatenate([codes, rank[:, None]], axis=1).astype(np.int32)


def _sinkhorn_plan(cost: np.ndarray, epsilon: float,
                   num_iters: int) -> np.ndarray:
  """Log plan with uniform marginals (numpy twin of kmeans.sinkhorn)."""
  n, k = cost.shape
  c = cost - cost.mean()
  c = c / (c.std() + 1e-8)
  log_k = -c / epsilon
  u, v = np.zeros(n), np.zeros(k)

  def lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(
        axis)

  for _ in range(num_iters):
    u = -np.log(n) - lse(log_k + v[None, :], 1)
    v = -np.log(k) - lse(log_k + u[:, None], 0)
  return log_k + u[:, None] + v[None, :]


def _greedy_round(score: np.ndarray) -> np.ndarray:
  """Distinct column per row, taking (row, col) pairs by descending score."""
  n, k = score.shape
  flat = np.argsort(-score, axis=None, kind="stable")
  out = np.full(n, -1, np.int64)
  used = np.zeros(k, bool)
  left = n
  for f in flat:
    r, c = divmod(int(f), k)
    if out[r] < 0 and not used[c]:
      out[r] = c
      used[c] = True
      left -= 1
      if not left:
        break
  return out


def sinkhorn_reassign(codes: np.ndarray, last_distances: np.ndarray,
                      epsilon: float = 0.05,
                      num_iters: int = 100) -> np.ndarray:
  """Resolves collisions by re-assigning last-level codes.

  Args:
    codes: int `[n, L]`.
    last_distances: `[n, K]` distance of each item's last-level residual to
      each last-level code (lower is better).
    epsilon: Sinkhorn regularisation.
    num_iters: Sinkhorn iterations.

  Returns:
    int32 `[n, L]` with unique rows; only the last code of displaced items
    differs from `codes`.

  Raises:
    ConfigError: a prefix holds more items than the last level has codes.
  """
  codes = np.asarray(codes, np.int32).copy()
  n, levels = codes.shape
  k = last_distances.shape[1]
  if last_distances.shape[0] != n:
    raise ConfigError(f"last_distances has {last_distances.shape[0]} rows for "
                      f"{n} items.")
  full, full_counts = group_index(codes)
  if n == 0 or full_counts.max() <= 1:
    return codes
  prefix, prefix_counts = group_index(codes[:, :levels - 1]) if levels > 1 \
      else (np.zeros(n, np.int64), np.array([n]))
  if prefix_counts.max() > k:
    g = int(np.argmax(prefix_counts))
    raise ConfigError(
        f"{int(prefix_counts[g])} items share the prefix "
        f"{codes[prefix == g][0, :-1].tolist()} but the last level has only "
        f"{k} codes, so Sinkhorn re-assignment cannot make them unique. Use "
        "collisions='append' or a larger last-level codebook.")
  bad_prefixes = np.unique(prefix[full_counts[full] > 1])
  for g in bad_prefixes:
    members = np.flatnonzero(prefix == g)
    last = codes[members, -1]
    dist = last_distances[members, last]
    # The closest holder of each code keeps it; ties go to the lower index.
    order = np.lexsort((members, dist, last))
    keep = np.zeros(len(members), bool)
    keep[order[np.r_[True, last[order][1:] != last[order][:-1]]]] = True
    displaced = members[~keep]
    free = np.setdiff1d(np.arange(k), last[keep])
    cost = last_distances[np.ix_(displaced, free)].astype(np.float64)
    plan = _sinkhorn_plan(cost, epsilon, num_iters) if len(free) > 1 else \
        np.zeros_like(cost)
    codes[displaced, -1] = free[_greedy_round(plan)]
  return codes


def deduplicate(codes: np.ndarray, strategy: str = "append",
                last_distances: np.ndarray | None = None,
                collision_codebook_size: int | None = None) -> np.ndarray:
  """Makes every row of `codes` unique with the chosen strategy.

  Args:
    codes: int `[n, L]` quantizer codes.
    strategy: "append", "sinkhorn" or "none".
    last_distances: `[n, K]` last-level distances (for "sinkhorn").
    collision_codebook_size: fixed size of the extra level ("append").

  Returns:
    int32 codes: unique `[n, L + 1]` for "append", unique `[n, L]` for
    "sinkhorn", `codes` unchanged for "none".
  """
  if strategy == "none":
    return np.asarray(codes, np.int32).copy()
  if strategy == "append":
    return append_level(codes, collision_codebook_size)
  if strategy == "sinkhorn":
    if last_distances is None:
      raise ConfigError("collisions='sinkhorn' needs last-level distances.")
    return sinkhorn_reassign(codes, last_distances)
  raise ConfigError(f"collisions={strategy!r} is not a strategy; choose one "
                    f"of {STRATEGIES}.")
