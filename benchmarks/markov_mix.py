"""Benchmark: an item-level run mixed with the transition baseline.

`benchmarks/val_test_gap.py` shows where a learned model and `markov`
differ: `markov` wins on transitions seen in training (memorised item
pairs), a code- or text-based model on unseen ones. This script mixes
the two distributions of the next item,

  p(i) = (1 - w) * softmax(model scores)(i) + w * markov(i) / sum markov,

picks `w` from a grid on validation NDCG@10 (all items), and reports test
under both history policies, beside each part alone, all from one run
directory (the best checkpoint) and the same splits:

  .venv/bin/python benchmarks/markov_mix.py --model_dir RUN

RUN is any item-level run (`rpg`, `sasrec_recbole`, `vqrec`, ...), e.g.
`<cache>/Office/rpg-cpu/seed0` of `benchmarks/quality.py`. `markov`'s
history decay is its own validation choice (`recjax.models.markov`).
`benchmarks/quality.py --markov_mix` records the chosen mixture of every
item-level cell as a row of its own (`evaluate_mix`).
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

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
K = 20


def _softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(axis=1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=1, keepdims=True)


def mixed_lists(model_scores: np.ndarray, markov_scores: np.ndarray,
                weights: Sequence[float], exclude: Sequence[np.ndarray]
                | None = None, k: int = K) -> dict[float, np.ndarray]:
  """Top-`k` lists of every mixture weight for one block of users.

  Args:
    model_scores: float `[n, num_items]` (softmax logits).
    markov_scores: float `[n, num_items]`, non-negative.
    weights: mixture weights of `markov`.
    exclude: per-user items removed from the lists, or None.
    k: list length.

  Returns:
    `{w: int64 [n, k]}`, -1 past a user's last candidate.
  """
  p_model = _softmax(np.asarray(model_scores, np.float64))
  m = np.maximum(np.asarray(markov_scores, np.float64), 0.0)
  p_markov = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-300)
  out = {}
  for w in weights:
    p = (1 - w) * p_model + w * p_markov
    if exclude is not None:
      for r, items in enumerate(exclude):
        items = np.asarray(items, np.int64)
        p[r, items[items >= 0]] = -1.0
    top = np.argpartition(-p, k - 1, axis=1)[:, :k]
    top_p = np.take_along_axis(p, top, 1)
    order = np.argsort(-top_p, axis=1, kind="stable")
    # Excluded items (p = -1) never count: -1, as `top_k_items` returns
    # when a user has fewer than `k` candidates left.
    out[w] = np.where(np.take_along_axis(top_p, order, 1) < 0, -1,
                      np.take_along_axis(top, order, 1))
  return out


def evaluate_mix(model_dir: str, block: int = 1024,
                 weights: Sequence[float] = WEIGHTS) -> dict[str, Any]:
  """Every mixture weight of one run on validation and test.

  Args:
    model_dir: an item-level run directory (its best checkpoint is used).
    block: users scored at once.
    weights: the grid of `markov` weights.

  Returns:
    `{"weight": w chosen on validation N@10 (all items; ties to the
    smaller w), "markov/decay": markov's own validation choice, "step":
    the checkpoint's step, "validation" / "test" / "test_excl": {w:
    metrics}}`.
  """
  import jax  # pylint: disable=g-import-not-at-top

  from recjax import eval_items  # pylint: disable=g-import-not-at-top
  from recjax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from recjax.models import markov  # pylint: disable=g-import-not-at-top

  item_data, model, params, step = eval_items.load_run(model_dir)
  ds = item_data.dataset
  chosen = markov.evaluate(ds)["markov/decay"]
  counts = markov.TransitionModel.fit(
      item_data.splits["train"], ds.num_items,
      markov.MarkovConfig(decay=chosen))
  score_fn = jax.jit(model.item_scores)

  def lists(split: str, exclude: bool) -> dict[float, np.ndarray]:
    part = item_data.splits[split]
    histories = [part.history(i) for i in range(len(part))]
    model_rows = []
    for batch in item_data.eval_batches(split):  # Last batch masked.
      s = np.asarray(score_fn(params, {"input_items":
                                       batch["input_items"]}))
      model_rows.append(s[np.asarray(batch["mask"], bool)])
    scores = np.concatenate(model_rows)
    out: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    for start in range(0, len(part), block):
      stop = min(start + block, len(part))
      got = mixed_lists(scores[start:stop],
                        counts.scores(histories[start:stop]), weights,
                        histories[start:stop] if exclude else None)
      for w, v in got.items():
        out[w].append(v)
    return {w: np.concatenate(v) for w, v in out.items()}

  def evaluate(split: str, exclude: bool) -> dict[float, dict[str, float]]:
    targets = item_data.splits[split].targets
    return {w: {k: float(v) for k, v in metrics_lib.ranking_metrics(
        ranked, targets, num_items=ds.num_items).items()}
            for w, ranked in lists(split, exclude).items()}

  val = evaluate("validation", False)
  best = max(weights, key=lambda w: (val[w]["ndcg@10"], -w))
  return {"weight": float(best), "markov/decay": float(chosen),
          "step": int(step), "validation": val,
          "test": evaluate("test", False),
          "test_excl": evaluate("test", True)}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--block", type=int, default=1024,
                      help="users scored at once")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  res = evaluate_mix(args.model_dir, args.block)
  best, val = res["weight"], res["validation"]
  test, test_excl = res["test"], res["test_excl"]
  rows = {"model": 0.0, f"mix (w={best:g}, chosen on validation)": best,
          "markov": 1.0}
  print(f"{args.model_dir} (step {res['step']}), markov decay "
        f"{res['markov/decay']:g}")
  print("| | val N@10 | R@10 | N@10 | excl R@10 | excl N@10 |")
  print("|---|---|---|---|---|---|")
  for name, w in rows.items():
    print(f"| {name} | {val[w]['ndcg@10']:.4f} | "
          f"{test[w]['recall@10']:.4f} | {test[w]['ndcg@10']:.4f} | "
          f"{test_excl[w]['recall@10']:.4f} | "
          f"{test_excl[w]['ndcg@10']:.4f} |")
  print("validation N@10 by w: " + ", ".join(
      f"{w:g}: {val[w]['ndcg@10']:.4f}" for w in WEIGHTS))
  result = {"weight": best, "markov/decay": res["markov/decay"],
            **{f"test/{k}": v for k, v in test[best].items()},
            **{f"test_excl/{k}": v for k, v in test_excl[best].items()}}
  if args.json:
    print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
