"""Tests of `benchmarks/quality.py`'s records, table and schedules.

The benchmark's training cells need the real data and hours; these tests
cover the bookkeeping that makes results from different sessions
tabulate together, and the schedule bindings each cell is trained with.
"""

import json
import pathlib

import bench_scripts
import numpy as np
import pytest

from recjax.datasets import canonical
from recjax.models import markov

REPO = pathlib.Path(__file__).resolve().parents[1]


quality = bench_scripts.load("quality")


def _row(dataset="Office", method="tiger", schedule="cpu_long", seed=0,
         value=0.1, seconds=10.0):
  row = {"dataset": dataset, "method": method, "schedule": schedule,
         "seed": seed, "train_seconds": seconds}
  for prefix in ("test", "test_excl"):
    for m in quality.METRICS:
      row[f"{prefix}/{m}"] = value
  return row


def test_record_then_read_keeps_latest_row_per_cell(tmp_path):
  path = tmp_path / "results" / "quality.jsonl"
  quality.record(path, [_row(seed=0, value=0.1), _row(seed=1, value=0.2)],
                 "first")
  quality.record(path, [_row(seed=0, value=0.3)], "second")
  lines = path.read_text().splitlines()
  assert len(lines) == 3  # appended, never rewritten
  assert json.loads(lines[-1])["note"] == "second"
  rows = {r["seed"]: r for r in quality.read_records(path)}
  assert sorted(rows) == [0, 1]
  assert rows[0]["test/ndcg@10"] == 0.3 and rows[0]["note"] == "second"
  assert rows[1]["test/ndcg@10"] == 0.2
  assert not list(path.parent.glob("*.tmp"))


def test_schedules_are_separate_cells(tmp_path):
  path = tmp_path / "quality.jsonl"
  quality.record(path, [_row(schedule="cpu"), _row(schedule="cpu_long")],
                 "n")
  assert {r["schedule"] for r in quality.read_records(path)} == {
      "cpu", "cpu_long"}


def test_read_records_names_the_bad_line(tmp_path):
  path = tmp_path / "quality.jsonl"
  path.write_text(json.dumps(_row()) + "\n\nnot json\n")
  with pytest.raises(SystemExit, match=r"quality.jsonl:3: not a result row"):
    quality.read_records(path)
  path.write_text(json.dumps({"dataset": "Office"}) + "\n")
  with pytest.raises(SystemExit, match=r":1: not a result row"):
    quality.read_records(path)


def test_read_records_of_missing_file_is_empty(tmp_path):
  assert quality.read_records(tmp_path / "none.jsonl") == []


def test_table_mean_std_over_seeds_and_anchor():
  rows = [_row("Beauty", "tiger", seed=s, value=v, seconds=t)
          for s, v, t in ((0, 0.02, 100.0), (1, 0.04, 300.0))]
  text = quality.table(rows).splitlines()
  assert text[0].startswith("| dataset | method | schedule | seeds |")
  assert len(text[0].split("|")) == len(text[1].split("|"))
  values = np.array([0.02, 0.04])
  cell = f"{values.mean():.4f} ± {values.std():.4f}"
  assert text[2].startswith("| Beauty | tiger | cpu_long | 2 | " + cell)
  assert text[2].endswith("| 200 |")
  # The published TIGER numbers follow the first Beauty TIGER group.
  assert text[3].startswith("| Beauty | *TIGER (paper)* | published |")
  assert "0.0454 | 0.0321 | 0.0648 | 0.0384" in text[3]
  assert len(text) == 4


def test_table_single_seed_has_no_std():
  text = quality.table([_row("Office", "learn", "cpu", value=0.05)])
  assert "±" not in text and "| Office | learn | cpu | 1 | 0.0500 |" in text


def _capture_gin(monkeypatch, data: pathlib.Path, name: str) -> dict:
  """Makes `parse_gin` record its files and bindings, then stop training.

  Args:
    monkeypatch: pytest's fixture.
    data: a folder to turn into an (empty) LC-Rec data set.
    name: its category.

  Returns:
    The dict that receives `files` and `bindings`.
  """
  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  captured = {}

  def fake_parse(files, bindings):
    captured["files"], captured["bindings"] = list(files), list(bindings)
    raise StopIteration  # stop before training

  monkeypatch.setattr(gin_utils, "parse_gin", fake_parse)
  data.mkdir()
  (data / f"{name}.inter.json").write_text("{}")
  return captured


