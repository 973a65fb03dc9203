"""Tests for recjax.models.learn (LEARN twin towers)."""

import importlib.util
import pathlib

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recjax import gin_utils
from recjax.datasets.canonical import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError
from recjax.models import learn as dual_encoder
from recjax.models import losses
from recjax.models.base import top_k_items

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin_configs"
TINY = dual_encoder.DualEncoderConfig(d_model=16, num_layers=2, num_heads=2,
                                      mlp_dim=32, dropout_rate=0.1,
                                      max_length=8)


def _dataset(num_items: int):
  items = ItemTable([f"i{i}" for i in range(num_items)],
                    {"title": [f"item {i}" for i in range(num_items)]})
  seqs = [[i % num_items, (i + 1) % num_items] for i in range(4)]
  return from_sequences("toy", items, [f"u{u}" for u in range(4)], seqs)


def _table(num_items: int, dim: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(num_items, dim)).astype(
      np.float32)


def _model(num_items: int = 20, config=TINY, seed: int = 0):
  model = dual_encoder.DualEncoderModel(_table(num_items, 12), config)
  params = model.get_initial_variables(
      jax.random.key(seed), {"input_items": (2, 6)})["params"]
  return model, params


def _successor_batch(rng: np.random.Generator, batch_size: int, length: int,
                     num_items: int) -> dict[str, np.ndarray]:
  """Rows of consecutive items (mod num_items), right-aligned, -1 padded."""
  inputs = np.full((batch_size, length), -1, np.int32)
  targets = np.full((batch_size, length), -1, np.int32)
  for b in range(batch_size):
    n = int(rng.integers(1, length + 1))
    seq = (int(rng.integers(num_items)) + np.arange(n + 1)) % num_items
    inputs[b, length - n:] = seq[:-1]
    targets[b, length - n:] = seq[1:]
  return {"input_items": inputs, "target_items": targets}


# -- the in-batch loss ---------------------------------------------------------


def _reference_loss(u, v, targets, scale):
  n = len(targets)
  losses, correct, negatives = [], 0, 0
  for i in range(n):
    if targets[i] < 0:
      continue
    cand = [i] + [j for j in range(n)
                  if j != i and targets[j] >= 0 and targets[j] != targets[i]]
    s = np.array([scale * u[i] @ v[j] for j in cand], np.float64)
    losses.append(np.log(np.sum(np.exp(s - s.max()))) + s.max() - s[0])
    correct += int(np.argmax(s) == 0)
    negatives += len(cand) - 1
  return np.mean(losses), correct, len(losses), negatives


def test_in_batch_loss_matches_numpy_with_duplicates_masked():
  rng = np.random.default_rng(1)
  u = rng.normal(size=(7, 5))
  v = rng.normal(size=(7, 5))
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  targets = np.array([3, 1, 3, -1, 2, 3, 1], np.int32)
  loss_fn = jax.jit(losses.in_batch_softmax_loss, static_argnums=3)
  loss, m = loss_fn(jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32),
                    targets, 20.0)
  ref, correct, num, negatives = _reference_loss(u, v, targets, 20.0)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  np.testing.assert_allclose(float(m["loss"]), ref, rtol=1e-5)
  assert float(m["num_tokens"]) == num == 6
  assert float(m["accuracy"]) == correct
  # Row 0 (item 3) keeps only items 1, 1, 2 as negatives.
  assert float(m["num_negatives"]) == negatives == 3 + 4 + 3 + 5 + 3 + 4
  # Without masking, duplicates would count as negatives: a different loss.
  unmasked = np.array([3, 1, 30, -1, 2, 31, 10], np.int32)
  other, _ = loss_fn(jnp.asarray(u, jnp.float32),
                     jnp.asarray(v, jnp.float32), unmasked, 20.0)
  assert abs(float(other) - ref) > 1e-3


