"""Device mesh and shardings: batches on the `data` axis, parameters and entity data replicated."""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


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
