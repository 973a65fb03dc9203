"""Tests for recjax.models.sasrec (SASRec)."""

import math

import jax
import numpy as np
import optax
import pytest

from recjax import datasets
from recjax import evaluation
from recjax import item_sequences
from recjax import partitioning
from recjax.errors import ConfigError
from recjax.evaluation import EvalConfig
from recjax.models import sasrec as sequential

N_ITEMS, LEN = 11, 6


def _model(**kw):
  cfg = dict(num_items=N_ITEMS, hidden_dim=16, num_layers=2, num_heads=2,
             mlp_dim=24, max_length=LEN, dropout_rate=0.3,
             attention_dropout_rate=0.3)
  cfg.update(kw)
  return sequential.SASRecModel(sequential.SASRecConfig(**cfg))


@pytest.fixture(scope="module", params=[("pre", "recent"),
                                        ("post", "first")])
def model_and_params(request):
  norm, positions = request.param  # the original SASRec and RecBole's
  model = _model(norm=norm, positions=positions)
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (2, LEN)})["params"]
  # Larger random weights than the 0.02 init, so that every input matters.
  rng = np.random.default_rng(1)
  params = jax.tree.map(
      lambda x: np.asarray(x) + 0.3 * rng.normal(size=x.shape).astype(
          np.float32), params)
  return model, params


def _hidden(model, params, inputs):
  return np.asarray(jax.jit(model.hidden_states)(params, inputs))


def test_outputs_are_causal(model_and_params):
  model, params = model_and_params
  base = np.array([[-1, 3, 5, 7, 2, 9], [1, 2, 3, 4, 5, 6]], np.int32)
  h0 = _hidden(model, params, base)
  for col in range(1, LEN):
    changed = base.copy()
    changed[:, col] = (changed[:, col] + 4) % N_ITEMS
    h1 = _hidden(model, params, changed)
    np.testing.assert_allclose(h1[:, :col], h0[:, :col], atol=1e-5)
    assert np.abs(h1[:, col:] - h0[:, col:]).max() > 1e-3


def test_padding_columns_do_not_matter(model_and_params):
  model, params = model_and_params
  short = np.array([[4, 8, 1]], np.int32)
  padded = np.array([[-1, -1, -1, 4, 8, 1]], np.int32)
  a = _hidden(model, params, short)
  b = _hidden(model, params, padded)
  np.testing.assert_allclose(a, b[:, 3:], atol=1e-5)
  empty = _hidden(model, params, np.full((1, LEN), -1, np.int32))
  assert np.isfinite(empty).all()


def test_scores_and_softmax_loss_match_numpy(model_and_params):
  model, params = model_and_params
  inputs = np.array([[-1, -1, 3, 5, 7, 2], [1, 2, 3, 4, 5, 6]], np.int32)
  targets = np.array([[-1, -1, 5, 7, 2, 0], [-1, 3, -1, 5, 6, 10]],
                     np.int32)
  h = _hidden(model, params, inputs).astype(np.float64)
  emb = model.item_embeddings(params).astype(np.float64)
  assert emb.shape == (N_ITEMS, 16)
  logits = h @ emb.T
  np.testing.assert_allclose(
      np.asarray(jax.jit(model.item_scores)(params,
                                            {"input_items": inputs})),
      logits[:, -1], rtol=1e-4, atol=1e-4)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  w = targets >= 0
  nll = -np.take_along_axis(log_p, np.maximum(targets, 0)[..., None],
                            -1)[..., 0]
  loss, m = jax.jit(model.loss_fn)(
      params, {"input_items": inputs, "target_items": targets}, None)
  np.testing.assert_allclose(float(loss), nll[w].mean(), rtol=1e-4)
  assert float(m["num_tokens"]) == w.sum()


def _layer_norm(x, scale, bias, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def _gelu(x):
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / np.sqrt(2.0)))


