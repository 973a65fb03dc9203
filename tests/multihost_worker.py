"""Worker of tests/test_multihost.py: trains a tiny model, prints losses.

Run as `python tests/multihost_worker.py OUT_JSON NUM_PROCESSES PROCESS_ID
PORT FAMILY` with `XLA_FLAGS=--xla_force_host_platform_device_count=N` set;
with NUM_PROCESSES > 1 it joins a localhost `jax.distributed` run over gloo.
Every process feeds its own rows of the same global batches to the one
`recjax.trainer.Trainer`. FAMILY is `tiger` (generative, token batches) or
`sasrec` (item-level, item batches). Process 0 writes the losses and the
final parameters.
"""

import json
import sys

import jax
import numpy as np

from recjax import partitioning


def _sasrec_trainer(model_dir: str, steps: int):
  """A 1-layer SASRec over 30 items behind the one trainer."""
  from recjax import optimizers  # pylint: disable=g-import-not-at-top
  from recjax import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  from recjax.models import sasrec  # pylint: disable=g-import-not-at-top
  model = sasrec.SASRecModel(sasrec.SASRecConfig(
      num_items=30, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=16,
      max_length=8, dropout_rate=0.0, attention_dropout_rate=0.0))
  cfg = trainer_lib.TrainerConfig(
      num_train_steps=steps, batch_size=16, log_period=5,
      checkpoint_period=1000, best_metric=None, async_checkpoints=False)
  opt = optimizers.OptimizerConfig(
      "adam", optimizers.ScheduleConfig("constant", 3e-3))
  shapes = {"input_items": (16, 8), "target_items": (16, 8)}
  return trainer_lib.Trainer(model, opt, cfg, shapes, model_dir,
                             meta={"model": "tiny sasrec"})


def _sasrec_data(n: int = 64) -> dict[str, np.ndarray]:
  """Item sequences where the next item is the previous one plus 1."""
  rng = np.random.default_rng(0)
  start = rng.integers(0, 30, size=(n, 1))
  seq = (start + np.arange(9)[None]) % 30
  return {"input_items": seq[:, :-1].astype(np.int32),
          "target_items": seq[:, 1:].astype(np.int32)}


def main(out: str, num_processes: int, process_id: int, port: int,
         family: str) -> None:
  partitioning.initialize_distributed(partitioning.DistributedConfig(
      coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
      process_id=process_id, cpu_collectives="gloo"))
  import test_trainer as t  # pylint: disable=g-import-not-at-top

  if family == "tiger":
    tr = t._trainer(out + ".run", 8)  # pylint: disable=protected-access
    data = t._data()  # pylint: disable=protected-access
  else:
    tr = _sasrec_trainer(out + ".run", 8)
    data = _sasrec_data()
  state = tr.initial_state()
  rows = tr.partitioner.local_batch_slice(16)
  losses = []
  batches = t._Source(data, 16).batches(0)  # pylint: disable=protected-access
  for _ in range(8):
    batch = {k: v[rows] for k, v in next(batches).items()}
    state, metrics = tr.train_step(state, batch)
    losses.append(float(metrics["loss"]))
  params = jax.tree_util.tree_flatten_with_path(
      jax.experimental.multihost_utils.process_allgather(state.params,
                                                         tiled=True))[0]
  tr.checkpointer.close()
  if jax.process_index() == 0:
    with open(out, "w") as f:
      json.dump({"losses": losses, "devices": jax.device_count(),
                 "processes": jax.process_count(),
                 "params": {jax.tree_util.keystr(k): np.asarray(v).tolist()
                            for k, v in params}}, f)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
       sys.argv[5])
