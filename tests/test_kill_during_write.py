"""A stage killed (SIGKILL) while writing its artefact leaves none behind,
an existing artefact intact, and a re-run that completes.

Each case runs `tests/kill_worker.py` in a subprocess that kills itself at
its N-th array / record write, inside the stage's atomic write: no
exception handler or `finally` runs, as with a lost machine.
"""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys

import kill_worker
import pytest

from recjax import io_utils

WORKER = pathlib.Path(kill_worker.__file__)
ARTEFACT = {"dataset": "dataset", "embeddings": "embeddings",
            "semantic_ids": "semantic_ids",
            "predictions": "predictions.jsonl"}


def _worker(stage: str, root: pathlib.Path, kill_at: int
            ) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(WORKER), stage, str(root),
                         str(kill_at)], capture_output=True, text=True,
                        timeout=300, check=False)


# Files that record times or paths, not results, and Orbax's folders
# (random file names; the codes they produce are compared as codes.npy).
_VOLATILE = ("diagnostics.json", "code_usage.png", "params")


def _same(a: pathlib.Path, b: pathlib.Path) -> bool:
  """Same files with the same bytes (times and paths aside)."""
  if a.is_file():
    return filecmp.cmp(a, b, shallow=False)
  cmp = filecmp.dircmp(a, b)
  files = [f for f in cmp.common_files if f not in _VOLATILE]
  _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
  return (not set(cmp.left_only) ^ set(cmp.right_only) and not mismatch
          and not errors and all(_same(a / d, b / d)
                                 for d in cmp.common_dirs
                                 if d not in _VOLATILE))


@pytest.mark.parametrize("stage", kill_worker.STAGES)
def test_kill_mid_write_leaves_nothing_and_the_rerun_completes(stage,
                                                               tmp_path):
  killed = _worker(stage, tmp_path, kill_at=1)
  assert killed.returncode == -9, killed.stderr[-2000:]
  out = tmp_path / ARTEFACT[stage]
  assert not out.exists()
  # The killed writer's temporary sibling is still there (nothing ran)...
  leftovers = list(tmp_path.glob(f".{out.name}.tmp-*"))
  assert leftovers
  # ...and the next write of the artefact removes it, then completes.
  kill_worker.prepare(stage, tmp_path)
  kill_worker.run(stage, tmp_path)
  assert out.exists()
  assert not list(tmp_path.glob(f".{out.name}.tmp-*"))
  clean = tmp_path / "clean"
  assert _worker(stage, clean, kill_at=0).returncode == 0
  assert _same(out, clean / ARTEFACT[stage])


@pytest.mark.parametrize("stage", ["dataset", "predictions"])
def test_kill_while_replacing_keeps_the_old_artefact(stage, tmp_path):
  assert _worker(stage, tmp_path, kill_at=0).returncode == 0
  out = tmp_path / ARTEFACT[stage]
  before = tmp_path / "before"
  assert _worker(stage, before, kill_at=0).returncode == 0
  assert _worker(stage, tmp_path, kill_at=1).returncode == -9
  assert _same(out, before / ARTEFACT[stage])


def test_a_live_writers_sibling_is_kept(tmp_path):
  dest = tmp_path / "artefact"
  mine = tmp_path / (io_utils.tmp_prefix(dest) + "x")
  mine.mkdir()
  assert io_utils.remove_stale_siblings(dest) == []
  assert mine.exists()
