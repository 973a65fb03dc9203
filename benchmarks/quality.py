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

Methods: `popularity`, `markov` (item-to-item transitions of the training
sequences, `recjax.models.markov`; its history decay chosen on validation),
`sasrec` (original SASRec: pre-LN, loss at every
position), `sasrec_recbole` (RecBole's SASRec recipe: post-LN, every
prefix, batch 2048, validation each epoch), `tiger`, `letter_tiger`
(LETTER tokenizer with the CF item embeddings of `sasrec_recbole`, same
seed),
`tiger_calrec` (TIGER + CALRec contrastive alignment),
`letter_tiger_calrec` (both), `learn` (LEARN dual
encoder on frozen MiniLM item embeddings), `lite` (LITE-LLM4Rec, frozen
MiniLM item encoder).

Every run lives in `<cache>/<dataset>/<method>/seed<k>/`, checkpoints,
resumes, and is skipped when its `result.json` exists, so an interrupted
benchmark continues where it stopped. Schedules:

* `--schedule full`: the gin experiment files as they are (TIGER size:
  4+4 layers, d_model 128; meant for an accelerator);
* `--schedule cpu` (default): the documented shorter schedule for a 2-core
  CPU: the generative models at the quickstart width (2+2 layers, d_model
  64, no dropout) and fewer steps (10 Office epochs);
* `--schedule cpu_long`: the same width with dropout 0.1, trained until
  validation NDCG@10 stops improving (early stopping; up to 40 Office
  epochs, about an hour here); LITE up to 3,000 and LEARN 6,000 steps with
  early stopping (the SASRecs keep their `cpu` schedule, which already
  stops early). Rows say which schedule made them.
* `--schedule cpu_xl`: `cpu_long` with three times the step budget for the
  generative models (120 Office / 58 Beauty epochs, validation every 1,000
  steps): the Office `cpu_long` runs end at their step cap with
  validation still rising, so this measures what training length alone
  buys at the CPU width (about 2-3 hours per Office run here). Item-level
  models keep their `cpu_long` / `cpu` schedules.

  .venv/bin/python benchmarks/quality.py [--datasets Office,Beauty]
      [--methods popularity,sasrec,tiger,...] [--seeds 0,1,2]
      [--data NAME=PATH ...] [--schedule cpu|cpu_long|cpu_xl|full|device]
      [--json] [--record NOTE]
  .venv/bin/python benchmarks/quality.py --from_records   # recorded rows
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recjax import datasets  # noqa: E402
from recjax import embed  # noqa: E402
from recjax import summaries  # noqa: E402
from recjax.datasets import stage as dataset_stage  # noqa: E402
from recjax.models import markov  # noqa: E402
from recjax.models import popularity  # noqa: E402

FOLDERS = {"Office": "amazon-office", "Beauty": "amazon-beauty"}
# Rows measured by earlier runs (`--record`), so that a table can gather
# seeds run in different sessions (`--from_records`).
RECORDS = REPO / "benchmarks" / "results" / "quality.jsonl"
METHODS = ("popularity", "markov", "sasrec", "sasrec_recbole", "tiger",
           "letter_tiger", "tiger_calrec", "letter_tiger_calrec", "learn",
           "lite")
# Count-based baselines: nothing trained, no seed, no schedule.
BASELINES = ("popularity", "markov")
# History decays of `markov` tried on validation (0: the last item only).
MARKOV_DECAYS = markov.DECAYS
GENERATIVE = ("tiger", "letter_tiger", "tiger_calrec", "letter_tiger_calrec")
# Generative methods over LETTER codes (the rest use RQ-VAE codes).
LETTER_METHODS = ("letter_tiger", "letter_tiger_calrec")
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
# Published anchors (test, all items): TIGER on Beauty (Rajput et al.);
# RecBole 1.2.1 SASRec on Office measured on this machine (issue 6).
_RECBOLE_OFFICE = ("RecBole 1.2.1 SASRec", "measured here",
                   (0.0667, 0.0385, 0.1050, 0.0509))
