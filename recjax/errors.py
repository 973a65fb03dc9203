"""Exception types shared across recjax.

Every error raised for bad user input derives from `RecjaxError`, so callers
can catch input problems separately from programming errors. Messages name the
file and record at fault and say how to fix it.
"""


class RecjaxError(Exception):
  """Base class for errors caused by bad input or configuration."""


class DatasetError(RecjaxError, ValueError):
  """A dataset source is missing, malformed or inconsistent."""


class AssetError(RecjaxError, RuntimeError):
  """A pinned asset could not be fetched, verified or extracted."""


class ConfigError(RecjaxError, ValueError):
  """A configuration value is invalid or inconsistent with the data."""
