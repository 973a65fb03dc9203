"""Tests for recjax.embed: templates, embed_items, the stage and its CLI."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from tiny_checkpoints import write_t5

from recjax import embed
from recjax.datasets.canonical import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError


def _dataset():
  items = ItemTable(
      original_ids=["a", "b", "c"],
      fields={"title": ["red pen", "nail polish", "office paper"],
              "brand": ["Bic", "", "  "],
              "categories": ["office", "beauty", ""],
              "description": ["", "", "soft &amp; hard"]})
  return from_sequences("tiny", items, ["u1", "u2"], [[0, 1, 2], [2, 0]])


def test_render_skips_empty_fields_cleanly():
  texts = embed.render_texts(_dataset().items,
                             "Title: {title}; Brand: {brand}; Cat: "
                             "{categories}")
  assert texts == ["Title: red pen; Brand: Bic; Cat: office",
                   "Title: nail polish; Cat: beauty",
                   "Title: office paper"]


def test_render_field_list_and_html_unescape():
  texts = embed.render_texts(_dataset().items, ["title", "description"])
  assert texts[2] == "Title: office paper; Description: soft & hard"
  assert texts[0] == "Title: red pen"
  default = embed.render_texts(_dataset().items)
  assert default[1] == "Title: nail polish; Categories: beauty"


def test_render_unknown_field_names_the_fix():
  with pytest.raises(ConfigError, match=r"\{price\}.*available fields"):
    embed.render_texts(_dataset().items, "Title: {title}; Price: {price}")
  with pytest.raises(ConfigError, match="names no item field"):
    embed.render_texts(_dataset().items, "just text")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("ckpt") / "t5"
  write_t5(path)
  return path


def test_embed_items_aligned_float32(t5_dir):
  ds = _dataset()
  emb = embed.embed_items(ds, model_dir=t5_dir, template=["title"],
                          progress=False)
  assert emb.shape == (3, 8) and emb.dtype == np.float32
  from recjax.text_encoders import load_text_encoder
  enc = load_text_encoder(t5_dir)
  want = enc.encode(["Title: red pen", "Title: nail polish",
                     "Title: office paper"])
  np.testing.assert_allclose(emb, want, atol=1e-6)


def test_stage_writes_manifest_and_is_a_noop_on_rerun(tmp_path, t5_dir,
                                                      monkeypatch):
  ds_dir = _dataset().save(tmp_path / "ds")
  cfg = embed.EmbedConfig(model_dir=str(t5_dir), template=["title", "brand"])
  out = embed.embed_stage(ds_dir, tmp_path / "emb", cfg)
  emb, manifest = embed.load_embeddings(out)
  assert emb.shape == (3, 8)
  assert manifest["dim"] == 8 and manifest["num_items"] == 3
  assert manifest["template"] == "Title: {title}; Brand: {brand}"
  assert manifest["checksum"] == embed.array_checksum(emb)
  assert not list(tmp_path.glob(".emb.tmp-*"))

  def boom(*args, **kwargs):
    raise AssertionError("recomputed")

  monkeypatch.setattr(embed, "embed_items", boom)
  embed.embed_stage(ds_dir, out, cfg)  # same inputs: no-op
  with pytest.raises(AssertionError, match="recomputed"):
    embed.embed_stage(ds_dir, out, embed.EmbedConfig(
        model_dir=str(t5_dir), template=["title"]))
  # The failed run left the previous output intact.
  np.testing.assert_array_equal(embed.load_embeddings(out)[0], emb)


def test_tampered_embeddings_are_detected(tmp_path, t5_dir):
  ds_dir = _dataset().save(tmp_path / "ds")
  out = embed.embed_stage(ds_dir, tmp_path / "emb",
                          embed.EmbedConfig(model_dir=str(t5_dir)))
  np.save(out / embed.EMBEDDINGS_FILE, np.zeros((3, 8), np.float32))
  with pytest.raises(ConfigError,
                     match=r"emb/embeddings\.npy does not match the checksum "
                           r"in manifest\.json; the file was modified\. "
                           r"Re-run the embed stage"):
    embed.load_embeddings(out)
  with pytest.raises(ConfigError, match="not an embed-stage directory"):
    embed.load_embeddings(tmp_path / "ds")


def test_cli(tmp_path, t5_dir, capsys):
  ds_dir = _dataset().save(tmp_path / "ds")
  embed.main(["--dataset_dir", str(ds_dir), "--out", str(tmp_path / "e"),
              "--model_dir", str(t5_dir), "--template", "{title}"])
  printed = json.loads(capsys.readouterr().out)
  assert printed["num_items"] == 3 and printed["dim"] == 8


def test_standardize_gives_zero_mean_unit_variance_dimensions():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 4)) * [1, 10, 0.1, 0] + [29, 0, -3, 7]
  z = embed.postprocess(x, "standardize")
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(0), [1, 1, 1, 0], atol=1e-5)
  np.testing.assert_array_equal(embed.postprocess(x, "none"),
                                x.astype(np.float32))
  with pytest.raises(ConfigError, match=r"postprocess must be one of "
                     r"\('none', 'standardize'\), got 'whiten'"):
    embed.postprocess(x, "whiten")


def test_items_without_text_get_the_fallback_and_are_counted():
  items = ItemTable(original_ids=["a", "b"],
                    fields={"title": ["pen", ""], "brand": ["", " "]})
  texts = embed.render_texts(items, "Title: {title}; Brand: {brand}")
  assert texts == ["Title: pen", "Item b"]
  assert embed.count_empty(items, texts) == 1


def test_causal_lm_encoder_options(tmp_path):
  ds = _dataset()
  gguf = pathlib.Path(__file__).parent / "fixtures" / "tiny_llama.gguf"
  ds_dir = ds.save(tmp_path / "ds")
  cfg = embed.EmbedConfig(model_dir=str(gguf), template=["title"],
                          pooling="last", max_length=8, dtype="bfloat16",
                          postprocess="standardize")
  out = embed.embed_stage(ds_dir, tmp_path / "emb", cfg)
  emb, manifest = embed.load_embeddings(out)
  assert emb.shape == (3, 64) and manifest["model_name"] == "tiny_llama"
  assert manifest["inputs"]["pooling"] == "last"
  assert manifest["inputs"]["dtype"] == "bfloat16"
  np.testing.assert_allclose(emb.mean(0), 0, atol=1e-5)
  with pytest.raises(ConfigError, match=r"pooling / max_length / dtype apply "
                     r"to causal LMs \(\.gguf\)"):
    embed.embed_items(ds, model_dir=None, pooling="last")
