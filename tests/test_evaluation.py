"""Tests for recjax.evaluation: full-ranking metrics of generative models."""

import itertools

import jax
import numpy as np
import pytest

from recjax import evaluation
from recjax import metrics
from recjax import network
from recjax.models import tiger as models
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie

SIZES = (4, 3, 2)
LAYOUT = SemanticIdLayout(SIZES, num_user_buckets=0)
CODES = np.array(list(itertools.product(*[range(s) for s in SIZES])),
                 np.int32)[::2]  # 12 of the 24 code tuples are items
NUM_ITEMS = len(CODES)
BATCH = 5


@pytest.fixture(scope="module")
def setup():
  cfg = network.TransformerConfig(
      vocab_size=LAYOUT.vocab_size, emb_dim=16, num_heads=2, head_dim=8,
      num_encoder_layers=1, num_decoder_layers=1, mlp_dim=32,
      dropout_rate=0.0, relative_attention_num_buckets=8,
      relative_attention_max_distance=16)
  model = models.EncoderDecoderModel(network.Transformer(cfg), layout=LAYOUT)
  params = model.get_initial_variables(
      jax.random.key(0), {"encoder_input_tokens": (1, 6),
                          "decoder_input_tokens": (1, 4)})["params"]
  rng = np.random.default_rng(0)
  history = rng.integers(0, NUM_ITEMS, size=(BATCH, 2))
  tokens = LAYOUT.codes_to_tokens(CODES[history]).reshape(BATCH, -1)
  # The whole history: the input window plus older items (-1 padded).
  seen = np.full((BATCH, 6), -1, np.int32)
  for b in range(BATCH):
    older = rng.choice(NUM_ITEMS, size=b, replace=False)
    seen[b, :b + 2] = np.concatenate([older, history[b]])
  batch = {"encoder_input_tokens": tokens.astype(np.int32),
           "history_items": history.astype(np.int32),
           "excluded_items": seen,
           "target_item": rng.integers(0, NUM_ITEMS, BATCH).astype(np.int32),
           "mask": np.array([True] * (BATCH - 1) + [False])}
  return model, params, ItemTrie.build(CODES, LAYOUT), batch


def _evaluator(setup, exclude_seen, num_decodes=NUM_ITEMS):
  model, _, trie, _ = setup
  return evaluation.RankingEvaluator(model, trie, evaluation.EvalConfig(
      num_decodes=num_decodes, exclude_seen=exclude_seen, ks=(1, 5, 10)))


def test_full_beam_ranks_every_item_once(setup):
  _, params, _, batch = setup
  items, scores = _evaluator(setup, False).recommend(params, batch)
  for row, s in zip(items, scores):
    assert sorted(row.tolist()) == list(range(NUM_ITEMS))
    assert np.all(np.diff(s) <= 1e-6)


@pytest.mark.parametrize("feature", ["excluded_items", "seen_items",
                                     "history_items"])
def test_exclusion_removes_exactly_the_seen_items(setup, feature):
  """`excluded_items` (whole history) wins over the input window; batches
  written before that name read `seen_items`, else `history_items`."""
  _, params, _, batch = setup
  batch = dict(batch)
  seen = batch.pop("excluded_items")
  if feature == "excluded_items":
    batch["excluded_items"] = seen
  elif feature == "seen_items":
    batch["seen_items"] = seen
  everything, _ = _evaluator(setup, False).recommend(params, batch)
  items, _ = _evaluator(setup, True).recommend(params, batch)
  for b in range(BATCH):
    excluded = set(batch[feature][b][batch[feature][b] >= 0].tolist())
    got = items[b][items[b] >= 0].tolist()
    # Same order as the unconstrained ranking, seen items taken out.
    assert got == [i for i in everything[b].tolist() if i not in excluded]
    assert np.all(items[b][len(got):] == -1)


def test_metrics_equal_brute_force_over_unmasked_rows(setup):
  _, params, _, batch = setup
  evaluator = _evaluator(setup, True, num_decodes=10)
  got = evaluator.evaluate(params, [batch])
  items, _ = evaluator.recommend(params, batch)
  mask = batch["mask"]
  want = metrics.ranking_metrics(items[mask], batch["target_item"][mask],
                                 ks=(1, 5, 10), num_items=NUM_ITEMS)
  assert got == pytest.approx(want)
  assert got["num_examples"] == BATCH - 1


def test_exclusion_needs_a_history_feature(setup):
  _, params, _, batch = setup
  bare = {"encoder_input_tokens": batch["encoder_input_tokens"]}
  with pytest.raises(KeyError, match=r"exclude_seen needs an "
                     r"'excluded_items' feature \(the items to exclude per "
                     r"row\); the batch has \['encoder_input_tokens'\]"):
    _evaluator(setup, True).recommend(params, bare)
  assert evaluation.excluded_items(batch) is not None
  np.testing.assert_array_equal(evaluation.excluded_items(batch),
                                batch["excluded_items"])


def test_predict_keeps_unmasked_rows_in_order(setup):
  _, params, _, batch = setup
  evaluator = _evaluator(setup, False, num_decodes=10)
  pred = evaluator.predict(params, [batch, batch])
  items, scores = evaluator.recommend(params, batch)
  mask = batch["mask"]
  np.testing.assert_array_equal(pred.items,
                                np.concatenate([items[mask], items[mask]]))
  np.testing.assert_allclose(pred.scores,
                             np.concatenate([scores[mask], scores[mask]]))
  np.testing.assert_array_equal(pred.targets[:BATCH - 1],
                                batch["target_item"][mask])
  doubled = evaluator.metrics(pred)
  single = evaluator.evaluate(params, [batch])
  assert doubled.pop("num_examples") == 2 * single.pop("num_examples")
  assert doubled == pytest.approx(single)
  empty = evaluator.predict(params, [])
  assert empty.items.shape == (0, 10) and evaluator.metrics(empty) == {}


def test_both_policies_equal_two_evaluations(setup):
  """`evaluate_both` of a generative model: the two beam searches."""
  _, params, _, batch = setup
  both = _evaluator(setup, False, 5).evaluate_both(params, [batch])
  every = _evaluator(setup, False, 5).evaluate(params, [batch])
  excl = _evaluator(setup, True, 5).evaluate(params, [batch])
  assert {k[len("test/"):]: v for k, v in both.items()
          if k.startswith("test/")} == pytest.approx(every)
  assert {k[len("test_excl/"):]: v for k, v in both.items()
          if k.startswith("test_excl/")} == pytest.approx(excl)
  assert every != excl
