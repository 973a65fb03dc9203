"""Tests for recjax.retrieval (full-catalog ranking of item models)."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import evaluation
from recjax import item_sequences
from recjax import metrics as metrics_lib
from recjax import retrieval
from recjax.errors import ConfigError
from recjax.evaluation import EvalConfig
from recjax.models import base as item_models

N = 9


class _Table(nn.Module):
  """Scores = a row of a table, chosen by the last input item."""

  @nn.compact
  def __call__(self, input_items):
    table = self.param("table", nn.initializers.normal(1.0), (N, N))
    return table[jnp.maximum(input_items[:, -1], 0)]


class _TableModel(item_models.ItemModel):
  """A minimal ItemModel with known scores."""

  def __init__(self):
    self.module = _Table()
    self.num_items = N

  def loss_fn(self, params, batch, dropout_rng):
    raise NotImplementedError

  def item_scores(self, params, batch):
    return self.module.apply({"params": params}, batch["input_items"])

  def _init_inputs(self, input_shapes):
    return (jnp.zeros(tuple(input_shapes["input_items"]), jnp.int32),), {}


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  n = 23
  hist = rng.integers(-1, N, size=(n, 6))
  hist[:, -1] = rng.integers(0, N, size=n)  # at least one real item
  hist[3] = [0, 1, 2, 3, 4, 5]  # few unseen items left for this user
  hist[4] = [6, 7, 8, 0, 1, 2]
  arrays = {"input_items": hist[:, -3:].astype(np.int32),
            "excluded_items": hist.astype(np.int32),
            "target_item": rng.integers(0, N, size=n).astype(np.int32)}
  batches = item_sequences.EvalBatches(arrays, 8)  # last batch padded
  table = rng.normal(size=(N, N)).astype(np.float32)
  return _TableModel(), {"table": table}, arrays, batches


def _reference(table, arrays, k, exclude):
  preds = np.full((len(arrays["target_item"]), k), -1)
  for i, last in enumerate(arrays["input_items"][:, -1]):
    seen = set(arrays["excluded_items"][i][arrays["excluded_items"][i] >= 0])
    order = [j for j in np.argsort(-table[last], kind="stable")
             if not (exclude and j in seen)]
    preds[i, :min(k, len(order))] = order[:k]
  return preds


@pytest.mark.parametrize("exclude", [False, True])
def test_evaluate_matches_brute_force_over_real_rows(setup, exclude):
  model, params, arrays, batches = setup
  cfg = EvalConfig(num_decodes=5, exclude_seen=exclude, ks=(1, 3, 5))
  got = evaluation.RankingEvaluator(model, config=cfg).evaluate(params, batches)
  want = metrics_lib.ranking_metrics(
      _reference(params["table"], arrays, 5, exclude), arrays["target_item"],
      ks=(1, 3, 5), num_items=N)
  assert got == pytest.approx(want)
  assert got["num_examples"] == 23  # the 1 padding row is not counted


def test_exclusion_never_returns_a_seen_item(setup):
  model, params, arrays, _ = setup
  ev = evaluation.RankingEvaluator(
      model, config=EvalConfig(num_decodes=5, exclude_seen=True))
  items, _ = ev.recommend(params, arrays)
  for row, hist in zip(items, arrays["excluded_items"]):
    real = row[row >= 0]
    assert len(set(real.tolist())) == len(real)
    assert not set(real.tolist()) & set(hist.tolist())
    assert len(real) == min(5, N - len(set(hist[hist >= 0].tolist())))
  assert set(items[3][:3].tolist()) == {6, 7, 8}
  assert set(items[4][:3].tolist()) == {3, 4, 5}
  assert (items[3:5, 3:] == -1).all()


def test_evaluate_both_equals_the_two_policies(setup):
  model, params, _, batches = setup
  cfg = EvalConfig(num_decodes=20, ks=(1, 5, 10, 20))  # 20 > N: capped
  both = evaluation.RankingEvaluator(model, config=cfg).evaluate_both(
      params, batches)
  every = evaluation.RankingEvaluator(model, config=cfg).evaluate(
      params, batches)
  excl = evaluation.RankingEvaluator(
      model, config=EvalConfig(num_decodes=20, exclude_seen=True,
                        ks=(1, 5, 10, 20))).evaluate(params, batches)
  assert {k[len("test/"):]: v for k, v in both.items()
          if k.startswith("test/")} == pytest.approx(every)
  assert {k[len("test_excl/"):]: v for k, v in both.items()
          if k.startswith("test_excl/")} == pytest.approx(excl)
  assert "recall@20" not in every and every["recall@5"] <= 1.0
  assert excl["invalid_rate"] > 0  # users 3 and 4 have < 9 unseen items


def test_old_name_warns_and_builds_the_one_evaluator(setup):
  model, _, _, _ = setup
  with pytest.warns(FutureWarning,
                    match="recjax.retrieval.ItemRankingEvaluator moved to "
                    "recjax.evaluation.RankingEvaluator"):
    ev = retrieval.ItemRankingEvaluator(model, EvalConfig(num_decodes=3))
  assert isinstance(ev, evaluation.RankingEvaluator)


def test_a_generative_model_needs_the_trie():
  from recjax import network  # pylint: disable=g-import-not-at-top
  from recjax.models import tiger  # pylint: disable=g-import-not-at-top
  from recjax.tokens import SemanticIdLayout  # pylint: disable=g-import-not-at-top
  layout = SemanticIdLayout((4, 4))
  model = tiger.make_encoder_decoder(layout, network.TransformerConfig(
      emb_dim=8, num_heads=1, head_dim=8, num_encoder_layers=1,
      num_decoder_layers=1, mlp_dim=8))
  with pytest.raises(ConfigError, match=r"EncoderDecoderModel generates "
                     r"semantic IDs: pass the catalog trie"):
    evaluation.RankingEvaluator(model)