ANCHORS = {
    ("Beauty", "tiger"): ("TIGER (paper)", "published",
                          (0.0454, 0.0321, 0.0648, 0.0384)),
    ("Office", "sasrec"): _RECBOLE_OFFICE,
    ("Office", "sasrec_recbole"): _RECBOLE_OFFICE,
}

# Semantic IDs of the generative models: TIGER's 3 x 256 RQ-VAE codes plus a
# collision level; LETTER adds CF alignment and diversity to the same shape.
SID_CONFIG = {"num_levels": 3, "codebook_size": 256, "epochs": 200,
              "num_user_buckets": 2000}

# Shorter generative schedule for a 2-core CPU (`--schedule cpu`).
CPU_GENERATIVE = (
    "recjax.network.TransformerConfig.emb_dim = 64",
    "recjax.network.TransformerConfig.num_heads = 4",
    "recjax.network.TransformerConfig.head_dim = 16",
    "recjax.network.TransformerConfig.num_encoder_layers = 2",
    "recjax.network.TransformerConfig.num_decoder_layers = 2",
    "recjax.network.TransformerConfig.mlp_dim = 256",
    "recjax.network.TransformerConfig.dropout_rate = 0.0",
    "LEARNING_RATE = 3e-3",
    "WARMUP_STEPS = 100",
)
CPU_STEPS = {"Office": 1500, "Beauty": 2500}
CPU_EVAL_PERIOD = {"Office": 500, "Beauty": 1250}
# `--schedule cpu_long`: the same width trained to convergence (about an
# hour per Office run here): 40 epochs of Office at most, dropout 0.1
# against over-fitting, early stopping after 3 validations without a
# better NDCG@10. The best checkpoint is evaluated.
CPU_LONG_GENERATIVE = tuple(
    b for b in CPU_GENERATIVE if "dropout_rate" not in b) + (
        "recjax.network.TransformerConfig.dropout_rate = 0.1",
        "recjax.trainer.TrainerConfig.patience = 3")
CPU_LONG_STEPS = {"Office": 6000, "Beauty": 10000}
CPU_LONG_EVAL_PERIOD = {"Office": 500, "Beauty": 1000}
# Validation users of `cpu_long` (the leading whole batches; None: all).
# Beauty's 22k-user constrained-beam validation would cost minutes per
# pass on a CPU; 5,000 users keep early stopping cheap. Test is always
# on every user.
CPU_LONG_MAX_EVAL = {"Office": None, "Beauty": 5000}
# `--schedule cpu_xl`: `cpu_long` with 3x the steps (the cosine decay
# stretches with them) and half as many validations per step.
CPU_XL_STEPS = {"Office": 18000, "Beauty": 30000}
CPU_XL_EVAL_PERIOD = {"Office": 1000, "Beauty": 2000}

# Gin experiment of each generative method (the task name is overridden).
EXPERIMENTS = {
    "tiger": "experiments/tiger_amazon_office.gin",
    "letter_tiger": "experiments/letter_tiger_amazon.gin",
    "letter_tiger_calrec": "experiments/letter_tiger_calrec_amazon.gin",
    "tiger_calrec": "experiments/tiger_calrec_amazon_office.gin",
}

# LETTER's collaborative embeddings: the item embeddings of this SASRec
# (same dataset and seed). RecBole's recipe is the better and the faster
# of the two here (sessions 1-3 used "sasrec").
LETTER_CF = "sasrec_recbole"

# Item-level models: gin model file per method.
ITEM_MODELS = {"sasrec": "models/sasrec.gin",
               "sasrec_recbole": "models/sasrec.gin",
               "learn": "models/learn.gin", "lite": "models/lite.gin"}
# (max steps, validation period, patience): early stopping on validation
# NDCG@10 ends most runs before the step budget. LEARN's all-position
# in-batch softmax (5,120 x 5,120 logits per step) and LITE cost 2-3x a
# SASRec step, so their CPU budgets are shorter.
# `sasrec_recbole` is RecBole's recipe: validation every epoch (-1),
# patience 10 epochs, up to 300 epochs of Office.
ITEM_SCHEDULES = {"sasrec": (4000, 100, 10), "sasrec_recbole": (5400, -1, 10),
                  "learn": (500, 100, 3), "lite": (600, 100, 3)}
