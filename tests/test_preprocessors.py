"""Tests for tasks.preprocessors (prefix expansion, tokens, converter)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from recjax import datasets  # noqa: E402
from recjax.errors import ConfigError  # noqa: E402
from recjax.tasks import preprocessors as prep  # noqa: E402
from recjax.tasks.vocabulary import SemanticIdVocabulary  # noqa: E402
from recjax.tokens import SemanticIdLayout  # noqa: E402

NUM_ITEMS = 60
LEVELS = 3


@pytest.fixture(scope="module")
def dataset():
  return datasets.load("synthetic", num_users=100, num_items=NUM_ITEMS,
                       num_clusters=6, seed=0)


@pytest.fixture(scope="module")
def vocab():
  rng = np.random.default_rng(0)
  keys = rng.choice(8 * 8 * 4, size=NUM_ITEMS, replace=False)
  codes = np.stack(np.unravel_index(keys, (8, 8, 4)), 1).astype(np.int32)
  return SemanticIdVocabulary(SemanticIdLayout((8, 8, 4), 50), codes)


def _split_dataset(ds, split):
  """A tf.data dataset like the TFDS builder's, from leave_one_out."""
  s = datasets.leave_one_out(ds)[split]

  def gen():
    for i in range(len(s)):
      u = int(s.users[i])
      yield {"user_index": np.int32(u), "user_id": ds.user_ids[u],
             "history": s.history(i).astype(np.int32),
             "target": np.int32(s.targets[i])}

  sig = {"user_index": tf.TensorSpec([], tf.int32),
         "user_id": tf.TensorSpec([], tf.string),
         "history": tf.TensorSpec([None], tf.int32),
         "target": tf.TensorSpec([], tf.int32)}
  out = tf.data.Dataset.from_generator(gen, output_signature=sig)
  return prep.tag_split(out, split == "train")


def _expected_examples(ds, split, max_history):
  """Brute force: TIGER's prefix expansion straight from the sequences."""
  out = []
  n_hold = {"train": 2, "validation": 1, "test": 0}[split]
  for u in range(ds.num_users):
    seq = ds.items_flat[ds.offsets[u]:ds.offsets[u + 1]]
    seq = seq[:len(seq) - n_hold]
    positions = range(1, len(seq)) if split == "train" else [len(seq) - 1]
    for i in positions:
      out.append((u, list(seq[max(0, i - max_history):i]), int(seq[i])))
  return out


@pytest.mark.parametrize("split", ["train", "validation", "test"])
@pytest.mark.parametrize("max_history", [3, 20])
def test_expand_prefixes_matches_brute_force(dataset, split, max_history):
  ds = prep.expand_prefixes(_split_dataset(dataset, split), max_history)
  got = [(int(e["user_index"]), e["history"].tolist(), int(e["target"]))
         for e in ds.as_numpy_iterator()]
  assert got == _expected_examples(dataset, split, max_history)


@pytest.mark.parametrize("max_prefixes", [1, 4])
def test_max_prefixes_keeps_the_most_recent(dataset, max_prefixes):
  ds = prep.expand_prefixes(_split_dataset(dataset, "train"), 5,
                            max_prefixes=max_prefixes)
  got = [(int(e["user_index"]), e["history"].tolist(), int(e["target"]))
         for e in ds.as_numpy_iterator()]
  full = _expected_examples(dataset, "train", 5)
  want = []
  for u in range(dataset.num_users):
    want += [e for e in full if e[0] == u][-max_prefixes:]
  assert got == want
  with pytest.raises(ConfigError, match=r"max_prefixes must be >= 1 or None, "
                                        r"got 0\."):
    prep.expand_prefixes(_split_dataset(dataset, "train"), 5, max_prefixes=0)


def test_expand_flag_overrides_is_train(dataset):
  val = _split_dataset(dataset, "validation")
  expanded = list(prep.expand_prefixes(val, 20, expand=True)
                  .as_numpy_iterator())
  s = datasets.leave_one_out(dataset)["validation"]
  assert len(expanded) == sum(len(s.history(i)) for i in range(len(s)))
  train = _split_dataset(dataset, "train")
  kept = list(prep.expand_prefixes(train, 5, expand=False)
              .as_numpy_iterator())
  assert len(kept) == dataset.num_users
  assert all(len(e["history"]) <= 5 for e in kept)
  with pytest.raises(ConfigError, match=r"max_history must be >= 1, got 0\."):
    prep.expand_prefixes(train, 0)


