"""Tests for recjax.numpy_batches (TF-free reader of materialised batches)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from recjax import numpy_batches
from recjax.errors import ConfigError


def _write(directory, n, fingerprint="abc"):
  directory.mkdir(parents=True, exist_ok=True)
  arrays = {"idx": np.arange(n, dtype=np.int32),
            "tokens": np.arange(n * 3, dtype=np.int32).reshape(n, 3)}
  for k, a in arrays.items():
    np.save(numpy_batches.feature_path(directory, k), a)
  manifest = {"format_version": numpy_batches.FORMAT_VERSION,
              "num_examples": n,
              "features": {k: {"dtype": a.dtype.str,
                               "shape": list(a.shape[1:])}
                           for k, a in arrays.items()},
              "vocabulary": {"fingerprint": fingerprint}}
  (directory / numpy_batches.MANIFEST_FILE).write_text(json.dumps(manifest))
  return directory


def _ids(batches):
  out = []
  for b in batches:
    ids = b["idx"]
    if numpy_batches.MASK_KEY in b:
      ids = ids[b[numpy_batches.MASK_KEY]]
    out.append(ids)
  return np.concatenate(out) if out else np.zeros((0,), np.int32)


def test_unshuffled_batches_in_order(tmp_path):
  reader = numpy_batches.NumpyBatches(_write(tmp_path / "d", 10), 4)
  batches = list(reader)
  assert len(batches) == reader.num_batches == 2
  np.testing.assert_array_equal(batches[0]["idx"], [0, 1, 2, 3])
  np.testing.assert_array_equal(batches[1]["tokens"][0], [12, 13, 14])
  assert set(batches[0]) == {"idx", "tokens"}


def test_pad_remainder_masks_padding(tmp_path):
  reader = numpy_batches.NumpyBatches(_write(tmp_path / "d", 10), 4,
                                      remainder="pad")
  batches = list(reader)
  assert len(batches) == 3
  last = batches[-1]
  assert last["idx"].shape == (4,)
  np.testing.assert_array_equal(last["mask"], [True, True, False, False])
  np.testing.assert_array_equal(_ids(batches), np.arange(10))
  assert reader.element_spec()["mask"] == ((4,), np.dtype(bool))


def test_shuffle_is_deterministic_per_seed_and_epoch(tmp_path):
  d = _write(tmp_path / "d", 50)
  a = numpy_batches.NumpyBatches(d, 5, shuffle=True, seed=3)
  b = numpy_batches.NumpyBatches(d, 5, shuffle=True, seed=3)
  c = numpy_batches.NumpyBatches(d, 5, shuffle=True, seed=4)
  e0, e1 = _ids(a.epoch(0)), _ids(a.epoch(1))
  np.testing.assert_array_equal(e0, _ids(b.epoch(0)))
  assert sorted(e0.tolist()) == list(range(50))
  assert not np.array_equal(e0, e1)
  assert not np.array_equal(e0, _ids(c.epoch(0)))
  # Features stay aligned after shuffling.
  for batch in a.epoch(2):
    np.testing.assert_array_equal(batch["tokens"][:, 0], batch["idx"] * 3)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 9),
       num_shards=st.integers(1, 4), remainder=st.sampled_from(["drop",
                                                                "pad"]),
       shuffle=st.booleans(), epoch=st.integers(0, 3))
def test_sharding_invariants(tmp_path_factory, n, batch_size, num_shards,
                             remainder, shuffle, epoch):
  d = _write(tmp_path_factory.mktemp("d"), n)
  readers = [numpy_batches.NumpyBatches(d, batch_size, shuffle=shuffle,
                                        seed=7, shard_index=i,
                                        num_shards=num_shards,
                                        remainder=remainder)
             for i in range(num_shards)]
  per_shard = [list(r.epoch(epoch)) for r in readers]
  counts = {len(b) for b in per_shard}
  assert counts == {readers[0].num_batches}  # same number on every host
  for batches in per_shard:
    for b in batches:
      assert b["idx"].shape == (batch_size,)
  ids = [_ids(b) for b in per_shard]
  union = np.concatenate(ids)
  assert len(set(union.tolist())) == union.size  # disjoint, no repeats
  if remainder == "pad":
    assert sorted(union.tolist()) == list(range(n))
  else:
    per_host = (n // num_shards) // batch_size * batch_size
    assert all(i.size == per_host for i in ids)


def test_iterate_resumes_at_step(tmp_path):
  reader = numpy_batches.NumpyBatches(_write(tmp_path / "d", 23), 4,
                                      shuffle=True, seed=1)
  full = [b["idx"] for b in reader.iterate(num_epochs=3)]
  assert len(full) == 3 * reader.num_batches
  resumed = [b["idx"] for b in reader.iterate(start_step=7, num_epochs=3)]
  assert len(resumed) == len(full) - 7
  for x, y in zip(resumed, full[7:]):
    np.testing.assert_array_equal(x, y)


def test_iterate_without_batches_raises(tmp_path):
  reader = numpy_batches.NumpyBatches(_write(tmp_path / "d", 3), 4)
  with pytest.raises(ConfigError,
                     match=r"3 examples over 1 shard\(s\) make no batch of 4; "
                           r"lower batch_size or use remainder='pad'"):
    next(reader.iterate())


def test_feature_subset_and_fingerprint(tmp_path):
  d = _write(tmp_path / "d", 6, fingerprint="f1")
  reader = numpy_batches.NumpyBatches(d, 2, features=("idx",),
                                      vocabulary_fingerprint="f1")
  assert set(next(iter(reader))) == {"idx"}
  with pytest.raises(ConfigError, match=r"d: batches were made with "
                                        r"vocabulary f1, but the model's is "
                                        r"other"):
    numpy_batches.NumpyBatches(d, 2, vocabulary_fingerprint="other")
  with pytest.raises(ConfigError,
                     match=r"d: no features \['nope'\]; it has \['idx'"):
    numpy_batches.NumpyBatches(d, 2, features=("nope",))


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, r"batch_size must be positive, got 0"),
    ({"batch_size": 2, "shard_index": 2, "num_shards": 2},
     r"need 0 <= shard_index < num_shards, got shard_index=2, num_shards=2"),
    ({"batch_size": 2, "remainder": "keep"},
     r"remainder must be one of \('drop', 'pad'\), got 'keep'"),
])
def test_bad_arguments(tmp_path, kwargs, match):
  d = _write(tmp_path / "d", 6)
  with pytest.raises(ConfigError, match=match):
    numpy_batches.NumpyBatches(d, **kwargs)


def test_bad_directories(tmp_path):
  with pytest.raises(ConfigError, match="materialise the task first"):
    numpy_batches.NumpyBatches(tmp_path / "missing", 2)
  d = _write(tmp_path / "d", 6)
  (d / numpy_batches.MANIFEST_FILE).write_text("{oops")
  with pytest.raises(ConfigError, match=r"d/manifest\.json:1:2: malformed JSON "
                                        r"\(.*\); re-run the materialisation"):
    numpy_batches.NumpyBatches(d, 2)
  d = _write(tmp_path / "e", 6)
  np.save(numpy_batches.feature_path(d, "idx"), np.arange(5))
  with pytest.raises(ConfigError, match=r"idx\.npy has shape \(5,\), but the "
                                        r"manifest says 6 examples; re-run"):
    numpy_batches.NumpyBatches(d, 2)
  d = _write(tmp_path / "f", 6)
  numpy_batches.feature_path(d, "tokens").unlink()
  with pytest.raises(ConfigError, match="tokens.npy is missing"):
    numpy_batches.NumpyBatches(d, 2)


def test_vocabulary_fingerprint_depends_on_codes_and_layout():
  codes = np.array([[0, 1], [1, 0]])
  desc = {"codebook_sizes": [2, 2], "num_user_buckets": 0, "vocab_size": 7}
  f = numpy_batches.vocabulary_fingerprint(desc, codes)
  assert f == numpy_batches.vocabulary_fingerprint(dict(desc),
                                                   codes.astype(np.int64))
  assert f != numpy_batches.vocabulary_fingerprint(desc, codes[::-1])
  assert f != numpy_batches.vocabulary_fingerprint(
      {**desc, "num_user_buckets": 1}, codes)


def test_module_imports_no_tensorflow():
  code = ("import sys, recjax.numpy_batches; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)