@pytest.mark.parametrize("schedule", ["cpu_long", "cpu_xl"])
@pytest.mark.parametrize("name", ["Office", "Beauty"])
def test_cpu_long_bindings(name, schedule, tmp_path, monkeypatch):
  """`cpu_long`/`cpu_xl`: the CPU width, dropout, early stopping."""
  import tasks  # pylint: disable=g-import-not-at-top
  data = tmp_path / "Data"
  captured = _capture_gin(monkeypatch, data, name)
  monkeypatch.setattr(tasks, "register_tiger_task", lambda *a, **k: None)
  bench = quality.Bench(tmp_path, schedule)
  with pytest.raises(StopIteration):
    bench.generative(name, data, "tiger", 0, tmp_path / "sid",
                     tmp_path / "run")
  b = captured["bindings"]
  assert "recjax.network.TransformerConfig.dropout_rate = 0.1" in b
  assert "recjax.network.TransformerConfig.dropout_rate = 0.0" not in b
  assert "recjax.trainer.TrainerConfig.patience = 3" in b
  assert "recjax.network.TransformerConfig.emb_dim = 64" in b
  steps, period = (
      (quality.CPU_LONG_STEPS[name], quality.CPU_LONG_EVAL_PERIOD[name])
      if schedule == "cpu_long" else
      (quality.CPU_XL_STEPS[name], quality.CPU_XL_EVAL_PERIOD[name]))
  assert f"TRAIN_STEPS = {steps}" in b
  assert f"EVAL_PERIOD = {period}" in b
  if schedule == "cpu_xl":
    assert steps == 3 * quality.CPU_LONG_STEPS[name]
  # Beauty validates on 5,000 users; Office on all of them.
  expected = {"Office": None, "Beauty": 5000}[name]
  assert f"MAX_EVAL_EXAMPLES = {expected}" in b
  assert captured["files"][-1] == quality.EXPERIMENTS["tiger"]


def test_run_dir_layout(tmp_path):
  bench = quality.Bench(tmp_path, "cpu_long")
  assert bench.run_dir("Beauty", "tiger", 0) == (
      tmp_path / "Beauty" / "tiger-cpu_long" / "seed0")
  # Item-level models have one schedule, whatever the generative one is.
  assert bench.run_dir("Beauty", "sasrec_recbole", 1) == (
      tmp_path / "Beauty" / "sasrec_recbole-cpu" / "seed1")
  assert bench.run_dir("Office", "popularity", 2) == (
      tmp_path / "Office" / "popularity" / "seed2")
  # LEARN and LITE have a longer schedule of their own; `device` is
  # generative-only.
  assert bench.run_dir("Beauty", "lite", 0) == (
      tmp_path / "Beauty" / "lite-cpu_long" / "seed0")
  assert quality.Bench(tmp_path, "device").run_dir("Beauty", "learn", 0) == (
      tmp_path / "Beauty" / "learn-cpu" / "seed0")
  # `cpu_xl` lengthens the generative models only.
  xl = quality.Bench(tmp_path, "cpu_xl")
  assert xl.run_dir("Office", "letter_tiger_calrec", 0) == (
      tmp_path / "Office" / "letter_tiger_calrec-cpu_xl" / "seed0")
  assert xl.run_dir("Office", "lite", 0) == (
      tmp_path / "Office" / "lite-cpu_long" / "seed0")
  assert xl.run_dir("Office", "sasrec_recbole", 0) == (
      tmp_path / "Office" / "sasrec_recbole-cpu" / "seed0")


@pytest.mark.parametrize("schedule", ["cpu", "cpu_long"])
def test_item_schedule_bindings(schedule, tmp_path, monkeypatch):
  """LITE trains its `cpu` budget or its longer `cpu_long` one."""
  data = tmp_path / "Data"
  captured = _capture_gin(monkeypatch, data, "Office")
  bench = quality.Bench(tmp_path, schedule)
  run = bench.run_dir("Office", "lite", 0)
  with pytest.raises(StopIteration):
    bench.item_model("Office", data, "lite", 0, tmp_path / "emb", run)
  steps, period, patience = (quality.ITEM_LONG_SCHEDULES if
                             schedule == "cpu_long" else
                             quality.ITEM_SCHEDULES)["lite"]
  assert (steps, patience) != (600, 3) or schedule == "cpu"
  b = captured["bindings"]
  assert f"TRAIN_STEPS = {steps}" in b
  assert f"EVAL_PERIOD = {period}" in b
  assert f"PATIENCE = {patience}" in b
  assert captured["files"][-1] == quality.ITEM_MODELS["lite"]


def test_category_needs_one_inter_file(tmp_path):
  with pytest.raises(SystemExit, match="exactly one <Category>.inter.json"):
    quality._category(tmp_path)  # pylint: disable=protected-access
  (tmp_path / "Toys.inter.json").write_text("{}")
  assert quality._category(tmp_path) == "Toys"  # pylint: disable=protected-access


def test_markov_cell_is_the_library_protocol(tmp_path):
  seqs = [[i % 12, (i + 1) % 12, (i + 2) % 12, (i + 5) % 12]
          for i in range(20)]
  items = canonical.ItemTable([str(i) for i in range(12)], {})
  ds = canonical.from_sequences("ring", items,
                                [f"u{i}" for i in range(20)], seqs)
  assert quality.Bench(tmp_path, "cpu").markov(ds) == markov.evaluate(ds)
  assert quality.Bench(tmp_path, "cpu_xl").run_dir("Office", "markov", 0) == (
      tmp_path / "Office" / "markov" / "seed0")
