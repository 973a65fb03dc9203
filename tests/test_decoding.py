"""Tests for recjax.decoding against brute force over a toy sequence model.

The toy model keeps a per-beam state in the cache (a running sum of token
embeddings), so its logits depend on the whole prefix: a wrong cache reorder
gives wrong scores, which the brute-force comparison catches.
"""

import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import decoding
from recjax.errors import ConfigError
from recjax.tokens import EOS_ID
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie


class ToyModel:
  """Logits = tanh(state) @ w_out; state += emb[token] * step."""

  def __init__(self, layout: SemanticIdLayout, batch: int, seed: int,
               dim: int = 8, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    self.layout = layout
    vocab = layout.vocab_size
    self.emb = rng.normal(size=(vocab, dim)).astype(np.float32)
    self.w_out = (scale * rng.normal(size=(dim, vocab))).astype(np.float32)
    self.users = rng.normal(size=(batch, dim)).astype(np.float32)

  def initial(self):
    state = jnp.asarray(self.users)
    logits = jnp.tanh(state) @ self.w_out
    return logits, {"state": state[:, None, :],
                    "extra": jnp.zeros((state.shape[0], 1, 2, 3))}

  def step_fn(self, tokens, cache, step):
    state = cache["state"] + jnp.asarray(self.emb)[tokens] * step
    logits = jnp.tanh(state) @ jnp.asarray(self.w_out)
    return logits, {"state": state, "extra": cache["extra"]}

  def log_probs(self, tokens: np.ndarray, with_eos: bool = False
                ) -> np.ndarray:
    """Brute force: `[batch, n]` log-likelihood of ID tokens `[n, levels]`."""
    out = np.zeros((self.users.shape[0], tokens.shape[0]))
    for b in range(self.users.shape[0]):
      state = np.repeat(self.users[b][None].astype(np.float64),
                        tokens.shape[0], 0)
      seq = list(tokens.T) + ([np.full(tokens.shape[0], EOS_ID)]
                              if with_eos else [])
      for step, tok in enumerate(seq):
        if step > 0:
          state = state + self.emb[tokens[:, step - 1]] * step
        logits = np.tanh(state) @ self.w_out
        logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
        logz += logits.max(1)
        out[b] += logits[np.arange(len(tok)), tok] - logz
    return out


_STATIC = ("step_fn", "layout", "num_beams", "constrain", "length_penalty",
           "decode_eos", "sample", "temperature", "top_k")
_beam_search = jax.jit(decoding.beam_search, static_argnames=_STATIC)


def _search(model, **kwargs):
  logits, cache = model.initial()
  return _beam_search(logits, cache, step_fn=model.step_fn,
                      layout=model.layout, **kwargs)


def _check_top_k(result, brute, allowed, k):
  """Returned items/scores are exactly the top-k of `brute` over `allowed`."""
  items = np.asarray(result.items)
  scores = np.asarray(result.log_probs)
  valid = np.asarray(result.valid)
  for b in range(items.shape[0]):
    allowed_b = np.flatnonzero(allowed[b])
    want = np.sort(brute[b, allowed_b])[::-1][:k]
    n = len(want)
    assert valid[b].sum() == n
    assert np.all(valid[b, :n]) and not np.any(valid[b, n:])
    got = items[b, :n]
    assert len(set(got.tolist())) == n
    assert np.all(allowed[b, got])
    np.testing.assert_allclose(scores[b, :n], brute[b, got], atol=1e-4)
    np.testing.assert_allclose(scores[b, :n], want, atol=1e-4)
    assert np.all(items[b, n:] == -1)
    assert np.all(np.isneginf(scores[b, n:]))


def _check_sound(result, brute, allowed):
  """Narrow beams: valid, allowed, distinct, correctly scored, sorted."""
  items = np.asarray(result.items)
  scores = np.asarray(result.log_probs)
  for b in range(items.shape[0]):
    got = items[b][items[b] >= 0]
    assert len(got) and len(set(got.tolist())) == len(got)
    assert np.all(allowed[b, got])
    np.testing.assert_allclose(scores[b, :len(got)], brute[b, got],
                               atol=1e-4)
    assert np.all(np.diff(scores[b, :len(got)]) <= 0)


def _catalog(sizes, n, seed):
  grid = np.array(list(itertools.product(*[range(s) for s in sizes])))
  rng = np.random.default_rng(seed)
  return grid[rng.choice(len(grid), n, replace=False)]


def test_full_beam_returns_every_item_in_brute_force_order():
  layout = SemanticIdLayout((4, 3, 5), num_user_buckets=2)
  codes = _catalog(layout.codebook_sizes, 30, 0)
  trie = ItemTrie.build(codes, layout)
  model = ToyModel(layout, batch=3, seed=1)
  brute = model.log_probs(layout.codes_to_tokens(codes))
  result = _search(model, num_beams=34, trie=trie)
  for b in range(3):
    order = np.argsort(-brute[b])
    np.testing.assert_array_equal(np.asarray(result.items[b, :30]), order)
    np.testing.assert_array_equal(
        np.asarray(result.tokens[b, :30]),
        layout.codes_to_tokens(codes[order]))
  _check_top_k(result, brute, np.ones_like(brute, bool), 34)
  np.testing.assert_array_equal(np.asarray(result.tokens[:, 30:]), 0)


def test_exclusions_equal_brute_force_over_remaining_items():
  layout = SemanticIdLayout((3, 3, 3))
  codes = _catalog(layout.codebook_sizes, 20, 2)
  trie = ItemTrie.build(codes, layout)
  model = ToyModel(layout, batch=2, seed=3)
  brute = model.log_probs(layout.codes_to_tokens(codes))
  best = np.argsort(-brute, axis=1)
  # User 0 excludes its 3 best items (with padding and a duplicate); user 1
  # excludes every item under the first code of its best item.
  first = codes[best[1, 0], 0]
  under = np.flatnonzero(codes[:, 0] == first)
  excl = np.full((2, len(under) + 4), -1)
  excl[0, :4] = [best[0, 0], best[0, 1], best[0, 0], best[0, 2]]
  excl[1, :len(under)] = under
  allowed = np.ones_like(brute, bool)
  for b in range(2):
    allowed[b, excl[b][excl[b] >= 0]] = False
  narrow = _search(model, num_beams=5, trie=trie,
                   excluded_items=jnp.asarray(excl))
  _check_sound(narrow, brute, allowed)
  assert np.asarray(narrow.valid).all()
  # Beam >= catalog: exactly the brute-force ranking of allowed items.
  result = _search(model, num_beams=20, trie=trie,
                   excluded_items=jnp.asarray(excl))
  _check_top_k(result, brute, allowed, 20)
  assert not np.any(np.isin(np.asarray(result.items[1]), under))


def test_subset_restricts_results():
  layout = SemanticIdLayout((3, 4))
  codes = _catalog(layout.codebook_sizes, 12, 4)
  trie = ItemTrie.build(codes, layout).with_subset(np.arange(12) % 3 == 0)
  model = ToyModel(layout, batch=2, seed=5)
  brute = model.log_probs(layout.codes_to_tokens(codes))
  allowed = np.broadcast_to(np.arange(12) % 3 == 0, brute.shape)
  _check_top_k(_search(model, num_beams=6, trie=trie), brute, allowed, 6)


def test_unconstrained_equals_brute_force_over_all_code_tuples():
  layout = SemanticIdLayout((3, 2, 3))
  grid = np.array(list(itertools.product(range(3), range(2), range(3))))
  model = ToyModel(layout, batch=2, seed=6)
  brute = model.log_probs(layout.codes_to_tokens(grid))
  codes = grid[:5]
  trie = ItemTrie.build(codes, layout)
  result = _search(model, num_beams=18, trie=trie, constrain=False)
  tokens = np.asarray(result.tokens)
  for b in range(2):
    got = [int(np.flatnonzero((layout.codes_to_tokens(grid) == t).all(1))[0])
           for t in tokens[b]]
    np.testing.assert_array_equal(got, np.argsort(-brute[b]))
    # Items are looked up in the trie: -1 for code tuples that are no item.
    want = [g if g < 5 else -1 for g in got]
    np.testing.assert_array_equal(np.asarray(result.items[b]), want)


def test_fewer_candidates_than_beams_and_fan_out_one():
  layout = SemanticIdLayout((5, 5, 5))
  codes = np.array([[0, 0, 0], [0, 0, 1], [4, 2, 2]])
  trie = ItemTrie.build(codes, layout)
  model = ToyModel(layout, batch=1, seed=7)
  brute = model.log_probs(layout.codes_to_tokens(codes))
  result = _search(model, num_beams=8, trie=trie)
  _check_top_k(result, brute, np.ones_like(brute, bool), 8)
  assert np.asarray(result.valid).sum() == 3


def test_decode_eos_adds_eos_log_prob_and_resorts():
  layout = SemanticIdLayout((3, 3))
  codes = _catalog(layout.codebook_sizes, 7, 8)
  trie = ItemTrie.build(codes, layout)
  model = ToyModel(layout, batch=2, seed=9)
  brute = model.log_probs(layout.codes_to_tokens(codes), with_eos=True)
  result = _search(model, num_beams=7, trie=trie, decode_eos=True)
  _check_top_k(result, brute, np.ones_like(brute, bool), 7)
  np.testing.assert_array_equal(np.asarray(result.items),
                                np.argsort(-brute, axis=1))


def test_length_penalty_rescales_scores_only():
  layout = SemanticIdLayout((3, 3))
  trie = ItemTrie.build(_catalog(layout.codebook_sizes, 6, 10), layout)
  model = ToyModel(layout, batch=1, seed=11)
  plain = _search(model, num_beams=4, trie=trie)
  normed = _search(model, num_beams=4, trie=trie, length_penalty=0.6)
  np.testing.assert_array_equal(np.asarray(plain.items),
                                np.asarray(normed.items))
  np.testing.assert_allclose(np.asarray(normed.scores),
                             np.asarray(plain.log_probs) / (7 / 6) ** 0.6,
                             rtol=1e-6)


def test_sampling_draws_distinct_valid_items():
  layout = SemanticIdLayout((4, 4, 2))
  codes = _catalog(layout.codebook_sizes, 15, 12)
  trie = ItemTrie.build(codes, layout)
  model = ToyModel(layout, batch=2, seed=13)
  brute = model.log_probs(layout.codes_to_tokens(codes))
  run = lambda key, **kw: _search(model, num_beams=15, trie=trie,
                                  sample=True, rng=key, **kw)
  a = run(jax.random.key(0))
  b = run(jax.random.key(0))
  c = run(jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(a.items), np.asarray(b.items))
  assert not np.array_equal(np.asarray(a.items), np.asarray(c.items))
  for r in (a, c):
    for u in range(2):
      # Without replacement: all 15 items, once each, with model scores.
      assert sorted(np.asarray(r.items[u]).tolist()) == list(range(15))
      np.testing.assert_allclose(np.asarray(r.log_probs[u]),
                                 brute[u, np.asarray(r.items[u])], atol=1e-4)
  # top_k=1: a single greedy path survives.
  g = run(jax.random.key(2), top_k=1)
  assert np.asarray(g.valid).sum(axis=1).tolist() == [1, 1]
  greedy = _search(model, num_beams=1, trie=trie)
  np.testing.assert_array_equal(np.asarray(g.items[:, 0]),
                                np.asarray(greedy.items[:, 0]))


def test_sampling_frequencies_follow_the_model():
  layout = SemanticIdLayout((3,))
  trie = ItemTrie.build(np.array([[0], [1], [2]]), layout)
  model = ToyModel(layout, batch=1, seed=14, scale=0.5)
  brute = model.log_probs(layout.codes_to_tokens(np.array([[0], [1], [2]])))
  p = np.exp(brute[0] - np.logaddexp.reduce(brute[0]))
  logits, cache = model.initial()
  search = jax.jit(jax.vmap(
      lambda key: decoding.beam_search(
          logits, cache, model.step_fn, layout=layout, num_beams=1,
          trie=trie, sample=True, rng=key).items[0, 0]))
  draws = np.asarray(search(jax.random.split(jax.random.key(3), 3000)))
  freq = np.bincount(draws, minlength=3) / len(draws)
  np.testing.assert_allclose(freq, p, atol=0.04)


@st.composite
def problems(draw):
  levels = draw(st.integers(1, 3))
  sizes = tuple(draw(st.integers(1, 4)) for _ in range(levels))
  total = int(np.prod(sizes))
  n = draw(st.integers(1, min(total, 16)))
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  grid = np.array(list(itertools.product(*[range(s) for s in sizes])))
  if draw(st.booleans()):
    idx = np.arange(n)  # lexicographic run: heavy prefix sharing
  else:
    idx = rng.choice(total, n, replace=False)
  beams = draw(st.integers(1, 18))
  excl = rng.integers(-1, n, size=(2, draw(st.integers(0, 4))))
  return SemanticIdLayout(sizes), grid[idx], beams, excl, seed


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(problems())
def test_random_catalogs_and_models_never_return_invalid_ids(problem):
  layout, codes, beams, excl, seed = problem
  trie = ItemTrie.build(codes, layout)
  model = ToyModel(layout, batch=2, seed=seed)
  result = _search(model, num_beams=beams, trie=trie,
                   excluded_items=jnp.asarray(excl))
  items = np.asarray(result.items)
  valid = np.asarray(result.valid)
  tokens = np.asarray(result.tokens)
  index = {tuple(layout.codes_to_tokens(c).tolist()): i
           for i, c in enumerate(codes)}
  for b in range(2):
    got = items[b][valid[b]]
    assert len(set(got.tolist())) == len(got)  # no duplicates
    assert not set(got.tolist()) & set(excl[b].tolist())
    for i, tok in zip(items[b], tokens[b]):
      if i >= 0:
        assert index[tuple(tok.tolist())] == i  # a real item, its tokens
    assert np.all(items[b][~valid[b]] == -1)
  brute = model.log_probs(layout.codes_to_tokens(codes))
  allowed = np.ones_like(brute, bool)
  for b in range(2):
    allowed[b, excl[b][excl[b] >= 0]] = False
  if beams >= len(codes):
    _check_top_k(result, brute, allowed, beams)
  elif allowed.any(axis=1).all():
    _check_sound(result, brute, allowed)


def test_gather_beams_reorders_axis_one():
  tree = {"a": jnp.arange(12).reshape(2, 3, 2), "b": jnp.arange(6).reshape(
      2, 3)}
  out = decoding.gather_beams(tree, jnp.array([[2, 2, 0, 1], [1, 0, 0, 0]]))
  np.testing.assert_array_equal(np.asarray(out["b"]),
                                [[2, 2, 0, 1], [4, 3, 3, 3]])
  assert out["a"].shape == (2, 4, 2)
  np.testing.assert_array_equal(np.asarray(out["a"][0, 0]), [4, 5])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_beams=0), "num_beams"),
    (dict(num_beams=2.5), "num_beams"),
    (dict(num_beams=2, excluded_items=jnp.zeros((1, 2), int), trie=None),
     "need a trie"),
    (dict(num_beams=2, excluded_items=jnp.zeros((2,), int)), r"\[batch"),
    (dict(num_beams=2, sample=True), "rng"),
    (dict(num_beams=2, temperature=0.0), "temperature"),
    (dict(num_beams=2, top_k=-1), "top_k"),
])
def test_bad_arguments_raise_config_error(kwargs, match):
  layout = SemanticIdLayout((2, 2))
  model = ToyModel(layout, batch=1, seed=0)
  kwargs.setdefault("trie", ItemTrie.build(np.array([[0, 1]]), layout))
  logits, cache = model.initial()
  with pytest.raises(ConfigError, match=match):
    decoding.beam_search(logits, cache, model.step_fn, layout=layout,
                         **kwargs)


def test_trie_layout_mismatch_is_rejected():
  layout = SemanticIdLayout((2, 2))
  model = ToyModel(layout, batch=1, seed=0)
  other = ItemTrie.build(np.array([[0, 1]]), SemanticIdLayout((2, 3)))
  logits, cache = model.initial()
  with pytest.raises(ConfigError, match=r"the trie was built for layout "
                                        r"SemanticIdLayout\(codebook_sizes=\(2"):
    decoding.beam_search(logits, cache, model.step_fn, layout=layout,
                         num_beams=2, trie=other)
