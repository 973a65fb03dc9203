"""Tests of recjax.batches: the one array-batch reader."""

import itertools

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax import batches as batches_lib
from recjax import item_sequences
from recjax.errors import ConfigError


def _arrays(n: int) -> dict[str, np.ndarray]:
  return {"x": np.arange(n, dtype=np.int32),
          "y": np.arange(2 * n, dtype=np.float32).reshape(n, 2)}


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(n=st.integers(1, 40), local=st.integers(1, 6),
                  shards=st.integers(1, 3), shuffle=st.booleans(),
                  pad=st.booleans(), seed=st.integers(0, 3))
def test_shards_together_are_the_one_process_batches(n, local, shards,
                                                     shuffle, pad, seed):
  """Process i of n reads rows i::n of each global batch; one epoch covers
  every example once (pad) or all but the remainder (drop)."""
  remainder = "pad" if pad else "drop"
  size = local * shards
  one = batches_lib.ArrayBatches(_arrays(n), size, shuffle=shuffle,
                                 seed=seed, remainder=remainder)
  parts = [batches_lib.ArrayBatches(_arrays(n), size, shuffle=shuffle,
                                    seed=seed, shard_index=i,
                                    num_shards=shards, remainder=remainder)
           for i in range(shards)]
  assert all(len(p) == len(one) for p in parts)
  seen = []
  for step in range(2 * len(one)):
    whole = one.batch(step)
    rows = [p.batch(step) for p in parts]
    for r in rows:
      assert r["x"].shape == (local,) and r["y"].shape == (local, 2)
    real = lambda b: b["x"][b["mask"]] if pad else b["x"]
    for i, r in enumerate(rows):
      np.testing.assert_array_equal(real(r), real(whole)[i::shards])
    np.testing.assert_array_equal(whole["y"][:, 0], 2 * whole["x"])
    if step < len(one):
      seen.extend(real(whole).tolist())
  if pad:
    assert sorted(seen) == list(range(n))
  else:
    assert len(seen) == (n // size) * size == len(set(seen))


def test_seek_resumes_the_same_stream():
  reader = batches_lib.ArrayBatches(_arrays(23), 4, shuffle=True, seed=7)
  full = [b["x"] for b in itertools.islice(reader.iterate(), 17)]
  again = batches_lib.ArrayBatches(_arrays(23), 4, shuffle=True, seed=7)
  resumed = [b["x"] for b in itertools.islice(again.iterate(9), 8)]
  for x, y in zip(resumed, full[9:]):
    np.testing.assert_array_equal(x, y)
  # A new epoch is a new permutation; the same seed gives the same one.
  assert not np.array_equal(reader.order(0), reader.order(1))
  np.testing.assert_array_equal(reader.order(1), again.order(1))
  assert len(list(reader.iterate(num_epochs=1))) == 5 == len(reader)


def test_item_level_front_ends_are_the_shared_reader():
  train = item_sequences.TrainBatches(_arrays(10), 4, seed=1, shard_index=0,
                                      num_shards=1)
  shared = batches_lib.ArrayBatches(_arrays(10), 4, shuffle=True, seed=1)
  for step in range(5):
    np.testing.assert_array_equal(train.batch(step)["x"],
                                  shared.batch(step)["x"])
  ev = item_sequences.EvalBatches(_arrays(5), 4)
  got = list(ev)
  assert len(got) == len(ev) == 2
  np.testing.assert_array_equal(got[1]["mask"], [True, False, False, False])
  np.testing.assert_array_equal(got[1]["x"], [4, 0, 0, 0])


@pytest.mark.parametrize("arrays, kwargs, match", [
    ({}, {"batch_size": 2}, r"no example arrays given"),
    ({"a": np.zeros(3), "b": np.zeros(4)}, {"batch_size": 2},
     r"example arrays differ in length: \{'a': 3, 'b': 4\}"),
    (_arrays(4), {"batch_size": 0},
     r"batch_size=0 must be a positive multiple of the 1 process"),
    (_arrays(4), {"batch_size": 3, "num_shards": 2},
     r"batch_size=3 must be a positive multiple of the 2 process\(es\)"),
    (_arrays(4), {"batch_size": 2, "shard_index": 2, "num_shards": 2},
     r"need 0 <= shard_index < num_shards, got shard_index=2, "
     r"num_shards=2"),
    (_arrays(4), {"batch_size": 2, "remainder": "keep"},
     r"remainder must be one of \('drop', 'pad'\), got 'keep'"),
])
def test_bad_arguments_by_message(arrays, kwargs, match):
  with pytest.raises(ConfigError, match=match):
    batches_lib.ArrayBatches(arrays, **kwargs)


def test_too_few_examples_for_a_batch():
  reader = batches_lib.ArrayBatches(_arrays(3), 4)
  assert len(reader) == 0 and list(reader) == []
  with pytest.raises(ConfigError, match=r"3 examples make no batch of 4; "
                     r"lower batch_size or use remainder='pad'"):
    next(reader.iterate())
