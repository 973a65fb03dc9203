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

from recjax import datasets
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


def test_table_anchor_without_a_metric_has_a_blank_cell():
  # RPG's paper reports R@10 and N@10 only.
  text = quality.table([_row("Beauty", "rpg", "cpu")]).splitlines()
  anchor = next(line for line in text if "*RPG (paper)*" in line)
  assert "nan" not in anchor
  assert "| published | |  |  | 0.0809 | 0.0464 |" in anchor
  assert len(anchor.split("|")) == len(text[0].split("|"))


def test_plain_table_drops_variants_and_extra_columns():
  mixed = dict(_row("Office", "learn", "cpu", value=0.06),
               variant={"mix": "markov"}, **{"mix/weight": 0.9})
  rows = [_row("Office", "learn", "cpu", value=0.05), mixed]
  full = quality.table(rows)
  assert "mix=markov" in full and "mix/weight" in full
  plain = quality.table(rows, plain=True).splitlines()
  assert len(plain) == 3 and "mix" not in "\n".join(plain)
  assert plain[2].startswith("| Office | learn | cpu | 1 | ")
  assert "0.0500" in plain[2]


def test_table_single_seed_has_no_std():
  text = quality.table([_row("Office", "learn", "cpu", value=0.05)])
  assert "±" not in text and "| Office | learn | cpu | 1 | 0.0500 |" in text


def _effective(monkeypatch, tmp_path, method, name, schedule):
  """Parses the gin files and bindings the benchmark trains a cell with;
  returns `gin.query_parameter` (the operative values)."""
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import gin_utils  # pylint: disable=g-import-not-at-top
  from recjax import pipeline  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(pipeline.Workspace, "task",
                      lambda *a, **k: "tiger_movielens_100k")
  monkeypatch.setattr(pipeline.Workspace, "embeddings",
                      lambda *a, **k: tmp_path / "emb")
  monkeypatch.setattr(pipeline.Workspace, "semantic_ids",
                      lambda *a, **k: tmp_path / "codes")
  bench = quality.Bench(tmp_path, schedule)
  data = pipeline.DataSource(name, "amazon_lcrec",
                             {"data_dir": str(tmp_path), "category": name})
  files, bindings = bench.work.gin_setup(method, data, 0, schedule)
  gin.clear_config()
  gin_utils.parse_gin(files, bindings + bench.schedule_bindings(data, method),
                      finalize=False)
  return gin.query_parameter


@pytest.fixture
def clean_gin():
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize("schedule", ["cpu", "cpu_long", "cpu_xl"])
@pytest.mark.parametrize("name", ["Office", "Beauty"])
def test_generative_schedules_take_effect(name, schedule, tmp_path,
                                          monkeypatch, clean_gin):
  """The schedule files and per-data-set budgets, read back from gin."""
  q = _effective(monkeypatch, tmp_path, "tiger", name, schedule)
  net = "recjax.network.TransformerConfig"
  assert q(f"{net}.emb_dim") == 64 and q(f"{net}.num_encoder_layers") == 2
  assert q(f"{net}.dropout_rate") == (0.0 if schedule == "cpu" else 0.1)
  assert q("%LEARNING_RATE") == 3e-3 and q("%WARMUP_STEPS") == 100
  steps = {("Office", "cpu"): 1500, ("Office", "cpu_long"): 6000,
           ("Office", "cpu_xl"): 18000, ("Beauty", "cpu"): 2500,
           ("Beauty", "cpu_long"): 10000, ("Beauty", "cpu_xl"): 30000}
  assert q("%TRAIN_STEPS") == steps[(name, schedule)]
  if schedule != "cpu":
    assert q("recjax.trainer.TrainerConfig.patience") == 3
  # Beauty validates on 5,000 users in the long schedules; Office on all.
  expected = 5000 if name == "Beauty" and schedule != "cpu" else None
  assert q("%MAX_EVAL_EXAMPLES") == expected


