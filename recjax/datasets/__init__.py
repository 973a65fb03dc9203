"""Canonical recommendation datasets from every supported source.

`load(name, **kwargs)` returns a `CanonicalDataset`:

| name | source | kwargs |
|---|---|---|
| `movielens_100k` | pinned RecBole wheel (or `data_dir`) | `data_dir` |
| `amazon_lcrec` | LC-Rec/LETTER JSON layout | `data_dir`, `category` |
| `amazon_2014` | raw Amazon 2014 review + meta files | `data_dir`, `category` |
| `recbole` | any RecBole atomic dataset | `data_dir`, `name` |
| `synthetic` | clustered generator | `num_users`, `num_items`, ..., `seed` |
| `merged` | several sources as one (`datasets.merge`) | `parts`, `name` |

Every name also takes the `PreprocessConfig` fields (`kcore`, `min_rating`,
`dedupe_consecutive`, `min_history`, `order`, `drop_unused_items`) and
`unknown_items` ('error' or 'drop'). Defaults follow each source's usual
protocol: raw Amazon 2014 is 5-core filtered; the others are used as given.

This package imports no TensorFlow; the TFDS builders live in
`recjax.datasets.tfds_builders`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from recjax.datasets.canonical import CanonicalDataset
from recjax.datasets.canonical import ItemTable
from recjax.datasets.preprocessing import Interactions
from recjax.datasets.preprocessing import PreprocessConfig
from recjax.datasets.preprocessing import preprocess
from recjax.datasets.sources import amazon
from recjax.datasets.sources import recbole
from recjax.datasets.sources import synthetic
from recjax.datasets.splits import DEFAULT_MAX_HISTORY
from recjax.datasets.splits import SPLITS
from recjax.datasets.splits import Split
from recjax.datasets.splits import leave_one_out
from recjax.errors import DatasetError

__all__ = [
    "CanonicalDataset", "ItemTable", "Interactions", "PreprocessConfig",
    "Split", "SPLITS", "DEFAULT_MAX_HISTORY", "leave_one_out", "load",
    "NAMES",
]

_PREPROCESS_FIELDS = {f.name for f in dataclasses.fields(PreprocessConfig)}


def _movielens(data_dir: str | None = None):
  return recbole.load_movielens_100k(data_dir)


def _amazon_lcrec(data_dir: str | None = None, category: str | None = None):
  if data_dir is None or category is None:
    raise DatasetError("amazon_lcrec needs data_dir= (the folder with "
                       "X.item.json and X.inter.json) and category= (X, "
                       "e.g. 'Office').")
  return amazon.load_lcrec(data_dir, category)


def _amazon_2014(data_dir: str | None = None, category: str | None = None,
                 skip_malformed: bool = False):
  if data_dir is None or category is None:
    raise DatasetError("amazon_2014 needs data_dir= (the folder with "
                       "reviews_X_5.json.gz and meta_X.json.gz) and "
                       "category= (X, e.g. 'Beauty').")
  return amazon.load_amazon_2014(data_dir, category, skip_malformed)


def _recbole(data_dir: str | None = None, name: str | None = None):
  if data_dir is None or name is None:
    raise DatasetError("recbole needs data_dir= (the folder with NAME.inter "
                       "and NAME.item) and name= (NAME).")
  return recbole.load_recbole(data_dir, name)


def _synthetic(seed: int = 0, **sizes: Any):
  unknown = set(sizes) - {f.name for f in
                          dataclasses.fields(synthetic.SyntheticConfig)}
  if unknown:
    raise DatasetError(f"Unknown synthetic options {sorted(unknown)}; see "
                       "recjax.datasets.sources.synthetic.SyntheticConfig.")
  return synthetic.generate(synthetic.SyntheticConfig(**sizes), seed=seed)


# name -> (reader, default preprocessing, dataset name from kwargs)
_SOURCES: dict[str, tuple[Callable[..., tuple[Interactions, ItemTable]],
                          PreprocessConfig]] = {
    "movielens_100k": (_movielens, PreprocessConfig()),
    "amazon_lcrec": (_amazon_lcrec, PreprocessConfig(order="file")),
    "amazon_2014": (_amazon_2014, PreprocessConfig(kcore=5)),
    "recbole": (_recbole, PreprocessConfig()),
    "synthetic": (_synthetic, PreprocessConfig()),
}
# The multi-domain source (its parts are preprocessed by their own source).
MERGED = "merged"
NAMES = tuple(_SOURCES) + (MERGED,)


def dataset_name(source: str, /, **kwargs: Any) -> str:
  """A descriptive name, e.g. `amazon_lcrec_office` or `synthetic_s0`."""
  if source in ("amazon_lcrec", "amazon_2014") and kwargs.get("category"):
    return f"{source}_{str(kwargs['category']).lower()}"
  if source == "recbole" and kwargs.get("name"):
    return f"recbole_{kwargs['name']}"
  if source == "synthetic":
    return f"synthetic_s{kwargs.get('seed', 0)}"
  if source == MERGED:
    parts = kwargs.get("parts") or ()
    name = kwargs.get("name") or "+".join(str(p.get("name")) for p in parts)
    return f"merged_{name.lower()}"
  return source


def load(source: str, /, unknown_items: str = "error",
         **kwargs: Any) -> CanonicalDataset:
  """Loads and preprocesses a dataset into its canonical form.

  Args:
    source: one of `NAMES` (positional, so the `recbole` source can take a
      `name=` argument).
    unknown_items: 'error' or 'drop' for interactions with unknown items.
    **kwargs: source arguments (see the module docstring) and
      `PreprocessConfig` fields overriding the source's defaults.

  Returns:
    The canonical dataset.

  Raises:
    DatasetError: unknown name or options, or bad source data.
  """
  if source == MERGED:
    from recjax.datasets import merge  # pylint: disable=g-import-not-at-top
    unknown = sorted(set(kwargs) - {"parts", "name"})
    if unknown_items != "error":
      unknown.append("unknown_items")
    if unknown:
      raise DatasetError(
          f"the merged source takes parts= and name= only, got {unknown}; "
          "give source and preprocessing options to each part.")
    ds = merge.load_merged(**kwargs)
    ds.metadata["loader"] = {"source": source, **kwargs}
    return ds
  if source not in _SOURCES:
    raise DatasetError(f"Unknown dataset {source!r}; known: {list(NAMES)}.")
  reader, defaults = _SOURCES[source]
  overrides = {k: kwargs.pop(k) for k in list(kwargs)
               if k in _PREPROCESS_FIELDS}
  config = dataclasses.replace(defaults, **overrides)
  try:
    inter, items = reader(**kwargs)
  except TypeError as e:
    raise DatasetError(f"Bad options for dataset {source!r}: {e}.") from None
  for key in ("data_dir",):
    if kwargs.get(key) is not None:
      kwargs[key] = os.fspath(kwargs[key])
  ds = preprocess(dataset_name(source, **kwargs), inter, items, config,
                  unknown_items=unknown_items)
  ds.metadata["loader"] = {"source": source, **kwargs}
  return ds
