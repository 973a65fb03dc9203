"""Tests for the `vqrec` family: losses against brute force, the code
re-assignment's invariants, transfer's frozen encoder, and its errors."""

from __future__ import annotations

import dataclasses

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import checkpoints
from recjax import run_lib
from recjax.datasets import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError
from recjax.models.layers import CodeEmbedding
from recjax.models.layers import catalog_vectors
from recjax.models.vqrec import VQRecConfig
from recjax.models.vqrec import make_vqrec
from recjax.models.vqrec import transfer

D, M, N, L = 4, 8, 30, 6
TINY = VQRecConfig(hidden_dim=16, num_heads=2, num_layers=1, mlp_dim=16,
                   max_length=L, codebook_size=M)


def _dataset(n=N, users=12, seed=0, titles=True):
  rng = np.random.default_rng(seed)
  items = ItemTable([f"i{i}" for i in range(n)],
                    {"title": [f"item {i}" if titles else ""
                               for i in range(n)]})
  seqs = [rng.integers(0, n, rng.integers(4, 9)).tolist()
          for _ in range(users)]
  return from_sequences("toy", items, [f"u{u}" for u in range(users)], seqs)


def _codes(n=N, d=D, m=M, seed=0):
  return np.random.default_rng(seed).integers(0, m, (n, d)).astype(np.int32)


def _params(model, seed=0):
  return model.get_initial_variables(jax.random.key(seed),
                                     {"input_items": (2, L)})["params"]


def _batch(targets=(3, 5, 3, 7)):
  rng = np.random.default_rng(1)
  b = len(targets)
  inputs = rng.integers(0, N, (b, L)).astype(np.int32)
  inputs[0, :3] = -1
  target_items = np.full((b, L), -1, np.int32)
  target_items[:, -1] = targets
  return {"input_items": inputs, "target_items": target_items}


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(n=st.integers(1, 10), d=st.integers(1, 5),
                  m=st.integers(1, 6), seed=st.integers(0, 99))
def test_catalog_vectors_equal_the_per_item_mean(n, d, m, seed):
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(d, m, 3)).astype(np.float32)
  codes = rng.integers(-1, m, (n, d)).astype(np.int32)  # -1: missing
  layer = CodeEmbedding(d, m, 3)
  got = np.asarray(catalog_vectors(jnp.asarray(table), codes))
  via_layer = np.asarray(layer.apply(
      {"params": {"embedding": table}}, codes))
  brute = np.zeros((n, 3))
  for i in range(n):
    rows = [table[k, codes[i, k]] for k in range(d) if codes[i, k] >= 0]
    brute[i] = np.mean(rows, axis=0) if rows else 0.0
  np.testing.assert_allclose(got, brute, atol=1e-5)
  np.testing.assert_allclose(via_layer, brute, atol=1e-5)


def test_softmax_loss_and_scores_are_cosine_over_tau():
  model = make_vqrec(_dataset(), config=TINY, codes=_codes())
  params = _params(model)
  batch = _batch()
  hidden = np.asarray(model.hidden_states(params, batch["input_items"]))
  user = _normalize(hidden[:, -1])
  items = _normalize(np.asarray(model.item_vectors(params)))
  logits = user @ items.T / TINY.temperature
  scores = np.asarray(model.item_scores(params, batch))
  np.testing.assert_allclose(scores, logits, rtol=1e-4, atol=1e-4)
  targets = batch["target_items"][:, -1]
  log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + (
      logits.max(1))
  want = np.mean(log_z - logits[np.arange(4), targets])
  loss, metrics = model.loss_fn(params, batch, None)
  assert float(loss) == pytest.approx(want, rel=1e-4)
  assert float(metrics["num_tokens"]) == 4


def test_infonce_masks_duplicate_targets_and_adds_one_hard_negative():
  config = dataclasses.replace(TINY, loss="infonce", corrupt_ratio=0.0)
  codes = _codes()
  model = make_vqrec(_dataset(), config=config, codes=codes)
  params = _params(model)
  batch = _batch(targets=(3, 5, 3, 7))
  hidden = np.asarray(model.hidden_states(params, batch["input_items"]))
  user = _normalize(hidden[:, -1])
  vectors = _normalize(np.asarray(model.item_vectors(params)))
  targets = np.array([3, 5, 3, 7])
  tau = config.temperature
  want = []
  for r in range(4):
    # The other rows' next items, except those equal to this row's.
    cols = [c for c in range(4) if c == r or targets[c] != targets[r]]
    logits = [user[r] @ vectors[targets[c]] / tau for c in cols]
    # ratio 0: the "corrupted" negative is the positive itself.
    logits.append(user[r] @ vectors[targets[r]] / tau)
    logits = np.array(logits)
    pos = user[r] @ vectors[targets[r]] / tau
    want.append(np.log(np.exp(logits).sum()) - pos)
  loss, metrics = model.loss_fn(params, batch, None)
  assert float(loss) == pytest.approx(np.mean(want), rel=1e-4)
  assert float(metrics["num_tokens"]) == 4


