"""Tests for recjax.summaries: history, stdout, TensorBoard and plots."""

import json

from recjax import summaries


def test_write_history_and_stdout(tmp_path, capsys):
  s = summaries.Summaries(tmp_path, tensorboard=False)
  s.write(10, {"train/loss": 2.5, "train/accuracy": 0.25})
  s.write(20, {"train/loss": 1.5})
  s.close()
  lines = (tmp_path / "history.jsonl").read_text().splitlines()
  assert [json.loads(x) for x in lines] == [
      {"step": 10, "train/loss": 2.5, "train/accuracy": 0.25},
      {"step": 20, "train/loss": 1.5}]
  out = capsys.readouterr().out
  assert "step      10  train/accuracy=0.25  train/loss=2.5" in out


def test_read_history_later_rows_replace_earlier(tmp_path):
  # A resumed run re-writes the steps after its last checkpoint.
  for loss in (3.0, 2.0):
    s = summaries.Summaries(tmp_path, tensorboard=False, stdout=False)
    s.write(100, {"train/loss": loss})
    s.write(100, {"validation/ndcg@10": loss / 10})
    s.close()
  rows = summaries.read_history(tmp_path)
  assert rows == [{"step": 100, "train/loss": 2.0},
                  {"step": 100, "validation/ndcg@10": 0.2}]
  assert summaries.read_history(tmp_path / "missing") == []


def test_tensorboard_event_file(tmp_path):
  # clu and tensorboard are runtime dependencies: no skip when missing.
  s = summaries.Summaries(tmp_path, stdout=False)
  s.write(1, {"train/loss": 1.0})
  s.close()
  events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert events and events[0].stat().st_size > 0


def test_plot_curves(tmp_path):
  assert summaries.plot_curves(tmp_path) is None
  s = summaries.Summaries(tmp_path, tensorboard=False, stdout=False)
  for step in range(0, 500, 100):
    s.write(step, {"train/loss": 3.0 - step / 500})
  s.write(400, {"validation/ndcg@10": 0.03})
  s.close()
  path = summaries.plot_curves(tmp_path)
  assert path == tmp_path / "curves.png"
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not list(tmp_path.glob("*.tmp.png"))
  other = summaries.plot_curves(tmp_path, metrics=("validation/ndcg@10",),
                                out=str(tmp_path / "v.png"))
  assert other.exists()
