"""Tests for recjax.semantic_ids: build(), bad input, the stage and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recjax import embed
from recjax import item_sequences
from recjax import semantic_ids
from recjax.datasets.canonical import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError
from recjax.quantizers import load_tokenizer

N = 96
SMALL = dict(num_levels=2, codebook_size=4)
RQVAE = dict(SMALL, latent_dim=4, hidden_dims=(16,), epochs=3,
             batch_size=32, kmeans_iters=5, progress=False)
CONFIGS = {
    "rqvae": RQVAE,
    "letter": RQVAE,
    "rqkmeans": dict(SMALL, kmeans_iters=10),
    "opq": dict(num_subspaces=2, codebook_size=4, opq_iters=2,
                progress=False),
}


def _dataset(n=N):
  items = ItemTable([f"i{i}" for i in range(n)],
                    {"title": [f"item {i}" for i in range(n)]})
  rng = np.random.default_rng(0)
  seqs = [list(rng.integers(0, n, 6)) for _ in range(40)]
  return from_sequences("tiny", items, [f"u{u}" for u in range(40)], seqs)


def _emb(n=N, d=8, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_build_gives_unique_codes_and_a_report(method):
  ds, x = _dataset(), _emb()
  kw = dict(CONFIGS[method])
  if method == "letter":
    kw["cf_embeddings"] = "cooccurrence"
  res = semantic_ids.build(ds, x, method, seed=0, **kw)
  assert res.codes.dtype == np.int32 and res.codes.shape == (N, 3)
  assert len(np.unique(res.codes, axis=0)) == N
  np.testing.assert_array_equal(res.codes[:, :2], res.base_codes)
  rep = res.report
  assert len(rep["codebook_usage"]) == 2 and len(rep["perplexity"]) == 2
  assert 0 <= rep["collision_rate"] < 1 and rep["final_unique"]
  assert rep["first_code_lift"]["num_pairs"] > 0
  assert np.isfinite(rep["reconstruction_mse"])
  json.dumps(rep)
  assert res.layout.codebook_sizes[:2] == (4, 4)
  res.layout.check_codes(res.codes)
  again = semantic_ids.build(ds, x, method, seed=0, **kw)
  np.testing.assert_array_equal(again.codes, res.codes)


@pytest.mark.parametrize("method", ["rqkmeans", "opq"])
def test_sinkhorn_collisions_keep_the_level_count(method):
  ds, x = _dataset(), _emb()
  kw = dict(CONFIGS[method], codebook_size=16)
  res = semantic_ids.build(ds, x, method, collisions="sinkhorn", **kw)
  assert res.codes.shape == (N, 2)
  assert len(np.unique(res.codes, axis=0)) == N
  np.testing.assert_array_equal(res.codes[:, 0], res.base_codes[:, 0])


def test_bad_embeddings_are_clear_errors():
  ds = _dataset()
  x = _emb()
  x[5, 2] = np.nan
  with pytest.raises(ConfigError, match="NaN or inf in 1 rows.*row 5"):
    semantic_ids.build(ds, x, "rqkmeans", **CONFIGS["rqkmeans"])
  with pytest.raises(ConfigError, match="95 rows but the item table has 96"):
    semantic_ids.build(ds, _emb(95), "rqkmeans", **CONFIGS["rqkmeans"])
  with pytest.raises(ConfigError, match="cf_embeddings has 10 rows"):
    semantic_ids.build(ds, _emb(), "letter", cf_embeddings=_emb(10),
                       **RQVAE)
  with pytest.raises(ConfigError, match="needs cf_embeddings"):
    semantic_ids.build(ds, _emb(), "letter", **RQVAE)


def test_bad_config_is_a_clear_error():
  ds, x = _dataset(), _emb()
  with pytest.raises(ConfigError, match="max_vocab_size=500"):
    semantic_ids.build(ds, x, "rqvae", num_levels=3, codebook_size=256,
                       max_vocab_size=500)
  with pytest.raises(ConfigError, match="unknown option.*'epochz'"):
    semantic_ids.build(ds, x, "rqvae", epochz=3)
  with pytest.raises(ConfigError, match="method 'vq' is not known"):
    semantic_ids.build(ds, x, "vq")
  with pytest.raises(ConfigError, match="collision level has only 1"):
    semantic_ids.build(ds, x, "rqkmeans", collision_codebook_size=1,
                       **CONFIGS["rqkmeans"])


def test_stage_writes_artifacts_noop_rerun_and_cold_start(tmp_path, capsys,
                                                          monkeypatch):
  ds = _dataset()
  ds_dir = ds.save(tmp_path / "ds")
  x = _emb()
  emb_dir = tmp_path / "emb"
  emb_dir.mkdir()
  np.save(emb_dir / embed.EMBEDDINGS_FILE, x)
  (emb_dir / embed.MANIFEST_FILE).write_text(json.dumps(
      {"checksum": embed.array_checksum(x)}))
  semantic_ids.main(["--embeddings_dir", str(emb_dir), "--dataset_dir",
                     str(ds_dir), "--out", str(tmp_path / "sid"),
                     "--method", "rqkmeans", "--set", "num_levels=2",
                     "--set", "codebook_size=4"])
  out = tmp_path / "sid"
  assert "codebook usage per level" in capsys.readouterr().out
  for name in ("codes.npy", "base_codes.npy", "diagnostics.json",
               "config.json", "code_usage.png", "manifest.json",
               "tokenizer/tokenizer.json"):
    assert (out / name).exists(), name
  codes = semantic_ids.load_codes(out)
  assert len(np.unique(codes, axis=0)) == N
  config = json.loads((out / "config.json").read_text())
  assert config["method"] == "rqkmeans"
  assert config["method_config"]["codebook_size"] == 4
  tok = load_tokenizer(out)  # the stage directory works too
  np.testing.assert_array_equal(tok.encode(x), np.load(out /
                                                       "base_codes.npy"))

  def boom(*a, **k):
    raise AssertionError("rebuilt")

  monkeypatch.setattr(semantic_ids, "build", boom)
  semantic_ids.semantic_ids_stage(emb_dir, ds_dir, out, "rqkmeans",
                                  num_levels=2, codebook_size=4)
  with pytest.raises(AssertionError, match="rebuilt"):
    semantic_ids.semantic_ids_stage(emb_dir, ds_dir, out, "rqkmeans",
                                    seed=1, num_levels=2, codebook_size=4)
  np.testing.assert_array_equal(semantic_ids.load_codes(out), codes)


def test_fit_on_training_items_ignores_the_held_out_ones():
  """fit_on='train' fits on items in some history's training part only:
  moving a held-out item's embedding changes no other item's code, and
  collisions='none' keeps the quantizer's (possibly shared) codes."""
  items = ItemTable([f"i{i}" for i in range(N)],
                    {"title": [f"item {i}" for i in range(N)]})
  rng = np.random.default_rng(0)
  # Items 90..95 appear only as the last (test) or second-to-last item.
  seqs = [list(rng.integers(0, 90, 6)) + [90 + u % 6, 90 + (u + 1) % 6]
          for u in range(40)]
  ds = from_sequences("tiny", items, [f"u{u}" for u in range(40)], seqs)
  np.testing.assert_array_equal(semantic_ids.training_items(ds),
                                np.unique(np.concatenate(
                                    [s[:-2] for s in ds.sequences()])))
  assert not set(range(90, 96)) & set(semantic_ids.training_items(ds))
  kw = dict(num_subspaces=2, codebook_size=4, opq_iters=2, progress=False,
            collisions="none", fit_on="train")
  x = _emb()
  res = semantic_ids.build(ds, x, "opq", seed=0, **kw)
  assert res.codes.shape == (N, 2)
  np.testing.assert_array_equal(res.codes, res.base_codes)
  assert res.report["fit_items"] == len(semantic_ids.training_items(ds))
  moved = x.copy()
  moved[93] += 100.0
  res2 = semantic_ids.build(ds, moved, "opq", seed=0, **kw)
  np.testing.assert_array_equal(np.delete(res2.codes, 93, 0),
                                np.delete(res.codes, 93, 0))
  # fit_on='all' does see it.
  res3 = semantic_ids.build(ds, moved, "opq", seed=0,
                            **dict(kw, fit_on="all"))
  assert not np.array_equal(np.delete(res3.codes, 93, 0),
                            np.delete(res.codes, 93, 0))
  with pytest.raises(ConfigError, match="fit_on='everything'; choose one "
                     "of"):
    semantic_ids.build(ds, x, "opq", **dict(kw, fit_on="everything"))
  with pytest.raises(ConfigError, match="fit_on='train' is not supported "
                     "by method 'letter'"):
    semantic_ids.build(ds, x, "letter", fit_on="train", **RQVAE)


