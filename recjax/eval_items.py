"""`evaluate_items(...)`: evaluation of a trained item-level run (T5X style).

  python -m recjax.eval_items \
    --gin_file=runs/train_items.gin \
    --gin_file=experiments/sasrec_amazon_office.gin \
    --gin.MODEL_DIR=\"runs/sasrec_office\" --gin.EVAL_SPLIT=\"validation\"

The counterpart of `recjax.eval` for SASRec, LEARN and LITE: it takes the
gin files of the training run (so the data, model and embeddings match),
restores the best (or latest) checkpoint's parameters without touching the
run, ranks the whole catalog for every user of a split and reports the
metrics under both history policies ("all items" and, prefixed
`<split>_excl/`, "seen items excluded"). Writes
`<output_dir>/eval_<split>.json` and, with
`--gin.recjax.eval_items.evaluate_items.write_predictions=True`, the ranked
lists `predictions_<split>.npz` / `predictions_<split>_excl.npz` (`items`,
`scores`, `targets`; one row per user in split order, as `recjax.eval`
writes them), for error analysis or significance tests. No TensorFlow.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import jax

from recjax import checkpoints
from recjax import evaluation
from recjax import io_utils
from recjax import item_sequences
from recjax import run_lib
from recjax import train_items
from recjax.evaluation import EvalConfig
from recjax.item_sequences import ItemDataConfig
from recjax.models import layers
from recjax.models.base import ItemModel


def restore(model_dir: str, data: ItemDataConfig,
            model_fn: train_items.ModelFn, embeddings_dir: str | None,
            checkpoint: str = "best"
            ) -> tuple[item_sequences.ItemData, ItemModel, Any, int]:
  """The data, model and restored parameters of an item-level run.

  Args:
    model_dir: the run directory of `recjax.train_items`.
    data: the run's dataset and history length.
    model_fn: the run's `model_fn`.
    embeddings_dir: the run's frozen item embeddings, if it used any.
    checkpoint: 'best' (by validation) or 'latest'.

  Returns:
    `(item_data, model, params, step)`.

  Raises:
    CheckpointError: no checkpoint of this model and catalog.
  """
  item_data, item_embeddings, model = train_items.build(
      data, model_fn, embeddings_dir)
  where = pathlib.Path(model_dir) / (
      "best" if checkpoint == "best" else "checkpoints")
  if not where.is_dir():  # Checked first: the Checkpointer would create it.
    raise checkpoints.CheckpointError(
        f"no {checkpoint} checkpoint in {model_dir} ({where} is missing); "
        "train it first (python -m recjax.train_items) or point MODEL_DIR "
        "at a trained run.")
  ckpt = checkpoints.Checkpointer(
      model_dir, train_items.model_meta(model, item_data.dataset, data,
                                        item_embeddings),
      best_metric="unused")
  try:
    params, step = ckpt.restore_params(best=checkpoint == "best")
  finally:
    ckpt.close()
  params = layers.upgrade_legacy_blocks(params)  # LEARN/LITE's old names.
  return item_data, model, jax.tree.map(jax.numpy.asarray, params), step


def load_run(model_dir: str, checkpoint: str = "best"
             ) -> tuple[item_sequences.ItemData, ItemModel, Any, int]:
  """`restore` of an item-level run from its `run.json` and `config.gin`.

  Args:
    model_dir: the run directory.
    checkpoint: 'best' or 'latest'.

  Returns:
    `(item_data, model, params, step)`.

  Raises:
    ConfigError: not an item-level run.
  """
  import gin  # pylint: disable=g-import-not-at-top

  from recjax import eval as eval_lib  # pylint: disable=g-import-not-at-top
  desc = run_lib.read_run(model_dir)
  if desc["kind"] != "item":
    raise train_items.ConfigError(
        f"{model_dir} is a {desc['kind']!r} run; load_run restores "
        "item-level runs (python -m recjax.train_items).")
  entry = desc["entry"]
  run_lib.parse_run_config(model_dir)
  arg = eval_lib._train_arg  # pylint: disable=protected-access
  try:
    return restore(str(model_dir), arg(entry, "data"),
                   arg(entry, "model_fn"), arg(entry, "embeddings_dir"),
                   checkpoint)
  finally:
    gin.clear_config()


def evaluate_items(*, model_dir: str,
                   data: ItemDataConfig | None = None,
                   model_fn: train_items.ModelFn = train_items.make_sasrec,
                   eval_config: EvalConfig | None = None,
                   embeddings_dir: str | None = None,
                   split: str = "test",
                   checkpoint: str = "best",
                   write_predictions: bool = False,
                   output_dir: str | None = None,
                   decoding: str = "exact") -> dict[str, float]:
  """Ranks the catalog for every user of `split` with a trained run.

  Args:
    model_dir: the run directory of `recjax.train_items`.
    data: the run's dataset and history length.
    model_fn: the run's `model_fn(dataset, item_embeddings)`.
    eval_config: list length (`num_decodes`) and cut-offs (`ks`); both
      history policies are always reported.
    embeddings_dir: the run's frozen item embeddings, if it used any.
    split: 'validation' or 'test'.
    checkpoint: 'best' (by validation) or 'latest'.
    write_predictions: also write the ranked lists of both policies.
    output_dir: where the JSON and the lists go (default: `model_dir`).
    decoding: "exact" (full-catalog scores), or a decoder of the model's
      family (`ItemModel.with_decoding`; RPG: "graph[:BxExS[xX]]"). Other
      decodings write `eval_<split>_<decoder>.json` and
      `predictions_<split>[_excl]_<decoder>.npz`.

  Returns:
    `{'step': restored step, f'{split}/<metric>': ...,
    f'{split}_excl/<metric>': ...}`.

  Raises:
    ConfigError: a bad split, catalog or history length.
    CheckpointError: no checkpoint of this model and catalog in
      `model_dir`.
  """
  data = data or ItemDataConfig()
  eval_config = eval_config or EvalConfig()
  if checkpoint not in ("best", "latest"):
    raise train_items.ConfigError(
        f"checkpoint={checkpoint!r}: use 'best' or 'latest'.")
  item_data, model, params, step = restore(
      model_dir, data, model_fn, embeddings_dir, checkpoint)
  batches = item_data.eval_batches(split)  # Checks the split name.
  model = model.with_decoding(
      decoding, params,
      item_data.splits["train"].item_counts(item_data.num_items))
  suffix = "" if decoding == "exact" else "_" + decoding.split(":")[0]
  evaluator = evaluation.RankingEvaluator(model, config=eval_config)
  every, unseen = evaluator.predict_both(params, batches)
  results: dict[str, float] = {"step": float(step)}
  out = pathlib.Path(output_dir or model_dir)
  for prefix, predictions in ((split, every), (f"{split}_excl", unseen)):
    for key, value in evaluator.metrics(predictions).items():
      results[f"{prefix}/{key}"] = float(value)
    if write_predictions:
      io_utils.save_npz_atomic(out / f"predictions_{prefix}{suffix}.npz",
                               **predictions._asdict())
  run_lib.write_json(out / f"eval_{split}{suffix}.json", results)
  return results


if __name__ == "__main__":
  results = run_lib.gin_main("recjax.eval_items.evaluate_items",
                             sys.argv[1:], __doc__)
  for key, value in sorted(results.items()):
    print(f"{key:<28} {value:.4f}")
