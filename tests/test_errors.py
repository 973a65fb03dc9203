"""Tests for recjax.errors: the exception hierarchy callers rely on."""

import pytest

from recjax import errors


@pytest.mark.parametrize("cls, builtin", [
    (errors.DatasetError, ValueError), (errors.ConfigError, ValueError),
    (errors.AssetError, RuntimeError)])
def test_errors_are_recjax_and_builtin(cls, builtin):
  with pytest.raises(errors.RecjaxError, match="bad record"):
    raise cls("bad record")
  with pytest.raises(builtin):
    raise cls("bad record")


def test_programming_errors_are_not_recjax_errors():
  assert not issubclass(TypeError, errors.RecjaxError)
  assert not issubclass(errors.RecjaxError, ValueError)
