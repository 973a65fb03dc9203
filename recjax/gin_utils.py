"""Gin registration in one place, and T5X-style flag parsing.

The library carries no `@gin.configurable` decorators: configs are plain
dataclasses and functions. This module registers the ones that `.gin` files
may bind, under their module path (e.g. `recjax.network.TransformerConfig`),
so a gin file reads `recjax.network.TransformerConfig.num_heads = 6` or, with
the short name, `TransformerConfig.num_heads = 6`.

Add a new configurable of the pipeline by naming it in `_CONFIGURABLES`; a
model family names its own in its `FamilySpec.configurables`.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence

import gin

from recjax import deprecation

# module -> names registered with gin.external_configurable. Entries whose
# module does not exist yet are skipped, so areas can land independently.
_CONFIGURABLES: dict[str, tuple[str, ...]] = {
    # datasets / embedding / semantic IDs
    "recjax.datasets": ("load",),
    "recjax.embed": ("EmbedConfig", "embed_items", "embed_stage"),
    "recjax.semantic_ids": ("SemanticIdConfig", "build",
                            "semantic_ids_stage"),
    "recjax.quantizers.rqvae": ("RQVAEConfig",),
    "recjax.quantizers.rqkmeans": ("RQKMeansConfig",),
    "recjax.quantizers.pq": ("OPQConfig",),
    "recjax.quantizers.letter": ("LetterConfig",),
    # network, model families, decoding
    "recjax.network": ("TransformerConfig", "Transformer"),
    "recjax.decoding": ("beam_search",),
    # trainer, partitioning, entry points
    "recjax.train": ("train", "run"),
    "recjax.eval": ("evaluate",),
    "recjax.infer": ("infer",),
    "recjax.run_lib": ("DatasetConfig",),
    "recjax.trainer": ("TrainerConfig",),
    "recjax.optimizers": ("OptimizerConfig", "ScheduleConfig"),
    "recjax.evaluation": ("EvalConfig",),
    "recjax.item_sequences": ("ItemDataConfig",),
    "recjax.train_items": ("train_items",),
    "recjax.train_counts": ("train_counts",),
    "recjax.eval_items": ("evaluate_items",),
    "recjax.partitioning": ("DistributedConfig",),
    # tasks
    "recjax.numpy_batches": ("NumpyBatches",),
    "recjax.tasks.tiger": ("register_tiger_task",),
    "recjax.tasks.preprocessors": ("RecFeatureConverter",),
    "recjax.tasks.materialize": ("materialize",),
}

# Top-level packages whose absence only disables the task layer.
_OPTIONAL_DEPENDENCIES = ("tensorflow", "seqio", "tensorflow_datasets",
                          "tensorflow_text")

_registered = False


def register_all() -> None:
  """Registers every configurable in `_CONFIGURABLES` with gin (idempotent)."""
  global _registered
  from recjax.models import registry  # pylint: disable=g-import-not-at-top
  if _registered:  # Families registered since then (a test's toy family).
    for spec in registry.family_specs():
      register_family(spec)
    return
  for module_name, names in _CONFIGURABLES.items():
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
      # Areas not landed yet, and the task layer on hosts without
      # TensorFlow/SeqIO (accelerator hosts train from numpy batches).
      if e.name and (module_name.startswith(e.name) or
                     e.name.split(".")[0] in _OPTIONAL_DEPENDENCIES):
        continue
      raise
    for name in names:
      gin.external_configurable(getattr(module, name), name=name,
                                module=module_name)
  # Each family's own configurables (its FamilySpec names them).
  for spec in registry.family_specs():
    register_family(spec)
  # Names from before the model families moved into recjax.models.
  for (old_module, name), new_module in deprecation.GIN_ALIASES.items():
    try:
      fn = getattr(importlib.import_module(new_module), name)
    except ModuleNotFoundError as e:  # The task layer, without TensorFlow.
      if e.name and e.name.split(".")[0] in _OPTIONAL_DEPENDENCIES:
        continue
      raise
    gin.external_configurable(
        deprecation.deprecated_configurable(
            fn, f"{old_module}.{name}", f"{new_module}.{name}"),
        name=name, module=old_module)
  _registered = True


def register_family(spec) -> None:
  """Registers a family's `configurables` with gin (idempotent).

  Args:
    spec: a `recjax.models.registry.FamilySpec`.
  """
  if not spec.configurables:
    return
  module = importlib.import_module(spec.module)
  for name in spec.configurables:
    key = f"{spec.module}.{name}"
    if key in _family_names:
      continue
    gin.external_configurable(getattr(module, name), name=name,
                              module=spec.module)
    _family_names.add(key)


_family_names: set[str] = set()


class _QuietIncludes(logging.Filter):
  """Drops gin's 'Path not found' errors for includes found later on a
  search path (gin tries the working directory first)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found:")


def default_search_paths() -> list[str]:
  """The installed `recjax/gin_configs/` (models/, runs/, ...): package data
  of the wheel, the repository's top-level `gin_configs/` in a checkout."""
  here = os.path.dirname(os.path.abspath(__file__))
  return [os.path.join(here, "gin_configs")]


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
  root = logging.getLogger()
  if not any(isinstance(f, _QuietIncludes) for f in root.filters):
    root.addFilter(_QuietIncludes())
  paths = list(search_paths) + default_search_paths()
  for path in paths:
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(
      [_resolve(f, paths) for f in gin_files], list(gin_bindings),
      finalize_config=finalize)


def _resolve(gin_file: str, search_paths: Sequence[str]) -> str:
  """An absolute path for `gin_file` (gin would otherwise try to read
  'runs/train.gin' from a Python package named `runs`)."""
  if os.path.isabs(gin_file) or os.path.exists(gin_file):
    return os.path.abspath(gin_file)
  for root in search_paths:
    candidate = os.path.join(root, gin_file)
    if os.path.exists(candidate):
      return os.path.abspath(candidate)
  raise FileNotFoundError(
      f"gin file {gin_file!r} not found in the working directory or the "
      f"search paths {list(search_paths)}; pass --gin_search_paths.")