# `--schedule cpu_long` for the text-based item models, whose `cpu` budgets
# end while validation still rises: stopping after 5 validations without a
# better NDCG@10, up to 3,000 steps for LITE (150 Office / 34 Beauty epochs
# of 256 users) and 6,000 for LEARN (its Beauty run still rose at 3,000;
# the learning rate is constant, so the longer cap only continues a run).
# The SASRecs converge under `cpu` already and keep it.
ITEM_LONG_SCHEDULES = {"learn": (6000, 100, 5), "lite": (3000, 100, 5)}
ITEM_BINDINGS: dict[str, tuple[str, ...]] = {
    "sasrec_recbole": ("recjax.models.sasrec.SASRecConfig.norm = 'post'",
                       "recjax.models.sasrec.SASRecConfig.positions = 'first'",
                       "recjax.models.sasrec.SASRecConfig.train_positions = "
                       "'last'",
                       "TRAIN_MODE = 'prefixes'", "BATCH_SIZE = 2048"),
}


def _category(folder: pathlib.Path) -> str:
  """The LC-Rec category of a folder (`<Category>.inter.json`)."""
  found = sorted(p.name[:-len(".inter.json")]
                 for p in folder.glob("*.inter.json"))
  if len(found) != 1:
    raise SystemExit(
        f"{folder}: expected exactly one <Category>.inter.json (LC-Rec "
        f"layout), found {found or 'none'}.")
  return found[0]


