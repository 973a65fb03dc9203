"""Tests of recjax.models.layers: the shared causal block and helpers."""

import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.models import layers


@pytest.mark.parametrize("norm", ["pre", "post"])
@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(cut=st.integers(1, 5), pad=st.integers(0, 3))
def test_block_is_causal_and_ignores_padding(norm, cut, pad):
  """Output at position j depends on the real positions <= j only."""
  cfg = layers.BlockConfig(hidden_dim=8, num_heads=2, mlp_dim=16,
                           dropout_rate=0.0, attention_dropout_rate=0.0,
                           norm=norm)
  block = layers.Block(cfg)
  rng = np.random.default_rng(cut * 10 + pad)
  x = jnp.asarray(rng.normal(size=(1, 6, 8)), jnp.float32)
  valid = jnp.arange(6)[None] >= pad
  params = block.init(jax.random.key(0), x, layers.causal_bias(valid),
                      True)
  out = block.apply(params, x, layers.causal_bias(valid), True)
  later = x.at[:, cut:].set(jnp.asarray(rng.normal(size=(1, 6 - cut, 8)),
                                        jnp.float32))
  padded = later.at[:, :pad].set(7.0)  # Padding content is never read.
  again = block.apply(params, padded, layers.causal_bias(valid), True)
  keep = slice(pad, cut) if cut > pad else slice(0, 0)
  np.testing.assert_allclose(again[:, keep], out[:, keep], atol=1e-6)


def test_causal_bias_masks_future_and_padding():
  bias = np.asarray(layers.causal_bias(jnp.array([[False, True, True]])))
  assert bias.shape == (1, 1, 3, 3)
  allowed = bias[0, 0] == 0.0
  np.testing.assert_array_equal(allowed, [[False, False, False],
                                          [False, True, False],
                                          [False, True, True]])


def test_block_parameter_names_are_the_recorded_ones():
  """SASRec's checkpoints name these parameters: they must not move."""
  for norm, names in (("pre", {"pre_attention_norm", "pre_mlp_norm"}),
                      ("post", {"post_attention_norm", "post_mlp_norm"})):
    cfg = layers.BlockConfig(hidden_dim=8, num_heads=2, mlp_dim=16,
                             norm=norm)
    x = jnp.zeros((1, 3, 8))
    params = layers.Block(cfg).init(
        jax.random.key(0), x, layers.causal_bias(jnp.ones((1, 3), bool)),
        True)["params"]
    assert set(params) == {"attention", "mlp"} | names
    assert set(params["attention"]) == {"query", "key", "value", "out"}
    assert set(params["mlp"]) == {"wi", "wo"}


def test_code_embedding_is_the_mean_of_the_present_digits():
  emb = layers.CodeEmbedding(num_digits=3, codebook_size=4, features=5)
  codes = np.array([[0, 1, 2], [3, -1, 3], [-1, -1, -1]], np.int32)
  params = emb.init(jax.random.key(0), codes)["params"]
  table = np.asarray(nn.meta.unbox(params)["embedding"])
  assert table.shape == (3, 4, 5)
  out = np.asarray(emb.apply({"params": params}, codes))
  np.testing.assert_allclose(out[0], (table[0, 0] + table[1, 1] +
                                      table[2, 2]) / 3, rtol=1e-6)
  # A missing digit (-1) is left out of the mean; no digit at all: zeros.
  np.testing.assert_allclose(out[1], (table[0, 3] + table[2, 3]) / 2,
                             rtol=1e-6)
  np.testing.assert_array_equal(out[2], np.zeros(5))
  with pytest.raises(ConfigError, match="codes have 2 digits; this "
                     "CodeEmbedding has 3"):
    emb.apply({"params": params}, codes[:, :2])


def test_causal_transformer_is_shared_blocks_and_upgrades_old_names():
  net = layers.CausalTransformer(16, 2, 2, 32, 0.1, 8)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 6, 16))
  valid = jnp.array([[0, 0, 1, 1, 1, 1], [1] * 6, [0] * 5 + [1]], bool)
  params = nn.unbox(net.init(jax.random.PRNGKey(1), x, valid)["params"])
  assert set(params["layer_1"]) == {"attention", "mlp", "pre_attention_norm",
                                    "pre_mlp_norm"}
  # A tree with the old flat names (as runs saved before stored it) is
  # rejected as it is and restores, renamed, to the same function.
  flat = {k: v for k, v in params.items() if not k.startswith("layer_")}
  for i in range(2):
    blk = params[f"layer_{i}"]
    flat[f"layer_{i}"] = {
        "attention_norm": blk["pre_attention_norm"],
        "mlp_norm": blk["pre_mlp_norm"], **blk["attention"], **blk["mlp"]}
  with pytest.raises(Exception, match="layer_0"):
    net.apply({"params": flat}, x, valid)
  upgraded = layers.upgrade_legacy_blocks(flat)
  assert jax.tree.structure(upgraded) == jax.tree.structure(params)
  np.testing.assert_array_equal(net.apply({"params": upgraded}, x, valid),
                                net.apply({"params": params}, x, valid))
  same = layers.upgrade_legacy_blocks(params)
  assert jax.tree.structure(same) == jax.tree.structure(params)
  # Fan-in initialisation: the kernels' scale follows their fan-in.
  wi = np.asarray(params["layer_0"]["mlp"]["wi"]["kernel"])
  wo = np.asarray(params["layer_0"]["mlp"]["wo"]["kernel"])
  assert np.std(wi) == pytest.approx(16 ** -0.5, rel=0.2)
  assert np.std(wo) == pytest.approx(32 ** -0.5, rel=0.2)


def test_block_rejects_an_unknown_kernel_init():
  cfg = layers.BlockConfig(hidden_dim=8, num_heads=2, mlp_dim=8,
                           kernel_init="xavier")
  x = jnp.zeros((1, 3, 8))
  with pytest.raises(ConfigError, match=r"kernel_init='xavier'; use "
                     r"'normal' or 'fan_in'"):
    layers.Block(cfg).init(jax.random.PRNGKey(0), x,
                           layers.causal_bias(jnp.ones((1, 3), bool)), True)


@pytest.mark.parametrize("field,value,message", [
    ("num_layers", 0, r"_Cfg.num_layers must be >= 1, got 0"),
    ("num_heads", 3, r"_Cfg.hidden_dim=8 must be divisible by num_heads=3"),
    ("dropout_rate", 1.0, r"_Cfg.dropout_rate must be in \[0, 1\), got 1.0"),
    ("norm", "mid", r"_Cfg.norm='mid'; use one of \('pre', 'post'\)"),
])
def test_check_config_fields_names_the_field(field, value, message):
  import dataclasses  # pylint: disable=g-import-not-at-top

  @dataclasses.dataclass
  class _Cfg:
    hidden_dim: int = 8
    num_heads: int = 2
    num_layers: int = 1
    dropout_rate: float = 0.1
    norm: str = "pre"

  kinds = {"positive": ("hidden_dim", "num_heads", "num_layers"),
           "rates": ("dropout_rate",), "choices": {"norm": ("pre", "post")}}
  layers.check_config_fields(_Cfg(), **kinds)  # the defaults pass
  with pytest.raises(ConfigError, match=message):
    layers.check_config_fields(_Cfg(**{field: value}), **kinds)
