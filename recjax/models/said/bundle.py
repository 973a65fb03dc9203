"""SAID stage 1 on an accelerator host: a bundle made here, run there.

An accelerator host here has JAX, flax, optax, orbax and `tokenizers` but
no TensorFlow, no gin-config and no network, and each call carries at most
64 MiB, less than the 98 MB SmolLM2 GGUF. A SAID bundle is therefore a
folder of parts, each small enough for one call:

  BUNDLE/meta/said_bundle.json  the stage's inputs and hash, the settings,
                                the LM's name, size and sha256, the parts
  BUNDLE/meta/tokens.npy        the item texts, tokenised here
  BUNDLE/meta/text_mask.npy
  BUNDLE/meta/site/gguf/        the `gguf` package (pure Python)
  BUNDLE/lm-0/, BUNDLE/lm-1/    the GGUF file cut in parts (`part_mib`,
                                54 MiB: two parts for SmolLM2)

`make_bundle` writes it (where the dataset and the LM asset are).
`run_bundle`, on the accelerator, joins the parts, checks the sha256,
trains stage 1 with the usual trainer (checkpoints, exact resume) and
exports the embedder's parameters in files of at most 15 MiB (a call
returns 16 MiB files at most; Beauty's item vectors would be 56 MB, its
parameters are 18 MB). `import_result`, here, turns them into the
embed-stage directory that `said_stage` writes, with the same input hash:
at `<cache>/<data>/said`, `said_stage` (and `benchmarks/quality.py
--methods said`) takes it as up to date and goes on with stage 2 on the
CPU.

  python -m recjax.models.said.bundle make --dataset_dir D --bundle B
  python -m recjax.models.said.bundle run --bundle B --export $OUT
  python -m recjax.models.said.bundle import --bundle B --export R --out O
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from recjax import embed
from recjax import errors
from recjax.datasets.canonical import CanonicalDataset
from recjax.errors import ConfigError
from recjax.io_utils import atomic_directory
from recjax.models.said import stage as stage_lib
from recjax.models.said.model import SAIDConfig
from recjax.models.said.model import SAIDEmbedder
from recjax.models.said.model import embedder_vectors

BUNDLE_FILE = "said_bundle.json"
FORMAT_VERSION = 1
META_DIR = "meta"
PART_PREFIX = "lm-"
SITE_DIR = "site"
RESULT_FILE = "said_result.json"
_CHUNK = 1 << 20
_FILE_BYTES = 15 << 20


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      digest.update(block)
  return digest.hexdigest()


def _config_from_json(data: dict[str, Any]) -> stage_lib.SAIDStageConfig:
  data = dict(data)
  data["model"] = SAIDConfig(**data["model"])
  return stage_lib.SAIDStageConfig(**data)


def make_bundle(dataset_dir: str | os.PathLike[str],
                bundle_dir: str | os.PathLike[str],
                config: stage_lib.SAIDStageConfig | None = None,
                part_mib: float = 54.0) -> pathlib.Path:
  """Writes the SAID stage-1 bundle of a dataset (replaced atomically).

  Args:
    dataset_dir: a canonical dataset directory.
    bundle_dir: the folder to write.
    config: stage settings (default: `SAIDStageConfig()`), as
      `said_stage` would use them here.
    part_mib: the largest LM part, in MiB. One accelerator call carries
      64 MiB at most, the repository's tracked files (about 4 MiB) and the
      meta folder included: with 54, SmolLM2 is two parts, one per call.

  Returns:
    `bundle_dir`.

  Raises:
    ConfigError: a bad part size; the dataset's and LM's own errors.
  """
  from recjax import text_encoders  # pylint: disable=g-import-not-at-top
  from recjax.text_encoders import llama  # pylint: disable=g-import-not-at-top
  config = config or stage_lib.SAIDStageConfig()
  if part_mib <= 0:
    raise ConfigError(f"part_mib={part_mib} must be > 0.")
  dataset = CanonicalDataset.load(dataset_dir)
  texts = embed.render_texts(dataset.items, config.template)
  lm_path = text_encoders.resolve_model(config.lm)
  inputs, input_hash = stage_lib.stage_inputs(dataset, texts, lm_path,
                                              config)
  lm = llama.load_causal_lm(lm_path)
  tokens, mask = stage_lib.tokenize_items(lm, texts, config.max_length)
  part_bytes = max(int(part_mib * (1 << 20)), 1)
  out = pathlib.Path(bundle_dir)
  with atomic_directory(out) as tmp:
    meta = tmp / META_DIR
    meta.mkdir()
    np.save(meta / "tokens.npy", tokens)
    np.save(meta / "text_mask.npy", mask)
    import gguf  # pylint: disable=g-import-not-at-top
    shutil.copytree(pathlib.Path(gguf.__file__).parent,
                    meta / SITE_DIR / "gguf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    parts = []
    with open(lm_path, "rb") as f:
      for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
        name = f"{PART_PREFIX}{i}/{lm_path.name}.part{i}"
        (tmp / name).parent.mkdir()
        (tmp / name).write_bytes(block)
        parts.append({"path": name, "bytes": len(block),
                      "sha256": hashlib.sha256(block).hexdigest()})
    info = {
        "format_version": FORMAT_VERSION, "dataset": dataset.name,
        "input_hash": input_hash, "inputs": inputs,
        "config": dataclasses.asdict(config),
        "lm": {"name": lm_path.name, "source": str(lm_path),
               "lm_name": lm.name, "bytes": lm_path.stat().st_size,
               "sha256": inputs["model_fingerprint"], "parts": parts},
        "num_empty_texts": embed.count_empty(dataset.items, texts),
        "tokens_sha256": {n: _sha256(meta / n) for n in
                          ("tokens.npy", "text_mask.npy")},
    }
    (meta / BUNDLE_FILE).write_text(json.dumps(info, indent=2,
                                               sort_keys=True),
                                    encoding="utf-8")
  return out


def read_bundle(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
  """The bundle's `said_bundle.json`, after checking its token arrays.

  Raises:
    ConfigError: not a bundle, another format, or a damaged array.
  """
  meta = pathlib.Path(bundle_dir) / META_DIR
  path = meta / BUNDLE_FILE
  if not path.is_file():
    raise ConfigError(f"{path} does not exist: {bundle_dir} is not a SAID "
                      "bundle (python -m recjax.models.said.bundle make).")
  info = json.loads(path.read_text(encoding="utf-8"))
  if info.get("format_version") != FORMAT_VERSION:
    raise ConfigError(f"{path} has format {info.get('format_version')}; "
                      f"this recjax reads {FORMAT_VERSION}: remake it.")
  for name, want in info["tokens_sha256"].items():
    if not (meta / name).is_file() or _sha256(meta / name) != want:
      raise ConfigError(f"{meta / name} is missing or damaged (sha256 "
                        "differs): copy the bundle's meta folder again.")
  return info


def join_lm(bundle_dir: str | os.PathLike[str], info: dict[str, Any],
            dest_dir: str | os.PathLike[str]) -> pathlib.Path:
  """Joins the LM parts into `dest_dir/<name>` and checks its sha256.

  Raises:
    ConfigError: a part missing or damaged (named), or a joined file whose
      sha256 is not the bundle's.
  """
  root = pathlib.Path(bundle_dir)
  lm = info["lm"]
  out = pathlib.Path(dest_dir) / lm["name"]
  if out.is_file() and out.stat().st_size == lm["bytes"] and (
      _sha256(out) == lm["sha256"]):
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      for part in lm["parts"]:
        path = root / part["path"]
        if not path.is_file():
          raise ConfigError(
              f"{path} is missing: carry every {PART_PREFIX}* folder of the "
              f"bundle ({len(lm['parts'])} parts; ignored folders stay "
              "between calls on a warm machine).")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != part["sha256"]:
          raise ConfigError(f"{path} is damaged (sha256 differs): copy it "
                            "again.")
        f.write(data)
    if _sha256(pathlib.Path(tmp_name)) != lm["sha256"]:
      raise ConfigError(f"the joined {lm['name']} does not have the "
                        "bundle's sha256: remake the bundle.")
    os.replace(tmp_name, out)
  finally:
    if os.path.exists(tmp_name):
      os.unlink(tmp_name)
  return out


def _export_params(params: Any, export: pathlib.Path) -> list[str]:
  """Writes the parameters as `params-<i>.npz` files of at most 15 MiB
  (an accelerator call returns files of 16 MiB at most); a larger array
  is cut along its first axis. Returns the file names."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  flat = traverse_util.flatten_dict(params, sep="/")
  pieces = []
  for key in sorted(flat):
    arr = np.atleast_1d(np.asarray(flat[key]))
    rows = max(1, _FILE_BYTES // max(arr[:1].nbytes, 1))
    for i, start in enumerate(range(0, max(len(arr), 1), rows)):
      pieces.append((f"{key}#{i}", arr[start:start + rows]))
  files, group, size = [], {}, 0
  for name, arr in pieces + [(None, None)]:
    if group and (name is None or size + arr.nbytes > _FILE_BYTES):
      files.append(f"params-{len(files)}.npz")
      np.savez(export / files[-1], **group)
      group, size = {}, 0
    if name is not None:
      group[name], size = arr, size + arr.nbytes
  return files


def _import_params(export: pathlib.Path, files: Sequence[str]) -> Any:
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  pieces: dict[str, dict[int, np.ndarray]] = {}
  for name in files:
    with np.load(export / name) as data:
      for key in data.files:
        leaf, index = key.rsplit("#", 1)
        pieces.setdefault(leaf, {})[int(index)] = data[key]
  flat = {k: np.concatenate([v[i] for i in sorted(v)]) if len(v) > 1
          else v[0] for k, v in pieces.items()}
  return traverse_util.unflatten_dict(flat, sep="/")


def run_bundle(bundle_dir: str | os.PathLike[str],
               export_dir: str | os.PathLike[str],
               work_dir: str | os.PathLike[str] | None = None
               ) -> pathlib.Path:
  """Trains stage 1 from a bundle (the accelerator's half).

  Writes to `export_dir` what comes back from the accelerator: the
  embedder's parameters (`params-<i>.npz`, each at most 15 MiB) and
  `said_result.json` (the input hash, steps, losses, seconds). The
  training run (checkpoints: a killed run resumes) and the joined LM are
  in `work_dir`.

  Args:
    bundle_dir: the bundle (every part present).
    export_dir: e.g. `$OUT` of the accelerator call.
    work_dir: run and LM folder (default: `<export_dir>.work`).

  Returns:
    `export_dir`.
  """
  info = read_bundle(bundle_dir)
  site = pathlib.Path(bundle_dir) / META_DIR / SITE_DIR
  if site.is_dir() and str(site) not in sys.path:
    sys.path.append(str(site))  # `gguf`, where the host lacks it.
  from recjax.text_encoders import llama  # pylint: disable=g-import-not-at-top
  config = _config_from_json(info["config"])
  export = pathlib.Path(export_dir)
  work = pathlib.Path(work_dir or export.with_name(export.name + ".work"))
  start = time.time()
  lm_path = join_lm(bundle_dir, info, work / "lm")
  lm = llama.load_causal_lm(lm_path, dtype=config.lm_dtype)
  meta = pathlib.Path(bundle_dir) / META_DIR
  tokens = np.load(meta / "tokens.npy")
  mask = np.load(meta / "text_mask.npy")
  print(f"said: LM joined and loaded in {time.time() - start:.1f} s",
        flush=True)
  params, facts = stage_lib.train_stage(
      lm, tokens, mask, config, work / "run" / info["input_hash"][:12],
      info["input_hash"], info["dataset"])
  export.mkdir(parents=True, exist_ok=True)
  files = _export_params(params, export)
  result = {"input_hash": info["input_hash"], "params_files": files,
            "lm_name": lm.name, "lm_width": lm.config.hidden_size,
            "train_seconds": time.time() - start, **facts}
  (export / RESULT_FILE).write_text(json.dumps(result, indent=2),
                                    encoding="utf-8")
  return export


def import_result(bundle_dir: str | os.PathLike[str],
                  export_dir: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str]) -> pathlib.Path:
  """Item vectors from an accelerator's result (the half run here).

  Writes the embed-stage directory that `said_stage` writes, with the
  same input hash: put at `<cache>/<data>/said`, the benchmark takes it as
  stage 1 and goes on with stage 2.

  Args:
    bundle_dir: the bundle the result was trained from.
    export_dir: what `run_bundle` wrote.
    out_dir: the embed-stage directory to write.

  Returns:
    `out_dir`.

  Raises:
    ConfigError: a result of another bundle, or missing files.
  """
  info = read_bundle(bundle_dir)
  export = pathlib.Path(export_dir)
  path = export / RESULT_FILE
  if not path.is_file():
    raise ConfigError(f"{path} does not exist: copy back what `bundle run` "
                      "wrote (said_result.json and params-*.npz).")
  result = json.loads(path.read_text(encoding="utf-8"))
  if result["input_hash"] != info["input_hash"]:
    raise ConfigError(
        f"{export} was trained from another bundle (input hash "
        f"{result['input_hash'][:12]}, {bundle_dir} has "
        f"{info['input_hash'][:12]}).")
  missing = [f for f in result["params_files"] if not (export / f).is_file()]
  if missing:
    raise ConfigError(f"{export} lacks {missing}: copy every params file.")
  config = _config_from_json(info["config"])
  params = _import_params(export, result["params_files"])
  num_items = len(np.load(pathlib.Path(bundle_dir) / META_DIR /
                          "tokens.npy", mmap_mode="r"))
  embedder = SAIDEmbedder(config.model, num_items, result["lm_width"])
  vectors = embed.postprocess(embedder_vectors(embedder, params),
                              config.postprocess)
  return stage_lib.write_vectors(pathlib.Path(out_dir), vectors, {
      "model": info["lm"]["source"], "model_name": "said-" +
      result["lm_name"], "method": "said", "template": config.template,
      "dataset": info["dataset"], "input_hash": info["input_hash"],
      "inputs": info["inputs"], "num_empty_texts": info["num_empty_texts"],
      **{k: result[k] for k in ("run_dir", "train_steps",
                                "final_train_loss", "train_seconds")}})


