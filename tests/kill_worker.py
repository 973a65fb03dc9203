"""Runs one stage and SIGKILLs itself in the middle of writing its artefact.

`python tests/kill_worker.py STAGE ROOT [KILL_AT]` builds the inputs of
STAGE under ROOT (the same every time), then runs it with
`numpy.lib.format.write_array` (every `.npy` / `.npz` recjax writes) and
the JSONL writer patched so that the KILL_AT-th write kills the process
(signal 9, no clean-up). KILL_AT 0 runs the stage to the end.
`tests/test_kill_during_write.py` checks what a kill leaves on disk.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))

STAGES = ("dataset", "embeddings", "semantic_ids", "predictions")
TINY_LLAMA = pathlib.Path(__file__).parent / "fixtures" / "tiny_llama.gguf"


def _arm(kill_at: int) -> None:
  """Patches the writers: the `kill_at`-th write kills the process."""
  if kill_at <= 0:
    return
  import numpy.lib.format as fmt  # pylint: disable=g-import-not-at-top
  calls = {"n": 0}

  def tick():
    calls["n"] += 1
    if calls["n"] >= kill_at:
      os.kill(os.getpid(), signal.SIGKILL)

  real_write_array = fmt.write_array

  def write_array(fp, array, *args, **kwargs):
    tick()
    return real_write_array(fp, array, *args, **kwargs)

  fmt.write_array = write_array
  real_dumps = json.dumps

  def dumps(obj, *args, **kwargs):
    if isinstance(obj, dict) and "user_id" in obj:  # A JSONL record.
      tick()
    return real_dumps(obj, *args, **kwargs)

  json.dumps = dumps


def _dataset():
  from recjax.datasets.canonical import ItemTable  # pylint: disable=g-import-not-at-top
  from recjax.datasets.canonical import from_sequences  # pylint: disable=g-import-not-at-top
  n = 24
  items = ItemTable(original_ids=[f"i{i}" for i in range(n)],
                    fields={"title": [f"item number {i}" for i in range(n)],
                            "brand": ["acme"] * n})
  rng = np.random.default_rng(0)
  seqs = [list(rng.choice(n, size=5, replace=False)) for _ in range(12)]
  return from_sequences("killtest", items, [f"u{u}" for u in range(12)],
                        seqs)


def _embeddings_dir(root: pathlib.Path) -> pathlib.Path:
  from recjax import embed  # pylint: disable=g-import-not-at-top
  path = root / "emb_input"
  if not path.exists():
    x = np.random.default_rng(1).normal(size=(24, 8)).astype(np.float32)
    path.mkdir(parents=True)
    np.save(path / embed.EMBEDDINGS_FILE, x)
    (path / embed.MANIFEST_FILE).write_text(json.dumps(
        {"checksum": embed.array_checksum(x)}))
  return path


def prepare(stage: str, root: pathlib.Path) -> None:
  """Writes the stage's inputs (before the writers are armed)."""
  if stage != "dataset" and not (root / "dataset_input").exists():
    _dataset().save(root / "dataset_input")
  if stage == "semantic_ids":
    _embeddings_dir(root)


def run(stage: str, root: pathlib.Path) -> pathlib.Path:
  """Runs `stage` on the fixed inputs; returns its artefact's path."""
  ds = _dataset()
  ds_dir = root / "dataset_input"
  if stage == "dataset":
    return ds.save(root / "dataset")
  if stage == "embeddings":
    from recjax import embed  # pylint: disable=g-import-not-at-top
    return embed.embed_stage(ds_dir, root / "embeddings", embed.EmbedConfig(
        model_dir=str(TINY_LLAMA), template=["title", "brand"],
        max_length=16, batch_size=8))
  if stage == "semantic_ids":
    from recjax import semantic_ids  # pylint: disable=g-import-not-at-top
    return semantic_ids.semantic_ids_stage(
        _embeddings_dir(root), ds_dir, root / "semantic_ids",
        method="rqkmeans", num_levels=2, codebook_size=4)
  if stage == "predictions":
    from recjax import infer  # pylint: disable=g-import-not-at-top
    requests = [infer.Request(user_id=f"u{u}", items=np.zeros(0, int),
                              unknown=[])
                for u in range(12)]
    ranked = [(np.tile(np.arange(5), (12, 1)), np.ones((12, 5)), 12)]
    return infer.write_recommendations(root / "predictions.jsonl", requests,
                                       ds.items.original_ids, ranked)
  raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")


def main() -> None:
  stage, root = sys.argv[1], pathlib.Path(sys.argv[2])
  kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else 0
  root.mkdir(parents=True, exist_ok=True)
  prepare(stage, root)
  _arm(kill_at)
  print(run(stage, root), flush=True)


if __name__ == "__main__":
  main()
