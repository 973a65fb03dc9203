"""Tests for benchmarks/markov_mix.py: the mixture's rankings."""

import bench_scripts
import numpy as np
import pytest
import tiny_item_runs

mix = bench_scripts.load("markov_mix")


def test_the_end_weights_are_each_part_and_exclusion_holds():
  rng = np.random.default_rng(0)
  model = rng.normal(size=(4, 30))
  counts = rng.integers(0, 5, size=(4, 30)).astype(float) + rng.random(
      (4, 30)) * 1e-3  # no ties
  out = mix.mixed_lists(model, counts, (0.0, 0.5, 1.0), k=5)
  np.testing.assert_array_equal(out[0.0], np.argsort(-model, 1)[:, :5])
  np.testing.assert_array_equal(out[1.0], np.argsort(-counts, 1)[:, :5])
  p_model = np.exp(model) / np.exp(model).sum(1, keepdims=True)
  p = 0.5 * p_model + 0.5 * counts / counts.sum(1, keepdims=True)
  np.testing.assert_array_equal(out[0.5], np.argsort(-p, 1)[:, :5])
  exclude = [np.array([int(out[0.5][r, 0]), -1]) for r in range(4)]
  again = mix.mixed_lists(model, counts, (0.5,), exclude, k=5)[0.5]
  for r in range(4):
    assert exclude[r][0] not in again[r]
    np.testing.assert_array_equal(again[r][:4], out[0.5][r, 1:])


SYNTH = {"num_users": 60, "num_items": 25, "num_clusters": 3, "seed": 2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A tiny SASRec run trained for 20 steps."""
  _, model_dir, trained = tiny_item_runs.train_sasrec(
      tmp_path_factory.mktemp("markov_mix"), SYNTH, "EVAL_BATCH_SIZE = 16\n")
  return model_dir, trained


def test_weight_zero_is_the_runs_own_evaluation(tiny_run):
  model_dir, trained = tiny_run
  res = mix.evaluate_mix(str(model_dir), block=7)
  assert res["step"] == trained["best_step"]
  for prefix in ("test", "test_excl"):
    for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
      assert res[prefix][0.0][k] == pytest.approx(
          trained[f"{prefix}/{k}"], abs=1e-6), (prefix, k)
  val = res["validation"]
  assert res["weight"] in mix.WEIGHTS
  assert val[res["weight"]]["ndcg@10"] == max(v["ndcg@10"]
                                               for v in val.values())


def test_benchmark_row_of_the_mix_is_cached_in_the_run(tiny_run, tmp_path,
                                                       monkeypatch):
  model_dir, _ = tiny_run
  quality = bench_scripts.load("quality")
  bench = quality.Bench(tmp_path / "cache", "cpu")
  monkeypatch.setattr(bench, "run_dir", lambda *args: model_dir)
  base = {"dataset": "Synth", "method": "sasrec", "seed": 0,
          "schedule": "cpu", "train_seconds": 1.0,
          "variant": {"max_length": "8"}}
  row = bench.mix_row(None, "sasrec", 0, base)
  want = mix.evaluate_mix(str(model_dir))
  assert row["variant"] == {"max_length": "8", "mix": "markov"}
  assert row["mix/weight"] == want["weight"]
  assert row["test/ndcg@10"] == want["test"][want["weight"]]["ndcg@10"]
  assert (model_dir / quality.MIX_FILE).exists()
  assert bench.mix_row(None, "sasrec", 0, base) == row  # From the cache.
  assert quality._label("sasrec", row["variant"]) == (  # pylint: disable=protected-access
      "sasrec [max_length=8, mix=markov]")
