"""Tests for recjax.quantizers.pq (PQ and OPQ)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.quantizers import load_tokenizer
from recjax.quantizers import pq


def _correlated(n=400, d=8, seed=0):
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(d, d))
  return (rng.normal(size=(n, d)) @ mix).astype(np.float32)


def test_pq_codes_are_per_subspace_nearest_centroids():
  x = _correlated()
  tok, codes, dist = pq.fit(x, pq.OPQConfig(num_subspaces=4, codebook_size=8,
                                            rotate=False, progress=False),
                            jax.random.key(0))
  np.testing.assert_array_equal(tok.params["rotation"], np.eye(8))
  books = tok.params["codebooks"]
  assert books.shape == (4, 8, 2) and codes.shape == (400, 4)
  for s in range(4):
    brute = ((x[:, None, 2 * s:2 * s + 2] - books[s][None]) ** 2).sum(-1)
    np.testing.assert_array_equal(codes[:, s], brute.argmin(1))
  np.testing.assert_allclose(dist, brute, rtol=1e-4, atol=1e-5)
  recon = np.concatenate([books[s][codes[:, s]] for s in range(4)], 1)
  np.testing.assert_allclose(tok.reconstruct(x), recon, atol=1e-5)


def test_opq_rotation_is_orthogonal_and_lowers_error(tmp_path):
  x = _correlated(seed=1)
  kw = dict(num_subspaces=4, codebook_size=4, kmeans_iters=20,
            progress=False)
  plain, _, _ = pq.fit(x, pq.OPQConfig(rotate=False, **kw), jax.random.key(0))
  opq, codes, _ = pq.fit(x, pq.OPQConfig(opq_iters=8, **kw),
                         jax.random.key(0))
  r = opq.params["rotation"]
  np.testing.assert_allclose(r.T @ r, np.eye(8), atol=1e-4)
  e_plain = plain.reconstruction_errors(x)["reconstruction_mse"]
  e_opq = opq.reconstruction_errors(x)["reconstruction_mse"]
  assert e_opq < e_plain
  np.testing.assert_array_equal(opq.encode(x), codes)
  opq.save(tmp_path / "t")
  loaded = load_tokenizer(tmp_path / "t", method="opq")
  new = _correlated(n=10, seed=7)
  np.testing.assert_array_equal(loaded.encode(new), opq.encode(new))


def test_subspaces_must_divide_the_dimension():
  with pytest.raises(ConfigError, match="must divide the embedding "
                     "dimension 8"):
    pq.fit(_correlated(), pq.OPQConfig(num_subspaces=3), jax.random.key(0))


@pytest.mark.parametrize("pca_dim", [0, 4])
def test_whitened_pca_gives_unit_covariance_and_round_trips(tmp_path,
                                                            pca_dim):
  x = _correlated(seed=2)
  cfg = pq.OPQConfig(num_subspaces=2, codebook_size=4, opq_iters=2,
                     whiten=True, pca_dim=pca_dim, progress=False)
  tok, codes, _ = pq.fit(x, cfg, jax.random.key(0))
  dim = pca_dim or 8
  assert tok.params["pca_matrix"].shape == (8, dim)
  z = (x - tok.params["pca_mean"]) @ tok.params["pca_matrix"]
  np.testing.assert_allclose(np.cov(z.T), np.eye(dim), atol=1e-3)
  # Components ordered by variance, signs fixed: equal input, equal codes.
  again, codes2, _ = pq.fit(x.copy(), cfg, jax.random.key(0))
  np.testing.assert_array_equal(codes, codes2)
  tok.save(tmp_path / "t")
  new = _correlated(n=10, seed=9)
  np.testing.assert_array_equal(load_tokenizer(tmp_path / "t").encode(new),
                                tok.encode(new))
  assert np.isfinite(tok.reconstruction_errors(x)["reconstruction_mse"])
  with pytest.raises(ConfigError, match=r"pca_dim=9 must be in \[1, 8\]"):
    pq.fit(x, pq.OPQConfig(pca_dim=9), jax.random.key(0))
