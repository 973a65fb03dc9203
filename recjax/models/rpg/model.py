"""RPG (Hou et al., KDD'25): long semantic IDs predicted in parallel.

Every item has D codes (OPQ digits of its text embedding, D = 32 by
default, M = 256 codes per digit, no collision level: items may share a
code). A history of L items is L positions:

  x_t = mean_d E[d, code_d(item_t)] + P[position]      (CodeEmbedding)
  h   = CausalTransformer(x)                           (pre-LN, GPT-2 style)
  s_d = h + SiLU(W_d h + b_d)                          (one head per digit,
                                                        W_d zero-initialised)
  log p_d(m | h) = log_softmax_m(cos(s_d, E[d, m]) / tau)

The output layer is the input table `E` (tied). Training: at every position
with a next item, the mean over digits of the cross-entropy of that item's
code at each digit. An item's score is the mean of its digits' log-probs:

  score(i | h) = (1 / D) sum_d log p_d(code_d(i) | h)

which the exact path computes for the whole catalog with D gathers
(`item_scores`), and the graph path (`recjax.models.rpg.graph`) for the
items a beam walk over a code-space neighbour graph visits. Both return
catalog items only: a code tuple that is no item is never produced.

Inputs follow `recjax.models.base` (right-aligned, -1 padded). No
TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.datasets import CanonicalDataset
from recjax.errors import ConfigError
from recjax.models.base import ItemModel
from recjax.models.layers import ACTIVATIONS
from recjax.models.layers import Block
from recjax.models.layers import CodeEmbedding
from recjax.models.layers import causal_bias
from recjax.models.layers import check_config_fields
from recjax.models.layers import init_normal
from recjax.models.layers import layer_norm
from recjax.semantic_ids import check_digits
from recjax.semantic_ids import load_item_codes as load_stage_codes

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any


@dataclasses.dataclass(frozen=True)
class RPGConfig:
  """Hyper-parameters of RPG.

  Attributes:
    num_items: catalog size (set by `make_rpg`).
    num_digits: D, digits per item (set from the codes; a non-zero value
      must match them).
    codebook_size: M, codes per digit (set from the semantic-ID stage).
    hidden_dim: model width (the paper: 448 on Beauty).
    num_layers: Transformer blocks (paper: 2).
    num_heads: attention heads (paper: 4).
    mlp_dim: FFN width (paper: 1024).
    max_length: longest history (paper: 50; recjax's protocol: 20).
    dropout_rate: dropout on the blocks' residual branches (GPT-2's
      `resid_pdrop`; paper: 0).
    embedding_dropout_rate: dropout on the input vectors (paper: 0.5).
    attention_dropout_rate: dropout on the attention weights (paper: 0.5).
    activation: FFN activation.
    layer_norm_epsilon: LayerNorm epsilon.
    init_std: std of the normal initialisation.
    temperature: tau of the cosine logits: 0.07, the official code's
      `config.yaml` and recjax's choice on validation (the paper's Beauty
      command: 0.03, at which recjax's Beauty model does not learn).
    norm: "pre" (GPT-2) or "post" LayerNorm.
    target_fraction: 1.0 (RPG: every position with a next item is a
      target), or, in training, a random subset of the real targets of at
      most this fraction of the `[batch, length]` grid (a CPU economy for
      dense histories: a step costs about targets x D x M x width, and
      neighbouring positions of a history carry similar signal).
  """

  num_items: int = 0
  num_digits: int = 0
  codebook_size: int = 256
  hidden_dim: int = 128
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 512
  max_length: int = 20
  dropout_rate: float = 0.0
  embedding_dropout_rate: float = 0.5
  attention_dropout_rate: float = 0.5
  activation: str = "gelu"
  layer_norm_epsilon: float = 1e-12
  init_std: float = 0.02
  temperature: float = 0.07
  norm: str = "pre"
  target_fraction: float = 1.0

  def __post_init__(self):
    check_config_fields(
        self, positive=("hidden_dim", "num_layers", "num_heads", "mlp_dim",
                        "max_length", "codebook_size"),
        rates=("dropout_rate", "embedding_dropout_rate",
               "attention_dropout_rate"),
        choices={"activation": tuple(sorted(ACTIVATIONS)),
                 "norm": ("pre", "post")})
    if self.temperature <= 0:
      raise ConfigError(f"RPGConfig.temperature must be > 0, got "
                        f"{self.temperature}.")
    if not 0.0 < self.target_fraction <= 1.0:
      raise ConfigError(f"RPGConfig.target_fraction must be in (0, 1], got "
                        f"{self.target_fraction}.")

class RPG(nn.Module):
  """The RPG network: `__call__` encodes, `digit_log_probs` predicts."""

  config: RPGConfig

  def setup(self):
    cfg = self.config
    if cfg.num_digits < 1:
      raise ConfigError("RPGConfig.num_digits must be set (make_rpg fills "
                        "it from the codes).")
    self.codes_embedding = CodeEmbedding(
        cfg.num_digits, cfg.codebook_size, cfg.hidden_dim, cfg.init_std,
        name="code_embedding")
    self.position_embedding = self.param(
        "position_embedding", init_normal(cfg.init_std, ("length", "embed")),
        (cfg.max_length, cfg.hidden_dim), jnp.float32)
    self.blocks = [Block(cfg, name=f"layer_{i}")
                   for i in range(cfg.num_layers)]
    self.final_norm = layer_norm(
        cfg, "final_norm" if cfg.norm == "pre" else "embedding_norm")
    self.dropout = nn.Dropout(cfg.embedding_dropout_rate)
    # One residual head per digit, `x + SiLU(W_d x + b_d)`, W_d = 0 at
    # initialisation (every head starts as the identity).
    zeros = nn.with_logical_partitioning(nn.initializers.zeros,
                                         ("digits", "embed", "mlp"))
    self.head_kernel = self.param(
        "head_kernel", zeros, (cfg.num_digits, cfg.hidden_dim,
                               cfg.hidden_dim), jnp.float32)
    self.head_bias = self.param(
        "head_bias", nn.with_logical_partitioning(
            nn.initializers.zeros, ("digits", "mlp")),
        (cfg.num_digits, cfg.hidden_dim), jnp.float32)

  def __call__(self, input_items: Array, codes: Array,
               enable_dropout: bool = False) -> Array:
    """Hidden states `[batch, length, hidden]` of right-aligned histories.

    Args:
      input_items: int `[batch, length]`, -1 padded.
      codes: int `[num_items, num_digits]`, the catalog's codes.
      enable_dropout: training mode.

    Returns:
      float32 hidden states.
    """
    cfg = self.config
    length = input_items.shape[-1]
    if length > cfg.max_length:
      raise ConfigError(f"input_items has {length} columns, more than "
                        f"RPGConfig.max_length={cfg.max_length}.")
    deterministic = not enable_dropout
    items = jnp.asarray(input_items, jnp.int32)
    valid = items >= 0
    item_codes = jnp.take(jnp.asarray(codes, jnp.int32),
                          jnp.maximum(items, 0), axis=0)
    x = self.codes_embedding(item_codes)
    x = x + self.position_embedding[cfg.max_length - length:][None]
    if cfg.norm == "post":
      x = self.final_norm(x)
    x = self.dropout(x, deterministic=deterministic) * valid[..., None]
    bias = causal_bias(valid)
    for block in self.blocks:
      x = block(x, bias, deterministic) * valid[..., None]
    return self.final_norm(x) if cfg.norm == "pre" else x

  def digit_states(self, hidden: Array) -> Array:
    """Per-digit states `[..., num_digits, hidden]` of the heads."""
    z = jnp.einsum("...h,dhk->...dk", hidden, self.head_kernel)
    return hidden[..., None, :] + jax.nn.silu(z + self.head_bias)

  def digit_log_probs(self, hidden: Array) -> Array:
    """`log p_d(m | h)`, float32 `[..., num_digits, codebook_size]`."""
    states = _l2_normalize(self.digit_states(hidden))
    table = _l2_normalize(self.codes_embedding.table())
    logits = jnp.einsum("...dh,dmh->...dm", states, table)
    return jax.nn.log_softmax(logits / self.config.temperature, axis=-1)

  def digit_major_logits(self, hidden: Array) -> Array:
    """The logits (cosine / tau) of flat states `[K, hidden]`, `[D, K, M]`.

    Laid out digit-major: one `[K, hidden] x [hidden, M]` product per
    digit with the softmax over contiguous rows. On CPU the training loss's
    forward and backward run about 2.8x faster this way than over
    `[K, D, M]`.
    """
    z = jnp.einsum("kh,dhj->dkj", hidden, self.head_kernel)
    states = hidden[None] + jax.nn.silu(z + self.head_bias[:, None])
    # 1 / tau scales the states, 4x fewer values than the logits.
    states = _l2_normalize(states) * (1.0 / self.config.temperature)
    table = _l2_normalize(self.codes_embedding.table())
    return jnp.einsum("dkh,dmh->dkm", states, table)

  def digit_major_log_probs(self, hidden: Array) -> Array:
    """`digit_log_probs` of flat states `[K, hidden]`, as `[D, K, M]`."""
    return jax.nn.log_softmax(self.digit_major_logits(hidden), axis=-1)


@jax.custom_vjp
def code_cross_entropy(logits: Array, codes: Array) -> tuple[Array, Array]:
  """Cross-entropy of each row's code, with the gap to its best code.

  Equal to `-take_along_axis(log_softmax(logits), codes)`, in fewer
  passes over the logits: the forward reads them for the max and the
  log-sum-exp, and the backward writes `softmax - onehot` in one fused
  pass (autodiff of `log_softmax` and the gather would add a scatter into
  zeros and the softmax's own backward). RPG's `[D, K, M]` logits are the
  bulk of its training step.

  Args:
    logits: float32 `[..., M]`.
    codes: int `[...]`, each in `[0, M)`.

  Returns:
    `(nll, gap)`, float32 `[...]`: the cross-entropy, and the best logit
    minus the code's (0 when the code is ranked first; not differentiated).
  """
  return _code_xent_fwd(logits, codes)[0]


def _code_xent_fwd(logits, codes):
  top = jnp.max(logits, axis=-1)
  lse = top + jnp.log(jnp.sum(jnp.exp(logits - top[..., None]), axis=-1))
  picked = jnp.take_along_axis(logits, codes[..., None], axis=-1)[..., 0]
  return (lse - picked, top - picked), (logits, codes, lse)


def _code_xent_bwd(res, cotangents):
  logits, codes, lse = res
  g = cotangents[0]
  onehot = jax.lax.broadcasted_iota(jnp.int32, logits.shape,
                                    logits.ndim - 1) == codes[..., None]
  grad = (jnp.exp(logits - lse[..., None]) - onehot) * g[..., None]
  return grad, None


code_cross_entropy.defvjp(_code_xent_fwd, _code_xent_bwd)


def _l2_normalize(x: Array) -> Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True),
                                       1e-24))


def catalog_scores(log_probs: Array, codes: Array) -> Array:
  """Exact item scores: the mean over digits of each item's log-probs.

  Args:
    log_probs: float `[batch, D, M]`.
    codes: int `[num_items, D]`.

  Returns:
    float32 `[batch, num_items]`.
  """
  codes = jnp.asarray(codes, jnp.int32)
  num_digits = codes.shape[1]

  def add(d, acc):
    row = jax.lax.dynamic_index_in_dim(log_probs, d, axis=1, keepdims=False)
    col = jax.lax.dynamic_index_in_dim(codes, d, axis=1, keepdims=False)
    return acc + jnp.take(row, col, axis=1)

  init = jnp.zeros((log_probs.shape[0], codes.shape[0]), jnp.float32)
  return jax.lax.fori_loop(0, num_digits, add, init) / num_digits


def candidate_scores(log_probs: Array, codes: Array,
                     candidates: Array) -> Array:
  """Scores of some items per row: `[batch, C]` for candidates `[batch, C]`.

  Args:
    log_probs: float `[batch, D, M]`.
    codes: int `[num_items, D]`, any integer type (`graph.compact_codes`:
      uint8 codes make the gather read a quarter of the bytes).
    candidates: int `[batch, C]` item indices (>= 0).

  Returns:
    float32 `[batch, C]`, equal to `catalog_scores` at those items.
  """
  # Gather, then widen: widening the catalog first would copy all of it.
  return code_scores(log_probs, jnp.take(codes, candidates, axis=0))


def code_scores(log_probs: Array, cand_codes: Array) -> Array:
  """Scores of code tuples: `[batch, C]` for codes `[batch, C, D]`.

  Args:
    log_probs: float `[batch, D, M]`.
    cand_codes: int `[batch, C, D]` (any integer type).

  Returns:
    float32 `[batch, C]`, the mean over digits of the codes' log-probs.
  """
  cand_codes = jnp.asarray(cand_codes).astype(jnp.int32)
  b, c, d = cand_codes.shape
  flat = log_probs.reshape(b, -1)
  index = cand_codes + jnp.arange(d) * log_probs.shape[-1]
  picked = jnp.take_along_axis(flat, index.reshape(b, c * d), axis=1)
  return jnp.mean(picked.reshape(b, c, d), axis=-1)


class RPGModel(ItemModel):
  """RPG behind the `ItemModel` contract (exact full-catalog scoring).

  Attributes:
    module: the `RPG` network.
    config: its hyper-parameters.
    codes: int32 `[num_items, num_digits]`, the catalog's codes.
    num_items: catalog size.
    max_length: longest input.
  """

  def __init__(self, config: RPGConfig, codes: np.ndarray):
    """Builds the model over a catalog with `codes`."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != config.num_items:
      raise ConfigError(
          f"codes have shape {codes.shape}; RPG needs [num_items="
          f"{config.num_items}, num_digits].")
    if codes.size and (codes.min() < 0 or
                       codes.max() >= config.codebook_size):
      raise ConfigError(
          f"codes must be in [0, codebook_size={config.codebook_size}); "
          f"got [{codes.min()}, {codes.max()}].")
    self.config = config
    self.codes = codes.astype(np.int32)
    self.module = RPG(config)
    self.num_items = config.num_items
    self.max_length = config.max_length

  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    shape = tuple(input_shapes.get("input_items",
                                   (1, self.config.max_length)))
    return ((jnp.zeros(shape, jnp.int32), jnp.asarray(self.codes)),
            {"enable_dropout": False})

  def hidden_states(self, params: PyTree, input_items: Array,
                    dropout_rng: Array | None = None) -> Array:
    """Hidden states `[batch, length, hidden]` (dropout when `dropout_rng`
    is given)."""
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, jnp.asarray(input_items),
                             jnp.asarray(self.codes),
                             enable_dropout=dropout_rng is not None,
                             rngs=rngs)

  def digit_log_probs(self, params: PyTree, hidden: Array) -> Array:
    """`[..., num_digits, codebook_size]` log-probs of hidden states."""
    return self.module.apply({"params": params}, hidden,
                             method=RPG.digit_log_probs)

  def _target_loss(self, params: PyTree, hidden: Array, targets: Array
                   ) -> tuple[Array, Array]:
    """`(sum of digit-mean cross-entropies, exact hits)` of flat targets."""
    logits = self.module.apply({"params": params}, hidden,
                               method=RPG.digit_major_logits)  # [D, K, M]
    target_codes = jnp.take(jnp.asarray(self.codes),
                            jnp.maximum(targets, 0), axis=0).T  # [D, K]
    nll, gap = code_cross_entropy(logits, target_codes)
    weights = (targets >= 0).astype(jnp.float32)
    xent = jnp.mean(nll, axis=0) * weights
    # A target is hit when each of its codes has the best logit (ties
    # count as hits).
    hits = jnp.all(gap <= 0, axis=0)
    return jnp.sum(xent), jnp.sum(hits * weights)

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Mean over digits of the code cross-entropy, at every target.

    The `[targets, D, M]` logits dominate a step's cost, and short
    histories leave most of a `[batch, length]` grid without a target
    (Amazon: about two thirds). So the real targets are packed into the
    smallest of a quarter, a half or all of the grid that holds them (a
    `lax.switch`; the result is the same in every branch).

    Args:
      params: parameters.
      batch: `input_items` and `target_items` (-1 = no loss).
      dropout_rng: enables dropout when given.

    Returns:
      `(loss, metrics)`: the loss is the mean over targets and digits.
      Metrics `loss`, `cross_ent_loss` (sum over targets of the digit
      mean), `accuracy` (targets whose every digit is predicted first) and
      `num_tokens`.
    """
    sample_rng = None
    if dropout_rng is not None and self.config.target_fraction < 1.0:
      dropout_rng, sample_rng = jax.random.split(dropout_rng)
    hidden = self.hidden_states(params, batch["input_items"], dropout_rng)
    targets = jnp.asarray(batch["target_items"], jnp.int32).reshape(-1)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    if sample_rng is not None:  # A random subset of the real targets.
      cap = max(int(targets.shape[0] * self.config.target_fraction), 1)
      keys = jax.random.uniform(sample_rng, targets.shape)
      _, rows = jax.lax.top_k(jnp.where(targets >= 0, keys, -1.0), cap)
      hidden, targets = hidden[rows], targets[rows]
    real = targets >= 0
    num = jnp.sum(real)
    size = targets.shape[0]
    caps = sorted({c for c in (size // 4, size // 2) if 0 < c < size})

    def packed(cap: int):
      def run(hidden, targets):
        (rows,) = jnp.nonzero(real, size=cap, fill_value=0)
        kept = jnp.arange(cap) < num
        return self._target_loss(params, hidden[rows],
                                 jnp.where(kept, targets[rows], -1))
      return run

    branches = [packed(c) for c in caps] + [
        lambda h, t: self._target_loss(params, h, t)]
    index = jnp.sum(jnp.asarray(caps, jnp.int32) < num) if caps else 0
    xent, hits = jax.lax.switch(index, branches, hidden, targets)
    num = num.astype(jnp.float32)
    loss = xent / jnp.maximum(num, 1.0)
    return loss, {"loss": loss, "cross_ent_loss": xent, "accuracy": hits,
                  "num_tokens": num}

  def last_log_probs(self, params: PyTree, batch: Batch) -> Array:
    """`[batch, num_digits, codebook_size]` at each history's last item."""
    hidden = self.hidden_states(params, batch["input_items"])[:, -1]
    return self.digit_log_probs(params, hidden)

  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Exact catalog scores: mean digit log-prob, `[batch, num_items]`."""
    return catalog_scores(self.last_log_probs(params, batch),
                          jnp.asarray(self.codes))

  def with_decoding(self, decoding: str, params: PyTree,
                    item_counts: np.ndarray | None = None) -> ItemModel:
    """This model ranking exactly, or by beams over its item graph.

    Args:
      decoding: "exact", "graph" (20 beams, 50 edges, 6 steps expanding
        4 beams, 128 popular start items) or "graph:BxExS[xX]".
      params: the trained parameters (the graph is built from their code
        table, for these parameters only).
      item_counts: `[num_items]` training counts: the walk starts at the
        most popular items (None: a fixed random sample).

    Returns:
      This model, or a `serving.GraphDecodedRPG` over it.

    Raises:
      ConfigError: an unknown decoding or a malformed setting.
    """
    if decoding == "exact":
      return self
    from recjax.models.rpg import serving  # pylint: disable=g-import-not-at-top
    return serving.GraphDecodedRPG(self, params,
                                   serving.GraphSetting.parse(decoding),
                                   item_counts)

  def code_table(self, params: PyTree) -> np.ndarray:
    """The code embedding table `[num_digits, codebook_size, hidden]`."""
    return np.asarray(jax.device_get(
        params["code_embedding"]["embedding"]), np.float32)


def make_rpg(dataset: CanonicalDataset,
             item_embeddings: np.ndarray | None = None,
             config: RPGConfig = RPGConfig(),
             codes_dir: str | None = None,
             codes: np.ndarray | None = None) -> RPGModel:
  """RPG over `dataset`'s catalog (gin: `train_items.model_fn`).

  Args:
    dataset: sets `num_items`.
    item_embeddings: ignored (the codes carry the text).
    config: hyper-parameters; `num_items`, `num_digits` and
      `codebook_size` are set from the dataset and the codes.
    codes_dir: a semantic-ID stage directory (OPQ codes, `collisions=
      "none"`), the usual source.
    codes: or the codes themselves, int `[num_items, D]` (tests).

  Returns:
    The model.

  Raises:
    ConfigError: no codes, or codes with another number of digits than a
      `config.num_digits` that was set.
  """
  del item_embeddings
  size = config.codebook_size
  if codes is None:
    if codes_dir is None:
      raise ConfigError(
          "RPG needs item codes: bind make_rpg.codes_dir to a semantic-ID "
          "stage directory (python -m recjax.semantic_ids --method opq "
          "--set collisions=none ...), e.g. CODES_DIR in models/rpg.gin.")
    codes, size = load_stage_codes(codes_dir, dataset)
  codes = check_digits(codes, config.num_digits, "RPGConfig",
                       codes_dir or "the codes")
  return RPGModel(dataclasses.replace(
      config, num_items=dataset.num_items, num_digits=codes.shape[1],
      codebook_size=size), codes)
