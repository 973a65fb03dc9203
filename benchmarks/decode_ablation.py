"""Is a generative model's gap in its search? Beams, popularity, transitions.

A trained generative cell of `benchmarks/quality.py` is decoded again on a
split with several constrained beam widths (`recjax.eval.evaluate`, "all
items" policy, ranked lists written), and every list is re-ranked by

    log p(item | user) - alpha * log prior(item) + beta * log(1 + T(u, item)),

where `prior` is the item's add-one-smoothed popularity in the training
sequences and `T(u, item)` the `recjax.models.markov` transition score of the
item after user u's history (its decay chosen on validation); alpha =
beta = 0 is the model's own order. The top `--k` of each list are
scored. If a wider beam or a popularity correction lifted NDCG, the gap to
an item-level model would be in decoding; if neither does, it is in the
model's scores.
The transition bonus measures what the model misses of item-to-item
co-occurrence. Choose alpha and beta on `validation`, then read `test`.

  .venv/bin/python benchmarks/decode_ablation.py --dataset Office \\
      --method letter_tiger_calrec --seed 0 --split validation \\
      --beams 20,50,100 --alphas 0,0.1,0.2,0.5 --betas 0,1,3,10

The cell must have been trained (same `--schedule`). Prints a table with
Recall/NDCG@5/10 and coverage@10 and the ratio of NDCG@10 to the protocol
row (beam 20, alpha 0, beta 0) measured in the same run; the decodes are kept in
`runs/decode_ablation/<dataset>-<method>-<schedule>-seed<k>/`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402

from recjax import datasets  # noqa: E402
from recjax import metrics as metrics_lib  # noqa: E402
from recjax import pipeline  # noqa: E402
from recjax.models import markov  # noqa: E402
from recjax.models import registry  # noqa: E402

COLUMNS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "coverage@10")


def popularity_log_prior(ds: datasets.CanonicalDataset) -> np.ndarray:
  """Log of add-one-smoothed item frequencies in the training sequences.

  Args:
    ds: the dataset; counted are the items before each user's validation
      target (the training split's histories and targets).

  Returns:
    float64 `[num_items]`, log-probabilities that sum (in probability) to 1.
  """
  train = datasets.leave_one_out(ds, max_history=None)["train"]
  counts = np.bincount(np.concatenate([train.history_flat, train.targets]),
                       minlength=ds.num_items).astype(np.float64) + 1.0
  return np.log(counts / counts.sum())


def rerank(items: np.ndarray, scores: np.ndarray, log_prior: np.ndarray,
           alpha: float, k: int, transitions: np.ndarray | None = None,
           beta: float = 0.0) -> np.ndarray:
  """Top-`k` of each list by `scores - alpha * log_prior[item]
  + beta * log(1 + transitions)`.

  Args:
    items: int `[users, beams]`, -1 where the beam found no item.
    scores: float `[users, beams]` log-probabilities (or ranking scores).
    log_prior: float `[num_items]`.
    alpha: weight of the popularity correction (0 keeps the order).
    k: list length kept (at most `beams`).
    transitions: optional float `[users, beams]` >= 0, e.g. each beam
      item's `recjax.models.markov` transition score from the user's history.
    beta: weight of the transition bonus (0 ignores it).

  Returns:
    int `[users, k]`; -1 entries rank last; ties keep the beam order.

  Raises:
    ValueError: for `k` outside `[1, beams]` or mismatched shapes.
  """
  items = np.asarray(items)
  scores = np.asarray(scores, np.float64)
  if items.shape != scores.shape or items.ndim != 2:
    raise ValueError(f"items {items.shape} and scores {scores.shape} must "
                     "be the same [users, beams] shape.")
  if not 1 <= k <= items.shape[1]:
    raise ValueError(f"k={k} must be in [1, {items.shape[1]}] (the beams "
                     "decoded).")
  valid = items >= 0
  adjusted = scores - alpha * np.asarray(log_prior)[np.where(valid, items, 0)]
  if beta:
    if transitions is None or np.shape(transitions) != items.shape:
      raise ValueError(f"beta={beta} needs transitions of shape "
                       f"{items.shape}.")
    adjusted = adjusted + beta * np.log1p(np.asarray(transitions,
                                                     np.float64))
  adjusted = np.where(valid, adjusted, -np.inf)
  order = np.argsort(-adjusted, axis=1, kind="stable")
  return np.take_along_axis(items, order, axis=1)[:, :k]


def decode(bench: quality.Bench, data: pipeline.DataSource, method: str,
           seed: int, split: str, beams: int,
           out: pathlib.Path) -> dict[str, np.ndarray]:
  """Decodes `split` with `beams` beams; returns the written lists."""
  from recjax import eval as eval_lib  # pylint: disable=g-import-not-at-top
  path = out / f"predictions_{split}.npz"
  if not path.exists():
    run = bench.run_dir(data, method, seed)
    if not (run / "best").is_dir():
      raise SystemExit(
          f"{run} has no best checkpoint: train the cell first with "
          f"benchmarks/quality.py --datasets {data.name} --methods {method} "
          f"--seeds {seed} --schedule {bench.schedule}")
    eval_lib.evaluate_run(str(run), split, write_predictions=True,
                          output_dir=str(out),
                          bindings=[f"NUM_DECODES = {beams}"])
  with np.load(path) as f:
    return {key: f[key] for key in f.files}


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
  """Decodes, re-ranks and prints the table; returns its rows."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="Office")
  parser.add_argument("--data_root", default=str(REPO.parent / "shared" /
                                                 "data"))
  parser.add_argument("--method", default="letter_tiger_calrec",
                      choices=registry.list_methods(registry.GENERATIVE))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--schedule", default="cpu_long",
                      choices=("cpu", "cpu_long", "cpu_xl", "full"))
  parser.add_argument("--split", default="validation",
                      choices=("validation", "test"))
  parser.add_argument("--beams", default="20,50,100")
  parser.add_argument("--alphas", default="0,0.1,0.2,0.3,0.5")
  parser.add_argument("--betas", default="0",
                      help="weights of the transition bonus "
                      "(recjax.models.markov, decay chosen on validation)")
  parser.add_argument("--k", type=int, default=20,
                      help="list length scored (at most the smallest beam)")
  parser.add_argument("--cache_dir", default=str(REPO / "runs" /
                                                 "bench_quality"))
  parser.add_argument("--out", default=str(REPO / "runs" /
                                           "decode_ablation"))
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.chdir(REPO)
  beams = sorted({int(b) for b in args.beams.split(",") if b})
  alphas = [float(a) for a in args.alphas.split(",") if a]
  betas = [float(b) for b in args.betas.split(",") if b] or [0.0]
  if not beams or args.k > beams[0]:
    raise SystemExit(f"--k {args.k} needs every --beams >= it (got "
                     f"{args.beams}).")
  data = quality.data_source(args.dataset, pathlib.Path(args.data_root))
  bench = quality.Bench(pathlib.Path(args.cache_dir), args.schedule)
  ds, _ = bench.work.dataset(data)
  log_prior = popularity_log_prior(ds)
  chain = None
  if any(betas):
    splits = datasets.leave_one_out(ds, max_history=None)
    decay = markov.evaluate(ds)["markov/decay"]
    chain = markov.TransitionModel.fit(splits["train"], ds.num_items,
                                       markov.MarkovConfig(decay=decay))
    part = splits[args.split]
    histories = [part.history(i) for i in range(len(part))]
  cell = f"{args.dataset}-{args.method}-{args.schedule}-seed{args.seed}"
  rows = []
  for b in beams:
    pred = decode(bench, data, args.method, args.seed, args.split, b,
                  pathlib.Path(args.out) / cell / f"beam{b}")
    bonus = (chain.candidate_scores(histories, pred["items"])
             if chain is not None else None)
    for alpha in alphas:
      for beta in betas:
        ranked = rerank(pred["items"], pred["scores"], log_prior, alpha,
                        args.k, bonus, beta)
        m = metrics_lib.ranking_metrics(ranked, pred["targets"], ks=(5, 10),
                                        num_items=ds.num_items)
        rows.append({"beams": b, "alpha": alpha, "beta": beta,
                     **{c: float(m[c]) for c in COLUMNS}})
  base = next((r["ndcg@10"] for r in rows
               if r["beams"] == 20 and r["alpha"] == 0.0
               and r["beta"] == 0.0), rows[0]["ndcg@10"])
  print(f"{cell}, {args.split} ({len(pred['targets'])} users), top "
        f"{args.k} of each list:")
  print("| beams | alpha | beta | " + " | ".join(COLUMNS)
        + " | ndcg@10 ratio |")
  print("|---|---|---|" + "---|" * (len(COLUMNS) + 1))
  for r in rows:
    print(f"| {r['beams']} | {r['alpha']:g} | {r['beta']:g} | "
          + " | ".join(f"{r[c]:.4f}" for c in COLUMNS)
          + f" | {r['ndcg@10'] / base:.3f} |")
  (pathlib.Path(args.out) / cell / f"{args.split}.json").write_text(
      json.dumps(rows, indent=1))
  return rows


if __name__ == "__main__":
  main()