def test_recipes_take_effect(tmp_path, monkeypatch, clean_gin):
  q = _effective(monkeypatch, tmp_path, "letter_tiger_calrec", "Office",
                 "cpu")
  fn = "recjax.models.tiger.make_encoder_decoder"
  assert q("%LOSS_TEMPERATURE") == 0.7 and q("%ALIGNMENT_WEIGHT") == 0.1
  assert str(q(f"{fn}.alignment_weight")) == "%ALIGNMENT_WEIGHT"


@pytest.mark.parametrize("method, schedule, budget", [
    ("lite", "cpu", (600, 100, 3)), ("lite", "cpu_long", (3000, 100, 5)),
    ("lite", "cpu_xl", (3000, 100, 5)), ("learn", "cpu_long", (6000, 100, 5)),
    ("sasrec", "cpu_long", (4000, 100, 10)),
    ("sasrec_recbole", "cpu", (5400, -1, 10)), ("rpg", "cpu", (0, -1, 10))])
def test_item_schedules_take_effect(method, schedule, budget, tmp_path,
                                    monkeypatch, clean_gin):
  q = _effective(monkeypatch, tmp_path, method, "Office", schedule)
  assert (q("%TRAIN_STEPS"), q("%EVAL_PERIOD"), q("%PATIENCE")) == budget
  if method == "sasrec_recbole":
    assert q("recjax.models.sasrec.SASRecConfig.norm") == "post"
    assert q("%TRAIN_MODE") == "prefixes" and q("%BATCH_SIZE") == 2048
  if method == "rpg":  # 150 epochs whatever the data set's size.
    assert q("%TRAIN_EPOCHS") == 150 and q("%WARMUP_EPOCHS") == 10
    assert str(q("recjax.optimizers.ScheduleConfig.warmup_epochs")) == (
        "%WARMUP_EPOCHS")
    assert str(q("recjax.trainer.TrainerConfig.num_train_epochs")) == (
        "%TRAIN_EPOCHS")


def test_run_dir_layout(tmp_path):
  office = quality.pipeline.DataSource("Office", "amazon_lcrec", {})
  beauty = quality.pipeline.DataSource("Beauty", "amazon_lcrec", {})
  bench = quality.Bench(tmp_path, "cpu_long")
  assert bench.run_dir(beauty, "tiger", 0) == (
      tmp_path / "Beauty" / "tiger-cpu_long" / "seed0")
  # Item-level models have their own schedules, whatever the generative
  # one is.
  assert bench.run_dir(beauty, "sasrec_recbole", 1) == (
      tmp_path / "Beauty" / "sasrec_recbole-cpu" / "seed1")
  assert bench.run_dir(office, "popularity", 2) == (
      tmp_path / "Office" / "popularity" / "seed2")
  assert bench.run_dir(beauty, "lite", 0) == (
      tmp_path / "Beauty" / "lite-cpu_long" / "seed0")
  device = quality.Bench(tmp_path, "device")
  assert device.run_dir(beauty, "learn", 0) == (
      tmp_path / "Beauty" / "learn-cpu" / "seed0")
  assert device.run_dir(beauty, "tiger", 0) == (
      tmp_path / "Beauty" / "tiger-device" / "seed0")
  xl = quality.Bench(tmp_path, "cpu_xl")
  assert xl.run_dir(office, "letter_tiger_calrec", 0) == (
      tmp_path / "Office" / "letter_tiger_calrec-cpu_xl" / "seed0")
  assert xl.run_dir(office, "lite", 0) == (
      tmp_path / "Office" / "lite-cpu_long" / "seed0")
  assert xl.run_dir(office, "markov", 0) == (
      tmp_path / "Office" / "markov" / "seed0")
  # A variant has its own run directory.
  tagged = quality.Bench(tmp_path, "cpu", ["MAX_LENGTH = 50"])
  run = tagged.run_dir(office, "sasrec", 0)
  assert run.parent.name.startswith("sasrec-cpu-v") and run.name == "seed0"
  assert run != bench.run_dir(office, "sasrec", 0)


def test_data_sets_by_name_folder_or_source(tmp_path):
  assert quality.data_source("ML-100K", tmp_path).source == "movielens_100k"
  assert quality.data_source("X", tmp_path, "movielens_100k").source == (
      "movielens_100k")
  (tmp_path / "yelp").mkdir()
  (tmp_path / "yelp" / "Yelp.inter.json").write_text("{}")
  yelp = quality.data_source("Yelp", tmp_path)
  assert yelp.kwargs["category"] == "Yelp"
  with pytest.raises(SystemExit, match="exactly one <Category>.inter.json"):
    quality.data_source("Toys", tmp_path, str(tmp_path))


