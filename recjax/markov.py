"""Deprecated: moved to `recjax.models.markov`.

The old names resolve to the new objects with a `FutureWarning`.
"""

from recjax import deprecation

__getattr__ = deprecation.alias_module(__name__)
