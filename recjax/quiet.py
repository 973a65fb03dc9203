"""Keeps the libraries under recjax quiet, so a person reads recjax's output.

TensorFlow 2.21 logs through C++ absl before any Python code can configure
it ("oneDNN custom operations are on", "Could not find cuda drivers", the
CUDA probe's "failed call to cuInit" on CPU hosts), TFDS prints its own
banners and progress bars, and absl's Python logger warns about missing
`dataset_info.json` files of datasets recjax is about to prepare.
`load_task_layer()` imports TensorFlow and TFDS with the process's stderr
(file descriptor 2) pointed at /dev/null for the duration, keeps TensorFlow
off GPUs (JAX owns them; the data layer runs on the CPU) and turns the
Python-level noise down. With `RECJAX_VERBOSE=1` or `--verbose` on the
command line (`recjax.VERBOSE`) nothing is hidden.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import recjax

_loaded = False


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
  """Points file descriptor 2 at /dev/null (C++ logs); Python's
  `sys.stderr` is flushed before and after. A no-op when verbose."""
  if recjax.VERBOSE:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def load_task_layer() -> None:
  """Imports TensorFlow and TFDS quietly (idempotent)."""
  global _loaded
  if _loaded:
    return
  _loaded = True
  with native_stderr_hidden():
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError:
      return  # Hosts without the task layer.
    try:  # The CUDA probe happens here, while stderr is hidden.
      tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
      pass  # Devices already initialised: leave them.
  if recjax.VERBOSE:
    return
  tfds.disable_progress_bar()
  try:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
    absl_logging.set_verbosity(absl_logging.ERROR)
  except ImportError:
    pass
  for name in ("absl", "tensorflow", "tensorflow_datasets"):
    logging.getLogger(name).setLevel(logging.ERROR)


def configure_logging() -> None:
  """recjax's own messages at INFO; the libraries' (absl, Orbax, JAX,
  TensorFlow) at WARNING, or everything at INFO with `--verbose`.

  For the `main()` of every command, after its arguments are parsed.
  """
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  if recjax.VERBOSE:
    return
  for noisy in ("absl", "orbax", "jax", "tensorflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
  """Adds `--verbose` to a command's parser (read at import, see above)."""
  parser.add_argument("--verbose", action="store_true",
                      help="show the libraries' own logs (TensorFlow, TFDS, "
                      "XLA)")
