"""Hugging Face T5 <-> recjax weight conversion (numpy only, no torch import).

`params_from_hf_state_dict` maps a `T5ForConditionalGeneration` state dict
(tensors or arrays; call `.numpy()` on torch tensors first, or pass them as
they are: anything `np.asarray` accepts) to the parameters of
`recjax.network.Transformer`. `config_from_hf` maps the HF config. Together
they let tests check that both networks compute the same logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from recjax.errors import ConfigError
from recjax.network import TransformerConfig


def config_from_hf(hf_config: Any, **overrides: Any) -> TransformerConfig:
  """A `TransformerConfig` equivalent to an HF `T5Config`.

  Args:
    hf_config: the HF config object.
    **overrides: fields to override (e.g. `dtype`).

  Returns:
    The recjax config.
  """
  proj = hf_config.feed_forward_proj
  if proj == "relu":
    acts = ("relu",)
  elif proj == "gated-gelu":
    acts = ("gelu", "linear")
  else:
    raise ConfigError(f"unsupported HF feed_forward_proj {proj!r}; use "
                      "'relu' or 'gated-gelu'.")
  tied = getattr(hf_config, "scale_decoder_outputs",
                 getattr(hf_config, "tie_word_embeddings", True))
  kwargs = dict(
      vocab_size=hf_config.vocab_size, emb_dim=hf_config.d_model,
      num_heads=hf_config.num_heads, head_dim=hf_config.d_kv,
      num_encoder_layers=hf_config.num_layers,
      num_decoder_layers=hf_config.num_decoder_layers,
      mlp_dim=hf_config.d_ff, mlp_activations=acts,
      dropout_rate=hf_config.dropout_rate, logits_via_embedding=bool(tied),
      relative_attention_num_buckets=hf_config.relative_attention_num_buckets,
      relative_attention_max_distance=(
          hf_config.relative_attention_max_distance),
      layer_norm_epsilon=hf_config.layer_norm_epsilon)
  kwargs.update(overrides)
  return TransformerConfig(**kwargs)


def _np(x: Any) -> np.ndarray:
  if hasattr(x, "detach"):
    x = x.detach().cpu().numpy()
  return np.asarray(x, dtype=np.float32)


def params_from_hf_state_dict(state_dict: Mapping[str, Any],
                              config: TransformerConfig) -> dict[str, Any]:
  """Converts an HF T5 state dict to `Transformer` params (unboxed).

  Args:
    state_dict: `T5ForConditionalGeneration.state_dict()`.
    config: the matching recjax config (see `config_from_hf`).

  Returns:
    A nested dict to use as `{"params": ...}`.

  Raises:
    ConfigError: if an expected weight is missing.
  """
  sd = {k: v for k, v in state_dict.items()}
  h, d = config.num_heads, config.head_dim

  def get(key: str) -> np.ndarray:
    if key not in sd:
      raise ConfigError(f"HF state dict has no {key!r}; is it a T5 "
                        "checkpoint matching the config?")
    return _np(sd[key])

  def attn(prefix: str) -> dict[str, Any]:
    out = {}
    for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
      w = get(f"{prefix}.{theirs}.weight")  # [inner, emb]
      out[ours] = {"kernel": w.T.reshape(-1, h, d)}
    out["out"] = {"kernel": get(f"{prefix}.o.weight").T.reshape(h, d, -1)}
    return out

  def mlp(prefix: str) -> dict[str, Any]:
    out = {}
    acts = config.mlp_activations
    if len(acts) == 1:
      out["wi"] = {"kernel": get(f"{prefix}.wi.weight").T}
    else:
      for i in range(len(acts)):
        out[f"wi_{i}"] = {"kernel": get(f"{prefix}.wi_{i}.weight").T}
    out["wo"] = {"kernel": get(f"{prefix}.wo.weight").T}
    return out

  def norm(key: str) -> dict[str, Any]:
    return {"scale": get(key)}

  params: dict[str, Any] = {
      "token_embedder": {"embedding": get("shared.weight")}}
  for i in range(config.num_encoder_layers):
    p = f"encoder.block.{i}.layer"
    layer = {"attention": attn(f"{p}.0.SelfAttention"),
             "pre_attention_norm": norm(f"{p}.0.layer_norm.weight"),
             "mlp": mlp(f"{p}.1.DenseReluDense"),
             "pre_mlp_norm": norm(f"{p}.1.layer_norm.weight")}
    if i == 0:
      layer["relpos_bias"] = {"rel_embedding": get(
          f"{p}.0.SelfAttention.relative_attention_bias.weight").T}
    params[f"encoder_{i}"] = layer
  params["encoder_norm"] = norm("encoder.final_layer_norm.weight")
  for i in range(config.num_decoder_layers):
    p = f"decoder.block.{i}.layer"
    layer = {"self_attention": attn(f"{p}.0.SelfAttention"),
             "pre_self_attention_norm": norm(f"{p}.0.layer_norm.weight"),
             "encoder_decoder_attention": attn(f"{p}.1.EncDecAttention"),
             "pre_cross_attention_norm": norm(f"{p}.1.layer_norm.weight"),
             "mlp": mlp(f"{p}.2.DenseReluDense"),
             "pre_mlp_norm": norm(f"{p}.2.layer_norm.weight")}
    if i == 0:
      layer["relpos_bias"] = {"rel_embedding": get(
          f"{p}.0.SelfAttention.relative_attention_bias.weight").T}
    params[f"decoder_{i}"] = layer
  params["decoder_norm"] = norm("decoder.final_layer_norm.weight")
  if not config.logits_via_embedding:
    params["logits_dense"] = {"kernel": get("lm_head.weight").T}
  return params


def hf_state_dict_from_params(params: Mapping[str, Any],
                              config: TransformerConfig
                              ) -> dict[str, np.ndarray]:
  """Inverse of `params_from_hf_state_dict` (numpy arrays, float32).

  Args:
    params: unboxed `Transformer` params.
    config: its config.

  Returns:
    An HF-style state dict (load with `torch.from_numpy` per entry).
  """
  flat = _flatten(params)
  out: dict[str, np.ndarray] = {}
  hf_of = _hf_names(config)
  for ours, value in flat.items():
    theirs, transform = hf_of[ours]
    out[theirs] = np.ascontiguousarray(transform(np.asarray(value)))
  out["encoder.embed_tokens.weight"] = out["shared.weight"]
  out["decoder.embed_tokens.weight"] = out["shared.weight"]
  if config.logits_via_embedding:
    out["lm_head.weight"] = out["shared.weight"]
  return out


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(_flatten(v, key))
    else:
      out[key] = v
  return out


def _hf_names(config: TransformerConfig) -> dict[str, Any]:
  """recjax flat param name -> (HF name, array transform)."""
  e = config.emb_dim
  inner = config.inner_dim
  names: dict[str, Any] = {
      "token_embedder/embedding": ("shared.weight", lambda x: x),
      "encoder_norm/scale": ("encoder.final_layer_norm.weight", lambda x: x),
      "decoder_norm/scale": ("decoder.final_layer_norm.weight", lambda x: x),
      "logits_dense/kernel": ("lm_head.weight", lambda x: x.T)}
  qkv = lambda x: x.reshape(e, inner).T
  out = lambda x: x.reshape(inner, e).T
  for stack, n, blocks in (("encoder", config.num_encoder_layers,
                            (("attention", "0.SelfAttention"),)),
                           ("decoder", config.num_decoder_layers,
                            (("self_attention", "0.SelfAttention"),
                             ("encoder_decoder_attention",
                              "1.EncDecAttention")))):
    mlp_idx = len(blocks)
    norms = ({"pre_attention_norm": 0, "pre_mlp_norm": 1} if stack ==
             "encoder" else {"pre_self_attention_norm": 0,
                             "pre_cross_attention_norm": 1,
                             "pre_mlp_norm": 2})
    for i in range(n):
      ours_p, hf_p = f"{stack}_{i}", f"{stack}.block.{i}.layer"
      for ours_b, hf_b in blocks:
        for ours_w, hf_w in (("query", "q"), ("key", "k"), ("value", "v")):
          names[f"{ours_p}/{ours_b}/{ours_w}/kernel"] = (
              f"{hf_p}.{hf_b}.{hf_w}.weight", qkv)
        names[f"{ours_p}/{ours_b}/out/kernel"] = (f"{hf_p}.{hf_b}.o.weight",
                                                  out)
      names[f"{ours_p}/relpos_bias/rel_embedding"] = (
          f"{hf_p}.0.SelfAttention.relative_attention_bias.weight",
          lambda x: x.T)
      for ours_n, idx in norms.items():
        names[f"{ours_p}/{ours_n}/scale"] = (
            f"{hf_p}.{idx}.layer_norm.weight", lambda x: x)
      for w in ("wi", "wi_0", "wi_1", "wo"):
        names[f"{ours_p}/mlp/{w}/kernel"] = (
            f"{hf_p}.{mlp_idx}.DenseReluDense.{w}.weight", lambda x: x.T)
  return names

