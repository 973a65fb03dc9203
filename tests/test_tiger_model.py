"""Tests for recjax.models: losses, scoring, constrained prediction, gin."""

import functools
import sys
import types

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recjax import gin_utils
from recjax import network
from recjax.errors import ConfigError
from recjax.models import losses
from recjax.models import tiger as models
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie

LAYOUT = SemanticIdLayout((4, 3, 3), num_user_buckets=3)


def _model(**kw):
  cfg = network.TransformerConfig(
      vocab_size=LAYOUT.vocab_size, emb_dim=16, num_heads=2, head_dim=8,
      num_encoder_layers=1, num_decoder_layers=1, mlp_dim=32,
      mlp_activations=("gelu", "linear"), dropout_rate=0.1,
      logits_via_embedding=True, relative_attention_num_buckets=8,
      relative_attention_max_distance=16)
  return models.EncoderDecoderModel(network.Transformer(cfg), layout=LAYOUT,
                                    **kw)


@functools.cache
def _params():
  model = _model()
  return model.get_initial_variables(
      jax.random.key(0), {"encoder_input_tokens": (1, 9),
                          "decoder_input_tokens": (1, 3)})["params"]


def _batch(enc, targets):
  targets = np.asarray(targets)
  return {"encoder_input_tokens": np.asarray(enc),
          "decoder_input_tokens": network.shift_right(targets),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets > 0).astype(np.int32)}


def _catalog(n, seed):
  grid = np.array(np.meshgrid(*[np.arange(s) for s in LAYOUT.codebook_sizes],
                              indexing="ij")).reshape(LAYOUT.num_levels, -1).T
  return grid[np.random.default_rng(seed).choice(len(grid), n, False)]


def _users(batch, seed):
  rng = np.random.default_rng(seed)
  enc = rng.integers(3, LAYOUT.vocab_size, (batch, 9))
  enc[0, 6:] = 0
  return enc


def _brute_force(model, params, enc, codes):
  tokens = LAYOUT.codes_to_tokens(codes)
  n, b = len(codes), len(enc)
  batch = _batch(np.repeat(enc, n, 0), np.tile(tokens, (b, 1)))
  return np.asarray(jax.jit(model.score_batch)(params, batch)).reshape(b, n)


_predict = jax.jit(lambda model, params, batch, trie, **kw:
                   model.predict_batch_with_aux(params, batch, trie=trie,
                                                **kw),
                   static_argnums=0, static_argnames=("num_decodes",
                                                      "constrain"))


def test_predict_returns_all_items_in_score_batch_order():
  model, params = _model(), _params()
  codes = _catalog(20, 0)
  trie = ItemTrie.build(codes, LAYOUT)
  enc = _users(3, 1)
  brute = _brute_force(model, params, enc, codes)
  tokens, aux = _predict(model, params, {"encoder_input_tokens": enc}, trie,
                         num_decodes=24)
  for b in range(3):
    order = np.argsort(-brute[b])
    np.testing.assert_array_equal(np.asarray(aux["items"][b, :20]), order)
    np.testing.assert_allclose(np.asarray(aux["scores"][b, :20]),
                               brute[b, order], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(tokens[b, :20]),
                                  LAYOUT.codes_to_tokens(codes[order]))
    assert not np.asarray(aux["valid"][b, 20:]).any()
    assert np.all(np.asarray(aux["items"][b, 20:]) == -1)
    assert np.all(np.isneginf(np.asarray(aux["scores"][b, 20:])))


def test_predict_with_exclusions_equals_brute_force():
  model, params = _model(), _params()
  codes = _catalog(16, 2)
  trie = ItemTrie.build(codes, LAYOUT)
  enc = _users(2, 3)
  brute = _brute_force(model, params, enc, codes)
  best = np.argsort(-brute, axis=1)
  excluded = np.stack([best[0, :4], [best[1, 0], -1, -1, -1]])
  batch = {"encoder_input_tokens": enc, "excluded_items": excluded}
  _, aux = _predict(model, params, batch, trie, num_decodes=16)
  for b in range(2):
    keep = [i for i in best[b] if i not in set(excluded[b])]
    n = len(keep)
    np.testing.assert_array_equal(np.asarray(aux["items"][b, :n]), keep)
    np.testing.assert_allclose(np.asarray(aux["scores"][b, :n]),
                               brute[b, keep], atol=1e-5)
    assert not np.asarray(aux["valid"][b, n:]).any()


