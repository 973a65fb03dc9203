"""The TIGER family: generative retrieval with a T5 encoder-decoder.

TIGER (Rajput et al., NeurIPS'23, "Recommender Systems with Generative
Retrieval") generates the semantic ID of the next item token by token; the
recipes of this family add LETTER's tokenizer (a semantic-ID input, see
`recjax.quantizers.letter`), its temperature-scaled loss and CALRec's
contrastive alignment (`alignment_weight`). The network
(`recjax.network.Transformer`), the constrained beam search
(`recjax.decoding`) and the trie (`recjax.trie`) are shared modules, not part
of this family.

A model wraps a `flax.linen` network with what a trainer and an inference
loop need: a loss, a decoder, a scorer and parameter initialisation. Batches
are dicts of int32 numpy / jax arrays in the layout of SeqIO's
`EncDecFeatureConverter`:

  encoder_input_tokens   [batch, enc_len]   history (and user) tokens, PAD=0
  decoder_input_tokens   [batch, dec_len]   targets shifted right, BOS=PAD=0
  decoder_target_tokens  [batch, dec_len]   the target item's ID tokens
  decoder_loss_weights   [batch, dec_len]   1 on target tokens, 0 on padding

No TensorFlow or SeqIO is imported; `FEATURE_CONVERTER_CLS` resolves to the
SeqIO class only when it is read and SeqIO is importable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax import decoding
from recjax import network
from recjax.errors import ConfigError
from recjax.models.base import BaseModel
from recjax.models.base import LazySeqioAttr
from recjax.models.losses import ALIGNMENT_POOLINGS
from recjax.models.losses import cross_entropy_loss
from recjax.models.losses import in_batch_infonce
from recjax.models.losses import masked_pool
from recjax.network import Transformer
from recjax.tokens import EOS_ID
from recjax.tokens import PAD_ID
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any


def _encode_decode_and_items(module: Transformer, encoder_input_tokens: Array,
                             decoder_input_tokens: Array,
                             decoder_target_tokens: Array, item_tokens: Array,
                             enable_dropout: bool
                             ) -> tuple[Array, Array, Array]:
  """The teacher-forced pass plus the shared encoder on the target IDs.

  Used as `module.apply(..., method=_encode_decode_and_items)`: the history
  is encoded once and that output feeds both the decoder and the alignment
  loss; the encoder then runs on the target item's tokens. The generation
  pass draws its dropout masks in the same order as `Transformer.__call__`.

  Args:
    module: the bound network.
    encoder_input_tokens: `[batch, enc_length]`.
    decoder_input_tokens: `[batch, dec_length]`.
    decoder_target_tokens: `[batch, dec_length]`.
    item_tokens: `[batch, item_length]`, the target IDs, PAD elsewhere.
    enable_dropout: training mode.

  Returns:
    `(logits, encoded_history, encoded_items)`.
  """
  encoded = module.encode(encoder_input_tokens, enable_dropout=enable_dropout)
  logits = module.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                         decoder_target_tokens, enable_dropout=enable_dropout)
  items = module.encode(item_tokens, enable_dropout=enable_dropout)
  return logits, encoded, items


class EncoderDecoderModel(BaseModel):
  """Generative retrieval with an encoder-decoder over semantic IDs.

  Attributes:
    module: the network (`recjax.network.Transformer`).
    layout: the token layout of item IDs.
    label_smoothing: training label smoothing.
    z_loss: training z-loss coefficient.
    loss_temperature: softmax temperature of the training loss (LETTER).
    alignment_weight: weight of the CALRec-style contrastive alignment loss
      (0 = off).
    alignment_temperature: InfoNCE temperature of the alignment loss.
    alignment_pooling: pooling of encoder outputs for the alignment loss.
  """

  FEATURE_CONVERTER_CLS = LazySeqioAttr("EncDecFeatureConverter")

  def __init__(self, module: Transformer,
               codebook_sizes: Sequence[int] | None = None,
               num_user_buckets: int = 0,
               layout: SemanticIdLayout | None = None,
               label_smoothing: float = 0.0, z_loss: float = 0.0,
               loss_temperature: float = 1.0, alignment_weight: float = 0.0,
               alignment_temperature: float = 0.07,
               alignment_pooling: str = "mean"):
    """Builds the model.

    Args:
      module: the network.
      codebook_sizes: per-level codebook sizes (or pass `layout`).
      num_user_buckets: user-hash tokens of the layout.
      layout: the token layout (overrides the two arguments above).
      label_smoothing: in [0, 1).
      z_loss: >= 0.
      loss_temperature: > 0.
      alignment_weight: >= 0; > 0 adds `alignment_weight` times the
        contrastive alignment loss of pooled history and pooled target item
        (CALRec, see `loss_fn`).
      alignment_temperature: > 0, divides cosine similarities; 0.07 as in
        CLIP's initial value, MoCo and VQ-Rec.
      alignment_pooling: "mean" or "max" over non-PAD encoder positions.

    Raises:
      ConfigError: for an inconsistent vocabulary or bad loss settings.
    """
    if layout is None:
      if codebook_sizes is None:
        raise ConfigError("EncoderDecoderModel needs codebook_sizes or a "
                          "SemanticIdLayout.")
      layout = SemanticIdLayout(tuple(codebook_sizes), num_user_buckets)
    if module.config.vocab_size < layout.vocab_size:
      raise ConfigError(
          f"TransformerConfig.vocab_size={module.config.vocab_size} is "
          f"smaller than the token layout's vocab_size={layout.vocab_size} "
          f"(codebook_sizes={layout.codebook_sizes}, num_user_buckets="
          f"{layout.num_user_buckets}); set vocab_size >= "
          f"{layout.vocab_size}.")
    if not 0.0 <= label_smoothing < 1.0:
      raise ConfigError(f"label_smoothing must be in [0, 1), got "
                        f"{label_smoothing}.")
    if z_loss < 0:
      raise ConfigError(f"z_loss must be >= 0, got {z_loss}.")
    if not loss_temperature > 0:
      raise ConfigError(f"loss_temperature must be > 0, got "
                        f"{loss_temperature}.")
    if not alignment_weight >= 0:
      raise ConfigError(f"alignment_weight must be >= 0 (0 turns the "
                        f"alignment loss off), got {alignment_weight}.")
    if not alignment_temperature > 0:
      raise ConfigError(f"alignment_temperature must be > 0, got "
                        f"{alignment_temperature}.")
    if alignment_pooling not in ALIGNMENT_POOLINGS:
      raise ConfigError(f"alignment_pooling must be one of "
                        f"{ALIGNMENT_POOLINGS}, got {alignment_pooling!r}.")
    self.module = module
    self.layout = layout
    self.label_smoothing = label_smoothing
    self.z_loss = z_loss
    self.loss_temperature = loss_temperature
    self.alignment_weight = float(alignment_weight)
    self.alignment_temperature = float(alignment_temperature)
    self.alignment_pooling = alignment_pooling

  # -- initialisation --------------------------------------------------------

  def _dummy_inputs(self, input_shapes: Mapping[str, Sequence[int]],
                    input_types: Mapping[str, Any] | None) -> list[Array]:
    types = input_types or {}
    out = []
    for name in ("encoder_input_tokens", "decoder_input_tokens"):
      if name not in input_shapes:
        raise ConfigError(f"input_shapes needs {name!r}, got "
                          f"{sorted(input_shapes)}.")
      out.append(jnp.ones(tuple(input_shapes[name]),
                          types.get(name, jnp.int32)))
    return out

  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Initialises the network.

    Args:
      rng: PRNG key.
      input_shapes: at least `encoder_input_tokens` and
        `decoder_input_tokens` shapes.
      input_types: optional dtypes by feature.

    Returns:
      `{"params": ...}` with plain arrays (logical axis names: see
      `get_logical_axes`).
    """
    enc, dec = self._dummy_inputs(input_shapes, input_types)
    variables = jax.jit(self.module.init)({"params": rng}, enc, dec)
    return nn.meta.unbox(variables)

  def get_logical_axes(self, input_shapes: Mapping[str, Sequence[int]],
                       input_types: Mapping[str, Any] | None = None
                       ) -> PyTree:
    """Logical axis names (`PartitionSpec`s) of the variables, no compute."""
    enc, dec = self._dummy_inputs(input_shapes, input_types)
    abstract = jax.eval_shape(
        lambda: self.module.init({"params": jax.random.key(0)}, enc, dec))
    return nn.get_partition_spec(abstract)

  # -- training --------------------------------------------------------------

  def _logits(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> Array:
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    return self.module.apply(
        {"params": params}, jnp.asarray(batch["encoder_input_tokens"]),
        jnp.asarray(batch["decoder_input_tokens"]),
        jnp.asarray(batch["decoder_target_tokens"]),
        enable_dropout=dropout_rng is not None, rngs=rngs)

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Cross-entropy of the target ID tokens, plus CALRec alignment.

    With `alignment_weight > 0` (CALRec) the history representation is the
    pooled encoder output of `encoder_input_tokens` (the activations, with
    their dropout, that the decoder attends to: the history is encoded
    once); the target representation is the shared encoder run on the
    target item's ID tokens alone (`decoder_target_tokens` where the loss
    weight is > 0, EOS dropped), pooled the same way. Both are
    L2-normalised and aligned by symmetric in-batch InfoNCE
    (`in_batch_infonce`); examples with the same target ID are not each
    other's negatives, and examples without target or history tokens are
    left out. With weight 0 nothing of this is computed.

    Args:
      params: the network parameters.
      batch: `EncDecFeatureConverter` features.
      dropout_rng: enables dropout when given (the network draws one seed
        per dropout call from it and hashes element positions, so the key
        implementation hardly affects step time; threefry keys compile a
        little slower than `impl="unsafe_rbg"` ones on CPU).

    Returns:
      `(loss, metrics)`: the loss is the mean over target tokens
      (`decoder_loss_weights`) of the cross-entropy, plus `alignment_weight
      * alignment_loss`; metrics as in `cross_entropy_loss` with `loss` the
      total, and `alignment_loss` when the weight is > 0.
    """
    if self.alignment_weight > 0:
      return self._loss_with_alignment(params, batch, dropout_rng)
    logits = self._logits(params, batch, dropout_rng)
    targets = jnp.asarray(batch["decoder_target_tokens"])
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else jnp.asarray(weights)
    return cross_entropy_loss(
        logits, targets, weights, label_smoothing=self.label_smoothing,
        z_loss=self.z_loss, temperature=self.loss_temperature)

  def _loss_with_alignment(self, params: PyTree, batch: Batch,
                           dropout_rng: Array | None
                           ) -> tuple[Array, dict[str, Array]]:
    """`loss_fn` with the alignment term (see there)."""
    enc = jnp.asarray(batch["encoder_input_tokens"])
    targets = jnp.asarray(batch["decoder_target_tokens"])
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else jnp.asarray(weights)
    items = jnp.where((weights > 0) & (targets != EOS_ID), targets,
                      PAD_ID).astype(jnp.int32)
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    logits, encoded, encoded_items = self.module.apply(
        {"params": params}, enc, jnp.asarray(batch["decoder_input_tokens"]),
        targets, items, dropout_rng is not None, rngs=rngs,
        method=_encode_decode_and_items)
    loss, metrics = cross_entropy_loss(
        logits, targets, weights, label_smoothing=self.label_smoothing,
        z_loss=self.z_loss, temperature=self.loss_temperature)
    history_mask = enc != PAD_ID
    item_mask = items != PAD_ID
    alignment = in_batch_infonce(
        masked_pool(encoded, history_mask, self.alignment_pooling),
        masked_pool(encoded_items, item_mask, self.alignment_pooling),
        temperature=self.alignment_temperature,
        valid=jnp.any(history_mask, -1) & jnp.any(item_mask, -1),
        same_key=jnp.all(items[:, None] == items[None], axis=-1))
    total = loss + self.alignment_weight * alignment
    metrics = dict(metrics, loss=total, alignment_loss=alignment)
    return total, metrics

  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Sum of target-token log-probabilities (temperature 1) per example.

    Args:
      params: the network parameters.
      batch: `EncDecFeatureConverter` features.

    Returns:
      float32 `[batch]`, weighted by `decoder_loss_weights` (or non-PAD
      targets when absent).
    """
    logits = self._logits(params, batch, None)
    targets = jnp.asarray(batch["decoder_target_tokens"])
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else jnp.asarray(weights)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    token_lp = jnp.take_along_axis(log_p, targets[..., None].astype(
        jnp.int32), axis=-1)[..., 0]
    return jnp.sum(token_lp * weights.astype(jnp.float32), axis=-1)

  # -- inference ------------------------------------------------------------

  def decode_items(self, params: PyTree, encoder_input_tokens: Array, *,
                   num_decodes: int, trie: ItemTrie | None = None,
                   constrain: bool = True,
                   excluded_items: Array | None = None,
                   length_penalty: float = 0.0, decode_eos: bool = False,
                   sample: bool = False, rng: Array | None = None,
                   temperature: float = 1.0, top_k: int = 0
                   ) -> decoding.DecodeResult:
    """Encodes once per user, then beam-searches item IDs.

    See `recjax.decoding.beam_search` for the arguments.

    Returns:
      A `DecodeResult`.
    """
    decoding.check_decode_args(
        self.layout, num_decodes, trie,
        None if excluded_items is None else jnp.asarray(excluded_items),
        temperature, top_k)
    module = self.module
    enc = jnp.asarray(encoder_input_tokens, jnp.int32)
    variables = {"params": params}
    encoded = module.apply(variables, enc, method=module.encode)
    bos = jnp.zeros((enc.shape[0], 1), jnp.int32)
    max_len = self.layout.num_levels + int(decode_eos)
    logits, state = module.apply(
        variables, encoded, enc, bos, decode=True, decode_step=0,
        max_decode_length=max_len, method=module.decode,
        mutable=["cache", "cross_kv"])
    cross_kv = state["cross_kv"]

    def step_fn(tokens: Array, cache: PyTree, step: int
                ) -> tuple[Array, PyTree]:
      out, new = module.apply(
          {"params": params, "cache": cache, "cross_kv": cross_kv}, None,
          enc, tokens, decode=True, decode_step=step, method=module.decode,
          mutable=["cache"])
      return out, new["cache"]

    return decoding.beam_search(
        logits[:, 0], state["cache"], step_fn, layout=self.layout,
        num_beams=num_decodes, trie=trie, constrain=constrain,
        excluded_items=excluded_items, length_penalty=length_penalty,
        decode_eos=decode_eos, sample=sample, rng=rng,
        temperature=temperature, top_k=top_k)

  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None, *,
                             num_decodes: int = 20,
                             trie: ItemTrie | None = None,
                             constrain: bool = True,
                             excluded_items: Array | None = None,
                             length_penalty: float = 0.0,
                             decode_eos: bool = False, sample: bool = False,
                             temperature: float = 1.0, top_k: int = 0
                             ) -> tuple[Array, dict[str, Array]]:
    """Top-`num_decodes` recommendations per user, best first.

    Args:
      params: the network parameters.
      batch: needs `encoder_input_tokens`; `excluded_items` (int `[batch,
        m]`, -1 padded) is used when the keyword is not given.
      rng: PRNG key (sampling only).
      num_decodes: beams = results per user.
      trie: the catalog constraint (`ItemTrie`); None decodes freely.
      constrain: see `recjax.decoding.beam_search`.
      excluded_items: items never to recommend to each user.
      length_penalty: brevity-penalty alpha.
      decode_eos: score EOS after the ID.
      sample: stochastic beam search (needs `rng`).
      temperature: sampling temperature.
      top_k: sampling top-k (0 = off).

    Returns:
      `(tokens, aux)`: `tokens` int32 `[batch, num_decodes, num_levels]`;
      aux has `items` (int32, -1 = invalid), `scores`, `log_probs` (float32,
      -inf = invalid), `valid` (bool) and `tokens`, all `[batch,
      num_decodes, ...]` and best first.
    """
    if excluded_items is None and "excluded_items" in batch:
      excluded_items = jnp.asarray(batch["excluded_items"])
    result = self.decode_items(
        params, batch["encoder_input_tokens"], num_decodes=num_decodes,
        trie=trie, constrain=constrain, excluded_items=excluded_items,
        length_penalty=length_penalty, decode_eos=decode_eos, sample=sample,
        rng=rng, temperature=temperature, top_k=top_k)
    aux = {"items": result.items, "scores": result.scores,
           "log_probs": result.log_probs, "valid": result.valid,
           "tokens": result.tokens}
    return result.tokens, aux


