"""LITE-LLM4Rec: item text -> one vector per item -> sequence model -> items.

LITE-LLM4Rec (Wang et al., "Rethinking Large Language Model Architectures
for Sequential Recommendations") replaces generation over item text with a
hierarchy:

* an **item-level encoder** compresses each item's text into one vector;
* a **sequence-level** causal Transformer (learned positions) runs over the
  history's item vectors;
* a **linear item head** (`d_model -> num_items`, not tied to the text
  vectors) scores the whole catalog at once; training is a full-softmax
  cross-entropy at every position that has a target
  (`recjax.models.losses.softmax_item_loss`), and ranking is one top-K over
  the logits, with no beam search.

Two item-level encoders (`LiteConfig.item_encoder`):

* `"frozen"`: the precomputed text embeddings (MiniLM from the embed stage),
  a constant `[num_items, d_text]` table held by the model and passed into
  `module.apply` (never a parameter), followed by a trainable projection;
* `"finetune"`: the BERT-family text encoder itself (`recjax.text_encoders.
  bert.BertModule`) inside the model, initialised from the checkpoint's
  weights and trained end to end. The catalog's token ids are computed once
  at build time (`recjax.embed.render_texts` + the checkpoint tokenizer) and
  kept as a constant `[num_items, max_item_tokens]` array. Each step encodes
  the batch's `input_items` cells directly, `[batch * length, tokens]` rows
  through BERT, masked-mean pooled (and L2-normalised when the checkpoint's
  sentence pipeline normalises, as MiniLM's does), so the cost is
  `batch * length` short BERT passes per step; padding cells are encoded too
  (static shapes) and then zeroed. The head is not tied to the text vectors,
  so targets need no text encoding.

At initialisation the finetune item vectors equal the frozen embed-stage
vectors of the same checkpoint (up to the token cap), so the two modes start
from the same item representation.

Positions and masking follow `recjax.models.layers.CausalTransformer`:
positions count from each row's first real item, so training position `j`
computes exactly what inference computes for the history ending at `j`.

No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.datasets.canonical import CanonicalDataset
from recjax.errors import ConfigError
from recjax.models.base import Batch
from recjax.models.base import ItemModel
from recjax.models.layers import CausalTransformer
from recjax.models.layers import check_item_embeddings
from recjax.models.layers import check_tower_sizes
from recjax.models.losses import softmax_item_loss
from recjax.text_encoders import base as text_base

Array = jax.Array
PyTree = Any

ITEM_ENCODERS = ("frozen", "finetune")
_POOLING = ("mean", "cls", "max", "mean_sqrt_len")


@dataclasses.dataclass(frozen=True)
class LiteConfig:
  """Hyper-parameters of LITE-LLM4Rec.

  Sequence-model sizes are recjax's small-data defaults (SASRec-scale);
  the item encoder defaults to the pinned all-MiniLM-L6-v2, the text model
  of the embed stage.

  Attributes:
    item_encoder: "frozen" (precomputed embeddings + projection) or
      "finetune" (the BERT text encoder trained inside the model).
    d_model: width of the sequence Transformer.
    num_layers: causal Transformer blocks.
    num_heads: attention heads (divide `d_model`).
    mlp_dim: hidden width of each block's MLP.
    dropout_rate: dropout in the sequence Transformer.
    max_length: learned position table size (longest history).
    text_model_dir: finetune: a local BERT-family sentence-transformers
      checkpoint; None: the pinned all-MiniLM-L6-v2 asset.
    template: finetune: item text template (see `recjax.embed.
      render_texts`); None: the embed stage's default.
    max_item_tokens: finetune: tokens kept per item text (special tokens
      included); the cost of fine-tuning grows with it.
  """

  item_encoder: str = "frozen"
  d_model: int = 128
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  dropout_rate: float = 0.1
  max_length: int = 50
  text_model_dir: str | None = None
  template: str | None = None
  max_item_tokens: int = 32

  def __post_init__(self):
    if self.item_encoder not in ITEM_ENCODERS:
      raise ConfigError(f"LiteConfig.item_encoder={self.item_encoder!r}: use "
                        f"one of {ITEM_ENCODERS}.")
    check_tower_sizes("LiteConfig", self.d_model, self.num_layers,
                      self.num_heads, self.mlp_dim, self.dropout_rate,
                      self.max_length)
    if self.max_item_tokens < 2:
      raise ConfigError("LiteConfig.max_item_tokens must be >= 2 (room for "
                        f"the special tokens), got {self.max_item_tokens}.")


@dataclasses.dataclass
class TextBackbone:
  """A trainable text encoder and the catalog's tokens, for "finetune".

  Attributes:
    module: Flax module `(ids [n, tokens], mask [n, tokens]) -> states
      [n, tokens, hidden]` (e.g. `bert.BertModule`).
    params: its pretrained `"params"` collection.
    token_ids: int32 `[num_items, tokens]` each item's text tokens.
    token_mask: int32 `[num_items, tokens]`, 1 on real tokens.
    pooling: "mean", "cls", "max" or "mean_sqrt_len".
    normalize: L2-normalise the pooled vectors.
  """

  module: nn.Module
  params: PyTree
  token_ids: np.ndarray
  token_mask: np.ndarray
  pooling: str = "mean"
  normalize: bool = False

  def __post_init__(self):
    self.token_ids = np.asarray(self.token_ids, np.int32)
    self.token_mask = np.asarray(self.token_mask, np.int32)
    if (self.token_ids.ndim != 2 or
        self.token_ids.shape != self.token_mask.shape):
      raise ConfigError(
          f"TextBackbone token_ids {self.token_ids.shape} and token_mask "
          f"{self.token_mask.shape} must both be [num_items, tokens].")
    empty = np.flatnonzero(self.token_mask.sum(axis=1) == 0)
    if empty.size:
      raise ConfigError(f"TextBackbone: item {int(empty[0])} has no tokens; "
                        "every item needs at least one real token.")
    if self.pooling not in _POOLING:
      raise ConfigError(f"TextBackbone.pooling={self.pooling!r}: use one of "
                        f"{_POOLING}.")


def tokenize_items(token_lists: Sequence[Sequence[int]], max_tokens: int,
                   pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Pads / truncates per-item token ids into `[num_items, max_tokens]`.

  Truncation keeps the first `max_tokens - 1` tokens and the last one (the
  closing special token of BERT-style tokenizers).

  Args:
    token_lists: each item's token ids (special tokens included).
    max_tokens: columns of the result.
    pad_id: padding token id.

  Returns:
    `(ids, mask)`, int32 `[num_items, max_tokens]`.
  """
  n = len(token_lists)
  ids = np.full((n, max_tokens), pad_id, np.int32)
  mask = np.zeros((n, max_tokens), np.int32)
  for i, seq in enumerate(token_lists):
    seq = list(seq)
    if len(seq) > max_tokens:
      seq = seq[:max_tokens - 1] + seq[-1:]
    ids[i, :len(seq)] = seq
    mask[i, :len(seq)] = 1
  return ids, mask


