"""Tests for recjax.network: incremental decoding, causality, axes.

Parity with Hugging Face T5 is in test_hf_t5.py.
"""

import functools
import subprocess
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import network
from recjax.errors import ConfigError


def _config(**kw):
  base = dict(vocab_size=40, emb_dim=16, num_heads=2, head_dim=8,
              num_encoder_layers=2, num_decoder_layers=2, mlp_dim=32,
              dropout_rate=0.0, relative_attention_num_buckets=8,
              relative_attention_max_distance=16)
  base.update(kw)
  return network.TransformerConfig(**base)


def _init(cfg, enc, dec):
  module = network.Transformer(cfg)
  variables = jax.jit(module.init)(jax.random.key(0), enc, dec)
  return module, nn.meta.unbox(variables)


@functools.cache
def _jitted(module, static):
  kwargs = {k: list(v) if k == "mutable" else v for k, v in static}
  return jax.jit(lambda v, a, t: module.apply(v, *a, **t, **kwargs))


def _apply(module, variables, *args, **kwargs):
  """Jitted, cached `module.apply` (eager flax is slow on small CPUs)."""
  names = ("method", "mutable", "decode", "decode_step", "max_decode_length",
           "enable_dropout")
  static = tuple(sorted(
      (k, tuple(v) if k == "mutable" else v)
      for k, v in kwargs.items() if k in names))
  traced = {k: v for k, v in kwargs.items() if k not in names}
  return _jitted(module, static)(variables, args, traced)


def test_kv_cache_decoding_matches_full_recomputation():
  cfg = _config(mlp_activations=("gelu", "linear"), logits_via_embedding=True)
  rng = np.random.default_rng(0)
  batch, beams, length = 2, 3, 4
  enc = jnp.asarray(rng.integers(3, 40, (batch, 11)))
  enc = enc.at[1, 7:].set(0)  # padding is masked
  seqs = rng.integers(3, 40, (batch, beams, length))
  seqs[:, :, 0] = 0  # BOS
  module, variables = _init(cfg, enc, jnp.asarray(seqs[:, 0]))
  # Full recomputation, one sequence per (user, beam).
  full = _apply(module, variables, jnp.repeat(enc, beams, 0),
                      jnp.asarray(seqs.reshape(batch * beams, length)))
  full = np.asarray(full).reshape(batch, beams, length, -1)
  encoded = _apply(module, variables, enc, method=module.encode)
  # Step 0 once per user (all beams start from BOS), then per beam.
  logits, state = _apply(
      module, variables, encoded, enc, jnp.asarray(seqs[:, :1, 0]), decode=True,
      decode_step=0, max_decode_length=length, method=module.decode,
      mutable=["cache", "cross_kv"])
  np.testing.assert_allclose(np.asarray(logits[:, 0]), full[:, 0, 0],
                             atol=1e-5, rtol=1e-5)
  cache = jax.tree.map(lambda x: jnp.repeat(x, beams, 1), state["cache"])
  for step in range(1, length):
    logits, new = _apply(
        module, {**variables, "cache": cache, "cross_kv": state["cross_kv"]},
        None, enc, jnp.asarray(seqs[:, :, step]), decode=True, decode_step=step,
        method=module.decode, mutable=["cache"])
    cache = new["cache"]
    np.testing.assert_allclose(np.asarray(logits), full[:, :, step],
                               atol=1e-5, rtol=1e-5)
  # Cross-attention K/V are stored once per user, not per beam.
  kv = state["cross_kv"]["decoder_0"]["encoder_decoder_attention"]["key"]
  assert kv.shape == (batch, 2, 11, 8)


def test_decoder_is_causal_and_encoder_masks_padding():
  cfg = _config()
  rng = np.random.default_rng(1)
  enc = rng.integers(3, 40, (1, 8))
  dec = rng.integers(3, 40, (1, 6))
  module, variables = _init(cfg, jnp.asarray(enc), jnp.asarray(dec))
  base = np.asarray(_apply(module, variables, enc, dec))
  dec2 = dec.copy()
  dec2[0, 4] = (dec2[0, 4] + 1) % 40
  changed = np.asarray(_apply(module, variables, enc, dec2))
  np.testing.assert_allclose(changed[0, :4], base[0, :4], atol=1e-6)
  assert not np.allclose(changed[0, 4:], base[0, 4:])
  # Padding tokens' ids do not matter; appended padding changes nothing.
  padded = np.concatenate([enc, np.zeros((1, 3), int)], 1)
  np.testing.assert_allclose(np.asarray(_apply(module, variables, padded, dec)),
                             base, atol=1e-5)


