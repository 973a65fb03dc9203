"""Tests for tasks.materialize (task split -> numpy files -> batches)."""

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
seqio = pytest.importorskip("seqio")

from recjax import numpy_batches  # noqa: E402
from recjax import tasks  # noqa: E402
from recjax.errors import ConfigError  # noqa: E402
from recjax.tasks import materialize as mat  # noqa: E402

NAME = "tiger_test_materialize"
SIZES = (8, 8, 4)
MAX_HISTORY = 4
LENGTHS = {"inputs": 1 + MAX_HISTORY * 3, "targets": 4}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("mat")
  rng = np.random.default_rng(2)
  keys = rng.choice(int(np.prod(SIZES)), size=60, replace=False)
  codes = np.stack(np.unravel_index(keys, SIZES), 1).astype(np.int32)
  (root / "sid").mkdir()
  np.save(root / "sid" / "codes.npy", codes)
  tasks.register_tiger_task(NAME, "recjax_synthetic/tiny", root / "sid",
                            data_dir=root / "tfds", max_history=MAX_HISTORY,
                            num_user_buckets=20, codebook_sizes=SIZES)
  return root


def _seqio_batches(split, batch_size):
  ds = seqio.get_dataset(NAME, LENGTHS, tasks.feature_converter(NAME),
                         dataset_split=split, shuffle=False,
                         batch_size=batch_size)
  return list(ds.as_numpy_iterator())


@pytest.mark.parametrize("split,batch_size", [("train", 32), ("test", 7)])
def test_batches_equal_seqio(env, split, batch_size):
  out = mat.materialize(NAME, split, env / "out" / split)
  reader = numpy_batches.NumpyBatches(out, batch_size)
  got = list(reader)
  want = _seqio_batches(split, batch_size)
  assert len(got) == len(want) > 0
  for g, w in zip(got, want):
    # Evaluation splits also carry the whole history before the target.
    extra = {mat.EXCLUDED_ITEMS} if split != "train" else set()
    assert set(g) == set(w) | extra
    for key in extra:
      seen = tasks.tiger.seen_items(NAME, split)
      for row, u in zip(g[key], g["user_index"]):
        np.testing.assert_array_equal(row[row >= 0], seen[int(u)])
        # The input window is the tail of the whole history.
        window = w["history_items"][list(g["user_index"]).index(u)]
        window = window[window >= 0]
        np.testing.assert_array_equal(seen[int(u)][-len(window):], window)
    for key in w:
      np.testing.assert_array_equal(g[key], w[key], err_msg=key)
      assert g[key].dtype == w[key].dtype


def test_manifest(env):
  out = mat.materialize(NAME, "validation", env / "val")
  manifest = json.loads((out / "manifest.json").read_text())
  vocab = tasks.get_vocabulary(NAME)
  assert manifest["task"] == NAME and manifest["split"] == "validation"
  assert manifest["num_examples"] == 100
  assert manifest["task_feature_lengths"] == LENGTHS
  assert manifest["vocabulary"]["fingerprint"] == vocab.fingerprint
  assert manifest["features"]["encoder_input_tokens"] == {
      "dtype": "<i4", "shape": [13]}
  assert manifest["features"]["history_items"]["shape"] == [MAX_HISTORY]
  assert manifest["feature_converter"]["max_history"] == MAX_HISTORY
  # The model side checks the vocabulary without TensorFlow.
  numpy_batches.NumpyBatches(out, 10,
                             vocabulary_fingerprint=vocab.fingerprint)
  assert not [p for p in (env).iterdir() if p.name.startswith(".val")]


def test_rerun_is_noop_unless_forced(env):
  out = mat.materialize(NAME, "test", env / "again")
  path = out / "encoder_input_tokens.npy"
  stamp = path.stat().st_mtime_ns
  mat.materialize(NAME, "test", env / "again")
  assert path.stat().st_mtime_ns == stamp
  mat.materialize(NAME, "test", env / "again", force=True)
  assert path.stat().st_mtime_ns != stamp


def test_padded_eval_batches_cover_every_example(env):
  out = mat.materialize(NAME, "test", env / "pad")
  reader = numpy_batches.NumpyBatches(out, 16, remainder="pad")
  seen = np.concatenate([b["user_index"][b["mask"]] for b in reader])
  assert sorted(seen.tolist()) == list(range(100))


def test_bad_input_leaves_nothing(env):
  with pytest.raises(ConfigError,
                     match=r"unknown task 'nope'; register it first"):
    mat.materialize("nope", "train", env / "bad")
  with pytest.raises(ConfigError, match="no split 'dev'"):
    mat.materialize(NAME, "dev", env / "bad")
  with pytest.raises(ConfigError,
                     match=r"feature length inputs=5 is too short; it needs"):
    mat.materialize(NAME, "train", env / "bad",
                    feature_lengths={"inputs": 5, "targets": 4})
  assert not (env / "bad").exists()


def test_cli(env, capsys):
  mat.main(["--task", NAME, "--split", "validation", "--out",
            str(env / "cli")])
  assert "100 examples" in capsys.readouterr().out
  assert (env / "cli" / "manifest.json").exists()
