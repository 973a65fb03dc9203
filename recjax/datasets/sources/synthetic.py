"""A synthetic source with real sequential structure, for tests and demos.

Items live in latent clusters arranged on a ring; related clusters are ring
neighbours. Each cluster has its own vocabulary (department, brand names,
nouns), so the generated item text carries the cluster, and a text-based
tokenizer can recover it. Each item also has a successor inside its cluster
(think: the next volume of a series).

A user starts in a random cluster and, at each step,

* follows the current item's successor with probability `p_successor`;
* else stays in the cluster with probability `p_stay`, picking an item by
  within-cluster popularity (Zipf);
* else drifts to a neighbouring cluster.

So the next item is predictable from the history (cluster, successor), far
better than by global popularity, which is what a later test asserts. Same
seed, same dataset.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recjax.datasets import canonical
from recjax.datasets.preprocessing import Interactions
from recjax.errors import DatasetError

_DEPARTMENTS = ("Kitchen", "Garden", "Audio", "Office", "Toys", "Beauty",
                "Sports", "Books", "Tools", "Pets", "Games", "Travel")
_ADJECTIVES = ("compact", "deluxe", "classic", "portable", "premium", "eco",
               "smart", "vintage", "ultra", "mini", "pro", "soft")
_SYLLABLES = ("ka", "lo", "mi", "ren", "ta", "vo", "shi", "qua", "bel", "dor",
              "fen", "gri", "hal", "jun", "kor", "lum", "nex", "pol", "rix",
              "sol", "tur", "vex", "wyn", "zel")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Size and dynamics of the synthetic dataset.

  Attributes:
    num_users: number of users.
    num_items: number of items (split evenly over clusters).
    num_clusters: number of latent clusters.
    min_length: shortest user sequence.
    mean_extra_length: mean of the geometric extra length.
    max_length: longest user sequence.
    p_successor: probability of moving to the current item's successor.
    p_stay: probability of staying in the cluster otherwise.
    zipf: popularity exponent within a cluster.
  """

  num_users: int = 1000
  num_items: int = 500
  num_clusters: int = 20
  min_length: int = 5
  mean_extra_length: float = 10.0
  max_length: int = 50
  p_successor: float = 0.4
  p_stay: float = 0.7
  zipf: float = 1.0

  def __post_init__(self):
    if self.num_clusters < 1 or self.num_items < 2 * self.num_clusters:
      raise DatasetError(
          f"synthetic: num_items ({self.num_items}) must be at least twice "
          f"num_clusters ({self.num_clusters}); lower num_clusters.")
    if self.num_users < 1 or self.min_length < 3:
      raise DatasetError("synthetic: num_users must be >= 1 and min_length "
                         ">= 3 (leave-one-out needs 3 items).")


def _word(rng: np.random.Generator, syllables: int) -> str:
  return "".join(rng.choice(_SYLLABLES, size=syllables)).capitalize()


def generate(config: SyntheticConfig, seed: int = 0
             ) -> tuple[Interactions, canonical.ItemTable]:
  """Generates raw interactions and an item table.

  Args:
    config: sizes and dynamics.
    seed: random seed; the output is a deterministic function of it.

  Returns:
    Interactions (with increasing timestamps) and the item table.
  """
  rng = np.random.default_rng(seed)
  c = config.num_clusters
  cluster_of = np.arange(config.num_items) % c
  members = [np.flatnonzero(cluster_of == k) for k in range(c)]
  # Per-cluster vocabulary and popularity.
  nouns = [[_word(rng, 2) for _ in range(4)] for _ in range(c)]
  brands = [[_word(rng, 3) for _ in range(2)] for _ in range(c)]
  popularity = []
  for m in members:
    w = 1.0 / np.arange(1, len(m) + 1) ** config.zipf
    popularity.append(rng.permutation(w) / w.sum())
  successor = np.empty(config.num_items, dtype=np.int64)
  for m in members:  # a random cycle through each cluster
    cycle = rng.permutation(m)
    successor[cycle] = np.roll(cycle, -1)

  titles, brand_col, cats, descs = [], [], [], []
  for i in range(config.num_items):
    k = cluster_of[i]
    noun = nouns[k][i % len(nouns[k])]
    brand = brands[k][(i // c) % len(brands[k])]
    adj = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
    dept = _DEPARTMENTS[k % len(_DEPARTMENTS)]
    titles.append(f"{brand} {adj} {noun} {i // c + 1}")
    brand_col.append(brand)
    cats.append(f"{dept}, {nouns[k][0]} collection")
    descs.append(f"A {adj} {noun.lower()} from the {dept.lower()} "
                 f"{nouns[k][0].lower()} line by {brand}.")
  items = canonical.ItemTable(
      original_ids=[f"i{i}" for i in range(config.num_items)],
      fields={"title": titles, "brand": brand_col, "categories": cats,
              "description": descs})

  users, seq_items, times = [], [], []
  p_geo = 1.0 / (1.0 + config.mean_extra_length)
  for u in range(config.num_users):
    length = min(config.max_length,
                 config.min_length + int(rng.geometric(p_geo)) - 1)
    k = int(rng.integers(c))
    item = int(rng.choice(members[k], p=popularity[k]))
    t = int(rng.integers(1_000_000))
    for _ in range(length):
      users.append(f"u{u}")
      seq_items.append(f"i{item}")
      times.append(t)
      t += int(rng.integers(1, 1000))
      r = rng.random()
      if r < config.p_successor:
        item = int(successor[item])
        continue
      if rng.random() >= config.p_stay:
        k = (k + (1 if rng.random() < 0.5 else -1)) % c
      nxt = int(rng.choice(members[k], p=popularity[k]))
      if nxt == item:  # no immediate repeats
        nxt = int(successor[item])
      item = nxt
  inter = Interactions(user_ids=np.asarray(users, dtype=str),
                       item_ids=np.asarray(seq_items, dtype=str),
                       timestamps=np.asarray(times, dtype=np.int64),
                       ratings=None, source=f"synthetic(seed={seed})")
  return inter, items
