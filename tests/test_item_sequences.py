"""Tests for recjax.item_sequences (examples, batches, eval arrays)."""

import dataclasses

import numpy as np
import pytest

from recjax import datasets
from recjax import item_sequences
from recjax.errors import ConfigError

M = 5  # max_length: short, so long sequences need several windows.
SYNTH = {"num_users": 40, "num_items": 40, "num_clusters": 4,
         "min_length": 3, "mean_extra_length": 6.0, "max_length": 25,
         "seed": 3}


@pytest.fixture(scope="module")
def data():
  ds = datasets.load("synthetic", **SYNTH)
  return ds, datasets.leave_one_out(ds, max_history=None)


def _pad_left(values, width):
  values = list(values)[-width:]
  return [-1] * (width - len(values)) + values


def _train_seqs(ds):
  return [list(ds.sequence(u)[:-2]) for u in range(ds.num_users)]


def test_training_sequences_are_all_but_the_last_two_items(data):
  ds, splits = data
  offsets, flat = item_sequences.training_sequences(splits["train"])
  for u, seq in enumerate(_train_seqs(ds)):
    assert list(flat[offsets[u]:offsets[u + 1]]) == seq


@pytest.mark.parametrize("all_windows", [False, True])
def test_sequence_examples_match_brute_force(data, all_windows):
  ds, splits = data
  want_in, want_tgt = [], []
  for seq in _train_seqs(ds):
    pairs = list(zip(seq[:-1], seq[1:]))
    chunks = []
    end = len(pairs)
    while end > 0:
      chunks.append(pairs[max(0, end - M):end])
      end -= M
      if not all_windows:
        break
    for chunk in reversed(chunks):  # oldest first
      want_in.append(_pad_left([a for a, _ in chunk], M))
      want_tgt.append(_pad_left([b for _, b in chunk], M))
  got = item_sequences.sequence_examples(splits["train"], M, all_windows)
  np.testing.assert_array_equal(got["input_items"], want_in)
  np.testing.assert_array_equal(got["target_items"], want_tgt)
  assert got["input_items"].dtype == np.int32
  if all_windows:  # every training transition exactly once
    pairs = sum(len(s) - 1 for s in _train_seqs(ds))
    assert int((got["target_items"] >= 0).sum()) == pairs


def test_users_with_one_training_item_give_no_sequence_example(data):
  ds, splits = data
  lengths = np.array([len(s) for s in _train_seqs(ds)])
  assert (lengths == 1).any()  # the fixture covers the case
  got = item_sequences.sequence_examples(splits["train"], M)
  assert len(got["input_items"]) == int((lengths > 1).sum())


def test_prefix_examples_match_brute_force(data):
  ds, splits = data
  want_in, want_tgt = [], []
  for seq in _train_seqs(ds):
    for t in range(1, len(seq)):
      want_in.append(_pad_left(seq[:t], M))
      want_tgt.append([-1] * (M - 1) + [seq[t]])
  got = item_sequences.training_examples(splits["train"], M, "prefixes")
  np.testing.assert_array_equal(got["input_items"], want_in)
  np.testing.assert_array_equal(got["target_items"], want_tgt)


def test_unknown_train_mode_is_rejected(data):
  with pytest.raises(ConfigError, match=r"Unknown train mode 'windows'; use "
                                        r"one of \('sequences', 'prefixes'\)"):
    item_sequences.training_examples(data[1]["train"], M, "windows")
  with pytest.raises(ConfigError, match=r"ItemDataConfig\.train_mode='windows'"
                                        r"; use one of \('sequences', "
                                        r"'prefixes'\)\."):
    item_sequences.ItemDataConfig(train_mode="windows")


@pytest.mark.parametrize("split", ["validation", "test"])
def test_eval_arrays_hold_capped_input_and_full_history(data, split):
  ds, splits = data
  arrays = item_sequences.eval_arrays(splits[split], M)
  drop = 2 if split == "validation" else 1
  width = arrays["excluded_items"].shape[1]
  assert width == max(len(s) - drop for s in ds.sequences())
  for u in range(ds.num_users):
    seq = list(ds.sequence(u))
    hist = seq[:-drop]
    assert arrays["target_item"][u] == seq[-drop]
    assert list(arrays["input_items"][u]) == _pad_left(hist, M)
    row = arrays["excluded_items"][u]
    assert list(row[row >= 0]) == hist


def test_eval_batches_pad_the_last_batch_and_mask_it(data):
  arrays = item_sequences.eval_arrays(data[1]["test"], M)
  batches = item_sequences.EvalBatches(arrays, 16)
  got = list(batches)
  assert len(got) == len(batches) == 3  # 40 users
  assert all(len(b["mask"]) == 16 for b in got)
  assert sum(int(b["mask"].sum()) for b in got) == 40
  for key, value in arrays.items():
    real = np.concatenate([b[key][b["mask"]] for b in got])
    np.testing.assert_array_equal(real, value)
  assert len(list(batches)) == 3  # re-iterable


def _examples(n=23):
  return {"input_items": np.arange(n * 2).reshape(n, 2),
          "target_items": np.arange(n)}