def test_dropout_only_in_training():
  cfg = _config(dropout_rate=0.5)
  enc = jnp.ones((2, 5), jnp.int32) * 7
  dec = jnp.ones((2, 3), jnp.int32) * 9
  module, variables = _init(cfg, enc, dec)
  a = _apply(module, variables, enc, dec)
  b = _apply(module, variables, enc, dec)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  c = _apply(module, variables, enc, dec, enable_dropout=True,
                   rngs={"dropout": jax.random.key(1, impl="unsafe_rbg")})
  assert not np.allclose(np.asarray(a), np.asarray(c))


def _specs(cfg):
  module = network.Transformer(cfg)
  variables = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.ones((1, 4), jnp.int32),
      jnp.ones((1, 2), jnp.int32)))
  flat = flax.traverse_util.flatten_dict(
      nn.get_partition_spec(variables)["params"], sep="/")
  return {k: tuple(v) for k, v in flat.items()}


def test_parameters_have_logical_axes():
  specs = _specs(_config(mlp_activations=("gelu", "linear"),
                         logits_via_embedding=True))
  allowed = {"vocab", "embed", "mlp", "heads", "kv", "relpos_buckets"}
  for name, spec in specs.items():
    assert spec and set(spec) <= allowed, name
  assert specs["token_embedder/embedding"] == ("vocab", "embed")
  assert specs["encoder_0/mlp/wi_0/kernel"] == ("embed", "mlp")
  assert specs["decoder_1/self_attention/query/kernel"] == ("embed", "heads",
                                                            "kv")
  assert specs["decoder_1/self_attention/out/kernel"] == ("heads", "kv",
                                                          "embed")
  assert specs["encoder_0/relpos_bias/rel_embedding"] == ("heads",
                                                          "relpos_buckets")
  # One relative bias per stack, owned by its first layer.
  assert sorted(k for k in specs if "relpos_bias" in k) == [
      "decoder_0/relpos_bias/rel_embedding",
      "encoder_0/relpos_bias/rel_embedding"]
  assert "logits_dense/kernel" not in specs  # tied
  untied = _specs(_config())
  assert untied["logits_dense/kernel"] == ("embed", "vocab")


def test_relative_position_buckets():
  rel = np.arange(-200, 201)
  causal = network.relative_position_bucket(rel, False, 32, 128)
  assert np.all(causal[rel >= 0] == 0)  # the future is one bucket (masked)
  np.testing.assert_array_equal(causal[200 - 15:200 + 1][::-1], np.arange(16))
  assert causal.max() == 31 and np.all(np.diff(causal[:201]) <= 0)
  bi = network.relative_position_bucket(rel, True, 32, 128)
  assert np.all(bi[rel > 0] >= 16) and np.all(bi[rel <= 0] < 16)
  assert bi[200 + 1] == 17 and bi[200 - 1] == 1 and bi.max() == 31


def test_bad_config_raises():
  with pytest.raises(ConfigError, match=r"TransformerConfig\.mlp_activations="
                                        r"\('nope',\): use names from "
                                        r"\['gelu'"):
    _config(mlp_activations=("nope",))
  with pytest.raises(ConfigError, match=r"TransformerConfig\.num_heads must "
                                        r"be >= 1, got 0\."):
    _config(num_heads=0)
  with pytest.raises(ConfigError, match=r"TransformerConfig\.dropout_rate "
                                        r"must be in \[0, 1\), got 1\.0\."):
    _config(dropout_rate=1.0)


def test_flops_count_is_positive_and_scales():
  cfg = _config()
  one = network.count_flops_per_example(cfg, 10, 3, num_queries=1)
  many = network.count_flops_per_example(cfg, 10, 3, num_queries=5)
  assert 0 < one < many
  assert network.count_flops_per_example(
      cfg, 10, 3, 5, cross_kv_once=False) > many


def test_core_modules_do_not_import_tensorflow():
  code = ("import sys; import recjax.network, recjax.models, "
          "recjax.decoding, recjax.trie, recjax.hf_t5; "
          "bad = [m for m in ('tensorflow', 'seqio', 'torch') "
          "if m in sys.modules]; assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)

