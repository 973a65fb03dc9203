"""`python -m recjax.eval`: evaluation of any trained run.

  python -m recjax.eval --model_dir=runs/quickstart/tiger [--split test]
      [--checkpoint best|latest] [--write_predictions] [--gin.NAME=VALUE]

reads what the run directory says about itself (`run.json`, `config.gin`)
and works for every family: generative, item-level and count baselines
(`evaluate_run`). The gin form of generative runs still works:

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

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import gin
import jax
import numpy as np

from recjax import checkpoints
from recjax import evaluation
from recjax import io_utils
from recjax import quiet
from recjax import run_lib
from recjax.errors import ConfigError
from recjax.errors import RecjaxError
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


def _train_arg(entry: str, name: str, default: Any = None) -> Any:
  """The training function's argument `name` as configured (or default)."""
  try:
    return run_lib.configured(f"{entry}.{name}")
  except ValueError:  # Not bound: the function's default.
    return default


def register_run_task(desc: Mapping[str, Any]) -> None:
  """Re-registers a generative run's TIGER task from its `run.json`."""
  task = desc["inputs"].get("tiger_task")
  if not task:
    return
  from recjax import tasks  # pylint: disable=g-import-not-at-top
  kwargs = dict(task)
  name, tfds_name = kwargs.pop("name"), kwargs.pop("tfds_name")
  tasks.register_tiger_task(name, tfds_name, **kwargs)


def evaluate_run(model_dir: str, split: str = "test",
                 checkpoint: str = "best", write_predictions: bool = False,
                 output_dir: str | None = None,
                 bindings: Sequence[str] = (),
                 decoding: str = "exact") -> dict[str, float]:
  """Evaluates any run directory from what it says about itself.

  Reads `run.json` and `config.gin` (see `run_lib.describe_run`), rebuilds
  the data and the model the run trained with, restores the checkpoint and
  ranks the catalog for every user of `split` under both history policies:
  constrained beam search for generative runs, full-catalog scores for
  item-level runs, the fitted counts for count baselines.

  Args:
    model_dir: the run directory.
    split: 'validation' or 'test'.
    checkpoint: 'best' (by validation) or 'latest'; count runs have one.
    write_predictions: also write the ranked lists
      (`predictions_<split>[_excl].npz`).
    output_dir: where `eval_<split>.json` and the lists go (default:
      `model_dir`).
    bindings: gin bindings applied over the run's config (e.g.
      `recjax.evaluation.EvalConfig.num_decodes = 50`).
    decoding: "exact", or an item-level family's approximate decoder
      (RPG: "graph" or "graph:BxExS[xX]"); results go to
      `eval_<split>_<decoder>.json`.

  Returns:
    `{"step": ..., f"{split}/<metric>": ..., f"{split}_excl/<metric>": ...}`.

  Raises:
    ConfigError: not a run directory, or a bad split / checkpoint.
  """
  if split not in ("validation", "test"):
    raise ConfigError(f"split={split!r}: use 'validation' or 'test'.")
  if checkpoint not in ("best", "latest"):
    raise ConfigError(f"checkpoint={checkpoint!r}: use 'best' or 'latest'.")
  desc = run_lib.read_run(model_dir)
  kind, entry = desc["kind"], desc["entry"]
  out = pathlib.Path(output_dir or model_dir)
  if decoding != "exact" and kind != "item":
    raise ConfigError(
        f"decoding={decoding!r}: {model_dir} is a {kind!r} run, which "
        "ranks by " + ("its counts" if kind == "count" else
                       "trie-constrained beam search") +
        "; only item-level families have other decoders (RPG: graph).")
  if kind == "count":
    from recjax import train_counts  # pylint: disable=g-import-not-at-top
    results, lists = train_counts.evaluate_counts(model_dir, desc, split)
    results = {"step": 0.0, **results}
    if write_predictions:
      for prefix in (split, f"{split}_excl"):
        io_utils.save_npz_atomic(
            out / f"predictions_{prefix}.npz",
            items=lists[prefix].astype(np.int32),
            scores=lists[f"{prefix}/scores"].astype(np.float32),
            targets=lists["targets"].astype(np.int32))
    run_lib.write_json(out / f"eval_{split}.json", results)
    return results
  if kind == "generative":
    register_run_task(desc)
  run_lib.parse_run_config(model_dir, bindings)
  try:
    if kind == "item":
      from recjax import eval_items  # pylint: disable=g-import-not-at-top
      return eval_items.evaluate_items(
          model_dir=str(model_dir), data=_train_arg(entry, "data"),
          model_fn=_train_arg(entry, "model_fn"),
          eval_config=_train_arg(entry, "eval_config"),
          embeddings_dir=_train_arg(entry, "embeddings_dir"), split=split,
          checkpoint=checkpoint, write_predictions=write_predictions,
          output_dir=output_dir, decoding=decoding)
    if kind != "generative":
      raise ConfigError(f"{model_dir}/{run_lib.RUN_FILE}: unknown kind "
                        f"{kind!r}.")
    cfg = (_train_arg(entry, "eval_dataset_cfg") or
           _train_arg(entry, "train_dataset_cfg"))
    cfg = dataclasses.replace(cfg, split=split, shuffle=False)
    return evaluate(
        model_dir=str(model_dir), dataset_cfg=cfg,
        model_fn=_train_arg(entry, "model_fn"),
        eval_config=_train_arg(entry, "eval_config"),
        semantic_ids_dir=_train_arg(entry, "semantic_ids_dir"),
        checkpoint=checkpoint, write_predictions=write_predictions,
        output_dir=output_dir)
  finally:
    gin.clear_config()


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
  """`--model_dir DIR [--split S]...` (any run), or gin files (legacy)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a.startswith("--gin_file") for a in argv):
    out = run_lib.gin_main("recjax.eval.evaluate", argv, __doc__)
  else:
    parser = argparse.ArgumentParser(
        prog="python -m recjax.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--split", default="test",
                        choices=("validation", "test"))
    parser.add_argument("--checkpoint", default="best",
                        choices=("best", "latest"))
    parser.add_argument("--write_predictions", action="store_true")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--decoding", default="exact",
                        help="exact, or graph[:BxExS[xX]] (RPG runs: beams "
                        "over the item graph)")
    quiet.add_verbose_flag(parser)
    args, rest = parser.parse_known_args(argv)
    bindings = run_lib.gin_bindings(parser, rest)
    quiet.configure_logging()
    try:
      out = evaluate_run(args.model_dir, args.split, args.checkpoint,
                         args.write_predictions, args.output_dir, bindings,
                         args.decoding)
    except RecjaxError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  for key, value in sorted(out.items()):
    print(f"{key:<28} {value:.4f}")
  return out


if __name__ == "__main__":
  main()
