"""Tests for `recjax.models.rpg.serving`: RPG ranked by graph decoding."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from recjax import evaluation
from recjax.errors import ConfigError
from recjax.models.base import top_k_items
from recjax.models.rpg import RPGConfig
from recjax.models.rpg import catalog_scores
from recjax.models.rpg import make_rpg
from recjax.models.rpg.serving import GraphDecodedRPG
from recjax.models.rpg.serving import GraphSetting
from recjax.models.sasrec import make_sasrec

D, M, N = 4, 8, 30
TINY = RPGConfig(hidden_dim=16, num_heads=2, num_layers=1, mlp_dim=16,
                 max_length=6, codebook_size=M)
HIST = np.array([[-1, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10],
                 [-1, -1, -1, -1, -1, 11]], np.int32)


class _Catalog:
  name = "toy"

  def __init__(self, n):
    self.num_items = n


def _model_and_params(seed=0):
  codes = np.random.default_rng(seed).integers(0, M, (N, D)).astype(np.int32)
  model = make_rpg(_Catalog(N), config=TINY, codes=codes)
  params = model.get_initial_variables(jax.random.key(seed),
                                       {"input_items": (2, 6)})["params"]
  params = dict(params, head_kernel=0.3 * jax.random.normal(
      jax.random.key(seed), params["head_kernel"].shape))
  return model, params


@pytest.mark.parametrize("text,want", [
    ("graph", GraphSetting()),
    ("graph:10x5x3", GraphSetting(10, 5, 3, None)),
    ("graph:10x5x3x2", GraphSetting(10, 5, 3, 2)),
    ("40x50x6x8", GraphSetting(40, 50, 6, 8)),
])
def test_settings_parse_and_print(text, want):
  got = GraphSetting.parse(text)
  assert got == want
  assert GraphSetting.parse(str(got)) == got


@pytest.mark.parametrize("text", ["graph:", "beam", "graph:10x5", "graph10x5x3",
                                  "graph:10x5x3x2x1", ""])
def test_bad_settings_are_clear_errors(text):
  with pytest.raises(ConfigError, match=r"use 'exact', 'graph' or "
                     r"'graph:BxExS\[xX\]'"):
    GraphSetting.parse(text)


def test_a_zero_beam_setting_is_refused():
  with pytest.raises(ConfigError, match=r"GraphSetting.num_beams=0 must be "
                     ">= 1"):
    GraphSetting.parse("graph:0x5x3")


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_complete_graph_ranks_as_exact_scoring(exclude, inline, monkeypatch):
  """With every item a neighbour of every item, one step from 4 start
  items reaches the catalog: the walk's top-K is exact top-K (also with
  the neighbours' codes inline, as for large catalogs)."""
  from recjax.models.rpg import serving  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(serving, "INLINE_MIN_ITEMS", 0 if inline else N + 1)
  model, params = _model_and_params()
  counts = np.arange(N)[::-1]  # Item 0 most popular.
  graph_model = model.with_decoding(f"graph:8x{N - 1}x1", params, counts)
  assert isinstance(graph_model, GraphDecodedRPG)
  assert graph_model.setting == GraphSetting(8, N - 1, 1, None)
  graph_model = GraphDecodedRPG(model, params, GraphSetting(
      num_beams=8, num_edges=N - 1, num_steps=1, num_seeds=4), counts)
  np.testing.assert_array_equal(graph_model.seeds, [0, 1, 2, 3])
  assert (graph_model._inline is not None) == inline  # pylint: disable=protected-access
  excluded = HIST if exclude else None
  items, aux = graph_model.predict_batch_with_aux(
      params, {"input_items": HIST}, num_decodes=5, excluded_items=excluded)
  exact, exact_scores = top_k_items(
      catalog_scores(model.last_log_probs(params, {"input_items": HIST}),
                     model.codes), 5, excluded)
  np.testing.assert_array_equal(items, exact)
  np.testing.assert_allclose(aux["scores"], exact_scores, rtol=1e-5)


