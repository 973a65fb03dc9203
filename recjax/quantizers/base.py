"""The trained-tokenizer interface shared by every quantizer, and its storage.

A `Tokenizer` maps item embeddings to codes `int32 [n, levels]`. Trained
tokenizers keep their parameters as a pytree of numpy arrays and their
config as a dataclass; `save` writes both into a directory (an Orbax
`StandardCheckpointer` checkpoint under `params/` and `tokenizer.json`), and
`load_tokenizer` restores any registered method from it, so new (cold-start)
items get codes without re-training.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import pathlib
from typing import Any
from typing import ClassVar

import jax
import numpy as np

from recjax.errors import ConfigError

TOKENIZER_FILE = "tokenizer.json"
PARAMS_DIR = "params"
_FORMAT_VERSION = 1

_REGISTRY: dict[str, type[Tokenizer]] = {}


def register(cls: type[Tokenizer]) -> type[Tokenizer]:
  """Class decorator adding a tokenizer class under its `method` name."""
  _REGISTRY[cls.method] = cls
  return cls


def check_embeddings(x: Any, num_items: int | None = None,
                     name: str = "embeddings",
                     dim: int | None = None) -> np.ndarray:
  """Validates an embedding matrix and returns it as float32.

  Args:
    x: array-like `[num_items, dim]`.
    num_items: expected row count (e.g. the item table size), or None.
    name: what the matrix is, for messages.
    dim: expected width, or None.

  Returns:
    The float32 matrix.

  Raises:
    ConfigError: wrong rank, row count or width, or non-finite values.
  """
  x = np.asarray(x)
  if x.ndim != 2:
    raise ConfigError(f"{name} must be a 2-D [num_items, dim] matrix, got "
                      f"shape {x.shape}.")
  if num_items is not None and x.shape[0] != num_items:
    raise ConfigError(
        f"{name} has {x.shape[0]} rows but the item table has {num_items} "
        "items; the rows must be aligned with the dataset's item index. "
        "Recompute them for this dataset (python -m recjax.embed).")
  if dim is not None and x.shape[1] != dim:
    raise ConfigError(f"{name} have dimension {x.shape[1]} but the tokenizer "
                      f"was trained on dimension {dim}; embed the items with "
                      "the same text encoder.")
  x = x.astype(np.float32)
  bad = ~np.isfinite(x)
  if bad.any():
    rows = np.flatnonzero(bad.any(axis=1))
    raise ConfigError(
        f"{name} contain NaN or inf in {len(rows)} rows (first: row "
        f"{int(rows[0])}). Recompute them, or drop/fix those items before "
        "building semantic IDs.")
  return x


class Tokenizer(abc.ABC):
  """A trained quantizer: embeddings -> codes.

  Subclasses set `method` and `config_cls`, implement
  `encode_with_last_distances`, and may override `reconstruct`.

  Attributes:
    config: the method's config dataclass.
    params: pytree of numpy arrays.
  """

  method: ClassVar[str] = ""
  config_cls: ClassVar[type] = object

  def __init__(self, config: Any, params: Any, input_dim: int):
    self.config = config
    self.params = jax.tree_util.tree_map(np.asarray, params)
    self.input_dim = int(input_dim)

  @property
  @abc.abstractmethod
  def codebook_sizes(self) -> tuple[int, ...]:
    """Number of codes at each level."""

  @property
  def num_levels(self) -> int:
    return len(self.codebook_sizes)

  @abc.abstractmethod
  def encode_with_last_distances(self, x: np.ndarray
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """(codes int32 `[n, L]`, `[n, K_last]` last-level distances)."""

  def encode(self, embeddings: Any) -> np.ndarray:
    """Assigns codes to (possibly unseen) items without re-training.

    Args:
      embeddings: `[n, input_dim]` item embeddings (same text encoder).

    Returns:
      int32 `[n, num_levels]` nearest codes at each level.
    """
    x = check_embeddings(embeddings, dim=self.input_dim)
    return self.encode_with_last_distances(x)[0]

  @abc.abstractmethod
  def reconstruct(self, x: np.ndarray) -> np.ndarray:
    """Reconstruction of `x` from its codes (for the error diagnostic)."""

  def reconstruction_errors(self, x: np.ndarray) -> dict[str, float]:
    """Mean squared error and error relative to the embeddings' energy."""
    x_hat = self.reconstruct(x)
    err = np.sum((x - x_hat) ** 2, axis=1)
    return {"reconstruction_mse": float(np.mean(err) / x.shape[1]),
            "relative_reconstruction_error":
                float(np.sum(err) / max(np.sum(x * x), 1e-30))}

  # -- storage -----------------------------------------------------------------

  def save(self, directory: str | os.PathLike[str]) -> pathlib.Path:
    """Writes `tokenizer.json` and an Orbax checkpoint under `params/`.

    Args:
      directory: an empty or new directory.

    Returns:
      The directory.
    """
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    path = pathlib.Path(directory).absolute()
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": _FORMAT_VERSION, "method": self.method,
            "input_dim": self.input_dim,
            "config": dataclasses.asdict(self.config)}
    with open(path / TOKENIZER_FILE, "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path / PARAMS_DIR, self.params)
    ckpt.wait_until_finished()
    ckpt.close()
    return path


def _config_from_dict(cls: type, values: dict[str, Any]) -> Any:
  fields = {f.name: f for f in dataclasses.fields(cls)}
  kwargs = {}
  for k, v in values.items():
    if k in fields:
      kwargs[k] = tuple(v) if isinstance(v, list) else v
  return cls(**kwargs)


def load_tokenizer(directory: str | os.PathLike[str],
                   method: str | None = None) -> Tokenizer:
  """Restores a tokenizer written by `Tokenizer.save`.

  Args:
    directory: the tokenizer directory (or a semantic-ID stage directory that
      holds one under `tokenizer/`).
    method: expected method; None accepts any registered one.

  Returns:
    The tokenizer.

  Raises:
    ConfigError: not a tokenizer directory, or a different method.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(directory).absolute()
  if not (path / TOKENIZER_FILE).exists() and (
      path / "tokenizer" / TOKENIZER_FILE).exists():
    path = path / "tokenizer"
  meta_path = path / TOKENIZER_FILE
  if not meta_path.exists():
    raise ConfigError(f"{path} is not a semantic-ID tokenizer directory (no "
                      f"{TOKENIZER_FILE}); build one with "
                      "`python -m recjax.semantic_ids`.")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  got = meta.get("method")
  if got not in _REGISTRY:
    raise ConfigError(f"{meta_path}: method {got!r} is not a known tokenizer "
                      f"({sorted(_REGISTRY)}).")
  if method is not None and got != method:
    raise ConfigError(
        f"{path} holds a {got!r} tokenizer, not {method!r}. Load it with "
        f"method={got!r} or point to a {method!r} checkpoint directory.")
  cls = _REGISTRY[got]
  config = _config_from_dict(cls.config_cls, meta.get("config", {}))
  ckpt = ocp.StandardCheckpointer()
  params = ckpt.restore(path / PARAMS_DIR)
  ckpt.close()
  return cls(config, params, meta["input_dim"])