@pytest.mark.parametrize("positions", sequential.POSITIONS)
def test_post_norm_matches_a_numpy_recbole_style_encoder(positions):
  # RecBole's SASRec: LN(emb + pos) -> [LN(x + Attn(x)), LN(x + FFN(x))]*L,
  # written here in float64 numpy from the equations, no dropout; RecBole
  # numbers positions from the first item ("first").
  model = _model(norm="post", num_heads=2, positions=positions)
  params = model.get_initial_variables(
      jax.random.key(7), {"input_items": (1, LEN)})["params"]
  rng = np.random.default_rng(2)
  params = jax.tree.map(lambda x: np.asarray(x, np.float64) + 0.3 *
                        rng.normal(size=x.shape), params)
  inputs = np.array([[-1, -1, 3, 5, 7, 2]], np.int32)
  got = _hidden(model, jax.tree.map(lambda x: x.astype(np.float32), params),
                inputs)[0]
  eps = model.config.layer_norm_epsilon
  p = params
  ln = lambda x, q: _layer_norm(x, q["scale"], q["bias"], eps)
  valid = inputs[0] >= 0
  pos = np.arange(LEN) - (LEN - valid.sum()) if positions == "first" else \
      np.arange(LEN)
  x = (p["item_embedding"][np.maximum(inputs[0], 0)] +
       p["position_embedding"][np.maximum(pos, 0)])
  x = ln(x, p["embedding_norm"]) * valid[:, None]
  allowed = np.tril(np.ones((LEN, LEN), bool)) & valid[None]
  for i in range(model.config.num_layers):
    q = p[f"layer_{i}"]
    a = q["attention"]
    heads = [np.einsum("ld,dhk->hlk", x, a[n]["kernel"]) +
             a[n]["bias"][:, None] for n in ("query", "key", "value")]
    s_ = np.einsum("hqk,hlk->hql", heads[0], heads[1]) / np.sqrt(8)
    s_ = np.where(allowed[None], s_, -1e10)
    w = np.exp(s_ - s_.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    ctx = np.einsum("hql,hlk->qhk", w, heads[2])
    att = np.einsum("qhk,hkd->qd", ctx, a["out"]["kernel"]) + a["out"]["bias"]
    x = ln(x + att, q["post_attention_norm"])
    m = q["mlp"]
    h = _gelu(x @ m["wi"]["kernel"] + m["wi"]["bias"])
    x = ln(x + h @ m["wo"]["kernel"] + m["wo"]["bias"], q["post_mlp_norm"])
    x = x * valid[:, None]
  assert "final_norm" not in params
  np.testing.assert_allclose(got[valid], x[valid], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("loss,num_items", [("softmax", N_ITEMS),
                                             ("bce", 2)])
def test_last_position_loss_equals_all_positions_on_prefix_batches(
    loss, num_items):
  # Prefix examples have a target in the last column only, so scoring just
  # that column gives the same loss and metrics as scoring every column.
  # (With 2 items the BCE negative is the other item, whatever the draw.)
  kw = dict(loss=loss, num_items=num_items, dropout_rate=0.0,
            attention_dropout_rate=0.0)
  all_pos, last = _model(**kw), _model(train_positions="last", **kw)
  params = all_pos.get_initial_variables(
      jax.random.key(4), {"input_items": (3, LEN)})["params"]
  inputs = np.array([[-1, -1, -1, -1, 3, 5], [-1, 1, 2, 3, 4, 5],
                     [6, 7, 8, 9, 10, 0]], np.int32)
  inputs = np.where(inputs >= 0, inputs % num_items, -1)
  targets = np.full((3, LEN), -1, np.int32)
  targets[:, -1] = np.array([7, 6, 1]) % num_items
  batch = {"input_items": inputs, "target_items": targets}
  key = jax.random.key(9) if loss == "bce" else None
  a = jax.jit(all_pos.loss_fn)(params, batch, key)
  b = jax.jit(last.loss_fn)(params, batch, key)
  np.testing.assert_allclose(float(a[0]), float(b[0]), rtol=1e-5)
  for k in ("cross_ent_loss", "accuracy", "num_tokens"):
    np.testing.assert_allclose(float(a[1][k]), float(b[1][k]), rtol=1e-5)
  assert float(b[1]["num_tokens"]) == 3.0


def test_bce_loss_with_two_items_uses_the_other_item_as_negative():
  model = _model(num_items=2, loss="bce", dropout_rate=0.0,
                 attention_dropout_rate=0.0)
  params = model.get_initial_variables(
      jax.random.key(3), {"input_items": (1, LEN)})["params"]
  params["item_embedding"] = params["item_embedding"] * 40.0
  inputs = np.array([[-1, 0, 1, 1, 0, 1]], np.int32)
  targets = np.array([[-1, 1, 1, 0, 1, -1]], np.int32)
  h = _hidden(model, params, inputs).astype(np.float64)[0]
  emb = model.item_embeddings(params).astype(np.float64)
  pos = np.array([h[i] @ emb[t] for i, t in enumerate(targets[0]) if t >= 0])
  neg = np.array([h[i] @ emb[1 - t] for i, t in enumerate(targets[0])
                  if t >= 0])
  want = np.mean(np.log1p(np.exp(-pos)) + np.log1p(np.exp(neg)))
  batch = {"input_items": inputs, "target_items": targets}
  loss_fn = jax.jit(model.loss_fn)
  for rng in (None, jax.random.key(5)):  # no dropout: rng only draws negs
    loss, m = loss_fn(params, batch, rng)
    np.testing.assert_allclose(float(loss), want, rtol=1e-4)
    assert float(m["accuracy"]) == float((pos > neg).sum())


def test_dropout_is_keyed_by_the_rng(model_and_params):
  model, params = model_and_params
  batch = {"input_items": np.array([[1, 2, 3, 4, 5, 6]], np.int32),
           "target_items": np.array([[2, 3, 4, 5, 6, 7]], np.int32)}
  loss_fn = jax.jit(lambda p, r: model.loss_fn(p, batch, r)[0])
  det = float(jax.jit(model.loss_fn)(params, batch, None)[0])
  a, b, c = (float(loss_fn(params, jax.random.key(k))) for k in (1, 1, 2))
  assert a == b and a != det and a != c


def test_params_carry_known_logical_axes(model_and_params):
  model, params = model_and_params
  axes = model.get_logical_axes({"input_items": (2, LEN)})["params"]
  known = {name for name, _ in partitioning.DEFAULT_RULES}
  flat_axes = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(
      x, jax.sharding.PartitionSpec))
  flat_params = jax.tree.leaves(params)
  assert len(flat_axes) == len(flat_params)
  for spec, p in zip(flat_axes, flat_params):
    assert len(spec) == p.ndim and set(spec) <= known, (spec, p.shape)
  assert axes["item_embedding"] == jax.sharding.PartitionSpec("vocab",
                                                              "embed")


def test_bad_configs_and_inputs_fail_clearly(model_and_params):
  with pytest.raises(ConfigError, match="divisible by num_heads=3"):
    sequential.SASRecConfig(hidden_dim=16, num_heads=3)
  with pytest.raises(ConfigError, match=r"SASRecConfig\.loss='focal'; use "
                                        r"one of \('softmax', 'bce'\)"):
    sequential.SASRecConfig(loss="focal")
  with pytest.raises(ConfigError, match=r"SASRecConfig\.positions='last'; "
                                        r"use one of \('recent', 'first'\)"):
    sequential.SASRecConfig(positions="last")
  with pytest.raises(ConfigError, match=r"SASRecConfig\.norm='mid'; use one "
                                        r"of \('pre', 'post'\)"):
    sequential.SASRecConfig(norm="mid")
  with pytest.raises(ConfigError, match="train_positions='first'"):
    sequential.SASRecConfig(train_positions="first")
  with pytest.raises(ConfigError, match=r"SASRecConfig\.num_items must be >= "
                                        r"2, got 0; build the model with "
                                        r"make_sasrec\(dataset\)\."):
    sequential.SASRecModel(sequential.SASRecConfig())
  model, params = model_and_params
  with pytest.raises(ConfigError, match=r"input_items has 7 columns, more "
                                        r"than SASRecConfig\.max_length=6"):
    model.hidden_states(params, np.zeros((1, LEN + 1), np.int32))


def test_make_sasrec_and_export_item_embeddings(tmp_path, model_and_params):
  ds = datasets.load("synthetic", num_users=5, num_items=12, num_clusters=2)
  built = sequential.make_sasrec(ds, np.zeros((3, 2)),
                                 sequential.SASRecConfig(hidden_dim=8))
  assert built.num_items == 12 and built.config.hidden_dim == 8
  model, params = model_and_params
  path = model.export_item_embeddings(params, tmp_path / "cf" / "emb.npy")
  np.testing.assert_array_equal(np.load(path),
                                np.asarray(params["item_embedding"]))
  assert sorted(p.name for p in path.parent.iterdir()) == ["emb.npy"]


def test_learns_a_deterministic_successor_pattern():
  # Every user walks a fixed cycle of items, so the next item is a function
  # of the last one: a working SASRec gets it (nearly) always right.
  # Sequences are longer than the window, so training fills every position.
  ds = datasets.load("synthetic", num_users=100, num_items=30,
                     num_clusters=3, p_successor=1.0, min_length=12,
                     mean_extra_length=1.0, max_length=14, seed=0)
  splits = datasets.leave_one_out(ds, max_history=None)
  src = item_sequences.TrainBatches(
      item_sequences.sequence_examples(splits["train"], 8), 25, seed=0,
      num_shards=1, shard_index=0)
  model = sequential.SASRecModel(sequential.SASRecConfig(
      num_items=30, hidden_dim=16, num_layers=1, num_heads=1, mlp_dim=16,
      max_length=8, dropout_rate=0.0, attention_dropout_rate=0.0))
  params = model.get_initial_variables(jax.random.key(0),
                                       src.input_shapes)["params"]
  tx = optax.adam(1e-2)

  @jax.jit
  def steps(params, opt, batches):
    def body(carry, batch):
      p, o = carry
      grads = jax.grad(lambda q: model.loss_fn(q, batch, None)[0])(p)
      updates, o = tx.update(grads, o, p)
      return (optax.apply_updates(p, updates), o), None
    return jax.lax.scan(body, (params, opt), batches)[0]

  batches = [src.batch(s) for s in range(100)]
  stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
  params, _ = steps(params, tx.init(params), stacked)
  evaluator = evaluation.RankingEvaluator(
      model, config=EvalConfig(num_decodes=5, ks=(1, 5)))
  test = item_sequences.EvalBatches(
      item_sequences.eval_arrays(splits["test"], 8), 64)
  metrics = evaluator.evaluate(params, test)
  assert metrics["recall@1"] >= 0.95, metrics
