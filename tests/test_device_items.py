"""Tests of `benchmarks/device_items.py`: a packed cell, run from its
bundle alone, gives the pipeline's result."""

import json
import shutil

import bench_scripts
import pytest

from recjax import pipeline

device_items = bench_scripts.load("device_items")

TINY = pipeline.DataSource(
    "tiny", "synthetic",
    {"num_users": 40, "num_items": 24, "num_clusters": 3, "seed": 1})
SMALL_IDS = {"codebook_size": 8, "num_subspaces": 4, "pca_dim": 16}


def test_a_packed_cell_runs_from_its_bundle_as_the_pipeline_runs_it(
    tmp_path):
  work = pipeline.Workspace(tmp_path / "cache",
                            semantic_ids_overrides=SMALL_IDS)
  bundle = tmp_path / "bundle"
  plan = device_items.pack_cells(work, [(TINY, "rpg", 0)], "smoke", [],
                                 bundle)
  (cell,) = plan["cells"]
  text = json.dumps(plan)
  # Every path the run reads is inside the bundle; the run goes elsewhere.
  assert str(tmp_path / "cache") not in text
  assert any("CODES_DIR = '@BUNDLE@/inputs/" in b for b in cell["bindings"])
  assert "MODEL_DIR = '@RUNS@/tiny-rpg-seed0'" in cell["bindings"]
  assert (bundle / "site" / "gin" / "__init__.py").exists()
  # The device has nothing but the bundle: the cache is gone.
  want = work.run("rpg", TINY, 0, "smoke")
  shutil.rmtree(tmp_path / "cache")
  out = tmp_path / "out"
  (row,) = device_items.run_cells(bundle, out)
  assert row["dataset"] == "tiny" and row["method"] == "rpg"
  assert row["schedule"] == "smoke" and "variant" not in row
  for key in ("test/ndcg@10", "test_excl/recall@10"):
    assert row[key] == pytest.approx(want[key], abs=1e-6), key
  lines = (out / "rows.jsonl").read_text().splitlines()
  assert [json.loads(x) for x in lines] == [row]
  assert (out / "tiny-rpg-seed0-history.jsonl").exists()
  # Rows go into a results file with the note.
  records = tmp_path / "quality.jsonl"
  device_items.main(["record", "--rows", str(out / "rows.jsonl"),
                     "--note", "test device", "--records", str(records)])
  assert json.loads(records.read_text())["note"] == "test device"


def test_generative_methods_are_refused(tmp_path):
  work = pipeline.Workspace(tmp_path / "cache")
  with pytest.raises(SystemExit, match="quality.py --bundle"):
    device_items.pack_cells(work, [(TINY, "tiger", 0)], "smoke", [],
                            tmp_path / "b")