def test_unconstrained_predictions_can_be_invalid_but_are_flagged():
  model, params = _model(), _params()
  trie = ItemTrie.build(_catalog(3, 4), LAYOUT)
  _, aux = _predict(model, params, {"encoder_input_tokens": _users(2, 5)},
                    trie, num_decodes=8, constrain=False)
  items = np.asarray(aux["items"])
  assert (items == -1).any()  # 8 decodes cannot all be among 3 items
  looked_up = np.asarray(trie.lookup_tokens(aux["tokens"]))
  np.testing.assert_array_equal(items, looked_up)


def test_score_batch_is_the_sum_of_token_log_probs():
  model, params = _model(), _params()
  targets = LAYOUT.codes_to_tokens(_catalog(2, 7))
  targets[1, 2] = 0  # padding is not scored
  batch = _batch(_users(2, 8), targets)
  logits = model.module.apply({"params": params},
                              batch["encoder_input_tokens"],
                              batch["decoder_input_tokens"],
                              batch["decoder_target_tokens"])
  logp = np.asarray(jax.nn.log_softmax(logits))
  want = [logp[0, np.arange(3), targets[0]].sum(),
          logp[1, np.arange(2), targets[1, :2]].sum()]
  np.testing.assert_allclose(np.asarray(model.score_batch(params, batch)),
                             want, rtol=1e-5)


def _np_loss(logits, targets, weights, ls=0.0, z=0.0, temp=1.0):
  logits = logits.astype(np.float64) / temp
  v = logits.shape[-1]
  logz = np.log(np.exp(logits).sum(-1))
  logp = logits - logz[..., None]
  soft = np.full(logits.shape, ls / (v - 1))
  np.put_along_axis(soft, targets[..., None], 1 - ls, axis=-1)
  ent = np.where(soft > 0, soft * np.log(np.where(soft > 0, soft, 1)), 0)
  tok = -(soft * logp).sum(-1) + ent.sum(-1) + z * logz ** 2
  return (tok * weights).sum() / weights.sum()


@pytest.mark.parametrize("ls, z, temp", [(0.0, 0.0, 1.0), (0.1, 0.0, 1.0),
                                         (0.0, 1e-2, 1.0), (0.2, 1e-3, 0.5)])
def test_cross_entropy_matches_numpy(ls, z, temp):
  rng = np.random.default_rng(9)
  logits = rng.normal(size=(3, 4, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, (3, 4))
  weights = (rng.random((3, 4)) > 0.3).astype(np.float32)
  loss, metrics = losses.cross_entropy_loss(
      jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights),
      label_smoothing=ls, z_loss=z, temperature=temp)
  np.testing.assert_allclose(float(loss),
                             _np_loss(logits, targets, weights, ls, z, temp),
                             rtol=1e-5)
  assert float(metrics["num_tokens"]) == weights.sum()


def test_loss_is_normalised_by_target_tokens():
  rng = np.random.default_rng(10)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  targets = rng.integers(1, 5, (2, 3))
  weights = np.ones((2, 3), np.float32)
  base, _ = losses.cross_entropy_loss(logits, targets, weights)
  # Extra padded positions (weight 0) do not change the loss.
  pad_logits = np.concatenate([logits, rng.normal(size=(2, 4, 5))], 1)
  pad_targets = np.concatenate([targets, np.zeros((2, 4), int)], 1)
  pad_weights = np.concatenate([weights, np.zeros((2, 4), np.float32)], 1)
  padded, _ = losses.cross_entropy_loss(pad_logits, pad_targets, pad_weights)
  np.testing.assert_allclose(float(base), float(padded), rtol=1e-6)
  # A perfect prediction with label smoothing costs zero.
  eps = 0.1
  sharp = np.where(np.eye(5, dtype=bool)[targets], np.log(1 - eps),
                   np.log(eps / 4)).astype(np.float32)
  zero, _ = losses.cross_entropy_loss(sharp, targets, weights,
                                      label_smoothing=eps)
  assert abs(float(zero)) < 1e-5


