"""Tests for tasks.vocabulary.SemanticIdVocabulary."""

import json
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

from recjax.errors import ConfigError  # noqa: E402
from recjax.tasks import vocabulary as vocab_lib  # noqa: E402
from recjax.tasks.vocabulary import SemanticIdVocabulary  # noqa: E402
from recjax.tokens import SemanticIdLayout  # noqa: E402


def _vocab(codes=((0, 1), (3, 2), (1, 1)), sizes=(4, 4), buckets=10):
  return SemanticIdVocabulary(SemanticIdLayout(sizes, buckets),
                              np.array(codes, dtype=np.int32))


@st.composite
def _vocabularies(draw):
  sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
  total = int(np.prod(sizes))
  num_items = draw(st.integers(1, min(total, 25)))
  seed = draw(st.integers(0, 2**16))
  rng = np.random.default_rng(seed)
  keys = rng.choice(total, size=num_items, replace=False)
  codes = np.stack(np.unravel_index(keys, sizes), axis=1).astype(np.int32)
  buckets = draw(st.integers(0, 5))
  return SemanticIdVocabulary(SemanticIdLayout(sizes, buckets), codes)


def test_encode_decode_example():
  v = _vocab()
  assert v.encode("1 0") == [6, 9, 3, 8]
  assert v.decode([6, 9, 3, 8, 1, 0, 0]) == "1 0"
  assert v.vocab_size == 3 + 8 + 10
  assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  assert v.num_items == 3 and v.num_levels == 2


def test_decode_unknown_tuples_and_partial_groups_are_invalid():
  v = _vocab()
  assert v.decode([3, 7]) == "-1"  # (0, 0) is no item
  assert v.decode([7, 3]) == "-1"  # tokens of the wrong levels
  assert v.decode([2, 2]) == "-1"  # UNK
  assert v.decode([6, 9, 6]) == "1 -1"  # trailing partial group
  assert v.decode([6, 9, 1, 3, 8]) == "1"  # stops at EOS
  assert v.decode([v.user_token("u"), 6, 9]) == "1"  # user token dropped
  assert v.decode([]) == ""
  assert v.encode("-1") == [2, 2]
  assert v.decode(v.encode("-1 2")) == "-1 2"


@settings(max_examples=25, deadline=None)
@given(_vocabularies(), st.data())
def test_round_trip_and_tf_parity(v, data):
  items = data.draw(st.lists(st.integers(-1, v.num_items - 1), max_size=8))
  text = " ".join(map(str, items))
  ids = v.encode(text)
  assert len(ids) == len(items) * v.num_levels
  assert v.decode(ids) == text
  assert v.decode(ids + [1] + ids) == text
  np.testing.assert_array_equal(v.encode_tf(tf.constant(text)).numpy(),
                                np.array(ids, dtype=np.int32))
  assert v.decode_tf(tf.constant(ids + [1], tf.int32)).numpy().decode() == \
      text
  # Every item token lies in its level's range of the vocabulary.
  tokens = v.item_tokens(np.arange(v.num_items))
  for level in range(v.num_levels):
    lo, hi = v.layout.level_token_range(level)
    assert np.all((tokens[:, level] >= lo) & (tokens[:, level] < hi))
  assert np.all(tokens < v.vocab_size)


@settings(max_examples=25, deadline=None)
@given(_vocabularies(), st.data())
def test_decode_arbitrary_tokens_python_equals_tf(v, data):
  rows = data.draw(st.lists(
      st.lists(st.integers(0, v.vocab_size + 2), min_size=5, max_size=5),
      min_size=1, max_size=4))
  want = [v.decode(r) for r in rows]
  got = v.decode_tf(tf.constant(rows, tf.int32)).numpy()
  assert [g.decode() for g in got] == want
  for r in rows:
    for item in v.decode_items(r):
      assert -1 <= item < v.num_items


@settings(max_examples=30, deadline=None)
@given(_vocabularies())
def test_tokens_to_items_inverts_item_tokens(v):
  items = np.arange(v.num_items)
  tokens = v.item_tokens(items)
  np.testing.assert_array_equal(v.tokens_to_items(tokens), items)
  np.testing.assert_array_equal(
      v.tokens_to_items_tf(tf.constant(tokens)).numpy(), items)
  np.testing.assert_array_equal(v.item_tokens_tf(tf.constant(items)).numpy(),
                                tokens)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=12))
def test_user_token_tf_matches_layout(user_id):
  v = _vocab(buckets=7)
  want = v.layout.user_offset + zlib.crc32(user_id.encode("utf-8")) % 7
  assert v.user_token(user_id) == want
  assert int(v.user_token_tf(tf.constant(user_id))) == want


def test_user_token_without_buckets_raises():
  v = _vocab(buckets=0)
  with pytest.raises(ConfigError, match=r"this vocabulary layout has no "
                                        r"user-hash tokens; set "
                                        r"num_user_buckets"):
    v.user_token_tf(tf.constant("u"))