def test_to_inputs_targets(dataset, vocab):
  ds = prep.to_inputs_targets(
      prep.expand_prefixes(_split_dataset(dataset, "test"), 20), vocab)
  for ex in ds.as_numpy_iterator():
    u = int(ex["user_index"])
    assert ex["inputs"][0] == vocab.user_token(dataset.user_ids[u])
    np.testing.assert_array_equal(
        ex["inputs"][1:], vocab.item_tokens(ex["history_items"]).ravel())
    np.testing.assert_array_equal(ex["targets"],
                                  vocab.item_tokens(ex["target_item"]))
    assert vocab.decode(ex["inputs"]) == " ".join(
        map(str, ex["history_items"]))
    assert ex["inputs"].dtype == np.int32 and ex["targets"].dtype == np.int32
    assert np.all((ex["inputs"] >= 3) & (ex["inputs"] < vocab.vocab_size))
  no_user = prep.to_inputs_targets(_split_dataset(dataset, "test"), vocab,
                                   use_user_token=False)
  ex = next(no_user.as_numpy_iterator())
  assert len(ex["inputs"]) == LEVELS * len(ex["history_items"])


def test_user_token_needs_buckets(vocab):
  v = SemanticIdVocabulary(SemanticIdLayout((8, 8, 4), 0), vocab.codes)
  ds = tf.data.Dataset.from_tensors({"history": [1], "target": 2})
  with pytest.raises(ConfigError,
                     match=r"use_user_token=True but the vocabulary has no "
                           r"user buckets; build it with num_user_buckets > 0"):
    prep.to_inputs_targets(ds, v)


def test_feature_converter_layout(dataset, vocab):
  ds = prep.to_inputs_targets(
      prep.expand_prefixes(_split_dataset(dataset, "train"), 20), vocab)
  ds = ds.map(lambda ex: {**ex, "targets": tf.concat(
      [ex["targets"], [vocab.eos_id]], 0)})
  lengths = {"inputs": 1 + 20 * LEVELS, "targets": LEVELS + 1}
  conv = prep.RecFeatureConverter(max_history=20)
  assert conv.get_model_feature_lengths(lengths) == {
      "encoder_input_tokens": 61, "decoder_target_tokens": 4,
      "decoder_input_tokens": 4, "decoder_loss_weights": 4,
      "target_item": 1, "user_index": 1, "history_items": 20}
  raw = list(ds.take(40).as_numpy_iterator())
  out = list(conv(ds, lengths).take(40).as_numpy_iterator())
  for r, o in zip(raw, out):
    assert o["encoder_input_tokens"].shape == (61,)
    n = len(r["inputs"])
    np.testing.assert_array_equal(o["encoder_input_tokens"][:n], r["inputs"])
    assert not o["encoder_input_tokens"][n:].any()
    tgt = o["decoder_target_tokens"]
    assert tgt.shape == (4,) and tgt[-1] == vocab.eos_id
    np.testing.assert_array_equal(o["decoder_input_tokens"],
                                  np.concatenate([[0], tgt[:-1]]))
    np.testing.assert_array_equal(o["decoder_loss_weights"], [1, 1, 1, 1])
    assert o["target_item"] == r["target_item"]
    assert o["user_index"] == r["user_index"]
    h = r["history_items"]
    np.testing.assert_array_equal(o["history_items"][:len(h)], h)
    assert np.all(o["history_items"][len(h):] == prep.HISTORY_PAD)
    assert o["history_items"].shape == (20,)


def test_feature_converter_rejects_packing():
  with pytest.raises(ConfigError, match=r"RecFeatureConverter cannot pack "
                                        r"examples \(its pass-through "
                                        r"features"):
    prep.RecFeatureConverter(pack=True)


def test_check_lengths_fit():
  prep.check_lengths_fit({"inputs": 61, "targets": 4}, num_levels=3,
                         max_history=20)
  with pytest.raises(ConfigError, match="inputs=60 is too short; it needs 61"):
    prep.check_lengths_fit({"inputs": 60, "targets": 4}, num_levels=3,
                           max_history=20)
  with pytest.raises(ConfigError, match="targets=3 .* needs 4"):
    prep.check_lengths_fit({"inputs": 61, "targets": 3}, num_levels=3,
                           max_history=20)
  prep.check_lengths_fit({"inputs": 60, "targets": 4}, num_levels=3,
                         max_history=20, use_user_token=False)
  assert prep.required_inputs_length(4, 20) == 81
  assert prep.required_targets_length(4) == 5
