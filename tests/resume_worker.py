"""`python -m recjax.train`, killed (SIGKILL) at a chosen point.

  python tests/resume_worker.py KILL --gin_file=F ... [--gin.X=Y ...]

KILL is `none`, `between:K` (the process kills itself just before
training step K, between two checkpoints) or `mid_save:K` (while saving
the checkpoint of step K: its files are written, the commit is not). With
`none` the final train state (parameters and optimizer state, by key
path) is written to `<MODEL_DIR>/final_state.npz`.
`tests/test_resume.py` drives it.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))


def _kill() -> None:
  os.kill(os.getpid(), signal.SIGKILL)


def _arm(kill: str) -> None:
  from recjax import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  if kill == "none":
    real_train = trainer_lib.Trainer.train

    def train(self, *args, **kwargs):
      state = real_train(self, *args, **kwargs)
      leaves = jax.tree_util.tree_flatten_with_path(
          {"params": state.params, "opt_state": state.opt_state})[0]
      np.savez(pathlib.Path(self.model_dir) / "final_state.npz",
               step=np.asarray(state.step),
               **{jax.tree_util.keystr(k): np.asarray(v)
                  for k, v in leaves})
      return state

    trainer_lib.Trainer.train = train
    return
  mode, step = kill.split(":")
  step = int(step)
  if mode == "between":
    real_step = trainer_lib.Trainer.train_step

    def train_step(self, state, batch):
      if int(state.step) + 1 == step:
        _kill()
      return real_step(self, state, batch)

    trainer_lib.Trainer.train_step = train_step
  elif mode == "mid_save":
    from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top
    for cls in (atomicity.AtomicRenameTemporaryPath,
                atomicity.CommitFileTemporaryPath):
      real = cls.finalize

      async def finalize(self, *args, _real=real, **kwargs):
        if str(self.get_final()).rstrip("/").endswith(f"/{step}"):
          _kill()
        return await _real(self, *args, **kwargs)

      cls.finalize = finalize
  else:
    raise ValueError(f"unknown kill mode {kill!r}")


def main() -> None:
  kill, *flags = sys.argv[1:]
  _arm(kill)
  from recjax import train  # pylint: disable=g-import-not-at-top
  sys.argv = ["recjax.train", *flags]
  train.main()


if __name__ == "__main__":
  main()
