"""RPG decoding: graph beams against exact scoring and TIGER's beam search.

Three tables, all measured in one run on this machine:

1. Agreement (a trained RPG run, `--model_dir`): for each graph setting
   (beams x edges x steps x beams expanded per step), the share of exact
   scoring's top-10 that graph decoding's top-10 finds, and the share of
   the catalog whose scores the walk computed (distinct items), over the
   test users; and the graph's build time.
2. Throughput at `--batch` users: exact scoring, graph decoding, and the
   TIGER-size constrained beam search of `benchmarks/decode.py` (4-token
   IDs, 20 beams) over a catalog of the same size; users/s and the ratio.
3. Scaling: graph decoding over synthetic catalogs of `--catalogs` items
   (random codes, the trained code table, an IVF graph): users/s per size,
   with the codes read from the catalog ("scattered", one row per scored
   neighbour) and stored inline per item ("inline",
   `graph.neighbor_codes`), the slowdown of each against its smallest
   catalog, and each graph's build time.

  python benchmarks/rpg_decode.py --model_dir runs/.../rpg-cpu/seed0
  python benchmarks/rpg_decode.py --model_dir D --catalogs 12000 1000000
  python benchmarks/rpg_decode.py --tables scaling --catalogs 12000 1000000
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import decode as tiger_decode  # noqa: E402

from recjax import eval_items  # noqa: E402
from recjax.errors import ConfigError  # noqa: E402
from recjax.models.base import top_k_items  # noqa: E402
from recjax.models.rpg import catalog_scores  # noqa: E402
from recjax.models.rpg import graph as graph_lib  # noqa: E402
from recjax.models.rpg.serving import GraphSetting  # noqa: E402
from recjax.trie import ItemTrie  # noqa: E402

K = 10


def _timed(fn, repeats: int) -> float:
  fn()  # Compile.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _ready(fn) -> None:
  jax.block_until_ready(fn()[0])


def _test_batch(item_data, limit: int) -> dict[str, np.ndarray]:
  rows = [b for b in item_data.eval_batches("test")]
  hist = np.concatenate([b["input_items"] for b in rows])[:limit]
  mask = np.concatenate([b["mask"] for b in rows])[:limit]
  return {"input_items": hist[mask]}


def start_items(item_data, kind: str, num_seeds: int) -> np.ndarray:
  """The walk's fixed start: the most popular training items, or random."""
  if kind == "random":
    return graph_lib.seed_items(item_data.num_items, num_seeds)
  return graph_lib.popular_items(
      item_data.splits["train"].item_counts(item_data.num_items), num_seeds)


def _setting(text: str) -> tuple[int, int, int, int | None]:
  """"BxExS" or "BxExSxX" (X beams expanded per step; default all)."""
  try:
    s = GraphSetting.parse(text)
  except ConfigError as e:
    raise SystemExit(f"--settings: {e}") from e
  return s.num_beams, s.num_edges, s.num_steps, s.num_expand


def agreement(model, params, hist: np.ndarray, settings,
              seeds: np.ndarray, history_seeds: int
              ) -> list[dict[str, Any]]:
  """Table 1: top-10 agreement and catalog share per graph setting."""
  log_p = jax.jit(model.last_log_probs)(params, {"input_items": hist})
  exact = np.asarray(top_k_items(catalog_scores(log_p, model.codes), K,
                                 hist)[0])
  table, codes = model.code_table(params), model.codes
  small = jnp.asarray(graph_lib.compact_codes(codes))
  rows, graphs = [], {}
  for beams, edges, steps, expand in settings:
    if edges not in graphs:
      graphs[edges] = graph_lib.build_graph(table, codes, edges)
    graph = graphs[edges]
    items, _, scored = graph_lib.graph_decode(
        log_p, small, graph.neighbors, seeds, hist[:, -history_seeds:],
        hist, k=K, num_beams=beams, num_steps=steps, num_expand=expand,
        count_scored=True)
    items = np.asarray(items)
    found = np.mean([len(set(a) & set(b)) / K for a, b in zip(items, exact)])
    rows.append({"beams": beams, "edges": edges, "steps": steps,
                 "expand": expand or beams,
                 "top10_agreement": float(found),
                 "catalog_scored": float(np.mean(scored)) / len(codes),
                 "graph_build_s": graph.build_seconds,
                 "graph_method": graph.method})
  return rows


