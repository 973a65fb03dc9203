"""One time-boxed generative quality run from a bundle, without TensorFlow.

For the accelerator machine (JAX, no TensorFlow / SeqIO / gin-config): a
bundle made here by `benchmarks/quality.py --bundle` (or `python -m
tasks.bundle`) carries the materialised splits, the semantic IDs, the gin
bindings and the gin package. This script

1. unpacks and verifies the bundle (`recjax.bundles.unpack_bundle`);
2. with `--steps auto`, times `--calibration_steps` training steps of the
   model and sets the step count that fills `--seconds` (the cosine
   schedule then decays fully inside the budget);
3. trains with validation `--evals` times, keeping the best checkpoint by
   validation NDCG@10, stopping at `--seconds` regardless
   (`TrainerConfig.max_train_seconds`);
4. evaluates the best checkpoint on the test split under both history
   policies (constrained beam of `NUM_DECODES`);
5. writes `result.json` (the row format of `benchmarks/quality.py --json`),
   `history.jsonl`, `eval_test.json` and `curves.png` to `--out` (default
   `$OUT`, else `runs/device_quality`).

  python benchmarks/device_quality.py \
      --bundle runs/bundles/Beauty-tiger-seed0.tar.gz \
      --experiment experiments/tiger_amazon_office.gin --seconds 420

Prints one line per stage and the test metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recjax import bundles  # noqa: E402

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
RESULT_FILES = ("history.jsonl", "curves.png", "eval_test.json")


def _run(entry: str, gin_files: Sequence[str], bindings: Sequence[str]
         ) -> Any:
  """Parses gin afresh and calls one entry point in this process."""
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin_utils.parse_gin(list(gin_files), list(bindings))
  return gin.get_configurable(entry)()


def _steps_per_second(model_dir: pathlib.Path) -> float:
  """Training speed of a calibration run, its first (compiling) row out."""
  rows = [json.loads(line) for line in
          (model_dir / "history.jsonl").read_text().splitlines()]
  rates = [r["train/steps_per_s"] for r in rows if "train/steps_per_s" in r]
  if not rates:
    raise SystemExit(f"calibration wrote no training rate to {model_dir}.")
  return rates[-1] if len(rates) > 1 else rates[0]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the stages above; returns the result row."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--bundle", required=True)
  parser.add_argument("--experiment", default=None,
                      help="gin file of the model and schedule, e.g. "
                      "experiments/tiger_amazon_beauty.gin")
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin files of the model and schedule (instead "
                      "of --experiment; what quality.py --bundle prints)")
  parser.add_argument("--seconds", type=float, default=420.0,
                      help="training budget (validations included)")
  parser.add_argument("--steps", default="auto",
                      help="training steps, or 'auto' to fill --seconds")
  parser.add_argument("--calibration_steps", type=int, default=200)
  parser.add_argument("--evals", type=int, default=4,
                      help="validations during training")
  parser.add_argument("--eval_share", type=float, default=0.25,
                      help="share of --seconds kept for validations when "
                      "--steps is auto")
  parser.add_argument("--seed", type=int, default=None,
                      help="training seed (default: the bundle's seed)")
  parser.add_argument("--gin", action="append", default=[],
                      help="extra gin binding (repeatable)")
  parser.add_argument("--work", default=None,
                      help="scratch directory (default: a temporary one)")
  parser.add_argument("--out", default=os.environ.get("OUT") or
                      str(REPO / "runs" / "device_quality"))
  args = parser.parse_args(argv)

  out = pathlib.Path(args.out).resolve()  # before the chdir below
  work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="recjax_dev_"))
  work = work.resolve()
  root = work / "bundle"
  t0 = time.time()
  info = bundles.unpack_bundle(args.bundle, root)
  print(f"bundle {args.bundle}: task {info['task']}, examples "
        f"{info['num_examples']} ({time.time() - t0:.0f} s)", flush=True)
  site = root / bundles.SITE_DIR
  if site.is_dir():
    sys.path.append(str(site))  # gin-config, where the host lacks it
  gin_files = ([args.experiment] if args.experiment else []) + list(
      args.gin_file)
  if not gin_files:
    parser.error("pass --experiment or --gin_file (the model's gin files)")
  # Found here, else on the gin search path.
  gin_files = [str(pathlib.Path(f).resolve()) if pathlib.Path(f).exists()
               else f for f in gin_files]
  os.chdir(root)  # bundle.gin's paths are relative to the bundle
  train_files = ["runs/train.gin", *gin_files, bundles.GIN_FILE]
  extra = info.get("extra", {})
  seed = args.seed if args.seed is not None else int(extra.get("seed", 0))
  common = [f"SEED = {seed}"] + list(args.gin)

  import jax  # pylint: disable=g-import-not-at-top
  # The calibration run's programs are reused by the real run.
  jax.config.update("jax_compilation_cache_dir", str(work / "jax_cache"))
  print(f"devices: {jax.devices()}", flush=True)
  steps = args.steps
  if steps == "auto":
    calib = work / "calibration"
    shutil.rmtree(calib, ignore_errors=True)
    n = args.calibration_steps
    _run("recjax.train.train", train_files, common + [
        f"MODEL_DIR = '{calib}'", f"TRAIN_STEPS = {n}",
        f"EVAL_PERIOD = {n}", "recjax.train.train.eval_dataset_cfg = None",
        f"recjax.trainer.TrainerConfig.log_period = {max(n // 2, 1)}"])
    rate = _steps_per_second(calib)
    steps = int(rate * args.seconds * (1.0 - args.eval_share))
    print(f"calibration: {rate:.1f} steps/s -> {steps} steps in "
          f"{args.seconds:.0f} s", flush=True)
  steps = max(int(steps), 1)
  run = work / "run"
  t_train = time.time()
  _run("recjax.train.train", train_files, common + [
      f"MODEL_DIR = '{run}'", f"TRAIN_STEPS = {steps}",
      f"EVAL_PERIOD = {max(steps // max(args.evals, 1), 1)}",
      f"recjax.trainer.TrainerConfig.max_train_seconds = {args.seconds}",
      f"recjax.trainer.TrainerConfig.log_period = {max(steps // 50, 1)}"])
  train_seconds = time.time() - t_train
  results = _run("recjax.eval.evaluate",
                 ["runs/eval.gin", *gin_files, bundles.GIN_FILE],
                 common + [f"MODEL_DIR = '{run}'"])
  row: dict[str, Any] = {
      "dataset": extra.get("dataset", info["task"]),
      "method": extra.get("method", "generative"),
      "seed": seed, "schedule": f"device-{steps}",
      "train_seconds": train_seconds, "device": str(jax.devices()[0]),
      "best_step": results.get("step")}
  for prefix in ("test", "test_excl"):
    for m in METRICS:
      row[f"{prefix}/{m}"] = float(results.get(f"{prefix}/{m}", "nan"))
  out.mkdir(parents=True, exist_ok=True)
  for name in RESULT_FILES:
    if (run / name).is_file():
      shutil.copy2(run / name, out / name)
  (out / "result.json").write_text(json.dumps(row, indent=2, sort_keys=True))
  print(json.dumps(row, sort_keys=True), flush=True)
  return row


if __name__ == "__main__":
  main()