def make_encoder_decoder(layout: SemanticIdLayout,
                         config: network.TransformerConfig,
                         label_smoothing: float = 0.0, z_loss: float = 0.0,
                         loss_temperature: float = 1.0,
                         alignment_weight: float = 0.0,
                         alignment_temperature: float = 0.07,
                         alignment_pooling: str = "mean"
                         ) -> EncoderDecoderModel:
  """An encoder-decoder over `layout` (gin: `MODEL_FN`).

  The network's `vocab_size` is set to the layout's: the vocabulary, not the
  gin file, decides it. `alignment_*` set the CALRec contrastive alignment
  loss (off at weight 0; see `EncoderDecoderModel`).

  Args:
    layout: the token layout of the run's semantic IDs.
    config: the network's hyper-parameters.
    label_smoothing: see `EncoderDecoderModel`.
    z_loss: see `EncoderDecoderModel`.
    loss_temperature: see `EncoderDecoderModel`.
    alignment_weight: see `EncoderDecoderModel`.
    alignment_temperature: see `EncoderDecoderModel`.
    alignment_pooling: see `EncoderDecoderModel`.

  Returns:
    The model.
  """
  config = dataclasses.replace(config, vocab_size=layout.vocab_size)
  return EncoderDecoderModel(
      network.Transformer(config), layout=layout,
      label_smoothing=label_smoothing, z_loss=z_loss,
      loss_temperature=loss_temperature, alignment_weight=alignment_weight,
      alignment_temperature=alignment_temperature,
      alignment_pooling=alignment_pooling)