def test_training_steps_reduce_the_loss():
  model = _model()
  params = _params()
  targets = LAYOUT.codes_to_tokens(_catalog(4, 11))
  batch = _batch(_users(4, 12), targets)
  tx = optax.adamw(3e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key):
    (loss, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
        params, batch, key)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss, metrics

  first = None
  for i in range(15):
    params, opt, loss, metrics = step(
        params, opt, jax.random.key(i, impl="unsafe_rbg"))
    first = float(loss) if first is None else first
  assert float(loss) < 0.5 * first
  assert float(metrics["num_tokens"]) == 12
  eval_loss, _ = model.loss_fn(params, batch, None)
  assert np.isfinite(float(eval_loss))


def test_initial_variables_and_logical_axes():
  model = _model()
  shapes = {"encoder_input_tokens": (2, 9), "decoder_input_tokens": (2, 3)}
  variables = model.get_initial_variables(jax.random.key(0), shapes)
  emb = variables["params"]["token_embedder"]["embedding"]
  assert isinstance(emb, jax.Array) and emb.shape == (LAYOUT.vocab_size, 16)
  axes = model.get_logical_axes(shapes)
  assert tuple(axes["params"]["token_embedder"]["embedding"]) == ("vocab",
                                                                  "embed")
  with pytest.raises(ConfigError, match=r"input_shapes needs "
                                        r"'decoder_input_tokens', got "
                                        r"\['encoder_input_tokens'\]\."):
    model.get_initial_variables(jax.random.key(0),
                                {"encoder_input_tokens": (1, 3)})


def test_feature_converter_is_resolved_lazily(monkeypatch):
  fake = types.ModuleType("seqio")
  fake.EncDecFeatureConverter = object()
  monkeypatch.setitem(sys.modules, "seqio", fake)
  assert (models.EncoderDecoderModel.FEATURE_CONVERTER_CLS is
          fake.EncDecFeatureConverter)
  monkeypatch.setitem(sys.modules, "seqio", None)  # not importable
  assert models.EncoderDecoderModel.FEATURE_CONVERTER_CLS is None


def test_bad_model_settings_raise():
  small = network.Transformer(network.TransformerConfig(vocab_size=10))
  with pytest.raises(ConfigError, match=r"TransformerConfig\.vocab_size=10 is "
                                        r"smaller than the token layout's"):
    models.EncoderDecoderModel(small, layout=LAYOUT)
  with pytest.raises(ConfigError, match=r"EncoderDecoderModel needs "
                                        r"codebook_sizes or a "
                                        r"SemanticIdLayout\."):
    models.EncoderDecoderModel(small)
  for kw, match in ((dict(label_smoothing=1.0), "label_smoothing"),
                    (dict(z_loss=-1.0), "z_loss"),
                    (dict(loss_temperature=0.0), "loss_temperature")):
    with pytest.raises(ConfigError, match=match):
      _model(**kw)
  with pytest.raises(ConfigError, match=r"num_beams must be an int >= 1, got "
                                        r"0\."):
    _model().predict_batch_with_aux(
        _params(), {"encoder_input_tokens": _users(1, 0)}, num_decodes=0)


@pytest.mark.parametrize("gin_file, layers, layout", [
    ("models/tiger.gin", 4, SemanticIdLayout((256,) * 4, 2000)),
    ("models/tiger_small.gin", 2, SemanticIdLayout((8, 8, 4), 10))])
def test_gin_configs_build_the_model(gin_file, layers, layout):
  gin.clear_config()
  try:
    gin_utils.parse_gin([gin_file], finalize=False)
    model_fn = gin.query_parameter("%MODEL_FN").scoped_configurable_fn
    model = model_fn(layout)
  finally:
    gin.clear_config()
  vocab = layout.vocab_size
  assert isinstance(model, models.EncoderDecoderModel)
  cfg = model.module.config
  assert cfg.num_encoder_layers == cfg.num_decoder_layers == layers
  assert cfg.vocab_size == vocab == model.layout.vocab_size
  if layers == 4:
    assert (cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim) == (
        128, 6, 64, 1024)
    assert cfg.mlp_activations == ("relu",) and cfg.dropout_rate == 0.1
  else:  # tiny enough to initialise here
    variables = model.get_initial_variables(
        jax.random.key(0), {"encoder_input_tokens": (1, 5),
                            "decoder_input_tokens": (1, 3)})
    assert "decoder_1" in variables["params"]  # the gin file's 2 layers


# -- CALRec contrastive alignment ---------------------------------------------


