"""Tests for recjax.quantizers.rqkmeans."""

from __future__ import annotations

import jax
import numpy as np

from recjax.quantizers import kmeans as km
from recjax.quantizers import load_tokenizer
from recjax.quantizers import rqkmeans


def _data(n=300, d=6, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_levels_are_kmeans_of_residuals():
  x = _data()
  cfg = rqkmeans.RQKMeansConfig(num_levels=3, codebook_size=8,
                                kmeans_iters=20)
  tok, codes, dist = rqkmeans.fit(x, cfg, jax.random.key(0))
  keys = jax.random.split(jax.random.key(0), 3)
  c0, l0 = km.kmeans(x, 8, keys[0], num_iters=20)
  np.testing.assert_array_equal(codes[:, 0], np.asarray(l0))
  np.testing.assert_allclose(tok.params["codebooks"][0], np.asarray(c0))
  books = tok.params["codebooks"]
  recon = sum(books[lv][codes[:, lv]] for lv in range(3))
  np.testing.assert_allclose(tok.reconstruct(x), recon, atol=1e-5)
  r = x - books[0][codes[:, 0]] - books[1][codes[:, 1]]
  brute = ((r[:, None] - books[2][None]) ** 2).sum(-1)
  np.testing.assert_allclose(dist, brute, rtol=1e-4, atol=1e-5)
  errs = [np.mean(np.sum((x - sum(books[j][codes[:, j]]
                                  for j in range(lv + 1))) ** 2, 1))
          for lv in range(3)]
  assert errs[0] > errs[1] > errs[2]


def test_cold_start_encode_and_reload(tmp_path):
  x = _data()
  tok, codes, _ = rqkmeans.fit(x, rqkmeans.RQKMeansConfig(
      num_levels=2, codebook_size=8, kmeans_iters=20), jax.random.key(1))
  np.testing.assert_array_equal(tok.encode(x), codes)
  tok.save(tmp_path / "t")
  loaded = load_tokenizer(tmp_path / "t")
  assert loaded.method == "rqkmeans"
  new = _data(n=20, seed=5)
  np.testing.assert_array_equal(loaded.encode(new), tok.encode(new))


def test_balanced_option_evens_out_levels():
  rng = np.random.default_rng(0)
  # Skewed data: most points in one blob.
  x = np.concatenate([rng.normal(size=(270, 4)) * 0.1,
                      rng.normal(size=(30, 4)) + 4]).astype(np.float32)
  kw = dict(num_levels=2, codebook_size=6, kmeans_iters=20)
  _, plain, _ = rqkmeans.fit(x, rqkmeans.RQKMeansConfig(**kw),
                             jax.random.key(0))
  _, bal, _ = rqkmeans.fit(x, rqkmeans.RQKMeansConfig(balanced=True, **kw),
                           jax.random.key(0))
  spread = lambda c: np.bincount(c, minlength=6).max()
  assert spread(bal[:, 0]) < spread(plain[:, 0])
  assert spread(bal[:, 0]) <= 2 * 300 / 6