def test_in_batch_loss_ignores_masked_columns_in_gradient():
  rng = np.random.default_rng(2)
  u = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  targets = jnp.array([5, 5, -1, 6])
  g = jax.jit(jax.grad(lambda v: losses.in_batch_softmax_loss(
      u, v, targets, 20.0)[0]))(v)
  # Column 2 is padding: no row uses it.
  np.testing.assert_array_equal(np.asarray(g[2]), 0.0)
  assert np.all(np.abs(np.asarray(g)[[0, 1, 3]]) > 0)


# -- towers --------------------------------------------------------------------


def test_params_exclude_frozen_table_and_training_leaves_it_alone():
  model, params = _model()
  table = np.array(model.text_embeddings)
  shapes = [x.shape for x in jax.tree.leaves(params)]
  assert table.shape not in shapes
  batch = _successor_batch(np.random.default_rng(0), 4, 6, 20)
  grads = jax.jit(jax.grad(
      lambda p: model.loss_fn(p, batch, jax.random.key(1))[0]))(params)
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  assert optax.tree.norm(grads) > 0
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, grads):
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)

  new = step(params, grads)
  np.testing.assert_array_equal(np.asarray(model.text_embeddings), table)
  # The table is used: changing it changes the user vectors.
  before = jax.jit(model.user_vectors)(new, batch["input_items"])
  model.text_embeddings = model.text_embeddings + 1.0
  after = jax.jit(model.user_vectors)(new, batch["input_items"])
  assert float(jnp.max(jnp.abs(before - after))) > 1e-3


def test_item_scores_equal_brute_force_products(tmp_path):
  model, params = _model()
  inputs = np.array([[-1, -1, -1, 4, 7, 9],
                     [1, 2, 3, 4, 5, 6],
                     [-1, -1, -1, -1, -1, 11]], np.int32)
  scores = np.asarray(jax.jit(model.item_scores)(params,
                                                 {"input_items": inputs}))
  assert scores.shape == (3, 20)
  item_vecs = jax.jit(model.item_vectors)
  user_vecs = jax.jit(model.user_vectors)
  items = np.stack([np.asarray(item_vecs(params, jnp.array([i])))[0]
                    for i in range(20)])
  for b, row in enumerate(inputs):
    real = row[row >= 0][None]  # The history alone, no padding.
    user = np.asarray(user_vecs(params, real))[0, -1]
    np.testing.assert_allclose(np.linalg.norm(user), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scores[b], 20.0 * items @ user, atol=2e-4)
  exported = model.export_item_vectors(params)
  np.testing.assert_allclose(exported, items, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(exported, axis=1), 1.0,
                             rtol=1e-5)
  path = model.export_item_embeddings(params, tmp_path / "out" / "v.npy")
  np.testing.assert_array_equal(np.load(path), exported)
  assert [p.name for p in (tmp_path / "out").iterdir()] == ["v.npy"]
  top, _ = top_k_items(jnp.asarray(scores), 3)
  np.testing.assert_array_equal(np.asarray(top)[:, 0],
                                np.argmax(scores, axis=1))


def test_user_tower_is_causal_and_prefix_consistent():
  model, params = _model()
  user_vecs = jax.jit(model.user_vectors)
  row = np.array([[-1, 3, 8, 1, 6, 2]], np.int32)
  full = np.asarray(user_vecs(params, row))[0]
  changed = row.copy()
  changed[0, 4:] = [17, 19]
  out = np.asarray(user_vecs(params, changed))[0]
  np.testing.assert_allclose(out[:4], full[:4], atol=1e-6)
  assert np.max(np.abs(out[4:] - full[4:])) > 1e-3
  for j in range(1, 6):
    prefix = np.full((1, 6), -1, np.int32)
    prefix[0, 6 - j:] = row[0, 1:j + 1]
    last = np.asarray(user_vecs(params, prefix))[0, -1]
    np.testing.assert_allclose(last, full[j], atol=1e-5)


