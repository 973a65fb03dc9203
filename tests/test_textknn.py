"""Tests for the `textknn` family: cosine neighbours of the last item."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.models.textknn import make_textknn


class _Catalog:
  name = "toy"

  def __init__(self, n):
    self.num_items = n


def test_scores_are_cosines_to_the_last_item_by_brute_force():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(9, 5)).astype(np.float32)
  model = make_textknn(_Catalog(9), table)
  params = model.get_initial_variables(jax.random.key(0),
                                       {"input_items": (3, 4)})["params"]
  batch = {"input_items": np.array([[-1, -1, 2, 7], [0, 1, 2, 3],
                                    [-1, -1, -1, -1]], np.int32)}
  scores = np.asarray(model.item_scores(params, batch))
  unit = table / np.linalg.norm(table, axis=1, keepdims=True)
  for row, last in ((0, 7), (1, 3)):
    np.testing.assert_allclose(scores[row] / 20.0, unit @ unit[last],
                               rtol=1e-5, atol=1e-6)
    assert int(np.argmax(scores[row])) == last  # itself first
  np.testing.assert_array_equal(scores[2], 0.0)  # an empty history


def test_missing_or_mismatched_embeddings_are_clear_errors():
  with pytest.raises(ConfigError, match=r"textknn needs frozen item text "
                     r"embeddings .* run the embed stage"):
    make_textknn(_Catalog(4), None)
  with pytest.raises(ConfigError, match=r"textknn: item embeddings have "
                     r"shape \(3, 2\), expected \[num_items=4"):
    make_textknn(_Catalog(4), np.ones((3, 2)))
