"""Tests for recjax.models.lite (LITE-LLM4Rec)."""

import dataclasses
import importlib.util
import pathlib

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_checkpoints import write_bert

from recjax import gin_utils
from recjax.datasets.canonical import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError
from recjax.models import lite
from recjax.text_encoders import bert
from recjax.text_encoders import load_text_encoder

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin_configs"
TINY = lite.LiteConfig(d_model=16, num_layers=1, num_heads=2, mlp_dim=32,
                       dropout_rate=0.1, max_length=8)
TINY_BERT = bert.BertConfig(vocab_size=30, hidden_size=12,
                            num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=16, max_position_embeddings=8)


def _dataset(num_items: int, titles=None):
  titles = titles or [f"item {i}" for i in range(num_items)]
  items = ItemTable([f"i{i}" for i in range(num_items)], {"title": titles})
  seqs = [[i % num_items, (i + 1) % num_items] for i in range(4)]
  return from_sequences("toy", items, [f"u{u}" for u in range(4)], seqs)


def _table(num_items: int, dim: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(num_items, dim)).astype(
      np.float32)


def _backbone(num_items: int, seed: int = 0) -> lite.TextBackbone:
  rng = np.random.default_rng(seed)
  tokens = [[1] + list(rng.integers(4, 30, size=int(rng.integers(1, 5))))
            + [3] for _ in range(num_items)]
  ids, mask = lite.tokenize_items(tokens, 6)
  module = bert.BertModule(TINY_BERT)
  params = module.init(jax.random.key(seed), jnp.asarray(ids[:1]),
                       jnp.asarray(mask[:1]))["params"]
  return lite.TextBackbone(module, params, ids, mask, "mean", True)


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


def _adam_step(model, lr):
  tx = optax.adam(lr)

  @jax.jit
  def step(params, opt, batch, rng):
    (_, m), g = jax.value_and_grad(model.loss_fn, has_aux=True)(
        params, batch, rng)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, m, g

  return tx, step


# -- frozen --------------------------------------------------------------------


def test_loss_equals_brute_force_prefix_scores():
  model = lite.LiteModel(20, TINY, item_embeddings=_table(20, 12))
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (2, 5)})["params"]
  batch = {"input_items": np.array([[-1, -1, 4, 9, 2], [3, 1, 4, 1, 5]]),
           "target_items": np.array([[-1, -1, 9, 2, 7], [1, 4, 1, 5, -1]])}
  loss, m = jax.jit(model.loss_fn)(params, batch, None)
  scores = jax.jit(model.item_scores)
  xents, correct = [], 0
  for b in range(2):
    for j in range(5):
      target = batch["target_items"][b, j]
      if target < 0:
        continue
      prefix = np.full((1, 5), -1)
      prefix[0, 4 - j:] = batch["input_items"][b, :j + 1]
      s = np.asarray(scores(params, {"input_items": prefix}))[0]
      s = s.astype(np.float64)
      xents.append(np.log(np.sum(np.exp(s - s.max()))) + s.max() - s[target])
      correct += int(np.argmax(s) == target)
  np.testing.assert_allclose(float(loss), np.mean(xents), rtol=1e-5)
  assert float(m["num_tokens"]) == len(xents) == 7
  assert float(m["accuracy"]) == correct
  # Scores ignore left padding: the history alone gives the same logits.
  alone = np.asarray(scores(params, {"input_items": np.array([[4, 9, 2]])}))
  padded = np.asarray(scores(params, batch))[0]
  np.testing.assert_allclose(alone[0], padded, atol=1e-5)


def test_frozen_table_is_constant_and_outside_params():
  model = lite.LiteModel(20, TINY, item_embeddings=_table(20, 12))
  table = np.array(model.text_embeddings)
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (4, 6)})["params"]
  assert "text_module" not in params
  assert table.shape not in [x.shape for x in jax.tree.leaves(params)]
  tx, step = _adam_step(model, 1e-2)
  opt = tx.init(params)
  batch = _successor_batch(np.random.default_rng(0), 4, 6, 20)
  new, opt, _, grads = step(params, opt, batch, jax.random.key(0))
  new, opt, _, grads = step(new, opt, batch, jax.random.key(1))
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  np.testing.assert_array_equal(np.asarray(model.text_embeddings), table)
  np.testing.assert_array_equal(
      np.asarray(jax.jit(model.item_text_vectors)(new, jnp.arange(20))),
      table)
  # The item head is trained and separate from the text vectors.
  head = new["item_head"]["kernel"]
  assert head.shape == (16, 20)
  assert float(jnp.max(jnp.abs(head - params["item_head"]["kernel"]))) > 0


