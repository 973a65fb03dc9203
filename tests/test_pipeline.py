"""Every registered method: train, eval and infer through the one entry
point of each verb, the later two from MODEL_DIR alone (recjax.pipeline)."""

import json
import pathlib

import pytest

from recjax import eval as eval_lib
from recjax import infer as infer_lib
from recjax import pipeline
from recjax.errors import ConfigError
from recjax.models import registry

TINY = pipeline.DataSource(
    "tiny", "synthetic",
    {"num_users": 40, "num_items": 24, "num_clusters": 3, "seed": 1})
# A toy semantic-ID stage: 3 levels of 8 codes, a few epochs, 10 buckets;
# OPQ codes (RPG): 4 digits of a 16-dimensional PCA.
SMALL_IDS = {"codebook_size": 8, "epochs": 5, "num_user_buckets": 10,
             "num_subspaces": 4, "pca_dim": 16}


# Two other toy data sets: what methods with a `pretrain_method` (VQ-Rec's
# transfer) pre-train on, merged.
PRETRAIN = tuple(pipeline.DataSource(name, "synthetic", dict(
    TINY.kwargs, seed=seed)) for name, seed in (("src_a", 2), ("src_b", 3)))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  # The LLM methods (lite_llm, learn_llm, said) run on a tiny random
  # Llama instead of the 98 MB SmolLM2.
  return pipeline.Workspace(tmp_path_factory.mktemp("work"),
                            semantic_ids_overrides=SMALL_IDS,
                            pretrain_sources=PRETRAIN,
                            lm_path=pathlib.Path(__file__).parent /
                            "fixtures" / "tiny_llama.gguf")


@pytest.mark.parametrize("method", registry.list_methods())
def test_every_method_trains_evaluates_and_infers(method, work, tmp_path):
  spec = registry.get_method(method)
  if spec.kind != registry.COUNT:
    assert registry.SMOKE in spec.schedules, (
        f"{method}: register a {registry.SMOKE!r} schedule")
  trained = work.run(method, TINY, seed=0, schedule=registry.SMOKE)
  run = work.run_dir(method, TINY, 0, registry.SMOKE)
  desc = json.loads((run / "run.json").read_text())
  assert desc["kind"] == spec.kind and desc["family"] == spec.family
  assert (run / "config.gin").exists()
  # eval from MODEL_DIR alone reproduces the training run's test metrics.
  again = eval_lib.main(["--model_dir", str(run), "--output_dir",
                         str(tmp_path)])
  for key in ("test/ndcg@10", "test_excl/recall@10"):
    assert again[key] == pytest.approx(trained[key], abs=1e-6), key
  # infer from MODEL_DIR alone: real items, never the user's history.
  out = infer_lib.main(["--model_dir", str(run), "--output",
                        str(tmp_path / "recs.jsonl"), "--num_decodes", "5"])
  lines = [json.loads(x) for x in out.read_text().splitlines()]
  assert len(lines) == TINY.kwargs["num_users"]
  ds, _ = work.dataset(TINY)
  histories = {ds.user_ids[u]: {ds.items.original_ids[i]
                                for i in ds.sequence(u)[:-1]}
               for u in range(ds.num_users)}
  for line in lines:
    assert 0 < len(line["items"]) <= 5
    assert set(line["items"]) <= set(ds.items.original_ids)
    assert not set(line["items"]) & histories[line["user_id"]]
  # A second run is a no-op (the result is cached).
  assert work.run(method, TINY, seed=0, schedule=registry.SMOKE) == trained


def test_data_sources_and_errors(tmp_path):
  assert pipeline.DataSource.parse("movielens_100k").source == (
      "movielens_100k")
  folder = tmp_path / "lcrec"
  folder.mkdir()
  with pytest.raises(ConfigError, match=r"expected exactly one "
                     r"<Category>.inter.json \(LC-Rec layout\), found none"):
    pipeline.DataSource.parse(f"X={folder}")
  (folder / "Toys.inter.json").write_text("{}")
  data = pipeline.DataSource.parse(f"X={folder}")
  assert data.kwargs == {"data_dir": str(folder), "category": "Toys"}
  assert data.item_data_bindings(None) == [
      "recjax.item_sequences.ItemDataConfig.source = 'amazon_lcrec'",
      f"recjax.item_sequences.ItemDataConfig.data_dir = {str(folder)!r}",
      "recjax.item_sequences.ItemDataConfig.category = 'Toys'"]
  with pytest.raises(ConfigError, match=r"data set 'nope': pass NAME=PATH"):
    pipeline.DataSource.parse("nope")
  with pytest.raises(ConfigError, match=r"is not a directory"):
    pipeline.DataSource.parse(f"X={tmp_path / 'missing'}")


