"""Gin registration in one place, and T5X-style flag parsing.

The library carries no `@gin.configurable` decorators: configs are plain
dataclasses and functions. This module registers the ones that `.gin` files
may bind, under their module path (e.g. `recjax.network.TransformerConfig`),
so a gin file reads `recjax.network.TransformerConfig.num_heads = 6` or, with
the short name, `TransformerConfig.num_heads = 6`.

Add a new configurable by naming it in `_CONFIGURABLES`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import gin

# module -> names registered with gin.external_configurable. Entries whose
# module does not exist yet are skipped, so areas can land independently.
_CONFIGURABLES: dict[str, tuple[str, ...]] = {
    # datasets / embedding / semantic IDs
    "recjax.datasets": ("load",),
    # network, models, decoding
    # trainer, partitioning, entry points
}

_registered = False


def register_all() -> None:
  """Registers every configurable in `_CONFIGURABLES` with gin (idempotent)."""
  global _registered
  if _registered:
    return
  for module_name, names in _CONFIGURABLES.items():
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
      if e.name and module_name.startswith(e.name):
        continue
      raise
    for name in names:
      gin.external_configurable(getattr(module, name), name=name,
                                module=module_name)
  _registered = True


def default_search_paths() -> list[str]:
  """The repository's `gin_configs/` directory (holding models/, runs/...)."""
  here = os.path.dirname(os.path.abspath(__file__))
  return [os.path.join(os.path.dirname(here), "gin_configs")]


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
              search_paths: Sequence[str] = (),
              finalize: bool = True) -> None:
  """Registers configurables and parses gin files and bindings.

  Args:
    gin_files: gin files, resolved against `search_paths` then the default
      `gin_configs/` directory.
    gin_bindings: extra `NAME=value` bindings applied after the files.
    search_paths: directories for gin files and their includes.
    finalize: lock the config after parsing.
  """
  register_all()
  for path in list(search_paths) + default_search_paths():
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings),
                                      finalize_config=finalize)