def test_out_of_range_items():
  v = _vocab()
  with pytest.raises(ConfigError, match="outside the catalog of 3 items"):
    v.encode("3")
  with pytest.raises(ConfigError, match=r"item index -2 is outside the "
                                        r"catalog of 3 items of vocabulary "
                                        r"<in-memory"):
    v.item_tokens([-2])
  with pytest.raises(ConfigError, match=r"cannot encode 'a b': expected "
                                        r"space-separated item indices such "
                                        r"as '12 7 3'"):
    v.encode("a b")
  with pytest.raises(tf.errors.InvalidArgumentError, match="do not belong"):
    v.encode_tf(tf.constant("3"))


def test_equality_and_hash():
  a, b = _vocab(), _vocab()
  assert a == b and hash(a) == hash(b) and a.fingerprint == b.fingerprint
  assert a != _vocab(codes=((0, 1), (3, 2), (1, 0)))
  assert a != _vocab(buckets=11)
  assert a != _vocab(sizes=(4, 5))
  assert len({a, b}) == 1


@pytest.mark.parametrize("codes,sizes,match", [
    (((0, 1), (0, 1)), (4, 4), "share the semantic ID"),
    (((0, 4),), (4, 4), "does not fit level 1"),
    (((0, 1, 0),), (4, 4), "3 levels"),
])
def test_bad_codes(codes, sizes, match):
  with pytest.raises(ConfigError, match=match):
    _vocab(codes=codes, sizes=sizes)


def test_from_directory_reads_manifest_sizes(tmp_path):
  codes = np.array([[0, 1], [2, 0]], np.int32)
  np.save(tmp_path / "codes.npy", codes)
  v = SemanticIdVocabulary.from_directory(tmp_path, num_user_buckets=3)
  assert v.layout.codebook_sizes == (3, 2)  # largest code + 1
  (tmp_path / "manifest.json").write_text(json.dumps(
      {"layout": {"codebook_sizes": [4, 8]}}))
  v = SemanticIdVocabulary.from_directory(tmp_path)
  assert v.layout.codebook_sizes == (4, 8)
  np.testing.assert_array_equal(v.codes, codes)
  v = SemanticIdVocabulary.from_directory(tmp_path, codebook_sizes=(5, 5))
  assert v.layout.codebook_sizes == (5, 5)


def test_from_directory_errors(tmp_path):
  with pytest.raises(ConfigError, match="run the semantic-ID stage"):
    SemanticIdVocabulary.from_directory(tmp_path)
  np.save(tmp_path / "codes.npy", np.array([[0, 5]], np.int32))
  with pytest.raises(ConfigError, match="codes.npy.*does not fit level 1"):
    SemanticIdVocabulary.from_directory(tmp_path, codebook_sizes=(4, 4))
  (tmp_path / "manifest.json").write_text("{bad")
  with pytest.raises(ConfigError, match="manifest.json:1:2: malformed"):
    SemanticIdVocabulary.from_directory(tmp_path)
  (tmp_path / "manifest.json").write_text(json.dumps(
      {"layout": {"codebook_sizes": "256"}}))
  with pytest.raises(ConfigError, match=r"manifest\.json: "
                                        r"layout\.codebook_sizes must be a "
                                        r"list of integers, got '256'"):
    SemanticIdVocabulary.from_directory(tmp_path)
  (tmp_path / "manifest.json").unlink()
  np.save(tmp_path / "codes.npy", np.zeros((3,), np.int32))
  with pytest.raises(ConfigError, match=r"codes\.npy: codes must be int "
                                        r"\[num_items, levels\], got shape "
                                        r"\(3,\)\."):
    SemanticIdVocabulary.from_directory(tmp_path)


def test_lazy_vocabulary_reads_on_first_use(tmp_path):
  v = SemanticIdVocabulary.from_directory(tmp_path / "sid", lazy=True,
                                          num_user_buckets=2)
  assert not v.is_loaded
  assert "lazy" in repr(v)
  assert v.eos_id == 1  # needs no codes
  with pytest.raises(ConfigError, match="codes.npy does not exist"):
    _ = v.vocab_size
  (tmp_path / "sid").mkdir()
  np.save(tmp_path / "sid" / "codes.npy", np.array([[0], [1]], np.int32))
  assert v.vocab_size == 3 + 2 + 2
  assert v.is_loaded
  assert v == SemanticIdVocabulary.from_directory(tmp_path / "sid",
                                                  num_user_buckets=2)


def test_crc32_table_is_zlibs():
  for s in (b"", b"a", b"recjax", bytes(range(256))):
    crc = 0xFFFFFFFF
    for byte in s:
      crc = int(vocab_lib._CRC32_TABLE[(crc ^ byte) & 0xFF]) ^ (crc >> 8)
    assert crc ^ 0xFFFFFFFF == zlib.crc32(s)