class Bench:
  """Runs and caches the (dataset, method, seed) cells."""

  def __init__(self, cache: pathlib.Path, schedule: str,
               extra_gin: Sequence[str] = ()):
    self.cache = cache
    self.schedule = schedule
    self.extra_gin = tuple(extra_gin)

  # -- shared stages ---------------------------------------------------------

  def dataset(self, name: str, folder: pathlib.Path
              ) -> tuple[datasets.CanonicalDataset, pathlib.Path]:
    """The canonical dataset (cached)."""
    root = self.cache / name
    ds = dataset_stage.prepare("amazon_lcrec", root / "dataset",
                               data_dir=str(folder),
                               category=_category(folder))
    return ds, root / "dataset"

  def embeddings(self, name: str) -> pathlib.Path:
    """MiniLM item embeddings of a prepared dataset (cached)."""
    root = self.cache / name
    return pathlib.Path(embed.embed_stage(root / "dataset", root / "minilm"))

  def run_dir(self, name: str, method: str, seed: int,
              schedule: str | None = None) -> pathlib.Path:
    """`<cache>/<dataset>/<method>-<schedule>/seed<k>` of one cell."""
    schedule = schedule or self.schedule
    if method in ITEM_MODELS:
      # The item-level models' one (or `cpu`) schedule.
      schedule = ("cpu_long" if schedule in ("cpu_long", "cpu_xl") and
                  method in ITEM_LONG_SCHEDULES else "cpu")
    suffix = "" if method in BASELINES else f"-{schedule}"
    return self.cache / name / f"{method}{suffix}" / f"seed{seed}"

  # -- methods -------------------------------------------------------------

  def popularity(self, ds: datasets.CanonicalDataset) -> dict[str, float]:
    """Most-popular items of the training sequences, both policies."""
    return popularity.evaluate(ds)

  def markov(self, ds: datasets.CanonicalDataset) -> dict[str, Any]:
    """Transition baseline; the decay with the best validation NDCG@10."""
    return markov.evaluate(ds, decays=MARKOV_DECAYS)

  def item_bindings(self, name: str, folder: pathlib.Path, method: str,
                    seed: int, emb_dir: pathlib.Path | None,
                    run: pathlib.Path) -> list[str]:
    """Gin bindings of an item-level cell (with `ITEM_MODELS[method]`)."""
    steps, period, patience = ITEM_SCHEDULES[method]
    if run.parent.name.endswith("-cpu_long"):
      steps, period, patience = ITEM_LONG_SCHEDULES[method]
    return [
        f"MODEL_DIR = '{run}'",
        f"SEED = {seed}",
        f"TRAIN_STEPS = {steps}",
        f"EVAL_PERIOD = {period}",
        f"PATIENCE = {patience}",
        f"EMBEDDINGS_DIR = {None if emb_dir is None else repr(str(emb_dir))}",
        "recjax.item_sequences.ItemDataConfig.source = 'amazon_lcrec'",
        f"recjax.item_sequences.ItemDataConfig.data_dir = '{folder}'",
        "recjax.item_sequences.ItemDataConfig.category = "
        f"'{_category(folder)}'",
        "recjax.item_sequences.ItemDataConfig.cache_dir = "
        f"'{self.cache / name / 'item_data'}'",
    ] + list(ITEM_BINDINGS.get(method, ())) + list(self.extra_gin)

  def item_model(self, name: str, folder: pathlib.Path, method: str,
                 seed: int, emb_dir: pathlib.Path | None,
                 run: pathlib.Path) -> dict[str, float]:
    """SASRec / LEARN / LITE through the `train_items` gin entry point."""
    import gin  # pylint: disable=g-import-not-at-top

    from recjax import gin_utils  # pylint: disable=g-import-not-at-top
    from recjax import train_items  # pylint: disable=g-import-not-at-top
    gin.clear_config()
    gin_utils.parse_gin(
        ["runs/train_items.gin", ITEM_MODELS[method]],
        self.item_bindings(name, folder, method, seed, emb_dir, run))
    del train_items
    return gin.get_configurable("recjax.train_items.train_items")()

  def semantic_ids(self, name: str, method: str, seed: int,
                   ds_dir: pathlib.Path, emb_dir: pathlib.Path,
                   cf: pathlib.Path | None) -> pathlib.Path:
    """RQ-VAE (TIGER) or LETTER codes for one seed (cached)."""
    from recjax import semantic_ids  # pylint: disable=g-import-not-at-top
    quantizer = "letter" if method in LETTER_METHODS else "rqvae"
    out = self.cache / name / "semantic_ids" / f"{quantizer}-seed{seed}"
    return semantic_ids.semantic_ids_stage(
        emb_dir, ds_dir, out, method=quantizer, seed=seed,
        cf_embeddings=None if cf is None else str(cf), progress=False,
        **SID_CONFIG)

  def register_task(self, name: str, folder: pathlib.Path, method: str,
                    seed: int, sid_dir: pathlib.Path) -> str:
    """Registers the SeqIO task of a generative cell; returns its name."""
    import tasks  # pylint: disable=g-import-not-at-top
    task = f"quality_{name.lower()}_{method}_seed{seed}"
    tasks.register_tiger_task(
        task, f"recjax_amazon_lcrec/{_category(folder).lower()}",
        str(sid_dir), data_dir=str(self.cache / "tfds"),
        manual_dir=str(folder),
        num_user_buckets=SID_CONFIG["num_user_buckets"])
    return task

  def semantic_ids_of(self, name: str, folder: pathlib.Path, method: str,
                      seed: int) -> pathlib.Path:
    """Semantic IDs of a generative cell (LETTER: after its SASRec)."""
    _, ds_dir = self.dataset(name, folder)
    cf = None
    if method in LETTER_METHODS:
      sas = self.run_dir(name, LETTER_CF, seed, schedule="cpu")
      if not (sas / "result.json").exists():
        self.cell(name, folder, LETTER_CF, seed)
      cf = sas / "item_embeddings.npy"
    return self.semantic_ids(name, method, seed, ds_dir,
                             self.embeddings(name), cf)

  def bundle(self, name: str, folder: pathlib.Path, method: str, seed: int,
             out_dir: pathlib.Path) -> pathlib.Path:
    """A generative cell packed for `benchmarks/device_quality.py`."""
    from tasks import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
    sid = self.semantic_ids_of(name, folder, method, seed)
    task = self.register_task(name, folder, method, seed, sid)
    out = out_dir / f"{name}-{method}-seed{seed}.tar.gz"
    if not out.exists():
      bundle_lib.make_bundle(task, out, extra={
          "dataset": name, "method": method, "seed": seed,
          "experiment": EXPERIMENTS[method]})
    return out

  def generative(self, name: str, folder: pathlib.Path, method: str,
                 seed: int, sid_dir: pathlib.Path, run: pathlib.Path
                 ) -> dict[str, float]:
    """TIGER-family training and test evaluation through gin."""
    import gin  # pylint: disable=g-import-not-at-top

    from recjax import gin_utils  # pylint: disable=g-import-not-at-top
    task = self.register_task(name, folder, method, seed, sid_dir)
    experiment = EXPERIMENTS[method]
    bindings = [f"MIXTURE_OR_TASK_NAME = '{task}'", f"MODEL_DIR = '{run}'",
                f"SEED = {seed}"]
    if self.schedule == "cpu":
      bindings += list(CPU_GENERATIVE)
      bindings += [f"TRAIN_STEPS = {CPU_STEPS.get(name, 1500)}",
                   f"EVAL_PERIOD = {CPU_EVAL_PERIOD.get(name, 500)}"]
    elif self.schedule == "cpu_long":
      bindings += list(CPU_LONG_GENERATIVE)
      bindings += [f"TRAIN_STEPS = {CPU_LONG_STEPS.get(name, 6000)}",
                   f"EVAL_PERIOD = {CPU_LONG_EVAL_PERIOD.get(name, 500)}",
                   f"MAX_EVAL_EXAMPLES = {CPU_LONG_MAX_EVAL.get(name)}"]
    elif self.schedule == "cpu_xl":
      bindings += list(CPU_LONG_GENERATIVE)
      bindings += [f"TRAIN_STEPS = {CPU_XL_STEPS.get(name, 18000)}",
                   f"EVAL_PERIOD = {CPU_XL_EVAL_PERIOD.get(name, 1000)}",
                   f"MAX_EVAL_EXAMPLES = {CPU_LONG_MAX_EVAL.get(name)}"]
    bindings += list(self.extra_gin)
    gin.clear_config()
    gin_utils.parse_gin(["runs/train.gin", "runs/eval.gin", experiment],
                        bindings)
    t0 = time.time()
    gin.get_configurable("recjax.train.train")()
    seconds = time.time() - t0
    # Since step 0 when the run resumed (runs before session 9 lack it).
    elapsed = [r["train/elapsed_seconds"] for r in summaries.read_history(run)
               if "train/elapsed_seconds" in r]
    results = dict(gin.get_configurable("recjax.eval.evaluate")())
    results["train_seconds"] = max(elapsed, default=seconds)
    return results

  # -- one cell ------------------------------------------------------------

  def cell(self, name: str, folder: pathlib.Path, method: str,
           seed: int) -> dict[str, Any]:
    """Trains (or reuses) and evaluates one (dataset, method, seed)."""
    run = self.run_dir(name, method, seed)
    result_path = run / "result.json"
    if result_path.exists():
      return json.loads(result_path.read_text())
    ds, ds_dir = self.dataset(name, folder)
    t0 = time.time()
    if method == "popularity":
      res = self.popularity(ds)
    elif method == "markov":
      res = self.markov(ds)
    elif method in ITEM_MODELS:
      # SASRec learns its own item embeddings: no text embeddings needed.
      emb = None if method.startswith("sasrec") else self.embeddings(name)
      res = self.item_model(name, folder, method, seed, emb, run)
    elif method in GENERATIVE:
      if self.schedule == "device":
        raise SystemExit(
            f"{result_path} does not exist: device cells are trained by "
            "benchmarks/device_quality.py (make the bundle with --bundle "
            "DIR, then copy its result.json there).")
      sid = self.semantic_ids_of(name, folder, method, seed)
      res = self.generative(name, folder, method, seed, sid, run)
    else:
      raise SystemExit(f"unknown method {method!r}; choose from {METHODS}")
    row: dict[str, Any] = {"dataset": name, "method": method, "seed": seed,
                           "schedule": ("-" if method in BASELINES
                                        else run.parent.name.split("-")[-1])}
    for prefix in ("test", "test_excl"):
      for m in METRICS:
        row[f"{prefix}/{m}"] = float(res.get(f"{prefix}/{m}", np.nan))
    row["train_seconds"] = float(res.get("train_seconds",
                                         time.time() - t0))
    # The markov baseline's validation grid and chosen decay.
    row.update({k: v for k, v in res.items()
                if k.startswith(("markov/", "validation/ndcg@10/"))})
    run.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=2, sort_keys=True))
    os.replace(tmp, result_path)
    return row


