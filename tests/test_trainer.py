"""Tests for recjax.trainer (with optimizers, partitioning, checkpoints)."""

import json

import jax
import numpy as np
import pytest

from recjax import checkpoints
from recjax import network
from recjax import optimizers
from recjax import summaries
from recjax import trainer as trainer_lib
from recjax.errors import ConfigError
from recjax.models import tiger as models
from recjax.tokens import SemanticIdLayout

LAYOUT = SemanticIdLayout((4, 4), num_user_buckets=0)
ENC_LEN, DEC_LEN = 6, 3


def _model(dropout=0.0, emb=16):
  cfg = network.TransformerConfig(
      vocab_size=LAYOUT.vocab_size, emb_dim=emb, num_heads=2, head_dim=8,
      num_encoder_layers=1, num_decoder_layers=1, mlp_dim=32,
      dropout_rate=dropout)
  return models.EncoderDecoderModel(network.Transformer(cfg), layout=LAYOUT)


def _data(n=64, seed=0):
  """Targets are a function of the inputs, so a model can learn them."""
  rng = np.random.default_rng(seed)
  codes = rng.integers(0, 4, size=(n, 2))
  tok = LAYOUT.codes_to_tokens(codes)
  enc = np.concatenate([tok, tok, tok], axis=1).astype(np.int32)
  tgt = np.concatenate([tok[:, ::-1], np.ones((n, 1), np.int32)], axis=1)
  dec_in = np.concatenate([np.zeros((n, 1), np.int32), tgt[:, :-1]], axis=1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
          "decoder_target_tokens": tgt.astype(np.int32),
          "decoder_loss_weights": np.ones_like(tgt, np.int32)}


class _Source:
  """Deterministic epoch-shuffled batches, seekable by step."""

  def __init__(self, data, batch_size, seed=0):
    self.data, self.batch_size, self.seed = data, batch_size, seed
    self.n = len(next(iter(data.values())))

  def batches(self, start_step):
    per_epoch = self.n // self.batch_size
    step = start_step
    while True:
      epoch, k = divmod(step, per_epoch)
      perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
      idx = perm[k * self.batch_size:(k + 1) * self.batch_size]
      yield {key: v[idx] for key, v in self.data.items()}
      step += 1


class _CountingSource(_Source):
  """`_Source` that records where each iteration started and what it gave."""

  def __init__(self, data, batch_size, seed=0):
    super().__init__(data, batch_size, seed)
    self.starts, self.drawn = [], 0

  def batches(self, start_step):
    self.starts.append(start_step)
    for batch in super().batches(start_step):
      self.drawn += 1
      yield batch


def _trainer(tmp_path, steps, model=None, meta=None, **kw):
  cfg = trainer_lib.TrainerConfig(
      num_train_steps=steps, batch_size=16, log_period=5,
      checkpoint_period=kw.pop("checkpoint_period", 1000),
      best_metric=kw.pop("best_metric", None), async_checkpoints=False, **kw)
  opt = optimizers.OptimizerConfig(
      "adamw", optimizers.ScheduleConfig("constant", 3e-3))
  shapes = {"encoder_input_tokens": (16, ENC_LEN),
            "decoder_input_tokens": (16, DEC_LEN)}
  return trainer_lib.Trainer(model or _model(), opt, cfg, shapes,
                             str(tmp_path), meta=meta or {"model": "tiny"})


def test_loss_decreases_and_history_written(tmp_path):
  tr = _trainer(tmp_path, 60)
  tr.train(_Source(_data(), 16))
  rows = [json.loads(line) for line in open(tmp_path / "history.jsonl")]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert losses[-1] < 0.6 * losses[0]
  assert (tmp_path / "curves.png").exists()
  assert rows[-2]["train/examples_per_s"] > 0
  # The last row: wall time of the whole run, validation included.
  assert rows[-1] == {"step": 60, "train/elapsed_seconds":
                      tr.elapsed_seconds}


def test_microbatches_match_full_batch(tmp_path):
  data = _data()
  one = _trainer(tmp_path / "a", 1)
  two = _trainer(tmp_path / "b", 1, num_microbatches=4)
  s1 = one.initial_state()
  s2 = two.initial_state()
  batch = next(_Source(data, 16).batches(0))
  s1, m1 = one.train_step(s1, batch)
  s2, m2 = two.train_step(s2, batch)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6)
  np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)