def test_unseen_items_are_scored_from_their_codes():
  codes = _codes()
  codes[N - 1] = codes[0]  # item N-1 (never in any history) = item 0's codes
  model = make_vqrec(_dataset(), config=TINY, codes=codes)
  scores = np.asarray(model.item_scores(_params(model), _batch()))
  assert np.isfinite(scores).all()
  np.testing.assert_allclose(scores[:, N - 1], scores[:, 0], rtol=1e-6)
  assert not np.allclose(scores[:, 1], scores[:, 0])


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(d=st.integers(1, 3), m=st.sampled_from([1, 2, 5, 12]),
                  seed=st.integers(0, 999))
def test_gumbel_sinkhorn_is_doubly_stochastic_and_baking_permutes(d, m,
                                                                   seed):
  logits = jax.random.normal(jax.random.key(seed), (d, m, m))
  soft = np.asarray(transfer.gumbel_sinkhorn(
      logits, jax.random.key(seed + 1), temperature=1.0, num_iters=200))
  assert (soft >= 0).all()
  np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-3)
  np.testing.assert_allclose(soft.sum(-2), 1.0, atol=1e-3)
  # Three iterations (the paper's): columns exact, rows close.
  three = np.asarray(transfer.gumbel_sinkhorn(logits, None))
  np.testing.assert_allclose(three.sum(-2), 1.0, atol=1e-4)
  assignment = transfer.learned_assignment(np.asarray(logits))
  transfer.check_assignment(assignment, d, m, permutation=True)
  hard = np.asarray(transfer.straight_through(logits,
                                              jax.random.key(seed)))
  # Forward: a permutation matrix (up to the soft - soft rounding).
  np.testing.assert_allclose(hard, np.round(hard), atol=1e-6)
  np.testing.assert_array_equal(np.round(hard).sum(-1), 1.0)
  np.testing.assert_array_equal(np.round(hard).sum(-2), 1.0)
  table = np.random.default_rng(seed).normal(size=(d, m, 2))
  baked = transfer.bake(table, assignment)
  np.testing.assert_array_equal(np.sort(baked, axis=1),
                                np.sort(table, axis=1))


def test_hungarian_is_the_best_permutation_by_brute_force():
  import itertools  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(5, 5))
  best = max(itertools.permutations(range(5)),
             key=lambda p: sum(scores[i, p[i]] for i in range(5)))
  assert tuple(transfer.hungarian(scores)) == best


def test_straight_through_passes_the_relaxed_gradient():
  logits = jax.random.normal(jax.random.key(0), (2, 5, 5))
  weights = jnp.arange(50.0).reshape(2, 5, 5)
  rng = jax.random.key(3)
  grad = jax.grad(lambda w: jnp.sum(transfer.straight_through(w, rng) *
                                    weights))(logits)
  want = jax.grad(lambda w: jnp.sum(transfer.gumbel_sinkhorn(w, rng) *
                                    weights))(logits)
  np.testing.assert_allclose(grad, want, rtol=1e-5)
  assert float(jnp.abs(grad).sum()) > 0


def test_released_remap_is_usually_not_a_permutation():
  logits = np.random.default_rng(0).normal(size=(8, 64, 64))
  a = transfer.released_assignment(logits, seed=0)
  transfer.check_assignment(a, 8, 64)
  distinct = [len(np.unique(row)) for row in a]
  assert max(distinct) < 64
  with pytest.raises(ConfigError, match=r"assignment digits \[0"):
    transfer.check_assignment(a, 8, 64, permutation=True)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75, 1.0])
def test_corrupted_negatives_change_the_expected_share_of_digits(ratio):
  codes = jnp.asarray(_codes(n=4000, d=8, m=M))
  fake = transfer.corrupt_codes(codes, jax.random.key(0), M, ratio)
  share = float(jnp.mean(fake != codes))
  # A replaced digit draws its old code again with probability 1 / M.
  assert share == pytest.approx(ratio * (1 - 1 / M), abs=0.01)
  assert int(fake.min()) >= 0 and int(fake.max()) < M


def _pretrained_run(tmp_path, config, codes, name="pre"):
  """A fake VQ-Rec pre-training run: a best checkpoint of fresh params."""
  model = make_vqrec(_dataset(), config=config, codes=codes)
  params = _params(model, seed=7)
  meta = run_lib.model_meta(model, {"dataset": "toy"})
  ckpt = checkpoints.Checkpointer(tmp_path / name, meta,
                                  best_metric="validation/ndcg@10",
                                  async_save=False)
  ckpt.save_best(5, {"params": params, "step": 5},
                 {"validation/ndcg@10": 0.5})
  ckpt.close()
  return tmp_path / name, params


