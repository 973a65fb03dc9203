"""SAID stage 1 as a pipeline stage: item text -> learned item vectors.

`said_stage(dataset_dir, out_dir)` tokenises each item's text with the
LM's tokenizer, trains `SAIDModel` with recjax's `Trainer` (progress lines,
TensorBoard, Orbax checkpoints, exact resume: a killed run continues from
its last checkpoint) in `<out_dir>.run/`, then writes the item vectors as
an embed-stage directory (`embeddings.npy`, `manifest.json`) that any
family reading text embeddings (`lite`, `learn`, `textknn`) consumes.
A second call with the same inputs is a no-op.

  python -m recjax.models.said --dataset_dir DIR --out OUT [--epochs 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from recjax import embed
from recjax import errors
from recjax import optimizers
from recjax import quiet
from recjax import trainer as trainer_lib
from recjax.batches import ArrayBatches
from recjax.datasets.canonical import CanonicalDataset
from recjax.errors import ConfigError
from recjax.io_utils import atomic_directory
from recjax.models.said.model import SAIDConfig
from recjax.models.said.model import SAIDModel

_STAGE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SAIDStageConfig:
  """Training of SAID stage 1.

  Attributes:
    model: the embedder's settings.
    lm: the frozen causal LM: a `.gguf` file or `smollm2_135m`.
    lm_dtype: its matmul type (`LlamaConfig.dtype`): "bfloat16" (float32
      accumulation; about 2x the float32 step on CPUs with AMX) or
      "float32".
    template: the item text (`recjax.embed` template).
    max_length: tokens per item text.
    batch_size: items per step.
    num_epochs: passes over the catalog.
    learning_rate: peak AdamW learning rate (cosine decay).
    warmup_steps: linear warm-up.
    seed: initialisation and shuffling seed.
    log_period: steps between progress lines.
    checkpoint_period: steps between checkpoints.
    postprocess: of the written vectors (`recjax.embed.postprocess`);
      "standardize" as for the other causal-LM item vectors, so the rows
      of `said` and `lite_llm` differ only in how the vectors were made.
  """

  model: SAIDConfig = SAIDConfig()
  lm: str = "smollm2_135m"
  lm_dtype: str = "bfloat16"
  template: str = embed.LM_TEMPLATE
  max_length: int = 64
  batch_size: int = 16
  num_epochs: int = 4
  learning_rate: float = 1e-3
  warmup_steps: int = 50
  seed: int = 0
  log_period: int = 20
  checkpoint_period: int = 100
  postprocess: str = "standardize"


def tokenize_items(lm, texts: Sequence[str], max_length: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded token ids and mask `[N, T]` of item texts.

  T is the longest text's length (at most `max_length`), rounded up to a
  multiple of 8.

  Raises:
    ConfigError: a text with no token.
  """
  ids = [lm.encode_text(t)[:max_length] for t in texts]
  empty = [i for i, x in enumerate(ids) if not x]
  if empty:
    raise ConfigError(f"item(s) {empty[:5]} have no text tokens; "
                      "recjax.embed.render_texts gives every item a text.")
  width = min(max_length, -(-max(len(x) for x in ids) // 8) * 8)
  tokens = np.full((len(ids), width), lm.config.pad_id, np.int32)
  mask = np.zeros((len(ids), width), np.int32)
  for r, x in enumerate(ids):
    tokens[r, :len(x)] = x
    mask[r, :len(x)] = 1
  return tokens, mask


def stage_inputs(dataset: CanonicalDataset, texts: Sequence[str],
                 lm_path: pathlib.Path, config: SAIDStageConfig
                 ) -> tuple[dict[str, Any], str]:
  """What the stage's result depends on, and its hash (the run's key)."""
  from recjax import text_encoders  # pylint: disable=g-import-not-at-top
  inputs = {
      "stage_version": _STAGE_VERSION, "method": "said",
      "dataset_fingerprint": dataset.fingerprint(),
      "texts_sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
      "model_fingerprint": text_encoders.model_fingerprint(lm_path),
      "config": dataclasses.asdict(config),
  }
  return inputs, embed.config_hash(inputs)


def train_stage(lm, tokens: np.ndarray, mask: np.ndarray,
                config: SAIDStageConfig, run_dir: pathlib.Path,
                input_hash: str, label: str
                ) -> tuple[Any, dict[str, Any]]:
  """Trains (or resumes) stage 1 on tokenised item texts.

  Args:
    lm: the frozen `CausalLM`.
    tokens: int32 `[N, T]` right-padded item text tokens.
    mask: int32 `[N, T]`, 1 on real tokens.
    config: training settings.
    run_dir: the training run (checkpoints, `history.jsonl`).
    input_hash: the stage's input hash (checked on resume).
    label: what the progress line names (the dataset).

  Returns:
    `(params, facts)`: the embedder's trained parameters, and `{"run_dir",
    "train_steps", "final_train_loss"}`.
  """
  n = len(tokens)
  batch_size = min(config.batch_size, n)
  source = ArrayBatches({"items": np.arange(n, dtype=np.int32),
                         "tokens": tokens, "text_mask": mask}, batch_size,
                        shuffle=True, seed=config.seed)
  steps = config.num_epochs * source.num_batches
  model = SAIDModel(config.model, lm, n)
  optimizer = optimizers.OptimizerConfig(
      name="adamw", grad_clip_norm=1.0,
      schedule=optimizers.ScheduleConfig(
          kind="cosine", learning_rate=config.learning_rate,
          warmup_steps=min(config.warmup_steps, max(steps - 1, 0))))
  trainer = trainer_lib.Trainer(
      model, optimizer,
      trainer_lib.TrainerConfig(
          num_train_steps=steps, batch_size=batch_size, seed=config.seed,
          log_period=config.log_period,
          checkpoint_period=config.checkpoint_period, best_metric=None,
          async_checkpoints=False),
      source.input_shapes, str(run_dir),
      meta={"method": "said", "input_hash": input_hash})
  print(f"said: {n:,} items of {label}, text {tokens.shape[1]} "
        f"tokens, {source.num_batches} steps/epoch x {config.num_epochs} "
        f"epochs; run {run_dir}", flush=True)

  class _Source:
    def batches(self, start_step: int):
      return source.iterate(start_step)

  state = trainer.train(_Source())
  history = [json.loads(line) for line in
             (run_dir / "history.jsonl").read_text().splitlines()
             if line.strip()] if (run_dir / "history.jsonl").exists() else []
  losses = [r["train/loss"] for r in history if "train/loss" in r]
  return state.params, {"run_dir": str(run_dir), "train_steps": steps,
                        "final_train_loss": losses[-1] if losses else None}


def write_vectors(out: pathlib.Path, vectors: np.ndarray,
                  manifest: dict[str, Any]) -> pathlib.Path:
  """Writes the embed-stage directory `out` atomically."""
  manifest = dict(manifest, num_items=int(vectors.shape[0]),
                  dim=int(vectors.shape[1]), dtype="float32",
                  checksum=embed.array_checksum(vectors))
  with atomic_directory(out) as tmp:
    np.save(tmp / embed.EMBEDDINGS_FILE, vectors)
    with open(tmp / embed.MANIFEST_FILE, "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=2, sort_keys=True, default=str)
  return out


def said_stage(dataset_dir: str | os.PathLike[str],
               out_dir: str | os.PathLike[str],
               config: SAIDStageConfig | None = None,
               lm=None, lm_path: str | None = None) -> pathlib.Path:
  """Runs (or resumes, or reuses) SAID stage 1 on a dataset's items.

  Args:
    dataset_dir: a canonical dataset directory.
    out_dir: the embed-stage directory to write; the training run lives
      in `<out_dir>.run`.
    config: training settings (default: `SAIDStageConfig()`).
    lm: an already loaded `CausalLM` (default: load `config.lm`).
    lm_path: replaces `config.lm` when given (the pipeline's
      `Workspace(lm_path=...)`).

  Returns:
    `out_dir`.
  """
  from recjax import text_encoders  # pylint: disable=g-import-not-at-top
  from recjax.text_encoders import llama  # pylint: disable=g-import-not-at-top
  config = config or SAIDStageConfig()
  if lm_path:
    config = dataclasses.replace(config, lm=str(lm_path))
  out = pathlib.Path(out_dir)
  dataset = CanonicalDataset.load(dataset_dir)
  texts = embed.render_texts(dataset.items, config.template)
  lm_path = text_encoders.resolve_model(config.lm)
  inputs, input_hash = stage_inputs(dataset, texts, lm_path, config)
  old = embed.read_manifest(out)
  if old and old.get("input_hash") == input_hash and (
      out / embed.EMBEDDINGS_FILE).exists():
    logging.info("said: %s is up to date.", out)
    return out
  lm = lm or llama.load_causal_lm(lm_path, dtype=config.lm_dtype)
  tokens, mask = tokenize_items(lm, texts, config.max_length)
  run_dir = out.with_name(out.name + ".run") / input_hash[:12]
  params, facts = train_stage(lm, tokens, mask, config, run_dir,
                              input_hash, dataset.name)
  vectors = embed.postprocess(
      SAIDModel(config.model, lm, len(texts)).item_vectors(params),
      config.postprocess)
  return write_vectors(out, vectors, {
      "model": str(lm_path), "model_name": "said-" + lm.name,
      "method": "said", "template": config.template,
      "dataset": dataset.name, "input_hash": input_hash, "inputs": inputs,
      "num_empty_texts": embed.count_empty(dataset.items, texts), **facts})


def add_config_flags(parser: argparse.ArgumentParser) -> None:
  """`--dataset_dir` and the stage settings' flags (`config_of`)."""
  parser.add_argument("--dataset_dir", required=True)
  parser.add_argument("--lm", default="smollm2_135m")
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--lm_dtype", default="bfloat16",
                      choices=("bfloat16", "float32"))


def config_of(args: argparse.Namespace) -> SAIDStageConfig:
  """The stage settings of `add_config_flags`' flags."""
  return SAIDStageConfig(lm=args.lm, num_epochs=args.epochs,
                         batch_size=args.batch_size, lm_dtype=args.lm_dtype)


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m recjax.models.said` entry point."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_config_flags(parser)
  parser.add_argument("--out", required=True)
  quiet.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  quiet.load_task_layer()  # TensorBoard's writer imports TensorFlow.
  cfg = config_of(args)
  with errors.exit_on_input_error():
    out = said_stage(args.dataset_dir, args.out, cfg)
  manifest = embed.read_manifest(out)
  print(json.dumps({k: manifest[k] for k in ("num_items", "dim",
                                             "final_train_loss")}))
