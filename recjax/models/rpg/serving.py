"""RPG ranking by graph decoding behind the `ItemModel` contract.

`RPGModel.with_decoding("graph[:BxExS[xX]]", params, counts)` returns a
`GraphDecodedRPG`: the same network and parameters, whose
`predict_batch_with_aux` walks the item graph (`graph.graph_decode`)
instead of scoring the whole catalog. Every consumer of the contract
(`recjax.eval --decoding graph`, `recjax.infer --decoding graph`, the
`RankingEvaluator`) then ranks through the walk with no other change.

The graph is built once, from the code table of the parameters given;
it is valid for those parameters only (its `codes_checksum` ties it to
the catalog). The cost per user is about `num_seeds + num_steps *
num_expand * num_edges` item scores whatever the catalog size;
`benchmarks/rpg_decode.py` measures its agreement with exact top-10.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError
from recjax.models.rpg import graph as graph_lib
from recjax.models.rpg.model import RPGModel

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any

_SETTING = re.compile(r"\d+x\d+x\d+(?:x\d+)?")
# From this catalog size on, the neighbours' codes are stored inline
# (`graph.neighbor_codes`): same results, contiguous reads. Measured
# (benchmarks/README, RPG): 1.5x the users/s at 1M items, 7% fewer at 12k.
INLINE_MIN_ITEMS = 100_000


@dataclasses.dataclass(frozen=True)
class GraphSetting:
  """How the walk decodes; written `BxExS[xX]` on command lines.

  The defaults are the setting measured on Beauty (`benchmarks/README.md`,
  RPG): 97% of exact top-10 at 6.4% of the catalog.

  Attributes:
    num_beams: items kept per step (widened to the list length if less).
    num_edges: graph neighbours per item.
    num_steps: expansion steps.
    num_expand: beams expanded per step (None: all, the paper's way).
    num_seeds: fixed start items (the most popular training items).
    history_seeds: the user's last items that join the start set, with
      their neighbours.
  """
  num_beams: int = 20
  num_edges: int = 50
  num_steps: int = 6
  num_expand: int | None = 4
  num_seeds: int = 128
  history_seeds: int = 2

  def __post_init__(self):
    for name in ("num_beams", "num_edges", "num_seeds", "history_seeds"):
      if getattr(self, name) < 1:
        raise ConfigError(f"GraphSetting.{name}={getattr(self, name)} must "
                          "be >= 1.")
    if self.num_steps < 0:
      raise ConfigError(f"GraphSetting.num_steps={self.num_steps} must be "
                        ">= 0.")
    if self.num_expand is not None and self.num_expand < 1:
      raise ConfigError(f"GraphSetting.num_expand={self.num_expand} must "
                        "be >= 1 (or None: every beam).")

  @classmethod
  def parse(cls, text: str) -> GraphSetting:
    """A setting from "graph", "graph:BxExS", "graph:BxExSxX" or "BxExS[xX]".

    Args:
      text: the flag's value.

    Returns:
      The setting (defaults for the parts not given).

    Raises:
      ConfigError: anything else.
    """
    spec = text.strip()
    if spec == "graph":
      return cls()
    spec = spec.removeprefix("graph:")
    if not _SETTING.fullmatch(spec):
      raise ConfigError(
          f"decoding {text!r}: use 'exact', 'graph' or 'graph:BxExS[xX]' "
          "(beams x edges x steps [x beams expanded per step]), e.g. "
          "graph:20x50x6x4.")
    vals = [int(v) for v in spec.split("x")]
    return cls(num_beams=vals[0], num_edges=vals[1], num_steps=vals[2],
               num_expand=vals[3] if len(vals) == 4 else None)

  def __str__(self) -> str:
    expand = "" if self.num_expand is None else f"x{self.num_expand}"
    return (f"graph:{self.num_beams}x{self.num_edges}x{self.num_steps}"
            f"{expand}")


class GraphDecodedRPG(RPGModel):
  """An `RPGModel` whose top-K comes from the graph walk.

  `item_scores`, `loss_fn` and `score_batch` stay exact; only ranking
  (`predict_batch_with_aux`) changes. Catalog subsets (`allowed`) are not
  supported by the walk.

  Attributes:
    setting: the walk's `GraphSetting`.
    graph: the `graph.ItemGraph` built from the parameters' code table.
    seeds: int32 `[S]`, the fixed start items.

  From `INLINE_MIN_ITEMS` items on, the neighbours' codes are also kept
  inline (`graph.neighbor_codes`, E x D bytes per item: 1.6 GB at 1M
  items with 50 edges and 32 digits) for contiguous reads.
  """

  exact_ranking = False

  def __init__(self, model: RPGModel, params: PyTree, setting: GraphSetting,
               item_counts: np.ndarray | None = None):
    """Builds the graph of `model` under `params`.

    Args:
      model: the trained model.
      params: its parameters.
      setting: the walk.
      item_counts: `[num_items]` training counts (start at the most
        popular items); None: a fixed random sample.

    Raises:
      ConfigError: counts of another length than the catalog.
    """
    super().__init__(model.config, model.codes)
    self.setting = setting
    n = self.num_items
    if n < 2:
      raise ConfigError(f"graph decoding needs at least 2 items; the "
                        f"catalog has {n}.")
    if item_counts is None:
      seeds = graph_lib.seed_items(n, setting.num_seeds)
    else:
      item_counts = np.asarray(item_counts)
      if item_counts.shape != (n,):
        raise ConfigError(f"item_counts has shape {item_counts.shape}; the "
                          f"catalog has {n} items.")
      seeds = graph_lib.popular_items(item_counts, setting.num_seeds)
    self.seeds = seeds
    self.graph = graph_lib.build_graph(self.code_table(params), self.codes,
                                       min(setting.num_edges, n - 1))
    logging.info("graph decoding: %s item graph, %d items x %d edges, "
                 "built in %.1f s.", self.graph.method, n,
                 self.graph.num_edges, self.graph.build_seconds)
    self._small_codes = jnp.asarray(graph_lib.compact_codes(self.codes))
    self._neighbors = jnp.asarray(self.graph.neighbors, jnp.int32)
    self._inline = (jnp.asarray(graph_lib.neighbor_codes(
        self.codes, self.graph.neighbors)) if n >= INLINE_MIN_ITEMS else None)
    self._seeds = jnp.asarray(seeds, jnp.int32)

  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None, *,
                             num_decodes: int = 20,
                             excluded_items: Array | None = None,
                             allowed: Array | None = None
                             ) -> tuple[Array, dict[str, Array]]:
    """Top-`num_decodes` items per user by the graph walk, best first.

    Args:
      params: the parameters the graph was built from.
      batch: needs `input_items`; `excluded_items` in the batch is used
        when the keyword is not given.
      rng: unused.
      num_decodes: results per user (the beams widen to it if fewer).
      excluded_items: int `[batch, m]` per-user exclusion sets (-1
        padded).
      allowed: not supported (None).

    Returns:
      `(items, aux)` as `ItemModel.predict_batch_with_aux`: int32
      `[batch, num_decodes]`, -1 where the walk reached fewer items.

    Raises:
      ConfigError: `allowed` given.
    """
    del rng
    if allowed is not None:
      raise ConfigError("graph decoding ranks the whole catalog; catalog "
                        "subsets (allowed) need decoding 'exact'.")
    if excluded_items is None and "excluded_items" in batch:
      excluded_items = batch["excluded_items"]
    s = self.setting
    history = jnp.asarray(batch["input_items"], jnp.int32)
    items, scores, _ = graph_lib.graph_decode(
        self.last_log_probs(params, batch), self._small_codes,
        self._neighbors, self._seeds, history[:, -s.history_seeds:],
        excluded_items, k=num_decodes,
        num_beams=max(s.num_beams, num_decodes), num_steps=s.num_steps,
        num_expand=s.num_expand, inline_codes=self._inline)
    return items, {"items": items, "scores": scores, "valid": items >= 0}
