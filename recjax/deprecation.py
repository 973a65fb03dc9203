"""Old import paths and gin names that still work, with a warning.

When a module moves (the flat `recjax/sequential.py` became the family
`recjax.models.sasrec`), its old module becomes a shim built by
`alias_module`: attribute access returns the new object and warns once per
name with a `FutureWarning` that names the new place. `gin_aliases` lists
the old gin names that `recjax.gin_utils` keeps registered, so gin files
written before the move still parse (with the same warning when used).
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from typing import Any

# Old module -> its new module (same attribute names).
MOVED_MODULES: dict[str, str] = {
    "recjax.sequential": "recjax.models.sasrec",
    "recjax.dual_encoder": "recjax.models.learn",
    "recjax.lite": "recjax.models.lite",
    "recjax.markov": "recjax.models.markov",
    "recjax.item_models": "recjax.models.base",
}

# Attributes of an old module that now live elsewhere than its new module.
MOVED_ATTRIBUTES: dict[tuple[str, str], str] = {
    ("recjax.item_models", "softmax_item_loss"): "recjax.models.losses",
    ("recjax.dual_encoder", "CausalTransformer"): "recjax.models.layers",
    ("recjax.dual_encoder", "check_tower_sizes"): "recjax.models.layers",
    ("recjax.dual_encoder", "check_item_embeddings"): "recjax.models.layers",
    ("recjax.dual_encoder", "attention_mask"): "recjax.models.layers",
    ("recjax.dual_encoder", "item_positions"): "recjax.models.layers",
    ("recjax.dual_encoder", "l2_normalize"): "recjax.models.losses",
    ("recjax.dual_encoder", "in_batch_softmax_loss"): "recjax.models.losses",
    ("recjax.run_lib", "make_encoder_decoder"): "recjax.models.tiger",
    ("recjax.sequential", "Block"): "recjax.models.layers",
    ("recjax.sequential", "CausalSelfAttention"): "recjax.models.layers",
    ("recjax.sequential", "FeedForward"): "recjax.models.layers",
}

# Old gin names (module, name) -> the new module that registers the name.
GIN_ALIASES: dict[tuple[str, str], str] = {
    ("recjax.models", "EncoderDecoderModel"): "recjax.models.tiger",
    ("recjax.run_lib", "make_encoder_decoder"): "recjax.models.tiger",
    ("recjax.sequential", "SASRecConfig"): "recjax.models.sasrec",
    ("recjax.sequential", "make_sasrec"): "recjax.models.sasrec",
    ("recjax.dual_encoder", "DualEncoderConfig"): "recjax.models.learn",
    ("recjax.dual_encoder", "make_dual_encoder"): "recjax.models.learn",
    ("recjax.lite", "LiteConfig"): "recjax.models.lite",
    ("recjax.lite", "make_lite"): "recjax.models.lite",
    ("tasks.tiger", "register_tiger_task"): "recjax.tasks.tiger",
    ("tasks.preprocessors", "RecFeatureConverter"):
        "recjax.tasks.preprocessors",
    ("tasks.materialize", "materialize"): "recjax.tasks.materialize",
}

# Submodules of the task layer, importable under the old top-level name
# `tasks` (a checkout only; the wheel installs `recjax.tasks`).
TASK_SUBMODULES = ("preprocessors", "tiger", "vocabulary", "materialize",
                   "bundle")


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
  """Emits the `FutureWarning` of a moved name."""
  warnings.warn(f"{old} moved to {new}; the old name will be removed.",
                FutureWarning, stacklevel=stacklevel)


def resolve_moved(old_module: str, name: str) -> tuple[str, Any]:
  """`(new dotted name, object)` of `old_module.name`.

  Raises:
    AttributeError: the old module never had that name.
  """
  target = MOVED_ATTRIBUTES.get((old_module, name),
                                MOVED_MODULES.get(old_module))
  if target is None:
    raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
  module = importlib.import_module(target)
  if not hasattr(module, name):
    # Private helpers of the old module live in the family's model file.
    module = importlib.import_module(target + ".model")
  if not hasattr(module, name):
    raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
  return f"{module.__name__}.{name}", getattr(module, name)


def alias_module(old_module: str) -> Callable[[str], Any]:
  """A module-level `__getattr__` for the shim of a moved module."""

  def getattr_(name: str) -> Any:
    if name.startswith("__"):
      raise AttributeError(name)
    new, value = resolve_moved(old_module, name)
    warn_moved(f"{old_module}.{name}", new)
    return value

  return getattr_


def deprecated_configurable(fn: Callable[..., Any], old: str,
                            new: str) -> Callable[..., Any]:
  """`fn` under an old gin name: calls it and warns that it moved."""

  @functools.wraps(fn)
  def wrapper(*args: Any, **kwargs: Any) -> Any:
    warn_moved(old, new, stacklevel=2)
    return fn(*args, **kwargs)

  return wrapper
