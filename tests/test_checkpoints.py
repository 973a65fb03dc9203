"""Tests for recjax.checkpoints (Orbax periodic / best checkpoints)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import checkpoints


@dataclasses.dataclass(frozen=True)
class _OldConfig:
  width: int = 8
  depth: int = 2


@dataclasses.dataclass(frozen=True)
class _NewConfig:  # _OldConfig plus a field added in a later release
  width: int = 8
  depth: int = 2
  norm: str = "pre"


def _meta(config):
  return {"model": {"class": "M", "network": dataclasses.asdict(config)},
          "vocabulary": {"fingerprint": "abc"},
          **checkpoints.network_defaults_meta(config)}


def _state(seed=0):
  rng = np.random.default_rng(seed)
  return {"step": jnp.asarray(3, jnp.int32),
          "params": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                     "b": jnp.zeros((3,), jnp.float32)}}


def _save(path, meta, state, step=3):
  ckpt = checkpoints.Checkpointer(path, meta, best_metric="score",
                                  async_save=False)
  ckpt.save(step, state)
  ckpt.save_best(step, state, {"score": 0.5})
  ckpt.close()


def test_save_restore_roundtrip_and_best(tmp_path):
  state = _state()
  _save(tmp_path, _meta(_OldConfig()), state)
  ckpt = checkpoints.Checkpointer(tmp_path, _meta(_OldConfig()),
                                  best_metric="score")
  assert ckpt.latest_step() == 3 and ckpt.best_step() == 3
  restored, step = ckpt.restore(checkpoints.abstract_like(state))
  assert step == 3
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  params, step = ckpt.restore_params(best=True)
  np.testing.assert_array_equal(np.asarray(params["w"]),
                                np.asarray(state["params"]["w"]))
  ckpt.close()


def test_fields_added_since_the_checkpoint_restore_at_their_default(tmp_path):
  _save(tmp_path, _meta(_OldConfig()), _state())
  # A newer config with the new field at its default reads the old run.
  params, _ = checkpoints.Checkpointer(
      tmp_path, _meta(_NewConfig())).restore_params()
  assert set(params) == {"w", "b"}
  # ... but not with the new field changed: that is another model.
  with pytest.raises(checkpoints.CheckpointError,
                     match="(?s)different model.*\"norm\": \"post\""):
    checkpoints.Checkpointer(
        tmp_path, _meta(_NewConfig(norm="post"))).restore_params()
  # Nor an existing field changed, nor a field the run no longer has.
  with pytest.raises(
      checkpoints.CheckpointError,
      match=r"checkpoints/3 was written with a different model:\n"
            r"  checkpoint: .*\"width\": 8\}\}\n"
            r"  this run:   .*\"width\": 16\}\}\n"
            r"Use another model_dir, or the same model configuration"):
    checkpoints.Checkpointer(
        tmp_path, _meta(_NewConfig(width=16))).restore_params()
  _save(tmp_path / "new", _meta(_NewConfig()), _state())
  with pytest.raises(
      checkpoints.CheckpointError,
      match=r"new/checkpoints/3 was written with a different model:\n"
            r"  checkpoint: .*\"norm\": \"pre\".*\n"
            r"  this run:   \{\"class\": \"M\", \"network\": "
            r"\{\"depth\": 2, \"width\": 8\}\}\n"):
    checkpoints.Checkpointer(
        tmp_path / "new", _meta(_OldConfig())).restore_params()


def test_defaults_are_not_saved_and_other_vocabularies_are_refused(tmp_path):
  meta = _meta(_NewConfig())
  _save(tmp_path, meta, _state())
  other = dict(meta, vocabulary={"fingerprint": "xyz"})
  with pytest.raises(checkpoints.CheckpointError,
                     match="(?s)different vocabulary.*abc.*xyz"):
    checkpoints.Checkpointer(tmp_path, other).restore_params()
  ckpt = checkpoints.Checkpointer(tmp_path, meta)
  assert checkpoints.DEFAULTS_KEY not in ckpt.meta
  saved = next((tmp_path / "checkpoints" / "3" / "meta").glob("*metadata*"))
  assert checkpoints.DEFAULTS_KEY not in saved.read_text()
  ckpt.close()


def test_config_defaults_keep_required_fields_of_the_instance():
  @dataclasses.dataclass
  class NeedsArg:
    vocab_size: int
    width: int = 8

  assert checkpoints.config_defaults(NeedsArg(100, width=3)) == {
      "vocab_size": 100, "width": 8}
  assert checkpoints.config_defaults(_NewConfig(width=3)) == {
      "width": 8, "depth": 2, "norm": "pre"}

  @dataclasses.dataclass
  class Checked:
    width: int = 0

    def __post_init__(self):
      if self.width < 1:
        raise ValueError("width must be >= 1")

  assert checkpoints.config_defaults(Checked(4)) is None


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="no periodic "
                     "checkpoint.*train first"):
    checkpoints.Checkpointer(tmp_path, {}).restore_params()


def test_saved_meta_reads_the_description_without_a_model(tmp_path):
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"no checkpoint with a model description in "
                     r".*best; train first \(python -m recjax.train\)"):
    checkpoints.saved_meta(tmp_path)
  meta = _meta(_OldConfig())
  _save(tmp_path, meta, _state())
  meta.pop(checkpoints.DEFAULTS_KEY, None)
  for best in (True, False):
    got = checkpoints.saved_meta(tmp_path, best=best)
    assert got["vocabulary"] == meta["vocabulary"]
    assert got["model"] == meta["model"]


def test_best_metric_the_run_does_not_log_is_named(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path, _meta(_OldConfig()),
                                  best_metric="validation/ndcg@10",
                                  async_save=False)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"best_metric 'validation/ndcg@10' not among the "
                     r"validation metrics \['validation/mrr', "
                     r"'validation/recall@10'\]"):
    ckpt.save_best(3, _state(), {"validation/recall@10": 0.1,
                                 "validation/mrr": 0.2})
  ckpt.close()
  assert checkpoints.Checkpointer(tmp_path, _meta(_OldConfig())).best_step(
  ) is None


def test_parameter_shape_mismatch_names_the_step_and_the_fix(tmp_path):
  _save(tmp_path, _meta(_OldConfig()), _state())
  ckpt = checkpoints.Checkpointer(tmp_path, _meta(_OldConfig()),
                                  best_metric="score")
  wider = {"step": jnp.asarray(3, jnp.int32),
           "params": {"w": jnp.zeros((4, 5), jnp.float32),
                      "b": jnp.zeros((5,), jnp.float32)}}
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"checkpoint .*checkpoints/3 is corrupt or does "
                     r"not match this model's parameter shapes \(.*\)\. "
                     r"Delete that step directory or use another "
                     r"model_dir\."):
    ckpt.restore(checkpoints.abstract_like(wider))
  ckpt.close()