def throughput(model, params, hist: np.ndarray, setting,
               seeds: np.ndarray, history_seeds: int,
               repeats: int) -> list[dict[str, Any]]:
  """Table 2: users/s of exact, graph and TIGER's constrained beam."""
  n, batch = model.num_items, len(hist)
  beams, edges, steps, expand = setting
  codes = model.codes
  graph = graph_lib.build_graph(model.code_table(params), codes, edges)
  seeds = jnp.asarray(seeds)
  small = jnp.asarray(graph_lib.compact_codes(codes))
  hist_j = jnp.asarray(hist)
  encode = jax.jit(lambda p, h: model.last_log_probs(p, {"input_items": h}))

  @jax.jit
  def exact(p, h):
    return top_k_items(catalog_scores(encode(p, h), codes), K, h)[0]

  @jax.jit
  def graph_fn(p, h):
    return graph_lib.graph_decode(
        encode(p, h), small, graph.neighbors, seeds, h[:, -history_seeds:],
        h, k=K, num_beams=beams, num_steps=steps, num_expand=expand)[0]

  t_exact = _timed(lambda: jax.block_until_ready(exact(params, hist_j)),
                   repeats)
  t_graph = _timed(lambda: jax.block_until_ready(graph_fn(params, hist_j)),
                   repeats)
  tiger = tiger_decode.tiger_model()
  tcodes = tiger_decode.random_catalog(n)
  trie = ItemTrie.build(tcodes, tiger.layout)
  enc = tiger_decode.user_batch(tiger, tcodes, batch)
  tparams = tiger.get_initial_variables(
      jax.random.key(0), {"encoder_input_tokens": enc.shape,
                          "decoder_input_tokens": (batch, 4)})["params"]
  t_tiger, _ = tiger_decode.time_recjax(tiger, tparams, trie, enc, 20, True,
                                        repeats)
  return [{"decoder": name, "catalog": n, "batch": batch,
           "users_per_s": batch / t, "vs_tiger": t_tiger / t}
          for name, t in (("rpg_exact", t_exact), ("rpg_graph", t_graph),
                          ("tiger_beam20", t_tiger))]


