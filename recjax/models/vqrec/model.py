"""VQ-Rec (Hou et al., WWW'23): items as codes, transferable across catalogs.

Every item has D discrete codes (OPQ digits of its text embedding, D = 32,
M = 256 codes per digit, fitted on training items, no collision level) and
no ID embedding: its vector is the mean of its codes' embeddings (the
shared `CodeEmbedding` layer), so any item with text is scored, seen in
training or not. A history of L items is encoded by a SASRec-style
post-LN Transformer; the user vector `u` is the last position's state and

  score(i | history) = cos(u, v_i) / tau,      v_i = mean_d E[d, code_d(i)]

Two losses (`VQRecConfig.loss`):

* `"softmax"` (fine-tuning, training from scratch): cross-entropy of the
  next item over the whole catalog;
* `"infonce"` (pre-training on mixed domains): the next item against the
  other rows' next items of the batch (rows with the same next item
  masked) and one code-corrupted hard negative per row (each digit of the
  positive replaced by a random code with probability `corrupt_ratio`).

Transfer (`make_vqrec(pretrained_dir=...)`): the target's own codes, the
pre-trained encoder frozen (`freeze_encoder`), the code table re-assigned
(`recjax.models.vqrec.transfer`) and then fine-tuned. Inputs follow
`recjax.models.base` (right-aligned, -1 padded). No TensorFlow.
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

from recjax.errors import ConfigError
from recjax.models.base import ItemModel
from recjax.models.layers import ACTIVATIONS
from recjax.models.layers import Block
from recjax.models.layers import CodeEmbedding
from recjax.models.layers import causal_bias
from recjax.models.layers import check_config_fields
from recjax.models.layers import init_normal
from recjax.models.layers import layer_norm
from recjax.models.losses import softmax_item_loss
from recjax.models.vqrec import transfer

Array = jax.Array
Batch = Mapping[str, Any]
PyTree = Any

LOSSES = ("softmax", "infonce")
TRAIN_POSITIONS = ("all", "last")
# Parameters a transfer fine-tunes with the encoder frozen (the released
# code also trains the input LayerNorm).
TABLE_PARAMS = ("code_embedding", "embedding_norm")


@dataclasses.dataclass(frozen=True)
class VQRecConfig:
  """Hyper-parameters of VQ-Rec.

  Attributes:
    num_items: catalog size (set by `make_vqrec`).
    num_digits: D (set from the codes; a non-zero value must match them).
    codebook_size: M (set from the semantic-ID stage).
    hidden_dim: model width (paper: 300; the CPU recipe: 128).
    num_layers: Transformer blocks (paper: 2).
    num_heads: attention heads (paper: 2).
    mlp_dim: FFN width (paper: 256).
    max_length: longest history.
    dropout_rate: dropout on the input vectors and the sub-block outputs
      (paper: 0.5).
    attention_dropout_rate: dropout on the attention weights (paper: 0.5).
    activation: FFN activation.
    layer_norm_epsilon: LayerNorm epsilon (paper: 1e-12).
    init_std: std of the normal initialisation (paper: 0.02).
    temperature: tau of the cosine scores (paper: 0.07).
    loss: "softmax" or "infonce" (see the module docstring).
    corrupt_ratio: per-digit replacement probability of the InfoNCE hard
      negative (paper: 0.75).
    train_positions: "last" (the last column of prefix examples, the
      paper's) or "all" (every column with a target).
  """

  num_items: int = 0
  num_digits: int = 0
  codebook_size: int = 256
  hidden_dim: int = 128
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  max_length: int = 20
  dropout_rate: float = 0.5
  attention_dropout_rate: float = 0.5
  activation: str = "gelu"
  layer_norm_epsilon: float = 1e-12
  init_std: float = 0.02
  temperature: float = 0.07
  loss: str = "softmax"
  corrupt_ratio: float = 0.75
  train_positions: str = "last"
  norm: str = dataclasses.field(default="post", init=False)

  def __post_init__(self):
    check_config_fields(
        self, positive=("hidden_dim", "num_layers", "num_heads", "mlp_dim",
                        "max_length", "codebook_size"),
        rates=("dropout_rate", "attention_dropout_rate"),
        choices={"activation": tuple(sorted(ACTIVATIONS)), "loss": LOSSES,
                 "train_positions": TRAIN_POSITIONS})
    if self.temperature <= 0:
      raise ConfigError(f"VQRecConfig.temperature must be > 0, got "
                        f"{self.temperature}.")
    if not 0.0 <= self.corrupt_ratio <= 1.0:
      raise ConfigError(f"VQRecConfig.corrupt_ratio must be in [0, 1], got "
                        f"{self.corrupt_ratio}.")

class VQRec(nn.Module):
  """The VQ-Rec network: `__call__` encodes histories of coded items."""

  config: VQRecConfig

  def setup(self):
    cfg = self.config
    if cfg.num_digits < 1:
      raise ConfigError("VQRecConfig.num_digits must be set (make_vqrec "
                        "fills it from the codes).")
    self.code_embedding = CodeEmbedding(
        cfg.num_digits, cfg.codebook_size, cfg.hidden_dim, cfg.init_std,
        name="code_embedding")
    self.position_embedding = self.param(
        "position_embedding", init_normal(cfg.init_std, ("length", "embed")),
        (cfg.max_length, cfg.hidden_dim), jnp.float32)
    self.blocks = [Block(cfg, name=f"layer_{i}")
                   for i in range(cfg.num_layers)]
    self.embedding_norm = layer_norm(cfg, "embedding_norm")
    self.dropout = nn.Dropout(cfg.dropout_rate)

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
    return self.encode(input_items, self.item_vectors(codes), enable_dropout)

  def encode(self, input_items: Array, vectors: Array,
             enable_dropout: bool = False) -> Array:
    """`__call__` given the catalog's item vectors `[num_items, hidden]`."""
    cfg = self.config
    length = input_items.shape[-1]
    if length > cfg.max_length:
      raise ConfigError(f"input_items has {length} columns, more than "
                        f"VQRecConfig.max_length={cfg.max_length}.")
    deterministic = not enable_dropout
    items = jnp.asarray(input_items, jnp.int32)
    valid = items >= 0
    x = jnp.take(vectors, jnp.maximum(items, 0), axis=0)
    # Positions count from each history's first item (RecBole's).
    num_pad = jnp.sum(~valid, axis=-1, keepdims=True)
    rows = jnp.maximum(jnp.arange(length)[None] - num_pad, 0)
    x = x + jnp.take(self.position_embedding, rows, axis=0)
    x = self.dropout(self.embedding_norm(x), deterministic=deterministic)
    x = x * valid[..., None]
    bias = causal_bias(valid)
    for block in self.blocks:
      x = block(x, bias, deterministic) * valid[..., None]
    return x

  def item_vectors(self, codes: Array) -> Array:
    """Mean code vectors `[num_items, hidden]` of a catalog's codes."""
    return self.code_embedding.catalog(codes)

  def code_vectors(self, codes: Array) -> Array:
    """Vectors `[..., hidden]` of codes `[..., num_digits]`."""
    return self.code_embedding(codes)


def _l2_normalize(x: Array) -> Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True),
                                       1e-24))