def test_variants_are_separate_cells_and_extra_metrics_print(tmp_path):
  path = tmp_path / "quality.jsonl"
  plain = _row("Office", "sasrec", "cpu")
  longer = dict(_row("Office", "sasrec", "cpu", value=0.2),
                variant={"max_length": "50"}, **{"test/mrr": 0.5})
  quality.record(path, [plain, longer], "n")
  rows = quality.read_records(path)
  assert len(rows) == 2
  text = quality.table(rows).splitlines()
  assert "| mrr |" in text[0]
  assert any("| sasrec [max_length=50] | cpu | 1 | 0.2000" in line
             and "| 0.5000 |" in line for line in text)
  # The Office SASRec anchor (RecBole measured here) is printed once.
  assert sum("*RecBole 1.2.1 SASRec*" in line for line in text) == 1


def test_plain_row_and_its_anchor_come_before_its_variants():
  mixed = dict(_row("Office", "sasrec_recbole", "cpu", value=0.3),
               variant={"mix": "markov"})
  text = quality.table([mixed, _row("Office", "sasrec_recbole", "cpu")])
  lines = [line.split(" | ")[1] for line in text.splitlines()[2:]]
  assert lines == ["sasrec_recbole", "*RecBole 1.2.1 SASRec*",
                   "sasrec_recbole [mix=markov]"]


def _ring(tmp_path, num_users):
  """An LC-Rec folder of 12 items in a ring; user i starts at item i."""
  folder = tmp_path / "ring"
  folder.mkdir()
  seqs = {f"u{i}": [str(i % 12), str((i + 1) % 12), str((i + 2) % 12),
                    str((i + 5) % 12)] for i in range(num_users)}
  (folder / "Ring.inter.json").write_text(json.dumps(seqs))
  (folder / "Ring.item.json").write_text(json.dumps(
      {str(i): {"title": f"item {i}"} for i in range(12)}))
  return quality.data_source("Ring", tmp_path, str(folder))


def test_markov_cell_is_the_library_protocol(tmp_path):
  data = _ring(tmp_path, 20)
  expected = markov.evaluate(datasets.load("amazon_lcrec", **data.kwargs))
  row = quality.Bench(tmp_path / "cache", "cpu").cell(data, "markov", 0)
  assert row["schedule"] == "-"
  for key in ("test/ndcg@10", "test_excl/recall@5", "markov/decay"):
    assert row[key] == pytest.approx(expected[key]), key


def test_cold_start_cell_records_the_cold_users(tmp_path):
  data = _ring(tmp_path, 48)
  cold = "recjax.item_sequences.ItemDataConfig.cold_fraction = 0.25"
  row = quality.Bench(tmp_path / "cache", "smoke", [cold]).cell(
      data, "sasrec", 0)
  assert row["variant"] == {"gin": [cold]}
  # Every item is some user's test target, and 3 of the 12 are cold.
  assert 0 < row["test_cold/num_examples"] < 48
  for key in ("test_cold/ndcg@10", "test_cold_excl/recall@5"):
    assert 0.0 <= row[key] <= 1.0, key


def test_record_keeps_each_finished_cell_when_a_later_one_fails(tmp_path):
  _ring(tmp_path, 20)
  records = tmp_path / "records.jsonl"
  # 20 users make no training batch for sasrec: its cell fails
  # after markov's has finished.
  with pytest.raises(Exception, match="make no batch"):
    quality.main(["--datasets", "", "--data", f"Ring={tmp_path / 'ring'}",
                  "--methods", "markov,sasrec", "--seeds", "0",
                  "--schedule", "cpu", "--cache_dir",
                  str(tmp_path / "cache"), "--records", str(records),
                  "--record", "test machine"])
  rows = quality.read_records(records)
  assert [(r["method"], r["note"]) for r in rows] == [("markov",
                                                      "test machine")]
