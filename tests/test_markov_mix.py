"""Tests for benchmarks/markov_mix.py: the mixture's rankings."""

import bench_scripts
import numpy as np

mix = bench_scripts.load("markov_mix")


def test_the_end_weights_are_each_part_and_exclusion_holds():
  rng = np.random.default_rng(0)
  model = rng.normal(size=(4, 30))
  counts = rng.integers(0, 5, size=(4, 30)).astype(float) + rng.random(
      (4, 30)) * 1e-3  # no ties
  out = mix.mixed_lists(model, counts, (0.0, 0.5, 1.0), k=5)
  np.testing.assert_array_equal(out[0.0], np.argsort(-model, 1)[:, :5])
  np.testing.assert_array_equal(out[1.0], np.argsort(-counts, 1)[:, :5])
  p_model = np.exp(model) / np.exp(model).sum(1, keepdims=True)
  p = 0.5 * p_model + 0.5 * counts / counts.sum(1, keepdims=True)
  np.testing.assert_array_equal(out[0.5], np.argsort(-p, 1)[:, :5])
  exclude = [np.array([int(out[0.5][r, 0]), -1]) for r in range(4)]
  again = mix.mixed_lists(model, counts, (0.5,), exclude, k=5)[0.5]
  for r in range(4):
    assert exclude[r][0] not in again[r]
    np.testing.assert_array_equal(again[r][:4], out[0.5][r, 1:])
