"""`infer(...)`: batch recommendations as JSONL of original item ids.

  python -m recjax.infer --gin_file=runs/infer.gin \
    --gin_file=experiments/tiger_movielens_100k.gin \
    --gin.MODEL_DIR=\"runs/tiger_ml100k\" \
    --gin.DATASET_DIR=\"runs/quickstart/dataset\" \
    --gin.HISTORIES=\"histories.jsonl\" --gin.OUTPUT=\"recs.jsonl\"

Input: a JSONL file, one user per line, `{"user_id": "...", "history":
["item id", ...]}` in the dataset's *original* item ids, oldest first; or,
without a histories file, a split of the dataset (`split='test'`: each
user's history before the test target). Output: JSONL lines `{"user_id",
"items": [top-K original ids], "scores": [...]}`. Items of a history that the
catalog does not know are reported per line (`"unknown_items"`) and on
stderr, never silently dropped; a line that is not valid JSON, or has no
`user_id`/`history`, is an error naming the line. The output is written
atomically. No TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

import gin
import jax
import numpy as np

from recjax import checkpoints
from recjax import evaluation
from recjax import io_utils
from recjax import quiet
from recjax import run_lib
from recjax.datasets import canonical
from recjax.datasets import splits as splits_lib
from recjax.errors import ConfigError
from recjax.errors import RecjaxError
from recjax.models.base import BaseModel
from recjax.tokens import NO_ITEM
from recjax.tokens import PAD_ID
from recjax.tokens import SemanticIdLayout
from recjax.trie import ItemTrie


@dataclasses.dataclass
class Request:
  """One user's history, as item indices."""

  user_id: str
  items: np.ndarray
  unknown: list[str]


def read_histories(path: str | os.PathLike[str],
                   catalog: canonical.CanonicalDataset | Sequence[str]
                   ) -> list[Request]:
  """Parses a histories JSONL file into requests.

  Args:
    path: the JSONL file.
    catalog: the dataset, or its original item ids by item index.

  Raises:
    ConfigError: a malformed line (named with its number).
  """
  ids = getattr(getattr(catalog, "items", None), "original_ids", catalog)
  index = {iid: i for i, iid in enumerate(ids)}
  out = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg}). Each "
                          'line must be {"user_id": ..., "history": [...]}.'
                          ) from None
      if not isinstance(rec, dict) or "user_id" not in rec or not isinstance(
          rec.get("history"), list):
        raise ConfigError(f"{path}:{lineno}: needs \"user_id\" and a list "
                          "\"history\" of item ids.")
      known = [index[str(i)] for i in rec["history"] if str(i) in index]
      unknown = [str(i) for i in rec["history"] if str(i) not in index]
      if unknown:
        logging.warning("%s:%d: user %r: %d unknown item(s) %s", path,
                        lineno, rec["user_id"], len(unknown), unknown[:5])
      out.append(Request(str(rec["user_id"]), np.asarray(known, np.int64),
                         unknown))
  return out


def split_requests(ds: canonical.CanonicalDataset, split: str
                   ) -> list[Request]:
  """Requests for every user of a leave-one-out split (whole histories)."""
  sp = splits_lib.leave_one_out(ds, max_history=None)[split]
  return [Request(ds.user_ids[int(sp.users[i])], sp.history(i), [])
          for i in range(len(sp))]


def encode_requests(requests: list[Request], codes: np.ndarray,
                    layout: SemanticIdLayout, max_history: int,
                    use_user_token: bool) -> dict[str, np.ndarray]:
  """Model inputs in the task layout: `[user token] + history tokens`.

  Args:
    requests: users and their histories (oldest first).
    codes: int `[num_items, levels]` semantic IDs.
    layout: the token layout.
    max_history: the input window (the most recent items fed to the model).
    use_user_token: prepend the hashed user token.

  Returns:
    `encoder_input_tokens` (int32 `[n, user + max_history * levels]`),
    `history_items` (int32 `[n, max_history]`, the window) and
    `excluded_items` (int32 `[n, longest history]`, every history item:
    what `exclude_seen` removes), both -1 padded.
  """
  levels = layout.num_levels
  length = int(use_user_token) + max_history * levels
  enc = np.full((len(requests), length), PAD_ID, np.int32)
  hist = np.full((len(requests), max_history), -1, np.int32)
  width = max([1] + [len(req.items) for req in requests])
  seen = np.full((len(requests), width), -1, np.int32)
  for r, req in enumerate(requests):
    items = req.items[-max_history:]
    toks = layout.codes_to_tokens(codes[items]).reshape(-1)
    row = ([layout.user_token(req.user_id)] if use_user_token else [])
    row = np.concatenate([np.asarray(row, np.int32), toks])
    enc[r, :len(row)] = row
    hist[r, :len(items)] = items
    seen[r, :len(req.items)] = req.items
  return {"encoder_input_tokens": enc, "history_items": hist,
          evaluation.EXCLUDED_ITEMS: seen}


