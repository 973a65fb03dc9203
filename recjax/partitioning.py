"""Device mesh, logical-axis rules and sharded batches (T5X style).

A `Partitioner` lays all global devices out as a `jax.sharding.Mesh` with
axes `('data', 'model')`. Parameters carry logical axis names (`vocab`,
`embed`, `mlp`, `heads`, `kv`, ...); `logical_axis_rules` maps them onto mesh
axes, so the same model runs data-parallel on one host, or data- and
model-parallel on a TPU pod, by changing `num_partitions` in gin.

Multi-host: call `initialize_distributed` before anything touches the
devices; each process then feeds its own slice of the global batch and
`shard_batch` assembles the global array with
`jax.make_array_from_process_local_data`. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from recjax.errors import ConfigError

PyTree = Any

# Logical axis -> mesh axis. Activations' batch goes to 'data'; wide
# parameter axes go to 'model' (a no-op while num_partitions is 1).
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", None),
    ("relpos_buckets", None),
    ("layers", None),
    ("length", None),
)


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """How to join a multi-process run (`jax.distributed.initialize`).

  Attributes:
    coordinator_address: `host:port` of process 0; None = single process
      (or let JAX auto-detect on TPU pods / SLURM when `auto` is set).
    num_processes: total processes.
    process_id: this process's index.
    auto: call `jax.distributed.initialize()` without arguments (cloud TPU
      pods and SLURM clusters fill them in).
    cpu_collectives: 'gloo' for multi-process CPU runs (tests, laptops).
  """

  coordinator_address: str | None = None
  num_processes: int = 1
  process_id: int = 0
  auto: bool = False
  cpu_collectives: str | None = None


def initialize_distributed(config: DistributedConfig) -> None:
  """Joins a multi-process JAX run if the config asks for one."""
  if config.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation",
                      config.cpu_collectives)
  if config.auto:
    jax.distributed.initialize()
  elif config.coordinator_address and config.num_processes > 1:
    jax.distributed.initialize(config.coordinator_address,
                               num_processes=config.num_processes,
                               process_id=config.process_id)
  else:
    return
  logging.info("jax.distributed: process %d of %d, %d global devices.",
               jax.process_index(), jax.process_count(), jax.device_count())


class Partitioner:
  """A `('data', 'model')` mesh over all global devices.

  Attributes:
    mesh: the device mesh.
    rules: logical axis rules.
  """

  def __init__(self, num_partitions: int = 1,
               logical_axis_rules: tuple[tuple[str, str | None], ...] =
               DEFAULT_RULES,
               devices: list[Any] | None = None):
    """Builds the mesh.

    Args:
      num_partitions: size of the 'model' axis; the rest is 'data'.
      logical_axis_rules: logical axis -> mesh axis.
      devices: devices to use (default: all global devices).

    Raises:
      ConfigError: the device count is not divisible by num_partitions.
    """
    devices = list(jax.devices() if devices is None else devices)
    if num_partitions < 1 or len(devices) % num_partitions:
      raise ConfigError(f"num_partitions={num_partitions} must divide the "
                        f"{len(devices)} devices.")
    grid = np.asarray(devices, dtype=object).reshape(
        len(devices) // num_partitions, num_partitions)
    self.mesh = Mesh(grid, ("data", "model"))
    self.rules = tuple(logical_axis_rules)

  @property
  def data_size(self) -> int:
    """Number of data-parallel shards."""
    return self.mesh.shape["data"]

  # -- shardings ---------------------------------------------------------------

  def sharding(self, spec: PartitionSpec) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  @property
  def replicated(self) -> NamedSharding:
    return self.sharding(PartitionSpec())

  @property
  def data_sharding(self) -> NamedSharding:
    """Leading (batch) axis over 'data'."""
    return self.sharding(PartitionSpec("data"))

  def logical_to_sharding(self, logical_specs: PyTree) -> PyTree:
    """Maps a tree of logical `PartitionSpec`s to `NamedSharding`s."""
    mesh_specs = nn.logical_to_mesh(logical_specs, self.rules)
    return jax.tree.map(self.sharding, mesh_specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))

  def optimizer_state_sharding(self, tx: optax.GradientTransformation,
                               opt_state_shapes: PyTree,
                               param_shardings: PyTree) -> PyTree:
    """Shards optimizer slots like their parameters; the rest replicated."""
    return optax.tree_map_params(
        tx, lambda _, s: s, opt_state_shapes, param_shardings,
        transform_non_params=lambda _: self.replicated,
        is_leaf=lambda x: isinstance(x, NamedSharding))

  # -- batches -----------------------------------------------------------------

  def check_batch_size(self, global_batch_size: int) -> None:
    """Raises ConfigError unless the batch splits evenly over devices."""
    if global_batch_size % self.data_size:
      raise ConfigError(
          f"batch size {global_batch_size} is not divisible by the "
          f"{self.data_size} data-parallel devices; use a multiple of "
          f"{self.data_size}.")
    if global_batch_size % jax.process_count():
      raise ConfigError(f"batch size {global_batch_size} is not divisible by "
                        f"{jax.process_count()} processes.")

  def local_batch_slice(self, global_batch_size: int) -> slice:
    """Rows of the global batch that this process feeds."""
    per = global_batch_size // jax.process_count()
    start = jax.process_index() * per
    return slice(start, start + per)

  def shard_batch(self, local_batch: Mapping[str, np.ndarray]
                  ) -> dict[str, jax.Array]:
    """Assembles global arrays from this process's rows of the batch."""
    return {k: jax.make_array_from_process_local_data(
        self.data_sharding, np.asarray(v)) for k, v in local_batch.items()}
