"""The dataset stage: source -> canonical dataset directory (cached).

`prepare(name, out_dir, **kwargs)` loads and preprocesses a dataset and saves
it to `out_dir` atomically. The directory records a key over the loader
arguments and the source files; re-running with the same key is a no-op that
loads the saved dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
from typing import Any

from recjax import datasets
from recjax.datasets.canonical import CanonicalDataset

STAGE_VERSION = 1


def _source_signature(kwargs: dict[str, Any]) -> list[Any]:
  """Sizes and mtimes of the files under `data_dir`, if any."""
  if kwargs.get("parts"):  # The merged source: every part's files.
    return [_source_signature(dict(p)) for p in kwargs["parts"]]
  data_dir = kwargs.get("data_dir")
  if data_dir is None or not os.path.isdir(data_dir):
    return []
  sig = []
  for p in sorted(pathlib.Path(data_dir).iterdir()):
    if p.is_file():
      st = p.stat()
      sig.append([p.name, st.st_size, int(st.st_mtime)])
  return sig


def stage_key(source: str, kwargs: dict[str, Any]) -> str:
  """The cache key of a dataset stage run."""
  blob = json.dumps({"source": source, "kwargs": kwargs,
                     "files": _source_signature(kwargs),
                     "version": STAGE_VERSION}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()


def prepare(source: str, /, out_dir: str | os.PathLike[str],
            **kwargs: Any) -> CanonicalDataset:
  """Loads dataset `name` into `out_dir`, or reuses a finished run.

  Args:
    source: a `recjax.datasets.NAMES` entry.
    out_dir: destination directory of the canonical dataset.
    **kwargs: arguments of `recjax.datasets.load`.

  Returns:
    The canonical dataset.
  """
  out = pathlib.Path(out_dir)
  key = stage_key(source, kwargs)
  meta = out / "meta.json"
  if meta.exists():
    with open(meta, encoding="utf-8") as f:
      saved = json.load(f).get("metadata", {}).get("stage_key")
    if saved == key:
      logging.info("Dataset stage: %s is up to date.", out)
      return CanonicalDataset.load(out)
  ds = datasets.load(source, **kwargs)
  ds.metadata["stage_key"] = key
  ds.save(out)
  return ds


def format_statistics(ds: CanonicalDataset) -> str:
  """A small table of the dataset statistics."""
  stats = ds.statistics()
  rows = [f"dataset: {ds.name}"]
  for k, v in stats.items():
    if isinstance(v, bool):
      text = "yes" if v else "no"
    elif isinstance(v, float) and not v.is_integer():
      text = f"{v:,.4f}"
    else:
      text = f"{v:,}"
    rows.append(f"  {k:<16} {text}")
  removed = {k: v for k, v in ds.metadata.get("removed", {}).items() if v}
  if removed:
    rows.append(f"  removed          {removed}")
  return "\n".join(rows)
