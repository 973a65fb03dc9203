"""Benchmark: recommendation quality of every family on real data.

One protocol for all methods: leave-one-out (last item test, second-to-last
validation), history capped at 20 items, full ranking over the catalog
(constrained beam of 20 for generative models), Recall@5/10 and NDCG@5/10 on
the test split under both history policies:

* "all items" (`test/`): TIGER's protocol (and RecBole's for sequential
  models);
* "seen items excluded" (`test_excl/`): the user's history is removed from
  the candidates — inside constrained decoding for generative models (a
  per-user exclusion set in the beam), from the score matrix otherwise.

Methods are the registry's (`recjax.models.list_methods()`): a method a
family registers appears in `--methods` with no edit here. Each run goes
through `recjax.pipeline.Workspace` (the stages its spec needs, the one
`recjax.train` entry point, the test evaluation) and lives in
`<cache>/<dataset>/<method>[-<schedule>]/seed<k>/`, resumes, and is skipped
when its `result.json` exists, so an interrupted benchmark continues where
it stopped. A cached run whose `config.gin` binds a parameter otherwise
than the configuration about to run (a changed gin default, say) is an
error naming the difference, never a silent reuse;
`--accept_config_changes` reuses it anyway. Schedules are gin files
named by each method's spec (`gin_configs/schedules/`): `cpu` (default;
the generative families at the quickstart width, 10 Office epochs),
`cpu_long` (dropout 0.1, early
stopping, up to 40 Office epochs; LEARN / LITE longer budgets), `cpu_xl`
(3x cpu_long's generative steps), `full` (the family's own sizes, for an
accelerator); a method without the requested schedule runs the next
shorter one it has, count baselines none. The generative step budgets of
data sets other than Office are set below (`STEP_BUDGETS`).

Data sets: `--datasets Office,Beauty,Yelp,ML-100K` (the shared folders and
the embedded MovieLens-100K) and `--data NAME=PATH` for any LC-Rec folder,
or `--data NAME=SOURCE` for a named `recjax.datasets` source. `--variant
KEY=VALUE` labels rows (with `--gin` bindings, which also become part of
the variant): rows that differ in their variant are separate cells, in
their own run directories, and never overwrite each other.

  .venv/bin/python benchmarks/quality.py [--datasets Office,Beauty]
      [--methods popularity,sasrec,tiger,...] [--seeds 0,1,2]
      [--data NAME=PATH|NAME=SOURCE ...] [--variant KEY=VALUE ...]
      [--schedule cpu|cpu_long|cpu_xl|full|device] [--json] [--record NOTE]
      [--pretrain_data Beauty,Yelp] [--markov_mix]
  .venv/bin/python benchmarks/quality.py --from_records   # recorded rows

Transfer methods (`vqrec_transfer`, `vqrec_zeroshot`) first pre-train
once (seed 0) on the `--pretrain_data` sets merged into one data set
(`recjax.datasets.merge`), cached in `<cache>/<A+B>/`; the target must not
be among them. Their rows carry `pretrain` (the sources).

`--markov_mix` adds, for every item-level cell, a row of the same run mixed
with the transition baseline (`benchmarks/markov_mix.py`: markov's weight
chosen on validation; variant `mix=markov`, columns `mix/weight` and
`markov/decay`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pathlib
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recjax import pipeline  # noqa: E402
from recjax.errors import RecjaxError  # noqa: E402
from recjax.models import registry  # noqa: E402

# Data sets known by name: shared LC-Rec folders and named sources.
FOLDERS = {"Office": "amazon-office", "Beauty": "amazon-beauty",
           "Yelp": "yelp"}
SOURCES = {"ML-100K": "movielens_100k"}
# Rows measured by earlier runs (`--record`), so that a table can gather
# seeds run in different sessions (`--from_records`).
RECORDS = REPO / "benchmarks" / "results" / "quality.jsonl"
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
# `--markov_mix`'s result in a run directory.
MIX_FILE = "markov_mix.json"
SCHEDULES = registry.SCHEDULES + ("device",)
# Generative step budgets of the CPU schedules on data sets other than
# Office, whose budgets the schedule files hold: (TRAIN_STEPS, EVAL_PERIOD,
# MAX_EVAL_EXAMPLES). Beauty's 22k-user constrained-beam validation would
# cost minutes per pass on a CPU; 5,000 users keep early stopping cheap
# (test is always on every user).
STEP_BUDGETS = {
    ("Beauty", "cpu"): (2500, 1250, None),
    ("Beauty", "cpu_long"): (10000, 1000, 5000),
    ("Beauty", "cpu_xl"): (30000, 2000, 5000),
}


def data_source(name: str, data_root: pathlib.Path,
                path: str | None = None) -> pipeline.DataSource:
  """A benchmark data set by name (or `NAME=PATH|SOURCE` from `--data`)."""
  try:
    if path is None and name in SOURCES:
      return pipeline.DataSource(name, SOURCES[name], {})
    if path is None:
      return pipeline.DataSource.lcrec(
          name, data_root / FOLDERS.get(name, name.lower()))
    if not pathlib.Path(path).exists() and path in pipeline.NAMES:
      return pipeline.DataSource(name, path, {})
    return pipeline.DataSource.lcrec(name, path)
  except RecjaxError as e:
    raise SystemExit(f"dataset {name}: {e}") from None


def variant_tag(variant: Mapping[str, Any]) -> str:
  """A short stable tag of a variant ('' for none)."""
  if not variant:
    return ""
  text = json.dumps(variant, sort_keys=True)
  return "v" + hashlib.sha256(text.encode()).hexdigest()[:8]


class Bench:
  """Runs and caches the (dataset, method, seed) cells of one schedule."""

  def __init__(self, cache: pathlib.Path, schedule: str,
               extra_gin: Sequence[str] = (),
               variant: Mapping[str, Any] | None = None,
               pretrain: Sequence[pipeline.DataSource] = (),
               accept_config_changes: bool = False):
    self.cache = pathlib.Path(cache)
    self.accept_config_changes = accept_config_changes
    self.schedule = schedule
    self.extra_gin = tuple(extra_gin)
    self.variant = dict(variant or {})
    if self.extra_gin:
      self.variant["gin"] = list(self.extra_gin)
    self.pretrain = tuple(pretrain)
    self.work = pipeline.Workspace(self.cache, pretrain_sources=pretrain)

  def run_dir(self, data: pipeline.DataSource, method: str,
              seed: int) -> pathlib.Path:
    """`<cache>/<dataset>/<method>[-<schedule>][-v<tag>]/seed<k>`."""
    schedule = "cpu" if self.schedule == "device" else self.schedule
    run = self.work.run_dir(method, data, seed, schedule)
    if registry.get_method(method).kind == registry.GENERATIVE:
      run = run.parent.parent / f"{method}-{self.schedule}" / run.name
    tag = variant_tag(self.variant)
    if tag:
      run = run.parent.with_name(f"{run.parent.name}-{tag}") / run.name
    return run

  def schedule_bindings(self, data: pipeline.DataSource,
                        method: str) -> list[str]:
    """The data set's step budget of a generative CPU schedule."""
    if registry.get_method(method).kind != registry.GENERATIVE:
      return []
    budget = STEP_BUDGETS.get((data.name, self.schedule))
    if budget is None:
      return []
    steps, period, max_eval = budget
    return [f"TRAIN_STEPS = {steps}", f"EVAL_PERIOD = {period}",
            f"MAX_EVAL_EXAMPLES = {max_eval}"]

  def cell(self, data: pipeline.DataSource, method: str,
           seed: int) -> dict[str, Any]:
    """Trains (or reuses) and evaluates one (dataset, method, seed)."""
    spec = registry.get_method(method)
    run = self.run_dir(data, method, seed)
    if (self.schedule == "device" and spec.kind == registry.GENERATIVE
        and not (run / pipeline.RESULT_FILE).exists()):
      raise SystemExit(
          f"{run / pipeline.RESULT_FILE} does not exist: device cells are "
          "trained by benchmarks/device_quality.py (make the bundle with "
          "--bundle DIR, then copy its result.json there).")
    res = self.work.run(method, data, seed, self.schedule,
                        self.schedule_bindings(data, method) +
                        list(self.extra_gin), run=run,
                        accept_changes=self.accept_config_changes)
    used = run.parent.name[len(method) + 1:].split("-v")[0] or "-"
    row: dict[str, Any] = {"dataset": data.name, "method": method,
                           "seed": seed, "schedule": used}
    if self.variant:
      row["variant"] = self.variant
    if spec.pretrain_method:  # Where the transferred model was pre-trained.
      row["pretrain"] = "+".join(d.name for d in self.pretrain)
    for prefix in ("test", "test_excl"):
      for m in METRICS:
        row[f"{prefix}/{m}"] = float(res.get(f"{prefix}/{m}", np.nan))
    row["train_seconds"] = float(res.get("train_seconds", np.nan))
    # Settings a method chose itself (e.g. the markov decay).
    row.update({k: v for k, v in res.items() if k.startswith("markov/")})
    # The cold-start protocol's users (ItemDataConfig.cold_fraction).
    row.update({k: float(v) for k, v in res.items()
                if k.split("/")[0] in ("test_cold", "test_cold_excl")
                and k.split("/")[-1] in (*METRICS, "num_examples")})
    return row

  def mix_row(self, data: pipeline.DataSource, method: str, seed: int,
              row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`'s item-level run mixed with `markov` (`--markov_mix`).

    `benchmarks/markov_mix.py` on the cell's run (best checkpoint): the
    weight of `markov`'s next-item distribution is chosen on validation
    N@10 from {0, .1, ..., 1}; computed once, cached in the run directory.

    Args:
      data: the data set.
      method: an item-level method.
      seed: the seed.
      row: the cell's own row (`cell`).

    Returns:
      A row of the same cell whose variant adds `mix=markov`, with the
      chosen `mix/weight` and `markov/decay`.
    """
    run = self.run_dir(data, method, seed)
    cached = run / MIX_FILE
    if cached.exists():
      res = json.loads(cached.read_text())
    else:
      full = _markov_mix().evaluate_mix(str(run))
      w = full["weight"]
      res = {"weight": w, "markov/decay": full["markov/decay"],
             "step": full["step"], "test": full["test"][w],
             "test_excl": full["test_excl"][w]}
      tmp = cached.with_suffix(".tmp")
      tmp.write_text(json.dumps(res, indent=1, sort_keys=True))
      os.replace(tmp, cached)
    out = {k: row[k] for k in ("dataset", "method", "seed", "schedule",
                               "train_seconds", "pretrain") if k in row}
    out["variant"] = {**(row.get("variant") or {}), "mix": "markov"}
    for prefix in ("test", "test_excl"):
      for m in METRICS:
        out[f"{prefix}/{m}"] = float(res[prefix][m])
    out["mix/weight"] = float(res["weight"])
    out["markov/decay"] = float(res["markov/decay"])
    return out

  def bundle(self, data: pipeline.DataSource, method: str, seed: int,
             out_dir: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
    """A generative cell packed for `benchmarks/device_quality.py`."""
    from recjax.tasks import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
    spec = registry.get_method(method)
    task = self.work.task(method, data, seed)
    _, schedule_file = spec.schedule_file("full")
    gin_files = list(spec.all_gin_files) + ([schedule_file]
                                            if schedule_file else [])
    out = out_dir / f"{data.name}-{method}-seed{seed}.tar.gz"
    if not out.exists():
      bundle_lib.make_bundle(task, out, extra={
          "dataset": data.name, "method": method, "seed": seed,
          "gin_files": gin_files})
    return out, gin_files


def _markov_mix() -> Any:
  """`benchmarks/markov_mix.py` as a module."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "bench_markov_mix", REPO / "benchmarks" / "markov_mix.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _record_key(row: dict[str, Any]) -> tuple[str, str, str, int, str]:
  return (row["dataset"], row["method"], row["schedule"], int(row["seed"]),
          json.dumps(row.get("variant") or {}, sort_keys=True))


def read_records(path: pathlib.Path) -> list[dict[str, Any]]:
  """Recorded rows, the latest of each (dataset, method, schedule, seed,
  variant)."""
  if not path.exists():
    return []
  latest: dict[tuple[str, str, str, int, str], dict[str, Any]] = {}
  for n, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      latest[_record_key(row)] = row
    except (ValueError, KeyError, TypeError) as e:
      raise SystemExit(f"{path}:{n}: not a result row ({e}); fix or delete "
                       "the line.") from None
  return list(latest.values())


def record(path: pathlib.Path, rows: Sequence[dict[str, Any]],
           note: str) -> None:
  """Adds `rows` (with `note`: machine, date) to the records, atomically."""
  old = path.read_text() if path.exists() else ""
  new = "".join(json.dumps({**r, "note": note}, sort_keys=True) + "\n"
                for r in rows)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(old + new)
  os.replace(tmp, path)


def _anchors(name: str, method: str) -> list[registry.Anchor]:
  try:
    spec = registry.get_method(method)
  except RecjaxError:
    return []
  return [a for a in spec.anchors if a.dataset == name]


def _label(method: str, variant: Mapping[str, Any] | None) -> str:
  if not variant:
    return method
  return method + " [" + ", ".join(
      f"{k}={v}" for k, v in sorted(variant.items())) + "]"


# Keys of a row that are not metrics.
_NOT_METRICS = ("dataset", "method", "schedule", "seed", "variant", "note",
                "train_seconds")


def table(rows: Sequence[dict[str, Any]], plain: bool = False) -> str:
  """Markdown table: mean ± std over seeds per (dataset, method, schedule,
  variant); registry anchors follow their method's first group.

  Args:
    rows: result rows (`read_records`).
    plain: only the rows without a variant, and only the standard columns
      (all items and seen excluded); otherwise every variant, and the
      metrics a row carries beyond the standard ones (a mix weight, the
      cold-start users' metrics) get their own columns.

  Returns:
    The table's lines.
  """
  if plain:
    rows = [r for r in rows if not r.get("variant")]
  groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
  for r in rows:
    key = _record_key(r)
    groups.setdefault((key[0], key[1], key[2], key[4]), []).append(r)
  cols = [f"{p}/{m}" for p in ("test", "test_excl") for m in METRICS]
  extra = [] if plain else sorted(
      {k for r in rows for k, v in r.items()
       if k not in cols and k not in _NOT_METRICS and "/" in k
       and not k.startswith("validation/")
       and isinstance(v, (int, float))})
  head = ("| dataset | method | schedule | seeds | "
          + " | ".join(c.replace("test_excl/", "excl ").replace("test/", "")
                       for c in cols + extra) + " | train s |")
  lines = [head, "|" + "---|" * (len(cols) + len(extra) + 5)]
  shown: list[registry.Anchor] = []
  datasets_seen = list(dict.fromkeys(r["dataset"] for r in rows))
  methods = registry.list_methods()

  def order(key: tuple[str, str, str, str]) -> tuple[int, int, int, str]:
    name, method, sched, variant = key
    return (datasets_seen.index(name),
            methods.index(method) if method in methods else len(methods),
            SCHEDULES.index(sched) if sched in SCHEDULES else -1,
            method + ("" if variant == "{}" else variant))

  for key, rs in sorted(groups.items(), key=lambda kv: order(kv[0])):
    name, method, sched, _ = key
    cells = []
    for c in cols + extra:
      v = np.array([r[c] for r in rs if c in r], float)
      cells.append("" if not v.size else f"{v.mean():.4f}" +
                   (f" ± {v.std():.4f}" if len(v) > 1 else ""))
    secs = np.mean([r["train_seconds"] for r in rs])
    lines.append(f"| {name} | {_label(method, rs[0].get('variant'))} | "
                 f"{sched} | {len(rs)} | " + " | ".join(cells)
                 + f" | {secs:.0f} |")
    for anchor in _anchors(name, method):
      if anchor in shown:
        continue
      shown.append(anchor)
      vals = [anchor.metrics.get(m) for m in METRICS]
      lines.append(f"| {name} | *{anchor.source}* | {anchor.provenance} | | "
                   + " | ".join("" if v is None else f"{v:.4f}"
                                for v in vals)
                   + " |" + " |" * (len(cols) + len(extra) - len(vals))
                   + " |")
  return "\n".join(lines)


def plot_validation(bench: Bench, rows: Sequence[dict[str, Any]],
                    sources: Mapping[str, pipeline.DataSource],
                    path: pathlib.Path) -> None:
  """Validation NDCG@10 against training examples of every trained run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  from recjax import summaries  # pylint: disable=g-import-not-at-top
  names = sorted({r["dataset"] for r in rows})
  fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    for r in rows:
      if r["dataset"] != name or r["schedule"] == "-":
        continue
      run = bench.run_dir(sources[name], r["method"], r["seed"])
      history = summaries.read_history(run)
      # Batch sizes differ (SASRec-RecBole: 2048), so the x axis is
      # training examples: steps x (examples/s / steps/s).
      sizes = [h["train/examples_per_s"] / h["train/steps_per_s"]
               for h in history if h.get("train/steps_per_s")]
      batch = round(float(np.median(sizes))) if sizes else 1
      pts = [(h["step"] * batch / 1e6, h["validation/ndcg@10"])
             for h in history if "validation/ndcg@10" in h]
      if pts:
        x, y = zip(*pts)
        ax.plot(x, y, marker=".",
                label=f"{r['method']} {r['schedule']} s{r['seed']}")
    ax.set_title(f"{name}: validation NDCG@10")
    ax.set_xlabel("training examples (millions)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
  out = {}
  for item in items:
    if "=" not in item:
      raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE")
    key, value = item.split("=", 1)
    out[key] = value
  return out


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  methods_all = registry.list_methods()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_root", default=str(REPO.parent / "shared" /
                                                 "data"))
  parser.add_argument("--datasets", default="Office,Beauty",
                      help=f"names: {', '.join([*FOLDERS, *SOURCES])}")
  parser.add_argument("--data", action="append", default=[],
                      metavar="NAME=PATH|NAME=SOURCE",
                      help="an extra data set: an LC-Rec folder or a "
                      "recjax.datasets source")
  parser.add_argument("--pretrain_data", default="Beauty,Yelp",
                      metavar="NAME[=PATH],...",
                      help="the data sets that transfer methods (VQ-Rec) "
                      "pre-train on, merged: names as in --datasets or "
                      "NAME=PATH LC-Rec folders")
  parser.add_argument("--methods", default=",".join(methods_all),
                      help=f"registered: {', '.join(methods_all)}")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--schedule", choices=SCHEDULES, default="cpu")
  parser.add_argument("--bundle", default=None, metavar="DIR",
                      help="write a device bundle per generative cell to "
                      "DIR instead of training it")
  parser.add_argument("--cache_dir", default=str(REPO / "runs" /
                                                 "bench_quality"))
  parser.add_argument("--gin", action="append", default=[],
                      metavar="NAME=VALUE", help="extra gin binding (part "
                      "of the rows' variant)")
  parser.add_argument("--variant", action="append", default=[],
                      metavar="KEY=VALUE", help="a label of the rows' "
                      "variant (record key)")
  parser.add_argument("--accept_config_changes", action="store_true",
                      help="reuse or resume cached runs whose config.gin "
                      "binds a parameter otherwise (printed); by default "
                      "an error")
  parser.add_argument("--json", action="store_true",
                      help="one JSON object per (dataset, method, seed)")
  parser.add_argument("--markov_mix", action="store_true",
                      help="also a row per item-level cell mixed with "
                      "markov (benchmarks/markov_mix.py; variant "
                      "mix=markov)")
  parser.add_argument("--record", default=None, metavar="NOTE",
                      help="add each row as its cell finishes, with NOTE "
                      "(machine, date), to --records "
                      f"({RECORDS.relative_to(REPO)})")
  parser.add_argument("--from_records", action="store_true",
                      help="train nothing: tabulate the recorded rows of "
                      "--datasets / --methods (every recorded seed)")
  parser.add_argument("--plain", action="store_true",
                      help="with --from_records: rows without a variant, "
                      "standard columns only (the README's table)")
  parser.add_argument("--records", default=str(RECORDS),
                      help="the results file of --record / --from_records")
  parser.add_argument("--plot", default=None,
                      help="PNG of the validation curves (default "
                      "<cache_dir>/validation_ndcg10.png)")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.chdir(REPO)
  methods = [m for m in args.methods.split(",") if m]
  wanted_data = [d for d in args.datasets.split(",") if d]
  extra_data = _pairs(args.data, "--data")
  if args.from_records:
    names = set(wanted_data) | set(extra_data)
    rows = [r for r in read_records(pathlib.Path(args.records))
            if r["method"] in methods and r["dataset"] in names]
    order = list(FOLDERS) + list(SOURCES)
    rows.sort(key=lambda r: (order.index(r["dataset"]) if r["dataset"] in
                             order else len(order), r["dataset"],
                             methods_all.index(r["method"])
                             if r["method"] in methods_all else 99,
                             r["schedule"], r["seed"]))
    print(table(rows, plain=args.plain))
    return rows
  for m in methods:
    if m not in methods_all:
      raise SystemExit(f"unknown method {m!r}; registered: "
                       f"{', '.join(methods_all)}")
  sources = {name: data_source(name, pathlib.Path(args.data_root))
             for name in wanted_data}
  sources.update({name: data_source(name, pathlib.Path(args.data_root),
                                    path)
                  for name, path in extra_data.items()})
  seeds = [int(s) for s in args.seeds.split(",") if s]
  pretrain = []
  for item in (x for x in args.pretrain_data.split(",") if x):
    name, _, path = item.partition("=")
    pretrain.append(data_source(name, pathlib.Path(args.data_root),
                                path or None))
  bench = Bench(pathlib.Path(args.cache_dir), args.schedule, args.gin,
                _pairs(args.variant, "--variant"), pretrain,
                args.accept_config_changes)
  if args.bundle:
    for data in sources.values():
      for method in methods:
        if registry.get_method(method).kind != registry.GENERATIVE:
          continue
        for seed in seeds:
          path, gin_files = bench.bundle(data, method, seed,
                                         pathlib.Path(args.bundle))
          flags = " ".join(f"--gin_file {f}" for f in gin_files)
          print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB); on the "
                f"device: python benchmarks/device_quality.py --bundle "
                f"{path} {flags} --seed {seed}")
    return []
  rows = []
  for data in sources.values():
    for method in methods:
      # Count baselines have no seed: one cell.
      for seed in (seeds[:1] if registry.get_method(method).kind ==
                   registry.COUNT else seeds):
        row = bench.cell(data, method, seed)
        cell_rows = [row]
        if (args.markov_mix and registry.get_method(method).kind ==
            registry.ITEM):
          cell_rows.append(bench.mix_row(data, method, seed, row))
        if args.record:  # As each cell finishes: a stopped run keeps it.
          record(pathlib.Path(args.records), cell_rows, args.record)
        for row in cell_rows:
          rows.append(row)
          if args.json:
            print(json.dumps(row), flush=True)
          else:
            print(f"[{data.name}] {_label(method, row.get('variant'))} "
                  f"seed {seed}: " + ", ".join(
                      f"{m} {row['test/' + m]:.4f}" for m in METRICS)
                  + f" ({row['train_seconds']:.0f}s)", file=sys.stderr,
                  flush=True)
  if not args.json:
    print(table(rows))
  plot = pathlib.Path(args.plot or bench.cache / "validation_ndcg10.png")
  plot_validation(bench, rows, sources, plot)
  print(f"validation curves: {plot}", file=sys.stderr)
  return rows


if __name__ == "__main__":
  main()