def scaling(table: np.ndarray, num_digits: int, catalogs, batch: int,
            setting, num_seeds: int, repeats: int) -> list[dict[str, Any]]:
  """Table 3: graph decoding users/s over synthetic catalogs.

  Random codes have no popularity: the start is a random sample of the
  same size (the cost does not depend on which items start the walk).
  """
  beams, edges, steps, expand = setting
  rows = []
  rng = np.random.default_rng(0)
  m = table.shape[1]
  log_p = jax.nn.log_softmax(jnp.asarray(
      rng.normal(size=(batch, num_digits, m)), jnp.float32), axis=-1)
  for n in catalogs:
    codes = rng.integers(0, m, (n, num_digits)).astype(np.int32)
    graph = graph_lib.build_graph(table, codes, edges)
    hist = jnp.asarray(rng.integers(0, n, (batch, 2)), jnp.int32)
    seeds = jnp.asarray(graph_lib.seed_items(n, num_seeds))
    for layout in ("scattered", "inline"):
      inline = (jnp.asarray(graph_lib.neighbor_codes(codes, graph.neighbors))
                if layout == "inline" else None)
      run = functools.partial(
          graph_lib.graph_decode, log_p,
          jnp.asarray(graph_lib.compact_codes(codes)),
          jnp.asarray(graph.neighbors), seeds, hist, hist, k=K,
          num_beams=beams, num_steps=steps, num_expand=expand,
          inline_codes=inline)
      t = _timed(functools.partial(_ready, run), repeats)
      rows.append({"catalog": n, "codes": layout, "users_per_s": batch / t,
                   "graph_build_s": graph.build_seconds,
                   "graph_method": graph.method})
  for row in rows:
    base = next(r for r in rows if r["codes"] == row["codes"])
    row["slowdown"] = base["users_per_s"] / row["users_per_s"]
  return rows


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model_dir", default=None,
                 help="a trained rpg run (the scaling table alone runs "
                 "without one, over a random code table)")
  p.add_argument("--users", type=int, default=2048,
                 help="test users of the agreement table")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--settings", default="10x50x3,20x50x3,20x50x6x4,"
                 "20x50x8x4,40x50x6x8",
                 help="beams x edges x steps [x beams expanded per step; "
                 "default all], comma separated")
  p.add_argument("--setting", default="20x50x6x4",
                 help="graph setting of the throughput and scaling tables")
  p.add_argument("--seeds", choices=("popular", "random"),
                 default="popular",
                 help="the walk's fixed start: the most popular training "
                 "items or a random sample")
  p.add_argument("--num_seeds", type=int, default=128)
  p.add_argument("--history_seeds", type=int, default=2)
  p.add_argument("--catalogs", type=int, nargs="*", default=[],
                 help="synthetic catalog sizes of the scaling table")
  p.add_argument("--tables", default="agreement,throughput,scaling",
                 help="which tables to measure (scaling needs --catalogs)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--json", action="store_true", help="one JSON per row")
  args = p.parse_args(argv)
  wanted = set(args.tables.split(","))
  setting = _setting(args.setting)
  if args.model_dir is None:
    if wanted != {"scaling"} or not args.catalogs:
      raise SystemExit("--model_dir is needed unless --tables scaling "
                       "--catalogs N ... (random code table).")
    table = np.random.default_rng(0).normal(size=(32, 256, 64))
    _print_tables({"scaling": scaling(
        table.astype(np.float32), 32, args.catalogs, args.batch, setting,
        args.num_seeds, args.repeats)}, args.json)
    return
  item_data, model, params, step = eval_items.load_run(args.model_dir)
  hist = _test_batch(item_data, args.users)["input_items"]
  print(f"{args.model_dir}: step {step}, {model.num_items:,} items, "
        f"{model.config.num_digits} digits, {len(hist):,} test users",
        flush=True)
  settings = [_setting(s) for s in args.settings.split(",")]
  seeds = start_items(item_data, args.seeds, args.num_seeds)
  print(f"start: the {len(seeds)} {args.seeds} items and the users' last "
        f"{args.history_seeds} items with their neighbours", flush=True)
  tables = {}
  if "agreement" in wanted:
    tables["agreement"] = agreement(model, params, hist, settings, seeds,
                                    args.history_seeds)
  if "throughput" in wanted:
    tables["throughput"] = throughput(model, params, hist[:args.batch],
                                      setting, seeds, args.history_seeds,
                                      args.repeats)
  if args.catalogs and "scaling" in wanted:
    tables["scaling"] = scaling(
        model.code_table(params), model.config.num_digits, args.catalogs,
        args.batch, setting, args.num_seeds, args.repeats)
  _print_tables(tables, args.json)


def _print_tables(tables: dict[str, list[dict[str, Any]]],
                  as_json: bool) -> None:
  for name, rows in tables.items():
    if as_json:
      for row in rows:
        print(json.dumps({"table": name, **row}))
      continue
    print(f"\n{name}")
    keys = list(rows[0])
    print("  ".join(f"{k:>16}" for k in keys))
    for row in rows:
      print("  ".join(f"{v:>16.4g}" if isinstance(v, float) else f"{v!s:>16}"
                      for v in row.values()))


if __name__ == "__main__":
  main()
