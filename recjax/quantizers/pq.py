"""Product quantisation (PQ) and optimised PQ (OPQ), VQ-Rec's item codes.

The embedding (optionally rotated by a learned orthogonal matrix R) is cut
into D equal sub-vectors; each sub-space has its own codebook of M
centroids, and an item's code is the tuple of its D nearest sub-centroids.
OPQ alternates (Ge et al., 2013): k-means in every sub-space of x R, then
the orthogonal Procrustes update R = U V^T from the SVD of x^T y, where y
is the current reconstruction. `rotate=False` gives plain PQ.

Optionally the embeddings are first centred and projected on their
`pca_dim` principal components, and whitened (each component scaled to unit
variance), as RPG does before its OPQ: whitening spreads the energy over
all sub-spaces, so every digit carries information. The projection is part
of the tokenizer, so new items are encoded the same way.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from recjax.errors import ConfigError
from recjax.quantizers import kmeans as km
from recjax.quantizers.base import Tokenizer
from recjax.quantizers.base import register

_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass
class OPQConfig:
  """PQ / OPQ hyperparameters.

  Attributes:
    num_subspaces: D, the number of sub-vectors (= code levels); must divide
      the embedding dimension.
    codebook_size: M, centroids per sub-space.
    rotate: learn the OPQ rotation (False: plain PQ).
    opq_iters: alternations between k-means and the Procrustes update.
    kmeans_iters: Lloyd iterations of the first clustering (later ones are
      warm-started and use `kmeans_iters // 5 + 1`).
    progress: show a tqdm bar.
    pca_dim: project on this many principal components first (0: keep the
      embedding dimension, no projection unless `whiten`).
    whiten: centre the embeddings and scale each principal component to
      unit variance (RPG).
  """

  num_subspaces: int = 4
  codebook_size: int = 256
  rotate: bool = True
  opq_iters: int = 10
  kmeans_iters: int = 25
  progress: bool = True
  pca_dim: int = 0
  whiten: bool = False


def _split(x: jax.Array, parts: int) -> jax.Array:
  """`[n, d]` -> `[parts, n, d / parts]`."""
  n, d = x.shape
  return jnp.transpose(x.reshape(n, parts, d // parts), (1, 0, 2))


@functools.partial(jax.jit, static_argnums=(2,))
def _refine(xs: jax.Array, cents: jax.Array, iters: int) -> jax.Array:
  step = jax.vmap(lambda x, c: km.lloyd_step(x, c)[0])
  return jax.lax.fori_loop(0, iters, lambda _, c: step(xs, c), cents)


@jax.jit
def _pq_encode(x: jax.Array, rotation: jax.Array, codebooks: jax.Array):
  xs = _split(jnp.dot(x, rotation, precision=_HIGHEST), codebooks.shape[0])
  dist = jax.vmap(km.sq_distances)(xs, codebooks)  # [D, n, M]
  codes = jnp.argmin(dist, axis=-1).astype(jnp.int32)
  recon = jax.vmap(lambda c, i: c[i])(codebooks, codes)  # [D, n, ds]
  y = jnp.transpose(recon, (1, 0, 2)).reshape(x.shape[0], -1)
  return codes.T, dist[-1], y


def fit_pca(x: np.ndarray, dim: int, whiten: bool
            ) -> tuple[np.ndarray, np.ndarray]:
  """Centring vector and projection on the top principal components.

  Args:
    x: float `[n, d]` embeddings.
    dim: components kept (`<= d`).
    whiten: divide each component by its standard deviation.

  Returns:
    `(mean [d], matrix [d, dim])`, float32: `(x - mean) @ matrix`. Each
    component's sign is fixed (largest entry positive), so equal inputs give
    equal projections.
  """
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=0)
  xc = x - mean
  cov = xc.T @ xc / max(len(x) - 1, 1)
  values, vectors = np.linalg.eigh(cov)  # Ascending.
  order = np.argsort(-values, kind="stable")[:dim]
  values, vectors = np.maximum(values[order], 0.0), vectors[:, order]
  flip = np.sign(vectors[np.argmax(np.abs(vectors), axis=0),
                         np.arange(dim)])
  vectors = vectors * np.where(flip == 0, 1.0, flip)
  if whiten:
    vectors = vectors / np.sqrt(values + 1e-8 * max(values.max(), 1e-30))
  return mean.astype(np.float32), vectors.astype(np.float32)


def _project(params: dict, x) -> jax.Array:
  """Applies the tokenizer's PCA projection, if it has one."""
  x = jnp.asarray(x, jnp.float32)
  if "pca_matrix" not in params:
    return x
  return jnp.dot(x - jnp.asarray(params["pca_mean"]),
                 jnp.asarray(params["pca_matrix"]), precision=_HIGHEST)


