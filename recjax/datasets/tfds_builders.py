"""TFDS builders over the canonical datasets (what SeqIO tasks read).

Importing this module registers three builders:

* `recjax_movielens100k`: MovieLens-100K from the pinned registry asset;
* `recjax_amazon_lcrec/<category>`: Amazon in the LC-Rec layout, read from a
  manual dir (`X.item.json`, `X.inter.json`);
* `recjax_synthetic/<config>`: the clustered synthetic generator.

Each has splits `train` / `validation` / `test` (leave-one-out; see
`recjax.datasets.splits`) with features

  user_index  int32            dense user index
  user_id     string           original user id
  history     Sequence(int32)  dense item indices, oldest first
  target      int32            dense item index

Validation and test histories hold the last `max_history` (20) items; the
train history is the whole training sequence but its last item, so tasks can
expand it into prefixes. The item table (original ids and text fields) and
the dataset statistics are stored in the dataset's metadata; read them with
`item_table(builder)`.

Example:
  >>> import tensorflow_datasets as tfds
  >>> from recjax.datasets import tfds_builders  # registers the builders
  >>> ds = tfds.load("recjax_amazon_lcrec/office", split="test",
  ...                data_dir="/tmp/tfds",
  ...                download_and_prepare_kwargs={"download_config":
  ...     tfds.download.DownloadConfig(manual_dir="../shared/data/"
  ...                                  "amazon-office")})
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from recjax import quiet

quiet.load_task_layer()  # TensorFlow's import-time C++ logs: /dev/null.

import tensorflow_datasets as tfds  # noqa: E402

from recjax import datasets  # noqa: E402
from recjax.datasets.canonical import CanonicalDataset  # noqa: E402
from recjax.datasets.canonical import ItemTable  # noqa: E402
from recjax.errors import DatasetError  # noqa: E402

_VERSION = tfds.core.Version("1.0.0")
_RELEASE_NOTES = {"1.0.0": "Leave-one-out splits with the item table."}

# Categories of the LC-Rec/LETTER releases; any other category works through
# `AmazonLcrecConfig(name=..., category=...)`.
LCREC_CATEGORIES = ("Office", "Beauty", "Sports", "Toys", "Instruments",
                    "Arts", "Games", "Scientific", "Pet", "Phones")


def _features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "user_index": np.int32,
      "user_id": tfds.features.Text(),
      "history": tfds.features.Sequence(np.int32),
      "target": np.int32,
  })


def item_table(builder: tfds.core.DatasetBuilder) -> ItemTable:
  """Returns the item table stored with a prepared recjax builder."""
  meta = builder.info.metadata
  if meta is None or "items" not in meta:
    raise DatasetError(
        f"{builder.name}: no item table in the dataset metadata; prepare the "
        "dataset with a recjax builder (download_and_prepare()).")
  cols = dict(meta["items"])
  ids = list(cols.pop("item_id"))
  return ItemTable(ids, {k: list(v) for k, v in cols.items()})


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """DatasetInfo that never looks for pre-computed info in TFDS's bucket.

  TFDS calls `initialize_from_bucket` for every builder whose dataset is not
  prepared yet; with its GCS access disabled (the default) the call still
  leaves an empty `/tmp/tmp*tfds` folder behind. recjax's datasets are built
  here from pinned assets, so there is nothing to look up.
  """

  def initialize_from_bucket(self) -> None:
    return None


class _RecjaxBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared split generation; subclasses say how to load the dataset."""

  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES

  @abc.abstractmethod
  def _load(self, dl_manager: tfds.download.DownloadManager
            ) -> CanonicalDataset:
    """Loads the canonical dataset this builder splits."""

  def _log_download_bytes(self) -> None:
    # TFDS prints a banner with "Unknown size" here; nothing is downloaded.
    logging.info("Preparing %s in %s.", self.name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.info("Prepared %s in %s.", self.name, self.data_dir)

  def _info(self) -> tfds.core.DatasetInfo:
    return _LocalDatasetInfo(
        builder=self, features=_features(), metadata=tfds.core.MetadataDict(),
        description=self.__doc__, disable_shuffling=True)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager
                        ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
    ds = self._load(dl_manager)
    max_history = getattr(self.builder_config, "max_history",
                          datasets.DEFAULT_MAX_HISTORY)
    splits = datasets.leave_one_out(ds, max_history=max_history)
    cols = {"item_id": ds.items.original_ids}
    cols.update(ds.items.fields)
    self.info.metadata.update({
        "items": cols,
        "statistics": ds.statistics(),
        "fingerprint": ds.fingerprint(),
        "max_history": max_history,
    })
    return {name: self._generate_examples(ds, split)
            for name, split in splits.items()}

  def _generate_examples(self, ds: CanonicalDataset, split: datasets.Split
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(len(split)):
      u = int(split.users[i])
      yield str(u), {"user_index": u, "user_id": ds.user_ids[u],
                     "history": split.history(i),
                     "target": int(split.targets[i])}


@dataclasses.dataclass
class RecjaxBuilderConfig(tfds.core.BuilderConfig):
  """Config with the history cap of validation/test."""

  max_history: int = datasets.DEFAULT_MAX_HISTORY


class RecjaxMovielens100k(_RecjaxBuilder):
  """MovieLens-100K (943 users, 1,682 items, 100,000 ratings), leave-one-out."""

  BUILDER_CONFIGS = [RecjaxBuilderConfig(name="default")]

  def _load(self, dl_manager):
    del dl_manager
    return datasets.load("movielens_100k")


@dataclasses.dataclass
class AmazonLcrecConfig(RecjaxBuilderConfig):
  """An Amazon category in the LC-Rec layout (files `{category}.*.json`)."""

  category: str = "Office"


class RecjaxAmazonLcrec(_RecjaxBuilder):
  """Amazon reviews in the LC-Rec/LETTER JSON layout, leave-one-out."""

  BUILDER_CONFIGS = [AmazonLcrecConfig(name=c.lower(), category=c)
                     for c in LCREC_CATEGORIES]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put {category}.item.json and {category}.inter.json (LC-Rec/LETTER "
      "layout) in a folder and pass it as manual_dir: "
      "download_config=tfds.download.DownloadConfig(manual_dir=FOLDER).")

  def _load(self, dl_manager):
    return datasets.load("amazon_lcrec", data_dir=dl_manager.manual_dir,
                         category=self.builder_config.category)


@dataclasses.dataclass
class SyntheticBuilderConfig(RecjaxBuilderConfig):
  """Sizes of the synthetic generator."""

  num_users: int = 1000
  num_items: int = 500
  num_clusters: int = 20
  seed: int = 0


class RecjaxSynthetic(_RecjaxBuilder):
  """Clustered synthetic sequences with item text, leave-one-out."""

  BUILDER_CONFIGS = [
      SyntheticBuilderConfig(name="small"),
      SyntheticBuilderConfig(name="tiny", num_users=100, num_items=60,
                             num_clusters=6),
  ]

  def _load(self, dl_manager):
    del dl_manager
    c = self.builder_config
    return datasets.load("synthetic", num_users=c.num_users,
                         num_items=c.num_items, num_clusters=c.num_clusters,
                         seed=c.seed)


class RecjaxCanonical(_RecjaxBuilder):
  """Any staged canonical dataset directory (the manual dir), leave-one-out.

  Any `recjax.datasets` source becomes a TFDS dataset through it: stage the
  source (`recjax.datasets.stage.prepare`), then pass the directory as
  `manual_dir`. Give each dataset its own TFDS `data_dir`: the builder has
  one config, so two datasets in one data dir would share its cache.
  """

  BUILDER_CONFIGS = [RecjaxBuilderConfig(name="default")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Stage the dataset (python -m recjax.datasets SOURCE --out DIR) and "
      "pass DIR as manual_dir: "
      "download_config=tfds.download.DownloadConfig(manual_dir=DIR).")

  def _load(self, dl_manager):
    return CanonicalDataset.load(dl_manager.manual_dir)
