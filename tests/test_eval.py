"""The bad-input catalogue of `python -m recjax.eval` (each by its message).

Runs on a tiny recorded LEARN run (tests/fixtures/pre_block/learn); the
happy path of every family is in tests/test_pipeline.py.
"""

import json
import pathlib
import shutil

import pytest

from recjax import checkpoints
from recjax import eval as eval_lib
from recjax.errors import ConfigError

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "pre_block"


@pytest.fixture
def run(tmp_path):
  """A copy of the recorded LEARN run and the bindings that locate its
  inputs here."""
  dest = tmp_path / "learn"
  shutil.copytree(FIXTURE / "learn", dest)
  bindings = [f"EMBEDDINGS_DIR = {str(FIXTURE / 'embeddings')!r}",
              "recjax.item_sequences.ItemDataConfig.cache_dir = "
              f"{str(tmp_path / 'item_data')!r}"]
  return dest, bindings


def _eval(run_dir, bindings, **kwargs):
  return eval_lib.evaluate_run(str(run_dir), bindings=bindings, **kwargs)


def test_bad_split_and_checkpoint_names(run):
  run_dir, bindings = run
  with pytest.raises(ConfigError, match=r"split='train': use 'validation' "
                     r"or 'test'\."):
    _eval(run_dir, bindings, split="train")
  with pytest.raises(ConfigError, match=r"checkpoint='last': use 'best' or "
                     r"'latest'\."):
    _eval(run_dir, bindings, checkpoint="last")


def test_missing_checkpoint_kind_names_the_folder(run):
  run_dir, bindings = run
  with pytest.raises(checkpoints.CheckpointError, match=r"no latest "
                     r"checkpoint in .*learn \(.*learn/checkpoints is "
                     r"missing\); train it first"):
    _eval(run_dir, bindings, checkpoint="latest")
  assert not (run_dir / "checkpoints").exists()  # Not created by the check.


def test_not_a_run_directory(tmp_path):
  with pytest.raises(ConfigError, match=r"nothing/run.json does not exist: "
                     r"it holds no trained run; train one first"):
    eval_lib.evaluate_run(str(tmp_path / "nothing"))


def test_damaged_run_descriptions_are_named(tmp_path):
  run_dir = tmp_path / "old"
  run_dir.mkdir()
  (run_dir / "stray.txt").write_text("x")
  with pytest.raises(ConfigError, match=r"it was written before runs "
                     r"described themselves; pass the run's gin files"):
    eval_lib.evaluate_run(str(run_dir))
  (run_dir / "run.json").write_text("{not json")
  with pytest.raises(ConfigError, match=r"old/run.json: not valid JSON "
                     r".*; re-train the run or restore the file\."):
    eval_lib.evaluate_run(str(run_dir))
  (run_dir / "run.json").write_text('{"kind": "item", "entry": "x"}')
  with pytest.raises(ConfigError, match=r"run.json has no 'inputs'; it is "
                     r"not a recjax run description\."):
    eval_lib.evaluate_run(str(run_dir))
  assert sorted(p.name for p in run_dir.iterdir()) == ["run.json",
                                                       "stray.txt"]


def test_unknown_kind_is_named(run):
  run_dir, bindings = run
  desc = json.loads((run_dir / "run.json").read_text())
  (run_dir / "run.json").write_text(json.dumps(dict(desc, kind="ranker")))
  with pytest.raises(ConfigError, match=r"learn/run.json: unknown kind "
                     r"'ranker'\."):
    _eval(run_dir, bindings)


def test_incomplete_run_directory(run):
  run_dir, bindings = run
  (run_dir / "config.gin").unlink()
  with pytest.raises(ConfigError, match=r"learn/config.gin is missing; the "
                     r"run directory is incomplete\."):
    _eval(run_dir, bindings)


def test_another_model_configuration_is_refused(run):
  run_dir, bindings = run
  with pytest.raises(checkpoints.CheckpointError, match=r"was written with a "
                     r"different model:(.|\n)*Use another model_dir, or the "
                     r"same model configuration as the checkpoint\."):
    _eval(run_dir, bindings + [
        "recjax.models.learn.DualEncoderConfig.mlp_dim = 8"])


def test_other_item_embeddings_are_refused(run, tmp_path):
  run_dir, bindings = run
  other = tmp_path / "emb"
  shutil.copytree(FIXTURE / "embeddings", other)
  table = next(other.glob("*.npy"))
  import numpy as np  # pylint: disable=g-import-not-at-top
  np.save(table, np.load(table)[:-1])
  with pytest.raises(ConfigError, match=r"emb/embeddings.npy does not match "
                     r"the checksum in manifest.json; the file was modified\. "
                     r"Re-run the embed stage\."):
    _eval(run_dir, [f"EMBEDDINGS_DIR = {str(other)!r}"] + bindings[1:])


def test_corrupt_checkpoint_names_the_step_and_the_fix(run):
  run_dir, bindings = run
  (step,) = [p for p in (run_dir / "best").iterdir() if p.name.isdigit()]
  for f in (step / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 100:
      f.write_bytes(b"\0" * 16)
  with pytest.raises(checkpoints.CheckpointError, match=rf"checkpoint "
                     rf".*best/{step.name} is corrupt or unreadable "
                     r"(.|\n)*Delete that step directory or retrain\."):
    _eval(run_dir, bindings)


def test_a_good_run_writes_its_metrics_once(run):
  run_dir, bindings = run
  out = _eval(run_dir, bindings)
  recorded = json.loads((run_dir / "test_metrics.json").read_text())
  assert out["test/ndcg@10"] == pytest.approx(recorded["test/ndcg@10"],
                                              abs=1e-6)
  written = json.loads((run_dir / "eval_test.json").read_text())
  assert written["test/ndcg@10"] == out["test/ndcg@10"]
