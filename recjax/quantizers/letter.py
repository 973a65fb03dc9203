"""LETTER: an RQ-VAE tokenizer with collaborative and diversity regularisers.

LETTER (Wang et al., CIKM'24) trains the TIGER RQ-VAE with two extra terms
and a balanced last level:

* collaborative alignment: an in-batch contrastive (InfoNCE) loss between
  each item's quantised latent and its collaborative-filtering embedding
  (e.g. SASRec item embeddings, loaded from a `.npy`), projected to the
  latent width by a learned linear map; weight `cf_weight` (~0.01);
* diversity: the codes of each level are clustered (k-means, once per
  epoch); a chosen code embedding is pulled towards another code of its
  cluster and pushed from all other codes; weight `diversity_weight`
  (~1e-4);
* Sinkhorn-balanced assignment at the last level, in training and when the
  final IDs are built.

`cooccurrence_embeddings` is the documented stand-in for CF embeddings when
no sequential recommender has been trained yet: item2vec-style embeddings
from a truncated SVD of the positive PMI of item co-occurrences in users'
histories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recjax.quantizers import kmeans as km
from recjax.quantizers import rqvae
from recjax.quantizers.base import register


@dataclasses.dataclass
class LetterConfig(rqvae.RQVAEConfig):
  """LETTER hyperparameters (RQ-VAE fields plus the regularisers).

  Attributes:
    cf_weight: weight of the collaborative contrastive loss.
    cf_temperature: temperature of that loss (cosine similarities).
    diversity_weight: weight of the diversity loss.
    diversity_clusters: clusters of code embeddings per level.
    diversity_temperature: temperature of the diversity loss.
    cf_embeddings: path of the CF embeddings `.npy` (informational; the
      array itself is passed to `fit`).
  """

  sinkhorn_last_level: bool = True
  cf_weight: float = 0.01
  cf_temperature: float = 0.1
  diversity_weight: float = 1e-4
  diversity_clusters: int = 10
  diversity_temperature: float = 0.1
  cf_embeddings: str | None = None


@register
class LetterTokenizer(rqvae.RQVAETokenizer):
  """A trained LETTER tokenizer (same network as RQ-VAE, plus `cf_proj`)."""

  method = "letter"
  config_cls = LetterConfig

  def balanced_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes with the Sinkhorn-balanced last level over all of `x`."""
    enc, _ = rqvae._nets(self.config, self.input_dim)  # pylint: disable=protected-access
    eps = self.config.sinkhorn_epsilon

    @jax.jit
    def run(params, x):
      z = enc.apply({"params": params["encoder"]}, x)
      out = rqvae.residual_quantize(
          z, params["codebooks"],
          lambda d: jnp.argmax(km.sinkhorn_log_plan(d, eps), -1).astype(
              jnp.int32))
      return out["codes"], out["last_distances"]

    codes, dist = run(self.params, jnp.asarray(x))
    return np.asarray(codes, np.int32), np.asarray(dist)


def _normalize(x: jax.Array) -> jax.Array:
  # rsqrt(|x|^2 + eps) keeps the gradient finite at x = 0 (items without
  # interactions have all-zero CF embeddings).
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def make_hooks(config: LetterConfig, cf: np.ndarray) -> rqvae.TrainHooks:
  """The LETTER losses as RQ-VAE training hooks.

  Args:
    config: hyperparameters.
    cf: float32 `[num_items, cf_dim]` CF embeddings aligned with the items.

  Returns:
    Hooks for `rqvae.fit`.
  """
  cf_j = jnp.asarray(cf, jnp.float32)
  levels, k = config.num_levels, config.codebook_size
  clusters = max(1, min(config.diversity_clusters, k))
  sg = jax.lax.stop_gradient

  def init_params(key):
    scale = 1.0 / np.sqrt(cf.shape[1])
    return {"cf_proj": jax.random.normal(
        key, (cf.shape[1], config.latent_dim)) * scale}

  def epoch_aux(params, key):
    books = sg(params["codebooks"])
    keys = jax.random.split(key, levels)
    # [L, K]: the cluster of each code.
    return jnp.stack([
        km.kmeans(books[lv], clusters, keys[lv], num_iters=10)[1]
        for lv in range(levels)])

  def extra_loss(params, aux, idx, out, key):
    z, zq, codes = out["z"], out["quantized"], out["codes"]
    # Collaborative alignment: in-batch InfoNCE, quantised latent vs CF.
    q = _normalize(z + sg(zq - z))
    c = _normalize(jnp.dot(cf_j[idx], params["cf_proj"]))
    logits = jnp.dot(q, c.T) / config.cf_temperature
    cf_loss = jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.diagonal(logits))
    # Diversity: chosen code vs a random same-cluster code, all codes as
    # the softmax candidates (the code itself excluded).
    div = 0.0
    for lv, key_l in zip(range(levels), jax.random.split(key, levels)):
      book = _normalize(params["codebooks"][lv])
      cl = aux[lv]
      own = codes[:, lv]
      same = (cl[own][:, None] == cl[None, :]) & (
          jnp.arange(k)[None, :] != own[:, None])
      gumbel = jax.random.gumbel(key_l, same.shape)
      pos = jnp.argmax(jnp.where(same, gumbel, -1e9), axis=-1)
      has_pos = jnp.any(same, axis=-1)
      sims = jnp.dot(book[own], book.T) / config.diversity_temperature
      # Finite mask (not -inf): rows without a positive are zeroed below,
      # and an inf there would turn the gradient of `where` into NaN.
      sims = jnp.where(jnp.arange(k)[None, :] == own[:, None], -1e9, sims)
      term = jax.nn.logsumexp(sims, -1) - jnp.take_along_axis(
          sims, pos[:, None], -1)[:, 0]
      div = div + jnp.sum(jnp.where(has_pos, term, 0.0)) / jnp.maximum(
          jnp.sum(has_pos), 1)
    loss = config.cf_weight * cf_loss + config.diversity_weight * div
    return loss, {"cf": cf_loss, "diversity": div}

  return rqvae.TrainHooks(init_params=init_params, epoch_aux=epoch_aux,
                          extra_loss=extra_loss)