@pytest.mark.parametrize("remap", ["none", "released", "learned"])
def test_transfer_trains_only_the_table_and_the_input_norm(tmp_path, remap):
  pre_dir, pre = _pretrained_run(tmp_path, TINY, _codes(seed=1))
  target = _codes(seed=2)
  model = make_vqrec(_dataset(seed=3), config=TINY, codes=target,
                     pretrained_dir=str(pre_dir), remap=remap,
                     remap_epochs=1, remap_batch_size=8)
  params = _params(model)
  assert sorted(params) == ["code_embedding", "embedding_norm"]
  full = model.full_params(params)
  for name in ("position_embedding", "layer_0"):
    for a, b in zip(jax.tree.leaves(full[name]),
                    jax.tree.leaves(pre[name])):
      np.testing.assert_array_equal(a, b)
  table = np.asarray(params["code_embedding"]["embedding"])
  old = np.asarray(pre["code_embedding"]["embedding"])
  if remap == "none":
    np.testing.assert_array_equal(table, old)
  if remap == "learned":  # A true permutation of each digit's rows.
    np.testing.assert_array_equal(np.sort(table, axis=1),
                                  np.sort(old, axis=1))
  grads = jax.grad(lambda p: model.loss_fn(p, _batch(), None)[0])(params)
  assert sorted(grads) == ["code_embedding", "embedding_norm"]
  # The assignment is cached: a second build reuses it.
  cached = list((pre_dir / "remaps").glob("assignment-*.npy"))
  assert len(cached) == 1
  again = make_vqrec(_dataset(seed=3), config=TINY, codes=target,
                     pretrained_dir=str(pre_dir), remap=remap,
                     remap_epochs=1, remap_batch_size=8)
  np.testing.assert_array_equal(_params(again)["code_embedding"]["embedding"],
                                table)


def test_transfer_errors_name_the_run_and_the_fix(tmp_path):
  pre_dir, _ = _pretrained_run(tmp_path, TINY, _codes(seed=1))
  ds = _dataset(seed=3)
  wide = dataclasses.replace(TINY, hidden_dim=32)
  with pytest.raises(ConfigError, match=r"pre-trained with hidden_dim=16 "
                     r"but this run has VQRecConfig.hidden_dim=32; bind "
                     r"VQRecConfig.hidden_dim = 16"):
    make_vqrec(ds, config=wide, codes=_codes(), pretrained_dir=str(pre_dir))
  with pytest.raises(ConfigError, match=r"has 3 digits x 8 codes but .*pre"
                     r" was pre-trained on 4 x 8; rebuild the target's codes"
                     r" with num_subspaces=4"):
    make_vqrec(ds, config=TINY, codes=_codes(d=3),
               pretrained_dir=str(pre_dir))
  with pytest.raises(ConfigError, match=r"has 4 digits x 16 codes .* "
                     r"codebook_size=8"):
    make_vqrec(ds, config=dataclasses.replace(TINY, codebook_size=16),
               codes=_codes(m=16), pretrained_dir=str(pre_dir))
  with pytest.raises(ConfigError, match=r"no checkpoint with a model "
                     r"description .* Pre-train first"):
    make_vqrec(ds, config=TINY, codes=_codes(),
               pretrained_dir=str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match=r"remap='identity'; use one of"):
    make_vqrec(ds, config=TINY, codes=_codes(), remap="identity")
  with pytest.raises(ConfigError, match=r"zero_shot needs pretrained_dir "
                     r"and pretrained_codes_dir"):
    make_vqrec(ds, config=TINY, codes=_codes(), zero_shot=True)


def test_a_target_without_item_text_is_refused():
  with pytest.raises(ConfigError, match=r"'toy' has no item text .* "
                     r"VQ-Rec represents items by their text"):
    make_vqrec(_dataset(titles=False), config=TINY, codes=_codes())


def test_bad_configs_and_codes_are_clear_errors():
  with pytest.raises(ConfigError, match=r"VQRecConfig.loss='bpr'"):
    VQRecConfig(loss="bpr")
  with pytest.raises(ConfigError, match=r"temperature must be > 0"):
    VQRecConfig(temperature=0.0)
  with pytest.raises(ConfigError, match=r"corrupt_ratio must be in"):
    VQRecConfig(corrupt_ratio=1.5)
  with pytest.raises(ConfigError, match=r"codes must be in \[0, "
                     r"codebook_size=8\)"):
    make_vqrec(_dataset(), config=TINY, codes=_codes(m=9))
  with pytest.raises(ConfigError, match=r"has 4 digits per item but "
                     r"VQRecConfig.num_digits=3"):
    make_vqrec(_dataset(), config=dataclasses.replace(TINY, num_digits=3),
               codes=_codes())
  with pytest.raises(ConfigError, match=r"bind make_vqrec.codes_dir"):
    make_vqrec(_dataset(), config=TINY)


def test_cold_start_transfer_learns_its_own_assignment(tmp_path):
  pre_dir, _ = _pretrained_run(tmp_path, TINY, _codes(seed=1))
  kwargs = dict(config=TINY, codes=_codes(seed=2), remap_epochs=1,
                pretrained_dir=str(pre_dir), remap_batch_size=8)
  make_vqrec(_dataset(seed=3), **kwargs)
  cold = np.array([0, 3, 5])
  make_vqrec(_dataset(seed=3), cold_items=cold, **kwargs)
  # Trained without the cold items' sequences (and a permutation, checked
  # on the way): a separate cache entry.
  assert len(list((pre_dir / "remaps").glob("assignment-*.npy"))) == 2
