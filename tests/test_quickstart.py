"""Tests for recjax.quickstart (the end-to-end job itself is `make
quickstart`; its stages are tested in their own modules)."""

from recjax import quickstart


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