def load_text_backbone(dataset: CanonicalDataset,
                       model_dir: str | os.PathLike[str] | None = None,
                       template: str | None = None,
                       max_tokens: int = 32) -> TextBackbone:
  """Loads a BERT-family checkpoint and tokenises the catalog once.

  Args:
    dataset: the canonical dataset (item texts).
    model_dir: local checkpoint directory; None: pinned all-MiniLM-L6-v2.
    template: item text template (`recjax.embed.render_texts`).
    max_tokens: tokens kept per item.

  Returns:
    The backbone with the checkpoint's weights.

  Raises:
    ConfigError: not a BERT-family checkpoint, or one whose sentence
      pipeline has Dense layers (not supported for fine-tuning).
  """
  # Imported here: tokenizers and checkpoints are only needed for finetune.
  from recjax import embed  # pylint: disable=g-import-not-at-top
  from recjax import text_encoders  # pylint: disable=g-import-not-at-top
  from recjax.text_encoders import bert  # pylint: disable=g-import-not-at-top
  from recjax.text_encoders.checkpoint import read_json  # pylint: disable=g-import-not-at-top

  path = (pathlib.Path(model_dir) if model_dir
          else text_encoders.default_model_dir())
  encoder = text_encoders.load_text_encoder(path)
  if encoder.model_type not in bert.BERT_TYPES:
    raise ConfigError(
        f"{path}: LITE finetune needs a BERT-family checkpoint "
        f"{bert.BERT_TYPES}, got model_type {encoder.model_type!r}; use "
        "item_encoder='frozen' with its embeddings instead.")
  if encoder.sentence.dense:
    raise ConfigError(
        f"{path}: the sentence pipeline has Dense layers, which LITE "
        "finetune does not train; use item_encoder='frozen'.")
  module = bert.BertModule(bert.BertConfig.from_json(
      read_json(path / "config.json")))
  texts = embed.render_texts(dataset.items, template)
  ids, mask = tokenize_items(encoder.tokenize(texts),
                             min(max_tokens, encoder.max_length),
                             encoder.pad_id)
  return TextBackbone(module=module, params=encoder.params["params"],
                      token_ids=ids, token_mask=mask,
                      pooling=encoder.sentence.pooling,
                      normalize=bool(encoder.sentence.normalize))