def test_frozen_learns_successor_pattern():
  num_items, length = 50, 6
  cfg = lite.LiteConfig(d_model=32, num_layers=1, num_heads=2, mlp_dim=64,
                        dropout_rate=0.0, max_length=length)
  model = lite.make_lite(_dataset(num_items), _table(num_items, 16), cfg)
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (32, length)})["params"]
  tx, step = _adam_step(model, 1e-2)
  opt = tx.init(params)
  rng = np.random.default_rng(0)
  for i in range(200):
    batch = _successor_batch(rng, 32, length, num_items)
    params, opt, m, _ = step(params, opt, batch, jax.random.key(i))
  starts = np.arange(num_items)
  history = np.stack([(starts + k) % num_items for k in range(3)], axis=1)
  inputs = np.concatenate(
      [np.full((num_items, length - 3), -1, np.int32), history], axis=1)
  items, _ = jax.jit(lambda p, b: model.predict_batch_with_aux(
      p, b, num_decodes=1))(params, {"input_items": inputs})
  recall = np.mean(np.asarray(items)[:, 0] == (starts + 3) % num_items)
  assert recall >= 0.9, recall


# -- finetune ------------------------------------------------------------------


def test_finetune_gradients_reach_the_text_encoder():
  cfg = dataclasses.replace(TINY, item_encoder="finetune")
  backbone = _backbone(20)
  model = lite.make_lite(_dataset(20), None, cfg, backbone=backbone)
  params = model.get_initial_variables(
      jax.random.key(1), {"input_items": (4, 5)})["params"]
  # Initialised from the backbone's weights, not the init key.
  for a, b in zip(jax.tree.leaves(params["text_module"]),
                  jax.tree.leaves(backbone.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  tx, step = _adam_step(model, 1e-2)
  opt = tx.init(params)
  batch = _successor_batch(np.random.default_rng(0), 4, 5, 20)
  new, opt, m0, grads = step(params, opt, batch, jax.random.key(0))
  text_grads = grads["text_module"]
  assert float(optax.tree.norm(text_grads["layer_0"]["query"])) > 0
  assert float(optax.tree.norm(text_grads["embeddings_ln"])) > 0
  rows = batch["input_items"][batch["input_items"] >= 0]
  used = np.unique(backbone.token_ids[rows][backbone.token_mask[rows] == 1])
  word = np.abs(np.asarray(text_grads["word_embeddings"]["embedding"]))
  assert np.all(word[used].sum(axis=1) > 0)
  # Padding tokens and tokens of items outside the batch get no gradient.
  unused = np.setdiff1d(np.arange(30), used)
  assert unused.size and np.all(word[unused] == 0)
  for _ in range(15):
    new, opt, m, _ = step(new, opt, batch, None)
  assert float(m["loss"]) < float(m0["loss"])
  moved = np.asarray(new["text_module"]["layer_0"]["query"]["kernel"] -
                     params["text_module"]["layer_0"]["query"]["kernel"])
  assert np.max(np.abs(moved)) > 1e-4
  # The item vectors are the backbone's pooled (normalised) outputs.
  vecs = np.asarray(jax.jit(model.item_text_vectors)(params, jnp.arange(3)))
  states = jax.jit(backbone.module.apply)(
      {"params": backbone.params}, backbone.token_ids[:3],
      backbone.token_mask[:3])
  m3 = backbone.token_mask[:3, :, None]
  ref = np.sum(np.asarray(states) * m3, axis=1) / m3.sum(axis=1)
  ref /= np.linalg.norm(ref, axis=1, keepdims=True)
  np.testing.assert_allclose(vecs, ref, atol=1e-5)


def test_load_text_backbone_matches_embed_stage_vectors(tmp_path):
  write_bert(tmp_path / "bert")
  titles = ["red pen", "blue ink paper", "stapler", "soft cream",
            "black nail polish"]
  ds = _dataset(5, titles)
  cfg = lite.LiteConfig(item_encoder="finetune", d_model=16, num_layers=1,
                        num_heads=2, mlp_dim=32, max_length=4,
                        text_model_dir=str(tmp_path / "bert"),
                        template="{title}", max_item_tokens=8)
  model = lite.make_lite(ds, None, cfg)
  assert model.backbone.token_ids.shape == (5, 8)
  params = model.get_initial_variables(
      jax.random.key(0), {"input_items": (1, 4)})["params"]
  vecs = np.asarray(jax.jit(model.item_text_vectors)(params, jnp.arange(5)))
  expected = load_text_encoder(tmp_path / "bert").encode(titles)
  np.testing.assert_allclose(vecs, expected, atol=1e-5)


def test_tokenize_items_truncates_keeping_the_closing_token():
  ids, mask = lite.tokenize_items([[1, 5, 6, 7, 8, 3], [1, 3]], 4, pad_id=0)
  np.testing.assert_array_equal(ids, [[1, 5, 6, 3], [1, 3, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0]])


# -- errors, axes and configs --------------------------------------------------


def test_errors():
  ds = _dataset(20)
  with pytest.raises(ConfigError,
                     match=r"run the embed stage \(python -m recjax\.embed\) "
                           r"on this dataset"):
    lite.make_lite(ds, None, TINY)
  with pytest.raises(ConfigError, match=r"shape \(21, 8\), expected "
                                        r"\[num_items=20, d_text\]"):
    lite.make_lite(ds, _table(21, 8), TINY)
  with pytest.raises(ConfigError, match=r"LiteConfig\.item_encoder='lora': "
                                        r"use one of \('frozen', "
                                        r"'finetune'\)\."):
    lite.LiteConfig(item_encoder="lora")
  with pytest.raises(ConfigError, match=r"LiteConfig\.num_heads=4 must divide "
                                        r"d_model=10"):
    lite.LiteConfig(d_model=10, num_heads=4)
  finetune = dataclasses.replace(TINY, item_encoder="finetune")
  with pytest.raises(ConfigError, match="tokenised 19 items"):
    lite.make_lite(ds, None, finetune, backbone=_backbone(19))
  with pytest.raises(ConfigError, match="needs a text backbone"):
    lite.LiteModel(20, finetune)
  with pytest.raises(ConfigError, match="item 1 has no tokens"):
    lite.TextBackbone(bert.BertModule(TINY_BERT), {},
                      np.ones((2, 3)), np.array([[1, 0, 0], [0, 0, 0]]))
  good = _backbone(20)
  wrong = dataclasses.replace(good, params=_backbone(20, seed=1).params)
  wrong.params = {**wrong.params, "layer_0": {}}
  model = lite.LiteModel(20, finetune, backbone=wrong)
  with pytest.raises(ConfigError, match=r"text backbone's parameters do not "
                                          r"match its module"):
    model.get_initial_variables(jax.random.key(0), {"input_items": (1, 4)})
  model = lite.LiteModel(20, TINY, item_embeddings=_table(20, 8))
  with pytest.raises(ConfigError, match="exceed max_length=8"):
    model.get_initial_variables(jax.random.key(0), {"input_items": (1, 9)})


def test_logical_axes():
  model = lite.LiteModel(20, TINY, item_embeddings=_table(20, 8))
  axes = model.get_logical_axes({"input_items": (2, 6)})["params"]
  assert tuple(axes["item_head"]["kernel"]) == ("embed", "vocab")
  assert tuple(axes["projection"]["kernel"]) == (None, "embed")
  assert tuple(axes["encoder"]["layer_0"]["mlp"]["wo"]["kernel"]) == ("mlp",
                                                               "embed")


def test_lite_gin_config_binds_the_model():
  strict = importlib.util.find_spec("recjax.train_items") is not None
  gin.clear_config()
  gin_utils.register_all()
  try:
    gin.parse_config_files_and_bindings(
        [str(GIN_DIR / "models" / "lite.gin")],
        ["MAX_LENGTH = 8", "recjax.models.lite.LiteConfig.d_model = 16"],
        skip_unknown=not strict)
    make = gin.get_configurable("recjax.models.lite.make_lite")
    model = make(_dataset(20), _table(20, 8))
    assert isinstance(model, lite.LiteModel)
    assert model.config.item_encoder == "frozen"
    assert model.config.d_model == 16 and model.config.num_layers == 2
    assert model.max_length == 8
    if strict:
      # train_items (and eval_items) take the model file's MODEL_FN.
      bound = gin.query_parameter("recjax.train_items.train_items.model_fn")
      assert bound.selector == "gin.macro"
      assert gin.query_parameter("%MODEL_FN").selector.endswith("make_lite")
  finally:
    gin.clear_config()
