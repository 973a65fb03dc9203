"""Tests for recjax.trie: construction, lookups, exclusions, errors."""

import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie


@st.composite
def catalogs(draw):
  """Random catalogs: unique code rows, incl. prefix sharing and fan-out 1."""
  levels = draw(st.integers(1, 4))
  sizes = tuple(draw(st.integers(1, 5)) for _ in range(levels))
  grid = np.array(list(itertools.product(*[range(s) for s in sizes])))
  n = draw(st.integers(1, min(len(grid), 40)))
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  if draw(st.booleans()):
    # Heavy prefix sharing: items all below a few prefixes.
    idx = np.sort(rng.choice(len(grid), size=n, replace=False))
    idx = idx[: max(1, n // 2)]
  else:
    idx = rng.choice(len(grid), size=n, replace=False)
  return SemanticIdLayout(sizes), grid[idx], rng


def _children_brute(codes: np.ndarray, prefix: tuple[int, ...]) -> set[int]:
  d = len(prefix)
  return {int(c[d]) for c in codes if tuple(c[:d]) == prefix}


def _walk(trie: ItemTrie, prefixes: jax.Array) -> jax.Array:
  """Node ids of `prefixes [n, d]` (existing prefixes), via `children`."""
  node = jnp.zeros((prefixes.shape[0],), jnp.int32)
  for level in range(prefixes.shape[1]):
    codes, child, valid = trie.children(level, node)
    hit = valid & (codes == prefixes[:, level:level + 1])
    node = jnp.sum(jnp.where(hit, child, 0), axis=-1)
  return node


@jax.jit
def _probe(trie, prefixes, excl, grid, tokens):
  """Everything the brute-force test compares, in one compiled call."""
  leaves = trie.prepare_exclusions(excl)
  per_depth = []
  for depth, p in enumerate(prefixes):
    node = _walk(trie, p)
    cc, child, valid = trie.children(depth, node)
    counts = trie.count_allowed(depth + 1, child[None], leaves)[0]
    per_depth.append((cc, valid, counts))
  return per_depth, trie.lookup(grid), trie.lookup_tokens(tokens)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(catalogs())
def test_children_and_lookup_match_brute_force(catalog):
  layout, codes, rng = catalog
  trie = ItemTrie.build(codes, layout)
  assert trie.num_items == len(codes)
  excl = rng.integers(-1, len(codes), size=(1, 6))
  excluded = {int(i) for i in excl[0] if i >= 0}
  # Half the catalogs decode over a random subset: the counts then hold
  # only the subset's items (children and lookups stay structural).
  outside = set()
  if rng.random() < 0.5:
    in_subset = rng.random(len(codes)) < 0.6
    trie = trie.with_subset(in_subset)
    outside = set(np.flatnonzero(~in_subset).tolist())
  rows = [tuple(int(x) for x in c) for c in codes]
  prefixes = []
  for depth in range(layout.num_levels):
    distinct = sorted({r[:depth] for r in rows})
    prefixes.append(np.array(distinct, np.int32).reshape(len(distinct),
                                                         depth))
  grid = np.array(list(itertools.product(
      *[range(s) for s in layout.codebook_sizes])))
  tokens = layout.codes_to_tokens(grid)
  per_depth, by_codes, by_tokens = jax.device_get(
      _probe(trie, prefixes, excl, grid, tokens))
  for depth, (cc, valid, counts) in enumerate(per_depth):
    for i, prefix in enumerate(map(tuple, prefixes[depth].tolist())):
      got = [int(x) for x in cc[i][valid[i]]]
      assert got == sorted(_children_brute(codes, prefix))
      for code, count in zip(cc[i][valid[i]], counts[i][valid[i]]):
        full = prefix + (int(code),)
        below = {j for j, r in enumerate(rows) if r[:depth + 1] == full}
        assert count == len(below - excluded - outside)
  # Every code tuple of the grid: item index or -1.
  index = {r: i for i, r in enumerate(rows)}
  want = np.array([index.get(tuple(int(x) for x in g), -1) for g in grid])
  np.testing.assert_array_equal(by_codes, want)
  np.testing.assert_array_equal(by_tokens, want)


def test_allowed_mask_matches_brute_force():
  layout = SemanticIdLayout((3, 4, 2))
  codes = np.array([[0, 0, 0], [0, 0, 1], [0, 3, 1], [2, 1, 0], [2, 1, 1]])
  trie = ItemTrie.build(codes, layout)
  root = jnp.zeros((1,), jnp.int32)
  mask = np.asarray(trie.allowed_mask(0, root))[0]
  start, _ = layout.level_token_range(0)
  assert set(np.flatnonzero(mask)) == {start + 0, start + 2}
  # Excluding items 0 and 1 leaves prefix (0, 0) with no item.
  excl = trie.prepare_exclusions(jnp.array([[1, 0, -1]]))
  node = _walk(trie, jnp.array([[0]]))[None]
  mask = np.asarray(trie.allowed_mask(1, node, excl))[0, 0]
  start, _ = layout.level_token_range(1)
  assert set(np.flatnonzero(mask)) == {start + 3}
  # Excluding all of prefix (0,) removes it at the root.
  excl = trie.prepare_exclusions(jnp.array([[0, 1, 2]]))
  mask = np.asarray(trie.allowed_mask(0, root[None], excl))[0, 0]
  start, _ = layout.level_token_range(0)
  assert set(np.flatnonzero(mask)) == {start + 2}


def test_subset_mask_and_exclusions_compose():
  layout = SemanticIdLayout((2, 2, 2))
  codes = np.array(list(itertools.product(range(2), range(2), range(2))))
  trie = ItemTrie.build(codes[::-1], layout)  # item i has code 7 - i
  sub = trie.with_subset(np.array([0, 1, 2]))  # codes 111, 110, 101
  root = jnp.zeros((1, 1), jnp.int32)
  _, child, _ = sub.children(0, root)
  counts = np.asarray(sub.count_allowed(1, child))
  np.testing.assert_array_equal(counts[0, 0], [0, 3])
  # Excluding an item outside the subset must not be subtracted twice.
  excl = sub.prepare_exclusions(jnp.array([[7, 0, 0, -1]]))
  counts = np.asarray(sub.count_allowed(1, child, excl))
  np.testing.assert_array_equal(counts[0, 0], [0, 2])
  bool_sub = trie.with_subset(np.arange(8) < 3)
  np.testing.assert_array_equal(np.asarray(bool_sub.leaf_allowed_cum),
                                np.asarray(sub.leaf_allowed_cum))
  assert trie.with_subset(None).leaf_allowed_cum is None


def test_trie_is_a_pytree_usable_in_jit():
  layout = SemanticIdLayout((4, 4))
  codes = np.array([[0, 1], [0, 2], [3, 3]])
  trie = ItemTrie.build(codes, layout)
  leaves, treedef = jax.tree.flatten(trie)
  assert all(isinstance(x, jax.Array) for x in leaves)
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert rebuilt.layout == layout

  @jax.jit
  def f(t, c):
    return t.lookup(c)

  np.testing.assert_array_equal(
      np.asarray(f(trie, jnp.array([[3, 3], [0, 2], [1, 1]]))), [2, 1, -1])


def test_memory_is_linear_and_compact():
  layout = SemanticIdLayout((256, 256, 256, 256))
  rng = np.random.default_rng(0)
  codes = np.unique(rng.integers(0, 256, size=(200_000, 4)), axis=0)
  codes = codes[rng.permutation(len(codes))]
  trie = ItemTrie.build(codes, layout)
  assert trie.nbytes / trie.num_items <= 40
  assert trie.child_codes[-1].dtype == jnp.uint8
  # Item lookups are exact for every item, in catalog order.
  np.testing.assert_array_equal(np.asarray(trie.lookup(codes[:5000])),
                                np.arange(5000))


def test_duplicate_rows_are_rejected():
  with pytest.raises(ConfigError, match="duplicate rows: items 0 and 2"):
    ItemTrie.build(np.array([[1, 2], [0, 1], [1, 2]]),
                   SemanticIdLayout((4, 4)))


@pytest.mark.parametrize("codes, layout, match", [
    (np.array([[0, 5]]), SemanticIdLayout((4, 4)), "does not fit level 1"),
    (np.array([[0, 1, 2]]), SemanticIdLayout((4, 4)), "3 levels"),
    (np.array([[-1, 0]]), SemanticIdLayout((4, 4)), "does not fit level 0"),
    (np.zeros((0, 2), int), SemanticIdLayout((4, 4)), "non-empty"),
    (np.array([0, 1]), SemanticIdLayout((4, 4)), "non-empty"),
    (np.array([[0.5, 1.0]]), SemanticIdLayout((4, 4)), "integers"),
])
def test_bad_codes_raise_config_error(codes, layout, match):
  with pytest.raises(ConfigError, match=match):
    ItemTrie.build(codes, layout)


def test_bad_subset_raises_config_error():
  trie = ItemTrie.build(np.array([[0], [1]]), SemanticIdLayout((2,)))
  with pytest.raises(ConfigError, match=r"subset mask has shape \(1,\), "
                                        r"expected \(2,\)\."):
    trie.with_subset(np.array([True]))
  with pytest.raises(ConfigError, match=r"subset item indices must be in "
                                        r"\[0, 2\)"):
    trie.with_subset(np.array([2]))