def test_eval_and_infer_name_what_is_missing(tmp_path):
  with pytest.raises(ConfigError, match=r"run.json does not exist: it "
                     r"holds no trained run; train one first"):
    eval_lib.evaluate_run(str(tmp_path / "none"))
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "history.jsonl").write_text("")
  with pytest.raises(ConfigError, match=r"written before runs described "
                     r"themselves; pass the run's gin files"):
    infer_lib.infer_run(str(tmp_path / "old"), str(tmp_path / "o.jsonl"))
  with pytest.raises(ConfigError, match=r"split='train': use 'validation' "
                     r"or 'test'"):
    eval_lib.evaluate_run(str(tmp_path / "old"), split="train")
  assert not (tmp_path / "o.jsonl").exists()


def test_count_run_writes_its_ranked_lists_with_scores(work, tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  work.run("markov", TINY, seed=0)
  run = work.run_dir("markov", TINY, 0)
  out = eval_lib.evaluate_run(str(run), write_predictions=True,
                              output_dir=str(tmp_path))
  with np.load(tmp_path / "predictions_test.npz") as f:
    items, scores, targets = f["items"], f["scores"], f["targets"]
  assert items.shape == scores.shape == (TINY.kwargs["num_users"], 20)
  assert (np.diff(scores, axis=1) <= 0).all() and np.isfinite(scores).all()
  assert scores.max() > 0  # transition counts, not a placeholder
  hits = (items[:, :10] == targets[:, None]).any(axis=1).mean()
  assert hits == pytest.approx(out["test/recall@10"])


def test_a_run_trained_with_another_configuration_is_not_reused(tmp_path):
  work = pipeline.Workspace(tmp_path / "work")
  first = work.run("markov", TINY, seed=0)
  run = work.run_dir("markov", TINY, 0)
  config = run / "config.gin"
  # As if the family's gin file had bound other decays when it trained.
  config.write_text(config.read_text().replace(
      "(0.0, 0.25, 0.5, 0.75, 1.0)", "(0.0, 0.5)"))
  with pytest.raises(ConfigError, match=(
      r"seed0 was trained with another configuration:\n  "
      r"train_counts.fit_kwargs: \{'decays': \(0.0, 0.5\)\} \(run\) -> "
      r"\{'decays': \(0.0, 0.25, 0.5, 0.75, 1.0\)\} \(now\)\n.*Delete the "
      r"directory to train again")):
    work.run("markov", TINY, seed=0)
  assert work.run("markov", TINY, seed=0, accept_changes=True) == first
  # A whole cache moved elsewhere is the same configuration.
  config.write_text(config.read_text().replace(
      "(0.0, 0.5)", "(0.0, 0.25, 0.5, 0.75, 1.0)"))
  moved = tmp_path / "moved"
  (tmp_path / "work").rename(moved)
  assert pipeline.Workspace(moved).run("markov", TINY, seed=0) == first


def test_cold_start_bindings_give_the_codes_their_own_fit(work):
  """The cold-start protocol's gin bindings reach the semantic-ID stage:
  a quantizer fitted on training items gets its own folder, without the
  cold items; other bindings are ignored."""
  assert pipeline.cold_start_settings(["X.y = 1"]) == {}
  assert pipeline.cold_start_settings(
      ["recjax.item_sequences.ItemDataConfig.cold_fraction=0.0"]) == {}
  cold = pipeline.cold_start_settings([
      "recjax.item_sequences.ItemDataConfig.cold_fraction = 0.1",
      "recjax.item_sequences.ItemDataConfig.cold_seed = 4  # the draw"])
  assert cold == {"cold_fraction": 0.1, "cold_seed": 4}
  with pytest.raises(ConfigError, match="cold_fraction = 'ten' is not a "
                     "number"):
    pipeline.cold_start_settings(["ItemDataConfig.cold_fraction = ten"])
  plain = work.semantic_ids("vqrec", TINY, 0)
  strict = work.semantic_ids("vqrec", TINY, 0, cold=cold)
  assert plain != strict
  report = json.loads((strict / "diagnostics.json").read_text())
  assert report["cold_items"] == 2  # round(0.1 * 24)
  assert json.loads((plain / "diagnostics.json").read_text()).get(
      "cold_items") is None
  # TIGER's codes are fitted on every item: the protocol does not apply.
  assert work.semantic_ids("tiger", TINY, 0, cold=cold) == (
      work.semantic_ids("tiger", TINY, 0))


def test_codes_of_another_text_encoder_get_their_own_folder(work):
  """`rpg_llm` quantizes the SmolLM2 vectors (here the tiny Llama's), not
  MiniLM's: its codes are another stage, fitted on other embeddings."""
  minilm = work.semantic_ids("rpg", TINY, 0)
  llm = work.semantic_ids("rpg_llm", TINY, 0)
  assert llm != minilm and llm.name.startswith("smollm2-mean-")
  assert llm.name.removeprefix("smollm2-mean-") == minilm.name
  inputs = [json.loads((d / "manifest.json").read_text())["inputs"]
            for d in (minilm, llm)]
  assert inputs[0]["embeddings"] != inputs[1]["embeddings"]
  assert inputs[0]["dataset"] == inputs[1]["dataset"]
