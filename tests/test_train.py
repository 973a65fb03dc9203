"""End-to-end tests of the train / eval / infer entry points (gin, Orbax).

A tiny TIGER task over `recjax_synthetic/tiny` with random semantic IDs is
registered by a small module that the gin file imports, as T5X users do.
"""

import itertools
import json
import os
import pathlib
import sys
import textwrap

import gin
import numpy as np
import pytest
import tiny_semantic_ids

from recjax import checkpoints
from recjax import gin_utils
from recjax import metrics as metrics_lib
from recjax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = (4, 4, 4)


def _write_task(root: pathlib.Path, name: str) -> pathlib.Path:
  """Codes, a task-registering module and a gin file; returns the gin."""
  sem = tiny_semantic_ids.write_random_codes(root / "semantic_ids", SIZES,
                                             60, num_user_buckets=10)
  (root / f"{name}_module.py").write_text(textwrap.dedent(f"""
      from recjax import tasks
      tasks.register_tiger_task(
          {name!r}, "recjax_synthetic/tiny", {str(sem)!r},
          data_dir={str(root / 'tfds')!r}, max_history=5,
          num_user_buckets=10)
      """))
  gin_file = root / f"{name}.gin"
  gin_file.write_text(textwrap.dedent(f"""
      import {name}_module
      include 'models/tiger_small.gin'
      MIXTURE_OR_TASK_NAME = {name!r}
      MODEL_DIR = {str(root / 'model')!r}
      TRAIN_STEPS = 30
      BATCH_SIZE = 16
      WARMUP_STEPS = 2
      EVAL_PERIOD = 10
      NUM_DECODES = 10
      LEARNING_RATE = 3e-3
      recjax.trainer.TrainerConfig.log_period = 10
      recjax.trainer.TrainerConfig.async_checkpoints = False
      """))
  return gin_file


_TASK_IDS = itertools.count()