def test_cold_start_items_are_left_out_of_the_fit():
  """cold_fraction leaves the cold-start protocol's items (the same draw as
  `item_sequences.cold_items`) out of a fit on training items: moving a
  cold item's embedding changes no other item's code."""
  items = ItemTable([f"i{i}" for i in range(N)],
                    {"title": [f"item {i}" for i in range(N)]})
  rng = np.random.default_rng(0)
  seqs = [list(rng.integers(0, N, 8)) for _ in range(60)]
  ds = from_sequences("tiny", items, [f"u{u}" for u in range(60)], seqs)
  cold = item_sequences.cold_items(N, 0.1, 3)
  kept = semantic_ids.training_items(ds, cold)
  assert not set(cold) & set(kept)
  assert set(kept) | set(cold) >= set(semantic_ids.training_items(ds))
  kw = dict(num_subspaces=2, codebook_size=4, opq_iters=2, progress=False,
            collisions="none", fit_on="train", cold_fraction=0.1,
            cold_seed=3)
  x = _emb()
  res = semantic_ids.build(ds, x, "opq", seed=0, **kw)
  assert res.report["fit_items"] == len(kept)
  assert res.report["cold_items"] == len(cold)
  moved = x.copy()
  moved[cold[0]] += 100.0
  res2 = semantic_ids.build(ds, moved, "opq", seed=0, **kw)
  np.testing.assert_array_equal(np.delete(res2.codes, cold[0], 0),
                                np.delete(res.codes, cold[0], 0))
  # Without the protocol the item is fitted on.
  plain = dict(kw, cold_fraction=0.0)
  res3 = semantic_ids.build(ds, x, "opq", seed=0, **plain)
  res4 = semantic_ids.build(ds, moved, "opq", seed=0, **plain)
  assert not np.array_equal(np.delete(res4.codes, cold[0], 0),
                            np.delete(res3.codes, cold[0], 0))
  with pytest.raises(ConfigError, match="cold_fraction=0.1 needs "
                     "fit_on='train'"):
    semantic_ids.build(ds, x, "opq", **dict(kw, fit_on="all"))
  with pytest.raises(ConfigError, match=r"cold_fraction must be in \[0, 1\)"):
    semantic_ids.build(ds, x, "opq", **dict(kw, cold_fraction=1.5))


def test_check_digits_names_the_source_and_the_fix():
  codes = np.zeros((5, 16), np.int32)
  assert semantic_ids.check_digits(codes, 0, "RPGConfig", "x").shape == (5, 16)
  assert semantic_ids.check_digits(codes, 16, "RPGConfig", "x").shape == (
      5, 16)
  with pytest.raises(ConfigError, match=r"SID has 16 digits per item but "
                     r"RPGConfig.num_digits=32; rebuild the codes with "
                     r"num_subspaces=32"):
    semantic_ids.check_digits(codes, 32, "RPGConfig", "SID")
  with pytest.raises(ConfigError, match=r"got shape \(5,\)"):
    semantic_ids.check_digits(codes[:, 0], 0, "RPGConfig", "SID")
