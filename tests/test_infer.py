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
