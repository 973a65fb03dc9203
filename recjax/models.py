"""Models: the T5X model contract and the encoder-decoder recommender.

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

import abc
import importlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax import decoding
from recjax.errors import ConfigError
from recjax.network import Transformer
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any


class _LazySeqioAttr:
  """Class attribute resolving to `seqio.<name>` on access (None without)."""

  def __init__(self, name: str):
    self.name = name

  def __get__(self, obj: Any, objtype: type | None = None) -> Any:
    try:
      seqio = importlib.import_module("seqio")
    except ImportError:
      return None
    return getattr(seqio, self.name)


def cross_entropy_loss(logits: Array, targets: Array, weights: Array, *,
                       label_smoothing: float = 0.0, z_loss: float = 0.0,
                       temperature: float = 1.0
                       ) -> tuple[Array, dict[str, Array]]:
  """Token-level softmax cross-entropy, normalised by the target tokens.

  `logits / temperature` go through the softmax (LETTER's temperature-scaled
  generation loss; 1.0 is plain cross-entropy). With label smoothing `eps`
  the target distribution puts `1 - eps` on the target and spreads `eps`
  over the other `vocab - 1` tokens; the loss has that distribution's
  entropy subtracted, so a perfect prediction costs 0. `z_loss` adds
  `z_loss * logsumexp(logits)^2` (PaLM / T5X) to keep the normaliser near 0.

  The total is `sum(weights * token_loss) / sum(weights)`: the mean over the
  target tokens of the batch (the number of non-zero loss weights when
  weights are 0/1), so it does not depend on padding or batch size.

  Args:
    logits: float `[batch, length, vocab]`.
    targets: int `[batch, length]`.
    weights: float `[batch, length]` loss weights.
    label_smoothing: `eps` in [0, 1).
    z_loss: z-loss coefficient.
    temperature: softmax temperature (> 0).

  Returns:
    `(loss, metrics)`; metrics hold the summed `cross_ent_loss`, `z_loss`,
    `accuracy` (correct weighted tokens) and `num_tokens` (sum of weights),
    plus the normalised `loss`.
  """
  vocab = logits.shape[-1]
  logits = logits.astype(jnp.float32) / temperature
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_p = logits - log_z[..., None]
  target_lp = jnp.take_along_axis(log_p, targets[..., None].astype(jnp.int32),
                                  axis=-1)[..., 0]
  if label_smoothing:
    conf = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    entropy = -(conf * np.log(conf) + (vocab - 1) * low * np.log(low))
    xent = -(conf - low) * target_lp - low * jnp.sum(log_p, axis=-1)
    xent = xent - entropy
  else:
    xent = -target_lp
  zl = z_loss * jnp.square(log_z)
  weights = weights.astype(jnp.float32)
  num_tokens = jnp.sum(weights)
  denom = jnp.maximum(num_tokens, 1e-8)
  xent_sum = jnp.sum(xent * weights)
  z_sum = jnp.sum(zl * weights)
  loss = (xent_sum + z_sum) / denom
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  metrics = {"loss": loss, "cross_ent_loss": xent_sum, "z_loss": z_sum,
             "accuracy": jnp.sum(correct * weights), "num_tokens": num_tokens}
  return loss, metrics


class BaseModel(abc.ABC):
  """The T5X model contract (see DESIGN.md, "Contracts").

  Subclasses implement the four methods; `FEATURE_CONVERTER_CLS` names the
  SeqIO feature converter that produces their batches.
  """

  FEATURE_CONVERTER_CLS: Any = None

  @abc.abstractmethod
  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Returns `(loss, metrics)` for a training batch."""

  @abc.abstractmethod
  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None,
                             **decode_kwargs: Any
                             ) -> tuple[Array, dict[str, Array]]:
    """Returns `(predictions, aux)` for an inference batch."""

  @abc.abstractmethod
  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Returns the log-likelihood of each example's targets, `[batch]`."""

  @abc.abstractmethod
  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Returns freshly initialised variables (`{"params": ...}`)."""

  def predict_batch(self, params: PyTree, batch: Batch,
                    rng: Array | None = None, **decode_kwargs: Any) -> Array:
    """`predict_batch_with_aux` without the aux dict."""
    return self.predict_batch_with_aux(params, batch, rng,
                                       **decode_kwargs)[0]


class EncoderDecoderModel(BaseModel):
  """Generative retrieval with an encoder-decoder over semantic IDs.

  Attributes:
    module: the network (`recjax.network.Transformer`).
    layout: the token layout of item IDs.
    label_smoothing: training label smoothing.
    z_loss: training z-loss coefficient.
    loss_temperature: softmax temperature of the training loss (LETTER).
  """

  FEATURE_CONVERTER_CLS = _LazySeqioAttr("EncDecFeatureConverter")

  def __init__(self, module: Transformer,
               codebook_sizes: Sequence[int] | None = None,
               num_user_buckets: int = 0,
               layout: SemanticIdLayout | None = None,
               label_smoothing: float = 0.0, z_loss: float = 0.0,
               loss_temperature: float = 1.0):
    """Builds the model.

    Args:
      module: the network.
      codebook_sizes: per-level codebook sizes (or pass `layout`).
      num_user_buckets: user-hash tokens of the layout.
      layout: the token layout (overrides the two arguments above).
      label_smoothing: in [0, 1).
      z_loss: >= 0.
      loss_temperature: > 0.

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
    self.module = module
    self.layout = layout
    self.label_smoothing = label_smoothing
    self.z_loss = z_loss
    self.loss_temperature = loss_temperature

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
    """Cross-entropy of the target ID tokens (see `cross_entropy_loss`).

    Args:
      params: the network parameters.
      batch: `EncDecFeatureConverter` features.
      dropout_rng: enables dropout when given. On CPU, a key with
        `impl="unsafe_rbg"` (or "rbg") compiles much faster than the default
        threefry key and draws equally good dropout masks.

    Returns:
      `(loss, metrics)`: the loss is the mean over target tokens
      (`decoder_loss_weights`), metrics as in `cross_entropy_loss`.
    """
    logits = self._logits(params, batch, dropout_rng)
    targets = jnp.asarray(batch["decoder_target_tokens"])
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else jnp.asarray(weights)
    return cross_entropy_loss(
        logits, targets, weights, label_smoothing=self.label_smoothing,
        z_loss=self.z_loss, temperature=self.loss_temperature)

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