def merge_params(frozen: PyTree | None, params: PyTree) -> PyTree:
  """The full parameters: `frozen` with the trained top-level entries."""
  if frozen is None:
    return params
  return {**frozen, **params}


class VQRecModel(ItemModel):
  """VQ-Rec behind the `ItemModel` contract.

  Attributes:
    module: the `VQRec` network.
    config: its hyper-parameters.
    codes: int32 `[num_items, num_digits]`, the catalog's codes.
    num_items: catalog size.
    max_length: longest input.
    frozen: parameters that are not trained (a transfer's pre-trained
      encoder, with the re-assigned code table), or None.
    trainable: top-level parameter names that are trained (all when
      `frozen` is None).
    checkpoint_description: what a checkpoint must match beyond the
      config (a transfer's pre-trained run and assignment).
  """

  def __init__(self, config: VQRecConfig, codes: np.ndarray,
               frozen: PyTree | None = None,
               trainable: Sequence[str] = (),
               checkpoint_description: Mapping[str, Any] | None = None):
    """Builds the model over a catalog with `codes`."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != config.num_items:
      raise ConfigError(
          f"codes have shape {codes.shape}; VQ-Rec needs [num_items="
          f"{config.num_items}, num_digits].")
    if codes.size and (codes.min() < 0 or
                       codes.max() >= config.codebook_size):
      raise ConfigError(
          f"codes must be in [0, codebook_size={config.codebook_size}); "
          f"got [{codes.min()}, {codes.max()}].")
    self.config = config
    self.codes = codes.astype(np.int32)
    self.module = VQRec(config)
    self.num_items = config.num_items
    self.max_length = config.max_length
    self.frozen = frozen
    self.trainable = tuple(trainable)
    if frozen is not None:
      missing = [k for k in self.trainable if k not in frozen]
      if missing or not self.trainable:
        raise ConfigError(f"trainable parameters {missing or '()'} are not "
                          f"among the pre-trained ones {sorted(frozen)}.")
    self.checkpoint_description = dict(checkpoint_description or {})

  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    shape = tuple(input_shapes.get("input_items",
                                   (1, self.config.max_length)))
    return ((jnp.zeros(shape, jnp.int32), jnp.asarray(self.codes)),
            {"enable_dropout": False})

  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Fresh variables, or a transfer's trainable pre-trained entries."""
    if self.frozen is None:
      return super().get_initial_variables(rng, input_shapes, input_types)
    return {"params": {k: jax.tree.map(jnp.array, self.frozen[k])
                       for k in self.trainable}}

  def get_logical_axes(self, input_shapes: Mapping[str, Sequence[int]],
                       input_types: Mapping[str, Any] | None = None
                       ) -> PyTree:
    """Logical axes of the (trained) variables."""
    axes = super().get_logical_axes(input_shapes, input_types)
    if self.frozen is None:
      return axes
    return {"params": {k: axes["params"][k] for k in self.trainable}}

  def full_params(self, params: PyTree) -> PyTree:
    """The network's parameters: the frozen ones with `params`."""
    if self.frozen is not None:
      params = {k: params[k] for k in self.trainable}
    return merge_params(self.frozen, params)

  def _apply(self, params: PyTree, *args: Any, **kwargs: Any) -> Any:
    return self.module.apply({"params": self.full_params(params)}, *args,
                             **kwargs)

  def hidden_states(self, params: PyTree, input_items: Array,
                    dropout_rng: Array | None = None) -> Array:
    """Hidden states `[batch, length, hidden]` (dropout with a key)."""
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self._apply(params, jnp.asarray(input_items),
                       jnp.asarray(self.codes),
                       enable_dropout=dropout_rng is not None, rngs=rngs)

  def item_vectors(self, params: PyTree) -> Array:
    """The catalog's item vectors `[num_items, hidden]`."""
    return self._apply(params, jnp.asarray(self.codes),
                       method=VQRec.item_vectors)

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """The configured loss (`VQRecConfig.loss`) at the training targets.

    Args:
      params: the trained parameters.
      batch: `input_items` and `target_items` (-1 = no loss).
      dropout_rng: enables dropout (and draws the hard negatives).

    Returns:
      `(loss, metrics)`: the mean over targets; metrics `loss`,
      `cross_ent_loss` (sum), `accuracy` (targets ranked first among the
      candidates) and `num_tokens`.
    """
    cfg = self.config
    neg_rng = jax.random.key(0)
    if dropout_rng is not None:
      dropout_rng, neg_rng = jax.random.split(dropout_rng)
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    full = {"params": self.full_params(params)}
    codes = jnp.asarray(self.codes)
    vectors = self.module.apply(full, codes, method=VQRec.item_vectors)
    hidden = self.module.apply(
        full, jnp.asarray(batch["input_items"]), vectors,
        enable_dropout=dropout_rng is not None, rngs=rngs,
        method=VQRec.encode)
    targets = jnp.asarray(batch["target_items"], jnp.int32)
    if cfg.train_positions == "last":
      hidden, targets = hidden[:, -1], targets[:, -1]
    hidden = _l2_normalize(hidden.reshape(-1, hidden.shape[-1]))
    targets = targets.reshape(-1)
    if cfg.loss == "softmax":
      logits = hidden @ _l2_normalize(vectors).T / cfg.temperature
      return softmax_item_loss(self.training_logits(logits), targets)
    # InfoNCE over the batch's next items plus one corrupted positive.
    safe = jnp.maximum(targets, 0)
    real = targets >= 0
    positives = _l2_normalize(jnp.take(vectors, safe, axis=0))
    fake_codes = transfer.corrupt_codes(jnp.take(codes, safe, axis=0),
                                        neg_rng, cfg.codebook_size,
                                        cfg.corrupt_ratio)
    fake = _l2_normalize(self.module.apply(full, fake_codes,
                                           method=VQRec.code_vectors))
    logits = hidden @ positives.T / cfg.temperature  # [K, K]
    same = (targets[:, None] == targets[None, :]) & ~jnp.eye(
        targets.shape[0], dtype=bool)
    logits = jnp.where(same | ~real[None, :], -jnp.inf, logits)
    fake_logit = jnp.sum(hidden * fake, axis=-1) / cfg.temperature
    all_logits = jnp.concatenate([logits, fake_logit[:, None]], axis=1)
    return softmax_item_loss(all_logits,
                             jnp.where(real, jnp.arange(targets.shape[0]),
                                       -1))

  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Cosine scores / tau of every catalog item, `[batch, num_items]`."""
    full = {"params": self.full_params(params)}
    vectors = self.module.apply(full, jnp.asarray(self.codes),
                                method=VQRec.item_vectors)
    hidden = self.module.apply(full, jnp.asarray(batch["input_items"]),
                               vectors, method=VQRec.encode)[:, -1]
    return (_l2_normalize(hidden) @ _l2_normalize(vectors).T /
            self.config.temperature).astype(jnp.float32)
