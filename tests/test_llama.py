"""The Flax Llama-family causal LM and its GGUF reader.

Parity is against Hugging Face `transformers` (torch, eager) loading the
same GGUF files; its outputs are committed fixtures
(`fixtures/make_llama_reference.py`), so CI needs neither torch nor the
98 MB SmolLM2 file. The SmolLM2 check runs where the pinned asset is cached
or downloadable.
"""

from __future__ import annotations

import functools
import pathlib
import shutil

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from tiny_llama import write_tiny

from recjax.errors import ConfigError
from recjax.text_encoders import gguf_checkpoint
from recjax.text_encoders import llama

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_llama.gguf"


@pytest.fixture(scope="module")
def tiny() -> llama.CausalLM:
  return llama.load_causal_lm(TINY)


def test_tiny_logits_match_transformers(tiny):
  ref = np.load(FIXTURES / "tiny_llama_reference.npz")
  got = tiny.logits(ref["ids"], ref["mask"])
  real = ref["mask"].astype(bool)
  np.testing.assert_allclose(got[real], ref["logits"][real], atol=1e-4)
  greedy = tiny.generate([list(ref["ids"][0])], 8, stop_at_eos=False)[0]
  assert greedy == list(ref["greedy"])


def test_reader_keeps_the_stored_types_and_config(tiny):
  model = gguf_checkpoint.read_gguf(TINY)
  assert model.tensor_types["token_embd.weight"] == "Q8_0"
  assert model.tensor_types["blk.0.attn_q.weight"] == "Q4_1"
  assert model.tensor_types["blk.1.ffn_norm.weight"] == "F32"
  cfg = model.config
  assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads,
          cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size) == (
              2, 64, 4, 2, 16, 275)
  assert cfg.tie_embeddings and "output.weight" not in model.weights
  assert len(model.fingerprint) == 64


def test_cached_decoding_equals_the_full_forward_pass(tiny):
  """Prefill + one token per call reproduces every full-pass logit, with
  rows left-padded to different lengths."""
  rng = np.random.default_rng(3)
  lengths = [9, 5, 7]
  width, extra = max(lengths), 4
  seqs = [list(rng.integers(3, 275, size=n + extra)) for n in lengths]
  tok = np.zeros((3, width), np.int32)
  mask = np.zeros((3, width), np.int32)
  for r, n in enumerate(lengths):
    tok[r, width - n:] = seqs[r][:n]
    mask[r, width - n:] = 1
  cache = llama.init_cache(tiny.config, 3, width + extra)
  logits, cache = tiny._step(tiny.params, tok, mask, cache)
  steps = [np.asarray(logits[:, -1])]
  for i in range(extra):
    nxt = np.asarray([[s[n + i]] for s, n in zip(seqs, lengths)], np.int32)
    logits, cache = tiny._step(tiny.params, nxt, np.ones((3, 1), np.int32),
                               cache)
    steps.append(np.asarray(logits[:, -1]))
  for r, n in enumerate(lengths):
    full = tiny.logits(np.asarray([seqs[r]]))[0]  # No padding at all.
    for i in range(extra + 1):
      np.testing.assert_allclose(steps[i][r], full[n - 1 + i], atol=2e-4)


def test_padding_does_not_change_a_row(tiny):
  ids = np.asarray([[5, 9, 40, 7, 100]], np.int32)
  alone = tiny.logits(ids)[0]
  padded = np.concatenate([np.zeros((1, 3), np.int32), ids], axis=1)
  mask = np.asarray([[0, 0, 0, 1, 1, 1, 1, 1]])
  left = tiny.logits(padded, mask)[0, 3:]
  right = tiny.logits(np.concatenate([ids, np.zeros((1, 3), np.int32)], 1),
                      np.asarray([[1, 1, 1, 1, 1, 0, 0, 0]]))[0, :5]
  np.testing.assert_allclose(left, alone, atol=2e-4)
  np.testing.assert_allclose(right, alone, atol=2e-4)


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer():
  return gguf_checkpoint.read_gguf(TINY).tokenizer


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(st.text(alphabet=st.characters(
    blacklist_categories=("Cs",)), max_size=40))
def test_tokenizer_round_trips_any_text(text):
  tok = _tiny_tokenizer()
  ids = tok.encode(text, add_special_tokens=False).ids
  assert tok.decode(ids) == text


def test_tokenizer_merges_and_isolates_digits(tiny):
  enc = tiny.tokenizer.encode("the cat 2024", add_special_tokens=False)
  assert enc.tokens == ["t", "he", "Ġc", "at", "Ġ", "2", "0", "2", "4"]
  assert tiny.tokenizer.encode("<|im_start|>he",
                               add_special_tokens=False).tokens == [
                                   "<|im_start|>", "he"]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_text_encoder_pools_the_final_hidden_states(tiny, pooling):
  enc = tiny.text_encoder(pooling, max_length=16)
  texts = ["the cat sat", "on", "a mat in the house"]
  vectors = enc.encode(texts, batch_size=4)
  assert vectors.shape == (3, 64) and enc.name.endswith(pooling)
  for text, vec in zip(texts, vectors):
    ids = np.asarray([enc.tokenize([text])[0]], np.int32)
    hidden = np.asarray(tiny.module.apply(
        {"params": tiny.params}, ids, np.ones_like(ids),
        output="hidden")[0])[0]
    want = hidden.mean(0) if pooling == "mean" else hidden[-1]
    np.testing.assert_allclose(vec, want, atol=1e-4)
  with pytest.raises(ConfigError, match="pooling must be one of"):
    tiny.text_encoder("cls")


