"""Tests for recjax.quickstart (the end-to-end job itself is `make
quickstart`; its stages are tested in their own modules)."""

import os
import pathlib

from recjax import quickstart

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_table_lists_every_model_and_metric():
  text = quickstart._table({"TIGER": {"recall@5": 0.1, "recall@10": 0.2,
                                      "ndcg@5": 0.05, "ndcg@10": 0.07},
                            "popularity": {"recall@5": 0.01}})
  lines = text.splitlines()
  assert lines[0].split() == ["model", "recall@5", "recall@10", "ndcg@5",
                              "ndcg@10"]
  assert lines[1].split() == ["TIGER", "0.1000", "0.2000", "0.0500",
                              "0.0700"]
  assert lines[2].split()[:2] == ["popularity", "0.0100"]
  assert lines[2].split()[2] == "nan"


def test_next_steps_work_as_printed(tmp_path):
  """The quickstart's closing commands run, as printed, on a tiny run."""
  import json  # pylint: disable=g-import-not-at-top
  import shlex  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  from recjax import pipeline  # pylint: disable=g-import-not-at-top
  tiny = pipeline.DataSource(
      "tiny", "synthetic",
      {"num_users": 40, "num_items": 24, "num_clusters": 3, "seed": 1})
  work = pipeline.Workspace(tmp_path / "work", semantic_ids_overrides={
      "codebook_size": 8, "epochs": 5, "num_user_buckets": 10})
  work.run("tiger", tiny, 0, "smoke")
  run = work.run_dir("tiger", tiny, 0, "smoke")
  ds, _ = work.dataset(tiny)
  histories = quickstart.write_example_histories(ds, tmp_path / "h.jsonl")
  text = quickstart.next_steps(run, histories, tmp_path / "recs.jsonl")
  commands = [line.strip() for line in text.splitlines()
              if " -m recjax." in line]
  assert [c.split()[2] for c in commands] == ["recjax.infer", "recjax.eval"]
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  for command in commands:
    args = shlex.split(command)
    proc = subprocess.run([sys.executable] + args[1:], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cuda" not in proc.stderr.lower(), proc.stderr[-2000:]
  recs = [json.loads(x) for x in (tmp_path / "recs.jsonl").read_text(
      ).splitlines()]
  assert [r["user_id"] for r in recs] == [
      f"example_{ds.user_ids[u]}" for u in range(2)]
  lines = [json.loads(x) for x in histories.read_text().splitlines()]
  for rec, line in zip(recs, lines):  # 24 items, the history excluded
    assert len(rec["items"]) == min(20, 24 - len(set(line["history"])))
    assert not set(rec["items"]) & set(line["history"])
  assert "curves.png" in text and "tensorboard --logdir" in text


def test_a_run_of_an_older_configuration_is_trained_again(tmp_path, capsys):
  run = tmp_path / "rpg"
  run.mkdir()
  (run / "config.gin").write_text(
      "recjax.models.rpg.RPGConfig.temperature = 0.03\n")
  same = tmp_path / "same.gin"
  same.write_text("recjax.models.rpg.RPGConfig.temperature = 0.03\n")
  quickstart._retrain_if_changed(run, [str(same)], [])
  assert run.exists()  # Same configuration: reused (resumed).
  quickstart._retrain_if_changed(
      run, [str(same)], ["recjax.models.rpg.RPGConfig.temperature = 0.07"])
  assert not run.exists()
  assert ("was trained with another configuration (RPGConfig.temperature "
          "0.03 -> 0.07); training it again." in capsys.readouterr().out)
