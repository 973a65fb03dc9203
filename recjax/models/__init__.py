"""Model families: the contracts, shared layers and losses, and the registry.

  recjax/models/
    base.py       BaseModel (T5X), ItemModel, CountModel, catalog top-K
    losses.py     losses more than one family uses
    layers.py     layers more than one family uses
    registry.py   FamilySpec / MethodSpec, list_families(), list_methods()
    <family>/     one folder per family: its model, its spec (registered in
                  its __init__.py); gin files in gin_configs/models/

`list_families()` and `list_methods()` name what is registered; a family
never imports another family. The T5 network (`recjax.network`), the beam
search (`recjax.decoding`) and the trie (`recjax.trie`) are shared modules
outside this package.

Names of the old flat `recjax.models` module (`EncoderDecoderModel`,
`cross_entropy_loss`, ...) still resolve, with a `FutureWarning` naming the
new place.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from recjax.models import registry
from recjax.models.base import BaseModel
from recjax.models.base import CountModel
from recjax.models.base import ItemModel
from recjax.models.registry import Anchor
from recjax.models.registry import FamilySpec
from recjax.models.registry import MethodSpec
from recjax.models.registry import get_family
from recjax.models.registry import get_method
from recjax.models.registry import list_families
from recjax.models.registry import list_methods
from recjax.models.registry import register_family
from recjax.models.registry import register_method

__all__ = ["Anchor", "BaseModel", "CountModel", "FamilySpec", "ItemModel",
           "MethodSpec", "get_family", "get_method", "list_families",
           "list_methods", "register_family", "register_method",
           "registry"]

# Old name in this package -> (module that holds it now, its name there).
MOVED: dict[str, tuple[str, str]] = {
    "EncoderDecoderModel": ("recjax.models.tiger.model",
                            "EncoderDecoderModel"),
    "cross_entropy_loss": ("recjax.models.losses", "cross_entropy_loss"),
    "masked_pool": ("recjax.models.losses", "masked_pool"),
    "in_batch_infonce": ("recjax.models.losses", "in_batch_infonce"),
    "ALIGNMENT_POOLINGS": ("recjax.models.losses", "ALIGNMENT_POOLINGS"),
}


def __getattr__(name: str) -> Any:
  if name in MOVED:
    module, attr = MOVED[name]
    warnings.warn(f"recjax.models.{name} moved to {module}.{attr}; the old "
                  "name will be removed.", FutureWarning, stacklevel=2)
    return getattr(importlib.import_module(module), attr)
  raise AttributeError(f"module 'recjax.models' has no attribute {name!r}")
