"""Stage "semantic IDs": item embeddings -> unique codes per item.

`build(dataset, embeddings, method, seed=0, **config)` trains a quantizer
(`rqvae`, `rqkmeans`, `opq`, `pq` or `letter`), makes the codes unique
(`collisions="append"`: TIGER's extra level; `"sinkhorn"`: LC-Rec/LETTER
re-assignment of the last level), and measures them (usage, perplexity,
collision rate, prefix sharing, reconstruction error, first-code lift).

The stage function writes, atomically, into one directory:

  codes.npy          int32 [num_items, levels], unique rows, item-aligned
  base_codes.npy     int32 codes before de-duplication
  tokenizer/         tokenizer.json + Orbax checkpoint (params/); reload with
                     `recjax.quantizers.load_tokenizer` to encode new items
  diagnostics.json   the report; code_usage.png: items per code per level
  config.json        method, seed and all hyperparameters
  manifest.json      input hash (no-op re-runs), codes checksum, layout

  python -m recjax.semantic_ids --embeddings_dir E --dataset_dir D --out O
      --method rqvae [--seed 0] [--set epochs=300 --set collisions=sinkhorn]

Seeded runs are bit-for-bit reproducible. No TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from recjax import embed as embed_lib
from recjax import errors
from recjax import io_utils
from recjax import item_sequences
from recjax import quiet
from recjax.datasets.canonical import CanonicalDataset
from recjax.errors import ConfigError
from recjax.quantizers import collisions
from recjax.quantizers import diagnostics
from recjax.quantizers import letter
from recjax.quantizers import pq
from recjax.quantizers import rqkmeans
from recjax.quantizers import rqvae
from recjax.quantizers.base import Tokenizer
from recjax.quantizers.base import check_embeddings
from recjax.tokens import SemanticIdLayout

METHOD_CONFIGS: dict[str, type] = {
    "rqvae": rqvae.RQVAEConfig,
    "rqkmeans": rqkmeans.RQKMeansConfig,
    "opq": pq.OPQConfig,
    "pq": pq.OPQConfig,
    "letter": letter.LetterConfig,
}
METHODS = tuple(METHOD_CONFIGS)
FIT_ON = ("all", "train")
_STAGE_VERSION = 1


@dataclasses.dataclass
class SemanticIdConfig:
  """Options of the stage shared by all methods.

  Attributes:
    collisions: "append" (extra level), "sinkhorn" (re-assign last level)
      or "none" (keep the quantizer's codes, which may repeat: VQ-Rec and
      RPG read codes as item features and never decode them).
    fit_on: "all" (fit the quantizer on every item's embedding) or "train"
      (only on the items that occur in the leave-one-out training part of
      some history, VQ-Rec's and RPG's "strict" setting; the other items
      are then encoded by the fitted quantizer, like new items).
    cold_fraction: the cold-start protocol
      (`recjax.item_sequences.ItemDataConfig.cold_fraction`): with
      `fit_on="train"`, the same draw of cold items is left out of the fit,
      as the protocol leaves them out of training; they are encoded like
      new items. Needs `fit_on="train"`.
    cold_seed: the draw of the cold items (`ItemDataConfig.cold_seed`).
    collision_codebook_size: fixed size of the extra level (None: as needed).
    max_vocab_size: fail if the token layout (specials + codes + user
      buckets) would exceed this many tokens.
    num_user_buckets: user-hash tokens counted in that layout.
  """

  collisions: str = "append"
  fit_on: str = "all"
  cold_fraction: float = 0.0
  cold_seed: int = 0
  collision_codebook_size: int | None = None
  max_vocab_size: int | None = None
  num_user_buckets: int = 0


@dataclasses.dataclass
class SemanticIds:
  """Result of `build`.

  Attributes:
    codes: int32 `[num_items, levels]`, unique rows, item-aligned.
    base_codes: int32 quantizer codes before de-duplication.
    report: diagnostics (see `recjax.quantizers.diagnostics`).
    tokenizer: the trained quantizer (encodes new items).
    method: method name.
    seed: PRNG seed.
    config: the stage options.
    method_config: the method's hyperparameters.
  """

  codes: np.ndarray
  base_codes: np.ndarray
  report: dict[str, Any]
  tokenizer: Tokenizer
  method: str
  seed: int
  config: SemanticIdConfig
  method_config: Any

  @property
  def layout(self) -> SemanticIdLayout:
    """The token layout of `codes`."""
    return SemanticIdLayout(final_codebook_sizes(self),
                            self.config.num_user_buckets)

  def config_dict(self) -> dict[str, Any]:
    """Everything needed to rebuild the codes, as JSON."""
    return {"method": self.method, "seed": self.seed,
            "stage": dataclasses.asdict(self.config),
            "method_config": dataclasses.asdict(self.method_config)}


def final_codebook_sizes(result: SemanticIds) -> tuple[int, ...]:
  """Codebook sizes of the final codes (with the collision level, if any)."""
  sizes = tuple(result.tokenizer.codebook_sizes)
  if result.codes.shape[1] > len(sizes):
    extra = result.config.collision_codebook_size or int(
        result.codes[:, -1].max()) + 1
    sizes = sizes + (extra,)
  return sizes


def option_names(method: str) -> frozenset[str]:
  """Every option `build` accepts for `method` (stage and quantizer)."""
  if method not in METHOD_CONFIGS:
    raise ConfigError(f"method {method!r} is not known; choose one of "
                      f"{list(METHODS)}.")
  fields = dataclasses.fields(SemanticIdConfig) + dataclasses.fields(
      METHOD_CONFIGS[method])
  return frozenset(f.name for f in fields) | {"method"}


def split_config(method: str, config: dict[str, Any]
                 ) -> tuple[SemanticIdConfig, Any]:
  """Splits flat keyword options into stage options and method config.

  Args:
    method: one of `METHODS`.
    config: keyword options of `build`.

  Returns:
    (stage options, method config dataclass).

  Raises:
    ConfigError: unknown method or option.
  """
  if method not in METHOD_CONFIGS:
    raise ConfigError(f"method {method!r} is not known; choose one of "
                      f"{list(METHODS)}.")
  cls = METHOD_CONFIGS[method]
  stage_names = {f.name for f in dataclasses.fields(SemanticIdConfig)}
  method_names = {f.name for f in dataclasses.fields(cls)}
  unknown = set(config) - stage_names - method_names
  if unknown:
    raise ConfigError(
        f"unknown option(s) {sorted(unknown)} for method {method!r}; valid: "
        f"{sorted(stage_names | method_names)}.")
  stage = SemanticIdConfig(**{k: v for k, v in config.items()
                              if k in stage_names})
  kwargs = {k: tuple(v) if isinstance(v, list) else v
            for k, v in config.items() if k in method_names}
  if method == "pq":
    kwargs.setdefault("rotate", False)
  if stage.collisions not in collisions.STRATEGIES:
    raise ConfigError(f"collisions={stage.collisions!r}; choose one of "
                      f"{collisions.STRATEGIES}.")
  if stage.fit_on not in FIT_ON:
    raise ConfigError(f"fit_on={stage.fit_on!r}; choose one of {FIT_ON}.")
  if not 0.0 <= stage.cold_fraction < 1.0:
    raise ConfigError(f"cold_fraction must be in [0, 1), got "
                      f"{stage.cold_fraction}.")
  if stage.cold_fraction and stage.fit_on != "train":
    raise ConfigError(
        f"cold_fraction={stage.cold_fraction} needs fit_on='train': with "
        "fit_on='all' the cold items' text would be fitted like any other "
        "item's.")
  if stage.fit_on == "train" and method == "letter":
    raise ConfigError("fit_on='train' is not supported by method 'letter' "
                      "(its CF alignment needs every item); use "
                      "fit_on='all'.")
  return stage, cls(**kwargs)


def training_items(dataset: CanonicalDataset,
                   excluded: np.ndarray | None = None) -> np.ndarray:
  """Sorted indices of the items in some history's training part.

  The training part of a leave-one-out history is all but its last two
  items (validation and test targets).

  Args:
    dataset: the canonical dataset.
    excluded: items that never count as training items (the cold-start
      protocol's), or None.

  Returns:
    int64 item indices.

  Raises:
    ConfigError: no history has a training part.
  """
  seen = np.zeros(dataset.num_items, bool)
  for seq in dataset.sequences():
    seen[np.asarray(seq[:-2], np.int64)] = True
  if excluded is not None:
    seen[np.asarray(excluded, np.int64)] = False
  if not seen.any():
    raise ConfigError(
        f"dataset {dataset.name!r} has no training items (every history is "
        "shorter than 3); use fit_on='all' or a dataset with longer "
        "histories.")
  return np.flatnonzero(seen)


def _levels_and_size(method_cfg: Any) -> tuple[int, int]:
  if isinstance(method_cfg, pq.OPQConfig):
    return method_cfg.num_subspaces, method_cfg.codebook_size
  return method_cfg.num_levels, method_cfg.codebook_size


def check_layout(sizes: Sequence[int], stage: SemanticIdConfig) -> None:
  """Raises ConfigError if codebooks of `sizes` exceed `max_vocab_size`."""
  layout = SemanticIdLayout(tuple(sizes), stage.num_user_buckets)
  if stage.max_vocab_size is not None and (
      layout.vocab_size > stage.max_vocab_size):
    raise ConfigError(
        f"codebook sizes {list(sizes)} need a vocabulary of "
        f"{layout.vocab_size} tokens (3 specials + {layout.num_code_tokens} "
        f"codes + {stage.num_user_buckets} user buckets), more than "
        f"max_vocab_size={stage.max_vocab_size}. Use fewer levels or smaller "
        "codebooks, or raise max_vocab_size.")


def _cf_matrix(cf: Any, dataset: CanonicalDataset) -> np.ndarray:
  """Resolves LETTER's CF embeddings: array, .npy path or 'cooccurrence'."""
  if cf is None:
    raise ConfigError(
        "method 'letter' needs cf_embeddings=: an array or .npy path of "
        "[num_items, dim] CF item embeddings (e.g. from SASRec), or "
        "'cooccurrence' for the co-occurrence SVD stand-in.")
  if isinstance(cf, str) and cf == "cooccurrence":
    train = (s[:-2] for s in dataset.sequences())  # leave-one-out training
    return letter.cooccurrence_embeddings(train, dataset.num_items)
  if isinstance(cf, (str, os.PathLike)):
    path = pathlib.Path(cf)
    if not path.exists():
      raise ConfigError(f"cf_embeddings file {path} does not exist.")
    cf = np.load(path)
  return check_embeddings(cf, dataset.num_items, name="cf_embeddings")


def build(dataset: CanonicalDataset, embeddings: Any, method: str = "rqvae",
          seed: int = 0, cf_embeddings: Any = None,
          **config: Any) -> SemanticIds:
  """Trains a quantizer and returns unique semantic IDs for every item.

  Args:
    dataset: the canonical dataset (item count, histories for the probe).
    embeddings: float `[num_items, dim]` item embeddings, item-aligned.
    method: "rqvae", "rqkmeans", "opq", "pq" or "letter".
    seed: PRNG seed; equal seeds give equal codes bit for bit.
    cf_embeddings: LETTER only: `[num_items, cf_dim]` array, `.npy` path, or
      "cooccurrence" (item2vec-style stand-in from training histories).
    **config: `SemanticIdConfig` fields and the method config's fields
      (e.g. `num_levels`, `codebook_size`, `epochs`, `collisions`).

  Returns:
    The codes, diagnostics and trained tokenizer.

  Raises:
    ConfigError: bad embeddings, options or vocabulary layout.
  """
  start = time.time()
  stage, mcfg = split_config(method, config)
  x = check_embeddings(embeddings, dataset.num_items)
  levels, size = _levels_and_size(mcfg)
  extra = (stage.collision_codebook_size or 1,) if (
      stage.collisions == "append") else ()
  check_layout((size,) * levels + extra, stage)
  key = jax.random.key(seed)
  metrics: dict[str, Any] = {}
  fit_x = x
  if stage.fit_on == "train":
    cold = None
    if stage.cold_fraction:
      cold = item_sequences.cold_items(dataset.num_items,
                                       stage.cold_fraction, stage.cold_seed)
      metrics["cold_items"] = int(len(cold))
    fit_items = training_items(dataset, cold)
    fit_x = x[fit_items]
    metrics["fit_items"] = int(len(fit_items))
  if method == "letter":
    cf = _cf_matrix(cf_embeddings, dataset)
    tok, base, last_d, metrics = letter.fit(x, cf, mcfg, key)
  elif method in ("rqvae",):
    tok, fit_metrics = rqvae.fit(fit_x, mcfg, key)
    metrics.update(fit_metrics)
    base, last_d = tok.encode_with_last_distances(x)
  else:
    fit = rqkmeans.fit if method == "rqkmeans" else pq.fit
    tok, base, last_d = fit(fit_x, mcfg, key)
    if stage.fit_on == "train":  # Encode every item with the fitted model.
      base, last_d = tok.encode_with_last_distances(x)
  train_time = time.time() - start
  codes = collisions.deduplicate(base, stage.collisions, last_d,
                                 stage.collision_codebook_size)
  result = SemanticIds(codes=codes, base_codes=base, report={},
                       tokenizer=tok, method=method, seed=seed, config=stage,
                       method_config=mcfg)
  sizes = final_codebook_sizes(result)
  check_layout(sizes, stage)
  result.layout.check_codes(codes)
  extra_report = {"method": method, "seed": seed,
                  "train_seconds": train_time,
                  "final_codebook_sizes": list(sizes)}
  extra_report.update(tok.reconstruction_errors(x))
  extra_report.update(metrics)
  result.report = diagnostics.build_report(
      base, codes, tok.codebook_sizes, dataset.sequences(), extra_report)
  result.report["seconds"] = time.time() - start
  return result


def save(result: SemanticIds, directory: pathlib.Path,
         manifest: dict[str, Any]) -> None:
  """Writes a result's artefacts into an (empty) directory."""
  np.save(directory / "codes.npy", result.codes)
  np.save(directory / "base_codes.npy", result.base_codes)
  result.tokenizer.save(directory / "tokenizer")
  with open(directory / "diagnostics.json", "w", encoding="utf-8") as f:
    json.dump(result.report, f, indent=2, sort_keys=True)
  with open(directory / "config.json", "w", encoding="utf-8") as f:
    json.dump(result.config_dict(), f, indent=2, sort_keys=True, default=str)
  diagnostics.plot_usage(result.base_codes, result.tokenizer.codebook_sizes,
                         directory / "code_usage.png",
                         title=f"{result.method} code usage")
  with open(directory / embed_lib.MANIFEST_FILE, "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)


def semantic_ids_stage(embeddings_dir: str | os.PathLike[str],
                       dataset_dir: str | os.PathLike[str],
                       out_dir: str | os.PathLike[str],
                       method: str = "rqvae", seed: int = 0,
                       cf_embeddings: str | None = None, force: bool = False,
                       **config: Any) -> pathlib.Path:
  """Runs the semantic-ID stage: embeddings directory -> codes directory.

  Args:
    embeddings_dir: output of the embed stage.
    dataset_dir: the canonical dataset the embeddings belong to.
    out_dir: output directory (see the module docstring).
    method: quantizer.
    seed: PRNG seed.
    cf_embeddings: LETTER: `.npy` path or "cooccurrence".
    force: recompute even when up to date.
    **config: options of `build`.

  Returns:
    `out_dir`; nothing is recomputed when its manifest records the same
    input hash (embeddings, dataset, CF file, method, seed, config).
  """
  out = pathlib.Path(out_dir)
  emb, emb_manifest = embed_lib.load_embeddings(embeddings_dir)
  dataset = CanonicalDataset.load(dataset_dir)
  stage, mcfg = split_config(method, dict(config))
  cf_id = None
  if cf_embeddings is not None:
    cf_id = cf_embeddings if cf_embeddings == "cooccurrence" else \
        embed_lib.array_checksum(np.load(cf_embeddings))
  inputs = {"stage_version": _STAGE_VERSION,
            "embeddings": emb_manifest.get("checksum"),
            "dataset": dataset.fingerprint(), "cf_embeddings": cf_id,
            "method": method, "seed": seed,
            "stage": dataclasses.asdict(stage),
            "method_config": dataclasses.asdict(mcfg)}
  input_hash = embed_lib.config_hash(inputs)
  old = embed_lib.read_manifest(out)
  if not force and old and old.get("input_hash") == input_hash and (
      out / "codes.npy").exists():
    logging.info("semantic_ids: %s is up to date.", out)
    return out
  result = build(dataset, emb, method, seed, cf_embeddings=cf_embeddings,
                 **config)
  print(diagnostics.format_report(result.report))
  manifest = {"input_hash": input_hash, "inputs": inputs,
              "codes_checksum": embed_lib.array_checksum(result.codes),
              "num_items": int(result.codes.shape[0]),
              "levels": int(result.codes.shape[1]),
              "layout": result.layout.describe()}
  with io_utils.atomic_directory(out) as tmp:
    save(result, tmp, manifest)
  return out


def load_codes(directory: str | os.PathLike[str]) -> np.ndarray:
  """Reads `codes.npy` of a stage directory, verifying its checksum."""
  path = pathlib.Path(directory)
  manifest = embed_lib.read_manifest(path)
  if manifest is None or not (path / "codes.npy").exists():
    raise ConfigError(f"{path} is not a semantic-ID stage directory; run "
                      "`python -m recjax.semantic_ids --out ...`.")
  codes = np.load(path / "codes.npy")
  if embed_lib.array_checksum(codes) != manifest["codes_checksum"]:
    raise ConfigError(f"{path / 'codes.npy'} does not match its manifest "
                      "checksum; re-run the stage.")
  return codes


def load_item_codes(codes_dir: str | os.PathLike[str],
                     dataset: CanonicalDataset) -> tuple[np.ndarray, int]:
  """Codes and codebook size of a semantic-ID stage directory, checked.

  Args:
    codes_dir: output of `python -m recjax.semantic_ids`.
    dataset: the dataset they must describe.

  Returns:
    `(codes int32 [num_items, D], codebook_size)`.

  Raises:
    ConfigError: not a stage directory, or codes of another catalog.
  """
  path = pathlib.Path(codes_dir)
  codes = load_codes(path)
  if codes.ndim != 2 or codes.shape[0] != dataset.num_items:
    raise ConfigError(
        f"{path / 'codes.npy'} has shape {codes.shape}, but dataset "
        f"{dataset.name!r} has {dataset.num_items} items; build the codes "
        "of this dataset (python -m recjax.semantic_ids --dataset_dir ...) "
        "and point codes_dir at them.")
  config_path = path / "config.json"
  size = int(codes.max()) + 1
  if config_path.exists():
    method_config = json.loads(config_path.read_text()).get(
        "method_config", {})
    size = int(method_config.get("codebook_size", size))
  return codes.astype(np.int32), size


def check_digits(codes: Any, num_digits: int, owner: str,
                 source: str) -> np.ndarray:
  """Item codes as `[num_items, D]`, with D equal to a set `num_digits`.

  Args:
    codes: int `[num_items, D]` codes (array-like).
    num_digits: the model config's digit count; 0 takes D from the codes.
    owner: the config class for messages, e.g. "RPGConfig".
    source: where the codes came from, for messages.

  Returns:
    The codes as a numpy array.

  Raises:
    ConfigError: codes that are not 2-D, or of another digit count.
  """
  codes = np.asarray(codes)
  if codes.ndim != 2:
    raise ConfigError(f"codes must be [num_items, num_digits], got shape "
                      f"{codes.shape}.")
  if num_digits and codes.shape[1] != num_digits:
    raise ConfigError(
        f"{source} has {codes.shape[1]} digits per item but "
        f"{owner}.num_digits={num_digits}; rebuild the codes with "
        f"num_subspaces={num_digits} or set num_digits=0 (from the codes).")
  return codes


def _parse_value(text: str) -> Any:
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return text


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m recjax.semantic_ids` entry point."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--embeddings_dir", required=True)
  parser.add_argument("--dataset_dir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--method", default="rqvae", choices=METHODS)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--cf_embeddings", default=None,
                      help="LETTER: .npy path or 'cooccurrence'")
  parser.add_argument("--set", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="option of build(), value parsed as JSON")
  parser.add_argument("--force", action="store_true")
  quiet.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  quiet.configure_logging()
  config = {}
  for item in args.set:
    if "=" not in item:
      parser.error(f"--set {item!r}: expected KEY=VALUE")
    k, v = item.split("=", 1)
    config[k] = _parse_value(v)
  with errors.exit_on_input_error():
    semantic_ids_stage(args.embeddings_dir, args.dataset_dir, args.out,
                       args.method, args.seed, args.cf_embeddings, args.force,
                       **config)


if __name__ == "__main__":
  main()
