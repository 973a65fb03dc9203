"""SAID stage 1: item-ID embeddings a frozen causal LM can read back.

SAID (Hu et al., WWW'24 companion, "Enhancing Sequential Recommendation via
LLM-based Semantic Embedding Learning") learns one embedding per item ID
and a projector that maps it to `k` soft-prompt vectors in the LM's input
space. With the LM frozen, only the embeddings and the projector are
trained, so that the LM prompted by them reproduces the item's text
(next-token cross-entropy over the text's tokens). The projector's output,
frozen, is the item vector a light sequential recommender reads in stage 2.

What the paper leaves open, and recjax's choices (documented in
docs/said.md):
- k = 2 soft-prompt vectors; a 2-layer GELU MLP projector (id width 256 ->
  1024 -> k x LM width), so an item vector has k x 576 = 1152 numbers.
- The prompt is the soft prompt directly followed by the text (no
  instruction words): the text is predicted from the first token on.
- Item text: title, brand and categories, at most 64 tokens.
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
from recjax.models.base import BaseModel
from recjax.text_encoders.llama import CausalLM
from recjax.text_encoders.llama import Llama

Array = jax.Array
PyTree = Any
Batch = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SAIDConfig:
  """SAID stage 1's item embedder.

  Attributes:
    num_prompt_tokens: k, soft-prompt vectors per item.
    id_dim: width of the item-ID embedding.
    projector_hidden: hidden width of the projector MLP.
    init_std: std of the ID embedding and projector initialisation.
  """

  num_prompt_tokens: int = 2
  id_dim: int = 256
  projector_hidden: int = 1024
  init_std: float = 0.02

  def __post_init__(self):
    if min(self.num_prompt_tokens, self.id_dim, self.projector_hidden) < 1:
      raise ConfigError(f"SAIDConfig: num_prompt_tokens, id_dim and "
                        f"projector_hidden must be >= 1, got {self}.")


class SAIDEmbedder(nn.Module):
  """Item ID -> k soft-prompt vectors of width `lm_width`.

  Attributes:
    config: the embedder's settings.
    num_items: catalog size.
    lm_width: the LM's input width.
  """

  config: SAIDConfig
  num_items: int
  lm_width: int

  @nn.compact
  def __call__(self, items: Array) -> Array:
    """Soft prompts `[..., k, lm_width]` of item indices `[...]`."""
    cfg = self.config
    table = self.param(
        "item_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std),
                                     ("items", "embed")),
        (self.num_items, cfg.id_dim), jnp.float32)
    x = jnp.take(table, jnp.asarray(items, jnp.int32), axis=0)
    dense = lambda n, name, axes: nn.Dense(  # noqa: E731
        n, name=name, kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(cfg.init_std), axes))
    x = jax.nn.gelu(dense(cfg.projector_hidden, "projector_in",
                          ("embed", "mlp"))(x))
    x = dense(cfg.num_prompt_tokens * self.lm_width, "projector_out",
              ("mlp", "embed"))(x)
    return x.reshape(*x.shape[:-1], cfg.num_prompt_tokens, self.lm_width)


def embedder_vectors(embedder: SAIDEmbedder, params: PyTree,
                     batch_size: int = 4096) -> np.ndarray:
  """Every item's flattened soft prompts, float32 `[N, k * W]`."""
  fn = jax.jit(lambda p, items: embedder.apply({"params": p}, items))
  out = []
  for start in range(0, embedder.num_items, batch_size):
    items = np.arange(start, min(start + batch_size, embedder.num_items))
    out.append(np.asarray(fn(params, items)).reshape(len(items), -1))
  return np.concatenate(out).astype(np.float32)


class SAIDModel(BaseModel):
  """Trains `SAIDEmbedder` through a frozen `CausalLM` (the Trainer's model).

  Batches: `items` int `[B]`, `tokens` int `[B, T]` (the item text,
  right-padded) and `text_mask` `[B, T]`. The LM reads `[prompt_1..k,
  tok_1..tok_{T-1}]` and predicts `tok_1..tok_T`; only the embedder's
  parameters are trained (the LM's are constants of the loss).
  """

  FEATURE_CONVERTER_CLS = None

  def __init__(self, config: SAIDConfig, lm: CausalLM, num_items: int):
    self.config = config
    self.lm = lm
    self.num_items = int(num_items)
    self.embedder = SAIDEmbedder(config, self.num_items,
                                 lm.config.hidden_size)
    self.llm = Llama(lm.config)

  def get_initial_variables(self, rng: Array,
                            input_shapes: Mapping[str, Sequence[int]],
                            input_types: Any = None) -> PyTree:
    del input_types
    items = jnp.zeros(tuple(input_shapes["items"]), jnp.int32)
    return nn.meta.unbox(self.embedder.init(rng, items))

  def get_logical_axes(self, input_shapes: Mapping[str, Sequence[int]],
                       input_types: Any = None) -> PyTree:
    del input_types
    abstract = jax.eval_shape(
        lambda: self.embedder.init(jax.random.key(0), jnp.zeros(
            tuple(input_shapes["items"]), jnp.int32)))
    return nn.get_partition_spec(abstract)

  def prompts(self, params: PyTree, items: Array) -> Array:
    """Soft prompts `[..., k, width]` of item indices."""
    return self.embedder.apply({"params": params}, items)

  def item_vectors(self, params: PyTree, batch_size: int = 4096
                   ) -> np.ndarray:
    """Stage 2's frozen item vectors: flattened soft prompts `[N, k*W]`."""
    return embedder_vectors(self.embedder, params, batch_size)

  def token_logits(self, params: PyTree, batch: Batch) -> Array:
    """LM logits `[B, T, vocab]` predicting each text token."""
    prompts = self.prompts(params, batch["items"])
    k = prompts.shape[1]
    tokens = jnp.asarray(batch["tokens"], jnp.int32)
    mask = jnp.asarray(batch["text_mask"], jnp.int32)
    lm_params = {"params": self.lm.params}
    text = self.llm.apply(lm_params, tokens[:, :-1], method=Llama.embed)
    embeds = jnp.concatenate([prompts, text], axis=1)
    full_mask = jnp.concatenate(
        [jnp.ones(prompts.shape[:2], jnp.int32), mask[:, :-1]], axis=1)
    logits, _ = self.llm.apply(lm_params, None, full_mask, embeds=embeds)
    return logits[:, k - 1:]

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Mean next-token cross-entropy over the real text tokens."""
    del dropout_rng
    logits = self.token_logits(params, batch)
    tokens = jnp.asarray(batch["tokens"], jnp.int32)
    mask = jnp.asarray(batch["text_mask"], jnp.float32)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    total = jnp.sum(nll * mask)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    correct = jnp.sum((jnp.argmax(logits, -1) == tokens) * mask)
    return total / count, {"loss": total / count, "cross_ent_loss": total,
                           "accuracy": correct, "num_tokens": count}

  def predict_batch_with_aux(self, params: PyTree, batch: Batch,
                             rng: Array | None = None, **kwargs: Any
                             ) -> tuple[Array, dict[str, Array]]:
    """Greedy token predictions `[B, T]` (teacher-forced) of the text."""
    del rng, kwargs
    return jnp.argmax(self.token_logits(params, batch), -1), {}

  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Per-item log-likelihood of its text `[B]`."""
    logits = self.token_logits(params, batch)
    tokens = jnp.asarray(batch["tokens"], jnp.int32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    ll = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    return jnp.sum(ll * jnp.asarray(batch["text_mask"], jnp.float32), -1)