def test_item_tower_is_the_shared_transformer_on_one_item():
  model, params = _model()
  items = np.array([0, 5, 13])
  single = np.stack([np.full(3, -1), np.full(3, -1), items], axis=1)
  item_vecs = jax.jit(model.item_vectors)
  user_vecs = jax.jit(model.user_vectors)
  # With the tower embedding zeroed, the towers are the same function.
  zeroed = {**params, "tower_embedding": jnp.zeros_like(
      params["tower_embedding"])}
  np.testing.assert_allclose(np.asarray(item_vecs(zeroed, items)),
                             np.asarray(user_vecs(zeroed, single))[:, -1],
                             atol=1e-6)
  trained = {**params, "tower_embedding": jnp.array(
      np.random.default_rng(0).normal(size=params["tower_embedding"].shape),
      jnp.float32)}
  diff = np.asarray(item_vecs(trained, items)) - np.asarray(
      user_vecs(trained, single))[:, -1]
  assert np.min(np.abs(diff).max(axis=1)) > 1e-3
  cfg = dual_encoder.DualEncoderConfig(**{**TINY.__dict__,
                                          "tower_embedding": False})
  plain, plain_params = _model(config=cfg)
  assert "tower_embedding" not in plain_params
  np.testing.assert_allclose(
      np.asarray(jax.jit(plain.item_vectors)(plain_params, items)),
      np.asarray(jax.jit(plain.user_vectors)(plain_params, single))[:, -1],
      atol=1e-6)


def test_train_positions_last_and_dropout():
  cfg = dual_encoder.DualEncoderConfig(**{**TINY.__dict__,
                                          "train_positions": "last"})
  model, params = _model(config=cfg)
  batch = _successor_batch(np.random.default_rng(3), 5, 6, 20)
  loss_fn = jax.jit(model.loss_fn)
  loss, m = loss_fn(params, batch, None)
  assert float(m["num_tokens"]) == 5
  users = jax.jit(model.user_vectors)(params, batch["input_items"])[:, -1]
  targets = batch["target_items"][:, -1]
  items = jax.jit(model.item_vectors)(params, targets)
  ref, _ = jax.jit(losses.in_batch_softmax_loss)(users, items, targets,
                                                       20.0)
  np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
  all_model = dual_encoder.DualEncoderModel(model.text_embeddings, TINY)
  _, m_all = jax.jit(all_model.loss_fn)(params, batch, None)
  assert float(m_all["num_tokens"]) == np.sum(batch["target_items"] >= 0)
  again, _ = loss_fn(params, batch, None)
  assert float(again) == float(loss)
  drop1, _ = loss_fn(params, batch, jax.random.key(1))
  drop2, _ = loss_fn(params, batch, jax.random.key(2))
  assert float(drop1) != float(drop2)


def test_learns_successor_pattern():
  num_items, length = 50, 6
  cfg = dual_encoder.DualEncoderConfig(d_model=32, num_layers=1, num_heads=2,
                                       mlp_dim=64, dropout_rate=0.0,
                                       max_length=length)
  model = dual_encoder.DualEncoderModel(_table(num_items, 16), cfg)
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (32, length)})["params"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, batch, rng):
    (_, m), g = jax.value_and_grad(model.loss_fn, has_aux=True)(
        params, batch, rng)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, m

  rng = np.random.default_rng(0)
  for i in range(200):
    batch = _successor_batch(rng, 32, length, num_items)
    params, opt, m = step(params, opt, batch, jax.random.key(i))
  assert float(m["accuracy"]) / float(m["num_tokens"]) > 0.95
  starts = np.arange(num_items)
  history = np.stack([(starts + k) % num_items for k in range(3)], axis=1)
  inputs = np.concatenate(
      [np.full((num_items, length - 3), -1, np.int32), history], axis=1)
  items, _ = jax.jit(lambda p, b: model.predict_batch_with_aux(
      p, b, num_decodes=1))(params, {"input_items": inputs})
  recall = np.mean(np.asarray(items)[:, 0] == (starts + 3) % num_items)
  assert recall >= 0.9, recall