class LiteModule(nn.Module):
  """Item encoder + causal sequence Transformer + linear item head.

  Attributes:
    config: the hyper-parameters.
    num_items: catalog size (head width).
    text_module: finetune: the text encoder (its parameters live under
      `params["text_module"]`); None for "frozen".
    pooling: finetune: token pooling mode.
    normalize: finetune: L2-normalise pooled vectors.
  """

  config: LiteConfig
  num_items: int
  text_module: nn.Module | None = None
  pooling: str = "mean"
  normalize: bool = False

  def setup(self):
    cfg = self.config
    self.projection = nn.Dense(
        cfg.d_model, name="projection",
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), (None, "embed")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                               ("embed",)))
    self.encoder = CausalTransformer(
        cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.mlp_dim,
        cfg.dropout_rate, cfg.max_length, name="encoder")
    self.head = nn.Dense(
        self.num_items, name="item_head",
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), ("embed", "vocab")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                               ("vocab",)))

  def text_vectors(self, item_inputs: Array | tuple[Array, Array]) -> Array:
    """Item-level encoder output before the projection.

    Args:
      item_inputs: frozen: float `[..., d_text]` table rows; finetune:
        `(ids, mask)` int `[..., tokens]`.

    Returns:
      float32 `[..., d_text]` (the pooled text vectors in finetune mode).
    """
    if self.text_module is None:
      return jnp.asarray(item_inputs, jnp.float32)
    ids, mask = item_inputs
    lead = ids.shape[:-1]
    ids = ids.reshape(-1, ids.shape[-1])
    mask = mask.reshape(-1, mask.shape[-1])
    states = self.text_module(ids, mask)
    pooled = text_base.pool(states.astype(jnp.float32), mask, self.pooling)
    if self.normalize:
      pooled = text_base.l2_normalize(pooled)
    return pooled.reshape(lead + (pooled.shape[-1],))

  def hidden(self, item_inputs: Array | tuple[Array, Array], valid: Array,
             enable_dropout: bool = False) -> Array:
    """Sequence Transformer output `[batch, length, d_model]`."""
    x = self.projection(self.text_vectors(item_inputs))
    x = jnp.where(valid[..., None], x, 0.0)
    return self.encoder(x, valid, deterministic=not enable_dropout)

  def __call__(self, item_inputs: Array | tuple[Array, Array], valid: Array,
               enable_dropout: bool = False, last_only: bool = False
               ) -> Array:
    """Item logits at every position (or only the last).

    Args:
      item_inputs: see `text_vectors`, with leading `[batch, length]`.
      valid: bool `[batch, length]`.
      enable_dropout: training mode.
      last_only: return only the last position's logits.

    Returns:
      float32 `[batch, length, num_items]` or `[batch, num_items]`.
    """
    h = self.hidden(item_inputs, valid, enable_dropout)
    if last_only:
      h = h[:, -1]
    return self.head(h).astype(jnp.float32)


