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

__all__ = ["DEFAULT_ASSET", "SentenceConfig", "TextEncoder",
           "default_model_dir", "load_text_encoder", "pool"]


def default_model_dir() -> pathlib.Path:
  """The pinned all-MiniLM-L6-v2 checkpoint directory (fetched once)."""
  from recjax import assets  # pylint: disable=g-import-not-at-top
  return assets.fetch(DEFAULT_ASSET)


def load_text_encoder(model_dir: str | os.PathLike[str] | None = None
                      ) -> TextEncoder:
  """Loads a sentence encoder from a local checkpoint directory.

  Args:
    model_dir: directory with config.json, model.safetensors, tokenizer.json
      (and optionally modules.json, 1_Pooling/, 2_Dense/, ...). None: the
      pinned all-MiniLM-L6-v2 asset.

  Returns:
    The encoder.

  Raises:
    ConfigError: missing files, or a `model_type` that is neither BERT-family
      nor T5.
  """
  path = pathlib.Path(model_dir) if model_dir else default_model_dir()
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
