"""Tests for tasks.bundle and recjax.bundles (TF-free runs from a bundle).

A tiny TIGER task is packed into a bundle; `benchmarks/device_quality.py`
then trains and evaluates from it in a subprocess in which TensorFlow,
SeqIO and TFDS cannot be imported, and its test metrics must equal those
of the same run through the SeqIO task in this process.
"""

import json
import os
import pathlib
import subprocess
import sys
import tarfile
import textwrap

import gin
import numpy as np
import pytest
import tiny_semantic_ids

from recjax import bundles
from recjax import gin_utils
from recjax import tasks
from recjax.errors import ConfigError
from recjax.tasks import bundle as bundle_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = (4, 4, 4)
TASK = "bundle_tiny_tiger"
STEPS, EVALS = 12, 2

_BLOCK_TF = textwrap.dedent("""
    import runpy, sys
    # None in sys.modules: `import tensorflow` raises ModuleNotFoundError
    # and importlib.util.find_spec says it is absent, as on a host without.
    for name in ("tensorflow", "seqio", "tensorflow_datasets",
                 "tensorflow_text"):
      sys.modules[name] = None
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """Registers the tiny task; returns (root, bundle path, experiment)."""
  root = tmp_path_factory.mktemp("bundle")
  sem = tiny_semantic_ids.write_random_codes(root / "semantic_ids", SIZES,
                                             60, num_user_buckets=10)
  tasks.register_tiger_task(TASK, "recjax_synthetic/tiny", str(sem),
                            data_dir=str(root / "tfds"), max_history=5,
                            num_user_buckets=10)
  experiment = root / "tiny_experiment.gin"
  experiment.write_text(textwrap.dedent("""
      include 'models/tiger_small.gin'
      BATCH_SIZE = 16
      WARMUP_STEPS = 2
      NUM_DECODES = 10
      LEARNING_RATE = 3e-3
      recjax.trainer.TrainerConfig.async_checkpoints = False
      """))
  path = bundle_lib.make_bundle(TASK, root / "out" / "tiny.tar.gz",
                                extra={"dataset": "Tiny",
                                       "method": "tiger"})
  return root, path, experiment


def test_bundle_contents_and_atomic_write(tiny):
  root, path, _ = tiny
  assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.tar.gz"]
  with tarfile.open(path) as tar:
    names = set(tar.getnames())
  assert {"bundle.gin", "bundle.json", "semantic_ids/codes.npy",
          "train/manifest.json", "validation/manifest.json",
          "test/manifest.json", "site/gin/__init__.py"} <= names
  info = bundles.unpack_bundle(path, root / "unpacked")
  assert info["task"] == TASK and info["extra"]["method"] == "tiger"
  assert info["vocabulary_fingerprint"] == tasks.get_vocabulary(
      TASK).fingerprint
  assert set(info["num_examples"]) == {"train", "validation", "test"}
  assert min(info["num_examples"].values()) > 0
  np.testing.assert_array_equal(
      np.load(root / "unpacked" / "semantic_ids" / "codes.npy"),
      np.load(root / "semantic_ids" / "codes.npy"))
  with pytest.raises(ConfigError, match="must end in .tar.gz"):
    bundle_lib.make_bundle(TASK, root / "x.zip")
  with pytest.raises(ConfigError, match="unknown|not registered|no task"):
    bundle_lib.make_bundle("no_such_task", root / "y.tar.gz")
  assert not (root / "y.tar.gz").exists()


def test_device_run_without_tensorflow_matches_the_task_run(tiny, tmp_path):
  root, path, experiment = tiny
  out = tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=str(REPO), OUT="")
  proc = subprocess.run(
      [sys.executable, "-c", _BLOCK_TF,
       str(REPO / "benchmarks" / "device_quality.py"), "--bundle",
       str(path), "--experiment", str(experiment), "--steps", str(STEPS),
       "--evals", str(EVALS), "--seconds", "600", "--work",
       str(tmp_path / "work"), "--out", str(out)],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  row = json.loads((out / "result.json").read_text())
  assert row["dataset"] == "Tiny" and row["method"] == "tiger"
  assert row["schedule"] == f"device-{STEPS}"
  assert {"history.jsonl", "eval_test.json", "result.json"} <= {
      p.name for p in out.iterdir()}

  # The same run through the SeqIO task (TensorFlow) in this process.
  model_dir = tmp_path / "task_run"
  bindings = [f"MIXTURE_OR_TASK_NAME = '{TASK}'", f"MODEL_DIR = '{model_dir}'",
              "SEED = 0", f"TRAIN_STEPS = {STEPS}",
              f"EVAL_PERIOD = {STEPS // EVALS}",
              "recjax.trainer.TrainerConfig.log_period = "
              f"{max(STEPS // 50, 1)}"]
  try:
    for files, entry in ((["runs/train.gin", str(experiment)],
                          "recjax.train.train"),
                         (["runs/eval.gin", str(experiment)],
                          "recjax.eval.evaluate")):
      gin.clear_config()
      gin_utils.parse_gin(files, bindings, finalize=False)
      results = gin.get_configurable(entry)()
  finally:
    gin.clear_config()
  for key in ("test/recall@5", "test/ndcg@10", "test_excl/recall@10",
              "test_excl/ndcg@5"):
    assert row[key] == pytest.approx(results[key], abs=1e-6), key


def test_steps_per_second_skips_the_compiling_row(tmp_path):
  sys.path.insert(0, str(REPO / "benchmarks"))
  try:
    import device_quality  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  (tmp_path / "history.jsonl").write_text(
      '{"step": 50, "train/steps_per_s": 2.0}\n'
      '{"step": 50, "validation/ndcg@10": 0.1}\n'
      '{"step": 100, "train/steps_per_s": 40.0}\n')
  assert device_quality._steps_per_second(tmp_path) == 40.0
  (tmp_path / "history.jsonl").write_text('{"step": 1}\n')
  with pytest.raises(SystemExit, match="no training rate"):
    device_quality._steps_per_second(tmp_path)
