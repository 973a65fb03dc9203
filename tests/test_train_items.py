"""End-to-end tests of recjax.train_items (gin, Trainer, checkpoints)."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest
import tiny_item_runs

from recjax import embed
from recjax import gin_utils
from recjax import item_sequences
from recjax import train_items as train_items_lib
from recjax.errors import ConfigError
from recjax.item_sequences import ItemDataConfig
from recjax.models import sasrec
from recjax.trainer import TrainerConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
SYNTH = {"num_users": 60, "num_items": 30, "num_clusters": 3, "seed": 0}
DATA = ItemDataConfig(source="synthetic", source_kwargs=SYNTH, max_length=8)


def _gin_file(root: pathlib.Path) -> pathlib.Path:
  return tiny_item_runs.sasrec_gin(root, SYNTH, """
      recjax.models.sasrec.SASRecConfig.dropout_rate = 0.2
      recjax.models.sasrec.SASRecConfig.attention_dropout_rate = 0.2
      """)


@pytest.fixture
def gin_file(tmp_path):
  gin.clear_config()
  yield _gin_file(tmp_path)
  gin.clear_config()


def _run(gin_file, model_dir, **macros):
  gin.clear_config()
  bindings = [f"MODEL_DIR = {str(model_dir)!r}"]
  bindings += [f"{k} = {v!r}" for k, v in macros.items()]
  gin_utils.parse_gin(["runs/train_items.gin", str(gin_file)], bindings,
                      finalize=False)
  return gin.get_configurable("recjax.train_items.train_items")()


def _without_time(metrics):
  return {k: v for k, v in metrics.items() if k != "train_seconds"}


def test_train_evaluate_resume_and_reproduce(gin_file, tmp_path):
  full = _run(gin_file, tmp_path / "a")
  written = json.loads((tmp_path / "a" / "metrics.json").read_text())
  assert written == pytest.approx(full)
  for policy in ("test", "test_excl"):
    for k in (1, 5, 10):
      assert 0.0 <= full[f"{policy}/recall@{k}"] <= 1.0
    assert full[f"{policy}/num_examples"] == SYNTH["num_users"]
  assert full["test/invalid_rate"] == 0.0  # the whole catalog is rankable
  assert full["final_step"] == 20 and full["best_step"] in (10.0, 20.0)
  history = [json.loads(line) for line in
             (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
  val = {r["step"]: r["validation/ndcg@10"] for r in history
         if "validation/ndcg@10" in r}
  assert set(val) == {10, 20}
  assert full["best_step"] == max(val, key=lambda s: (val[s], -s))
  emb = np.load(tmp_path / "a" / "item_embeddings.npy")
  assert emb.shape == (30, 16) and np.isfinite(emb).all()

  # Interrupted at step 10, resumed to 20: the same run, the same result.
  half = _run(gin_file, tmp_path / "b", TRAIN_STEPS=10)
  assert half["final_step"] == 10
  resumed = _run(gin_file, tmp_path / "b", TRAIN_STEPS=20)
  assert _without_time(resumed) == _without_time(full)
  np.testing.assert_array_equal(
      np.load(tmp_path / "b" / "item_embeddings.npy"), emb)


def test_recbole_recipe_validates_every_epoch(gin_file, tmp_path):
  # Post-LN, prefixes scored at the last column, EVAL_PERIOD = -1: one
  # validation per epoch (60 users' prefixes in batches of 64).
  recbole = {"recjax.models.sasrec.SASRecConfig.norm": "post",
             "recjax.models.sasrec.SASRecConfig.train_positions": "last"}
  out = _run(gin_file, tmp_path / "p", EVAL_PERIOD=-1, TRAIN_MODE="prefixes",
             BATCH_SIZE=64, TRAIN_STEPS=25, **recbole)
  per_epoch = int(out["num_train_examples"]) // 64
  assert 5 <= per_epoch <= 12
  history = [json.loads(line) for line in
             (tmp_path / "p" / "history.jsonl").read_text().splitlines()]
  steps = [r["step"] for r in history if "validation/ndcg@10" in r]
  want = list(range(per_epoch, 26, per_epoch))
  assert steps == (want if want[-1] == 25 else want + [25])
  assert sorted(int(p.name) for p in (tmp_path / "p" / "checkpoints")
                .iterdir() if p.name.isdigit())[-1] == 25
  with pytest.raises(ConfigError, match=r"TrainerConfig\.eval_period=-2: "
                                        r"use >= 0 steps or -1 \(every "
                                        r"epoch\)"):
    train_items_lib.train_items(
        str(tmp_path / "m"), data=DATA,
        trainer_config=TrainerConfig(batch_size=16, eval_period=-2))


def test_epochs_set_the_number_of_steps(gin_file, tmp_path):
  # TRAIN_EPOCHS = 2 over 60 users' prefixes in batches of 64: the run
  # lasts two epochs, validated after each (one schedule on any data set).
  out = _run(gin_file, tmp_path / "e", EVAL_PERIOD=-1, TRAIN_MODE="prefixes",
             BATCH_SIZE=64, TRAIN_STEPS=0,
             **{"recjax.trainer.TrainerConfig.num_train_epochs": 2})
  per_epoch = int(out["num_train_examples"]) // 64
  history = [json.loads(line) for line in
             (tmp_path / "e" / "history.jsonl").read_text().splitlines()]
  assert [r["step"] for r in history if "validation/ndcg@10" in r] == [
      per_epoch, 2 * per_epoch]
  with pytest.raises(ConfigError, match=r"num_train_steps=5 and "
                     r"num_train_epochs=2 are both set; set one and leave "
                     r"the other at 0 \(gin: TRAIN_STEPS = 0 or "
                     r"TRAIN_EPOCHS = 0\)\."):
    TrainerConfig(num_train_steps=5, num_train_epochs=2)
  with pytest.raises(ConfigError, match=r"the run's 20 steps \(10 batches "
                     r"per epoch on synthetic_s0\) do not exceed its 30 "
                     r"warm-up steps; shorten the warm-up \(WARMUP_EPOCHS / "
                     r"WARMUP_STEPS\) or lengthen the run \(TRAIN_EPOCHS / "
                     r"TRAIN_STEPS\)\."):
    _run(gin_file, tmp_path / "w", EVAL_PERIOD=-1, TRAIN_MODE="prefixes",
         BATCH_SIZE=64, TRAIN_STEPS=0, SCHEDULE="cosine", **{
             "recjax.trainer.TrainerConfig.num_train_epochs": 2,
             "recjax.optimizers.ScheduleConfig.warmup_epochs": 3})
  assert not (tmp_path / "w").exists()


def _embed_dir(root: pathlib.Path, rows: int) -> pathlib.Path:
  out = root / f"emb{rows}"
  out.mkdir()
  emb = np.random.default_rng(0).normal(size=(rows, 4)).astype(np.float32)
  np.save(out / embed.EMBEDDINGS_FILE, emb)
  (out / embed.MANIFEST_FILE).write_text(json.dumps(
      {"checksum": embed.array_checksum(emb), "dataset": "other"}))
  return out


def test_embeddings_reach_model_fn_and_bad_rows_name_the_file(tmp_path):
  seen = {}

  def model_fn(dataset, item_embeddings):
    seen["rows"] = item_embeddings.shape[0]
    seen["items"] = dataset.num_items
    raise RuntimeError("stop here")

  with pytest.raises(RuntimeError, match="stop here"):
    train_items_lib.train_items(str(tmp_path / "m"), data=DATA,
                                model_fn=model_fn,
                                embeddings_dir=str(_embed_dir(tmp_path, 30)))
  assert seen == {"rows": 30, "items": 30}
  bad = _embed_dir(tmp_path, 7)
  with pytest.raises(ConfigError) as e:
    train_items_lib.train_items(str(tmp_path / "m"), data=DATA,
                                embeddings_dir=str(bad))
  assert str(bad / "embeddings.npy") in str(e.value)
  assert "(7, 4)" in str(e.value) and "30 items" in str(e.value)


def test_inconsistent_settings_fail_early(tmp_path):
  with pytest.raises(ConfigError, match="batch_size=32 differs"):
    train_items_lib.train_items(
        str(tmp_path / "m"),
        data=ItemDataConfig(source="synthetic", source_kwargs=SYNTH,
                            batch_size=32),
        trainer_config=TrainerConfig(batch_size=16))
  with pytest.raises(ConfigError, match="exceeds the model's max_length=20"):
    train_items_lib.train_items(
        str(tmp_path / "m"),
        data=ItemDataConfig(source="synthetic", source_kwargs=SYNTH,
                            max_length=30))


def test_command_line_reports_bad_embeddings(tmp_path):
  gin_file = _gin_file(tmp_path)
  bad = _embed_dir(tmp_path, 7)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "recjax.train_items",
       "--gin_file=runs/train_items.gin", f"--gin_file={gin_file}",
       f"--gin.MODEL_DIR='{tmp_path / 'cli'}'",
       f"--gin.EMBEDDINGS_DIR='{bad}'"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert f"error: {bad / 'embeddings.npy'}" in proc.stderr


def test_cold_start_protocol_removes_items_and_reports_their_users(
    gin_file, tmp_path):
  out = _run(gin_file, tmp_path / "cold", TRAIN_STEPS=10)
  assert not any(k.startswith("test_cold") for k in out)
  gin.clear_config()
  bindings = [f"MODEL_DIR = {str(tmp_path / 'cold2')!r}", "TRAIN_STEPS = 10",
              "recjax.item_sequences.ItemDataConfig.cold_fraction = 0.2"]
  gin_utils.parse_gin(["runs/train_items.gin", str(gin_file)], bindings,
                      finalize=False)
  cold = gin.get_configurable("recjax.train_items.train_items")()
  data = item_sequences.load(dataclasses.replace(DATA, cold_fraction=0.2))
  targets = data.splits["test"].targets
  want = int(np.isin(targets, data.cold).sum())
  assert cold["num_cold_items"] == 6
  assert cold["test_cold/num_examples"] == want > 0
  assert cold["test_cold_excl/num_examples"] == want
  assert 0.0 <= cold["test_cold/ndcg@10"] <= 1.0


def test_cold_items_reach_the_factory_and_leave_the_training_softmax():
  data = dataclasses.replace(DATA, cold_fraction=0.2)
  seen = {}

  def model_fn(dataset, item_embeddings, cold_items=None):
    seen["cold"] = cold_items
    return sasrec.make_sasrec(dataset, item_embeddings, sasrec.SASRecConfig(
        hidden_dim=8, num_layers=1, num_heads=1, mlp_dim=8, max_length=8))

  item_data, _, model = train_items_lib.build(data, model_fn, None)
  np.testing.assert_array_equal(seen["cold"], item_data.cold)
  np.testing.assert_array_equal(model.cold_items, item_data.cold)
  _, _, plain = train_items_lib.build(DATA, model_fn, None)
  assert seen["cold"] is None and plain.cold_items is None
  # A training batch of warm items: the cold items' embeddings (the
  # output layer's rows) get no gradient, the warm ones do.
  batch = next(item_data.train_batches(16).batches())
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": batch["input_items"].shape})
  grad = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(
      params["params"])["item_embedding"]
  grad = np.abs(np.asarray(grad)).sum(-1)
  assert np.all(grad[item_data.cold] == 0.0)
  assert (grad > 0).sum() > len(grad) // 2
