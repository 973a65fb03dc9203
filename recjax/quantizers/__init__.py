"""Semantic-ID quantizers in JAX: RQ-VAE, RQ-KMeans, PQ/OPQ and LETTER.

Each method module has a config dataclass, a `fit` function and a
`Tokenizer` subclass that assigns codes to new items; `collisions` makes IDs
unique and `diagnostics` measures them. Only jax, flax, optax, orbax and
numpy are imported (no TensorFlow).
"""

from recjax.quantizers import letter
from recjax.quantizers import pq
from recjax.quantizers import rqkmeans
from recjax.quantizers import rqvae
from recjax.quantizers.base import Tokenizer
from recjax.quantizers.base import check_embeddings
from recjax.quantizers.base import load_tokenizer

__all__ = ["Tokenizer", "check_embeddings", "letter", "load_tokenizer", "pq",
           "rqkmeans", "rqvae"]
