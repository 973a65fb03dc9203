"""`evaluate(...)`: test-set evaluation of a trained run (T5X style).

  python -m recjax.eval \
    --gin_file=runs/eval.gin --gin_file=experiments/tiger_movielens_100k.gin \
    --gin.MODEL_DIR=\"runs/tiger_ml100k\"

Restores the best (or latest) checkpoint, decodes the top-K items of every
user with constrained beam search, and reports Recall@K, NDCG@K, MRR, the
invalid-ID rate and coverage under both history policies: "all items"
(TIGER's protocol) and "seen items excluded" (the user's history is excluded
inside the beam). Writes `<model_dir>/eval_<split>.json` and, with
`--gin.recjax.eval.evaluate.write_predictions=True`, the ranked lists
(`predictions_<split>.npz`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from collections.abc import Callable

import jax

from recjax import checkpoints
from recjax import evaluation
from recjax import io_utils
from recjax import run_lib
from recjax.models.base import BaseModel
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie


def evaluate(*, model_dir: str, dataset_cfg: run_lib.DatasetConfig,
             model_fn: Callable[[SemanticIdLayout], BaseModel],
             eval_config: evaluation.EvalConfig | None = None,
             semantic_ids_dir: str | None = None,
             checkpoint: str = "best",
             both_history_policies: bool = True,
             write_predictions: bool = False,
             output_dir: str | None = None) -> dict[str, float]:
  """Evaluates a trained run on a split.

  Args:
    model_dir: the run directory.
    dataset_cfg: the split (usually 'test').
    model_fn: builds the model for the token layout (as in training).
    eval_config: beams, cut-offs and the default history policy.
    semantic_ids_dir: codes for the trie (default: the task's).
    checkpoint: 'best' or 'latest'.
    both_history_policies: report "all items" and, prefixed `excl/`,
      "seen items excluded".
    write_predictions: also write each policy's ranked lists to
      `predictions_<split>[_excl].npz` in `output_dir` (`items`, `scores`,
      `targets`; one row per user in split order, see
      `recjax.evaluation.Predictions`), for error analysis, re-ranking or
      significance tests.
    output_dir: where `eval_<split>.json` and the predictions are written
      (default: `model_dir`).

  Returns:
    `{f"{split}/{metric}": value}`.
  """
  eval_config = eval_config or evaluation.EvalConfig()
  cache = pathlib.Path(model_dir) / "data"
  batches = run_lib.open_batches(
      dataclasses.replace(dataset_cfg, shuffle=False), cache,
      remainder="pad", shard=False)
  ids = run_lib.load_semantic_ids(batches.directory, semantic_ids_dir)
  model = model_fn(ids.layout)
  ckpt = checkpoints.Checkpointer(model_dir, run_lib.model_meta(model, ids),
                                  best_metric="unused")
  params, step = ckpt.restore_params(best=checkpoint == "best")
  ckpt.close()
  params = jax.tree.map(jax.numpy.asarray, params)
  trie = ItemTrie.build(ids.codes, ids.layout)
  split = dataset_cfg.split
  policies = [eval_config.exclude_seen]
  if both_history_policies:
    policies = [False, True]
  results: dict[str, float] = {"step": step}
  out = pathlib.Path(output_dir or model_dir)
  for exclude in policies:
    evaluator = evaluation.RankingEvaluator(
        model, trie, dataclasses.replace(eval_config, exclude_seen=exclude))
    prefix = f"{split}_excl" if exclude else split
    predictions = evaluator.predict(params, batches.epoch(0))
    for k, v in evaluator.metrics(predictions).items():
      results[f"{prefix}/{k}"] = float(v)
    if write_predictions:
      io_utils.save_npz_atomic(out / f"predictions_{prefix}.npz",
                               **predictions._asdict())
  run_lib.write_json(out / f"eval_{split}.json", results)
  return results


if __name__ == "__main__":
  out = run_lib.gin_main("recjax.eval.evaluate", sys.argv[1:], __doc__)
  for key, value in sorted(out.items()):
    print(f"{key:<28} {value:.4f}")