def main(argv: Sequence[str] | None = None) -> None:
  """`make` here, `run` on the accelerator."""
  parser = argparse.ArgumentParser(prog="python -m recjax.models.said.bundle",
                                   description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="verb", required=True)
  make = sub.add_parser("make", help="write a bundle (here)")
  stage_lib.add_config_flags(make)
  make.add_argument("--bundle", required=True)
  make.add_argument("--part_mib", type=float, default=54.0)
  run = sub.add_parser("run", help="train from a bundle (the accelerator)")
  run.add_argument("--bundle", required=True)
  run.add_argument("--export", required=True,
                   help="what comes back, e.g. $OUT")
  run.add_argument("--work", default=None,
                   help="run and LM folder (default: <export>.work)")
  imp = sub.add_parser("import", help="item vectors from a result (here)")
  imp.add_argument("--bundle", required=True)
  imp.add_argument("--export", required=True)
  imp.add_argument("--out", required=True,
                   help="the embed-stage directory, e.g. CACHE/Beauty/said")
  parser.epilog = "verbs:\n" + "".join(
      "  " + p.format_usage().replace("usage: ", "")
      for p in (make, run, imp))
  parser.formatter_class = argparse.RawDescriptionHelpFormatter
  args = parser.parse_args(argv)
  with errors.exit_on_input_error():
    if args.verb == "make":
      out = make_bundle(args.dataset_dir, args.bundle,
                        stage_lib.config_of(args), args.part_mib)
      info = read_bundle(out)
      sizes = [p["bytes"] / (1 << 20) for p in info["lm"]["parts"]]
      print(f"wrote {out}: {len(sizes)} LM parts ("
            + ", ".join(f"{s:.1f}" for s in sizes) + " MiB), "
            f"input hash {info['input_hash'][:12]}")
    elif args.verb == "run":
      out = run_bundle(args.bundle, args.export, args.work)
      result = json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))
      print(json.dumps({k: result[k] for k in (
          "train_steps", "final_train_loss", "train_seconds")}))
    else:
      out = import_result(args.bundle, args.export, args.out)
      manifest = embed.read_manifest(out)
      print(f"wrote {out}: {manifest['num_items']:,} item vectors of "
            f"{manifest['dim']}")


if __name__ == "__main__":
  main()
