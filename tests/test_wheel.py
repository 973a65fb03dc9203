"""recjax installs as a wheel: the task layer and the gin files come with it.

The wheel is built from this checkout, installed with `--no-deps` into a
fresh venv that sees this environment's site-packages (for jax, seqio, ...)
but not its editable recjax, and used from another folder: the package
data (`recjax/gin_configs/`), `recjax.tasks` and the entry point work, and
no generic top-level `tasks` package is installed.
"""

import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args, **kwargs):
  proc = subprocess.run(args, capture_output=True, text=True, timeout=600,
                        **kwargs)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp("dist")
  _run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
        "--no-build-isolation", "--quiet", "-w", str(out)])
  (path,) = out.glob("recjax-*.whl")
  return path


def test_wheel_holds_the_task_layer_and_the_gin_files(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  for name in ("recjax/tasks/__init__.py", "recjax/tasks/tiger.py",
               "recjax/gin_configs/runs/train.gin",
               "recjax/gin_configs/models/sasrec.gin",
               "recjax/gin_configs/schedules/generative_cpu.gin",
               "recjax/models/sasrec/model.py", "recjax/py.typed"):
    assert name in names, name
  assert not [n for n in names if n.startswith("tasks/")]
  assert not [n for n in names if n.startswith("tests/")]


def test_installed_wheel_trains_from_another_folder(wheel, tmp_path):
  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", str(venv)])
  python = venv / "bin" / "python"
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "PIP_CONFIG_FILE",
                      "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL")}
  _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
        "--quiet", str(wheel)], env=env)
  # This environment's packages (jax, seqio, ...) behind the venv's own;
  # a path line does not run the editable install's .pth hook.
  site = _run([str(python), "-c", "import sysconfig; "
               "print(sysconfig.get_paths()['purelib'])"], env=env)
  (pathlib.Path(site.stdout.strip()) / "test_env.pth").write_text(
      sysconfig.get_paths()["purelib"] + "\n")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = _run([str(python), "-c", "import recjax, recjax.tasks; "
                "print(recjax.__file__); print(recjax.tasks.__file__)"],
               cwd=elsewhere, env=env)
  for line in where.stdout.split():
    assert line.startswith(str(venv)), where.stdout
  missing = subprocess.run([str(python), "-c", "import tasks"],
                           cwd=elsewhere, env=env, capture_output=True)
  assert missing.returncode != 0  # No generic top-level package.
  proc = _run([
      str(python), "-m", "recjax.train", "--gin_file=runs/train_items.gin",
      "--gin_file=models/sasrec.gin", "--gin_file=schedules/sasrec_smoke.gin",
      f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
      "--gin.recjax.item_sequences.ItemDataConfig.source='synthetic'",
      "--gin.recjax.item_sequences.ItemDataConfig.source_kwargs="
      "{'num_users': 40, 'num_items': 24, 'num_clusters': 3}",
      "--gin.recjax.train_items.train_items.dry_run=True"],
      cwd=elsewhere, env=env)
  assert "train_items: synthetic" in proc.stdout, proc.stdout
