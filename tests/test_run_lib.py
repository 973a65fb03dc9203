"""Tests for recjax.run_lib: split locations, semantic IDs, gin entry."""

import json

import gin
import numpy as np
import pytest

from recjax import network
from recjax import run_lib
from recjax.errors import ConfigError
from recjax.models import tiger
from recjax.numpy_batches import FORMAT_VERSION
from recjax.numpy_batches import vocabulary_fingerprint
from recjax.tokens import SemanticIdLayout

LAYOUT = SemanticIdLayout((4, 4, 2), 3)
CODES = np.array([[0, 1, 0], [3, 2, 1], [1, 1, 0]], np.int32)


def _batches_dir(tmp_path, codes=CODES, layout=LAYOUT):
  d = tmp_path / "batches"
  d.mkdir()
  (d / "manifest.json").write_text(json.dumps({
      "format_version": FORMAT_VERSION, "num_examples": 0, "features": {},
      "task": "unused",
      "vocabulary": {"layout": layout.describe(),
                     "fingerprint": vocabulary_fingerprint(
                         layout.describe(), codes)}}))
  return d


def _codes_dir(tmp_path, codes, name="sem"):
  d = tmp_path / name
  d.mkdir()
  np.save(d / "codes.npy", codes)
  return d


def test_materialized_dir_prefers_numpy_dir(tmp_path):
  cfg = run_lib.DatasetConfig(numpy_dir=str(tmp_path / "x"))
  assert run_lib.materialized_dir(cfg, tmp_path / "cache") == tmp_path / "x"
  with pytest.raises(ConfigError, match="needs mixture_or_task_name or "
                     "numpy_dir"):
    run_lib.materialized_dir(run_lib.DatasetConfig(), tmp_path)


def test_load_semantic_ids_checks_the_fingerprint(tmp_path):
  batches = _batches_dir(tmp_path)
  ids = run_lib.load_semantic_ids(batches, str(_codes_dir(tmp_path, CODES)))
  assert ids.layout == LAYOUT
  np.testing.assert_array_equal(ids.codes, CODES)
  assert ids.fingerprint == vocabulary_fingerprint(LAYOUT.describe(), CODES)
  other = CODES[::-1].copy()
  with pytest.raises(ConfigError, match="the batches were made with "
                     "vocabulary .* Re-materialise"):
    run_lib.load_semantic_ids(batches,
                              str(_codes_dir(tmp_path, other, "other")))


