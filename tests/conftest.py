"""Shared pytest configuration."""

import os
import pathlib

import hypothesis
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# `make test` (and CI) draws the same hypothesis examples every run, so a
# red build is reproducible; `make test-explore` searches with new ones.
hypothesis.settings.register_profile("ci", derandomize=True,
                                     print_blob=True)
hypothesis.settings.register_profile("explore", max_examples=200,
                                     print_blob=True)
hypothesis.settings.load_profile(
    os.environ.get("RECJAX_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def office_dir() -> pathlib.Path:
  """The real Amazon Office data (LC-Rec layout); skipped where absent."""
  path = SHARED_DATA / "amazon-office"
  if not (path / "Office.inter.json").exists():
    pytest.skip(f"{path} not available")
  return path


def pytest_configure(config):
  """Shares compiled XLA programs across tests and runs (CPU cache)."""
  del config
  import jax  # pylint: disable=g-import-not-at-top
  cache = os.environ.get("RECJAX_TEST_JAX_CACHE",
                         os.path.join("/tmp", "recjax-jax-cache"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