def test_evaluator_ranks_through_the_walk():
  """`RankingEvaluator.predict_both` of the decoded model: both history
  policies come from the walk (a one-edge graph differs from exact), and
  equal exact ranking on a complete graph."""
  model, params = _model_and_params(1)
  batch = {"input_items": HIST, "target_item": np.array([5, 0, 12]),
           evaluation.EXCLUDED_ITEMS: HIST}
  config = evaluation.EvalConfig(num_decodes=6)

  def both(m):
    every, unseen = evaluation.RankingEvaluator(
        m, config=config).predict_both(params, [batch])
    return every.items, unseen.items

  exact = both(model)
  complete = both(GraphDecodedRPG(model, params, GraphSetting(
      num_beams=6, num_edges=N - 1, num_steps=1, num_seeds=2)))
  np.testing.assert_array_equal(complete[0], exact[0])
  np.testing.assert_array_equal(complete[1], exact[1])
  sparse = GraphDecodedRPG(model, params, GraphSetting(
      num_beams=6, num_edges=1, num_steps=0, num_seeds=1, history_seeds=1))
  every, unseen = both(sparse)
  # Start set: item 0 (the random seed sample is fixed) and the last item
  # with its one neighbour: at most 3 items, the rest -1.
  assert (every >= 0).sum(axis=1).max() <= 3
  for row, h in zip(unseen, HIST):
    assert not set(row[row >= 0]) & set(h[h >= 0])


def test_exact_is_the_model_itself_and_other_families_refuse_graph():
  model, params = _model_and_params()
  assert model.with_decoding("exact", params) is model
  sasrec = make_sasrec(_Catalog(N))
  with pytest.raises(ConfigError, match=r"decoding='graph': SASRecModel "
                     r"ranks the catalog by exact scores only"):
    sasrec.with_decoding("graph", None)


def test_bad_counts_and_catalog_subsets_are_refused():
  model, params = _model_and_params()
  with pytest.raises(ConfigError, match=r"item_counts has shape \(3,\); the "
                     f"catalog has {N} items"):
    model.with_decoding("graph", params, np.ones(3))
  graph_model = model.with_decoding("graph:4x3x1", params)
  with pytest.raises(ConfigError, match="catalog subsets"):
    graph_model.predict_batch_with_aux(
        params, {"input_items": HIST}, allowed=np.ones(N, bool))


def test_eval_and_infer_decode_a_trained_run_by_graph(tmp_path, capsys):
  """`python -m recjax.eval / infer --decoding graph` on a trained RPG run
  directory: with a complete graph the metrics and the lists equal exact
  ranking, in their own files; a generative-only flag is refused."""
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import eval as eval_lib  # pylint: disable=g-import-not-at-top
  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  from recjax import infer  # pylint: disable=g-import-not-at-top
  from recjax import pipeline  # pylint: disable=g-import-not-at-top
  tiny = pipeline.DataSource("tiny", "synthetic", {
      "num_users": 40, "num_items": 24, "num_clusters": 3, "seed": 1})
  work = pipeline.Workspace(tmp_path / "work", semantic_ids_overrides={
      "num_subspaces": 4, "codebook_size": 8, "pca_dim": 16})
  codes_dir = work.semantic_ids("rpg", tiny, 0)
  run = tmp_path / "run"
  gin.clear_config()
  try:
    gin_utils.parse_gin(
        ["runs/train_items.gin", "models/rpg.gin", "schedules/rpg_smoke.gin"],
        [f"MODEL_DIR = {str(run)!r}", f"CODES_DIR = {str(codes_dir)!r}",
         "TRAIN_STEPS = 4", "EVAL_PERIOD = 4", "WARMUP_STEPS = 1"] +
        tiny.item_data_bindings(tmp_path / "item_data"), finalize=False)
    gin.get_configurable("recjax.train_items.train_items")()
  finally:
    gin.clear_config()
  exact = eval_lib.main(["--model_dir", str(run)])
  graph = eval_lib.main(["--model_dir", str(run), "--decoding",
                         "graph:20x23x1"])
  assert graph == exact
  assert json.loads((run / "eval_test_graph.json").read_text()) == graph
  outs = {}
  for decoding in ("exact", "graph:20x23x2x1"):
    out = tmp_path / f"{decoding}.jsonl"
    infer.main(["--model_dir", str(run), "--output", str(out),
                "--decoding", decoding])
    outs[decoding] = [json.loads(x)["items"]
                      for x in out.read_text().splitlines()]
  assert outs["exact"] == outs["graph:20x23x2x1"]
  assert "infer: decoding graph:20x23x2x1" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    eval_lib.main(["--model_dir", str(run), "--decoding", "graph:5"])
  assert "use 'exact', 'graph' or" in capsys.readouterr().err