# --- Bad input: each names the file and the fix. ---


def test_missing_file(tmp_path):
  with pytest.raises(ConfigError, match=r"no\.gguf: no such GGUF file.*"
                     r"smollm2_135m"):
    gguf_checkpoint.read_gguf(tmp_path / "no.gguf")


def test_not_a_gguf_file(tmp_path):
  bad = tmp_path / "model.gguf"
  bad.write_bytes(b"PK\x03\x04 this is a zip")
  with pytest.raises(ConfigError, match=r"model\.gguf: not a GGUF file "
                     r"\(magic b'PK\\x03\\x04'.*Re-fetch it"):
    gguf_checkpoint.read_gguf(bad)


def test_truncated_file(tmp_path):
  cut = tmp_path / "cut.gguf"
  cut.write_bytes(TINY.read_bytes()[:30_000])
  with pytest.raises(ConfigError, match=r"cut\.gguf: cannot be read as GGUF"
                     r".*truncated or corrupt.*fetch it again"):
    gguf_checkpoint.read_gguf(cut)


def test_unsupported_architecture(tmp_path):
  path = tmp_path / "falcon.gguf"
  write_tiny(path, arch="falcon")
  with pytest.raises(ConfigError, match=r"falcon\.gguf: architecture "
                     r"'falcon' is not supported.*Llama-family GGUF"):
    gguf_checkpoint.read_gguf(path)


def test_unsupported_tensor_type(tmp_path):
  path = tmp_path / "f64.gguf"
  write_tiny(path, extra_tensor=np.ones((4, 32)))
  with pytest.raises(ConfigError, match=r"f64\.gguf: tensor 'extra\.weight'"
                     r" has type F64.*supported: .*Q4_1"):
    gguf_checkpoint.read_gguf(path)


def test_tokenizer_without_merges(tmp_path):
  path = tmp_path / "nomerges.gguf"
  write_tiny(path, with_merges=False)
  with pytest.raises(ConfigError, match=r"nomerges\.gguf: the tokenizer has "
                     r"no merges.*Re-convert the model with its merges"):
    gguf_checkpoint.read_gguf(path)


def test_sentencepiece_tokenizer_is_refused(tmp_path):
  path = tmp_path / "spm.gguf"
  write_tiny(path, tokenizer_model="llama")
  with pytest.raises(ConfigError, match=r"spm\.gguf: tokenizer\.ggml\.model "
                     r"is 'llama'.*byte-level BPE"):
    gguf_checkpoint.read_gguf(path)


def test_reader_leaves_the_file_alone(tmp_path):
  path = tmp_path / "copy.gguf"
  shutil.copy(TINY, path)
  before = path.read_bytes()
  gguf_checkpoint.read_gguf(path)
  assert path.read_bytes() == before


@pytest.mark.network("smollm2_135m")
def test_smollm2_matches_transformers():
  """The pinned SmolLM2-135M-Instruct: tokens, logits, greedy decoding."""
  ref = np.load(FIXTURES / "smollm2_reference.npz")
  lm = llama.load_causal_lm()
  assert lm.config.num_layers == 30 and lm.config.num_kv_heads == 3
  for i, prompt in enumerate(ref["prompts"]):
    ids = lm.encode_text(str(prompt))
    assert ids == list(ref[f"ids_{i}"])
    logits = lm.logits(np.asarray([ids]))[0]
    np.testing.assert_allclose(logits[-1], ref[f"last_logits_{i}"],
                               atol=5e-4)
    np.testing.assert_array_equal(logits.argmax(-1), ref[f"argmax_{i}"])
    assert lm.generate([ids], 16)[0] == list(ref[f"greedy_{i}"])


def test_bfloat16_matmuls_follow_float32(tiny):
  """bfloat16 inputs with float32 accumulation: logits and the gradient
  with respect to input vectors (SAID's) stay close to float32's."""
  import jax  # pylint: disable=g-import-not-at-top
  low = llama.load_causal_lm(TINY, dtype="bfloat16")
  assert low.params["layer_0"]["qkv"].dtype == "bfloat16"
  assert low.params["layer_0"]["attn_norm"].dtype == "float32"
  ids = np.random.default_rng(5).integers(3, 275, size=(2, 9))
  want, got = tiny.logits(ids), low.logits(ids)
  scale = np.abs(want).max()
  assert np.abs(got - want).max() < 0.05 * scale
  assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.8

  def grad(lm):
    embeds = np.asarray(tiny.params["embed"])[ids]

    def loss(x):
      logits, _ = lm.module.apply({"params": lm.params}, None,
                                  np.ones(ids.shape), embeds=x)
      return jax.nn.logsumexp(logits, axis=-1).sum()

    return np.asarray(jax.grad(loss)(embeds)).ravel()

  a, b = grad(tiny), grad(low)
  assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99
  with pytest.raises(ConfigError, match=r"LlamaConfig\.dtype must be "
                     r"'float32' or 'bfloat16', got 'float16'"):
    llama.load_causal_lm(TINY, dtype="float16")
