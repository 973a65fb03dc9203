"""Diagnostics of semantic IDs: usage, perplexity, collisions, a quality probe.

All functions take numpy codes `int [num_items, levels]` and are exact (no
sampling), so they can be tested on hand-made cases:

* `codebook_usage`: fraction of each level's codes used by at least one item;
* `perplexity`: exp of the entropy of each level's code distribution (K for
  a uniform level, 1 for a collapsed one);
* `collision_stats`: items whose full code is shared with another item;
* `max_prefix_sharing`: the largest number of items sharing each prefix
  length;
* `first_code_lift`: how much more often items consecutive in users'
  histories share their first code than interaction-weighted random pairs;
* `shared_code_ndcg`: NDCG@k of ranking the catalog by the number of codes
  each item shares with the last history item (a sample of users, seeded).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import numpy as np


def _level_counts(codes: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
  return [np.bincount(codes[:, lv], minlength=int(sizes[lv]))
          for lv in range(codes.shape[1])]


def codebook_usage(codes: np.ndarray, sizes: Sequence[int]) -> list[float]:
  """Fraction of the codes of each level that at least one item uses."""
  return [float(np.count_nonzero(c)) / len(c)
          for c in _level_counts(codes, sizes)]


def perplexity(codes: np.ndarray, sizes: Sequence[int]) -> list[float]:
  """exp(entropy) of each level's code distribution over items."""
  out = []
  for c in _level_counts(codes, sizes):
    p = c[c > 0] / c.sum()
    out.append(float(np.exp(-np.sum(p * np.log(p)))))
  return out


