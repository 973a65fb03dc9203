"""Why is test lower than validation? Seen and unseen transitions.

Under leave-one-out, the validation target follows the last item of the
training sequence, while the test target follows the validation target,
an interaction no model trained on. On Office, the pair (last history item,
target) occurs somewhere in the training sequences for 16% of validation
users but 12% of test users. A model whose hits concentrate on such seen
transitions (memorised co-occurrences) loses more from validation to test
than one that generalises.

For trained cells of `benchmarks/quality.py` this script ranks the
validation and test users again through `recjax.eval` from each run
directory (generative cells: constrained beam of 20; all items ranked, the
best checkpoint; `markov` is counted first if needed) and splits every
user by whether their transition was seen in training. It prints, per
cell and split, the share of seen-transition users, NDCG@10 in each group
and overall, the share of NDCG@10 that the seen group earns, and the
test/validation ratio; the "mix-only" ratio is what test/validation would
be if each group scored on test what it scored on validation (only the
share of seen transitions changing).

  .venv/bin/python benchmarks/val_test_gap.py --dataset Office \\
      --cells markov:-:0,sasrec_recbole:cpu:0,letter_tiger_calrec:cpu_long:0

The cells must have been trained (`markov` needs no training). The ranked
lists are kept in `runs/val_test_gap/<dataset>-<method>-<schedule>-seed<k>/`.
`--gin NAME=VALUE` (repeatable) selects the learned cells' variant, as
`quality.py --gin` trained it, e.g. RPG at tau 0.07:

  .venv/bin/python benchmarks/val_test_gap.py --dataset Office \
      --cells markov:-:0,rpg:cpu:0 \
      --gin recjax.models.rpg.RPGConfig.temperature=0.07
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402

from recjax import datasets  # noqa: E402
from recjax import eval as eval_lib  # noqa: E402
from recjax import metrics as metrics_lib  # noqa: E402
from recjax import pipeline  # noqa: E402
from recjax.models import registry  # noqa: E402

SPLITS = ("validation", "test")


def seen_transitions(ds: datasets.CanonicalDataset, split: str
                     ) -> np.ndarray:
  """Whether each user's (last history item, target) pair is in training.

  Args:
    ds: the dataset (every user has at least 3 items).
    split: 'validation' or 'test'.

  Returns:
    bool `[num_users]` in the split's (user) order: True where the pair
    occurs consecutively in some user's training sequence (the items
    before that user's validation target).
  """
  loo = datasets.leave_one_out(ds, max_history=None)
  train = loo["train"]
  # Training sequence of each user: its history, then its target.
  pairs = set()
  for i in range(len(train)):
    seq = np.append(train.history(i), train.targets[i])
    pairs.update(zip(seq[:-1].tolist(), seq[1:].tolist()))
  part = loo[split]
  last = part.history_flat[part.offsets[1:] - 1]
  return np.array([(int(a), int(b)) in pairs
                   for a, b in zip(last, part.targets)], bool)


def group_ndcg(items: np.ndarray, targets: np.ndarray, seen: np.ndarray,
               k: int = 10) -> dict[str, float]:
  """NDCG@k overall and in the seen / unseen groups.

  Args:
    items: int `[users, >= k]` ranked lists (-1 = none).
    targets: int `[users]`.
    seen: bool `[users]`.
    k: cut-off.

  Returns:
    `users`, `seen_share`, `ndcg`, `ndcg_seen`, `ndcg_unseen` and
    `seen_ndcg_share` (the fraction of the total NDCG earned by the seen
    group; nan when the total is 0).
  """
  items, targets = np.asarray(items), np.asarray(targets)
  seen = np.asarray(seen, bool)
  if not len(items) == len(targets) == len(seen):
    raise ValueError(f"{len(items)} lists, {len(targets)} targets and "
                     f"{len(seen)} flags must be one per user.")
  ranks = metrics_lib.target_ranks(items[:, :k], targets)
  gain = np.where(ranks > 0, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
  total = float(gain.sum())

  def mean(mask: np.ndarray) -> float:
    return float(gain[mask].mean()) if mask.any() else float("nan")

  return {"users": float(len(gain)), "seen_share": float(seen.mean()),
          "ndcg": float(gain.mean()), "ndcg_seen": mean(seen),
          "ndcg_unseen": mean(~seen),
          "seen_ndcg_share": (float(gain[seen].sum()) / total if total > 0
                              else float("nan"))}


def mix_only_ratio(val: dict[str, float], test: dict[str, float]) -> float:
  """Test/validation NDCG if each group kept its validation score."""
  expected = (test["seen_share"] * val["ndcg_seen"] +
              (1 - test["seen_share"]) * val["ndcg_unseen"])
  return expected / val["ndcg"]


def _predictions(bench: quality.Bench, data: pipeline.DataSource,
                 method: str, seed: int, split: str,
                 out: pathlib.Path) -> dict[str, np.ndarray]:
  """Ranked lists of a trained cell, all items, through `recjax.eval`."""
  path = out / f"predictions_{split}.npz"
  if not path.exists():
    run = bench.run_dir(data, method, seed)
    if registry.get_method(method).kind == registry.COUNT:
      bench.cell(data, method, seed)  # Counting takes seconds.
    eval_lib.evaluate_run(str(run), split, write_predictions=True,
                          output_dir=str(out))
  with np.load(path) as f:
    return {key: f[key] for key in f.files}


def _parse_cells(spec: str) -> list[tuple[str, str, int]]:
  cells = []
  for part in filter(None, spec.split(",")):
    fields = part.split(":")
    if len(fields) != 3 or not fields[2].isdigit():
      raise SystemExit(f"--cells entry {part!r}: expected "
                       "METHOD:SCHEDULE:SEED, e.g. sasrec_recbole:cpu:0.")
    if fields[0] not in registry.list_methods():
      raise SystemExit(f"--cells entry {part!r}: unknown method; choose "
                       f"from {registry.list_methods()}.")
    cells.append((fields[0], fields[1], int(fields[2])))
  return cells


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Ranks, groups and prints the table; returns its rows."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="Office")
  parser.add_argument("--data_root", default=str(REPO.parent / "shared" /
                                                 "data"))
  parser.add_argument("--cells", required=True,
                      help="METHOD:SCHEDULE:SEED,... (trained cells)")
  parser.add_argument("--cache_dir", default=str(REPO / "runs" /
                                                 "bench_quality"))
  parser.add_argument("--out", default=str(REPO / "runs" / "val_test_gap"))
  parser.add_argument("--gin", action="append", default=[],
                      metavar="NAME=VALUE",
                      help="gin binding of the learned cells' variant "
                      "(as quality.py --gin); count cells ignore it")
  args = parser.parse_args(argv)
  cells = _parse_cells(args.cells)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.chdir(REPO)
  data = quality.data_source(args.dataset, pathlib.Path(args.data_root))
  ds, _ = quality.Bench(pathlib.Path(args.cache_dir), "cpu").work.dataset(
      data)
  seen = {split: seen_transitions(ds, split) for split in SPLITS}
  targets = {split: datasets.leave_one_out(ds)[split].targets
             for split in SPLITS}
  rows = []
  for method, schedule, seed in cells:
    learned = registry.get_method(method).kind != registry.COUNT
    extra = tuple(args.gin) if learned else ()
    bench = quality.Bench(pathlib.Path(args.cache_dir), schedule,
                          extra_gin=extra)
    tag = quality.variant_tag(bench.variant)
    out = (pathlib.Path(args.out) / f"{args.dataset}-{method}-{schedule}"
           f"{'-' + tag if tag else ''}-seed{seed}")
    found = {}
    for split in SPLITS:
      pred = _predictions(bench, data, method, seed, split, out)
      if not np.array_equal(pred["targets"], targets[split]):
        raise SystemExit(f"{out}: the {split} lists are not in the split's "
                         "user order; delete the folder and rerun.")
      found[split] = group_ndcg(pred["items"], pred["targets"], seen[split])
    for split in SPLITS:
      label = f"{method} [{', '.join(extra)}]" if extra else method
      rows.append({"method": label, "schedule": schedule, "seed": seed,
                   "split": split, **found[split]})
    rows[-1]["test_over_validation"] = (found["test"]["ndcg"] /
                                        found["validation"]["ndcg"])
    rows[-1]["mix_only_ratio"] = mix_only_ratio(found["validation"],
                                                found["test"])
  print(f"{args.dataset}: NDCG@10 (all items) by whether the user's (last "
        "history item, target) transition occurs in the training sequences")
  print("| method | schedule | seed | split | seen share | ndcg@10 | "
        "seen | unseen | NDCG from seen | test/val | mix-only test/val |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    ratios = ("", "")
    if "test_over_validation" in r:
      ratios = (f"{r['test_over_validation']:.2f}",
                f"{r['mix_only_ratio']:.2f}")
    print(f"| {r['method']} | {r['schedule']} | {r['seed']} | {r['split']} "
          f"| {r['seen_share']:.3f} | {r['ndcg']:.4f} | {r['ndcg_seen']:.4f} "
          f"| {r['ndcg_unseen']:.4f} | {r['seen_ndcg_share']:.2f} | "
          f"{ratios[0]} | {ratios[1]} |")
  pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
  (pathlib.Path(args.out) / f"{args.dataset}.json").write_text(
      json.dumps(rows, indent=1))
  return rows


if __name__ == "__main__":
  main()