class LiteModel(ItemModel):
  """LITE-LLM4Rec with a frozen or fine-tuned item-level text encoder.

  Attributes:
    config: the hyper-parameters.
    module: the `LiteModule`.
    num_items: catalog size.
    text_embeddings: frozen: the constant float32 `[num_items, d_text]`
      table on device (None in finetune mode).
    backbone: finetune: the text encoder and catalog tokens (None in
      frozen mode).
  """

  def __init__(self, num_items: int, config: LiteConfig = LiteConfig(),
               item_embeddings: np.ndarray | None = None,
               backbone: TextBackbone | None = None):
    """Builds the model.

    Args:
      num_items: catalog size.
      config: the hyper-parameters.
      item_embeddings: frozen mode: float `[num_items, d_text]`.
      backbone: finetune mode: the text encoder and catalog tokens.

    Raises:
      ConfigError: the input the mode needs is missing or does not match
        the catalog.
    """
    self.config = config
    self.num_items = int(num_items)
    self.text_embeddings = None
    self.backbone = None
    if config.item_encoder == "frozen":
      table = check_item_embeddings(item_embeddings, self.num_items,
                                    "LITE (item_encoder='frozen')")
      self.text_embeddings = jnp.asarray(table)
      self.module = LiteModule(config, self.num_items)
    else:
      if backbone is None:
        raise ConfigError("LITE item_encoder='finetune' needs a text "
                          "backbone (see load_text_backbone).")
      if backbone.token_ids.shape[0] != self.num_items:
        raise ConfigError(
            f"LITE finetune: the backbone tokenised "
            f"{backbone.token_ids.shape[0]} items, the catalog has "
            f"num_items={self.num_items}.")
      self.backbone = backbone
      self._token_ids = jnp.asarray(backbone.token_ids)
      self._token_mask = jnp.asarray(backbone.token_mask)
      self.module = LiteModule(config, self.num_items, backbone.module,
                               backbone.pooling, backbone.normalize)

  @property
  def max_length(self) -> int:
    """Longest history the position table covers."""
    return self.config.max_length

  # -- inputs ------------------------------------------------------------------

  def _item_inputs(self, items: Array) -> tuple[Any, Array]:
    items = jnp.asarray(items, jnp.int32)
    valid = items >= 0
    safe = jnp.maximum(items, 0)
    if self.backbone is None:
      rows = jnp.take(self.text_embeddings, safe, axis=0)
      return jnp.where(valid[..., None], rows, 0.0), valid
    return (jnp.take(self._token_ids, safe, axis=0),
            jnp.take(self._token_mask, safe, axis=0)), valid

  def _apply(self, params: PyTree, items: Array, dropout_rng: Array | None,
             **kwargs: Any) -> Array:
    inputs, valid = self._item_inputs(items)
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, inputs, valid,
                             enable_dropout=dropout_rng is not None,
                             rngs=rngs, **kwargs)

  def item_text_vectors(self, params: PyTree, items: Array) -> Array:
    """Item-level encoder output (before the projection).

    Args:
      params: model parameters.
      items: int `[n]` item ids.

    Returns:
      float32 `[n, d_text]`: the frozen table rows, or the fine-tuned text
      encoder's pooled vectors.
    """
    inputs, _ = self._item_inputs(items)
    return self.module.apply({"params": params}, inputs,
                             method=LiteModule.text_vectors)

  # -- the T5X contract --------------------------------------------------------

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Full-softmax cross-entropy at every position with a target.

    Args:
      params: model parameters.
      batch: `input_items` and `target_items`, int `[batch, length]`.
      dropout_rng: dropout key (None: deterministic).

    Returns:
      `(loss, metrics)`, see `softmax_item_loss`.
    """
    logits = self._apply(params, batch["input_items"], dropout_rng)
    targets = jnp.asarray(batch["target_items"], jnp.int32)
    if targets.shape != logits.shape[:2]:
      raise ConfigError(f"target_items shape {targets.shape} differs from "
                        f"input_items shape {logits.shape[:2]}.")
    return softmax_item_loss(self.training_logits(logits), targets)

  def item_scores(self, params: PyTree, batch: Batch) -> Array:
    """Head logits of every item after the last history position.

    Args:
      params: model parameters.
      batch: needs `input_items` `[batch, length]`.

    Returns:
      float32 `[batch, num_items]`.
    """
    return self._apply(params, batch["input_items"], None, last_only=True)

  # -- initialisation ----------------------------------------------------------

  def _init_inputs(self, input_shapes: Mapping[str, Sequence[int]]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if "input_items" not in input_shapes:
      raise ConfigError("input_shapes needs 'input_items' [batch, length], "
                        f"got keys {sorted(input_shapes)}.")
    length = int(input_shapes["input_items"][-1])
    inputs, valid = self._item_inputs(jnp.zeros((1, length), jnp.int32))
    return (inputs, valid), {}

  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Mapping[str, Any] | None = None
                            ) -> PyTree:
    """Fresh variables; finetune mode loads the text encoder's weights.

    Args:
      rng: init key.
      input_shapes: feature shapes (needs `input_items`).
      input_types: unused.

    Returns:
      `{"params": ...}`.

    Raises:
      ConfigError: the backbone's parameters do not fit its module.
    """
    variables = super().get_initial_variables(rng, input_shapes, input_types)
    if self.backbone is None:
      return variables
    params = dict(variables["params"])
    fresh = params["text_module"]
    loaded = jax.tree.map(jnp.asarray, self.backbone.params)
    shapes = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
    if shapes(fresh) != shapes(loaded):
      raise ConfigError(
          "LITE finetune: the text backbone's parameters do not match its "
          "module (a checkpoint from a different config?).")
    params["text_module"] = loaded
    return {**variables, "params": params}


def make_lite(dataset: CanonicalDataset, item_embeddings: np.ndarray | None,
              config: LiteConfig = LiteConfig(),
              backbone: TextBackbone | None = None) -> LiteModel:
  """Builds LITE-LLM4Rec for a dataset (the gin `model_fn`).

  Args:
    dataset: the canonical dataset (catalog size; item texts for finetune).
    item_embeddings: frozen mode: the embed stage's `[num_items, d_text]`
      table (ignored in finetune mode).
    config: the hyper-parameters.
    backbone: finetune mode: an injected text encoder (tests); None loads
      `config.text_model_dir` and tokenises the catalog.

  Returns:
    The model.

  Raises:
    ConfigError: missing or mismatched embeddings (frozen) or backbone
      (finetune).
  """
  if config.item_encoder == "frozen":
    table = check_item_embeddings(item_embeddings, dataset.num_items,
                                  "LITE (item_encoder='frozen')")
    return LiteModel(dataset.num_items, config, item_embeddings=table)
  if backbone is None:
    backbone = load_text_backbone(dataset, config.text_model_dir,
                                  config.template, config.max_item_tokens)
  return LiteModel(dataset.num_items, config, backbone=backbone)