def _alignment_batch():
  """6 examples: rows 0 and 3 share a target, row 5 is batch padding."""
  codes = _catalog(4, 21)
  items = LAYOUT.codes_to_tokens(codes[[0, 1, 2, 0, 3]])
  targets = np.zeros((6, 4), np.int64)
  targets[:5, :3] = items
  targets[:5, 3] = 1  # EOS
  enc = np.zeros((6, 9), np.int64)
  enc[:5] = _users(5, 22)
  enc[2, 4:] = 0  # a shorter history
  return _batch(enc, targets)


def _np_infonce(q, k, temp, same):
  """Reference symmetric InfoNCE, duplicates (same[i, j]) not negatives."""
  q = q / np.linalg.norm(q, axis=1, keepdims=True)
  k = k / np.linalg.norm(k, axis=1, keepdims=True)
  s = q @ k.T / temp
  n = len(s)
  total = 0.0
  for i in range(n):
    cols = [j for j in range(n) if j == i or not same[i, j]]
    rows = [j for j in range(n) if j == i or not same[j, i]]
    q_to_k = np.log(np.exp(s[i, cols]).sum()) - s[i, i]
    k_to_q = np.log(np.exp(s[rows, i]).sum()) - s[i, i]
    total += 0.5 * (q_to_k + k_to_q)
  return total / n


