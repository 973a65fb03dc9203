"""`train_counts(...)`: count baselines through the one `train` entry point.

  python -m recjax.train --gin_file=runs/train_counts.gin \
    --gin_file=models/markov.gin --gin.MODEL_DIR=\"runs/markov_ml100k\" \
    --gin.recjax.item_sequences.ItemDataConfig.source=\"movielens_100k\"

A count family (`popularity`, `markov`) is fitted from the training
sequences of the leave-one-out split by its registered factory
(`FamilySpec.factory`, e.g. `recjax.models.markov.fit_run`), which also
picks its settings on validation and scores the test split. The run
directory gets `count_model.npz` (the fitted arrays), `metrics.json`
(`test/...`, `test_excl/...`), `config.gin` and `run.json`, so that
`recjax.eval` and `recjax.infer` work on it from `MODEL_DIR` alone, as on a
trained model. No TensorFlow, no JAX.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from recjax import item_sequences
from recjax import metrics as metrics_lib
from recjax import run_lib
from recjax.datasets import CanonicalDataset
from recjax.datasets import leave_one_out
from recjax.errors import ConfigError
from recjax.item_sequences import ItemDataConfig
from recjax.models import registry
from recjax.models.base import CountModel

MODEL_FILE = "count_model.npz"
METRICS_FILE = "metrics.json"


def train_counts(model_dir: str, family: str,
                 data: ItemDataConfig | None = None,
                 fit_kwargs: Mapping[str, Any] | None = None,
                 num_decodes: int = 20,
                 dry_run: bool = False) -> dict[str, float] | None:
  """Fits a count family on `data` and writes a self-describing run.

  Args:
    model_dir: the run directory.
    family: a registered family of kind `count`.
    data: the dataset (only its source fields are read).
    fit_kwargs: extra arguments of the family's factory (e.g. markov's
      `decays`).
    num_decodes: list length of the metrics.
    dry_run: check the family and load the data, then return None.

  Returns:
    The metrics written to `model_dir/metrics.json`.

  Raises:
    ConfigError: an unknown family, or one that is not a count family.
  """
  spec = registry.get_family(family)
  if spec.kind != registry.COUNT:
    raise ConfigError(
        f"family {family!r} is {spec.kind}, not a count baseline; train it "
        f"with its gin files ({', '.join(spec.gin_files)}) and "
        "runs/train.gin or runs/train_items.gin.")
  data = data or ItemDataConfig()
  t0 = time.time()
  dataset = item_sequences.load_dataset(data)
  fit = registry.resolve(spec.factory)
  if dry_run:
    return None
  model, metrics = fit(dataset, k=num_decodes, **dict(fit_kwargs or {}))
  out = pathlib.Path(model_dir)
  model.save(out / MODEL_FILE)
  results = {k: float(v) for k, v in metrics.items()}
  results.update({"train_seconds": time.time() - t0,
                  "num_items": float(dataset.num_items),
                  "num_users": float(dataset.num_users)})
  run_lib.write_json(out / METRICS_FILE, results)
  run_lib.describe_run(
      out, kind=registry.COUNT, entry="recjax.train_counts.train_counts",
      model=model, inputs={
          "data": run_lib.json_ready(data),
          "dataset": {"name": dataset.name,
                      "num_items": dataset.num_items,
                      "num_users": dataset.num_users,
                      "fingerprint": dataset.fingerprint()}})
  shown = {k: round(v, 4) for k, v in results.items()
           if k.split("/")[-1] in ("recall@10", "ndcg@10")}
  print(f"{family}: {shown}", flush=True)
  return results


def load_model(model_dir: str | pathlib.Path, desc: Mapping[str, Any]
               ) -> CountModel:
  """The fitted model of a count run.

  Raises:
    ConfigError: the model file is missing.
  """
  path = pathlib.Path(model_dir) / MODEL_FILE
  if not path.exists():
    raise ConfigError(f"{path} does not exist; the count run did not finish "
                      "(train it again with the same MODEL_DIR).")
  cls = registry.resolve(desc["model_class"])
  with np.load(path) as f:
    return cls.from_state(dict(f))


def dataset_of(desc: Mapping[str, Any]) -> CanonicalDataset:
  """The dataset a count or item-level run read, checked by fingerprint.

  Raises:
    ConfigError: the data now differ from what the run read.
  """
  fields = dict(desc["inputs"]["data"])
  dataset = item_sequences.load_dataset(ItemDataConfig(**fields))
  want = desc["inputs"].get("dataset", {}).get("fingerprint")
  if want and dataset.fingerprint() != want:
    raise ConfigError(
        f"the dataset {dataset.name!r} has fingerprint "
        f"{dataset.fingerprint()[:12]}, but the run read {want[:12]}: the "
        "source data changed since training; re-train the run.")
  return dataset


def evaluate_counts(model_dir: str, desc: Mapping[str, Any],
                    split: str = "test", num_decodes: int = 20,
                    ks: tuple[int, ...] = metrics_lib.DEFAULT_KS
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Ranks the catalog for every user of `split` with a count run.

  Returns:
    `(metrics, lists)`: `{split}/<metric>` and `{split}_excl/<metric>`;
    lists `{prefix: int [users, k], prefix + "/scores": float [users, k],
    "targets": int [users]}`.
  """
  model = load_model(model_dir, desc)
  dataset = dataset_of(desc)
  part = leave_one_out(dataset, max_history=None)[split]
  histories = [part.history(i) for i in range(len(part))]
  k = min(num_decodes, dataset.num_items)
  out: dict[str, float] = {}
  lists = {}
  for prefix, exclude in ((split, None), (f"{split}_excl", histories)):
    lists[prefix], lists[f"{prefix}/scores"] = model.recommend(
        histories, k, exclude=exclude, return_scores=True)
    for key, value in metrics_lib.ranking_metrics(
        lists[prefix], part.targets, ks=ks,
        num_items=dataset.num_items).items():
      out[f"{prefix}/{key}"] = float(value)
  lists["targets"] = np.asarray(part.targets)
  return out, lists
