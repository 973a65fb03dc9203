"""VQ-Rec's code re-assignment: which pre-trained code serves a target code.

A target catalog has its own OPQ, so its code `m` at digit `d` means
nothing to the pre-trained table. Transfer learns, per digit, an
assignment of the target's M codes to the table's M rows and then bakes
it in (`table'[d, m] = table[d, assignment[d, m]]`). Three ways:

* `"none"`: the identity (target code m reads pre-trained row m);
* `"learned"` (the paper's intent): a permutation learned through a
  Gumbel-Sinkhorn relaxation of `exp(W_d)` (3 log-space iterations,
  temperature 0.7). The forward pass uses the hard permutation (the
  Hungarian assignment of the relaxed matrix) and the gradient flows
  through the relaxed one (straight-through); the baked assignment is the
  Hungarian assignment of `W_d` itself, a true permutation;
* `"released"`: what the official code computes. There the relaxed
  matrix passes through a row-wise top-1 and `ceil`, which has a zero
  gradient, so `W` never moves and the baked assignment is the row-wise
  argmax of one noisy Sinkhorn draw of the random `W`: a random remap that
  is not one-to-one.

`corrupt_codes` draws VQ-Rec's code-corrupted hard negatives. No
TensorFlow.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from recjax.errors import ConfigError

Array = jax.Array

REMAPS = ("none", "learned", "released")
# The paper's Sinkhorn settings.
SINKHORN_ITERS = 3
SINKHORN_TEMPERATURE = 0.7


def sinkhorn(log_alpha: Array, num_iters: int = SINKHORN_ITERS) -> Array:
  """Row/column-normalised `exp(log_alpha)` by log-space Sinkhorn steps.

  Args:
    log_alpha: float `[..., n, n]`.
    num_iters: alternations (rows then columns); more iterations give a
      matrix closer to doubly stochastic.

  Returns:
    float `[..., n, n]`, non-negative, columns summing to 1 and rows close
    to 1.
  """
  def step(_, x):
    x = x - jax.nn.logsumexp(x, axis=-1, keepdims=True)
    return x - jax.nn.logsumexp(x, axis=-2, keepdims=True)

  return jnp.exp(jax.lax.fori_loop(0, num_iters, step, log_alpha))


@functools.partial(jax.jit, static_argnames=("temperature", "num_iters"))
def gumbel_sinkhorn(logits: Array, rng: Array | None,
                    temperature: float = SINKHORN_TEMPERATURE,
                    num_iters: int = SINKHORN_ITERS) -> Array:
  """The Gumbel-Sinkhorn relaxation of a permutation (Mena et al. 2018).

  Args:
    logits: `W`, float `[..., n, n]` (the relaxed matrix is of `exp(W)`).
    rng: Gumbel noise key, or None for the noiseless relaxation.
    temperature: divides `W + noise` before the normalisation.
    num_iters: Sinkhorn iterations.

  Returns:
    A nearly doubly-stochastic `[..., n, n]`.
  """
  if temperature <= 0:
    raise ConfigError(f"Gumbel-Sinkhorn temperature must be > 0, got "
                      f"{temperature}.")
  x = jnp.asarray(logits, jnp.float32)
  if rng is not None:
    x = x + jax.random.gumbel(rng, x.shape, jnp.float32)
  return sinkhorn(x / temperature, num_iters)


def hungarian(scores: np.ndarray) -> np.ndarray:
  """Per-slice maximum-weight permutation of `scores` `[..., n, n]`.

  Returns:
    int32 `[..., n]`: row `m` is assigned column `out[..., m]`, a
    permutation of `range(n)` in every slice.
  """
  scores = np.asarray(scores, np.float64)
  flat = scores.reshape((-1,) + scores.shape[-2:])
  out = np.empty(flat.shape[:2], np.int32)
  for i, s in enumerate(flat):
    _, cols = scipy.optimize.linear_sum_assignment(s, maximize=True)
    out[i] = cols
  return out.reshape(scores.shape[:-1])


def _hungarian_callback(scores: Array) -> Array:
  shape = jax.ShapeDtypeStruct(scores.shape[:-1], jnp.int32)
  return jax.pure_callback(hungarian, shape, scores,
                           vmap_method="sequential")


def permutation_matrix(assignment: Array, n: int) -> Array:
  """One-hot rows `[..., n, n]` of an assignment `[..., n]`."""
  return jax.nn.one_hot(assignment, n, dtype=jnp.float32)


def straight_through(logits: Array, rng: Array | None,
                     temperature: float = SINKHORN_TEMPERATURE,
                     num_iters: int = SINKHORN_ITERS) -> Array:
  """A hard permutation matrix with the relaxed matrix's gradient.

  Forward: the Hungarian permutation of the Gumbel-Sinkhorn matrix (a true
  permutation); backward: the gradient of the relaxed matrix.

  Args:
    logits: `W`, float `[..., n, n]`.
    rng: Gumbel noise key (None: no noise).
    temperature: Gumbel-Sinkhorn temperature.
    num_iters: Sinkhorn iterations.

  Returns:
    float `[..., n, n]`, exactly one 1 per row and per column.
  """
  soft = gumbel_sinkhorn(logits, rng, temperature, num_iters)
  hard = permutation_matrix(
      _hungarian_callback(jax.lax.stop_gradient(soft)), soft.shape[-1])
  return hard + soft - jax.lax.stop_gradient(soft)


def released_assignment(logits: np.ndarray, seed: int,
                        temperature: float = SINKHORN_TEMPERATURE,
                        num_iters: int = SINKHORN_ITERS) -> np.ndarray:
  """The official code's baked assignment: row-wise argmax of one draw.

  Args:
    logits: `W`, float `[D, M, M]`.
    seed: the Gumbel draw.
    temperature: Gumbel-Sinkhorn temperature.
    num_iters: Sinkhorn iterations.

  Returns:
    int32 `[D, M]`; usually not a permutation (several target codes read
    the same pre-trained row).
  """
  soft = gumbel_sinkhorn(jnp.asarray(logits), jax.random.key(seed),
                         temperature, num_iters)
  return np.asarray(jnp.argmax(soft, axis=-1), np.int32)


def learned_assignment(logits: np.ndarray) -> np.ndarray:
  """The baked permutation of learned `W` `[D, M, M]`: `[D, M]` int32."""
  return hungarian(np.asarray(logits))


def check_assignment(assignment: np.ndarray, num_digits: int,
                     codebook_size: int, permutation: bool = False) -> None:
  """Raises ConfigError unless `assignment` is `[D, M]` rows into [0, M).

  Args:
    assignment: int `[D, M]`.
    num_digits: D.
    codebook_size: M.
    permutation: also require each digit's row to be a permutation.
  """
  a = np.asarray(assignment)
  if a.shape != (num_digits, codebook_size):
    raise ConfigError(f"assignment has shape {a.shape}; expected "
                      f"[{num_digits}, {codebook_size}].")
  if a.size and (a.min() < 0 or a.max() >= codebook_size):
    raise ConfigError(f"assignment values must be in [0, {codebook_size}).")
  if permutation:
    bad = [d for d in range(num_digits)
           if len(np.unique(a[d])) != codebook_size]
    if bad:
      raise ConfigError(f"assignment digits {bad[:5]} are not "
                        "permutations.")


def bake(table: np.ndarray, assignment: np.ndarray) -> np.ndarray:
  """`table'[d, m] = table[d, assignment[d, m]]`, `[D, M, H]`."""
  table = np.asarray(table)
  assignment = np.asarray(assignment, np.int64)
  check_assignment(assignment, table.shape[0], table.shape[1])
  return np.take_along_axis(table, assignment[..., None], axis=1)


def corrupt_codes(codes: Array, rng: Array, codebook_size: int,
                  ratio: float) -> Array:
  """VQ-Rec's hard negatives: each digit replaced with prob. `ratio`.

  A replaced digit takes a code drawn uniformly from `[0, M)` (so it may
  draw the original one again, as in the paper).

  Args:
    codes: int `[..., D]` (negative = missing digit, kept).
    rng: the draw.
    codebook_size: M.
    ratio: replacement probability per digit.

  Returns:
    int32 `[..., D]`.
  """
  if not 0.0 <= ratio <= 1.0:
    raise ConfigError(f"code corruption ratio must be in [0, 1], got "
                      f"{ratio}.")
  codes = jnp.asarray(codes, jnp.int32)
  k1, k2 = jax.random.split(rng)
  random = jax.random.randint(k1, codes.shape, 0, codebook_size, jnp.int32)
  replace = jax.random.bernoulli(k2, ratio, codes.shape) & (codes >= 0)
  return jnp.where(replace, random, codes)