@register
class OPQTokenizer(Tokenizer):
  """Rotation `[d, d]` and sub-space codebooks `[D, M, d / D]`."""

  method = "opq"
  config_cls = OPQConfig

  @property
  def codebook_sizes(self) -> tuple[int, ...]:
    cb = self.params["codebooks"]
    return (int(cb.shape[1]),) * int(cb.shape[0])

  def _run(self, x: np.ndarray):
    return _pq_encode(_project(self.params, x),
                      jnp.asarray(self.params["rotation"]),
                      jnp.asarray(self.params["codebooks"]))

  def encode_with_last_distances(self, x: np.ndarray):
    codes, dist, _ = self._run(x)
    return np.asarray(codes, np.int32), np.asarray(dist)

  def reconstruct(self, x: np.ndarray) -> np.ndarray:
    """Reconstruction in the input space (through the PCA, if any: with
    fewer components than the input, the discarded ones are lost)."""
    y = jnp.dot(self._run(x)[2], jnp.asarray(self.params["rotation"]).T,
                precision=_HIGHEST)
    if "pca_matrix" in self.params:
      y = jnp.dot(y, jnp.linalg.pinv(jnp.asarray(self.params["pca_matrix"])),
                  precision=_HIGHEST) + jnp.asarray(self.params["pca_mean"])
    return np.asarray(y)


def fit(x: np.ndarray, config: OPQConfig, key: jax.Array
        ) -> tuple[OPQTokenizer, np.ndarray, np.ndarray]:
  """Trains PQ or OPQ.

  Args:
    x: float32 `[n, d]` embeddings.
    config: hyperparameters.
    key: PRNG key (k-means seeding).

  Returns:
    (tokenizer, codes int32 `[n, D]`, last-sub-space distances `[n, M]`).

  Raises:
    ConfigError: `num_subspaces` does not divide the (projected) embedding
      dimension, or `pca_dim` exceeds the embedding dimension.
  """
  n, input_dim = x.shape
  pca = {}
  if config.pca_dim or config.whiten:
    d = config.pca_dim or input_dim
    if not 0 < d <= min(input_dim, n):
      raise ConfigError(
          f"pca_dim={config.pca_dim} must be in [1, {min(input_dim, n)}] "
          f"(the embedding dimension {input_dim} and the {n} fitted items).")
    mean, matrix = fit_pca(x, d, config.whiten)
    pca = {"pca_mean": mean, "pca_matrix": matrix}
  d = config.pca_dim or input_dim
  parts = config.num_subspaces
  if parts <= 0 or d % parts:
    raise ConfigError(
        f"num_subspaces={parts} must divide the embedding dimension {d} "
        f"(e.g. one of {[p for p in range(1, 65) if d % p == 0]}).")
  xj = _project(pca, x)
  rotation = jnp.eye(d, dtype=jnp.float32)
  xs = _split(xj, parts)
  keys = jax.random.split(key, parts)
  cents = jnp.stack([
      km.kmeans(xs[p], config.codebook_size, keys[p],
                num_iters=config.kmeans_iters)[0] for p in range(parts)])
  rounds = config.opq_iters if config.rotate else 0
  warm = config.kmeans_iters // 5 + 1
  for _ in tqdm.trange(rounds, desc="opq", disable=not config.progress):
    _, _, y = _pq_encode(xj, rotation, cents)
    u, _, vt = jnp.linalg.svd(jnp.dot(xj.T, y, precision=_HIGHEST))
    rotation = jnp.dot(u, vt, precision=_HIGHEST)
    xs = _split(jnp.dot(xj, rotation, precision=_HIGHEST), parts)
    cents = _refine(xs, cents, warm)
  tok = OPQTokenizer(config, {"rotation": rotation, "codebooks": cents,
                             **pca}, input_dim)
  codes, dist = tok.encode_with_last_distances(x)
  return tok, codes, dist