@pytest.fixture
def task_gin(tmp_path, monkeypatch):
  """Each test's own task (own name, own module, own semantic IDs).

  With one shared name, the task module imported by the first test's gin
  file would stay in Python's import cache and later tests would train on
  its semantic IDs.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  monkeypatch.syspath_prepend(str(tmp_path))
  gin.clear_config()
  name = f"tiny_tiger_{next(_TASK_IDS)}_{os.getpid()}"
  try:
    yield _write_task(tmp_path, name)
  finally:
    gin.clear_config()
    sys.modules.pop(f"{name}_module", None)
    if name in seqio.TaskRegistry.names():
      seqio.TaskRegistry.remove(name)


def _task_name(gin_file: pathlib.Path) -> str:
  return gin_file.stem


def _parse(files, bindings=()):
  gin.clear_config()
  gin_utils.parse_gin([str(f) for f in files], list(bindings),
                      finalize=False)


def test_train_eval_infer(task_gin, tmp_path):
  _parse(["runs/train.gin", task_gin], ["MAX_EVAL_EXAMPLES = 20"])
  state = gin.get_configurable("recjax.train.train")()
  assert int(state.step) == 30
  model_dir = tmp_path / "model"
  assert (model_dir / "curves.png").exists()
  history = [json.loads(x) for x in open(model_dir / "history.jsonl")]
  assert any("validation/ndcg@10" in r for r in history)
  # Validation on whole leading batches: 2 of 16 of the 100 users.
  assert [r["validation/num_examples"] for r in history
          if "validation/num_examples" in r] == [32, 32, 32]
  assert sorted(p.name for p in (model_dir / "checkpoints").iterdir()
                if p.name.isdigit()) == ["10", "20", "30"]
  assert any(p.name.isdigit() for p in (model_dir / "best").iterdir())

  _parse(["runs/eval.gin", task_gin],
         ["recjax.eval.evaluate.write_predictions = True"])
  results = gin.get_configurable("recjax.eval.evaluate")()
  for key in ("test/recall@5", "test/ndcg@5", "test_excl/recall@5",
              "test/invalid_rate", "test/mrr"):
    assert key in results
  assert results["test/invalid_rate"] == 0.0
  assert json.loads((model_dir / "eval_test.json").read_text()) == results
  # The written ranked lists reproduce the reported metrics.
  ks = sorted(int(k.split("@")[1]) for k in results
              if k.startswith("test/recall@"))
  for prefix in ("test", "test_excl"):
    with np.load(model_dir / f"predictions_{prefix}.npz") as f:
      again = metrics_lib.ranking_metrics(f["items"], f["targets"],
                                          ks=tuple(ks), num_items=60)
      assert f["items"].shape == (100, max(ks))
      assert np.all(np.diff(f["scores"], axis=1) <= 1e-6)
    for k, v in again.items():
      assert results[f"{prefix}/{k}"] == pytest.approx(v), k

  from recjax import datasets  # pylint: disable=g-import-not-at-top
  ds = datasets.load("synthetic", num_users=100, num_items=60,
                     num_clusters=6, seed=0)
  ds.save(tmp_path / "dataset")
  hist = tmp_path / "hist.jsonl"
  hist.write_text(json.dumps({"user_id": "u1", "history": ["i1", "i2",
                                                           "nope"]}) + "\n")
  _parse(["runs/infer.gin", task_gin], [
      f"DATASET_DIR='{tmp_path / 'dataset'}'",
      f"SEMANTIC_IDS_DIR='{tmp_path / 'semantic_ids'}'",
      f"OUTPUT='{tmp_path / 'recs.jsonl'}'", f"HISTORIES='{hist}'",
      "NUM_DECODES=10",  # num_user_buckets: read from the run (10).
      "recjax.infer.infer.max_history=5"])
  gin.get_configurable("recjax.infer.infer")()
  lines = [json.loads(x) for x in open(tmp_path / "recs.jsonl")]
  assert lines[0]["user_id"] == "u1" and len(lines[0]["items"]) == 10
  assert set(lines[0]["items"]) <= set(ds.items.original_ids)
  assert lines[0]["unknown_items"] == ["nope"]
  assert lines[0]["scores"] == sorted(lines[0]["scores"], reverse=True)

  hist.write_text('{"user_id": "u1", "history": ["i1"]}\n{broken\n')
  with pytest.raises(ConfigError, match=r"hist.jsonl:2: not valid JSON"):
    gin.get_configurable("recjax.infer.infer")()


def test_checkpoint_of_another_model_refused(task_gin, tmp_path):
  _parse(["runs/train.gin", task_gin], ["TRAIN_STEPS=4", "EVAL_PERIOD=0"])
  gin.get_configurable("recjax.train.train")()
  (config,) = tmp_path.rglob("config.gin")
  described = config.read_text()
  _parse(["runs/train.gin", task_gin], [
      "TRAIN_STEPS=6", "EVAL_PERIOD=0",
      "recjax.network.TransformerConfig.emb_dim = 32"])
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"(?s)was written with a different model:.*"
                     r'"emb_dim": 16.*"emb_dim": 32.*Use another model_dir'):
    gin.get_configurable("recjax.train.train")()
  # The refused resume leaves the run's description as it was.
  assert config.read_text() == described


def test_checkpoint_of_another_vocabulary_refused(task_gin, tmp_path):
  """Same model, other semantic IDs: the run directory refuses them."""
  from recjax import tasks  # pylint: disable=g-import-not-at-top
  _parse(["runs/train.gin", task_gin], ["TRAIN_STEPS=4", "EVAL_PERIOD=0"])
  gin.get_configurable("recjax.train.train")()
  other = tiny_semantic_ids.write_random_codes(
      tmp_path / "other_ids", SIZES, 60, num_user_buckets=10, seed=1)
  tasks.register_tiger_task(
      _task_name(task_gin), "recjax_synthetic/tiny", str(other),
      data_dir=str(tmp_path / "tfds"), max_history=5, num_user_buckets=10)
  _parse(["runs/train.gin", task_gin], ["TRAIN_STEPS=6", "EVAL_PERIOD=0"])
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"(?s)checkpoints/4 was written with a different "
                     r"vocabulary:.*\"fingerprint\": \"[0-9a-f]{64}\".*"
                     r"same vocabulary configuration as the checkpoint"):
    gin.get_configurable("recjax.train.train")()


def test_bad_max_eval_examples(task_gin):
  _parse(["runs/train.gin", task_gin], ["MAX_EVAL_EXAMPLES = 0"])
  with pytest.raises(ConfigError, match="max_eval_examples must be >= 1"):
    gin.get_configurable("recjax.train.train")()


def test_unregistered_task(tmp_path):
  _parse(["runs/train.gin", "models/tiger_small.gin"], [
      "MIXTURE_OR_TASK_NAME='no_such_task'", f"MODEL_DIR='{tmp_path}'",
      "TRAIN_STEPS=4", "WARMUP_STEPS=1"])
  with pytest.raises(ConfigError, match="no_such_task"):
    gin.get_configurable("recjax.train.train")()
  gin.clear_config()


def test_feature_lengths_too_short(task_gin, tmp_path):
  _parse(["runs/train.gin", task_gin],
         ["TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 4}"])
  with pytest.raises(ConfigError, match=r"feature length inputs=8 is too "
                     r"short; it needs 16 \(1 user token \+ 5 items x 3 "
                     r"levels\)\. Set the task feature lengths to at least "
                     r"\{'inputs': 16, 'targets': 4\}"):
    gin.get_configurable("recjax.train.train")()
