"""Tests for recjax.partitioning: mesh, logical rules, sharded batches.

The mesh tests need several devices, so they run in a child process with
`--xla_force_host_platform_device_count=4` (this process's JAX has
already picked its device count).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from recjax import partitioning
from recjax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]

_FOUR_DEVICES = textwrap.dedent("""
    import json
    import sys

    import jax
    import numpy as np
    import optax
    from jax.sharding import PartitionSpec as P

    from recjax import optimizers
    from recjax import partitioning
    from recjax.errors import ConfigError

    part = partitioning.Partitioner(num_partitions=2)
    out = {"mesh": dict(part.mesh.shape), "data_size": part.data_size}
    shardings = part.logical_to_sharding(
        {"emb": P("vocab", "embed"), "mlp": P("embed", "mlp"),
         "bias": P("embed")})
    out["specs"] = {k: list(s.spec) for k, s in shardings.items()}
    batch = part.shard_batch({"x": np.arange(8 * 3).reshape(8, 3)})
    out["batch_shape"] = list(batch["x"].shape)
    out["shard_rows"] = sorted(
        int(s.data.shape[0]) for s in batch["x"].addressable_shards)
    out["batch_equal"] = bool(np.array_equal(
        np.asarray(batch["x"]), np.arange(24).reshape(8, 3)))
    tx = optimizers.OptimizerConfig("adamw").build(10)
    params = {"emb": np.zeros((8, 4), np.float32),
              "mlp": np.zeros((4, 8), np.float32),
              "bias": np.zeros((4,), np.float32)}
    state = jax.eval_shape(tx.init, params)
    opt = part.optimizer_state_sharding(tx, state, shardings)
    adam = opt[0]
    out["mu_specs"] = {k: list(s.spec) for k, s in adam.mu.items()}
    out["count_spec"] = list(adam.count.spec)
    part.check_batch_size(6)
    try:
      part.check_batch_size(5)
    except ConfigError as e:
      out["bad_batch"] = str(e)
    try:
      partitioning.Partitioner(num_partitions=3)
    except ConfigError as e:
      out["bad_partitions"] = str(e)
    json.dump(out, sys.stdout)
""")


@pytest.fixture(scope="module")
def four_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _FOUR_DEVICES], env=env,
                        capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout)


def test_mesh_is_data_by_model(four_devices):
  assert four_devices["mesh"] == {"data": 2, "model": 2}
  assert four_devices["data_size"] == 2


def test_logical_axes_map_through_the_rules(four_devices):
  assert four_devices["specs"] == {"emb": ["model", None],
                                   "mlp": [None, "model"], "bias": [None]}


def test_optimizer_slots_follow_their_parameters(four_devices):
  assert four_devices["mu_specs"] == four_devices["specs"]
  assert four_devices["count_spec"] == []


def test_shard_batch_splits_rows_over_data(four_devices):
  assert four_devices["batch_shape"] == [8, 3]
  # 2 data shards x 2 model replicas: every device holds 4 of the 8 rows.
  assert four_devices["shard_rows"] == [4, 4, 4, 4]
  assert four_devices["batch_equal"]


def test_bad_sizes_on_four_devices(four_devices):
  assert four_devices["bad_batch"] == (
      "batch size 5 is not divisible by the 2 data-parallel devices; use a "
      "multiple of 2.")
  assert four_devices["bad_partitions"] == (
      "num_partitions=3 must divide the 4 devices.")


def test_single_process_slice_and_errors():
  part = partitioning.Partitioner(devices=jax.devices()[:1])
  assert part.local_batch_slice(16) == slice(0, 16)
  with pytest.raises(ConfigError, match="num_partitions=0 must divide"):
    partitioning.Partitioner(num_partitions=0)
  with pytest.raises(ConfigError, match="num_partitions=2 must divide the 1"):
    partitioning.Partitioner(num_partitions=2, devices=jax.devices()[:1])


def test_custom_rules_replace_the_defaults():
  part = partitioning.Partitioner(
      devices=jax.devices()[:1],
      logical_axis_rules=(("vocab", "data"), ("embed", None)))
  sharding = part.logical_to_sharding(PartitionSpec("vocab", "embed"))
  assert sharding.spec == PartitionSpec("data", None)
  batch = part.shard_batch({"x": np.ones((2, 3))})
  np.testing.assert_array_equal(np.asarray(batch["x"]), np.ones((2, 3)))


def test_single_process_distributed_config_is_a_no_op():
  partitioning.initialize_distributed(partitioning.DistributedConfig())
  assert jax.process_count() == 1
