"""Exception types shared across recjax.

Every error raised for bad user input derives from `RecjaxError`, so callers
can catch input problems separately from programming errors. Messages name the
file and record at fault and say how to fix it.
"""

import contextlib
import sys
from collections.abc import Iterator


class RecjaxError(Exception):
  """Base class for errors caused by bad input or configuration."""


class DatasetError(RecjaxError, ValueError):
  """A dataset source is missing, malformed or inconsistent."""


class AssetError(RecjaxError, RuntimeError):
  """A pinned asset could not be fetched, verified or extracted."""


class ConfigError(RecjaxError, ValueError):
  """A configuration value is invalid or inconsistent with the data."""


@contextlib.contextmanager
def exit_on_input_error() -> Iterator[None]:
  """For a command line: a `RecjaxError` exits 2 with its message alone.

  Bad input is the user's to fix, so it gets `error: <message>` on stderr,
  not a traceback; any other exception (a bug) still shows its traceback.

  Yields:
    Nothing; wrap the stage call in `with exit_on_input_error():`.
  """
  try:
    yield
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
