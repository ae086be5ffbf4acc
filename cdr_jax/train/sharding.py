"""Processes, device mesh and shardings: batches on the `data` axis, stacked models on `model`.

Multi-host (a TPU VM pod slice, a GPU cluster, or several processes on one machine): every process
runs the same program on the same full host arrays; `put` gives each its own shards, and only
process 0 writes run files (`is_writer`).
"""

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def initialize_multihost() -> None:
  """Joins the processes of a multi-host run when CDR_MULTIHOST=1 (else does nothing).

  On TPU VMs and clusters JAX finds the coordinator itself; elsewhere set CDR_COORDINATOR
  (host:port of process 0), CDR_NUM_PROCESSES and CDR_PROCESS_ID. CPU processes exchange
  collectives through gloo.
  """
  if not os.environ.get('CDR_MULTIHOST'):
    return
  kwargs = {}
  if os.environ.get('CDR_COORDINATOR'):
    kwargs = dict(coordinator_address=os.environ['CDR_COORDINATOR'],
                  num_processes=int(os.environ['CDR_NUM_PROCESSES']),
                  process_id=int(os.environ['CDR_PROCESS_ID']))
  if jax.config.jax_platforms in (None, '', 'cpu') and not _has_accelerator():
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)


def _has_accelerator() -> bool:
  """Whether a GPU or TPU backend is installed (without initialising any backend)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  return any(importlib.util.find_spec(m) for m in ('jax_cuda12_plugin', 'jax_cuda13_plugin',
                                                    'libtpu'))


def is_writer() -> bool:
  """Only process 0 writes run files (every process computes the same results)."""
  return jax.process_index() == 0


def make_mesh(axes: tuple[str, ...] = ('data',), shape: tuple[int, ...] | None = None) -> Mesh:
  """A mesh over all devices (of all hosts) with Auto axes; default: one `data` axis."""
  shape = shape or (jax.device_count(),)
  return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh: Mesh, *spec) -> NamedSharding:
  return NamedSharding(mesh, P(*spec))


def put(tree, sharding: NamedSharding):
  """Places host arrays as global arrays with `sharding` (every host passes the same full arrays)."""
  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(one, tree)


def round_to_devices(n: int, mesh: Mesh, axis: str = 'data') -> int:
  """`n` rounded up to a multiple of the size of `axis`."""
  k = mesh.shape[axis]
  return -(-n // k) * k
