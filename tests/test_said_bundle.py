"""SAID stage 1 through a bundle (the accelerator path) on the tiny Llama.

The bundle run equals `said_stage` here to the bit, runs in a process
where TensorFlow, SeqIO, gin-config and `gguf` cannot be imported (the
accelerator host; `gguf` comes from the bundle), and its output is taken
by `said_stage` as up to date. Damaged or missing parts are clear errors.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from recjax import embed
from recjax.datasets.canonical import ItemTable
from recjax.datasets.canonical import from_sequences
from recjax.errors import ConfigError
from recjax.models import said
from recjax.models.said import bundle as bundle_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = pathlib.Path(__file__).parent / "fixtures" / "tiny_llama.gguf"
_BLOCKED = ("tensorflow", "seqio", "tensorflow_datasets", "gin")
# The host has no `gguf` installed: only the bundle's copy may be imported.
_NO_GGUF = """
import importlib.machinery, sys
class _OnlyBundled:
  def find_spec(self, name, path=None, target=None):
    if name != "gguf":
      return None
    spec = importlib.machinery.PathFinder.find_spec(
        name, [p for p in sys.path if p.endswith("/meta/site")])
    if spec is None:
      raise ModuleNotFoundError("no gguf outside the bundle")
    return spec
sys.meta_path.insert(0, _OnlyBundled())
"""


@pytest.fixture
def dataset_dir(tmp_path) -> pathlib.Path:
  items = ItemTable(original_ids=[f"i{i}" for i in range(5)],
                    fields={"title": ["red pen", "the stapler", "paper clips",
                                      "ink", "a desk lamp"],
                            "brand": [""] * 5, "categories": ["office"] * 5})
  ds = from_sequences("tiny", items, ["u1", "u2"], [[0, 1, 2], [3, 4, 0]])
  ds.save(tmp_path / "dataset")
  return tmp_path / "dataset"


def _config() -> said.SAIDStageConfig:
  return said.SAIDStageConfig(
      model=said.SAIDConfig(num_prompt_tokens=2, id_dim=8,
                            projector_hidden=16),
      lm=str(TINY), lm_dtype="float32", batch_size=2, num_epochs=2,
      learning_rate=3e-2, warmup_steps=0, log_period=2, checkpoint_period=2)


def _run_blocked(bundle: pathlib.Path, export: pathlib.Path
                 ) -> subprocess.CompletedProcess:
  """`bundle run` in a process that cannot import the blocked modules."""
  code = (_NO_GGUF +
          f"for n in {_BLOCKED!r}: sys.modules[n] = None\n"
          "from recjax.models.said import bundle\n"
          f"bundle.main(['run', '--bundle', {str(bundle)!r}, '--export', "
          f"{str(export)!r}])\n"
          "print('gguf from', sys.modules['gguf'].__file__)\n")
  return subprocess.run([sys.executable, "-c", code], cwd=REPO,
                        capture_output=True, text=True, timeout=600,
                        check=False)


def test_bundle_run_equals_the_stage_here(dataset_dir, tmp_path, capsys):
  bundle = bundle_lib.make_bundle(dataset_dir, tmp_path / "bundle",
                                  _config(), part_mib=0.05)
  info = bundle_lib.read_bundle(bundle)
  parts = info["lm"]["parts"]
  assert len(parts) == -(-TINY.stat().st_size // int(0.05 * (1 << 20)))
  assert sorted(p.name for p in bundle.iterdir()) == sorted(
      ["meta"] + [f"lm-{i}" for i in range(len(parts))])
  export = tmp_path / "device" / "out"
  proc = _run_blocked(bundle, export)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert json.loads(lines[-2])["train_steps"] == 4  # 2 epochs x 2 batches.
  assert lines[-1].startswith(f"gguf from {bundle}/meta/site/gguf/")
  # Only small files come back from the accelerator.
  assert sorted(p.name for p in export.iterdir()) == [
      "params-0.npz", "said_result.json"]

  bundle_lib.main(["import", "--bundle", str(bundle), "--export",
                   str(export), "--out", str(tmp_path / "imported")])
  assert "5 item vectors of 128" in capsys.readouterr().out
  here = said.said_stage(dataset_dir, tmp_path / "here" / "said", _config())
  got, got_manifest = embed.load_embeddings(tmp_path / "imported")
  want, want_manifest = embed.load_embeddings(here)
  np.testing.assert_array_equal(got, want)
  for key in ("input_hash", "model_name", "dim", "checksum", "train_steps",
              "final_train_loss", "num_empty_texts", "inputs"):
    assert got_manifest[key] == want_manifest[key], key

  # Copied into place, the stage here takes it as up to date.
  shutil.rmtree(here)
  shutil.copytree(tmp_path / "imported", here)
  mtime = (here / embed.EMBEDDINGS_FILE).stat().st_mtime_ns
  said.said_stage(dataset_dir, here, _config())
  assert (here / embed.EMBEDDINGS_FILE).stat().st_mtime_ns == mtime


def test_parameters_are_exported_in_small_files(tmp_path, monkeypatch):
  monkeypatch.setattr(bundle_lib, "_FILE_BYTES", 1000)
  params = {"table": np.arange(700, dtype=np.float32).reshape(70, 10),
            "proj": {"kernel": np.ones((3, 4), np.float32),
                     "bias": np.zeros(4, np.float32)}}
  files = bundle_lib._export_params(params, tmp_path)  # pylint: disable=protected-access
  assert len(files) > 2
  assert all((tmp_path / f).stat().st_size < 1000 + 2000 for f in files)
  back = bundle_lib._import_params(tmp_path, files)  # pylint: disable=protected-access
  np.testing.assert_array_equal(back["table"], params["table"])
  np.testing.assert_array_equal(back["proj"]["kernel"],
                                params["proj"]["kernel"])
  np.testing.assert_array_equal(back["proj"]["bias"], params["proj"]["bias"])


def test_a_result_of_another_bundle_is_refused(dataset_dir, tmp_path):
  bundle = bundle_lib.make_bundle(dataset_dir, tmp_path / "bundle",
                                  _config(), part_mib=1)
  (tmp_path / "r").mkdir()
  with pytest.raises(ConfigError, match="said_result.json does not exist"):
    bundle_lib.import_result(bundle, tmp_path / "r", tmp_path / "o")
  (tmp_path / "r" / "said_result.json").write_text(json.dumps(
      {"input_hash": "0" * 64, "params_files": []}))
  with pytest.raises(ConfigError, match="was trained from another bundle"):
    bundle_lib.import_result(bundle, tmp_path / "r", tmp_path / "o")
  assert not (tmp_path / "o").exists()


def test_missing_or_damaged_parts_are_named(dataset_dir, tmp_path):
  bundle = bundle_lib.make_bundle(dataset_dir, tmp_path / "bundle",
                                  _config(), part_mib=0.05)
  info = bundle_lib.read_bundle(bundle)
  last = bundle / info["lm"]["parts"][-1]["path"]
  data = last.read_bytes()
  last.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
  with pytest.raises(ConfigError, match=f"{last} is damaged"):
    bundle_lib.join_lm(bundle, info, tmp_path / "lm")
  shutil.rmtree(last.parent)
  with pytest.raises(ConfigError, match=f"{last} is missing: carry every "
                     "lm-\\* folder"):
    bundle_lib.join_lm(bundle, info, tmp_path / "lm")
  assert not list((tmp_path / "lm").iterdir())  # No half-joined file.
  (bundle / "meta" / "tokens.npy").write_bytes(b"x")
  with pytest.raises(ConfigError, match="tokens.npy is missing or damaged"):
    bundle_lib.read_bundle(bundle)
  with pytest.raises(ConfigError, match="is not a SAID bundle"):
    bundle_lib.read_bundle(tmp_path)


def test_command_line_makes_a_bundle(dataset_dir, tmp_path, capsys):
  bundle_lib.main(["make", "--dataset_dir", str(dataset_dir), "--bundle",
                   str(tmp_path / "b"), "--lm", str(TINY), "--epochs", "1",
                   "--part_mib", "0.1"])
  out = capsys.readouterr().out
  assert f"wrote {tmp_path / 'b'}:" in out and "LM parts" in out
  info = bundle_lib.read_bundle(tmp_path / "b")
  assert info["config"]["num_epochs"] == 1
  assert info["lm"]["sha256"] == info["inputs"]["model_fingerprint"]