def test_resume_is_bit_exact(tmp_path):
  data = _data()
  full = _trainer(tmp_path / "full", 12, model=_model(dropout=0.1))
  ref = full.train(_Source(data, 16))
  part = _trainer(tmp_path / "part", 6, model=_model(dropout=0.1),
                  checkpoint_period=3)
  part.train(_Source(data, 16))
  resumed = _trainer(tmp_path / "part", 12, model=_model(dropout=0.1),
                     checkpoint_period=3)
  assert resumed.checkpointer.latest_step() == 6
  source = _CountingSource(data, 16)
  out = resumed.train(source)
  assert int(out.step) == 12
  # It resumed: the data was sought to step 6 and only 6 batches trained
  # (a silent restart from step 0 would give the same parameters).
  assert source.starts == [6] and source.drawn == 6
  steps = [json.loads(line)["step"] for line in
           open(tmp_path / "part" / "history.jsonl")
           if "train/loss" in line]
  assert steps == sorted(set(steps)) and steps[-1] == 12
  assert jax.tree.structure(ref.params) == jax.tree.structure(out.params)
  for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(out.params),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree.leaves(ref.opt_state),
                  jax.tree.leaves(out.opt_state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_of_another_model_is_refused(tmp_path):
  _trainer(tmp_path, 2, meta={"model": {"emb": 16}}).train(
      _Source(_data(), 16))
  other = _trainer(tmp_path, 4, meta={"model": {"emb": 32}})
  with pytest.raises(checkpoints.CheckpointError,
                     match="(?s)different model.*another model_dir"):
    other.initial_state()


def test_corrupt_checkpoint_is_reported(tmp_path):
  _trainer(tmp_path, 2).train(_Source(_data(), 16))
  step_dir = tmp_path / "checkpoints" / "2" / "state"
  for f in step_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"checkpoints/2 is corrupt or (unreadable|does not "
                     r"match this model's parameter shapes).*Delete that step "
                     r"directory"):
    _trainer(tmp_path, 4).initial_state()


def test_early_stopping_and_best_checkpoint(tmp_path):
  cfg = trainer_lib.TrainerConfig(
      num_train_steps=40, batch_size=16, log_period=5, eval_period=5,
      best_metric="validation/score", patience=2, async_checkpoints=False)
  opt = optimizers.OptimizerConfig("adamw",
                                   optimizers.ScheduleConfig("constant", 1e-3))
  shapes = {"encoder_input_tokens": (16, ENC_LEN),
            "decoder_input_tokens": (16, DEC_LEN)}
  tr = trainer_lib.Trainer(_model(), opt, cfg, shapes, str(tmp_path))
  scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.95])
  state = tr.train(_Source(_data(), 16), lambda params: {"score":
                                                         next(scores)})
  # Best 0.3 at step 10, then two evaluations without improvement.
  assert int(state.step) == 20
  assert tr.checkpointer.best_step() == 10


def test_time_budget_stops_validates_and_resumes_bit_exact(tmp_path):
  data = _data()
  ref = _trainer(tmp_path / "full", 12, model=_model(dropout=0.1)).train(
      _Source(data, 16))
  # A budget already spent at the first check (step 5, the log period):
  # the loop validates, checkpoints step 5 and returns.
  evaluated = []
  boxed = _trainer(tmp_path / "boxed", 12, model=_model(dropout=0.1),
                   max_train_seconds=1e-9)
  state = boxed.train(_Source(data, 16),
                      lambda params: evaluated.append(1) or {"score": 1.0})
  assert int(state.step) == 5 and evaluated == [1]
  assert boxed.checkpointer.latest_step() == 5
  rows = [json.loads(line) for line in open(tmp_path / "boxed" /
                                            "history.jsonl")]
  # Train summary, validation, elapsed wall time.
  assert [r["step"] for r in rows] == [5, 5, 5]
  # Without the budget the same model_dir resumes to the end, bit exact.
  out = _trainer(tmp_path / "boxed", 12, model=_model(dropout=0.1)).train(
      _Source(data, 16))
  assert int(out.step) == 12
  for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(out.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_elapsed_seconds_continue_over_a_resume(tmp_path):
  data = _data()
  first = _trainer(tmp_path, 5)
  first.train(_Source(data, 16))
  # Pretend the first call took an hour: the resumed run adds to it.
  history = tmp_path / "history.jsonl"
  rows = [json.loads(line) for line in open(history)]
  assert [r["train/elapsed_seconds"] for r in rows] == pytest.approx(
      [first.elapsed_seconds] * 2, abs=1.0)
  with open(history, "a") as f:
    f.write(json.dumps({"step": 5, "train/elapsed_seconds": 3600.0}) + "\n")
  second = _trainer(tmp_path, 10)
  second.train(_Source(data, 16))
  assert 3600.0 < second.elapsed_seconds < 3600.0 + 600
  logged = [r["train/elapsed_seconds"] for r in summaries.read_history(
      tmp_path) if r["step"] == 10]
  assert logged and min(logged) > 3600.0


def test_bad_config():
  with pytest.raises(ConfigError, match=r"num_microbatches=3 must divide "
                     r"batch_size=10\."):
    trainer_lib.TrainerConfig(batch_size=10, num_microbatches=3)
  with pytest.raises(ConfigError, match=r"max_train_seconds must be >= 0 "
                     r"\(0 = no limit\), got -1"):
    trainer_lib.TrainerConfig(max_train_seconds=-1)
  with pytest.raises(ConfigError, match=r"num_train_steps must be >= 0 and "
                     r"batch_size >= 1\."):
    trainer_lib.TrainerConfig(num_train_steps=-5)


def test_best_metric_that_validation_does_not_report(tmp_path):
  trainer = _trainer(tmp_path, 2, best_metric="validation/ndcg@10")
  with pytest.raises(ConfigError, match=r"best_metric 'validation/ndcg@10' "
                     r"is not a validation metric; choose one of "
                     r"\['validation/loss'\]"):
    trainer.train(_Source(_data(), 16), evaluate=lambda params: {"loss": 1.0})

