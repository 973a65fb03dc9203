"""Tests of recjax.deprecation: old imports, old gin names, old run dirs."""

import json
import pathlib
import shutil
import warnings

import gin
import pytest
import tiny_item_runs

from recjax import deprecation
from recjax import gin_utils
from recjax.models import learn
from recjax.models import sasrec
from recjax.models import tiger

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
PRE = FIXTURES / "pre_families"


@pytest.mark.parametrize("old, name, new", [
    ("recjax.sequential", "SASRecConfig", sasrec.SASRecConfig),
    ("recjax.dual_encoder", "DualEncoderConfig", learn.DualEncoderConfig),
    ("recjax.run_lib", "make_encoder_decoder", tiger.make_encoder_decoder),
    ("recjax.models", "EncoderDecoderModel", tiger.EncoderDecoderModel),
])
def test_old_imports_resolve_with_a_warning(old, name, new):
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(old)
  with pytest.warns(FutureWarning, match=rf"{old}\.{name} moved to "
                    r"recjax\.models\.[\w.]+; the old name will be "
                    "removed"):
    assert getattr(module, name) is new
  with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
    _ = module.Nope


def test_every_gin_alias_names_a_registered_configurable():
  gin_utils.register_all()
  for (old_module, name), new_module in deprecation.GIN_ALIASES.items():
    assert gin.get_configurable(f"{old_module}.{name}")
    assert gin.get_configurable(f"{new_module}.{name}")


def test_old_gin_names_build_the_same_object():
  gin.clear_config()
  try:
    gin_utils.parse_gin([], [
        "recjax.sequential.SASRecConfig.hidden_dim = 32",
        "recjax.models.sasrec.SASRecConfig.num_layers = 3"],
        finalize=False)
    with pytest.warns(FutureWarning, match="recjax.sequential.SASRecConfig "
                      "moved to recjax.models.sasrec.SASRecConfig"):
      old = gin.get_configurable("recjax.sequential.SASRecConfig")()
    new = gin.get_configurable("recjax.models.sasrec.SASRecConfig")()
  finally:
    gin.clear_config()
  assert isinstance(old, sasrec.SASRecConfig)
  assert old.hidden_dim == 32 and new.num_layers == 3


def test_shipped_gin_files_use_no_old_name():
  gin_dir = pathlib.Path(gin_utils.default_search_paths()[0])
  old_names = {f"{m}.{n}" for m, n in deprecation.GIN_ALIASES}
  for path in gin_dir.rglob("*.gin"):
    text = path.read_text()
    for name in old_names:
      assert name not in text, (path, name)


def test_sasrec_run_written_before_the_move_restores(tmp_path):
  """A run of the old flat layout evaluates to its recorded test metrics."""
  run = tmp_path / "sasrec"
  shutil.copytree(PRE / "sasrec", run)
  synth = {"num_users": 40, "num_items": 20, "num_clusters": 3, "seed": 1}
  gin_file = tiny_item_runs.sasrec_gin(tmp_path, synth,
                                       "EVAL_BATCH_SIZE = 16\n")
  gin.clear_config()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", FutureWarning)  # New names only.
      gin_utils.parse_gin(
          ["runs/train_items.gin", str(gin_file), "runs/eval_items.gin"],
          [f"MODEL_DIR = {str(run)!r}"], finalize=False)
      out = gin.get_configurable("recjax.eval_items.evaluate_items")()
  finally:
    gin.clear_config()
  recorded = json.loads((PRE / "sasrec" / "metrics.json").read_text())
  assert out["step"] == recorded["best_step"] == 20
  compared = [k for k in recorded if k.startswith("test")]
  assert len(compared) >= 10
  for key in compared:
    assert out[key] == pytest.approx(recorded[key], abs=1e-6), key


def test_tiger_run_written_before_the_move_restores(tmp_path):
  run = tmp_path / "tiger"
  shutil.copytree(PRE / "tiger", run)
  gin.clear_config()
  try:
    gin_utils.parse_gin(
        ["runs/eval.gin", "models/tiger_small.gin"],
        [f"MODEL_DIR = {str(run)!r}", "MIXTURE_OR_TASK_NAME = None",
         "NUM_DECODES = 10", "BATCH_SIZE = 16",
         f"eval/recjax.run_lib.DatasetConfig.numpy_dir = "
         f"{str(run / 'test_batches')!r}",
         f"recjax.eval.evaluate.semantic_ids_dir = "
         f"{str(run / 'semantic_ids')!r}"], finalize=False)
    out = gin.get_configurable("recjax.eval.evaluate")()
  finally:
    gin.clear_config()
  recorded = json.loads((PRE / "tiger" / "eval_test.json").read_text())
  assert set(out) == set(recorded)
  for key, value in recorded.items():
    assert out[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("method", ["learn", "lite"])
def test_run_of_the_old_learn_lite_stack_restores(method, tmp_path):
  """LEARN/LITE runs saved with the old flat block parameter names (before
  both moved onto `layers.Block`) evaluate to their recorded test metrics."""
  from recjax import eval as eval_lib  # pylint: disable=g-import-not-at-top
  fixture = FIXTURES / "pre_block"
  run = tmp_path / method
  shutil.copytree(fixture / method, run)
  block = (run / "config.gin").read_text()
  assert "EMBEDDINGS_DIR" in block
  out = eval_lib.evaluate_run(str(run), output_dir=str(tmp_path), bindings=[
      f"EMBEDDINGS_DIR = {str(fixture / 'embeddings')!r}",
      "recjax.item_sequences.ItemDataConfig.cache_dir = "
      f"{str(tmp_path / 'item_data')!r}"])
  recorded = json.loads((run / "test_metrics.json").read_text())
  assert len(recorded) >= 4
  for key, value in recorded.items():
    assert out[key] == pytest.approx(value, abs=1e-6), key