def fit(x: np.ndarray, cf: np.ndarray, config: LetterConfig, key: jax.Array
        ) -> tuple[LetterTokenizer, np.ndarray, np.ndarray, dict[str, Any]]:
  """Trains LETTER.

  Args:
    x: float32 `[n, d]` text embeddings.
    cf: float32 `[n, cf_dim]` CF embeddings of the same items.
    config: hyperparameters.
    key: PRNG key.

  Returns:
    (tokenizer, codes int32 `[n, L]` with the balanced last level,
    last-level distances `[n, K]`, final training metrics).
  """
  tok, metrics = rqvae.fit(x, config, key, make_hooks(config, cf),
                           tokenizer_cls=LetterTokenizer)
  codes, dist = tok.balanced_codes(x)
  return tok, codes, dist, metrics


def cooccurrence_embeddings(sequences: Iterable[np.ndarray], num_items: int,
                            dim: int = 64, window: int = 3) -> np.ndarray:
  """Item2vec-style CF embeddings: SVD of positive PMI co-occurrences.

  Items within `window` positions of each other in a user's history
  co-occur (symmetrically). The positive pointwise mutual information
  matrix is factorised by a truncated (randomised, fixed-seed) SVD; rows
  `U sqrt(S)` are returned. Deterministic.

  Args:
    sequences: per-user item indices.
    num_items: item table size.
    dim: embedding width (capped at num_items - 1).
    window: co-occurrence window.

  Returns:
    float32 `[num_items, dim]`.
  """
  import scipy.sparse as sp  # pylint: disable=g-import-not-at-top
  rows, cols = [], []
  for seq in sequences:
    seq = np.asarray(seq)
    for w in range(1, window + 1):
      if len(seq) > w:
        rows.append(seq[:-w])
        cols.append(seq[w:])
  r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
  keep = r != c
  r, c = r[keep], c[keep]
  counts = sp.coo_matrix(
      (np.ones(2 * len(r)), (np.r_[r, c], np.r_[c, r])),
      shape=(num_items, num_items)).tocsr()
  counts.sum_duplicates()
  total = counts.sum()
  marg = np.asarray(counts.sum(axis=1)).ravel()
  coo = counts.tocoo()
  pmi = np.log(coo.data * total / (marg[coo.row] * marg[coo.col]))
  keep = pmi > 0
  ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])),
                       shape=(num_items, num_items))
  dim = max(1, min(dim, num_items))
  # Randomised SVD with a fixed Gaussian test matrix (ARPACK's svds is not
  # reproducible bit for bit), a few power iterations, then signs fixed so
  # each column's largest entry is positive.
  rng = np.random.default_rng(0)
  width = min(num_items, dim + 10)
  q, _ = np.linalg.qr(ppmi @ rng.normal(size=(num_items, width)))
  for _ in range(4):
    q, _ = np.linalg.qr(ppmi @ (ppmi.T @ q))
  u_small, s, _ = np.linalg.svd(np.asarray((ppmi.T @ q).T), full_matrices=False)
  u = (q @ u_small)[:, :dim]
  s = s[:dim]
  sign = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(dim)])
  u = u * np.where(sign == 0, 1.0, sign)
  return (u * np.sqrt(s)).astype(np.float32)
