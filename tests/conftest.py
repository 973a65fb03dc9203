"""Shared pytest configuration."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def office_dir() -> pathlib.Path:
  """The real Amazon Office data (LC-Rec layout); skipped where absent."""
  path = SHARED_DATA / "amazon-office"
  if not (path / "Office.inter.json").exists():
    pytest.skip(f"{path} not available")
  return path
