"""Item-level benchmark cells on an accelerator machine (RPG at full width).

The accelerator machine has JAX, flax, optax and orbax, but no TensorFlow,
no gin-config, no network and none of this machine's files beyond the
repository; it starts bare for each call, so a cell must finish within
one call. Item-level runs (`recjax.train_items`) need no TensorFlow, so
a cell travels as its inputs and its gin configuration:

  pack    (here) builds each cell's inputs with `recjax.pipeline` (the
          data set's cache, the text embeddings, the codes), copies what
          the run reads into OUT/inputs/, the gin-config package into
          OUT/site/, and writes OUT/plan.json: every cell's gin files and
          bindings, with the paths made relative to OUT.
  run     (there) trains and tests every planned cell with
          `recjax.train.run`, writing OUT/rows.jsonl (the row format of
          `benchmarks/results/quality.jsonl`; one line as each cell ends)
          and each cell's `history.jsonl`.
  record  (here) appends those rows to the results file with a note
          (machine, date), as `benchmarks/quality.py --record` does.

  python benchmarks/device_items.py pack --datasets Beauty \
      --methods rpg_len50 --seeds 0,1,2 --schedule full --out devdata/rpg
  # device: carry devdata/rpg (ignored by git), then
  python benchmarks/device_items.py run --bundle devdata/rpg --out $OUT
  python benchmarks/device_items.py record --rows FILES_AT/rows.jsonl \
      --note "H100, 2026-12-08, benchmarks/device_items.py"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PLAN_FILE = "plan.json"
ROWS_FILE = "rows.jsonl"
SITE_DIR = "site"
BUNDLE = "@BUNDLE@"
RUNS = "@RUNS@"
# What the device tool carries beside the working tree, in bytes.
CARRY_LIMIT = 64 * 2**20
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
_PATH_BINDING = re.compile(r"^\s*([\w.]+)\s*=\s*'([^']*)'\s*$")


def _cell_name(cell: dict[str, Any]) -> str:
  return f"{cell['dataset']}-{cell['method']}-seed{cell['seed']}"


def pack_cells(work: Any, cells: Sequence[tuple[Any, str, int]],
               schedule: str, extra_gin: Sequence[str],
               out: pathlib.Path) -> dict[str, Any]:
  """Builds the cells' inputs here and copies them into a bundle folder.

  Args:
    work: a `recjax.pipeline.Workspace` (its cache holds the inputs).
    cells: `(DataSource, method, seed)` of each item-level cell.
    schedule: a schedule every method registers (e.g. "full").
    extra_gin: bindings every cell adds last (they make the row's variant).
    out: the bundle folder (created; its inputs are replaced).

  Returns:
    The plan written to `out/plan.json`.

  Raises:
    SystemExit: a method that is not item-level.
  """
  import gin  # pylint: disable=g-import-not-at-top

  from recjax.models import registry  # pylint: disable=g-import-not-at-top
  out.mkdir(parents=True, exist_ok=True)
  copied: dict[str, str] = {}
  plan_cells = []
  for data, method, seed in cells:
    spec = registry.get_method(method)
    if spec.kind != registry.ITEM:
      raise SystemExit(f"{method} is a {spec.kind} method; this script runs "
                       "item-level cells (generative ones: "
                       "benchmarks/quality.py --bundle).")
    files, bindings = work.gin_setup(method, data, seed, schedule,
                                     extra_gin=extra_gin)
    cell = {"dataset": data.name, "method": method, "seed": seed,
            "schedule": spec.schedule_file(schedule)[0],
            "gin_files": files}
    cell["bindings"] = [_relocate(b, out, copied, _cell_name(cell))
                        for b in bindings]
    plan_cells.append(cell)
  site = out / SITE_DIR / "gin"
  if not site.exists():  # gin-config, for hosts without it.
    shutil.copytree(pathlib.Path(gin.__file__).parent, site,
                    ignore=shutil.ignore_patterns("__pycache__"))
  plan = {"cells": plan_cells, "extra_gin": list(extra_gin),
          "made": time.strftime("%Y-%m-%d")}
  (out / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
  return plan


def _relocate(binding: str, out: pathlib.Path, copied: dict[str, str],
              cell_name: str) -> str:
  """A binding with its path copied into the bundle (or a run folder)."""
  match = _PATH_BINDING.match(binding)
  if not match:
    return binding
  key, value = match.groups()
  if key == "MODEL_DIR":
    return f"{key} = '{RUNS}/{cell_name}'"
  path = pathlib.Path(value)
  if not value.startswith("/"):
    return binding
  src = str(path.resolve())
  tag = hashlib.sha256(src.encode()).hexdigest()[:8]
  if not path.exists():  # Written by the run (e.g. a cache): a new folder.
    return f"{key} = '{RUNS}/made/{tag}-{path.name}'"
  if src not in copied:
    dest = out / "inputs" / f"{tag}-{path.resolve().name}"
    if dest.exists():
      shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
      shutil.copytree(path, dest, ignore=shutil.ignore_patterns(
          "__pycache__", "*.png", "*.lock"))
    else:
      shutil.copy2(path, dest)
    copied[src] = f"{BUNDLE}/inputs/{dest.name}"
  return f"{key} = '{copied[src]}'"


def run_cells(bundle: pathlib.Path, out: pathlib.Path,
              only: Sequence[str] = (), max_seconds: float = 0.0
              ) -> list[dict[str, Any]]:
  """Trains and tests the planned cells; appends a row per cell to OUT.

  Args:
    bundle: a folder written by `pack_cells`.
    out: where rows.jsonl, the histories and the runs go.
    only: cell names (`Beauty-rpg-seed0`) to run; empty: all.
    max_seconds: each cell's training budget (0: none).

  Returns:
    The rows, in the format of `benchmarks/results/quality.jsonl`.
  """
  bundle = bundle.resolve()
  site = bundle / SITE_DIR
  if site.is_dir() and str(site) not in sys.path:
    sys.path.append(str(site))
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  plan = json.loads((bundle / PLAN_FILE).read_text())
  out.mkdir(parents=True, exist_ok=True)
  runs = out / "runs"
  rows = []
  for cell in plan["cells"]:
    name = _cell_name(cell)
    if only and name not in only:
      continue
    bindings = [b.replace(BUNDLE, str(bundle)).replace(RUNS, str(runs))
                for b in cell["bindings"]] + list(plan["extra_gin"])
    if max_seconds:
      bindings.append("recjax.trainer.TrainerConfig.max_train_seconds = "
                      f"{max_seconds}")
    print(f"{name}: training ({cell['schedule']})", flush=True)
    t0 = time.time()
    gin.clear_config()
    try:
      gin_utils.parse_gin(cell["gin_files"], bindings, finalize=False)
      res = dict(gin.get_configurable("recjax.train.run")() or {})
    finally:
      gin.clear_config()
    row: dict[str, Any] = {k: cell[k] for k in ("dataset", "method",
                                                 "seed", "schedule")}
    if plan["extra_gin"]:
      row["variant"] = {"gin": list(plan["extra_gin"])}
    for prefix in ("test", "test_excl"):
      for m in METRICS:
        row[f"{prefix}/{m}"] = float(res.get(f"{prefix}/{m}", float("nan")))
    row["train_seconds"] = float(res.get("train_seconds", time.time() - t0))
    rows.append(row)
    with open(out / ROWS_FILE, "a", encoding="utf-8") as f:
      f.write(json.dumps(row, sort_keys=True) + "\n")
    history = runs / name / "history.jsonl"
    if history.exists():
      shutil.copy2(history, out / f"{name}-history.jsonl")
    print(f"{name}: test N@10 {row['test/ndcg@10']:.4f}, R@10 "
          f"{row['test/recall@10']:.4f} ({row['train_seconds']:.0f} s)",
          flush=True)
  return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="verb", required=True)
  pack = sub.add_parser("pack", help="build and copy the inputs (here)")
  pack.add_argument("--datasets", required=True)
  pack.add_argument("--methods", required=True)
  pack.add_argument("--seeds", default="0")
  pack.add_argument("--schedule", default="full")
  pack.add_argument("--gin", action="append", default=[])
  pack.add_argument("--data", action="append", default=[],
                    help="NAME=PATH of another LC-Rec folder")
  pack.add_argument("--data_root", default=str(REPO.parent / "shared" /
                                                "data"))
  pack.add_argument("--cache_dir", default=str(REPO / "runs" / "bench"))
  pack.add_argument("--out", required=True)
  run = sub.add_parser("run", help="train the cells (on the device)")
  run.add_argument("--bundle", required=True)
  run.add_argument("--out", required=True)
  run.add_argument("--only", default="",
                   help="comma-separated cells, e.g. Beauty-rpg-seed0")
  run.add_argument("--max_seconds", type=float, default=0.0)
  rec = sub.add_parser("record", help="append device rows (here)")
  rec.add_argument("--rows", required=True)
  rec.add_argument("--note", required=True)
  rec.add_argument("--records", default=str(
      REPO / "benchmarks" / "results" / "quality.jsonl"))
  # The verbs' usage in the top-level help too.
  parser.formatter_class = argparse.RawDescriptionHelpFormatter
  parser.epilog = "".join(p.format_usage() for p in (pack, run, rec))
  args = parser.parse_args(argv)
  if args.verb == "run":
    return run_cells(pathlib.Path(args.bundle), pathlib.Path(args.out),
                     [c for c in args.only.split(",") if c],
                     args.max_seconds)
  import quality  # pylint: disable=g-import-not-at-top
  if args.verb == "record":
    rows = [json.loads(x) for x in
            pathlib.Path(args.rows).read_text().splitlines() if x.strip()]
    quality.record(pathlib.Path(args.records), rows, args.note)
    print(f"{len(rows)} rows added to {args.records}")
    return rows
  from recjax import pipeline  # pylint: disable=g-import-not-at-top
  extra = {}
  for item in args.data:
    name, _, path = item.partition("=")
    extra[name] = quality.data_source(name, pathlib.Path(args.data_root),
                                      path)
  sources = [extra.get(n) or quality.data_source(n, pathlib.Path(
      args.data_root)) for n in args.datasets.split(",") if n]
  work = pipeline.Workspace(args.cache_dir)
  cells = [(d, m, int(s)) for d in sources
           for m in args.methods.split(",") if m
           for s in args.seeds.split(",") if s]
  out = pathlib.Path(args.out)
  pack_cells(work, cells, args.schedule, args.gin, out)
  size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
  print(f"{out}: {len(cells)} cells, {size / 2**20:.1f} MiB. Carry it to "
        f"the device and run: python benchmarks/device_items.py run "
        f"--bundle {out} --out $OUT")
  if size > CARRY_LIMIT:
    print(f"warning: {out} is over the device tool's {CARRY_LIMIT // 2**20} "
          "MiB of carried files; pack fewer methods per bundle (one text "
          "encoder's embeddings each).")
  return []


if __name__ == "__main__":
  main()
