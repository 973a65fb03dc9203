"""Worker of tests/test_multihost.py: trains a tiny model, prints losses.

Run as `python tests/multihost_worker.py OUT_JSON NUM_PROCESSES PROCESS_ID
PORT` with `XLA_FLAGS=--xla_force_host_platform_device_count=N` set; with
NUM_PROCESSES > 1 it joins a localhost `jax.distributed` run over gloo.
Every process feeds its own rows of the same global batches.
"""

import json
import sys

import jax

from recjax import partitioning


def main(out: str, num_processes: int, process_id: int, port: int) -> None:
  partitioning.initialize_distributed(partitioning.DistributedConfig(
      coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
      process_id=process_id, cpu_collectives="gloo"))
  import test_trainer as t  # pylint: disable=g-import-not-at-top

  tr = t._trainer(out + ".run", 8)  # pylint: disable=protected-access
  state = tr.initial_state()
  rows = tr.partitioner.local_batch_slice(16)
  losses = []
  batches = t._Source(t._data(), 16).batches(0)  # pylint: disable=protected-access
  for _ in range(8):
    batch = {k: v[rows] for k, v in next(batches).items()}
    state, metrics = tr.train_step(state, batch)
    losses.append(float(metrics["loss"]))
  tr.checkpointer.close()
  if jax.process_index() == 0:
    with open(out, "w") as f:
      json.dump({"losses": losses, "devices": jax.device_count(),
                 "processes": jax.process_count()}, f)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
