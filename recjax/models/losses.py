"""Losses shared by the model families.

* `cross_entropy_loss`: token-level softmax cross-entropy with label
  smoothing, z-loss and a temperature (generative families);
* `softmax_item_loss`: full-catalog softmax cross-entropy (item-level);
* `in_batch_infonce`, `in_batch_softmax_loss`: contrastive losses over the
  batch (CALRec alignment, LEARN);
* `masked_pool`, `l2_normalize`: the pooling and normalisation they use.

Every loss returns `(loss, metrics)` or a scalar, as documented; the
metrics carry the keys the trainer logs (`loss`, `cross_ent_loss`,
`accuracy`, `num_tokens`). No TensorFlow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError

Array = jax.Array

# Additive mask value of in-batch logits: finite, so rows without a valid
# candidate stay NaN-free.
_NEG = -1e9


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


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
  """Divides the last axis by its L2 norm (clamped at `eps`)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)



def in_batch_softmax_loss(user_vectors: Array, item_vectors: Array,
                          targets: Array, logit_scale: float
                          ) -> tuple[Array, dict[str, Array]]:
  """In-batch softmax over the batch's target items, duplicates masked.

  Row `i` scores every column `j` with `logit_scale * user_i . item_j`; its
  positive is column `i` (its own target). Columns whose target is padding
  and columns `j != i` holding the same item as row `i`'s target are masked
  out; padding rows carry no loss.

  Args:
    user_vectors: float `[n, d]` (normalised by the caller).
    item_vectors: float `[n, d]`, the tower output of `targets`.
    targets: int `[n]` item ids, `NO_ITEM` (-1) where there is no target.
    logit_scale: multiplier of the dot products.

  Returns:
    `(loss, metrics)`: the mean cross-entropy over real rows; metrics
    `loss`, `cross_ent_loss` (sum), `accuracy` (rows whose positive beats
    every kept negative, summed), `num_tokens` (real rows) and
    `num_negatives` (kept negatives, summed over real rows).
  """
  targets = jnp.asarray(targets, jnp.int32)
  n = targets.shape[0]
  valid = targets >= 0
  logits = logit_scale * jnp.dot(user_vectors.astype(jnp.float32),
                                 item_vectors.astype(jnp.float32).T)
  own = jnp.eye(n, dtype=bool)
  same = targets[:, None] == targets[None, :]
  keep = valid[None, :] & (own | ~same)
  logits = jnp.where(keep, logits, _NEG)
  weights = valid.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  xent = (log_z - jnp.diagonal(logits)) * weights
  num = jnp.sum(weights)
  loss = jnp.sum(xent) / jnp.maximum(num, 1.0)
  correct = (jnp.argmax(logits, axis=-1) == jnp.arange(n)).astype(
      jnp.float32)
  negatives = jnp.sum((keep & ~own).astype(jnp.float32), axis=-1)
  return loss, {"loss": loss, "cross_ent_loss": jnp.sum(xent),
                "accuracy": jnp.sum(correct * weights), "num_tokens": num,
                "num_negatives": jnp.sum(negatives * weights)}


def softmax_item_loss(logits: Array, targets: Array
                      ) -> tuple[Array, dict[str, Array]]:
  """Full-softmax cross-entropy over the catalog at every target position.

  Args:
    logits: float `[..., num_items]`.
    targets: int `[...]`, `NO_ITEM` where there is no loss.

  Returns:
    `(loss, metrics)`: the mean over targets; metrics `loss`,
    `cross_ent_loss` (sum), `accuracy` (correct top-1, summed) and
    `num_tokens` (number of targets), the keys the trainer logs.
  """
  logits = logits.astype(jnp.float32)
  targets = jnp.asarray(targets, jnp.int32)
  weights = (targets >= 0).astype(jnp.float32)
  safe = jnp.maximum(targets, 0)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
  xent = (log_z - target_logit) * weights
  num = jnp.sum(weights)
  loss = jnp.sum(xent) / jnp.maximum(num, 1.0)
  correct = (jnp.argmax(logits, axis=-1) == safe).astype(jnp.float32)
  return loss, {"loss": loss, "cross_ent_loss": jnp.sum(xent),
                "accuracy": jnp.sum(correct * weights), "num_tokens": num}
