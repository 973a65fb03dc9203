"""Amazon review data: the LC-Rec/LETTER JSON layout and the raw 2014 files.

LC-Rec layout (`data_dir/X.item.json`, `data_dir/X.inter.json`):

* `X.item.json`: `{item_id: {"title", "description", "brand",
  "categories", ...}}`;
* `X.inter.json`: `{user_id: [item_id, ...]}`, each list oldest first (no
  timestamps).

Raw Amazon 2014 (McAuley lab) files:

* `reviews_X_5.json.gz` (5-core) or `reviews_X.json.gz`: one JSON object per
  line with `reviewerID`, `asin`, `overall`, `unixReviewTime`;
* `meta_X.json.gz`: one Python literal (not JSON) per line with `asin`,
  `title`, `brand`, `categories` (a list of category paths), `description`,
  `price`, ...
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from recjax.datasets import canonical
from recjax.datasets.preprocessing import Interactions
from recjax.errors import DatasetError


def _text(value: Any) -> str:
  """Flattens an item field (string, number, list of strings) to text."""
  if value is None:
    return ""
  if isinstance(value, (list, tuple)):
    return " ".join(p for p in map(_text, value) if p)
  return str(value).strip()


def _categories(value: Any) -> str:
  """Category paths -> 'A, B, C' (several paths joined by '; ')."""
  if isinstance(value, (list, tuple)):
    if value and all(isinstance(v, (list, tuple)) for v in value):
      return "; ".join(", ".join(map(str, path)) for path in value)
    return ", ".join(str(v) for v in value)
  return _text(value)


def _load_json(path: pathlib.Path) -> Any:
  if not path.exists():
    raise DatasetError(
        f"{path} does not exist. The LC-Rec layout needs X.item.json and "
        "X.inter.json in data_dir; check data_dir= and category=.")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DatasetError(
        f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg}). Fix the "
        "file or re-export it.") from None


def load_lcrec(data_dir: str | os.PathLike[str], category: str
               ) -> tuple[Interactions, canonical.ItemTable]:
  """Reads `data_dir/{category}.item.json` and `.inter.json`."""
  root = pathlib.Path(data_dir)
  item_path = root / f"{category}.item.json"
  inter_path = root / f"{category}.inter.json"
  raw_items = _load_json(item_path)
  raw_inter = _load_json(inter_path)
  if not isinstance(raw_items, dict):
    raise DatasetError(f"{item_path}: expected an object {{item_id: "
                       f"{{...}}}}, got {type(raw_items).__name__}.")
  if not isinstance(raw_inter, dict):
    raise DatasetError(f"{inter_path}: expected an object {{user_id: "
                       f"[item_id, ...]}}, got {type(raw_inter).__name__}.")
  ids = [str(k) for k in raw_items]
  fields: dict[str, list[str]] = {}
  for n, (iid, rec) in enumerate(raw_items.items()):
    if not isinstance(rec, dict):
      raise DatasetError(f"{item_path}: item {iid!r} is a "
                         f"{type(rec).__name__}, expected an object of text "
                         "fields.")
    for key, value in rec.items():
      col = fields.setdefault(key, [""] * len(ids))
      col[n] = _categories(value) if key == "categories" else _text(value)
  users, items = [], []
  for uid, seq in raw_inter.items():
    if not isinstance(seq, list):
      raise DatasetError(f"{inter_path}: user {uid!r} has a "
                         f"{type(seq).__name__}, expected a list of item "
                         "ids.")
    users.extend([str(uid)] * len(seq))
    items.extend(str(i) for i in seq)
  inter = Interactions(user_ids=np.asarray(users, dtype=str),
                       item_ids=np.asarray(items, dtype=str),
                       timestamps=None, ratings=None, source=str(inter_path))
  return inter, canonical.ItemTable(ids, fields)


def _gz_lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt", encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if line.strip():
        yield lineno, line


def _parse_line(path: pathlib.Path, lineno: int, line: str,
                literal: bool) -> dict[str, Any]:
  try:
    rec = json.loads(line)
  except json.JSONDecodeError:
    if not literal:
      raise DatasetError(f"{path}:{lineno}: malformed JSON line. Fix or "
                         "remove the line.") from None
    try:
      rec = ast.literal_eval(line)
    except (ValueError, SyntaxError):
      raise DatasetError(
          f"{path}:{lineno}: neither JSON nor a Python literal. Fix or "
          "remove the line.") from None
  if not isinstance(rec, dict):
    raise DatasetError(f"{path}:{lineno}: expected an object, got "
                       f"{type(rec).__name__}.")
  return rec


def load_amazon_2014(data_dir: str | os.PathLike[str], category: str,
                     skip_malformed: bool = False
                     ) -> tuple[Interactions, canonical.ItemTable]:
  """Reads raw Amazon 2014 review and metadata files.

  Args:
    data_dir: folder with `reviews_{category}_5.json.gz` (preferred) or
      `reviews_{category}.json.gz`, and `meta_{category}.json.gz`.
    category: e.g. `Beauty`, `Office_Products`.
    skip_malformed: count and skip malformed lines instead of failing.

  Returns:
    Raw interactions (timestamps from `unixReviewTime`) and the item table.
  """
  root = pathlib.Path(data_dir)
  candidates = [root / f"reviews_{category}_5.json.gz",
                root / f"reviews_{category}.json.gz",
                root / f"reviews_{category}_5.json",
                root / f"reviews_{category}.json"]
  reviews = next((p for p in candidates if p.exists()), None)
  if reviews is None:
    raise DatasetError(f"No review file for category {category!r} in {root} "
                       f"(looked for {[p.name for p in candidates]}).")
  meta = next((p for p in (root / f"meta_{category}.json.gz",
                           root / f"meta_{category}.json") if p.exists()),
              None)
  if meta is None:
    raise DatasetError(f"No metadata file meta_{category}.json.gz in {root}. "
                       "Item text comes from it; download it next to the "
                       "reviews.")
  bad = 0
  users, items, times, ratings = [], [], [], []
  for lineno, line in _gz_lines(reviews):
    try:
      rec = _parse_line(reviews, lineno, line, literal=True)
      missing = [k for k in ("reviewerID", "asin", "unixReviewTime")
                 if k not in rec]
      if missing:
        raise DatasetError(f"{reviews}:{lineno}: missing {missing}. Each "
                           "review needs reviewerID, asin, unixReviewTime.")
    except DatasetError:
      if not skip_malformed:
        raise
      bad += 1
      continue
    users.append(str(rec["reviewerID"]))
    items.append(str(rec["asin"]))
    times.append(int(rec["unixReviewTime"]))
    ratings.append(float(rec.get("overall", np.nan)))
  ids: list[str] = []
  fields: dict[str, list[str]] = {k: [] for k in (
      "title", "brand", "categories", "description", "price")}
  for lineno, line in _gz_lines(meta):
    try:
      rec = _parse_line(meta, lineno, line, literal=True)
      if "asin" not in rec:
        raise DatasetError(f"{meta}:{lineno}: no 'asin'.")
    except DatasetError:
      if not skip_malformed:
        raise
      bad += 1
      continue
    ids.append(str(rec["asin"]))
    fields["title"].append(_text(rec.get("title")))
    fields["brand"].append(_text(rec.get("brand")))
    fields["categories"].append(_categories(rec.get("categories")))
    fields["description"].append(_text(rec.get("description")))
    price = rec.get("price")
    fields["price"].append("" if price is None else str(price))
  if bad:
    logging.warning("Skipped %d malformed lines in %s / %s.", bad, reviews,
                    meta)
  # Keep the first occurrence of a duplicated asin in the metadata.
  seen: dict[str, int] = {}
  for n, i in enumerate(ids):
    seen.setdefault(i, n)
  if len(seen) != len(ids):
    logging.warning("%s: %d duplicate asins, kept the first of each.", meta,
                    len(ids) - len(seen))
    first = sorted(seen.values())
    ids = [ids[n] for n in first]
    fields = {k: [v[n] for n in first] for k, v in fields.items()}
  inter = Interactions(user_ids=np.asarray(users, dtype=str),
                       item_ids=np.asarray(items, dtype=str),
                       timestamps=np.asarray(times, dtype=np.int64),
                       ratings=np.asarray(ratings, dtype=np.float32),
                       source=str(reviews))
  return inter, canonical.ItemTable(ids, fields)
