"""Tests for recjax.tokens."""

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest

from recjax import tokens
from recjax.errors import ConfigError


def test_layout_offsets():
  layout = tokens.SemanticIdLayout((256, 256, 256, 8), 2000)
  np.testing.assert_array_equal(layout.level_offsets, [3, 259, 515, 771])
  assert layout.user_offset == 779 and layout.vocab_size == 2779
  assert layout.level_token_range(3) == (771, 779)


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(st.lists(st.integers(1, 40), min_size=1, max_size=5),
                  st.data())
def test_roundtrip_and_disjoint_levels(sizes, data):
  layout = tokens.SemanticIdLayout(tuple(sizes))
  codes = data.draw(hnp.arrays(np.int32, (7, len(sizes)),
                               elements=st.integers(0, min(sizes) - 1)))
  toks = layout.codes_to_tokens(codes)
  np.testing.assert_array_equal(layout.tokens_to_codes(toks), codes)
  for level in range(len(sizes)):
    lo, hi = layout.level_token_range(level)
    assert np.all((toks[:, level] >= lo) & (toks[:, level] < hi))
  assert toks.min() >= tokens.NUM_SPECIAL


def test_tokens_to_codes_marks_invalid():
  layout = tokens.SemanticIdLayout((4, 4))
  np.testing.assert_array_equal(layout.tokens_to_codes([[3, 3], [0, 9]]),
                                [[0, -1], [-1, 2]])


def test_code_that_does_not_fit():
  layout = tokens.SemanticIdLayout((4, 4))
  with pytest.raises(ConfigError, match="code 4 at index \\(1, 1\\)"):
    layout.codes_to_tokens([[0, 0], [1, 4]])
  with pytest.raises(ConfigError, match="codes have 3 levels"):
    layout.codes_to_tokens([[0, 0, 0]])


def test_equality_and_user_tokens():
  a = tokens.SemanticIdLayout((8, 8), 10)
  assert a == tokens.SemanticIdLayout([8, 8], 10)
  assert a != tokens.SemanticIdLayout((8, 8), 11)
  t = a.user_token("user-42")
  assert t == a.user_token("user-42")
  assert a.user_offset <= t < a.vocab_size
  with pytest.raises(ConfigError, match="no user-hash tokens"):
    tokens.SemanticIdLayout((8,)).user_token("x")


def test_from_codes():
  layout = tokens.SemanticIdLayout.from_codes(np.array([[0, 3], [2, 1]]))
  assert layout.codebook_sizes == (3, 4)
  with pytest.raises(ConfigError, match=r"codebook_sizes must be a non-empty "
                                        r"tuple of positive sizes, got \(\)"):
    tokens.SemanticIdLayout(())