def test_load_semantic_ids_errors(tmp_path):
  batches = _batches_dir(tmp_path)
  with pytest.raises(ConfigError, match=r"codes.npy does not exist; run the "
                     r"semantic-ID stage"):
    run_lib.load_semantic_ids(batches, str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="manifest.json does not exist"):
    run_lib.load_semantic_ids(tmp_path / "nothing", str(tmp_path))
  # Codes outside the layout (fingerprint left out of the manifest).
  bad = np.array([[0, 1, 5]], np.int32)
  manifest = json.loads((batches / "manifest.json").read_text())
  del manifest["vocabulary"]["fingerprint"]
  (batches / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(ConfigError, match="code 5 at index .* does not fit "
                     "level 2"):
    run_lib.load_semantic_ids(batches, str(_codes_dir(tmp_path, bad, "bad")))


def test_make_encoder_decoder_takes_vocab_from_the_layout():
  cfg = network.TransformerConfig(vocab_size=7, emb_dim=8, num_heads=2,
                                  head_dim=4, num_encoder_layers=1,
                                  num_decoder_layers=1, mlp_dim=16)
  model = tiger.make_encoder_decoder(LAYOUT, cfg, alignment_weight=0.5)
  assert model.module.config.vocab_size == LAYOUT.vocab_size
  assert model.alignment_weight == 0.5


def test_write_json_is_atomic(tmp_path):
  path = tmp_path / "sub" / "result.json"
  run_lib.write_json(path, {"b": 1, "a": [1, 2]})
  assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
  assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def _entry(value: int = 0) -> int:
  if value < 0:
    raise ConfigError("value must be >= 0")
  return value * 2


def test_gin_main_binds_and_reports_errors(tmp_path, capsys):
  gin.clear_config()
  gin.external_configurable(_entry, "test_run_lib_entry")
  gin_file = tmp_path / "a.gin"
  gin_file.write_text("test_run_lib_entry.value = 3\n")
  try:
    assert run_lib.gin_main("test_run_lib_entry",
                            ["--gin_file", str(gin_file)]) == 6
    gin.clear_config()
    assert run_lib.gin_main("test_run_lib_entry", [
        "--gin_file", str(gin_file), "--gin.test_run_lib_entry.value=5"]) == 10
    gin.clear_config()
    with pytest.raises(SystemExit) as e:
      run_lib.gin_main("test_run_lib_entry",
                       ["--gin.test_run_lib_entry.value=-1"])
    assert e.value.code == 2
    assert "error: value must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
      run_lib.gin_main("test_run_lib_entry", ["--bogus"])
    assert "unknown argument '--bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
      run_lib.gin_main("test_run_lib_entry", ["--gin.novalue"])
    assert "expected --gin.NAME=VALUE" in capsys.readouterr().err
  finally:
    gin.clear_config()


def test_config_gin_names_the_training_function(tmp_path):
  """A run whose training function was called directly still re-runs."""
  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  gin_utils.register_all()
  gin.clear_config()
  try:
    run_lib.describe_run(tmp_path, kind="item",
                         entry="recjax.train_items.train_items",
                         model=object(), inputs={})
    text = (tmp_path / run_lib.CONFIG_FILE).read_text()
    assert text.rstrip().endswith(
        "recjax.train.run.fn = @recjax.train_items.train_items")
    gin.parse_config(text)
    assert gin.query_parameter("recjax.train.run.fn").selector == (
        "recjax.train_items.train_items")
  finally:
    gin.clear_config()
  # Started through `recjax.train.run`: the operative binding is kept.
  bound = "run.fn = @recjax.train_counts.train_counts\n"
  assert run_lib._with_entry(bound, "recjax.train.train") == bound
  bound = "recjax.train.run.fn = @train_items\n"
  assert run_lib._with_entry(bound, "recjax.train.train") == bound


def test_config_changes_lists_what_a_new_configuration_binds_otherwise(
    tmp_path):
  run = tmp_path / "old" / "Office" / "rpg" / "seed0"
  run.mkdir(parents=True)
  (run / "config.gin").write_text(
      f"MODEL_DIR = '{run}'\n"
      f"CODES_DIR = '{tmp_path}/old/Office/codes'\n"
      "recjax.models.rpg.RPGConfig.temperature = 0.03\n"
      "recjax.models.rpg.RPGConfig.hidden_dim = 64\n")
  new = tmp_path / "new.gin"
  new.write_text(
      f"MODEL_DIR = '{tmp_path}/new/Office/rpg/seed0'\n"
      f"CODES_DIR = '{tmp_path}/new/Office/codes'\n"
      "recjax.models.rpg.RPGConfig.temperature = 0.07\n"
      "recjax.models.rpg.RPGConfig.hidden_dim = 64\n"
      "recjax.models.rpg.RPGConfig.num_layers = 2\n")  # Not in the run's.
  # The run's root moved from old/ to new/: its paths follow (depth 3).
  assert run_lib.config_changes(run, [str(new)], depth=3) == [
      ("RPGConfig.temperature", "0.03", "0.07")]
  assert run_lib.config_changes(run, [str(new)], depth=0) == [
      ("CODES_DIR", f"'{tmp_path}/old/Office/codes'",
       f"'{tmp_path}/new/Office/codes'"),
      ("RPGConfig.temperature", "0.03", "0.07")]
  assert run_lib.config_changes(
      run, [str(new)], ["recjax.models.rpg.RPGConfig.temperature = 0.03"],
      depth=3) == []
  assert not gin.config_str().strip()  # Left cleared.