def _record_key(row: dict[str, Any]) -> tuple[str, str, str, int]:
  return (row["dataset"], row["method"], row["schedule"], int(row["seed"]))


def read_records(path: pathlib.Path) -> list[dict[str, Any]]:
  """Recorded rows, the latest of each (dataset, method, schedule, seed)."""
  if not path.exists():
    return []
  latest: dict[tuple[str, str, str, int], dict[str, Any]] = {}
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


def table(rows: Sequence[dict[str, Any]]) -> str:
  """Markdown table: mean ± std over seeds per (dataset, method)."""
  groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
  for r in rows:
    groups.setdefault((r["dataset"], r["method"], r["schedule"]),
                      []).append(r)
  cols = [f"{p}/{m}" for p in ("test", "test_excl") for m in METRICS]
  head = ("| dataset | method | schedule | seeds | "
          + " | ".join(c.replace("test_excl/", "excl ").replace("test/", "")
                       for c in cols) + " | train s |")
  lines = [head, "|" + "---|" * (len(cols) + 5)]
  shown = []  # anchors already printed
  # Datasets in order of appearance; methods and schedules in their order.
  datasets_seen = list(dict.fromkeys(r["dataset"] for r in rows))
  schedules = ("-", "cpu", "cpu_long", "cpu_xl", "full", "device")

  def order(key: tuple[str, str, str]) -> tuple[int, int, int, str]:
    name, method, sched = key
    return (datasets_seen.index(name),
            METHODS.index(method) if method in METHODS else len(METHODS),
            schedules.index(sched) if sched in schedules else len(schedules),
            method)

  for (name, method, sched), rs in sorted(groups.items(),
                                          key=lambda kv: order(kv[0])):
    cells = []
    for c in cols:
      v = np.array([r[c] for r in rs], float)
      cells.append(f"{v.mean():.4f}" + (f" ± {v.std():.4f}" if len(v) > 1
                                        else ""))
    secs = np.mean([r["train_seconds"] for r in rs])
    lines.append(f"| {name} | {method} | {sched} | {len(rs)} | "
                 + " | ".join(cells) + f" | {secs:.0f} |")
    if (name, method) in ANCHORS and ANCHORS[(name, method)] not in shown:
      shown.append(ANCHORS[(name, method)])
      label, kind, vals = ANCHORS[(name, method)]
      lines.append(f"| {name} | *{label}* | {kind} | | "
                   + " | ".join(f"{v:.4f}" for v in vals)
                   + " | | | | | |")
  return "\n".join(lines)


