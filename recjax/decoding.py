"""Beam search and sampling over fixed-length semantic IDs, under `jit`.

Every item ID has exactly `num_levels` tokens, and level `l` only uses the
tokens of level `l` (`SemanticIdLayout.level_token_range`). The search is
therefore a static, unrolled loop of `num_levels` steps; there is no EOS
inside an ID. By default no EOS is decoded at all (every beam is complete
after `num_levels` tokens and the score is the log-likelihood of the ID
tokens, what `EncoderDecoderModel.score_batch` computes for targets without
EOS). With `decode_eos=True` one more decoder step adds `log p(EOS | ID)` to
each finished beam, matching targets that end in EOS, and the beams are
re-sorted.

At each step every beam is expanded only into its candidate tokens: with a
trie (`recjax.trie.ItemTrie`) the node's children, found by array lookups
whose cost does not depend on the catalog size; without one, every code of
the level. Candidate scores are the beam's score plus the token's
log-probability under the full-vocabulary softmax (no renormalisation over
allowed tokens), so a finished beam's score is exactly the model's
log-likelihood of that ID. The `num_beams` best candidates of each user are
kept with `lax.top_k`, the decoder cache is gathered along the beam axis,
and trie nodes follow. With fewer valid candidates than beams, the surplus
beams have score `-inf`, item index -1 and `valid=False`.

Per-user exclusions (items already seen) and catalog subsets are applied
inside the search: a candidate is kept only if at least one allowed item lies
below it, so the result is the exact top-K among allowed items.

Sampling (`sample=True`) runs stochastic beam search (Gumbel-top-k with
truncated Gumbels, Kool et al. 2019): the `num_beams` IDs are a sample
without replacement (so distinct items) from the model's distribution at
`temperature`, restricted at each step to allowed tokens and optionally to
the `top_k` most likely ones, renormalised. Results are in sampling order;
`scores` still holds the model's log-likelihood.

Length normalisation (`length_penalty=alpha`) divides scores by the T5X /
GNMT brevity penalty `((5 + length) / 6) ** alpha`; with fixed-length IDs it
never changes the ranking, only the reported scale. `log_probs` is always the
raw log-likelihood.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recjax.errors import ConfigError
from recjax.tokens import EOS_ID
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie

Array = jax.Array
PyTree = Any
# (tokens [batch, beams], cache, static step) -> (logits [batch, beams,
# vocab], cache). The cache's leaves are [batch, beams, ...].
StepFn = Callable[[Array, PyTree, int], tuple[Array, PyTree]]

NEG_INF = -jnp.inf


class DecodeResult(NamedTuple):
  """Beam search output, best first.

  Attributes:
    tokens: int32 `[batch, beams, num_levels]` ID tokens (PAD for invalid
      beams).
    items: int32 `[batch, beams]` item indices, -1 where invalid (or, without
      a trie, always -1).
    scores: float32 `[batch, beams]` ranking scores (length-normalised
      log-likelihood), `-inf` where invalid.
    log_probs: float32 `[batch, beams]` log-likelihood of the decoded tokens.
    valid: bool `[batch, beams]`.
  """

  tokens: Array
  items: Array
  scores: Array
  log_probs: Array
  valid: Array


def gather_beams(tree: PyTree, beam_indices: Array) -> PyTree:
  """Gathers every `[batch, beams, ...]` leaf along the beam axis.

  Args:
    tree: pytree of arrays with beams on axis 1 (any size, e.g. 1).
    beam_indices: int32 `[batch, new_beams]` source beam of each new beam.

  Returns:
    The tree with leaves `[batch, new_beams, ...]`.
  """
  def gather(x):
    idx = beam_indices.reshape(beam_indices.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)
  return jax.tree.map(gather, tree)


def _pick(x: Array, batch: int, flat_indices: Array) -> Array:
  """Selects `[batch, n]` entries of `x [batch, width, k]` by flat index."""
  return jnp.take_along_axis(x.reshape(batch, -1), flat_indices, axis=1)


def _log1mexp(x: Array) -> Array:
  """log(1 - exp(x)) for x <= 0, numerically stable."""
  x = jnp.minimum(x, 0.0)
  return jnp.where(x > -0.6931472, jnp.log(-jnp.expm1(x)),
                   jnp.log1p(-jnp.exp(x)))


def _truncated_gumbel(parent: Array, g: Array, valid: Array) -> Array:
  """Gumbels `g` conditioned on their max being the parent's value.

  Args:
    parent: `[batch, beams]` the parent's perturbed score.
    g: `[batch, beams, k]` children's unconditioned perturbed scores.
    valid: `[batch, beams, k]`.

  Returns:
    `[batch, beams, k]`, -inf where invalid.
  """
  g = jnp.where(valid, g, NEG_INF)
  z = jnp.max(g, axis=-1, keepdims=True)
  t = parent[..., None]
  safe_g = jnp.where(valid, g, 0.0)
  safe_z = jnp.where(jnp.isfinite(z), z, 0.0)
  v = t - safe_g + _log1mexp(safe_g - safe_z)
  out = t - jnp.maximum(v, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(v)))
  return jnp.where(valid & jnp.isfinite(t), out, NEG_INF)


def check_decode_args(layout: SemanticIdLayout, num_beams: int,
                      trie: ItemTrie | None, excluded_items: Array | None,
                      temperature: float = 1.0, top_k: int = 0) -> None:
  """Raises `ConfigError` for arguments `beam_search` cannot take."""
  if not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
    raise ConfigError(f"num_beams must be an int >= 1, got {num_beams!r}.")
  if trie is not None and trie.layout != layout:
    raise ConfigError(
        f"the trie was built for layout {trie.layout} but decoding uses "
        f"{layout}; build the trie with the model's layout.")
  if excluded_items is not None:
    if trie is None:
      raise ConfigError("excluded_items need a trie (constrained decoding).")
    if excluded_items.ndim != 2:
      raise ConfigError("excluded_items must be [batch, max_excluded] item "
                        f"indices (-1 padded), got shape "
                        f"{excluded_items.shape}.")
  if not temperature > 0:
    raise ConfigError(f"temperature must be > 0, got {temperature}.")
  if top_k < 0:
    raise ConfigError(f"top_k must be >= 0 (0 = no limit), got {top_k}.")


def beam_search(initial_logits: Array, initial_cache: PyTree,
                step_fn: StepFn, *, layout: SemanticIdLayout,
                num_beams: int, trie: ItemTrie | None = None,
                constrain: bool = True,
                excluded_items: Array | None = None,
                length_penalty: float = 0.0, decode_eos: bool = False,
                sample: bool = False, rng: Array | None = None,
                temperature: float = 1.0, top_k: int = 0) -> DecodeResult:
  """Top-`num_beams` semantic IDs per user (beam search or sampling).

  Args:
    initial_logits: float `[batch, vocab]` logits of the first ID token (the
      decoder run on BOS, one row per user).
    initial_cache: decoder cache after that step, leaves `[batch, 1, ...]`.
    step_fn: decodes one token per beam at a static step >= 1 (see
      `StepFn`).
    layout: the token layout.
    num_beams: beams kept, and results returned, per user.
    trie: the catalog; with `constrain=True` only its items are decoded.
    constrain: restrict to the trie. With `constrain=False` (or no trie)
      every code combination is allowed; items are still looked up in the
      trie when one is given (-1 for IDs that are not items).
    excluded_items: int `[batch, max_excluded]` item indices (-1 padded)
      never to return for that user; needs a trie.
    length_penalty: alpha of the brevity penalty (0 = off).
    decode_eos: add `log p(EOS)` after the last level (see module doc).
    sample: stochastic beam search instead of beam search.
    rng: PRNG key for sampling.
    temperature: sampling temperature.
    top_k: sample only among each beam's `top_k` most likely allowed
      tokens (0 = all).

  Returns:
    A `DecodeResult`, best (or first sampled) first.

  Raises:
    ConfigError: for invalid arguments.
  """
  check_decode_args(layout, num_beams, trie, excluded_items, temperature,
                    top_k)
  if sample and rng is None:
    raise ConfigError("sample=True needs an rng key.")
  constrained = constrain and trie is not None
  use_counts = constrained and (excluded_items is not None or
                                trie.leaf_allowed_cum is not None)
  excluded = (trie.prepare_exclusions(jnp.asarray(excluded_items))
              if constrained and excluded_items is not None else None)
  batch = initial_logits.shape[0]
  levels = layout.num_levels
  offsets = layout.level_offsets

  scores = jnp.zeros((batch, 1), jnp.float32)      # log-likelihood so far
  perturbed = jnp.zeros((batch, 1), jnp.float32)   # sampling: Gumbel keys
  phi = jnp.zeros((batch, 1), jnp.float32)         # sampling: log q so far
  nodes = jnp.zeros((batch, 1), jnp.int32)
  tokens = jnp.zeros((batch, 1, 0), jnp.int32)
  cache = initial_cache
  logits = initial_logits[:, None, :].astype(jnp.float32)

  for level in range(levels):
    if level > 0:
      logits, cache = step_fn(tokens[:, :, -1], cache, level)
      logits = logits.astype(jnp.float32)
    width = tokens.shape[1]
    if constrained:
      codes, child, valid = trie.children(level, nodes)
      if use_counts:
        valid = valid & (trie.count_allowed(level + 1, child, excluded) > 0)
    else:
      size = layout.codebook_sizes[level]
      codes = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32),
                               (batch, width, size))
      child = jnp.zeros_like(codes)
      valid = jnp.ones(codes.shape, bool)
    cand_tokens = codes + int(offsets[level])
    log_z = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    token_logits = jnp.take_along_axis(logits, cand_tokens, axis=-1)
    cand = jnp.where(valid, scores[..., None] + token_logits - log_z,
                     NEG_INF)
    if sample:
      rng, key = jax.random.split(rng)
      s = jnp.where(valid, token_logits / temperature, NEG_INF)
      if top_k and top_k < s.shape[-1]:
        kth = jax.lax.top_k(s, top_k)[0][..., -1:]
        valid = valid & (s >= kth)
        s = jnp.where(valid, s, NEG_INF)
      q = s - jax.nn.logsumexp(s, axis=-1, keepdims=True)
      child_phi = jnp.where(valid, phi[..., None] + q, NEG_INF)
      g = child_phi + jax.random.gumbel(key, child_phi.shape)
      key_scores = _truncated_gumbel(perturbed, g, valid)
    else:
      key_scores = cand
    k = key_scores.shape[-1]
    flat = key_scores.reshape(batch, width * k)
    if width * k < num_beams:
      flat = jnp.pad(flat, ((0, 0), (0, num_beams - width * k)),
                     constant_values=NEG_INF)
    top_keys, top_idx = jax.lax.top_k(flat, num_beams)
    top_idx = jnp.minimum(top_idx, width * k - 1)
    beam = (top_idx // k).astype(jnp.int32)
    pick = functools.partial(_pick, batch=batch, flat_indices=top_idx)
    alive = jnp.isfinite(top_keys)
    scores = jnp.where(alive, pick(cand), NEG_INF)
    if sample:
      perturbed = top_keys
      phi = jnp.where(alive, pick(child_phi), NEG_INF)
    nodes = pick(child)
    new_tok = jnp.where(alive, pick(cand_tokens), 0)
    tokens = jnp.concatenate(
        [jnp.take_along_axis(tokens, beam[..., None], axis=1),
         new_tok[..., None]], axis=-1)
    if level < levels - 1 or decode_eos:
      cache = gather_beams(cache, beam)

  if decode_eos:
    logits, cache = step_fn(tokens[:, :, -1], cache, levels)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    scores = scores + logp[..., EOS_ID]
    if not sample:
      scores, order = jax.lax.top_k(scores, num_beams)
      tokens = jnp.take_along_axis(tokens, order[..., None], axis=1)
      nodes = jnp.take_along_axis(nodes, order, axis=1)
  valid = jnp.isfinite(scores)
  if constrained:
    items = jnp.where(valid, trie.item_of_leaf(nodes), -1)
  elif trie is not None:
    items = jnp.where(valid, trie.lookup_tokens(tokens), -1)
  else:
    items = jnp.full(scores.shape, -1, jnp.int32)
  if length_penalty:
    length = levels + int(decode_eos)
    ranking = scores / (((5.0 + length) / 6.0) ** length_penalty)
  else:
    ranking = scores
  return DecodeResult(tokens=jnp.where(valid[..., None], tokens, 0),
                      items=items.astype(jnp.int32), scores=ranking,
                      log_probs=scores, valid=valid)
