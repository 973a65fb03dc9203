"""Tests for recjax.quantizers.collisions (invariants with hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recjax.errors import ConfigError
from recjax.quantizers import collisions


def _unique_rows(x):
  return len(np.unique(x, axis=0)) == len(x)


codes_strategy = st.integers(1, 40).flatmap(
    lambda n: st.integers(1, 3).flatmap(
        lambda levels: hnp.arrays(np.int32, (n, levels),
                                  elements=st.integers(0, 3))))


@settings(max_examples=60, deadline=None)
@given(codes_strategy)
def test_append_level_invariants(codes):
  out = collisions.append_level(codes)
  assert out.shape == (codes.shape[0], codes.shape[1] + 1)
  assert _unique_rows(out)
  np.testing.assert_array_equal(out[:, :-1], codes)
  _, inverse, counts = np.unique(codes, axis=0, return_inverse=True,
                                 return_counts=True)
  inverse = inverse.reshape(-1)
  # Items with a unique code get 0; a group of n gets 0..n-1 in item order.
  for g, n in enumerate(counts):
    members = np.flatnonzero(inverse == g)
    np.testing.assert_array_equal(out[members, -1], np.arange(n))


def test_append_level_respects_a_fixed_collision_codebook():
  codes = np.array([[1, 2]] * 3 + [[0, 0]])
  assert collisions.append_level(codes, max_codes=3)[:, -1].tolist() == [
      0, 1, 2, 0]
  with pytest.raises(ConfigError, match="3 items share.*only 2 codes"):
    collisions.append_level(codes, max_codes=2)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_sinkhorn_reassign_invariants(data):
  k = data.draw(st.integers(2, 6))
  levels = data.draw(st.integers(1, 3))
  n = data.draw(st.integers(1, 30))
  codes = data.draw(hnp.arrays(np.int32, (n, levels),
                               elements=st.integers(0, k - 1)))
  if levels > 1:  # At most k items per prefix, so a solution exists.
    codes[:, 0] = np.arange(n) // k
  else:
    codes = codes[:k]
    n = len(codes)
  dist = data.draw(hnp.arrays(np.float64, (n, k),
                              elements=st.floats(0, 10)))
  out = collisions.sinkhorn_reassign(codes, dist)
  assert _unique_rows(out)
  np.testing.assert_array_equal(out[:, :-1], codes[:, :-1])
  assert out.min() >= 0 and out[:, -1].max() < k
  _, inverse, counts = np.unique(codes, axis=0, return_inverse=True,
                                 return_counts=True)
  alone = counts[inverse.reshape(-1)] == 1
  np.testing.assert_array_equal(out[alone], codes[alone])
  # Each contested code stays with one of its holders.
  changed = (out != codes).any(1)
  assert changed.sum() == n - len(counts)


def test_sinkhorn_reassign_keeps_the_closest_holder_and_uses_free_codes():
  codes = np.array([[0, 1], [0, 1], [0, 1], [1, 1]])
  dist = np.array([[5.0, 0.2, 9.0, 9.0],
                   [0.1, 0.1, 9.0, 9.0],   # closest holder of code 1
                   [9.0, 0.3, 9.0, 0.0],
                   [0.0, 0.0, 0.0, 0.0]])
  out = collisions.sinkhorn_reassign(codes, dist)
  assert out[1].tolist() == [0, 1] and out[3].tolist() == [1, 1]
  assert out[0].tolist() == [0, 0] and out[2].tolist() == [0, 3]


def test_sinkhorn_reassign_fails_when_a_prefix_is_too_large():
  codes = np.zeros((5, 2), np.int32)
  with pytest.raises(ConfigError, match="5 items share the prefix.*only 4"):
    collisions.sinkhorn_reassign(codes, np.zeros((5, 4)))


def test_deduplicate_dispatch():
  codes = np.array([[0, 0], [0, 0]])
  assert collisions.deduplicate(codes, "append").shape == (2, 3)
  assert collisions.deduplicate(codes, "sinkhorn",
                                np.zeros((2, 2))).shape == (2, 2)
  with pytest.raises(ConfigError,
                     match=r"collisions='random' is not a strategy; choose "
                           r"one of"):
    collisions.deduplicate(codes, "random")


def test_no_deduplication_keeps_shared_codes():
  codes = np.array([[0, 1], [0, 1], [2, 3]])
  kept = collisions.deduplicate(codes, "none")
  np.testing.assert_array_equal(kept, codes)
  assert kept.dtype == np.int32 and kept is not codes