def test_train_batches_resume_at_any_step_and_drop_the_remainder():
  src = item_sequences.TrainBatches(_examples(), 4, seed=7, num_shards=1,
                                    shard_index=0)
  assert src.num_batches == 5 and src.input_shapes == {
      "input_items": (4, 2), "target_items": (4,)}
  it = src.batches(0)
  first = [next(it) for _ in range(13)]
  resumed = src.batches(6)  # mid-epoch, crossing two epoch boundaries
  for want in first[6:]:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  for epoch in range(2):  # an epoch: 20 distinct examples, 3 dropped
    rows = np.concatenate([b["target_items"]
                           for b in first[5 * epoch:5 * epoch + 5]])
    assert len(set(rows.tolist())) == 20
  assert not np.array_equal(
      np.concatenate([b["target_items"] for b in first[:5]]),
      np.concatenate([b["target_items"] for b in first[5:10]]))
  other = item_sequences.TrainBatches(_examples(), 4, seed=8, num_shards=1,
                                      shard_index=0)
  assert not all(np.array_equal(next(other.batches(s))["target_items"],
                                first[s]["target_items"]) for s in range(5))


@pytest.mark.parametrize("procs", [2, 4])
def test_process_shards_partition_the_global_batch(procs):
  whole = item_sequences.TrainBatches(_examples(), 8, seed=1, num_shards=1,
                                      shard_index=0)
  shards = [item_sequences.TrainBatches(_examples(), 8, seed=1,
                                        num_shards=procs, shard_index=p)
            for p in range(procs)]
  assert all(s.local_batch_size == 8 // procs and
             s.num_batches == whole.num_batches for s in shards)
  for step in range(5):
    want = whole.batch(step)["target_items"]
    parts = [s.batch(step)["target_items"] for s in shards]
    got = np.empty_like(want)
    for p, part in enumerate(parts):
      got[p::procs] = part
    np.testing.assert_array_equal(got, want)


def test_train_batches_reject_bad_sizes():
  with pytest.raises(ConfigError, match="make no batch of 32"):
    item_sequences.TrainBatches(_examples(), 32, num_shards=1, shard_index=0)
  with pytest.raises(ConfigError, match="multiple of the 4 process"):
    item_sequences.TrainBatches(_examples(), 6, num_shards=4, shard_index=0)
  with pytest.raises(ConfigError, match=r"example arrays differ in length: "
                                        r"\{'a': 4, 'b': 5\}"):
    item_sequences.TrainBatches({"a": np.zeros(4), "b": np.zeros(5)}, 2)


def test_load_stages_the_dataset_once(tmp_path):
  cfg = item_sequences.ItemDataConfig(
      source="synthetic", source_kwargs=SYNTH, cache_dir=str(tmp_path),
      max_length=M, train_mode="prefixes", batch_size=8)
  first = item_sequences.load(cfg)
  staged = list(tmp_path.iterdir())
  assert [p.name for p in staged] == ["synthetic_s3"]
  mtime = (staged[0] / "meta.json").stat().st_mtime_ns
  second = item_sequences.load(cfg)
  assert (staged[0] / "meta.json").stat().st_mtime_ns == mtime
  assert second.dataset.fingerprint() == first.dataset.fingerprint()
  src = second.train_batches()
  assert src.batch_size == 8
  assert src.num_examples == sum(
      len(s) - 1 for s in _train_seqs(second.dataset))
  assert second.eval_batches("test").num_examples == SYNTH["num_users"]
  with pytest.raises(ConfigError, match=r"evaluation split must be "
                                        r"'validation' or 'test', got "
                                        r"'train'"):
    second.eval_batches("train")


def test_cold_items_leave_every_training_sequence_in_order(data):
  ds, splits = data
  cold = item_sequences.cold_items(ds.num_items, 0.25, seed=1)
  assert len(cold) == 10 and len(set(cold)) == 10
  np.testing.assert_array_equal(
      cold, item_sequences.cold_items(ds.num_items, 0.25, seed=1))
  assert not np.array_equal(
      cold, item_sequences.cold_items(ds.num_items, 0.25, seed=2))
  train = item_sequences.without_items(splits["train"], cold)
  offsets, flat = item_sequences.training_sequences(train)
  want = {u: [i for i in seq if i not in set(cold)]
          for u, seq in enumerate(_train_seqs(ds))}
  got = {int(u): list(flat[offsets[k]:offsets[k + 1]])
         for k, u in enumerate(train.users)}
  assert got == {u: s for u, s in want.items() if s}
  assert not np.isin(flat, cold).any()


def test_cold_only_evaluation_keeps_the_users_with_a_cold_target():
  config = item_sequences.ItemDataConfig(
      source="synthetic", source_kwargs=SYNTH, max_length=M,
      cold_fraction=0.25, eval_batch_size=7)
  data = item_sequences.load(config)
  batches = data.eval_batches("test", cold_only=True)
  rows = batches.arrays
  assert np.isin(rows["target_item"], data.cold).all()
  want = np.isin(data.splits["test"].targets, data.cold).sum()
  assert len(rows["target_item"]) == want > 0
  plain = item_sequences.load(dataclasses.replace(config, cold_fraction=0))
  with pytest.raises(ConfigError, match=r"cold_only needs ItemDataConfig."
                     r"cold_fraction > 0"):
    plain.eval_batches("test", cold_only=True)
  with pytest.raises(ConfigError, match=r"cold_fraction must be in \[0, "
                     r"1\), got 1.5"):
    dataclasses.replace(config, cold_fraction=1.5)
