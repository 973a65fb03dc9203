"""Loads a script of `benchmarks/` as a module, for its tests."""

import importlib.util
import pathlib
import types

REPO = pathlib.Path(__file__).resolve().parents[1]


def load(name: str) -> types.ModuleType:
  """`benchmarks/<name>.py`, executed as module `bench_<name>`."""
  spec = importlib.util.spec_from_file_location(
      f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
