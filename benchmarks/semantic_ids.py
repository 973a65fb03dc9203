"""Benchmark: semantic-ID quality and wall time on Amazon Office and Beauty.

For each dataset (LC-Rec JSON layout under `--data_root`, default
`../shared/data` relative to the repository), items are embedded once with
all-MiniLM-L6-v2 (cached under `--cache_dir`; the embed stage is a no-op
when up to date), then every method builds `levels x codebook_size` IDs
and the diagnostics are printed as one table row per (dataset, method):
codebook usage and perplexity per level, collision rate before
de-duplication, the largest number of items sharing a code / a 2-code
prefix, relative reconstruction error, the first-code lift probe and wall
time.

LETTER needs CF item embeddings. Pass `--cf_embeddings Beauty=path.npy`
(e.g. SASRec item embeddings, rows aligned with the item index); without
one, a stand-in is used and marked "letter*": item2vec-style embeddings
from a truncated SVD of the positive PMI of item co-occurrences (window 3)
in the leave-one-out training histories (`letter.cooccurrence_embeddings`).

Target (TIGER setting): on Beauty, RQ-VAE with 3 x 256 codes uses at least
90% of the first level's codes and no level below 50%.

  .venv/bin/python benchmarks/semantic_ids.py [--datasets Office,Beauty]
      [--methods rqvae,rqkmeans,opq,letter] [--epochs 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recjax import datasets  # noqa: E402
from recjax import embed  # noqa: E402
from recjax import semantic_ids  # noqa: E402
from recjax.quantizers import diagnostics  # noqa: E402

FOLDERS = {"Office": "amazon-office", "Beauty": "amazon-beauty"}


def _row(name: str, method: str, label: str, res: Any,
         seconds: float) -> dict[str, Any]:
  rep = res.report
  return {
      "dataset": name, "method": label,
      "codes": "x".join(str(s) for s in rep["codebook_sizes"]),
      "final_levels": rep["final_levels"],
      "usage": rep["codebook_usage"], "perplexity": rep["perplexity"],
      "collision_rate": rep["collision_rate"],
      "max_items_per_code": rep["max_items_per_code"],
      "max_items_per_prefix": rep["max_items_per_prefix"],
      "relative_reconstruction_error": rep["relative_reconstruction_error"],
      "first_code_lift": rep["first_code_lift"]["lift"],
      "seconds": seconds,
  }


def _table(rows: list[dict[str, Any]]) -> str:
  head = ("| dataset | method | codes | usage per level | perplexity | "
          "collision rate | max/code | max/prefix(2) | rel. recon err | "
          "lift | time (s) |")
  lines = [head, "|" + "---|" * 11]
  for r in rows:
    prefix = r["max_items_per_prefix"]
    lines.append(
        f"| {r['dataset']} | {r['method']} | {r['codes']} | "
        + "/".join(f"{100 * u:.1f}%" for u in r["usage"]) + " | "
        + "/".join(f"{p:.0f}" for p in r["perplexity"]) + " | "
        f"{100 * r['collision_rate']:.2f}% | {r['max_items_per_code']} | "
        f"{prefix[min(1, len(prefix) - 1)]} | "
        f"{r['relative_reconstruction_error']:.3f} | "
        f"{r['first_code_lift']:.1f} | {r['seconds']:.1f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_root", default=str(REPO.parent / "shared" /
                                                 "data"))
  parser.add_argument("--datasets", default="Office,Beauty")
  parser.add_argument("--methods", default="rqvae,rqkmeans,opq,letter")
  parser.add_argument("--cache_dir", default=str(REPO / "runs" /
                                                 "bench_semantic_ids"))
  parser.add_argument("--model_dir", default=None,
                      help="text encoder; default all-MiniLM-L6-v2 asset")
  parser.add_argument("--levels", type=int, default=3)
  parser.add_argument("--codebook_size", type=int, default=256)
  parser.add_argument("--epochs", type=int, default=100,
                      help="RQ-VAE / LETTER epochs")
  parser.add_argument("--batch_size", type=int, default=1024)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--cf_embeddings", action="append", default=[],
                      metavar="DATASET=PATH.npy")
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object per row instead")
  args = parser.parse_args()
  cf_paths = dict(item.split("=", 1) for item in args.cf_embeddings)
  cache = pathlib.Path(args.cache_dir)
  rows = []
  for name in args.datasets.split(","):
    folder = pathlib.Path(args.data_root) / FOLDERS.get(name, name.lower())
    ds = datasets.load("amazon_lcrec", data_dir=str(folder), category=name)
    ds_dir = cache / name / "dataset"
    if not (ds_dir / "meta.json").exists():
      ds.save(ds_dir)
    t0 = time.time()
    emb_dir = embed.embed_stage(ds_dir, cache / name / "minilm",
                                embed.EmbedConfig(model_dir=args.model_dir))
    x, manifest = embed.load_embeddings(emb_dir)
    print(f"[{name}] {ds.num_items} items, embeddings {x.shape} "
          f"({manifest['model_name']}) ready in {time.time() - t0:.1f}s",
          file=sys.stderr)
    for method in args.methods.split(","):
      kw: dict[str, Any] = {"codebook_size": args.codebook_size}
      label = method
      if method in ("opq", "pq"):
        kw.update(num_subspaces=args.levels, progress=False)
      else:
        kw["num_levels"] = args.levels
      if method in ("rqvae", "letter"):
        kw.update(epochs=args.epochs, batch_size=args.batch_size,
                  progress=False)
      if method == "letter":
        kw["cf_embeddings"] = cf_paths.get(name, "cooccurrence")
        if name not in cf_paths:
          label = "letter*"
      t0 = time.time()
      res = semantic_ids.build(ds, x, method, seed=args.seed, **kw)
      seconds = time.time() - t0
      row = _row(name, method, label, res, seconds)
      rows.append(row)
      if args.json:
        print(json.dumps(row), flush=True)
      else:
        print(f"[{name}] {label}: {seconds:.1f}s\n"
              + diagnostics.format_report(res.report),
              file=sys.stderr, flush=True)
      if name == "Beauty" and method == "rqvae":
        usage = res.report["codebook_usage"]
        ok = usage[0] >= 0.9 and min(usage) >= 0.5
        print(f"[Beauty] RQ-VAE target (level 0 >= 90%, all >= 50%): "
              f"{'MET' if ok else 'MISSED'} {np.round(usage, 3).tolist()}",
              file=sys.stderr)
  if not args.json:
    print(_table(rows))
    if any(r["method"] == "letter*" for r in rows):
      print("\nletter*: CF embeddings = co-occurrence PPMI-SVD stand-in "
            "(no SASRec embeddings given).")


if __name__ == "__main__":
  main()
