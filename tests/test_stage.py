"""Tests for the dataset stage (recjax.datasets.stage and __main__)."""

from recjax.datasets import __main__ as cli
from recjax.datasets import stage


def test_prepare_is_cached(tmp_path, monkeypatch):
  out = tmp_path / "syn"
  a = stage.prepare("synthetic", out, num_users=50, num_items=40, seed=1)
  calls = []
  monkeypatch.setattr(stage.datasets, "load",
                      lambda *a, **k: calls.append(1))
  b = stage.prepare("synthetic", out, num_users=50, num_items=40, seed=1)
  assert calls == [] and a.fingerprint() == b.fingerprint()
  monkeypatch.undo()
  c = stage.prepare("synthetic", out, num_users=50, num_items=40, seed=2)
  assert c.fingerprint() != a.fingerprint()


def test_cli_prints_statistics(tmp_path, capsys):
  rc = cli.main(["synthetic", "--out", str(tmp_path / "d"), "--opt",
                 "num_users=40", "--opt", "num_items=20",
                 "--opt", "num_clusters=5"])
  assert rc == 0
  out = capsys.readouterr().out
  assert "users            40" in out and "has_timestamps   yes" in out


def test_cli_reports_bad_input(tmp_path, capsys):
  rc = cli.main(["amazon_lcrec", "--out", str(tmp_path / "d"), "--opt",
                 f"data_dir={tmp_path}", "--opt", "category=Nope"])
  assert rc == 2
  assert "Nope.item.json does not exist" in capsys.readouterr().err
  assert not (tmp_path / "d").exists()
