"""Tests for recjax.infer's request handling (the entry point itself runs
end to end in tests/test_train.py)."""

import json

import numpy as np
import pytest

from recjax import datasets
from recjax import infer
from recjax.errors import ConfigError
from recjax.tokens import PAD_ID
from recjax.tokens import SemanticIdLayout

LAYOUT = SemanticIdLayout((4, 4), num_user_buckets=5)
CODES = np.array([[i // 4, i % 4] for i in range(16)], np.int32)


def test_encode_requests_window_and_whole_history():
  requests = [infer.Request("u0", np.arange(7), []),
              infer.Request("u1", np.array([9, 3]), [])]
  out = infer.encode_requests(requests, CODES, LAYOUT, max_history=3,
                              use_user_token=True)
  assert out["encoder_input_tokens"].shape == (2, 1 + 3 * 2)
  # The model reads the last 3 items; exclusion sees all of them.
  np.testing.assert_array_equal(out["history_items"],
                                [[4, 5, 6], [9, 3, -1]])
  np.testing.assert_array_equal(out["excluded_items"],
                                [list(range(7)), [9, 3, -1, -1, -1, -1, -1]])
  row = out["encoder_input_tokens"][1]
  assert row[0] == LAYOUT.user_token("u1")
  np.testing.assert_array_equal(
      row[1:5], LAYOUT.codes_to_tokens(CODES[[9, 3]]).reshape(-1))
  assert np.all(row[5:] == PAD_ID)
  for v in out.values():
    assert v.dtype == np.int32


def test_split_requests_carry_whole_histories():
  ds = datasets.load("synthetic", num_users=30, num_items=40,
                     num_clusters=4, seed=0)
  full = datasets.leave_one_out(ds, max_history=None)["test"]
  requests = infer.split_requests(ds, "test")
  assert len(requests) == ds.num_users
  assert max(len(r.items) for r in requests) > 20
  for i, req in enumerate(requests):
    assert req.user_id == ds.user_ids[int(full.users[i])]
    np.testing.assert_array_equal(req.items, full.history(i))


def test_read_histories_reports_unknown_items_and_bad_lines(tmp_path):
  ds = datasets.load("synthetic", num_users=30, num_items=40,
                     num_clusters=4, seed=0)
  path = tmp_path / "h.jsonl"
  known = ds.items.original_ids[:2]
  path.write_text(json.dumps({"user_id": "a", "history": known + ["zz"]})
                  + "\n")
  (req,) = infer.read_histories(path, ds)
  np.testing.assert_array_equal(req.items, [0, 1])
  assert req.unknown == ["zz"]
  path.write_text('{"user_id": "a", "history": []}\n[1, 2\n')
  with pytest.raises(ConfigError, match=r"h.jsonl:2"):
    infer.read_histories(path, ds)


# -- the bad-input catalogue of infer (each by its message) ------------------


@pytest.mark.parametrize("line, match", [
    ('{"history": ["i1"]}', r'h.jsonl:1: needs "user_id" and a list '
     r'"history" of item ids\.'),
    ('{"user_id": "a"}', r'h.jsonl:1: needs "user_id" and a list '
     r'"history"'),
    ('{"user_id": "a", "history": "i1 i2"}', r'h.jsonl:1: needs "user_id" '
     r'and a list "history"'),
    ('["a", ["i1"]]', r'h.jsonl:1: needs "user_id"'),
    ('{"user_id": "a", "history": [}', r'h.jsonl:1: not valid JSON '
     r'\(.*\)\. Each line must be \{"user_id": \.\.\., "history": '
     r'\[\.\.\.\]\}\.'),
])
def test_bad_history_lines_are_named_by_line(tmp_path, line, match):
  ds = datasets.load("synthetic", num_users=30, num_items=40,
                     num_clusters=4, seed=0)
  path = tmp_path / "h.jsonl"
  path.write_text("\n" + line + "\n")  # Blank lines are skipped.
  with pytest.raises(ConfigError, match=match.replace("jsonl:1", "jsonl:2")):
    infer.read_histories(path, ds)


def _dataset_dir(tmp_path):
  ds = datasets.load("synthetic", num_users=30, num_items=40,
                     num_clusters=4, seed=0)
  ds.save(tmp_path / "dataset")
  return tmp_path / "dataset"


def test_missing_or_foreign_codes_are_refused_before_any_output(tmp_path):
  data = _dataset_dir(tmp_path)
  out = tmp_path / "recs.jsonl"
  ids = tmp_path / "ids"
  ids.mkdir()
  kwargs = dict(model_dir=str(tmp_path / "run"), dataset_dir=str(data),
                semantic_ids_dir=str(ids), model_fn=None, output=str(out))
  with pytest.raises(ConfigError, match=r"ids/codes.npy does not exist; "
                     r"pass the semantic_ids_dir the model was trained "
                     r"with\."):
    infer.infer(**kwargs)
  np.save(ids / "codes.npy", np.zeros((39, 3), np.int32))
  with pytest.raises(ConfigError, match=r"ids/codes.npy has 39 rows but "
                     r".*dataset has 40 items: they are from different "
                     r"datasets\."):
    infer.infer(**kwargs)
  assert not out.exists() and not list(tmp_path.glob("recs*"))


def test_infer_run_errors_name_the_run_and_the_fix(tmp_path):
  out = str(tmp_path / "recs.jsonl")
  with pytest.raises(ConfigError, match=r"split='train': use 'validation' "
                     r"or 'test'\."):
    infer.infer_run(str(tmp_path), out, split="train")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ConfigError, match=r"empty/run.json does not exist: it "
                     r"holds no trained run; train one first \(python -m "
                     r"recjax.train\)\."):
    infer.infer_run(str(empty), out)
  (empty / "stray.txt").write_text("x")
  with pytest.raises(ConfigError, match=r"it was written before runs "
                     r"described themselves; pass the run's gin files"):
    infer.infer_run(str(empty), out)
  (empty / "run.json").write_text("{not json")
  with pytest.raises(ConfigError, match=r"empty/run.json: not valid JSON "
                     r".*; re-train the run or restore the file\."):
    infer.infer_run(str(empty), out)
  (empty / "run.json").write_text('{"kind": "item", "entry": "x"}')
  with pytest.raises(ConfigError, match=r"run.json has no 'inputs'; it is "
                     r"not a recjax run description\."):
    infer.infer_run(str(empty), out)
  (empty / "run.json").write_text(
      '{"kind": "item", "entry": "x", "inputs": {}}')
  with pytest.raises(ConfigError, match=r"empty/config.gin is missing; the "
                     r"run directory is incomplete\."):
    infer.infer_run(str(empty), out)
  assert not list(tmp_path.glob("recs*"))


def test_write_recommendations_leaves_nothing_when_ranking_fails(tmp_path):
  out = tmp_path / "recs.jsonl"
  requests = [infer.Request("u0", np.arange(3), [])]

  def ranked():
    yield np.array([[1, 2]]), np.array([[0.5, 0.4]]), 1
    raise RuntimeError("decode failed")

  with pytest.raises(RuntimeError, match="decode failed"):
    infer.write_recommendations(out, requests, ["a", "b", "c"], ranked())
  assert not list(tmp_path.iterdir())
