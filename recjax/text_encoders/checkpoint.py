"""Reading Hugging Face / sentence-transformers checkpoints from a directory.

Only `safetensors`, `tokenizers` and the JSON files are used: no torch, no
transformers and no hub access. A sentence-transformers directory holds

* `config.json` and `model.safetensors`: the backbone (BERT family or T5);
* `tokenizer.json`: the fast tokenizer;
* `modules.json`: the pipeline, e.g. Transformer -> Pooling -> Normalize, with
  `1_Pooling/config.json` (pooling mode), optional `2_Dense/` (a linear
  projection, sentence-T5) and `sentence_bert_config.json` (max length).

A directory without `modules.json` is a plain Hugging Face model; it is read
with mean pooling and no normalisation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import numpy as np
import tokenizers
from safetensors.numpy import load_file

from recjax.errors import ConfigError

# Pooling modes of sentence-transformers' Pooling module, in its key names.
_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_mean_tokens", "mean"),
)

_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.activation.ReLU": "relu",
}


@dataclasses.dataclass
class DenseLayer:
  """A sentence-transformers Dense module after pooling.

  Attributes:
    kernel: `[in, out]` float32 weights.
    bias: `[out]` or None.
    activation: "identity", "tanh" or "relu".
  """

  kernel: np.ndarray
  bias: np.ndarray | None
  activation: str


@dataclasses.dataclass
class SentenceConfig:
  """How token states become one sentence vector.

  Attributes:
    pooling: "mean", "cls", "max" or "mean_sqrt_len".
    normalize: L2-normalise the final vector.
    max_seq_length: truncation length in tokens (None: the model's maximum).
    dense: projections applied after pooling, in order.
  """

  pooling: str = "mean"
  normalize: bool = False
  max_seq_length: int | None = None
  dense: list[DenseLayer] = dataclasses.field(default_factory=list)


def read_json(path: pathlib.Path) -> dict[str, Any]:
  """Reads a JSON file, raising ConfigError naming it when missing or bad."""
  if not path.exists():
    raise ConfigError(
        f"{path} does not exist. A text encoder directory needs config.json, "
        "model.safetensors and tokenizer.json (a Hugging Face / "
        "sentence-transformers checkpoint saved with safetensors).")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path} is not valid JSON ({e}); re-download or "
                      "re-save the checkpoint.") from e


def load_weights(path: pathlib.Path) -> dict[str, np.ndarray]:
  """Loads a safetensors file as float32 numpy arrays.

  Args:
    path: the `.safetensors` file.

  Returns:
    Tensor name -> array; floating tensors are cast to float32.

  Raises:
    ConfigError: the file is missing (e.g. only `pytorch_model.bin`).
  """
  if not path.exists():
    hint = ""
    if (path.parent / "pytorch_model.bin").exists():
      hint = (" The directory has pytorch_model.bin only; convert it once "
              "with `safetensors` (save_model) elsewhere.")
    raise ConfigError(f"{path} does not exist.{hint} recjax reads weights "
                      "from model.safetensors only.")
  out = {}
  for k, v in load_file(str(path)).items():
    out[k] = v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) \
        else v
  return out


def read_sentence_config(model_dir: pathlib.Path) -> SentenceConfig:
  """Reads the sentence-transformers pipeline of `model_dir`.

  Args:
    model_dir: the checkpoint directory.

  Returns:
    The pooling, normalisation, truncation and dense layers to apply.

  Raises:
    ConfigError: an unsupported module type or a malformed module config.
  """
  cfg = SentenceConfig()
  st_cfg = model_dir / "sentence_bert_config.json"
  if st_cfg.exists():
    cfg.max_seq_length = read_json(st_cfg).get("max_seq_length")
  modules_path = model_dir / "modules.json"
  if not modules_path.exists():
    return cfg
  modules = json.loads(modules_path.read_text(encoding="utf-8"))
  for module in sorted(modules, key=lambda m: m.get("idx", 0)):
    kind = module.get("type", "").rsplit(".", 1)[-1]
    sub = model_dir / module.get("path", "")
    if kind == "Transformer":
      continue
    if kind == "Pooling":
      pool = read_json(sub / "config.json")
      modes = [name for key, name in _POOLING_KEYS if pool.get(key)]
      if len(modes) != 1:
        raise ConfigError(
            f"{sub / 'config.json'}: exactly one pooling mode must be "
            f"enabled, got {modes or 'none'}; recjax supports "
            f"{[n for _, n in _POOLING_KEYS]}.")
      cfg.pooling = modes[0]
    elif kind == "Normalize":
      cfg.normalize = True
    elif kind == "Dense":
      cfg.dense.append(_read_dense(sub))
    else:
      raise ConfigError(
          f"{modules_path}: module type {module.get('type')!r} is not "
          "supported; recjax supports Transformer, Pooling, Dense and "
          "Normalize.")
  return cfg


def _read_dense(sub: pathlib.Path) -> DenseLayer:
  """Reads a sentence-transformers Dense module directory."""
  conf = read_json(sub / "config.json")
  act_name = conf.get("activation_function",
                      "torch.nn.modules.linear.Identity")
  if act_name not in _ACTIVATIONS:
    raise ConfigError(f"{sub / 'config.json'}: activation {act_name!r} is "
                      f"not supported (supported: {sorted(_ACTIVATIONS)}).")
  w = load_weights(sub / "model.safetensors")
  if "linear.weight" not in w:
    raise ConfigError(f"{sub / 'model.safetensors'} has no 'linear.weight'.")
  kernel = w["linear.weight"].T
  want = (conf.get("in_features"), conf.get("out_features"))
  if None not in want and kernel.shape != want:
    raise ConfigError(f"{sub}: linear.weight has shape {kernel.shape[::-1]}"
                      f", config says in/out {want}.")
  return DenseLayer(kernel=kernel, bias=w.get("linear.bias"),
                    activation=_ACTIVATIONS[act_name])


def load_tokenizer(model_dir: pathlib.Path,
                   max_length: int) -> tokenizers.Tokenizer:
  """Loads `tokenizer.json` with truncation at `max_length` and no padding.

  Args:
    model_dir: the checkpoint directory.
    max_length: maximum number of tokens, special tokens included.

  Returns:
    The tokenizer; padding is done by the encoder into length buckets.
  """
  path = model_dir / "tokenizer.json"
  if not path.exists():
    raise ConfigError(f"{path} does not exist; recjax needs a fast-tokenizer "
                      "file (save one with tokenizer.save_pretrained).")
  tok = tokenizers.Tokenizer.from_file(str(path))
  tok.no_padding()
  tok.enable_truncation(max_length=max_length)
  return tok


def fingerprint(model_dir: pathlib.Path) -> str:
  """A sha256 over the checkpoint's config, tokenizer and weight files."""
  h = hashlib.sha256()
  files = sorted(p for p in model_dir.rglob("*")
                 if p.is_file() and p.suffix in (".json", ".safetensors")
                 and not p.name.startswith("."))
  for p in files:
    h.update(str(p.relative_to(model_dir)).encode())
    with open(p, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 22), b""):
        h.update(chunk)
  return h.hexdigest()