# -- logical axes, configs and errors ------------------------------------------


def test_logical_axes_follow_network_names():
  model, params = _model()
  axes = model.get_logical_axes({"input_items": (2, 6)})["params"]
  assert jax.tree.structure(axes, is_leaf=lambda x: x is None or isinstance(
      x, jax.sharding.PartitionSpec)) == jax.tree.structure(params)
  block = axes["encoder"]["layer_0"]
  assert tuple(block["mlp"]["wi"]["kernel"]) == ("embed", "mlp")
  assert tuple(block["attention"]["query"]["kernel"]) == ("embed", "heads",
                                                         "kv")
  assert tuple(axes["encoder"]["position_embedding"]) == ("length", "embed")


def test_make_dual_encoder_checks_embeddings():
  ds = _dataset(20)
  with pytest.raises(ConfigError,
                     match=r"run the embed stage \(python -m recjax\.embed\) "
                           r"on this dataset"):
    dual_encoder.make_dual_encoder(ds, None)
  with pytest.raises(ConfigError, match=r"shape \(19, 8\), expected "
                                        r"\[num_items=20, d_text\]"):
    dual_encoder.make_dual_encoder(ds, _table(19, 8))
  with pytest.raises(ConfigError, match=r"shape \(20,\), expected "
                                        r"\[num_items=20, d_text\]"):
    dual_encoder.make_dual_encoder(ds, np.zeros(20, np.float32))
  bad = _table(20, 8)
  bad[4, 1] = np.nan
  with pytest.raises(ConfigError, match=r"item embedding row 4 is not finite; "
                                        r"re-run the embed stage"):
    dual_encoder.make_dual_encoder(ds, bad)
  model = dual_encoder.make_dual_encoder(ds, _table(20, 8), TINY)
  assert model.num_items == 20 and model.config is TINY


def test_config_errors():
  with pytest.raises(ConfigError, match="num_heads=3 must divide"):
    dual_encoder.DualEncoderConfig(d_model=16, num_heads=3)
  with pytest.raises(ConfigError, match=r"DualEncoderConfig\.train_positions='"
                                        r"first': use one of \('all', "
                                        r"'last'\)\."):
    dual_encoder.DualEncoderConfig(train_positions="first")
  with pytest.raises(ConfigError, match=r"DualEncoderConfig\.logit_scale must "
                                        r"be > 0, got 0\.0\."):
    dual_encoder.DualEncoderConfig(logit_scale=0.0)
  model = dual_encoder.DualEncoderModel(_table(20, 12), TINY)
  with pytest.raises(ConfigError, match="exceed max_length=8"):
    model.get_initial_variables(jax.random.key(0), {"input_items": (2, 9)})
  with pytest.raises(ConfigError, match=r"input_shapes needs 'input_items' "
                                        r"\[batch, length\], got keys "
                                        r"\['inputs'\]\."):
    model.get_initial_variables(jax.random.key(0), {"inputs": (2, 4)})


def test_learn_gin_config_binds_the_model():
  strict = importlib.util.find_spec("recjax.train_items") is not None
  gin.clear_config()
  gin_utils.register_all()
  try:
    gin.parse_config_files_and_bindings(
        [str(GIN_DIR / "models" / "learn.gin")], ["MAX_LENGTH = 20"],
        skip_unknown=not strict)
    make = gin.get_configurable("recjax.models.learn.make_dual_encoder")
    model = make(_dataset(20), _table(20, 8))
    assert isinstance(model, dual_encoder.DualEncoderModel)
    assert model.config.logit_scale == 20.0
    assert model.config.train_positions == "all"
    assert model.max_length == 20
    if strict:
      # train_items (and eval_items) take the model file's MODEL_FN.
      bound = gin.query_parameter("recjax.train_items.train_items.model_fn")
      assert bound.selector == "gin.macro"
      model_fn = gin.query_parameter("%MODEL_FN")
      assert model_fn.selector.endswith("make_dual_encoder")
  finally:
    gin.clear_config()
