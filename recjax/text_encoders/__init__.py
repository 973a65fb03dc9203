"""Flax text encoders loaded from local Hugging Face checkpoints.

`load_text_encoder(model_dir)` reads `config.json` to pick the backbone
(BERT family: bert/roberta/xlm-roberta/camembert; T5 encoder: t5/mt5),
converts `model.safetensors` into Flax parameters, loads `tokenizer.json`,
and follows the sentence-transformers pipeline (`modules.json`) for pooling,
dense projections and normalisation. With no directory it loads the pinned
all-MiniLM-L6-v2 asset. Nothing is downloaded from a model hub.
"""

from __future__ import annotations

import os
import pathlib

from recjax.errors import ConfigError
from recjax.text_encoders import bert
from recjax.text_encoders import t5
from recjax.text_encoders.base import TextEncoder
from recjax.text_encoders.base import pool
from recjax.text_encoders.checkpoint import SentenceConfig
from recjax.text_encoders.checkpoint import fingerprint
from recjax.text_encoders.checkpoint import load_tokenizer
from recjax.text_encoders.checkpoint import load_weights
from recjax.text_encoders.checkpoint import read_json
from recjax.text_encoders.checkpoint import read_sentence_config

DEFAULT_ASSET = "all_minilm_l6_v2"
# Causal LMs used as sentence encoders truncate item text here by default.
LM_MAX_LENGTH = 64

__all__ = ["DEFAULT_ASSET", "LM_MAX_LENGTH", "SentenceConfig", "TextEncoder",
           "default_model_dir", "is_causal_lm", "load_text_encoder",
           "model_fingerprint", "pool", "resolve_model"]


def default_model_dir() -> pathlib.Path:
  """The pinned all-MiniLM-L6-v2 checkpoint directory (fetched once)."""
  from recjax import assets  # pylint: disable=g-import-not-at-top
  return assets.fetch(DEFAULT_ASSET)


def resolve_model(model_dir: str | os.PathLike[str] | None
                  ) -> pathlib.Path:
  """The checkpoint a `model_dir` value names.

  Args:
    model_dir: a checkpoint directory, a `.gguf` file, the name of a pinned
      causal-LM asset (`smollm2_135m`), or None (pinned MiniLM).

  Returns:
    The local directory or file (assets are fetched once).
  """
  from recjax.text_encoders import llama  # pylint: disable=g-import-not-at-top
  if not model_dir:
    return default_model_dir()
  if str(model_dir) == llama.LM_ASSET:
    return pathlib.Path(llama.default_lm_path())
  return pathlib.Path(model_dir)


def is_causal_lm(path: pathlib.Path) -> bool:
  """Whether a resolved checkpoint is a GGUF causal LM."""
  return path.suffix == ".gguf"


def model_fingerprint(path: pathlib.Path) -> str:
  """sha256 identifying a resolved checkpoint (directory or GGUF file)."""
  if is_causal_lm(path):
    from recjax.text_encoders import gguf_checkpoint  # pylint: disable=g-import-not-at-top
    return gguf_checkpoint.file_sha256(path)
  return fingerprint(path)


def load_text_encoder(model_dir: str | os.PathLike[str] | None = None,
                      pooling: str | None = None,
                      max_length: int | None = None,
                      dtype: str = "float32") -> TextEncoder:
  """Loads a sentence encoder from a local checkpoint.

  Args:
    model_dir: directory with config.json, model.safetensors, tokenizer.json
      (and optionally modules.json, 1_Pooling/, 2_Dense/, ...); or a
      Llama-family `.gguf` file / `smollm2_135m` (a causal LM). None: the
      pinned all-MiniLM-L6-v2 asset.
    pooling: causal LMs only: "mean" (default) or "last".
    max_length: causal LMs only: truncation in tokens (default 64).
    dtype: causal LMs only: the matmul type ("float32" or "bfloat16").

  Returns:
    The encoder.

  Raises:
    ConfigError: missing files, a `model_type` that is neither BERT-family
      nor T5, or pooling / max_length given for a sentence encoder.
  """
  path = resolve_model(model_dir)
  if is_causal_lm(path):
    from recjax.text_encoders import llama  # pylint: disable=g-import-not-at-top
    return llama.load_causal_lm(path, dtype=dtype).text_encoder(
        pooling or "mean", max_length or LM_MAX_LENGTH)
  if pooling or max_length or dtype != "float32":
    raise ConfigError(f"{path}: pooling / max_length / dtype apply to "
                      "causal LMs (.gguf); a sentence encoder uses its own "
                      "(modules.json).")
  conf = read_json(path / "config.json")
  model_type = conf.get("model_type", "")
  sentence = read_sentence_config(path)
  weights = load_weights(path / "model.safetensors")
  if model_type in bert.BERT_TYPES:
    cfg = bert.BertConfig.from_json(conf)
    hidden = cfg.hidden_size
    module = bert.BertModule(cfg)
    params = bert.convert_weights(weights, cfg)
  elif model_type in t5.T5_TYPES:
    cfg = t5.T5Config.from_json(conf)
    hidden = cfg.d_model
    module = t5.T5EncoderModule(cfg)
    params = t5.convert_weights(weights, cfg)
  else:
    raise ConfigError(
        f"{path / 'config.json'}: model_type {model_type!r} is not a "
        f"supported text encoder (BERT family {bert.BERT_TYPES} or T5 "
        f"{t5.T5_TYPES}). Point model_dir at a sentence-transformers / "
        "Hugging Face checkpoint of one of those types.")
  max_length = cfg.max_tokens
  if sentence.max_seq_length:
    max_length = min(max_length, int(sentence.max_seq_length))
  tok = load_tokenizer(path, max_length)
  return TextEncoder(
      name=path.name if path.name != "model" else path.parent.name,
      model_type=model_type, apply=module.apply, params=params,
      tokenizer=tok, sentence=sentence, max_length=max_length,
      hidden_size=hidden, pad_id=int(conf.get("pad_token_id") or 0),
      fingerprint=fingerprint(path))
