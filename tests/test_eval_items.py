"""Tests of recjax.eval_items: re-evaluating a trained item-level run."""

import json
import pathlib
import subprocess
import sys

import gin
import numpy as np
import pytest
import tiny_item_runs

from recjax import gin_utils
from recjax import metrics as metrics_lib
from recjax.checkpoints import CheckpointError
from recjax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
SYNTH = {"num_users": 50, "num_items": 25, "num_clusters": 3, "seed": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny SASRec trained for 20 steps, and its gin file."""
  return tiny_item_runs.train_sasrec(tmp_path_factory.mktemp("eval_items"),
                                     SYNTH, "EVAL_BATCH_SIZE = 16\n")


def _evaluate(gin_file, model_dir, **bindings):
  gin.clear_config()
  extra = [f"{k} = {v!r}" for k, v in bindings.items()]
  gin_utils.parse_gin(
      ["runs/train_items.gin", str(gin_file), "runs/eval_items.gin"],
      [f"MODEL_DIR = {str(model_dir)!r}"] + extra, finalize=False)
  try:
    return gin.get_configurable("recjax.eval_items.evaluate_items")()
  finally:
    gin.clear_config()


def test_reproduces_the_training_runs_test_metrics(trained, tmp_path):
  gin_file, model_dir, at_training = trained
  before = sorted(p.name for p in model_dir.iterdir())
  out = _evaluate(gin_file, model_dir, **{
      "recjax.eval_items.evaluate_items.write_predictions": True,
      "recjax.eval_items.evaluate_items.output_dir": str(tmp_path)})
  assert out["step"] == at_training["best_step"]
  for key, value in at_training.items():
    if key.startswith("test"):
      assert out[key] == pytest.approx(value, abs=1e-6), key
  # The run directory is left as it was; outputs go to output_dir.
  assert sorted(p.name for p in model_dir.iterdir()) == before
  assert json.loads((tmp_path / "eval_test.json").read_text()) == (
      pytest.approx(out))
  # The written lists are the ones scored: recompute the metrics.
  for prefix in ("test", "test_excl"):
    with np.load(tmp_path / f"predictions_{prefix}.npz") as f:
      items, scores, targets = f["items"], f["scores"], f["targets"]
    assert items.shape == scores.shape == (SYNTH["num_users"], 10)
    finite = np.where(np.isneginf(scores), -1e30, scores)
    assert (np.diff(finite, axis=1) <= 0).all()  # best first
    assert ((items == -1) == np.isneginf(scores)).all()
    again = metrics_lib.ranking_metrics(items, targets, ks=(1, 5, 10),
                                        num_items=SYNTH["num_items"])
    assert again["ndcg@10"] == pytest.approx(out[f"{prefix}/ndcg@10"])


def test_validation_split_matches_the_logged_validation(trained, tmp_path):
  gin_file, model_dir, at_training = trained
  out = _evaluate(gin_file, model_dir, EVAL_SPLIT="validation", **{
      "recjax.eval_items.evaluate_items.output_dir": str(tmp_path)})
  history = [json.loads(line) for line in
             (model_dir / "history.jsonl").read_text().splitlines()]
  logged = next(r for r in history if r["step"] == at_training["best_step"]
                and "validation/ndcg@10" in r)
  assert out["validation/ndcg@10"] == pytest.approx(
      logged["validation/ndcg@10"], abs=1e-6)
  assert "validation_excl/ndcg@10" in out
  assert not list(tmp_path.glob("predictions_*"))  # not asked for


def test_bad_split_checkpoint_and_run_dir(trained, tmp_path):
  gin_file, model_dir, _ = trained
  with pytest.raises(ConfigError, match="'validation' or 'test'"):
    _evaluate(gin_file, model_dir, EVAL_SPLIT="train")
  with pytest.raises(ConfigError, match="'best' or 'latest'"):
    _evaluate(gin_file, model_dir,
              **{"recjax.eval_items.evaluate_items.checkpoint": "newest"})
  with pytest.raises(CheckpointError, match="no best checkpoint"):
    _evaluate(gin_file, tmp_path / "empty")
  assert not (tmp_path / "empty").exists()  # nothing half-made
  # Another network than the run's: refused, not silently mis-restored.
  with pytest.raises(CheckpointError,
                     match=r"was written with a different model:\n"
                           r"(.|\n)*\"hidden_dim\": 32(.|\n)*Use another "
                           r"model_dir, or the same model configuration"):
    _evaluate(gin_file, model_dir,
              **{"recjax.models.sasrec.SASRecConfig.hidden_dim": 32})


def test_command_line(trained, tmp_path):
  gin_file, model_dir, at_training = trained
  proc = subprocess.run(
      [sys.executable, "-m", "recjax.eval_items",
       "--gin_file=runs/train_items.gin", f"--gin_file={gin_file}",
       "--gin_file=runs/eval_items.gin", f"--gin.MODEL_DIR='{model_dir}'",
       f"--gin.recjax.eval_items.evaluate_items.output_dir='{tmp_path}'"],
      cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = next(ln for ln in proc.stdout.splitlines()
              if ln.startswith("test/ndcg@10 "))
  assert float(line.split()[1]) == pytest.approx(
      at_training["test/ndcg@10"], abs=1e-4)
