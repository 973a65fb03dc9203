"""The stage CLIs print recjax's output, not the libraries' noise.

Each stage of the quickstart runs as a command at toy size; its stderr must
hold none of the lines TensorFlow, XLA, absl or TFDS print on their own
(`recjax.quiet`), and `--verbose` brings them back.
"""

import os
import pathlib
import subprocess
import sys

import pytest

# The embed stage runs the pinned MiniLM (skipped offline with a cold cache).
pytestmark = pytest.mark.network("all_minilm_l6_v2")

REPO = pathlib.Path(__file__).resolve().parents[1]
# What the libraries print by themselves on a CPU host.
NOISE = ("Could not find cuda drivers", "failed call to cuInit",
         "oneDNN custom operations", "absl::InitializeLog",
         "has no dataset_info.json", "Downloading and preparing dataset",
         "Unknown size", "cudart_stub", "port.cc:",
         # Orbax's INFO lines when a stage saves a checkpoint.
         "INFO:absl", "[process=0]", "_NonBlockingMetadataStore")


def _run(args, cwd):
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "RECJAX_VERBOSE")}
  proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _assert_quiet(proc, what):
  for line in proc.stderr.splitlines():
    assert not any(n in line for n in NOISE), f"{what}: {line}"


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
  """Runs the data stages once: dataset, embeddings, semantic IDs."""
  root = tmp_path_factory.mktemp("quiet")
  procs = {
      "datasets": _run(["recjax.datasets", "synthetic", "--out",
                        str(root / "dataset"), "--opt", "num_users=40",
                        "--opt", "num_items=24", "--opt", "num_clusters=3"],
                       root),
      "embed": _run(["recjax.embed", "--dataset_dir", str(root / "dataset"),
                     "--out", str(root / "minilm")], root),
      "semantic_ids": _run(
          ["recjax.semantic_ids", "--embeddings_dir", str(root / "minilm"),
           "--dataset_dir", str(root / "dataset"), "--out",
           str(root / "sid"), "--method", "rqkmeans", "--set",
           "codebook_size=8"], root),
      "train": _run(
          ["recjax.train", "--gin_file=runs/train_counts.gin",
           "--gin_file=models/markov.gin",
           f"--gin.MODEL_DIR='{root / 'markov'}'",
           "--gin.recjax.item_sequences.ItemDataConfig.source='synthetic'"],
          root),
      "eval": None,
  }
  procs["eval"] = _run(["recjax.eval", f"--model_dir={root / 'markov'}"],
                       root)
  return root, procs


@pytest.mark.parametrize("stage", ["datasets", "embed", "semantic_ids",
                                   "train", "eval"])
def test_stage_cli_stderr_holds_no_library_noise(stage, stages):
  _, procs = stages
  _assert_quiet(procs[stage], stage)


def test_verbose_shows_the_libraries_again(stages):
  root, _ = stages
  proc = _run(["recjax.train", "--gin_file=runs/train_counts.gin",
               "--gin_file=models/markov.gin", "--verbose",
               f"--gin.MODEL_DIR='{root / 'markov_verbose'}'",
               "--gin.recjax.item_sequences.ItemDataConfig.source="
               "'synthetic'"], root)
  assert "oneDNN custom operations" in proc.stderr or (
      "cuda" in proc.stderr.lower())