def _batches(inputs: dict[str, np.ndarray], batch_size: int
             ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  n = len(next(iter(inputs.values())))
  for start in range(0, n, batch_size):
    batch = {k: v[start:start + batch_size] for k, v in inputs.items()}
    real = len(batch["encoder_input_tokens"])
    if real < batch_size:  # pad to one compiled shape
      batch = {k: np.concatenate([v, np.repeat(v[:1], batch_size - real, 0)])
               for k, v in batch.items()}
    yield batch, real


def infer(*, model_dir: str, dataset_dir: str, semantic_ids_dir: str,
          model_fn: Callable[[SemanticIdLayout], BaseModel],
          output: str, histories: str | None = None, split: str = "test",
          num_decodes: int = 20, exclude_seen: bool = False,
          max_history: int = 20, use_user_token: bool = True,
          num_user_buckets: int | None = None, batch_size: int = 256,
          checkpoint: str = "best") -> pathlib.Path:
  """Writes top-K recommendations as JSONL; returns the output path.

  Args:
    model_dir: the trained run.
    dataset_dir: canonical dataset directory (original item/user ids).
    semantic_ids_dir: directory with the run's `codes.npy`.
    model_fn: builds the model for the token layout (as in training).
    output: JSONL output path.
    histories: JSONL of `{"user_id", "history"}`; None = `split`.
    split: leave-one-out split used without a histories file.
    num_decodes: recommendations per user.
    exclude_seen: never recommend an item of the user's history (all of
      it, not only the `max_history` items the model reads).
    max_history: history items fed to the model (as in training).
    use_user_token: prepend the hashed user token (as in training).
    num_user_buckets: user-hash buckets of the layout; default (None): the
      value the run was trained with, read from its checkpoint.
    batch_size: users per decode batch.
    checkpoint: 'best' or 'latest'.

  Returns:
    The output path.
  """
  ds = canonical.CanonicalDataset.load(dataset_dir)
  path = pathlib.Path(semantic_ids_dir) / "codes.npy"
  if not path.exists():
    raise ConfigError(f"{path} does not exist; pass the semantic_ids_dir the "
                      "model was trained with.")
  codes = np.load(path)
  if len(codes) != ds.num_items:
    raise ConfigError(f"{path} has {len(codes)} rows but {dataset_dir} has "
                      f"{ds.num_items} items: they are from different "
                      "datasets.")
  if num_user_buckets is None:  # Set once, by the task; the run records it.
    num_user_buckets = int(checkpoints.saved_meta(
        model_dir, best=checkpoint == "best").get("vocabulary", {}).get(
            "num_user_buckets", 0))
  layout = SemanticIdLayout.from_codes(codes, num_user_buckets=num_user_buckets)
  manifest = pathlib.Path(semantic_ids_dir) / "manifest.json"
  if manifest.exists():
    sizes = json.loads(manifest.read_text()).get("layout", {}).get(
        "codebook_sizes")
    if sizes:
      layout = SemanticIdLayout(tuple(sizes), num_user_buckets)
  model = model_fn(layout)
  from recjax.numpy_batches import vocabulary_fingerprint  # pylint: disable=g-import-not-at-top
  ids = run_lib.SemanticIds(codes.astype(np.int32), layout,
                            vocabulary_fingerprint(layout.describe(), codes))
  ckpt = checkpoints.Checkpointer(model_dir, run_lib.model_meta(model, ids),
                                  best_metric="unused")
  params, _ = ckpt.restore_params(best=checkpoint == "best")
  ckpt.close()
  params = jax.tree.map(jax.numpy.asarray, params)
  requests = (read_histories(histories, ds) if histories else
              split_requests(ds, split))
  evaluator = evaluation.RankingEvaluator(
      model, ItemTrie.build(codes, layout),
      evaluation.EvalConfig(num_decodes=num_decodes,
                            exclude_seen=exclude_seen))
  inputs = encode_requests(requests, codes, layout, max_history,
                           use_user_token)
  return write_recommendations(
      output, requests, ds.items.original_ids,
      (evaluator.recommend(params, batch)[:2] + (real,)
       for batch, real in _batches(inputs, batch_size)))


def write_recommendations(
    output: str | os.PathLike[str], requests: Sequence[Request],
    original_ids: Sequence[str],
    ranked: Iterable[tuple[np.ndarray, np.ndarray, int]]) -> pathlib.Path:
  """Writes one JSONL line per request, atomically.

  Args:
    output: the JSONL path.
    requests: the users, in order.
    original_ids: item ids of the catalog by item index.
    ranked: `(items, scores, real_rows)` per batch, in request order;
      items -1 (none left) are dropped.

  Returns:
    The path written.
  """
  out = pathlib.Path(output)
  out.parent.mkdir(parents=True, exist_ok=True)
  io_utils.remove_stale_siblings(out)
  fd, name = tempfile.mkstemp(prefix=io_utils.tmp_prefix(out),
                              dir=out.parent)
  tmp = pathlib.Path(name)
  done = 0
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for items, scores, real in ranked:
        for r in range(real):
          req = requests[done + r]
          keep = items[r] >= 0
          rec = {"user_id": req.user_id,
                 "items": [original_ids[i] for i in items[r][keep]],
                 "scores": [round(float(s), 5) for s in scores[r][keep]]}
          if req.unknown:
            rec["unknown_items"] = req.unknown
          f.write(json.dumps(rec) + "\n")
        done += real
    os.replace(tmp, out)
  finally:
    if tmp.exists():
      tmp.unlink()
  print(f"wrote {done} users' recommendations to {out}", flush=True)
  return out


def _item_batches(requests: Sequence[Request], max_length: int,
                  batch_size: int
                  ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Item-level inputs: the last `max_length` items right-aligned, and the
  whole history as the exclusion set; padded to one batch shape."""
  for start in range(0, len(requests), batch_size):
    part = list(requests[start:start + batch_size])
    real = len(part)
    part += [part[0]] * (batch_size - real)
    width = max([1] + [len(r.items) for r in part])
    inputs = np.full((batch_size, max_length), NO_ITEM, np.int32)
    seen = np.full((batch_size, width), NO_ITEM, np.int32)
    for i, req in enumerate(part):
      window = np.asarray(req.items[-max_length:], np.int32)
      if len(window):
        inputs[i, -len(window):] = window
      seen[i, :len(req.items)] = req.items
    yield {"input_items": inputs, evaluation.EXCLUDED_ITEMS: seen}, real


def infer_run(model_dir: str, output: str, histories: str | None = None,
              split: str = "test", num_decodes: int = 20,
              keep_history: bool = False, checkpoint: str = "best",
              batch_size: int = 256, bindings: Sequence[str] = (),
              decoding: str = "exact") -> pathlib.Path:
  """Top-K recommendations of any run directory, as JSONL.

  Everything about the model and its data comes from the run directory
  (`run.json`, `config.gin`): the catalog, the model, the checkpoint, the
  history window and (generative runs) the semantic IDs and user tokens.

  Args:
    model_dir: the run directory.
    output: JSONL output path.
    histories: JSONL of `{"user_id", "history"}` (original item ids, oldest
      first); None: every user of `split` of the run's dataset.
    split: 'validation' or 'test' (without `histories`).
    num_decodes: recommendations per user.
    keep_history: allow items of the user's own history (by default each
      user's whole history is excluded).
    checkpoint: 'best' or 'latest'.
    batch_size: users per batch.
    bindings: gin bindings over the run's config.
    decoding: "exact", or an item-level family's approximate decoder
      (RPG: "graph" or "graph:BxExS[xX]", beams over its item graph).

  Returns:
    The output path.

  Raises:
    ConfigError: not a run directory, a malformed histories file, or a
      bad split.
  """
  from recjax import eval as eval_lib  # pylint: disable=g-import-not-at-top
  if split not in ("validation", "test"):
    raise ConfigError(f"split={split!r}: use 'validation' or 'test'.")
  desc = run_lib.read_run(model_dir)
  kind, entry = desc["kind"], desc["entry"]
  if decoding != "exact" and kind != "item":
    raise ConfigError(
        f"decoding={decoding!r}: {model_dir} is a {kind!r} run; only "
        "item-level families have other decoders (RPG: graph).")
  print(f"infer: {'keeping' if keep_history else 'excluding'} each user's "
        "own history" + ("" if keep_history else
                         " (--keep_history to allow it)"), flush=True)
  if kind == "count":
    from recjax import train_counts  # pylint: disable=g-import-not-at-top
    model = train_counts.load_model(model_dir, desc)
    ds = train_counts.dataset_of(desc)
    requests = (read_histories(histories, ds) if histories else
                split_requests(ds, split))
    k = min(num_decodes, ds.num_items)
    hist = [r.items for r in requests]
    items, scores = model.recommend(hist, k,
                                    exclude=None if keep_history else hist,
                                    return_scores=True)
    return write_recommendations(output, requests, ds.items.original_ids,
                                 [(items, scores, len(requests))])
  if kind == "generative":
    eval_lib.register_run_task(desc)
  run_lib.parse_run_config(model_dir, bindings)
  try:
    model_fn = eval_lib._train_arg(entry, "model_fn")  # pylint: disable=protected-access
    if kind == "item":
      from recjax import train_items  # pylint: disable=g-import-not-at-top
      data = eval_lib._train_arg(entry, "data")  # pylint: disable=protected-access
      item_data, item_embeddings, model = train_items.build(
          data, model_fn, eval_lib._train_arg(entry, "embeddings_dir"))  # pylint: disable=protected-access
      ds = item_data.dataset
      meta = train_items.model_meta(model, ds, data, item_embeddings)
      requests = (read_histories(histories, ds) if histories else
                  split_requests(ds, split))
      catalog = ds.items.original_ids
      batches = _item_batches(requests, data.max_length, batch_size)
    else:
      from recjax import tasks  # pylint: disable=g-import-not-at-top
      inputs = desc["inputs"]
      task = tasks.tiger.get_config(inputs["task"])
      vocab = inputs["vocabulary"]
      layout = SemanticIdLayout(tuple(vocab["codebook_sizes"]),
                                int(vocab.get("num_user_buckets", 0)))
      codes = np.asarray(tasks.get_vocabulary(inputs["task"]).codes)
      from recjax.numpy_batches import vocabulary_fingerprint  # pylint: disable=g-import-not-at-top
      ids = run_lib.SemanticIds(codes.astype(np.int32), layout,
                                vocabulary_fingerprint(layout.describe(),
                                                       codes))
      if ids.fingerprint != vocab["fingerprint"]:
        raise ConfigError(
            f"the semantic IDs of task {inputs['task']!r} are not the ones "
            f"{model_dir} was trained with (fingerprint "
            f"{ids.fingerprint[:12]} != {vocab['fingerprint'][:12]}).")
      model = model_fn(layout)
      meta = run_lib.model_meta(model, ids)
      catalog = tasks.tiger.task_catalog(inputs["task"])
      requests = (read_histories(histories, catalog) if histories else
                  [Request(u, h, []) for u, h in
                   tasks.tiger.task_histories(inputs["task"], split)])
      evaluator = evaluation.RankingEvaluator(
          model, ItemTrie.build(codes, layout),
          evaluation.EvalConfig(num_decodes=num_decodes,
                                exclude_seen=not keep_history))
      batches = _batches(encode_requests(
          requests, codes, layout, task.max_history, task.use_user_token),
                         batch_size)
    ckpt = checkpoints.Checkpointer(model_dir, meta, best_metric="unused")
    try:
      params, _ = ckpt.restore_params(best=checkpoint == "best")
    finally:
      ckpt.close()
    params = jax.tree.map(jax.numpy.asarray, params)
    if kind == "item":
      model = model.with_decoding(
          decoding, params,
          item_data.splits["train"].item_counts(ds.num_items))
      if decoding != "exact":
        print(f"infer: decoding {decoding}", flush=True)
      evaluator = evaluation.RankingEvaluator(
          model, config=evaluation.EvalConfig(
              num_decodes=num_decodes, exclude_seen=not keep_history))
    return write_recommendations(
        output, requests, catalog,
        (evaluator.recommend(params, batch)[:2] + (real,)
         for batch, real in batches))
  finally:
    gin.clear_config()


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
  """`--model_dir DIR --output F [--histories H]` (any run), or gin files."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a.startswith("--gin_file") for a in argv):
    return run_lib.gin_main("recjax.infer.infer", argv, __doc__)
  parser = argparse.ArgumentParser(prog="python -m recjax.infer",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--output", required=True)
  parser.add_argument("--histories", default=None,
                      help="JSONL of {\"user_id\", \"history\"} (default: "
                      "the users of --split)")
  parser.add_argument("--split", default="test",
                      choices=("validation", "test"))
  parser.add_argument("--num_decodes", type=int, default=20)
  parser.add_argument("--keep_history", action="store_true",
                      help="allow items of the user's own history")
  parser.add_argument("--checkpoint", default="best",
                      choices=("best", "latest"))
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--decoding", default="exact",
                      help="exact, or graph[:BxExS[xX]] (RPG runs: beams "
                      "over the item graph)")
  quiet.add_verbose_flag(parser)
  args, rest = parser.parse_known_args(argv)
  bindings = run_lib.gin_bindings(parser, rest)
  quiet.configure_logging()
  try:
    return infer_run(args.model_dir, args.output, args.histories, args.split,
                     args.num_decodes, args.keep_history, args.checkpoint,
                     args.batch_size, bindings, args.decoding)
  except RecjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
