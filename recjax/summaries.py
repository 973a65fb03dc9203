"""Training summaries: TensorBoard, stdout, a JSON history and a curve plot.

`Summaries` writes scalars to TensorBoard through clu's metric writers when
clu (and TensorFlow) are importable, and always to stdout and to
`history.jsonl` in the run directory, from which `plot_curves` draws the
training-loss and validation curves as a PNG at the end of a run. Only
process 0 writes. No hard TensorFlow dependency.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Mapping

import jax


class Summaries:
  """Writes scalar metrics of one run.

  Attributes:
    model_dir: the run directory.
  """

  def __init__(self, model_dir: str | os.PathLike[str],
               tensorboard: bool = True, stdout: bool = True):
    self.model_dir = pathlib.Path(model_dir)
    self.enabled = jax.process_index() == 0
    self.stdout = stdout
    self._writer = None
    if not self.enabled:
      return
    self.model_dir.mkdir(parents=True, exist_ok=True)
    if tensorboard:
      try:
        from clu import metric_writers  # pylint: disable=g-import-not-at-top
        self._writer = metric_writers.create_default_writer(
            str(self.model_dir / "tensorboard"), asynchronous=False)
      except ImportError as e:
        logging.warning("No TensorBoard files in %s: %s (install recjax's "
                        "dependencies: `pip install -e .`, which lists "
                        "clu and tensorboard).", self.model_dir, e)
    self._history = open(self.model_dir / "history.jsonl", "a",
                         encoding="utf-8")

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Records `scalars` at `step`."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in scalars.items()}
    if self._writer is not None:
      self._writer.write_scalars(step, values)
    self._history.write(json.dumps({"step": int(step), **values}) + "\n")
    self._history.flush()
    if self.stdout:
      text = "  ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
      print(f"step {step:>7}  {text}", flush=True)

  def close(self) -> None:
    if not self.enabled:
      return
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()
    self._history.close()


def read_history(model_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
  """Reads `history.jsonl`; later entries for a step replace earlier ones."""
  path = pathlib.Path(model_dir) / "history.jsonl"
  if not path.exists():
    return []
  rows: dict[tuple[int, tuple[str, ...]], dict[str, float]] = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        rec = json.loads(line)
        rows[(rec["step"], tuple(sorted(rec)))] = rec
  return sorted(rows.values(), key=lambda r: r["step"])


def plot_curves(model_dir: str | os.PathLike[str],
                metrics: tuple[str, ...] = ("train/loss",
                                            "validation/ndcg@10",
                                            "validation/recall@10"),
                out: str | None = None) -> pathlib.Path | None:
  """Plots training/validation curves from the history as a PNG.

  Args:
    model_dir: the run directory.
    metrics: metric names to plot, one panel each (missing ones skipped).
    out: output path (default `model_dir/curves.png`).

  Returns:
    The PNG path, or None when there is nothing to plot.
  """
  rows = read_history(model_dir)
  present = [m for m in metrics if any(m in r for r in rows)]
  if not present:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.4),
                           squeeze=False)
  for ax, name in zip(axes[0], present):
    pts = [(r["step"], r[name]) for r in rows if name in r]
    ax.plot([p[0] for p in pts], [p[1] for p in pts],
            marker="o" if len(pts) < 30 else None, markersize=3)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  path = pathlib.Path(out) if out else pathlib.Path(model_dir) / "curves.png"
  tmp = path.with_suffix(".tmp.png")
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
  return path
