"""RecBole atomic files (`NAME.inter`, `NAME.item`): MovieLens-100K and more.

An atomic file is tab-separated with a header of `field:type` columns, e.g.
`user_id:token  item_id:token  rating:float  timestamp:float`. The `.inter`
file needs `user_id` and `item_id`; `rating` and `timestamp` are used when
present. The optional `.item` file gives item text: `movie_title` or `title`
becomes the title, `class`/`genre`/`categories` the categories, and every
other column is kept as an extra text field.
"""

from __future__ import annotations

import logging
import os
import pathlib

import numpy as np

from recjax import assets
from recjax.datasets import canonical
from recjax.datasets.preprocessing import Interactions
from recjax.errors import DatasetError

# Atomic item columns mapped onto the canonical text fields.
_FIELD_ALIASES = {
    "movie_title": "title", "title": "title", "name": "title",
    "class": "categories", "genre": "categories", "categories": "categories",
    "category": "categories", "brand": "brand", "description": "description",
}


def _read_atomic(path: pathlib.Path) -> tuple[list[str], list[list[str]]]:
  """Reads an atomic file; returns field names (types stripped) and rows."""
  if not path.exists():
    raise DatasetError(
        f"{path} does not exist. A RecBole atomic dataset directory needs "
        f"'{path.name}'; pass data_dir= the folder that holds it.")
  with open(path, encoding="utf-8", errors="replace") as f:
    header = f.readline().rstrip("\n\r").split("\t")
    if not header or not all(":" in h for h in header):
      raise DatasetError(
          f"{path}:1: the header must be tab-separated 'field:type' columns "
          f"(e.g. 'user_id:token\\titem_id:token'), got {header!r}.")
    names = [h.split(":", 1)[0] for h in header]
    rows = []
    for lineno, line in enumerate(f, start=2):
      line = line.rstrip("\n\r")
      if not line:
        continue
      cols = line.split("\t")
      if len(cols) != len(names):
        raise DatasetError(
            f"{path}:{lineno}: {len(cols)} tab-separated columns, the header "
            f"has {len(names)} ({names}). Fix or remove the line.")
      rows.append(cols)
  return names, rows


def read_inter(path: pathlib.Path) -> Interactions:
  """Reads a `.inter` atomic file into raw interactions."""
  names, rows = _read_atomic(path)
  for need in ("user_id", "item_id"):
    if need not in names:
      raise DatasetError(
          f"{path}: the header has no '{need}' column (columns: {names}). "
          "Rename the user/item columns to 'user_id:token' and "
          "'item_id:token'.")
  cols = list(zip(*rows)) if rows else [()] * len(names)
  col = dict(zip(names, cols))

  def numeric(field: str, dtype) -> np.ndarray | None:
    if field not in col:
      return None
    try:
      return np.asarray(col[field], dtype=np.float64).astype(dtype)
    except ValueError:
      for i, v in enumerate(col[field]):
        try:
          float(v)
        except ValueError:
          raise DatasetError(
              f"{path}:{i + 2}: {field} {v!r} is not a number. Fix the "
              "value or drop the column.") from None
      raise

  return Interactions(
      user_ids=np.asarray(col["user_id"], dtype=str),
      item_ids=np.asarray(col["item_id"], dtype=str),
      timestamps=numeric("timestamp", np.int64),
      ratings=numeric("rating", np.float32),
      source=str(path))


def read_items(path: pathlib.Path,
               inter: Interactions | None = None) -> canonical.ItemTable:
  """Reads a `.item` atomic file; without one, items come from `inter`."""
  if not path.exists():
    if inter is None:
      raise DatasetError(f"{path} does not exist.")
    logging.warning("%s not found: items get no text fields.", path)
    ids = list(dict.fromkeys(inter.item_ids.tolist()))
    return canonical.ItemTable(ids, {})
  names, rows = _read_atomic(path)
  if "item_id" not in names:
    raise DatasetError(f"{path}: the header has no 'item_id' column "
                       f"(columns: {names}).")
  ids = [r[names.index("item_id")] for r in rows]
  fields: dict[str, list[str]] = {}
  for j, name in enumerate(names):
    if name == "item_id":
      continue
    target = _FIELD_ALIASES.get(name, name)
    values = [r[j] for r in rows]
    if target in fields:  # Two aliases of one field: join them.
      values = [f"{a} {b}".strip() for a, b in zip(fields[target], values)]
    fields[target] = values
  if len(set(ids)) != len(ids):
    seen: set[str] = set()
    dup = next(i for i in ids if i in seen or seen.add(i))
    raise DatasetError(f"{path}: item_id {dup!r} appears on more than one "
                       "line; item ids must be unique.")
  return canonical.ItemTable(ids, fields)


def load_recbole(data_dir: str | os.PathLike[str], name: str
                 ) -> tuple[Interactions, canonical.ItemTable]:
  """Reads `data_dir/name.inter` and `data_dir/name.item`."""
  root = pathlib.Path(data_dir)
  if not root.is_dir():
    raise DatasetError(f"{root} is not a directory. Pass data_dir= the "
                       f"folder that holds {name}.inter.")
  inter = read_inter(root / f"{name}.inter")
  items = read_items(root / f"{name}.item", inter)
  return inter, items


def load_movielens_100k(data_dir: str | os.PathLike[str] | None = None
                        ) -> tuple[Interactions, canonical.ItemTable]:
  """MovieLens-100K from the pinned RecBole wheel, or from `data_dir`."""
  root = data_dir if data_dir is not None else assets.fetch("movielens_100k")
  return load_recbole(root, "ml-100k")
