"""Tests for recjax.models.base (top-K with exclusion) and the item loss."""

import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.errors import ConfigError
from recjax.models import base as item_models
from recjax.models import losses


def _brute_top_k(scores, k, excluded=None, allowed=None):
  """Reference: sort each row, skipping excluded / disallowed items."""
  out = np.full((len(scores), k), -1)
  for i, row in enumerate(scores):
    bad = set() if excluded is None else {int(x) for x in excluded[i]
                                          if x >= 0}
    cands = [j for j in np.argsort(-row, kind="stable")
             if j not in bad and (allowed is None or allowed[j])]
    out[i, :min(k, len(cands))] = cands[:k]
  return out


def test_exclusion_mask_marks_exactly_the_listed_items():
  excluded = np.array([[3, -1, 0], [-1, -1, -1], [4, 4, 1]])
  mask = np.asarray(item_models.exclusion_mask(5, excluded))
  expected = np.zeros((3, 5), bool)
  expected[0, [0, 3]] = True
  expected[2, [1, 4]] = True
  np.testing.assert_array_equal(mask, expected)


def test_top_k_matches_brute_force_with_exclusion_and_allowed():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(6, 12)).astype(np.float32)
  excluded = rng.integers(-1, 12, size=(6, 5))
  allowed = rng.random(12) < 0.8
  for exc, alw in ((None, None), (excluded, None), (excluded, allowed)):
    items, top = item_models.top_k_items(scores, 4, exc, alw)
    items, top = np.asarray(items), np.asarray(top)
    np.testing.assert_array_equal(items, _brute_top_k(scores, 4, exc, alw))
    want = np.where(items >= 0,
                    np.take_along_axis(scores, np.maximum(items, 0), 1),
                    -np.inf)
    np.testing.assert_allclose(top, want, rtol=1e-6)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(n=st.integers(1, 10), k=st.integers(1, 10),
                  per_row=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_top_k_over_random_catalog_subsets_matches_brute_force(
    n, k, per_row, seed):
  k = min(k, n)
  rng = np.random.default_rng(seed)
  # Few distinct values: ties must go to the smaller item index.
  scores = rng.integers(0, 3, size=(3, n)).astype(np.float32)
  excluded = rng.integers(-1, n, size=(3, rng.integers(0, 4)))
  allowed = rng.random((3, n) if per_row else n) < 0.6
  items, top = item_models.top_k_items(scores, k, excluded, allowed)
  items = np.asarray(items)
  rows = allowed if per_row else np.broadcast_to(allowed, (3, n))
  for i in range(3):
    want = _brute_top_k(scores[i:i + 1], k, excluded[i:i + 1], rows[i])[0]
    # Same scores in the same order; the same set of items per score.
    got_scores = [scores[i, j] for j in items[i] if j >= 0]
    want_scores = [scores[i, j] for j in want if j >= 0]
    assert got_scores == want_scores
    assert set(items[i][items[i] >= 0]) <= {
        j for j in range(n) if rows[i][j] and j not in set(excluded[i])}
    assert len(set(items[i][items[i] >= 0])) == (items[i] >= 0).sum()
  assert np.isneginf(np.asarray(top)[items < 0]).all()


def test_top_k_pads_when_fewer_than_k_items_remain():
  scores = np.array([[0.5, 0.1, 0.9, 0.3]], np.float32)
  items, top = item_models.top_k_items(scores, 3, np.array([[2, 0, -1]]))
  np.testing.assert_array_equal(np.asarray(items), [[3, 1, -1]])
  assert np.isneginf(np.asarray(top)[0, 2])


def test_top_k_rejects_k_larger_than_catalog():
  with pytest.raises(ConfigError, match=r"k=5 must be in \[1, num_items=4\]"):
    item_models.top_k_items(np.zeros((1, 4)), 5)


def test_softmax_item_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 4, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(3, 4))
  targets[0, :2] = -1
  targets[2, 3] = -1
  loss, m = losses.softmax_item_loss(logits, targets)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  w = targets >= 0
  nll = -np.take_along_axis(log_p, np.maximum(targets, 0)[..., None],
                            -1)[..., 0]
  np.testing.assert_allclose(float(loss), nll[w].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(m["cross_ent_loss"]), nll[w].sum(),
                             rtol=1e-5)
  assert float(m["num_tokens"]) == w.sum()
  correct = (logits.argmax(-1) == targets) & w
  assert float(m["accuracy"]) == correct.sum()


def test_softmax_item_loss_with_no_targets_is_zero_not_nan():
  loss, m = losses.softmax_item_loss(np.ones((2, 3, 5)),
                                          -np.ones((2, 3), int))
  assert float(loss) == 0.0 and float(m["num_tokens"]) == 0.0


class _Bias(nn.Module):
  """Scores: a learned bias per item plus the last input item's one-hot."""

  num_items: int

  @nn.compact
  def __call__(self, input_items):
    bias = self.param("bias", nn.initializers.normal(1.0), (self.num_items,))
    last = jnp.maximum(input_items[:, -1], 0)
    return bias[None] + 3.0 * jax.nn.one_hot(last, self.num_items)


class _BiasModel(item_models.ItemModel):

  def __init__(self, num_items):
    self.module = _Bias(num_items)
    self.num_items = num_items

  def loss_fn(self, params, batch, dropout_rng):
    raise NotImplementedError

  def item_scores(self, params, batch):
    return self.module.apply({"params": params}, batch["input_items"])

  def _init_inputs(self, input_shapes):
    return (jnp.zeros(tuple(input_shapes["input_items"]), jnp.int32),), {}


def test_item_model_predict_and_score_follow_item_scores():
  model = _BiasModel(6)
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (2, 3)})["params"]
  batch = {"input_items": np.array([[-1, 2, 4], [0, 1, 5]], np.int32),
           "excluded_items": np.array([[4, -1], [-1, -1]], np.int32),
           "target_item": np.array([3, 5], np.int32)}
  scores = np.asarray(model.item_scores(params, batch))
  items, aux = model.predict_batch_with_aux(params, batch, num_decodes=3)
  np.testing.assert_array_equal(
      np.asarray(items), _brute_top_k(scores, 3, batch["excluded_items"]))
  assert np.asarray(items)[0, 0] != 4 and np.asarray(items)[1, 0] == 5
  assert np.asarray(aux["valid"]).all()
  log_p = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(model.score_batch(params, batch)),
                             log_p[[0, 1], [3, 5]], rtol=1e-5)


def test_training_logits_leave_the_cold_items_out_of_the_softmax():
  model = _BiasModel(6)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 6)).astype(np.float32)
  targets = np.array([0, 2, 5])
  assert model.training_logits(logits) is logits  # No cold items: as is.
  model.cold_items = np.array([1, 4])
  keep = [0, 2, 3, 5]
  loss, _ = losses.softmax_item_loss(model.training_logits(logits), targets)
  # Brute force: the softmax over the other items only.
  sub = logits[:, keep]
  want = np.mean(np.log(np.exp(sub).sum(-1)) - logits[[0, 1, 2], targets])
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  grad = jax.grad(lambda x: losses.softmax_item_loss(
      model.training_logits(x), targets)[0])(jnp.asarray(logits))
  assert np.all(np.asarray(grad)[:, [1, 4]] == 0.0)
  assert np.all(np.abs(np.asarray(grad)[:, keep]) > 0.0)
