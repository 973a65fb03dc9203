"""Tests for recjax.text_encoders (BERT family and T5 encoder).

The MiniLM parity fixture tests/fixtures/minilm_reference.json was produced
once, outside the project, in a throwaway virtualenv:

  python3.11 -m venv /tmp/stenv
  /tmp/stenv/bin/pip install torch==2.13.0 sentence-transformers  # 6.2.0
  HF_HUB_OFFLINE=1 /tmp/stenv/bin/python make_ref.py  # in short:
    m = SentenceTransformer(<recjax.assets.fetch("all_minilm_l6_v2")>,
                            device="cpu")
    emb = m.encode(texts, batch_size=4)   # mean pooling + Normalize

with the ten texts stored next to the vectors (including an empty string
and a text longer than the 256-token limit). The other tests build tiny
random checkpoints in the HF layout and compare against numpy forward
passes written here.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from tiny_checkpoints import write_bert
from tiny_checkpoints import write_t5

from recjax.errors import ConfigError
from recjax.text_encoders import load_text_encoder
from recjax.text_encoders.t5 import relative_position_bucket

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "minilm_reference.json"
TEXTS = ["red pen", "blue ink paper office stapler pen", "nail polish",
         "soft cream shampoo red blue black", "", "lipstick"]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b,
                                                                       axis=1)


@pytest.mark.network("all_minilm_l6_v2")
def test_minilm_matches_sentence_transformers():
  ref = json.loads(FIXTURE.read_text(encoding="utf-8"))
  assert len(ref["texts"]) >= 8
  enc = load_text_encoder()  # the pinned all-MiniLM-L6-v2 asset
  assert enc.dim == 384 and enc.max_length == ref["max_seq_length"]
  assert [len(t) for t in enc.tokenize(ref["texts"])] == ref["num_tokens"]
  got = enc.encode(ref["texts"], batch_size=4)
  want = np.asarray(ref["embeddings"], np.float32)
  assert got.dtype == np.float32 and got.shape == want.shape
  cos = _cosine(got.astype(np.float64), want.astype(np.float64))
  assert np.all(cos >= 0.9999), cos
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
  # Batching and bucketing do not change the vectors.
  np.testing.assert_allclose(enc.encode(ref["texts"][::-1], batch_size=3),
                             got[::-1], atol=2e-5)


# -- numpy references ---------------------------------------------------------


def _ln(x, w, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * w + b


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _gelu(x):
  return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _bert_reference(ids, ckpt, roberta):
  c, w = ckpt["config"], {k: v.astype(np.float64)
                          for k, v in ckpt["weights"].items()}
  t, heads = len(ids), c["num_attention_heads"]
  pos = np.arange(t) + (c["pad_token_id"] + 1 if roberta else 0)
  x = (w["embeddings.word_embeddings.weight"][ids] +
       w["embeddings.position_embeddings.weight"][pos] +
       w["embeddings.token_type_embeddings.weight"][0])
  x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
          c["layer_norm_eps"])
  dh = c["hidden_size"] // heads
  for i in range(c["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    lin = lambda n, y, p=p: y @ w[f"{p}.{n}.weight"].T + w[f"{p}.{n}.bias"]
    q, k, v = (lin(f"attention.self.{n}", x).reshape(t, heads, dh)
               for n in ("query", "key", "value"))
    a = _softmax(np.einsum("qhd,khd->hqk", q, k) / math.sqrt(dh))
    ctx = np.einsum("hqk,khd->qhd", a, v).reshape(t, -1)
    x = _ln(x + lin("attention.output.dense", ctx),
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"], c["layer_norm_eps"])
    h = lin("output.dense", _gelu(lin("intermediate.dense", x)))
    x = _ln(x + h, w[f"{p}.output.LayerNorm.weight"],
            w[f"{p}.output.LayerNorm.bias"], c["layer_norm_eps"])
  v = x.mean(0)
  return v / np.linalg.norm(v)


def _bucket(rel, num_buckets, max_distance):
  half = num_buckets // 2
  out = half if rel > 0 else 0
  n = abs(rel)
  exact = half // 2
  if n < exact:
    return out + n
  val = exact + int(math.log(n / exact) / math.log(max_distance / exact) *
                    (half - exact))
  return out + min(val, half - 1)


def _t5_reference(ids, ckpt):
  c, w = ckpt["config"], {k: v.astype(np.float64)
                          for k, v in ckpt["weights"].items()}
  t, heads, dk = len(ids), c["num_heads"], c["d_kv"]
  rms = lambda x, s: x / np.sqrt((x * x).mean(-1, keepdims=True) +
                                 c["layer_norm_epsilon"]) * s
  rel_w = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias."
            "weight"]
  bias = np.zeros((heads, t, t))
  for qi in range(t):
    for ki in range(t):
      b = _bucket(ki - qi, c["relative_attention_num_buckets"],
                  c["relative_attention_max_distance"])
      bias[:, qi, ki] = rel_w[b]
  x = w["shared.weight"][ids]
  for i in range(c["num_layers"]):
    p = f"encoder.block.{i}.layer"
    h = rms(x, w[f"{p}.0.layer_norm.weight"])
    q, k, v = (h @ w[f"{p}.0.SelfAttention.{n}.weight"].T for n in "qkv")
    q, k, v = (y.reshape(t, heads, dk) for y in (q, k, v))
    a = _softmax(np.einsum("qhd,khd->hqk", q, k) + bias)
    ctx = np.einsum("hqk,khd->qhd", a, v).reshape(t, -1)
    x = x + ctx @ w[f"{p}.0.SelfAttention.o.weight"].T
    h = rms(x, w[f"{p}.1.layer_norm.weight"])
    if c["feed_forward_proj"] == "gated-gelu":
      g = h @ w[f"{p}.1.DenseReluDense.wi_0.weight"].T
      g = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) *
                                 (g + 0.044715 * g ** 3)))
      f = g * (h @ w[f"{p}.1.DenseReluDense.wi_1.weight"].T)
    else:
      f = np.maximum(h @ w[f"{p}.1.DenseReluDense.wi.weight"].T, 0)
    x = x + f @ w[f"{p}.1.DenseReluDense.wo.weight"].T
  x = rms(x, w["encoder.final_layer_norm.weight"])
  v = x.mean(0) @ ckpt["dense"].T.astype(np.float64)
  return v / np.linalg.norm(v)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_bert_family_matches_numpy_reference(tmp_path, model_type):
  ckpt = write_bert(tmp_path / "m", model_type)
  enc = load_text_encoder(tmp_path / "m")
  assert enc.model_type == model_type and enc.dim == 12
  got = enc.encode(TEXTS, batch_size=4)
  for text, ids, vec in zip(TEXTS, enc.tokenize(TEXTS), got):
    want = _bert_reference(np.asarray(ids), ckpt, model_type == "roberta")
    np.testing.assert_allclose(vec, want, atol=2e-5, err_msg=text)


@pytest.mark.parametrize("gated", [False, True])
def test_t5_encoder_matches_numpy_reference(tmp_path, gated):
  ckpt = write_t5(tmp_path / "t5", gated=gated)
  enc = load_text_encoder(tmp_path / "t5")
  assert enc.model_type == "t5" and enc.dim == 8 and enc.max_length == 12
  got = enc.encode(TEXTS, batch_size=4)
  assert got.shape == (len(TEXTS), 8) and got.dtype == np.float32
  for ids, vec in zip(enc.tokenize(TEXTS), got):
    assert ids[-1] == ckpt["vocab"]["</s>"]
    np.testing.assert_allclose(vec, _t5_reference(np.asarray(ids), ckpt),
                               atol=2e-5)
  # Deterministic, and independent of batch composition and padding.
  np.testing.assert_array_equal(enc.encode(TEXTS, batch_size=4), got)
  np.testing.assert_allclose(enc.encode(TEXTS[:1])[0], got[0], atol=1e-6)


def test_t5_truncates_to_max_seq_length(tmp_path):
  write_t5(tmp_path / "t5")
  enc = load_text_encoder(tmp_path / "t5")
  ids = enc.tokenize([" ".join(["pen"] * 40)])[0]
  assert len(ids) == 12


def test_relative_position_bucket_matches_reference():
  rel = np.arange(-40, 41)
  got = np.asarray(relative_position_bucket(rel, 32, 128))
  want = [_bucket(int(r), 32, 128) for r in rel]
  np.testing.assert_array_equal(got, want)


def test_unsupported_model_type_is_a_clear_error(tmp_path):
  write_t5(tmp_path / "m")
  cfg = json.loads((tmp_path / "m" / "config.json").read_text())
  cfg["model_type"] = "gpt2"
  (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ConfigError, match=r"m/config\.json: model_type 'gpt2' "
                                        r"is not a supported text encoder "
                                        r"\(BERT family .*Point model_dir at"):
    load_text_encoder(tmp_path / "m")


def test_missing_weights_and_wrong_layout_are_clear_errors(tmp_path):
  write_t5(tmp_path / "m")
  (tmp_path / "m" / "model.safetensors").unlink()
  with pytest.raises(ConfigError, match=r"model\.safetensors does not exist\. "
                                        r"recjax reads weights from "
                                        r"model\.safetensors"):
    load_text_encoder(tmp_path / "m")
  # A T5 checkpoint labelled as BERT: names the missing tensor.
  write_t5(tmp_path / "x")
  cfg = json.loads((tmp_path / "x" / "config.json").read_text())
  cfg.update(model_type="bert", hidden_size=16, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=24)
  (tmp_path / "x" / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ConfigError, match=r"checkpoint has no tensor "
                                        r"'embeddings\.word_embeddings\."
                                        r"weight'; it is not a BERT-family "
                                        r"model\.safetensors"):
    load_text_encoder(tmp_path / "x")
  with pytest.raises(ConfigError, match=r"config\.json does not exist\. A "
                                        r"text encoder directory needs "
                                        r"config\.json"):
    load_text_encoder(tmp_path / "nothing_here")
