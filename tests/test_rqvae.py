"""Tests for recjax.quantizers.rqvae (tiny networks, few epochs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.quantizers import load_tokenizer
from recjax.quantizers import rqvae

CFG = dict(num_levels=2, codebook_size=8, latent_dim=4, hidden_dims=(16,),
           epochs=6, batch_size=64, kmeans_iters=10, progress=False)


def _data(n=240, d=12, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(12, d)) * 3
  return (centers[rng.integers(0, 12, n)] +
          rng.normal(size=(n, d)) * 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
  x = _data()
  tok, metrics = rqvae.fit(x, rqvae.RQVAEConfig(**CFG), jax.random.key(0))
  return x, tok, metrics


def test_same_seed_same_parameters_bit_for_bit(trained):
  x, tok, _ = trained
  again, _ = rqvae.fit(x, rqvae.RQVAEConfig(**CFG), jax.random.key(0))
  for a, b in zip(jax.tree_util.tree_leaves(tok.params),
                  jax.tree_util.tree_leaves(again.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(tok.encode(x), again.encode(x))
  other, _ = rqvae.fit(x, rqvae.RQVAEConfig(**CFG), jax.random.key(1))
  assert not np.array_equal(other.params["codebooks"], tok.params["codebooks"])


def test_codes_are_nearest_residual_codes(trained):
  x, tok, metrics = trained
  codes, dist = tok.encode_with_last_distances(x)
  assert codes.shape == (len(x), 2) and codes.dtype == np.int32
  enc, _ = rqvae._nets(tok.config, x.shape[1])
  z = np.asarray(enc.apply({"params": tok.params["encoder"]}, x))
  books = tok.params["codebooks"]
  r = z
  for lv in range(2):
    brute = ((r[:, None] - books[lv][None]) ** 2).sum(-1)
    np.testing.assert_array_equal(codes[:, lv], brute.argmin(1))
    r = r - books[lv][codes[:, lv]]
  np.testing.assert_allclose(dist, brute, rtol=1e-4, atol=1e-5)
  assert metrics["train_dead_codes"] == [0, 0]
  assert np.isfinite(metrics["train_loss"])


def test_dead_codes_are_reset_so_no_level_collapses():
  x = _data(seed=3)
  cfg = dict(CFG, kmeans_init=False, epochs=3)
  on, _ = rqvae.fit(x, rqvae.RQVAEConfig(**cfg), jax.random.key(0))
  off, _ = rqvae.fit(x, rqvae.RQVAEConfig(**cfg, dead_code_reset=False),
                     jax.random.key(0))
  used = lambda t: [len(np.unique(t.encode(x)[:, lv])) for lv in range(2)]
  assert min(used(on)) >= 6
  assert sum(used(on)) > sum(used(off))


def test_rotation_trick_value_and_gradient():
  rng = np.random.default_rng(0)
  e = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  q = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  np.testing.assert_allclose(rqvae.rotate_to(e, q), q, atol=1e-5)
  w = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
  g = jax.grad(lambda e: jnp.sum(rqvae.rotate_to(e, q) @ w))(e)
  # The gradient is w rotated and rescaled: its norm is |w| |q| / |e|.
  want = np.linalg.norm(w) * np.linalg.norm(q, axis=1) / np.linalg.norm(
      e, axis=1)
  np.testing.assert_allclose(np.linalg.norm(g, axis=1), want, rtol=1e-4)
  x = _data()
  tok, _ = rqvae.fit(x, rqvae.RQVAEConfig(**dict(CFG, epochs=2),
                                          rotation_trick=True),
                     jax.random.key(0))
  assert np.isfinite(tok.params["codebooks"]).all()


def test_save_load_and_cold_start(tmp_path, trained):
  x, tok, _ = trained
  tok.save(tmp_path / "tok")
  loaded = load_tokenizer(tmp_path / "tok", method="rqvae")
  assert loaded.config == tok.config
  np.testing.assert_array_equal(loaded.encode(x), tok.encode(x))
  new = _data(n=30, seed=9)
  np.testing.assert_array_equal(loaded.encode(new), tok.encode(new))
  with pytest.raises(ConfigError, match="holds a 'rqvae' tokenizer, not "
                     "'opq'"):
    load_tokenizer(tmp_path / "tok", method="opq")
  with pytest.raises(ConfigError, match=r"embeddings have dimension 5 but "
                                        r"the tokenizer was trained on "
                                        r"dimension 12; embed the items "
                                        r"with the same text encoder"):
    loaded.encode(np.zeros((2, 5), np.float32))
  with pytest.raises(ConfigError, match="not a semantic-ID tokenizer"):
    load_tokenizer(tmp_path)
