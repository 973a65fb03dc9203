"""A run killed with SIGKILL resumes to the same state, deterministically.

`tests/resume_worker.py` runs `python -m recjax.train` and kills itself at
a chosen point: between two checkpoints (before step 12, the last
checkpoint at 10) or in the middle of saving the checkpoint of step 10
(its files written, not committed). The re-run must resume from the last
committed checkpoint (10 or 5), train only the remaining steps, and end
with the train state of an uninterrupted run, leaf for leaf (parameters
and optimizer state, same tree), and the same training losses. One family
of each trained kind: SASRec (item-level) and TIGER (generative).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import test_train
import tiny_item_runs

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).parent / "resume_worker.py"
STEPS = 16
COMMON = [f"--gin.TRAIN_STEPS={STEPS}", "--gin.EVAL_PERIOD=0",
          "--gin.recjax.trainer.TrainerConfig.checkpoint_period=5",
          "--gin.recjax.trainer.TrainerConfig.log_period=1",
          "--gin.recjax.trainer.TrainerConfig.keep_checkpoints=10"]


def _gin(kind: str, root: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
  if kind == "item":
    path = tiny_item_runs.sasrec_gin(
        root, {"num_users": 40, "num_items": 30, "num_clusters": 3,
               "seed": 0})
    return path, ["--gin_file=runs/train_items.gin"]
  return (test_train._write_task(root, "resume_tiger"),  # pylint: disable=protected-access
          ["--gin_file=runs/train.gin"])


def _start(root: pathlib.Path, kill: str, gin_file: pathlib.Path,
           files: list[str], model_dir: pathlib.Path) -> subprocess.Popen:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
      [str(root), str(REPO), str(REPO / "tests")]))
  return subprocess.Popen(
      [sys.executable, str(WORKER), kill, *files, f"--gin_file={gin_file}",
       *COMMON,
       f"--gin.MODEL_DIR='{model_dir}'"], cwd=REPO, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(procs: dict[str, subprocess.Popen]
          ) -> dict[str, subprocess.CompletedProcess]:
  """Waits for runs started together (their start-up overlaps)."""
  done = {}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=900)
    done[name] = subprocess.CompletedProcess(proc.args, proc.returncode,
                                             out, err)
  return done


def _losses(model_dir: pathlib.Path) -> dict[int, float]:
  rows = [json.loads(line) for line in
          (model_dir / "history.jsonl").read_text().splitlines() if line]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def _committed(model_dir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir()
                if p.name.isdigit())


@pytest.mark.parametrize("kind", ["item", "generative"])
def test_sigkill_between_and_during_saves_resumes_exactly(kind, tmp_path):
  gin_file, files = _gin(kind, tmp_path)
  kills = {"between:12": 10, "mid_save:10": 5}
  dirs = {k: tmp_path / k.replace(":", "_") for k in kills}
  # The uninterrupted run and both killed runs, at once.
  first = _wait({"none": _start(tmp_path, "none", gin_file, files,
                                tmp_path / "ref"),
                 **{k: _start(tmp_path, k, gin_file, files, dirs[k])
                    for k in kills}})
  ref = first["none"]
  assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
  want = dict(np.load(tmp_path / "ref" / "final_state.npz"))
  for kill, resumes_at in kills.items():
    assert first[kill].returncode == -9, (first[kill].stdout[-2000:]
                                          + first[kill].stderr[-2000:])
    assert _committed(dirs[kill])[-1] == resumes_at
  resumed_runs = _wait({k: _start(tmp_path, "none", gin_file, files, dirs[k])
                        for k in kills})
  for kill, resumes_at in kills.items():
    run, resumed = dirs[kill], resumed_runs[kill]
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"Resuming from step {resumes_at}" in resumed.stdout
    # Only the remaining steps were trained after the resume.
    assert resumed.stdout.count("train/loss") == STEPS - resumes_at
    got = dict(np.load(run / "final_state.npz"))
    assert sorted(got) == sorted(want)  # The same tree, no leaf missing.
    assert int(got["step"]) == STEPS
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert _losses(run) == _losses(tmp_path / "ref")
