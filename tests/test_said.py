"""SAID stage 1 on the tiny Llama: it learns, resumes exactly, and feeds
the pipeline's text-embedding slot."""

from __future__ import annotations

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from recjax import embed
from recjax.datasets.canonical import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError
from recjax.models import registry
from recjax.models import said
from recjax.text_encoders import llama

TINY = pathlib.Path(__file__).parent / "fixtures" / "tiny_llama.gguf"
TITLES = ["red pen", "the stapler", "paper clips", "ink", "a desk lamp",
          "sticky notes"]


@pytest.fixture(scope="module")
def lm() -> llama.CausalLM:
  return llama.load_causal_lm(TINY)


@pytest.fixture
def dataset_dir(tmp_path) -> pathlib.Path:
  items = ItemTable(original_ids=[f"i{i}" for i in range(6)],
                    fields={"title": TITLES, "brand": [""] * 6,
                            "categories": ["office"] * 5 + [""]})
  ds = from_sequences("tiny", items, ["u1", "u2"],
                      [[0, 1, 2, 3], [4, 5, 0]])
  path = tmp_path / "dataset"
  ds.save(path)
  return path


def _config(**kw) -> said.SAIDStageConfig:
  base = dict(model=said.SAIDConfig(num_prompt_tokens=2, id_dim=8,
                                    projector_hidden=16),
              lm=str(TINY), batch_size=2, num_epochs=6, learning_rate=3e-2,
              warmup_steps=0, log_period=3, checkpoint_period=3)
  base.update(kw)
  return said.SAIDStageConfig(**base)


def test_prompts_teach_the_lm_each_items_text(lm, dataset_dir, tmp_path):
  out = said.said_stage(dataset_dir, tmp_path / "said", _config(), lm=lm)
  emb, manifest = embed.load_embeddings(out)
  assert emb.shape == (6, 2 * 64) and manifest["method"] == "said"
  history = [json.loads(x) for x in (pathlib.Path(manifest["run_dir"]) /
                                     "history.jsonl").read_text().split("\n")
             if x.strip()]
  losses = [r["train/loss"] for r in history if "train/loss" in r]
  assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
  # A second call with the same inputs trains nothing.
  mtime = (out / embed.EMBEDDINGS_FILE).stat().st_mtime_ns
  said.said_stage(dataset_dir, tmp_path / "said", _config(), lm=lm)
  assert (out / embed.EMBEDDINGS_FILE).stat().st_mtime_ns == mtime


def test_loss_is_the_text_cross_entropy_through_the_prompt(lm):
  """`loss_fn` equals a direct computation: LM over [prompt, text]."""
  cfg = said.SAIDConfig(num_prompt_tokens=3, id_dim=4, projector_hidden=8)
  model = said.SAIDModel(cfg, lm, num_items=5)
  params = model.get_initial_variables(jax.random.key(1),
                                       {"items": (2,)})["params"]
  tokens, mask = said.tokenize_items(lm, ["red pen", "the long stapler"],
                                     16)
  batch = {"items": np.asarray([3, 1]), "tokens": tokens, "text_mask": mask}
  loss, metrics = model.loss_fn(params, batch, None)
  want, count = 0.0, 0
  for r in range(2):
    n = int(mask[r].sum())
    prompt = np.asarray(model.prompts(params, batch["items"][r:r + 1]))[0]
    text = np.asarray(lm.params["embed"])[tokens[r, :n - 1]]
    x = np.concatenate([prompt, text])[None]
    logits, _ = model.llm.apply({"params": lm.params}, None,
                                np.ones((1, len(x[0])), np.int32), embeds=x)
    logp = np.asarray(jax.nn.log_softmax(logits[0, 2:]))
    want -= sum(logp[t, tokens[r, t]] for t in range(n))
    count += n
  np.testing.assert_allclose(float(loss), want / count, rtol=1e-4)
  assert float(metrics["num_tokens"]) == count


def test_a_killed_run_resumes_to_the_same_vectors(lm, dataset_dir,
                                                  tmp_path, capsys):
  full = said.said_stage(dataset_dir, tmp_path / "a" / "said", _config(),
                         lm=lm)
  want, _ = embed.load_embeddings(full)
  # The same run killed after step 12 of 18: only its checkpoints up to
  # step 12 exist and no vectors were written.
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "said")
  run = next((tmp_path / "b" / "said.run").iterdir())
  steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps[-1] == 18
  for step in steps:
    if step > 12:
      shutil.rmtree(run / "checkpoints" / str(step))
  capsys.readouterr()
  out = said.said_stage(dataset_dir, tmp_path / "b" / "said", _config(),
                        lm=lm)
  assert "Resuming from step 12" in capsys.readouterr().out
  got, _ = embed.load_embeddings(out)
  np.testing.assert_array_equal(got, want)


def test_said_is_registered_as_a_trained_item_encoder():
  spec = registry.get_method("said")
  assert spec.text_encoder == "said" and spec.family == "lite"
  assert registry.item_encoder_stage("said") == (
      "recjax.models.said.said_stage")
  assert registry.get_method("lite_llm").text_encoder == "smollm2-mean"


def test_tokenize_rounds_the_width_and_truncates(lm):
  tokens, mask = said.tokenize_items(lm, ["ink", "a " * 40], 20)
  assert tokens.shape == (2, 16) or tokens.shape[1] <= 20
  assert tokens.shape[1] % 8 == 0 or tokens.shape[1] == 20
  assert mask[0].sum() == len(lm.encode_text("ink"))
  assert mask[1].sum() == 20
  with pytest.raises(ConfigError, match="have no text tokens"):
    said.tokenize_items(lm, ["ink", ""], 20)


def test_command_line_writes_the_vectors(dataset_dir, tmp_path, capsys):
  from recjax.models.said import stage  # pylint: disable=g-import-not-at-top
  stage.main(["--dataset_dir", str(dataset_dir), "--out",
              str(tmp_path / "said"), "--lm", str(TINY), "--epochs", "1",
              "--batch_size", "3"])
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  # Default SAIDConfig: k = 2 soft prompts of the tiny LM's width 64.
  assert summary["num_items"] == 6 and summary["dim"] == 2 * 64
  emb, _ = embed.load_embeddings(tmp_path / "said")
  np.testing.assert_allclose(emb.mean(0), 0, atol=1e-4)  # Standardised.
