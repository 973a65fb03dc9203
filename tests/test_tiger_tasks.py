"""Tests for tasks.tiger: TIGER task registration, data and metrics."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
seqio = pytest.importorskip("seqio")

from recjax import datasets  # noqa: E402
from recjax import metrics  # noqa: E402
from recjax import tasks  # noqa: E402
from recjax.errors import ConfigError  # noqa: E402
from recjax.tasks import tiger  # noqa: E402

NUM_ITEMS = 60
SIZES = (8, 8, 4)
LEVELS = len(SIZES)
MAX_HISTORY = 5
LENGTHS = {"inputs": 1 + MAX_HISTORY * LEVELS, "targets": LEVELS + 1}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiger")
  rng = np.random.default_rng(1)
  keys = rng.choice(int(np.prod(SIZES)), size=NUM_ITEMS, replace=False)
  codes = np.stack(np.unravel_index(keys, SIZES), 1).astype(np.int32)
  sid = root / "sid"
  sid.mkdir()
  np.save(sid / "codes.npy", codes)
  task = tasks.register_tiger_task(
      "tiger_test_tiny", "recjax_synthetic/tiny", sid,
      data_dir=root / "tfds", max_history=MAX_HISTORY, num_user_buckets=50,
      codebook_sizes=SIZES)
  ds = datasets.load("synthetic", num_users=100, num_items=NUM_ITEMS,
                     num_clusters=6, seed=0)
  return {"root": root, "sid": sid, "codes": codes, "task": task,
          "dataset": ds}


def _examples(task, split, lengths=None):
  return list(task.get_dataset(lengths or LENGTHS, split=split,
                               shuffle=False).as_numpy_iterator())


def test_default_tasks_registered_without_artifacts(tmp_path, monkeypatch):
  for name in ("tiger_movielens_100k", "tiger_amazon_office",
               "tiger_amazon_beauty"):
    assert name in seqio.TaskRegistry.names()
  monkeypatch.setenv("RECJAX_ARTIFACTS", str(tmp_path / "none"))
  tasks.register_tiger_task("tiger_test_lazy", "recjax_amazon_lcrec/office",
                            None, manual_dir=tmp_path / "none")
  try:
    assert not tasks.get_vocabulary("tiger_test_lazy").is_loaded
  finally:
    seqio.TaskRegistry.remove("tiger_test_lazy")


def test_default_vocabulary_error_names_the_stage(tmp_path, monkeypatch):
  monkeypatch.setenv("RECJAX_ARTIFACTS", str(tmp_path))
  vocab = tasks.get_vocabulary("tiger_amazon_office")
  with pytest.raises(ConfigError) as e:
    _ = vocab.num_items
  msg = str(e.value)
  assert "tiger_amazon_office" in msg
  assert str(tmp_path / "semantic_ids" / "amazon_office" / "rqvae") in msg
  assert "semantic-ID stage" in msg


def test_train_split_is_every_prefix(env):
  got = _examples(env["task"], "train")
  ds = env["dataset"]
  want = []
  for u in range(ds.num_users):
    seq = ds.items_flat[ds.offsets[u]:ds.offsets[u + 1]][:-2]
    for i in range(1, len(seq)):
      want.append((u, seq[max(0, i - MAX_HISTORY):i].tolist(), int(seq[i])))
  assert [(int(e["user_index"]), e["history_items"].tolist(),
           int(e["target_item"])) for e in got] == want


@pytest.mark.parametrize("split", ["validation", "test"])
def test_eval_splits_are_leave_one_out(env, split):
  got = _examples(env["task"], split)
  s = datasets.leave_one_out(env["dataset"], max_history=20)[split]
  vocab = tasks.get_vocabulary("tiger_test_tiny")
  assert len(got) == len(s)
  for ex in got:
    u = int(ex["user_index"])
    np.testing.assert_array_equal(ex["history_items"],
                                  s.history(u)[-MAX_HISTORY:])
    assert int(ex["target_item"]) == int(s.targets[u])
    user = vocab.user_token(env["dataset"].user_ids[u])
    np.testing.assert_array_equal(
        ex["inputs"],
        np.concatenate([[user], env_tokens(env, ex["history_items"])]))
    np.testing.assert_array_equal(
        ex["targets"],
        np.concatenate([env_tokens(env, [ex["target_item"]]), [1]]))


def env_tokens(env, items):
  offsets = np.array([3, 3 + SIZES[0], 3 + SIZES[0] + SIZES[1]])
  return (env["codes"][np.asarray(items, dtype=np.int64)] + offsets).ravel()


def test_shuffled_train_is_a_permutation(env):
  key = lambda e: (int(e["user_index"]), e["history_items"].tolist())
  plain = [key(e) for e in _examples(env["task"], "train")]
  shuffled = [key(e) for e in env["task"].get_dataset(
      LENGTHS, split="train", shuffle=True, seed=3).as_numpy_iterator()]
  assert shuffled != plain
  assert sorted(shuffled) == sorted(plain)


def test_tokens_within_vocabulary(env):
  vocab = tasks.get_vocabulary("tiger_test_tiny")
  assert vocab.vocab_size == 3 + sum(SIZES) + 50
  for ex in _examples(env["task"], "train")[:300]:
    for key in ("inputs", "targets"):
      assert ex[key].min() >= 1 and ex[key].max() < vocab.vocab_size


def test_model_features_through_converter(env):
  assert tasks.default_feature_lengths("tiger_test_tiny") == LENGTHS
  conv = tasks.feature_converter("tiger_test_tiny")
  ds = seqio.get_dataset("tiger_test_tiny", LENGTHS, conv,
                         dataset_split="validation", batch_size=8)
  batch = next(ds.as_numpy_iterator())
  assert batch["encoder_input_tokens"].shape == (8, 16)
  assert batch["decoder_target_tokens"].shape == (8, 4)
  assert np.all(batch["decoder_target_tokens"][:, -1] == 1)
  np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:],
                                batch["decoder_target_tokens"][:, :-1])
  assert np.all(batch["decoder_input_tokens"][:, 0] == 0)
  assert batch["history_items"].shape == (8, MAX_HISTORY)
  assert batch["target_item"].shape == (8,)
  assert batch["user_index"].shape == (8,)


def test_reregistering(env):
  kwargs = dict(data_dir=env["root"] / "tfds", max_history=MAX_HISTORY,
                num_user_buckets=50, codebook_sizes=SIZES)
  again = tasks.register_tiger_task("tiger_test_tiny",
                                    "recjax_synthetic/tiny", env["sid"],
                                    **kwargs)
  assert again is env["task"]
  other = tasks.register_tiger_task("tiger_test_other",
                                    "recjax_synthetic/tiny", env["sid"],
                                    **kwargs)
  replaced = tasks.register_tiger_task(
      "tiger_test_other", "recjax_synthetic/tiny", env["sid"],
      **{**kwargs, "max_history": 3})
  assert replaced is not other
  assert seqio.get_mixture_or_task("tiger_test_other") is replaced
  assert tiger.get_config("tiger_test_other").max_history == 3
  seqio.TaskRegistry.remove("tiger_test_other")


def test_bad_registrations():
  with pytest.raises(ConfigError, match="unknown TFDS builder"):
    tasks.register_tiger_task("tiger_bad", "recjax_nope", None)
  with pytest.raises(ConfigError, match=r"max_history must be >= 1, got 0\."):
    tasks.register_tiger_task("tiger_bad", "recjax_synthetic/tiny", None,
                              max_history=0)
  with pytest.raises(ConfigError, match=r"task 'tiger_bad': "
                                        r"use_user_token=True needs "
                                        r"num_user_buckets > 0\."):
    tasks.register_tiger_task("tiger_bad", "recjax_synthetic/tiny", None,
                              num_user_buckets=0, use_user_token=True)


def test_unknown_task_and_short_lengths(env):
  with pytest.raises(ConfigError, match="unknown task 'nope'"):
    tasks.get_task("nope")
  with pytest.raises(ConfigError, match=r"unknown task 'nope'; registered "
                                        r"TIGER tasks: .* Import `tasks` "
                                        r"and call "
                                        r"tasks\.register_tiger_task"):
    tasks.check_feature_lengths("nope", LENGTHS)
  tasks.check_feature_lengths("tiger_test_tiny", LENGTHS)
  with pytest.raises(ConfigError, match="inputs=15 is too short; it needs "
                     "16"):
    tasks.check_feature_lengths("tiger_test_tiny", {**LENGTHS, "inputs": 15})
  with pytest.raises(ConfigError, match=r"vocabulary: feature length "
                                        r"inputs=60 is too short; it needs "
                                        r"61 \(1 user token \+ 20 items x 3 "
                                        r"levels\)"):
    tasks.check_feature_lengths(tasks.get_vocabulary("tiger_test_tiny"),
                                {"inputs": 60, "targets": 4}, max_history=20)
  with pytest.raises(ConfigError, match=r"task 'tiger_test_tiny': feature "
                                        r"lengths \{'inputs': 16\} lack "
                                        r"\['targets'\]\."):
    tasks.check_feature_lengths("tiger_test_tiny", {"inputs": 16})
  # The task itself refuses to trim histories silently.
  with pytest.raises(ConfigError, match=r"task 'tiger_test_tiny': feature "
                                        r"length inputs=10 is too short; it "
                                        r"needs 16 .* at least \{'inputs': "
                                        r"16, 'targets': 4\}"):
    env["task"].get_dataset({**LENGTHS, "inputs": 10}, split="test")


def test_postprocess():
  assert tiger.postprocess("12", example={"target_item": np.int32(7)},
                           is_target=True) == 7
  assert tiger.postprocess("12", is_target=True) == 12
  assert tiger.postprocess(["3", "", "-1", b"4 5"]) == [3, -1, -1, 4]
  assert tiger.postprocess("9") == [9]
  assert tiger.postprocess(np.array([4, 2])) == [4, 2]


def test_evaluator_metrics(env):
  evaluator = seqio.Evaluator(
      "tiger_test_tiny", feature_converter=tasks.feature_converter(
          "tiger_test_tiny"), eval_split="validation", logger_cls=())
  junk = np.array([2, 2, 2, 1])

  def predict_fn(ds, model_feature_shapes=None):
    del model_feature_shapes
    out = []
    for i, ex in ds.as_numpy_iterator():
      t = ex["decoder_target_tokens"]
      out.append((i, np.stack([t, junk] if i % 2 == 0 else [junk, t])))
    return out

  result = evaluator.evaluate(compute_metrics=True, predict_fn=predict_fn)
  got = result[0].result()["tiger_test_tiny"]
  assert got["recall@1"] == pytest.approx(0.5)
  assert "recall@5" not in got  # only two ranked items per example
  assert got["mrr"] == pytest.approx(0.75)
  assert got["invalid_rate"] == pytest.approx(0.5)
  assert got["num_examples"] == 100


def test_popularity_baseline_metrics(env):
  got = tiger.popularity_baseline_metrics("tiger_test_tiny", "test")
  ds = env["dataset"]
  splits = datasets.leave_one_out(ds)
  train = splits["train"]
  counts = metrics.item_counts(
      np.concatenate([train.history_flat, train.targets]), NUM_ITEMS)
  top = metrics.popularity_baseline(counts, 20)
  want = metrics.ranking_metrics(np.tile(top, (ds.num_users, 1)),
                                 splits["test"].targets, num_items=NUM_ITEMS)
  assert got == pytest.approx(want)
  excl = tiger.popularity_baseline_metrics("tiger_test_tiny", "test",
                                           exclude_seen=True)
  full = datasets.leave_one_out(ds, max_history=None)["test"]
  seen = [full.history(u) for u in range(ds.num_users)]
  want_excl = metrics.ranking_metrics(
      metrics.popularity_baseline(counts, 20, exclude=seen),
      full.targets, num_items=NUM_ITEMS)
  assert excl == pytest.approx(want_excl)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_seen_items_are_the_whole_history(env, split):
  """Every item before the target, not just the `max_history` window."""
  want = datasets.leave_one_out(env["dataset"], max_history=None)[split]
  got = tiger.seen_items("tiger_test_tiny", split)
  assert sorted(got) == list(range(env["dataset"].num_users))
  longer = 0
  for u, h in got.items():
    np.testing.assert_array_equal(h, want.history(u))
    longer += len(h) > MAX_HISTORY
  assert longer > 0  # the window would have dropped items
  users = np.array([3, 0, 3])
  m = tiger.seen_items_matrix("tiger_test_tiny", split, users)
  assert m.dtype == np.int32 and m.shape[0] == 3
  for row, u in zip(m, users):
    np.testing.assert_array_equal(row[row >= 0], want.history(u))
    assert np.all(row[len(want.history(u)):] == -1)


def test_seen_items_errors(env):
  with pytest.raises(ConfigError, match=r"task 'tiger_test_tiny': no split "
                                        r"'dev'; seen items exist for "
                                        r"\['train', 'validation', 'test'\]"):
    tiger.seen_items("tiger_test_tiny", "dev")
  with pytest.raises(ConfigError, match=r"users \[1000\].*Re-materialise"):
    tiger.seen_items_matrix("tiger_test_tiny", "test", np.array([1000]))


_PREPARE = """
import sys
from recjax.tasks import tiger
source = tiger.RecjaxTfdsSource("recjax_synthetic/tiny", data_dir=sys.argv[1])
print(sum(1 for _ in source.get_dataset("test").as_numpy_iterator()))
"""


def test_processes_preparing_one_dataset_at_once_do_not_race(tmp_path):
  """TFDS fails when two processes prepare one dataset; the source locks."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  procs = [subprocess.Popen([sys.executable, "-c", _PREPARE, str(tmp_path)],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(3)]
  outs = [p.communicate(timeout=300) for p in procs]
  for proc, (out, err) in zip(procs, outs):
    assert proc.returncode == 0, err[-2000:]
    assert out.split()[-1] == "100"  # Every test user, in each process.
  assert len(list((tmp_path / "recjax_synthetic" / "tiny").iterdir())) == 2
