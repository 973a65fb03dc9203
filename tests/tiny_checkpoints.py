"""Tiny random Hugging Face checkpoints written by tests (no downloads).

`write_t5` writes a sentence-T5-layout directory (config.json,
model.safetensors, tokenizer.json, modules.json, 1_Pooling/, 2_Dense/,
3_Normalize/); `write_bert` a BERT/RoBERTa-layout one. Weights are random
with a fixed seed and returned for numpy reference computations.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import tokenizers
from safetensors.numpy import save_file
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import processors

WORDS = ("stapler pen paper ink red blue black office mascara lipstick "
         "nail polish shampoo cream soft hard").split()


def write_tokenizer(path: pathlib.Path, specials: tuple[str, ...],
                    template: str) -> dict[str, int]:
  """A whitespace word-level tokenizer; returns its vocabulary."""
  vocab = {t: i for i, t in enumerate(specials + tuple(WORDS))}
  tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=specials[2]))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  used = [(t, vocab[t]) for t in specials if t in template]
  tok.post_processor = processors.TemplateProcessing(
      single=template, special_tokens=used)
  tok.save(str(path / "tokenizer.json"))
  return vocab


def _write_modules(path: pathlib.Path, dense_out: int | None,
                   in_dim: int, rng: np.random.Generator) -> dict:
  modules = [
      {"idx": 0, "name": "0", "path": "",
       "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "name": "1", "path": "1_Pooling",
       "type": "sentence_transformers.models.Pooling"}]
  (path / "1_Pooling").mkdir()
  (path / "1_Pooling" / "config.json").write_text(json.dumps({
      "word_embedding_dimension": in_dim, "pooling_mode_mean_tokens": True,
      "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False}))
  extra = {}
  if dense_out:
    (path / "2_Dense").mkdir()
    (path / "2_Dense" / "config.json").write_text(json.dumps({
        "in_features": in_dim, "out_features": dense_out, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    w = rng.normal(size=(dense_out, in_dim)).astype(np.float32)
    save_file({"linear.weight": w}, str(path / "2_Dense" /
                                        "model.safetensors"))
    extra["dense"] = w
    modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense"})
  modules.append({"idx": len(modules), "name": str(len(modules)),
                  "path": f"{len(modules)}_Normalize",
                  "type": "sentence_transformers.models.Normalize"})
  (path / "modules.json").write_text(json.dumps(modules))
  (path / "sentence_bert_config.json").write_text(
      json.dumps({"max_seq_length": 12}))
  return extra


def write_t5(path: pathlib.Path, gated: bool = False,
             seed: int = 0) -> dict:
  """Writes a tiny sentence-T5 checkpoint; returns config and weights."""
  path.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  vocab = write_tokenizer(path, ("<pad>", "</s>", "<unk>"), "$A </s>")
  cfg = {"model_type": "t5", "vocab_size": len(vocab), "d_model": 16,
         "d_kv": 4, "num_heads": 3, "d_ff": 24, "num_layers": 2,
         "relative_attention_num_buckets": 8,
         "relative_attention_max_distance": 10, "layer_norm_epsilon": 1e-6,
         "feed_forward_proj": "gated-gelu" if gated else "relu",
         "pad_token_id": 0}
  (path / "config.json").write_text(json.dumps(cfg))
  d, inner, ff = cfg["d_model"], cfg["d_kv"] * cfg["num_heads"], cfg["d_ff"]
  r = lambda *s: (rng.normal(size=s) * 0.3).astype(np.float32)
  w = {"shared.weight": r(len(vocab), d),
       "encoder.final_layer_norm.weight": 1 + r(d),
       "encoder.block.0.layer.0.SelfAttention.relative_attention_bias."
       "weight": r(8, 3)}
  for i in range(cfg["num_layers"]):
    p = f"encoder.block.{i}.layer"
    for n in "qkv":
      w[f"{p}.0.SelfAttention.{n}.weight"] = r(inner, d)
    w[f"{p}.0.SelfAttention.o.weight"] = r(d, inner)
    w[f"{p}.0.layer_norm.weight"] = 1 + r(d)
    w[f"{p}.1.layer_norm.weight"] = 1 + r(d)
    names = ("wi_0", "wi_1") if gated else ("wi",)
    for n in names:
      w[f"{p}.1.DenseReluDense.{n}.weight"] = r(ff, d)
    w[f"{p}.1.DenseReluDense.wo.weight"] = r(d, ff)
  save_file(w, str(path / "model.safetensors"))
  extra = _write_modules(path, 8, d, rng)
  return {"config": cfg, "weights": w, "vocab": vocab, **extra}


def write_bert(path: pathlib.Path, model_type: str = "bert",
               seed: int = 0) -> dict:
  """Writes a tiny BERT (or RoBERTa) checkpoint; returns config, weights."""
  path.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  vocab = write_tokenizer(path, ("[PAD]", "[CLS]", "[UNK]", "[SEP]"),
                          "[CLS] $A [SEP]")
  pad = 0
  cfg = {"model_type": model_type, "vocab_size": len(vocab),
         "hidden_size": 12, "num_hidden_layers": 2, "num_attention_heads": 3,
         "intermediate_size": 20, "max_position_embeddings": 20,
         "type_vocab_size": 1 if model_type == "roberta" else 2,
         "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": pad}
  (path / "config.json").write_text(json.dumps(cfg))
  h, m = cfg["hidden_size"], cfg["intermediate_size"]
  r = lambda *s: (rng.normal(size=s) * 0.3).astype(np.float32)
  pre = "roberta." if model_type == "roberta" else ""
  w = {f"{pre}embeddings.word_embeddings.weight": r(len(vocab), h),
       f"{pre}embeddings.position_embeddings.weight": r(20, h),
       f"{pre}embeddings.token_type_embeddings.weight":
           r(cfg["type_vocab_size"], h),
       f"{pre}embeddings.LayerNorm.weight": 1 + r(h),
       f"{pre}embeddings.LayerNorm.bias": r(h)}
  for i in range(cfg["num_hidden_layers"]):
    p = f"{pre}encoder.layer.{i}"
    for n in ("query", "key", "value"):
      w[f"{p}.attention.self.{n}.weight"] = r(h, h)
      w[f"{p}.attention.self.{n}.bias"] = r(h)
    w[f"{p}.attention.output.dense.weight"] = r(h, h)
    w[f"{p}.attention.output.dense.bias"] = r(h)
    w[f"{p}.attention.output.LayerNorm.weight"] = 1 + r(h)
    w[f"{p}.attention.output.LayerNorm.bias"] = r(h)
    w[f"{p}.intermediate.dense.weight"] = r(m, h)
    w[f"{p}.intermediate.dense.bias"] = r(m)
    w[f"{p}.output.dense.weight"] = r(h, m)
    w[f"{p}.output.dense.bias"] = r(h)
    w[f"{p}.output.LayerNorm.weight"] = 1 + r(h)
    w[f"{p}.output.LayerNorm.bias"] = r(h)
  save_file(w, str(path / "model.safetensors"))
  _write_modules(path, None, h, rng)
  return {"config": cfg, "weights": {k[len(pre):]: v for k, v in w.items()},
          "vocab": vocab}
