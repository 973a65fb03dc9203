"""recjax: generative recommendation in JAX/Flax, in the style of T5X/SeqIO.

Importing recjax keeps the libraries under it quiet (TensorFlow's and XLA's
C++ logs: oneDNN notes, CUDA probing on CPU hosts) unless the environment
sets `RECJAX_VERBOSE=1` or a command line carries `--verbose`; a
`TF_CPP_MIN_LOG_LEVEL` the user set is kept.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

VERBOSE = (_os.environ.get("RECJAX_VERBOSE", "") not in ("", "0") or
           "--verbose" in _sys.argv)
if not VERBOSE:
  # Read by TensorFlow and XLA when they load: 3 = errors of their own C++
  # only at FATAL (the CUDA probe of a CPU host logs an "error").
  _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
