"""Tests for recjax.errors: the exception hierarchy callers rely on."""

import pytest

from recjax import errors


@pytest.mark.parametrize("cls, builtin", [
    (errors.DatasetError, ValueError), (errors.ConfigError, ValueError),
    (errors.AssetError, RuntimeError)])
def test_errors_are_recjax_and_builtin(cls, builtin):
  with pytest.raises(errors.RecjaxError, match="bad record"):
    raise cls("bad record")
  with pytest.raises(builtin, match="bad record"):
    raise cls("bad record")


def test_programming_errors_are_not_recjax_errors():
  assert not issubclass(TypeError, errors.RecjaxError)
  assert not issubclass(errors.RecjaxError, ValueError)


def test_exit_on_input_error_prints_the_message_not_a_traceback(capsys):
  with pytest.raises(SystemExit) as e:
    with errors.exit_on_input_error():
      raise errors.ConfigError("d/meta.json: bad record 3; fix it")
  assert e.value.code == 2
  assert capsys.readouterr().err == "error: d/meta.json: bad record 3; fix it\n"
  # A bug is not input: its traceback still shows.
  with pytest.raises(TypeError, match="a bug"):
    with errors.exit_on_input_error():
      raise TypeError("a bug")