def group_index(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(group id per row, group sizes) for identical rows of `codes`."""
  if codes.shape[0] == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  _, inverse, counts = np.unique(codes, axis=0, return_inverse=True,
                                 return_counts=True)
  return inverse.reshape(-1), counts


def collision_stats(codes: np.ndarray) -> dict[str, float]:
  """Collision statistics of full codes.

  Returns:
    `collision_rate`: 1 - unique codes / items (the share of items that would
    need a new ID); `colliding_items`: share of items whose code is shared;
    `num_unique`; `max_shared`: largest number of items with one code.
  """
  n = codes.shape[0]
  inverse, counts = group_index(codes)
  if n == 0:
    return {"collision_rate": 0.0, "colliding_items": 0.0, "num_unique": 0,
            "max_shared": 0}
  return {
      "collision_rate": 1.0 - len(counts) / n,
      "colliding_items": float(np.mean(counts[inverse] > 1)),
      "num_unique": int(len(counts)),
      "max_shared": int(counts.max()),
  }


def max_prefix_sharing(codes: np.ndarray) -> list[int]:
  """Largest number of items sharing the first l codes, for l = 1..levels."""
  return [int(group_index(codes[:, :lv])[1].max()) if len(codes) else 0
          for lv in range(1, codes.shape[1] + 1)]


def first_code_lift(codes: np.ndarray,
                    sequences: Iterable[np.ndarray]) -> dict[str, float]:
  """How often consecutive items in histories share their first code.

  A cheap probe of whether the IDs carry collaborative signal: the share of
  consecutive pairs (a, b), a != b, in users' histories whose first codes
  are equal, against the same share for two independent draws from the
  interaction distribution (`sum_c q_c^2`, q_c the share of interactions on
  items with first code c). Lift > 1 means the first code groups items that
  users consume together.

  Args:
    codes: `[num_items, levels]`.
    sequences: per-user item-index arrays.

  Returns:
    `consecutive_same_first_code`, `random_same_first_code`, `lift`,
    `num_pairs`.
  """
  first = codes[:, 0]
  same = pairs = 0
  freq = np.zeros(int(first.max()) + 1 if len(first) else 1, np.float64)
  for seq in sequences:
    seq = np.asarray(seq)
    if len(seq) == 0:
      continue
    np.add.at(freq, first[seq], 1.0)
    a, b = seq[:-1], seq[1:]
    keep = a != b
    pairs += int(keep.sum())
    same += int(np.sum(first[a[keep]] == first[b[keep]]))
  q = freq / max(freq.sum(), 1.0)
  rand = float(np.sum(q * q))
  cons = same / pairs if pairs else 0.0
  return {"consecutive_same_first_code": cons,
          "random_same_first_code": rand,
          "lift": cons / rand if rand > 0 else 0.0,
          "num_pairs": pairs}


def shared_code_ndcg(codes: np.ndarray, sequences: Iterable[np.ndarray],
                     k: int = 10, max_users: int = 2000,
                     seed: int = 0,
                     max_comparisons: int = 1 << 31) -> dict[str, float]:
  """NDCG@k of a code-overlap ranking of each user's validation item.

  A probe of what the codes alone say about the next item, the signal an
  item-level model over code embeddings (RPG, VQ-Rec) starts from: for a
  history `[..., a, b, c]` (leave-one-out: `b` validation, `c` test), every
  item other than `a` is scored by the number of digits it shares with
  `a`, and `b`'s rank counts the items scored higher plus half of its
  ties (the expected rank under random tie-breaking).

  Args:
    codes: `[num_items, digits]`.
    sequences: per-user item-index arrays (full histories).
    k: the cut-off.
    max_users: users with at least three items, sampled with `seed` when
      there are more.
    seed: the sample's seed.
    max_comparisons: fewer users (at least 100) on catalogs where
      `max_users` x items x digits would exceed this.

  Returns:
    `ndcg` (mean over users) and `num_users`.
  """
  pairs = np.array([(s[-3], s[-2]) for s in map(np.asarray, sequences)
                    if len(s) >= 3], np.int64).reshape(-1, 2)
  codes = np.asarray(codes)
  size = max(codes.size, 1)
  max_users = min(max_users, max(100, max_comparisons // size))
  if len(pairs) > max_users:
    rng = np.random.default_rng(seed)
    pairs = pairs[np.sort(rng.choice(len(pairs), max_users, replace=False))]
  block = max(1, min(128, (1 << 24) // size))
  gains = []
  for start in range(0, len(pairs), block):
    a, b = pairs[start:start + block].T
    shared = (codes[None] == codes[a][:, None]).sum(-1).astype(np.float64)
    shared[np.arange(len(a)), a] = -1.0  # The query item is not a candidate.
    target = shared[np.arange(len(a)), b][:, None]
    rank = (np.sum(shared > target, 1) +
            0.5 * (np.sum(shared == target, 1) - 1))
    gains.append(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0))
  ndcg = float(np.concatenate(gains).mean()) if gains else 0.0
  return {"ndcg": ndcg, "k": k, "num_users": int(len(pairs))}


def build_report(codes_before: np.ndarray, codes: np.ndarray,
                 sizes: Sequence[int],
                 sequences: Iterable[np.ndarray] | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
  """Collects the standard diagnostics into one JSON-friendly dict.

  Args:
    codes_before: quantizer codes before de-duplication.
    codes: final unique codes (possibly with an extra level).
    sizes: codebook sizes of the quantizer levels (of `codes_before`).
    sequences: user histories for the lift and shared-code probes
      (optional).
    extra: more entries (e.g. reconstruction error, training loss).

  Returns:
    The report.
  """
  coll = collision_stats(codes_before)
  report: dict[str, Any] = {
      "num_items": int(codes.shape[0]),
      "levels": int(codes_before.shape[1]),
      "codebook_sizes": [int(s) for s in sizes],
      "codebook_usage": codebook_usage(codes_before, sizes),
      "perplexity": perplexity(codes_before, sizes),
      "collision_rate": coll["collision_rate"],
      "colliding_items": coll["colliding_items"],
      "max_items_per_code": coll["max_shared"],
      "max_items_per_prefix": max_prefix_sharing(codes_before),
      "final_levels": int(codes.shape[1]),
      "final_unique": bool(collision_stats(codes)["max_shared"] <= 1),
  }
  if codes.shape[1] > codes_before.shape[1]:
    report["collision_level_size"] = int(codes[:, -1].max()) + 1
  if sequences is not None:
    sequences = list(sequences)
    report["first_code_lift"] = first_code_lift(codes_before, sequences)
    report["shared_code_ndcg"] = shared_code_ndcg(codes_before, sequences)
  report.update(extra or {})
  return report


def format_report(report: dict[str, Any]) -> str:
  """A few human-readable lines for stdout."""
  pct = lambda xs: "/".join(f"{100 * x:.1f}%" for x in xs)
  lines = [
      f"items {report['num_items']}, levels {report['levels']} x "
      f"{report['codebook_sizes']}",
      f"codebook usage per level: {pct(report['codebook_usage'])}",
      "perplexity per level: " + "/".join(f"{p:.1f}"
                                          for p in report["perplexity"]),
      f"collision rate before de-dup: {100 * report['collision_rate']:.2f}% "
      f"(max {report['max_items_per_code']} items share a code; max per "
      f"prefix {report['max_items_per_prefix']})",
  ]
  for key in ("reconstruction_mse", "relative_reconstruction_error"):
    if key in report:
      lines.append(f"{key}: {report[key]:.5g}")
  if "first_code_lift" in report:
    lift = report["first_code_lift"]
    lines.append(
        "first-code lift: consecutive "
        f"{lift['consecutive_same_first_code']:.4f} vs random "
        f"{lift['random_same_first_code']:.4f} = "
        f"{lift['lift']:.2f}x")
  if "shared_code_ndcg" in report:
    probe = report["shared_code_ndcg"]
    lines.append(
        f"validation NDCG@{probe['k']} by codes shared with the last item: "
        f"{probe['ndcg']:.4f} ({probe['num_users']} users)")
  return "\n".join(lines)


def plot_usage(codes: np.ndarray, sizes: Sequence[int],
               path: str | os.PathLike[str], title: str = "") -> None:
  """Writes a PNG of items per code (sorted, descending) for each level."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  levels = codes.shape[1]
  fig, axes = plt.subplots(1, levels, figsize=(4 * levels, 3), squeeze=False)
  for lv, counts in enumerate(_level_counts(codes, sizes)):
    ax = axes[0, lv]
    ax.bar(np.arange(len(counts)), np.sort(counts)[::-1], width=1.0)
    used = np.count_nonzero(counts)
    ax.set_title(f"level {lv}: {used}/{len(counts)} used")
    ax.set_xlabel("code (sorted by count)")
    ax.set_ylabel("items")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
