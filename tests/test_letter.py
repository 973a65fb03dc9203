"""Tests for recjax.quantizers.letter (tiny networks, few epochs)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.quantizers import letter
from recjax.quantizers import load_tokenizer
from recjax.quantizers import rqvae

CFG = dict(num_levels=2, codebook_size=8, latent_dim=4, hidden_dims=(16,),
           epochs=5, batch_size=64, kmeans_iters=10, progress=False)


def _data(n=192, d=12, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  cf = rng.normal(size=(n, 6)).astype(np.float32)
  return x, cf


def test_losses_are_finite_and_weighted():
  x, cf = _data()
  cfg = letter.LetterConfig(**CFG)
  hooks = letter.make_hooks(cfg, cf)
  params = rqvae._init_params(cfg, x, jax.random.key(0), hooks)
  assert params["cf_proj"].shape == (6, 4)
  aux = hooks.epoch_aux(params, jax.random.key(1))
  assert aux.shape == (2, 8) and int(aux.max()) < cfg.diversity_clusters
  enc, _ = rqvae._nets(cfg, 12)
  idx = np.arange(32)
  z = enc.apply({"params": params["encoder"]}, x[idx])
  out = rqvae.residual_quantize(z, params["codebooks"])
  out["z"] = z
  loss, m = hooks.extra_loss(params, aux, idx, out, jax.random.key(2))
  assert np.isfinite(m["cf"]) and np.isfinite(m["diversity"])
  # In-batch InfoNCE over 32 items is near log(32) for random vectors.
  assert 0.5 * np.log(32) < float(m["cf"]) < 3 * np.log(32)
  np.testing.assert_allclose(
      loss, 0.01 * m["cf"] + 1e-4 * m["diversity"], rtol=1e-5)


def test_fit_is_deterministic_and_balances_the_last_level(tmp_path):
  x, cf = _data()
  cfg = letter.LetterConfig(**CFG)
  tok, codes, dist, metrics = letter.fit(x, cf, cfg, jax.random.key(0))
  _, codes2, _, _ = letter.fit(x, cf, cfg, jax.random.key(0))
  np.testing.assert_array_equal(codes, codes2)
  assert codes.shape == (192, 2) and dist.shape == (192, 8)
  assert "train_cf" in metrics and "train_diversity" in metrics
  nearest = tok.encode(x)
  np.testing.assert_array_equal(codes[:, 0], nearest[:, 0])
  spread = lambda c: np.bincount(c, minlength=8).max()
  assert spread(codes[:, 1]) <= spread(nearest[:, 1])
  tok.save(tmp_path / "t")
  loaded = load_tokenizer(tmp_path / "t")
  assert loaded.method == "letter"
  np.testing.assert_array_equal(loaded.encode(x), nearest)
  with pytest.raises(ConfigError, match="holds a 'letter' tokenizer"):
    load_tokenizer(tmp_path / "t", method="rqvae")


def test_cooccurrence_embeddings():
  seqs = [np.array([0, 1, 2, 3]), np.array([1, 2, 0]), np.array([4, 5, 4]),
          np.array([5, 4, 6]), np.array([3, 0, 1])]
  a = letter.cooccurrence_embeddings(seqs, 8, dim=3, window=2)
  b = letter.cooccurrence_embeddings(seqs, 8, dim=3, window=2)
  assert a.shape == (8, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a[7], 0)  # never interacted
  cos = lambda i, j: a[i] @ a[j] / np.linalg.norm(a[i]) / np.linalg.norm(a[j])
  assert cos(4, 5) > cos(4, 0)