def _np_mean_pool(x, mask):
  x = np.asarray(x, np.float64)
  return (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def test_alignment_loss_matches_reference_from_encoder_outputs():
  model = _model(alignment_weight=0.5, alignment_temperature=0.1)
  params = _params()
  batch = _alignment_batch()
  loss, metrics = jax.jit(model.loss_fn)(params, batch, None)
  # Reference: encode history and target IDs separately, drop the padding
  # row, mean-pool non-PAD positions.
  enc = batch["encoder_input_tokens"][:5]
  items = batch["decoder_target_tokens"][:5, :3]
  encode = functools.partial(model.module.apply, {"params": params},
                             method=model.module.encode)
  hist = _np_mean_pool(encode(jnp.asarray(enc)), enc > 0)
  tgt = _np_mean_pool(encode(jnp.asarray(items)), items > 0)
  same = (items[:, None] == items[None]).all(-1)
  assert same[0, 3] and same.sum() == 7  # one duplicate pair
  want = _np_infonce(hist, tgt, 0.1, same)
  np.testing.assert_allclose(float(metrics["alignment_loss"]), want,
                             rtol=2e-5)
  # Not masking the duplicate gives a clearly different loss.
  unmasked = _np_infonce(hist, tgt, 0.1, np.eye(5, dtype=bool))
  assert abs(unmasked - want) > 1e-3
  gen = float(metrics["cross_ent_loss"]) / float(metrics["num_tokens"])
  np.testing.assert_allclose(float(loss), gen + 0.5 * want, rtol=2e-5)
  assert float(metrics["loss"]) == float(loss)
  assert float(metrics["num_tokens"]) == 20


def test_alignment_weight_zero_is_the_plain_generation_loss():
  params, batch = _params(), _alignment_batch()
  key = jax.random.key(3, impl="unsafe_rbg")
  module = _model().module

  @jax.jit
  def plain(params, batch, key):  # the loss before the alignment option
    logits = module.apply(
        {"params": params}, batch["encoder_input_tokens"],
        batch["decoder_input_tokens"], batch["decoder_target_tokens"],
        enable_dropout=True, rngs={"dropout": key})
    return losses.cross_entropy_loss(logits, batch["decoder_target_tokens"],
                                     batch["decoder_loss_weights"])

  want_loss, want = plain(params, batch, key)
  off = _model(alignment_weight=0.0, alignment_temperature=0.05)
  loss, metrics = jax.jit(off.loss_fn)(params, batch, key)
  np.testing.assert_array_equal(np.asarray(loss), np.asarray(want_loss))
  assert sorted(metrics) == sorted(want)
  for name in want:
    np.testing.assert_array_equal(np.asarray(metrics[name]),
                                  np.asarray(want[name]))
  # With the term on, the generation part (same dropout masks) is unchanged.
  on = _model(alignment_weight=0.25)
  total, on_metrics = jax.jit(on.loss_fn)(params, batch, key)
  np.testing.assert_allclose(float(on_metrics["cross_ent_loss"]),
                             float(want["cross_ent_loss"]), rtol=1e-6)
  np.testing.assert_allclose(
      float(total), float(want_loss) + 0.25 * float(
          on_metrics["alignment_loss"]), rtol=1e-6)


_ENCODED_SHAPES = []


class _CountingTransformer(network.Transformer):
  """Records the shape of every `encode` call while tracing."""

  def encode(self, encoder_input_tokens, enable_dropout=False):
    _ENCODED_SHAPES.append(tuple(encoder_input_tokens.shape))
    return super().encode(encoder_input_tokens, enable_dropout)


def test_alignment_encodes_the_history_once():
  config = _model().module.config
  model = models.EncoderDecoderModel(_CountingTransformer(config),
                                     layout=LAYOUT, alignment_weight=1.0)
  batch = _alignment_batch()
  _ENCODED_SHAPES.clear()
  jax.eval_shape(model.loss_fn, _params(), batch,
                 jax.random.key(0, impl="unsafe_rbg"))  # traces once
  assert _ENCODED_SHAPES == [(6, 9), (6, 4)]  # history, then target IDs


def test_alignment_gradient_reaches_the_encoder_only():
  model, params = _model(alignment_weight=1.0), _params()
  batch = _alignment_batch()
  grads = jax.jit(jax.grad(
      lambda p: model.loss_fn(p, batch, None)[1]["alignment_loss"]))(params)
  norms = {name: float(optax.tree.norm(g)) for name, g in grads.items()}
  for name in ("token_embedder", "encoder_0", "encoder_norm"):
    assert norms[name] > 0, name
  decoder_only = [n for n in norms if n.startswith("decoder")]
  assert decoder_only == ["decoder_0", "decoder_norm"]
  for name in decoder_only:
    assert norms[name] == 0.0, name


def test_in_batch_infonce_masks_duplicates_and_invalid_rows():
  rng = np.random.default_rng(23)
  a, b = rng.normal(size=(2, 8)).astype(np.float32)
  q = jnp.asarray(np.stack([a, a]))
  # Two examples with the same history and the same target: masked, each
  # softmax holds only its positive and the loss is 0; unmasked it is log 2.
  same = jnp.ones((2, 2), bool)
  assert float(losses.in_batch_infonce(q, q, temperature=0.1,
                                       same_key=same)) < 1e-6
  np.testing.assert_allclose(
      float(losses.in_batch_infonce(q, q, temperature=0.1)), np.log(2),
      rtol=1e-5)
  # An invalid row is neither an anchor nor a negative, whatever it holds.
  q3 = jnp.asarray(np.stack([a, b, a]))
  k3 = jnp.asarray(np.stack([a, b, a]))
  valid = jnp.asarray([True, True, False])
  got = losses.in_batch_infonce(q3, k3, temperature=0.1, valid=valid)
  want = losses.in_batch_infonce(q3[:2], k3[:2], temperature=0.1)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
  none = losses.in_batch_infonce(q3, k3, temperature=0.1,
                                 valid=jnp.zeros(3, bool))
  assert float(none) == 0.0


def test_masked_pool():
  x = jnp.asarray([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]],
                   [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
  mask = jnp.asarray([[True, True, False], [False, False, False]])
  np.testing.assert_allclose(np.asarray(losses.masked_pool(x, mask)),
                             [[2.0, 1.0], [0.0, 0.0]])
  np.testing.assert_allclose(np.asarray(losses.masked_pool(x, mask, "max")),
                             [[3.0, 4.0], [0.0, 0.0]])


def test_bad_alignment_settings_raise():
  for kw, match in ((dict(alignment_weight=-0.1), "alignment_weight must be"),
                    (dict(alignment_temperature=0.0),
                     "alignment_temperature must be > 0"),
                    (dict(alignment_pooling="cls"), "alignment_pooling")):
    with pytest.raises(ConfigError, match=match):
      _model(**kw)


def test_calrec_gin_config_builds_the_aligned_model():
  gin.clear_config()
  try:
    gin_utils.parse_gin(["runs/train.gin",
                         "experiments/tiger_calrec_amazon_office.gin"],
                        finalize=False)
    assert str(gin.query_parameter("recjax.train.train.model_fn")) == (
        "%MODEL_FN")
    model = gin.query_parameter("%MODEL_FN").scoped_configurable_fn(
        layout=SemanticIdLayout((256,) * 4, 2000))
    task = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
  finally:
    gin.clear_config()
  assert task == "tiger_amazon_office"
  assert (model.alignment_weight, model.alignment_temperature,
          model.alignment_pooling) == (0.1, 0.07, "mean")
  assert model.module.config.num_encoder_layers == 4