def plot_validation(cache: pathlib.Path, rows: Sequence[dict[str, Any]],
                    path: pathlib.Path) -> None:
  """Validation NDCG@10 against training step of every trained run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  from recjax import summaries  # pylint: disable=g-import-not-at-top
  names = sorted({r["dataset"] for r in rows})
  fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    for r in rows:
      if r["dataset"] != name or r["method"] in BASELINES:
        continue
      run = cache / name / f"{r['method']}-{r['schedule']}" / \
          f"seed{r['seed']}"
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


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_root", default=str(REPO.parent / "shared" /
                                                 "data"))
  parser.add_argument("--datasets", default="Office,Beauty")
  parser.add_argument("--data", action="append", default=[],
                      metavar="NAME=PATH",
                      help="an extra dataset folder in the LC-Rec layout")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--schedule",
                      choices=("cpu", "cpu_long", "cpu_xl", "full",
                               "device"),
                      default="cpu",
                      help="generative models: 'cpu' (10 Office epochs), "
                      "'cpu_long' (up to 40, early stopping), 'cpu_xl' "
                      "(3x cpu_long's steps), 'full' "
                      "(TIGER size), 'device' (rows from "
                      "benchmarks/device_quality.py results)")
  parser.add_argument("--bundle", default=None, metavar="DIR",
                      help="write a device bundle per generative cell to "
                      "DIR instead of training it")
  parser.add_argument("--cache_dir", default=str(REPO / "runs" /
                                                 "bench_quality"))
  parser.add_argument("--gin", action="append", default=[],
                      metavar="NAME=VALUE", help="extra gin binding")
  parser.add_argument("--json", action="store_true",
                      help="one JSON object per (dataset, method, seed)")
  parser.add_argument("--record", default=None, metavar="NOTE",
                      help="add the finished rows, with NOTE (machine, "
                      f"date), to --records ({RECORDS.relative_to(REPO)})")
  parser.add_argument("--from_records", action="store_true",
                      help="train nothing: tabulate the recorded rows of "
                      "--datasets / --methods (every recorded seed)")
  parser.add_argument("--records", default=str(RECORDS),
                      help="the results file of --record / --from_records")
  parser.add_argument("--plot", default=None,
                      help="PNG of the validation curves (default "
                      "<cache_dir>/validation_ndcg10.png)")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.chdir(REPO)
  if args.from_records:
    wanted_methods = set(args.methods.split(","))
    wanted_data = set(args.datasets.split(",")) | {
        d.split("=", 1)[0] for d in args.data}
    rows = [r for r in read_records(pathlib.Path(args.records))
            if r["method"] in wanted_methods and r["dataset"] in wanted_data]
    order = list(FOLDERS)
    rows.sort(key=lambda r: (order.index(r["dataset"]) if r["dataset"] in
                             order else len(order), r["dataset"],
                             METHODS.index(r["method"])
                             if r["method"] in METHODS else 99,
                             r["schedule"], r["seed"]))
    print(table(rows))
    return
  folders = {}
  for name in [d for d in args.datasets.split(",") if d]:
    folders[name] = pathlib.Path(args.data_root) / FOLDERS.get(
        name, name.lower())
  for item in args.data:
    if "=" not in item:
      raise SystemExit(f"--data {item!r}: expected NAME=PATH")
    name, path = item.split("=", 1)
    folders[name] = pathlib.Path(path)
  for name, folder in folders.items():
    if not folder.is_dir():
      raise SystemExit(f"dataset {name}: {folder} is not a directory; pass "
                       f"--data {name}=PATH (LC-Rec layout).")
  methods = [m for m in args.methods.split(",") if m]
  for m in methods:
    if m not in METHODS:
      raise SystemExit(f"unknown method {m!r}; choose from "
                       f"{', '.join(METHODS)}")
  seeds = [int(s) for s in args.seeds.split(",") if s]
  bench = Bench(pathlib.Path(args.cache_dir), args.schedule, args.gin)
  if args.bundle:
    for name, folder in folders.items():
      for method in [m for m in methods if m in GENERATIVE]:
        for seed in seeds:
          path = bench.bundle(name, folder, method, seed,
                              pathlib.Path(args.bundle))
          print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB); on the "
                f"device: python benchmarks/device_quality.py --bundle "
                f"{path} --experiment {EXPERIMENTS[method]} --seed {seed}")
    return
  rows = []
  for name, folder in folders.items():
    for method in methods:
      for seed in seeds:
        row = bench.cell(name, folder, method, seed)
        rows.append(row)
        if args.json:
          print(json.dumps(row), flush=True)
        else:
          print(f"[{name}] {method} seed {seed}: "
                + ", ".join(f"{m} {row['test/' + m]:.4f}" for m in METRICS)
                + f" ({row['train_seconds']:.0f}s)", file=sys.stderr,
                flush=True)
  if not args.json:
    print(table(rows))
  if args.record:
    record(pathlib.Path(args.records), rows, args.record)
  plot = pathlib.Path(args.plot or bench.cache / "validation_ndcg10.png")
  plot_validation(bench.cache, rows, plot)
  print(f"validation curves: {plot}", file=sys.stderr)


if __name__ == "__main__":
  main()
