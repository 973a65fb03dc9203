"""`make_vqrec`: VQ-Rec from scratch, pre-trained, transferred, zero-shot.

* From scratch / pre-training: `make_vqrec(dataset, codes_dir=...)` with
  the dataset's own codes (`VQRecConfig.loss` "softmax" / "infonce"). A
  multi-domain pre-training is the same call on a merged dataset
  (`recjax.datasets` source `merged`) with codes fitted on the union of
  its training items.
* Transfer: `pretrained_dir=` a pre-training run. The target keeps its
  own codes; the pre-trained code table is re-assigned to them
  (`remap`: "learned", "released" or "none"; see
  `recjax.models.vqrec.transfer`), the assignment computed once and
  cached, and the run fine-tunes the table with the encoder frozen
  (`freeze_encoder`).
* Zero-shot: `zero_shot=True` with `pretrained_dir` and
  `pretrained_codes_dir` (the pre-training run's semantic-ID stage): the
  target's item embeddings are encoded with the pre-training quantizer and
  the pre-trained model ranks them as it is (a run of 0 steps).

No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax import checkpoints
from recjax import io_utils
from recjax import item_sequences
from recjax.datasets import CanonicalDataset
from recjax.datasets import leave_one_out
from recjax.datasets import merge
from recjax.errors import ConfigError
from recjax.models.vqrec import transfer
from recjax.models.vqrec.model import TABLE_PARAMS
from recjax.models.vqrec.model import VQRecConfig
from recjax.models.vqrec.model import VQRecModel
from recjax.semantic_ids import check_digits
from recjax.semantic_ids import load_item_codes

PyTree = Any

# Architecture fields a transfer must share with its pre-trained run.
ARCHITECTURE = ("hidden_dim", "num_layers", "num_heads", "mlp_dim",
                "activation")


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """A pre-training run's best parameters and configuration.

  Attributes:
    directory: the run directory.
    params: its parameters (numpy).
    config: its `VQRecConfig` fields.
    step: the checkpoint's step.
  """

  directory: pathlib.Path
  params: PyTree
  config: dict[str, Any]
  step: int

  def checksum(self) -> str:
    """A short digest of the parameters (a transfer's checkpoint key)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(self.params):
      h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()[:16]


def load_pretrained(pretrained_dir: str) -> Pretrained:
  """The best checkpoint of a VQ-Rec pre-training run, checked.

  Raises:
    ConfigError: not a VQ-Rec run, or no checkpoint.
  """
  path = pathlib.Path(pretrained_dir)
  try:
    meta = checkpoints.saved_meta(path, best=True)
  except checkpoints.CheckpointError as e:
    raise ConfigError(
        f"pretrained_dir={path}: {e} Pre-train first (benchmarks/quality.py "
        "--methods vqrec_transfer runs the pre-training) or point "
        "pretrained_dir at a finished VQ-Rec pre-training run.") from None
  model = meta.get("model", {})
  if model.get("class") != VQRecModel.__name__:
    raise ConfigError(f"pretrained_dir={path} holds a {model.get('class')!r} "
                      "run; transfer needs a VQ-Rec pre-training run.")
  ckpt = checkpoints.Checkpointer(path, meta, best_metric="unused")
  try:
    params, step = ckpt.restore_params(best=True)
  finally:
    ckpt.close()
  params = jax.tree.map(np.asarray, params)
  return Pretrained(path.absolute(), params, dict(model["network"]), step)


def _check_compatible(pre: Pretrained, config: VQRecConfig,
                      codes: np.ndarray, codes_source: str) -> None:
  """Raises ConfigError when the target cannot reuse the pre-trained run."""
  for name in ARCHITECTURE:
    if pre.config[name] != getattr(config, name):
      raise ConfigError(
          f"{pre.directory} was pre-trained with {name}="
          f"{pre.config[name]!r} but this run has VQRecConfig.{name}="
          f"{getattr(config, name)!r}; bind VQRecConfig.{name} = "
          f"{pre.config[name]!r} (or pre-train at this width).")
  d, m = int(pre.config["num_digits"]), int(pre.config["codebook_size"])
  if codes.shape[1] != d or config.codebook_size != m:
    raise ConfigError(
        f"{codes_source} has {codes.shape[1]} digits x "
        f"{config.codebook_size} codes but {pre.directory} was pre-trained "
        f"on {d} x {m}; rebuild the target's codes with num_subspaces={d} "
        f"and codebook_size={m}.")
  if config.max_length > int(pre.config["max_length"]):
    raise ConfigError(
        f"max_length={config.max_length} exceeds the pre-trained position "
        f"table ({pre.config['max_length']} rows in {pre.directory}); use "
        "MAX_LENGTH <= that.")


def _remap_key(pre: Pretrained, codes: np.ndarray, settings: dict[str, Any]
               ) -> str:
  blob = json.dumps({"params": pre.checksum(), "step": pre.step,
                     "codes": hashlib.sha256(
                         np.ascontiguousarray(codes).tobytes()).hexdigest(),
                     **settings}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def learn_remap(model: VQRecModel, params: PyTree,
                examples: dict[str, np.ndarray], *, epochs: int,
                batch_size: int, learning_rate: float, seed: int,
                progress: bool = True) -> np.ndarray:
  """Trains the per-digit assignment logits `W` with everything frozen.

  The table the model reads is `P_d @ table_d` with `P_d` the straight-
  through Gumbel-Sinkhorn permutation of `W_d` (`transfer`), under the
  model's fine-tuning loss.

  Args:
    model: VQ-Rec over the target's codes (`frozen` None).
    params: the pre-trained parameters.
    examples: the target's training examples.
    epochs: passes over the examples.
    batch_size: rows per step.
    learning_rate: Adam's step size for `W`.
    seed: `W`'s initialisation, the noise and the batch order.
    progress: print the loss after each epoch.

  Returns:
    The learned `W`, float32 `[D, M, M]`.
  """
  cfg = model.config
  d, m = cfg.num_digits, cfg.codebook_size
  key = jax.random.key(seed)
  key, init_key = jax.random.split(key)
  logits = jax.random.normal(init_key, (d, m, m), jnp.float32)
  table = jnp.asarray(params["code_embedding"]["embedding"])
  params = jax.tree.map(jnp.asarray, params)
  opt = optax.adam(learning_rate)
  opt_state = opt.init(logits)

  def loss(w, batch, rng):
    noise_rng, dropout_rng = jax.random.split(rng)
    perm = transfer.straight_through(w, noise_rng)
    full = dict(params)
    full["code_embedding"] = {
        "embedding": jnp.einsum("dmn,dnh->dmh", perm, table)}
    return model.loss_fn(full, batch, dropout_rng)[0]

  @jax.jit
  def step(w, opt_state, batch, rng):
    value, grad = jax.value_and_grad(loss)(w, batch, rng)
    updates, opt_state = opt.update(grad, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, value

  batches = item_sequences.TrainBatches(
      examples, min(batch_size, len(examples["input_items"])), seed=seed,
      shard_index=0, num_shards=1)
  it = batches.batches(0)
  for epoch in range(epochs):
    t0, total = time.time(), 0.0
    for _ in range(batches.num_batches):
      key, rng = jax.random.split(key)
      logits, opt_state, value = step(logits, opt_state, next(it), rng)
      total += float(value)
    if progress:
      print(f"vqrec remap: epoch {epoch + 1}/{epochs} loss "
            f"{total / batches.num_batches:.4f} "
            f"({time.time() - t0:.0f} s)", flush=True)
  return np.asarray(logits)


def compute_assignment(remap: str, model: VQRecModel, pre: Pretrained,
                       dataset: CanonicalDataset, *, epochs: int,
                       batch_size: int, learning_rate: float,
                       seed: int, cold_items: np.ndarray | None = None
                       ) -> np.ndarray:
  """The `[D, M]` code assignment of a transfer (see `transfer`).

  `cold_items` (the cold-start protocol) are left out of the sequences
  the learned assignment trains on, as they are out of the fine-tune's.
  """
  cfg = model.config
  d, m = cfg.num_digits, cfg.codebook_size
  if remap == "none":
    return np.tile(np.arange(m, dtype=np.int32), (d, 1))
  if remap == "released":  # Zero gradient: one noisy draw of random W.
    init = jax.random.normal(jax.random.split(jax.random.key(seed))[1],
                             (d, m, m), jnp.float32)
    return transfer.released_assignment(np.asarray(init), seed)
  train = leave_one_out(dataset)["train"]
  if cold_items is not None and len(cold_items):
    train = item_sequences.without_items(train, cold_items)
  examples = item_sequences.training_examples(train, cfg.max_length,
                                              "prefixes")
  logits = learn_remap(model, pre.params, examples, epochs=epochs,
                       batch_size=batch_size, learning_rate=learning_rate,
                       seed=seed)
  return transfer.learned_assignment(logits)


def _cached_assignment(remap_dir: pathlib.Path, key: str,
                       compute: Any) -> np.ndarray:
  path = remap_dir / f"assignment-{key}.npy"
  if path.exists():
    return np.load(path)
  assignment = np.asarray(compute(), np.int32)
  remap_dir.mkdir(parents=True, exist_ok=True)
  io_utils.save_npy_atomic(path, assignment)
  return assignment


def make_vqrec(dataset: CanonicalDataset,
               item_embeddings: np.ndarray | None = None,
               config: VQRecConfig | None = None,
               codes_dir: str | None = None,
               codes: np.ndarray | None = None,
               pretrained_dir: str | None = None,
               remap: str = "learned",
               remap_epochs: int = 5,
               remap_learning_rate: float = 1e-3,
               remap_batch_size: int = 2048,
               remap_dir: str | None = None,
               freeze_encoder: bool = True,
               zero_shot: bool = False,
               pretrained_codes_dir: str | None = None,
               seed: int = 0,
               cold_items: np.ndarray | None = None) -> VQRecModel:
  """VQ-Rec over `dataset`'s catalog (gin: `train_items.model_fn`).

  Args:
    dataset: sets `num_items`.
    item_embeddings: the items' text embeddings (zero-shot only: encoded
      with the pre-training quantizer).
    config: hyper-parameters (None: the defaults); `num_items`,
      `num_digits` and `codebook_size` come from the dataset and the
      codes.
    codes_dir: the dataset's semantic-ID stage (OPQ, `collisions="none"`,
      `fit_on="train"`).
    codes: or the codes themselves, int `[num_items, D]` (tests).
    pretrained_dir: a VQ-Rec pre-training run: transfer to `dataset`.
    remap: the code re-assignment of a transfer: "learned", "released"
      or "none".
    remap_epochs: epochs of the learned assignment (paper: 5).
    remap_learning_rate: Adam's step size for the assignment logits.
    remap_batch_size: its batch size.
    remap_dir: where assignments are cached (default
      `<pretrained_dir>/remaps`).
    freeze_encoder: train only the code table and the input LayerNorm
      (the paper's fine-tuning); False trains everything.
    zero_shot: rank with the pre-trained model as it is, the target's
      items coded by the pre-training quantizer.
    pretrained_codes_dir: the pre-training run's semantic-ID stage
      (zero-shot).
    seed: the assignment's seed.
    cold_items: the cold-start protocol's items (`train_items` passes
      them): the learned assignment trains without them.

  Returns:
    The model.

  Raises:
    ConfigError: missing codes, a bad `remap`, or a pre-trained run of
      another width, digit count or codebook size.
  """
  config = config or VQRecConfig()
  if not merge.text_fields(dataset):
    where = dataset.metadata.get("loader", {}).get("data_dir")
    raise ConfigError(
        f"dataset {dataset.name!r} has no item text (every item field is "
        f"empty{f' in {where}' if where else ''}); VQ-Rec represents items "
        "by their text: give the items a title (or brand, categories, "
        "description) in the item file.")
  if remap not in transfer.REMAPS:
    raise ConfigError(f"make_vqrec.remap={remap!r}; use one of "
                      f"{transfer.REMAPS}.")
  pre = None if pretrained_dir is None else load_pretrained(pretrained_dir)
  size = config.codebook_size
  source = codes_dir or "the codes"
  if zero_shot:
    if pre is None or pretrained_codes_dir is None:
      raise ConfigError("zero_shot needs pretrained_dir and "
                        "pretrained_codes_dir (the pre-training run and its "
                        "semantic-ID stage).")
    if item_embeddings is None:
      raise ConfigError(
          f"zero-shot VQ-Rec encodes {dataset.name!r}'s item text "
          "embeddings with the pre-training quantizer: bind EMBEDDINGS_DIR "
          "to the dataset's embed stage (python -m recjax.embed).")
    from recjax.quantizers import base as quantizers  # pylint: disable=g-import-not-at-top
    tokenizer = quantizers.load_tokenizer(
        pathlib.Path(pretrained_codes_dir) / "tokenizer")
    codes = np.asarray(tokenizer.encode(item_embeddings), np.int32)
    size = int(tokenizer.codebook_sizes[0])
    source = f"{pretrained_codes_dir} applied to {dataset.name!r}"
  elif codes is None:
    if codes_dir is None:
      raise ConfigError(
          "VQ-Rec needs item codes: bind make_vqrec.codes_dir to a "
          "semantic-ID stage directory (python -m recjax.semantic_ids "
          "--method opq --set collisions=none --set fit_on=train ...), "
          "e.g. CODES_DIR in models/vqrec.gin.")
    codes, size = load_item_codes(codes_dir, dataset)
  codes = check_digits(codes, config.num_digits, "VQRecConfig", source)
  config = dataclasses.replace(config, num_items=dataset.num_items,
                               num_digits=codes.shape[1], codebook_size=size)
  if pre is None:
    return VQRecModel(config, codes)
  _check_compatible(pre, config, codes, source)
  params = jax.tree.map(np.array, pre.params)
  if zero_shot:
    return VQRecModel(config, codes, frozen=params,
                      trainable=TABLE_PARAMS,
                      checkpoint_description={"pretrained": pre.checksum(),
                                   "zero_shot": True})
  plain = VQRecModel(config, codes)
  plain.cold_items = cold_items
  settings = {"remap": remap, "epochs": remap_epochs,
              "learning_rate": remap_learning_rate,
              "batch_size": remap_batch_size, "seed": seed}
  if cold_items is not None and len(cold_items):
    settings["cold_items"] = hashlib.sha256(np.asarray(
        cold_items, np.int64).tobytes()).hexdigest()
  key = _remap_key(pre, codes, settings)
  where = pathlib.Path(remap_dir) if remap_dir else pre.directory / "remaps"
  assignment = _cached_assignment(where, key, lambda: compute_assignment(
      remap, plain, pre, dataset, epochs=remap_epochs,
      batch_size=remap_batch_size, learning_rate=remap_learning_rate,
      seed=seed, cold_items=cold_items))
  transfer.check_assignment(assignment, config.num_digits, size,
                            permutation=remap != "released")
  table = params["code_embedding"]["embedding"]
  params["code_embedding"] = {"embedding": transfer.bake(table, assignment)}
  trainable = TABLE_PARAMS if freeze_encoder else tuple(sorted(params))
  return VQRecModel(config, codes, frozen=params, trainable=trainable,
                    checkpoint_description={"pretrained": pre.checksum(),
                                 "assignment": key})
