"""Several datasets as one: the multi-domain source of pre-training.

`merge(parts)` concatenates canonical datasets into one catalog and one
user list, so a model trains on all of them with shuffled, mixed-domain
batches (VQ-Rec's pre-training on several platforms). Item and user ids
become `<part>/<original id>` (distinct domains never share an item or a
user), every item gets a `domain` field, and the text fields are the union
of the parts' (missing ones empty). The parts must share at least one
non-empty text field, or an item-text model would see unrelated inputs.

As a `recjax.datasets` source:

  datasets.load("merged", name="beauty+yelp", parts=[
      {"name": "Beauty", "source": "amazon_lcrec",
       "data_dir": ".../amazon-beauty", "category": "Beauty"},
      {"name": "Yelp", "source": "amazon_lcrec",
       "data_dir": ".../yelp", "category": "Yelp"}])
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from recjax.datasets.canonical import STANDARD_FIELDS
from recjax.datasets.canonical import CanonicalDataset
from recjax.datasets.canonical import ItemTable
from recjax.errors import DatasetError

DOMAIN_FIELD = "domain"


def text_fields(ds: CanonicalDataset) -> set[str]:
  """The item fields with text for at least one item."""
  return {name for name, values in ds.items.fields.items()
          if name != DOMAIN_FIELD and any(v.strip() for v in values)}


def merge(parts: Sequence[CanonicalDataset], names: Sequence[str],
          name: str, sources: Sequence[str] | None = None
          ) -> CanonicalDataset:
  """One dataset holding every part's users and items.

  Args:
    parts: the datasets, at least two.
    names: a distinct short name per part (the id prefix and `domain`).
    name: the merged dataset's name.
    sources: where each part came from, for error messages (default the
      parts' names).

  Returns:
    The merged dataset (part k's items and users after part k-1's).

  Raises:
    DatasetError: fewer than two parts, repeated names, or parts without
      a common non-empty text field.
  """
  if len(parts) < 2:
    raise DatasetError(f"a merged dataset needs at least two parts, got "
                       f"{len(parts)}.")
  if len(set(names)) != len(names) or len(names) != len(parts):
    raise DatasetError(f"merged parts need one distinct name each, got "
                       f"{list(names)}.")
  sources = list(sources or [p.name for p in parts])
  common = set.intersection(*(text_fields(p) for p in parts))
  if not common:
    described = "; ".join(f"{src}: {sorted(text_fields(p)) or 'none'}"
                          for src, p in zip(sources, parts))
    raise DatasetError(
        f"the parts of {name!r} share no non-empty item text field "
        f"({described}); give every part's items at least one common "
        f"field (e.g. a title in the item file; standard fields: "
        f"{', '.join(STANDARD_FIELDS)}).")
  fields = sorted(set().union(*(p.items.fields for p in parts)) -
                  {DOMAIN_FIELD})
  item_ids: list[str] = []
  values: dict[str, list[str]] = {f: [] for f in fields + [DOMAIN_FIELD]}
  user_ids: list[str] = []
  sequences, times = [], []
  has_time = all(p.timestamps_flat is not None for p in parts)
  offset = 0
  for part_name, part in zip(names, parts):
    n = part.num_items
    item_ids += [f"{part_name}/{i}" for i in part.items.original_ids]
    for f in fields:
      values[f] += part.items.fields.get(f, [""] * n)
    values[DOMAIN_FIELD] += [part_name] * n
    user_ids += [f"{part_name}/{u}" for u in part.user_ids]
    sequences.append(part.items_flat.astype(np.int64) + offset)
    if has_time:
      times.append(part.timestamps_flat)
    offset += n
  lengths = np.concatenate([np.diff(p.offsets) for p in parts])
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  metadata = {"parts": [{"name": nm, "dataset": p.name,
                         "num_items": p.num_items, "num_users": p.num_users,
                         "fingerprint": p.fingerprint()}
                        for nm, p in zip(names, parts)],
              "common_text_fields": sorted(common)}
  return CanonicalDataset(
      name=name, items=ItemTable(item_ids, values), user_ids=user_ids,
      offsets=offsets, items_flat=np.concatenate(sequences),
      timestamps_flat=np.concatenate(times) if has_time else None,
      metadata=metadata)


def load_merged(parts: Sequence[Mapping[str, Any]] | None = None,
                name: str | None = None) -> CanonicalDataset:
  """The `merged` source: loads each part (`recjax.datasets.load`).

  Args:
    parts: per part, `name` and `source` plus that source's arguments.
    name: the merged dataset's name (default the parts' names joined by
      "+").

  Returns:
    The merged dataset.

  Raises:
    DatasetError: no parts, a part without `name` / `source`, or parts
      that cannot be merged (see `merge`).
  """
  from recjax import datasets  # pylint: disable=g-import-not-at-top
  if not parts:
    raise DatasetError("the merged source needs parts=[{'name': ..., "
                       "'source': ..., <that source's arguments>}, ...].")
  loaded, names, sources = [], [], []
  for i, part in enumerate(parts):
    part = dict(part)
    if "name" not in part or "source" not in part:
      raise DatasetError(f"merged part {i} ({part}) needs a 'name' and a "
                         "'source'.")
    names.append(str(part.pop("name")))
    source = part.pop("source")
    sources.append(str(part.get("data_dir", source)))
    loaded.append(datasets.load(source, **part))
  return merge(loaded, names, name or "+".join(names), sources)
