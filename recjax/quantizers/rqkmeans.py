"""RQ-KMeans: residual k-means semantic IDs.

Level 0 clusters the embeddings, each further level clusters what the
previous levels left over (the residuals). With `balanced=True` every level
uses Sinkhorn-balanced assignments, spreading items evenly over codes (the
training codes are then the balanced ones; cold-start `encode` uses nearest
centroids).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from recjax.quantizers import kmeans as km
from recjax.quantizers.base import Tokenizer
from recjax.quantizers.base import register


@dataclasses.dataclass
class RQKMeansConfig:
  """RQ-KMeans hyperparameters.

  Attributes:
    num_levels: number of residual levels.
    codebook_size: centroids per level.
    kmeans_iters: Lloyd iterations per level.
    balanced: Sinkhorn-balanced assignments while clustering.
    sinkhorn_epsilon: Sinkhorn regularisation when balanced.
  """

  num_levels: int = 3
  codebook_size: int = 256
  kmeans_iters: int = 50
  balanced: bool = False
  sinkhorn_epsilon: float = 0.01


@jax.jit
def _residual_encode(x: jax.Array, codebooks: jax.Array):
  r = x
  codes = []
  dist = None
  for lv in range(codebooks.shape[0]):
    dist = km.sq_distances(r, codebooks[lv])
    idx = jnp.argmin(dist, axis=-1).astype(jnp.int32)
    codes.append(idx)
    r = r - codebooks[lv][idx]
  return jnp.stack(codes, axis=1), dist, x - r


@register
class RQKMeansTokenizer(Tokenizer):
  """Residual k-means codebooks `[levels, K, dim]`."""

  method = "rqkmeans"
  config_cls = RQKMeansConfig

  @property
  def codebook_sizes(self) -> tuple[int, ...]:
    cb = self.params["codebooks"]
    return (int(cb.shape[1]),) * int(cb.shape[0])

  def encode_with_last_distances(self, x: np.ndarray):
    codes, dist, _ = _residual_encode(jnp.asarray(x),
                                      jnp.asarray(self.params["codebooks"]))
    return np.asarray(codes, np.int32), np.asarray(dist)

  def reconstruct(self, x: np.ndarray) -> np.ndarray:
    return np.asarray(_residual_encode(
        jnp.asarray(x), jnp.asarray(self.params["codebooks"]))[2])


def fit(x: np.ndarray, config: RQKMeansConfig, key: jax.Array
        ) -> tuple[RQKMeansTokenizer, np.ndarray, np.ndarray]:
  """Trains RQ-KMeans.

  Args:
    x: float32 `[n, d]` embeddings.
    config: hyperparameters.
    key: PRNG key.

  Returns:
    (tokenizer, training codes int32 `[n, L]`, last-level distances
    `[n, K]`).
  """
  r = jnp.asarray(x, jnp.float32)
  books, codes, dist = [], [], None
  for key_l in jax.random.split(key, config.num_levels):
    cents, labels = km.kmeans(r, config.codebook_size, key_l,
                              num_iters=config.kmeans_iters,
                              balanced=config.balanced,
                              epsilon=config.sinkhorn_epsilon)
    dist = km.sq_distances(r, cents)
    books.append(cents)
    codes.append(labels)
    r = r - cents[labels]
  tok = RQKMeansTokenizer(config, {"codebooks": jnp.stack(books)},
                          x.shape[1])
  return (tok, np.asarray(jnp.stack(codes, axis=1), np.int32),
          np.asarray(dist))
