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
from recjax.tokens import EOS_ID
from recjax.tokens import PAD_ID
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


ALIGNMENT_POOLINGS = ("mean", "max")


def masked_pool(x: Array, mask: Array, pooling: str = "mean") -> Array:
  """Pools `[batch, length, dim]` activations over the positions in `mask`.

  Args:
    x: activations `[batch, length, dim]`.
    mask: bool `[batch, length]`, True on the positions to pool.
    pooling: "mean" or "max" (see `ALIGNMENT_POOLINGS`).

  Returns:
    float32 `[batch, dim]`; rows without a masked-in position are zero.
  """
  x = x.astype(jnp.float32)
  m = mask[..., None]
  if pooling == "mean":
    count = jnp.maximum(jnp.sum(m.astype(jnp.float32), axis=1), 1.0)
    return jnp.sum(jnp.where(m, x, 0.0), axis=1) / count
  if pooling == "max":
    low = jnp.finfo(jnp.float32).min
    pooled = jnp.max(jnp.where(m, x, low), axis=1)
    return jnp.where(jnp.any(m, axis=1), pooled, 0.0)
  raise ConfigError(f"pooling must be one of {ALIGNMENT_POOLINGS}, got "
                    f"{pooling!r}.")


def in_batch_infonce(queries: Array, keys: Array, *, temperature: float,
                     valid: Array | None = None,
                     same_key: Array | None = None) -> Array:
  """Symmetric in-batch InfoNCE between L2-normalised query and key rows.

  Row `i` of `queries` and row `i` of `keys` are a positive pair; the other
  valid rows of the batch are negatives. With `s_ij = cos(q_i, k_j) /
  temperature` the loss of pair `i` is the mean of the query-to-key term
  `logsumexp_j s_ij - s_ii` and the key-to-query term `logsumexp_j s_ji -
  s_ii` (CLIP-style). Pairs `(i, j)`, `j != i`, with `same_key[i, j]` (the
  same target item in two examples) are dropped from both softmaxes, so
  duplicates are not pushed apart.

  Args:
    queries: `[batch, dim]` (e.g. pooled histories).
    keys: `[batch, dim]` (e.g. pooled target items).
    temperature: softmax temperature (> 0) on the cosine similarities.
    valid: optional bool `[batch]`; invalid rows (padding examples) are
      neither anchors nor negatives.
    same_key: optional bool `[batch, batch]`, symmetric, True where examples
      `i` and `j` have the same key.

  Returns:
    The float32 loss averaged over valid rows (0 when there are none).
  """
  def normalize(x: Array) -> Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), -1, keepdims=True) +
                             1e-12)

  batch = queries.shape[0]
  sim = normalize(queries) @ normalize(keys).T / temperature
  eye = jnp.eye(batch, dtype=bool)
  valid = (jnp.ones((batch,), bool) if valid is None
           else jnp.asarray(valid, bool))
  allowed = valid[:, None] & valid[None, :]
  if same_key is not None:
    allowed = allowed & (eye | ~jnp.asarray(same_key, bool))
  # A finite fill keeps rows with nothing allowed free of NaNs; `valid`
  # drops them below.
  masked = jnp.where(allowed, sim, -1e9)
  positive = jnp.diagonal(sim)
  q_to_k = jax.nn.logsumexp(masked, axis=1) - positive
  k_to_q = jax.nn.logsumexp(masked, axis=0) - positive
  per_row = jnp.where(valid, 0.5 * (q_to_k + k_to_q), 0.0)
  count = jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)
  return jnp.sum(per_row) / count


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
    alignment_weight: weight of the CALRec-style contrastive alignment loss
      (0 = off).
    alignment_temperature: InfoNCE temperature of the alignment loss.
    alignment_pooling: pooling of encoder outputs for the alignment loss.
  """

  FEATURE_CONVERTER_CLS = _LazySeqioAttr("EncDecFeatureConverter")

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
