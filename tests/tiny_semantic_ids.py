"""Random semantic IDs for tiny TIGER tasks written by tests."""

from __future__ import annotations

import json
import pathlib

import numpy as np


def write_random_codes(sem: pathlib.Path, sizes: tuple[int, ...],
                       num_items: int, num_user_buckets: int,
                       seed: int = 0) -> pathlib.Path:
  """Writes `codes.npy` (distinct random code tuples) and `manifest.json`.

  Args:
    sem: the semantic-ID directory to create.
    sizes: codebook size of each level.
    num_items: rows of `codes.npy`.
    num_user_buckets: the layout's user-hash buckets.
    seed: permutation seed.

  Returns:
    `sem`.
  """
  sem.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  combos = np.stack(np.meshgrid(*[np.arange(s) for s in sizes],
                                indexing="ij"), -1).reshape(-1, len(sizes))
  codes = combos[rng.permutation(len(combos))[:num_items]].astype(np.int32)
  np.save(sem / "codes.npy", codes)
  (sem / "manifest.json").write_text(json.dumps(
      {"layout": {"codebook_sizes": list(sizes),
                  "num_user_buckets": num_user_buckets}}))
  return sem
