"""Tests for recjax.hf_t5: parity with Hugging Face T5.

`hf_t5_reference.npz` holds HF `T5ForConditionalGeneration` weights and
logits (written by `fixtures/make_hf_t5_reference.py`), so the parity check
runs without torch; with torch and transformers installed (`.[bench]`) the
same check also runs against a freshly built HF model.
"""

import json
import pathlib
import types

import jax
import numpy as np
import pytest

from recjax import hf_t5
from recjax import network
from recjax.errors import ConfigError

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "hf_t5_reference.npz"
CASES = ("relu_untied", "gelu_tied")


def _load(case: str):
  with np.load(FIXTURE) as z:
    prefix = f"{case}/sd/"
    sd = {k[len(prefix):]: z[k].astype(np.float32) for k in z.files
          if k.startswith(prefix)}
    data = {k: z[f"{case}/{k}"] for k in (
        "encoder_input_tokens", "decoder_input_tokens",
        "decoder_target_tokens", "logits")}
    hf_config = types.SimpleNamespace(**json.loads(str(z[f"{case}/config"])))
  return hf_config, sd, data


def _logits(cfg, params, enc, dec, targets) -> np.ndarray:
  module = network.Transformer(cfg)
  return np.asarray(jax.jit(module.apply)({"params": params}, enc, dec,
                                          targets))


@pytest.mark.parametrize("case", CASES)
def test_logits_match_the_hf_reference(case):
  hf_config, sd, data = _load(case)
  cfg = hf_t5.config_from_hf(hf_config)
  assert cfg.logits_via_embedding == (case == "gelu_tied")
  assert cfg.mlp_activations == (("relu",) if case == "relu_untied" else
                                 ("gelu", "linear"))
  params = hf_t5.params_from_hf_state_dict(sd, cfg)
  got = _logits(cfg, params, data["encoder_input_tokens"],
                data["decoder_input_tokens"], data["decoder_target_tokens"])
  want = data["logits"]
  assert got.shape == want.shape
  scale = np.abs(want).max()
  np.testing.assert_allclose(got / scale, want / scale, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_conversion_round_trips(case):
  hf_config, sd, _ = _load(case)
  cfg = hf_t5.config_from_hf(hf_config)
  back = hf_t5.hf_state_dict_from_params(
      hf_t5.params_from_hf_state_dict(sd, cfg), cfg)
  for name, value in sd.items():
    np.testing.assert_array_equal(back[name], value, err_msg=name)
  # HF's aliases of the shared embedding are filled in too.
  np.testing.assert_array_equal(back["encoder.embed_tokens.weight"],
                                sd["shared.weight"])
  if case == "gelu_tied":
    np.testing.assert_array_equal(back["lm_head.weight"],
                                  sd["shared.weight"])


def test_padding_does_not_change_the_unpadded_rows():
  hf_config, sd, data = _load("relu_untied")
  cfg = hf_t5.config_from_hf(hf_config)
  params = hf_t5.params_from_hf_state_dict(sd, cfg)
  enc = data["encoder_input_tokens"][1:2]  # the padded row
  short = _logits(cfg, params, enc[:, :15], data["decoder_input_tokens"][1:2],
                  data["decoder_target_tokens"][1:2])
  np.testing.assert_allclose(short[0], data["logits"][1], rtol=1e-4,
                             atol=1e-5)


def test_bad_inputs_fail_clearly():
  hf_config, sd, _ = _load("gelu_tied")
  with pytest.raises(ConfigError, match="unsupported HF feed_forward_proj "
                     "'swish'"):
    hf_t5.config_from_hf(types.SimpleNamespace(
        **{**vars(hf_config), "feed_forward_proj": "swish"}))
  cfg = hf_t5.config_from_hf(hf_config)
  del sd["decoder.final_layer_norm.weight"]
  with pytest.raises(ConfigError, match="no 'decoder.final_layer_norm"
                     ".weight'; is it a T5 checkpoint matching the config"):
    hf_t5.params_from_hf_state_dict(sd, cfg)


def test_overrides_reach_the_config():
  hf_config, _, _ = _load("relu_untied")
  cfg = hf_t5.config_from_hf(hf_config, dropout_rate=0.25)
  assert cfg.dropout_rate == 0.25 and cfg.emb_dim == hf_config.d_model


@pytest.mark.parametrize("proj, tied", [("relu", False),
                                        ("gated-gelu", True)])
def test_parity_with_a_live_hugging_face_t5(proj, tied):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  hf_cfg = transformers.T5Config(
      vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2,
      num_decoder_layers=3, num_heads=4, feed_forward_proj=proj,
      tie_word_embeddings=tied, dropout_rate=0.0,
      relative_attention_num_buckets=16, relative_attention_max_distance=32)
  hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
  with torch.no_grad():
    if not tied:  # a separate output projection
      hf.lm_head.weight = torch.nn.Parameter(torch.randn(50, 32) * 0.3)
    for name, p in hf.named_parameters():
      if "layer_norm" in name:
        p.copy_(1 + 0.2 * torch.randn_like(p))
  cfg = hf_t5.config_from_hf(hf_cfg)
  assert cfg.logits_via_embedding == tied
  params = hf_t5.params_from_hf_state_dict(hf.state_dict(), cfg)
  rng = np.random.default_rng(0)
  enc = rng.integers(3, 50, (3, 40))
  enc[1, 25:] = 0
  targets = rng.integers(3, 50, (3, 7))
  dec = network.shift_right(targets)
  with torch.no_grad():
    want = hf(input_ids=torch.tensor(enc),
              attention_mask=torch.tensor(enc > 0).long(),
              decoder_input_ids=torch.tensor(dec)).logits.numpy()
  got = _logits(cfg, params, enc, dec, targets)
  scale = np.abs(want).max()
  np.testing.assert_allclose(got / scale, want / scale, atol=1e-5)
  # And back: the inverse conversion reproduces the HF weights.
  back = hf_t5.hf_state_dict_from_params(params, cfg)
  for name, value in hf.state_dict().items():
    np.testing.assert_array_equal(back[name], value.numpy())
