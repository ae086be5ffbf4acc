"""Why vmapped LODO folds lose on CPU: one GCN layer, K folds vmapped vs one fold, three layouts.

  python bench/gcn_layout.py [--folds=8] [--units=64] [--repeats=30]
One layer, H' = relu(Â (H W)), forward + backward, on the real drug graphs (all 223 drugs), each
fold with its own W and H. Layouts of the propagation Â·:
  flat     the model's: every atom in one array, gather over edges + segment sum
  padded   atoms of drugs of similar size padded into blocks, Â as a dense [block, M, M] batched
           matmul (no gather or scatter; vmap folds the model axis into the matmul's free axis)
  ell      a neighbour table (max degree + self loop), gather only, Â's symmetry as its transpose
Prints JSON: ms per call for one fold and for K folds vmapped, and sequential / vmapped (> 1 means
vmapping pays).
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cdr_jax import data
from configs import baseline

_FOLDS = flags.DEFINE_integer('folds', 8, 'K: folds vmapped side by side.')
_UNITS = flags.DEFINE_integer('units', 64, 'Layer width (the lodo variant: 64).')
_REPEATS = flags.DEFINE_integer('repeats', 30, 'Timed calls per measurement.')
BLOCK_SIZES = (16, 24, 32, 40, 48, 64, 96, 128, 192, 256)   # atoms per padded drug


def graph_arrays(graphs):
  """(atoms per drug, senders, receivers, symmetric normalised edge and self weights) of real atoms."""
  n_node = np.asarray(graphs.n_node)[:-1]
  n_edge = int(np.asarray(graphs.n_edge)[:-1].sum())
  senders, receivers = np.asarray(graphs.senders)[:n_edge], np.asarray(graphs.receivers)[:n_edge]
  degree = 1.0 + np.bincount(receivers, minlength=int(n_node.sum()))
  edge_w = (degree[senders] * degree[receivers]) ** -0.5
  return n_node, senders, receivers, edge_w.astype(np.float32), (1.0 / degree).astype(np.float32)


def flat_propagation(senders, receivers, edge_w, self_w):
  def prop(hw):
    agg = jax.ops.segment_sum(hw[senders] * edge_w[:, None], receivers, num_segments=hw.shape[0])
    return agg + hw * self_w[:, None]
  return prop, np.arange(len(self_w)), len(self_w)


def padded_propagation(n_node, senders, receivers, edge_w, self_w):
  """Drugs grouped by size into blocks of M atoms; rows ordered block by block, drug by drug.

  Returns (propagation, the row of each atom, rows in all).
  """
  starts = np.concatenate([[0], np.cumsum(n_node)])
  blocks, lower, atom_rows, row = [], 0, np.zeros(int(n_node.sum()), np.int64), 0
  for size in BLOCK_SIZES:
    ids = np.flatnonzero((n_node > lower) & (n_node <= size))
    lower = size
    if not len(ids):
      continue
    adj = np.zeros((len(ids), size, size), np.float32)
    for b, d in enumerate(ids):
      s, n = starts[d], n_node[d]
      inside = (receivers >= s) & (receivers < s + n)
      adj[b, receivers[inside] - s, senders[inside] - s] = edge_w[inside]
      adj[b, np.arange(n), np.arange(n)] = self_w[s:s + n]
      atom_rows[s:s + n] = row + np.arange(n)
      row += size
    blocks.append(jnp.asarray(adj))
  if lower < n_node.max():
    raise ValueError(f'a drug has {n_node.max()} atoms; BLOCK_SIZES stop at {lower}')

  def prop(hw):
    out, row = [], 0
    for adj in blocks:
      rows = adj.shape[0] * adj.shape[1]
      part = hw[row:row + rows].reshape(adj.shape[0], adj.shape[1], -1)
      out.append(jnp.einsum('bij,bjf->bif', adj, part).reshape(rows, -1))
      row += rows
    return jnp.concatenate(out)
  return prop, atom_rows, row


def ell_propagation(senders, receivers, edge_w, self_w):
  num = len(self_w)
  degree = np.bincount(receivers, minlength=num)
  table = np.tile(np.arange(num)[:, None], (1, degree.max() + 1))   # padding: self, weight 0
  weight = np.zeros(table.shape, np.float32)
  weight[:, 0] = self_w
  slot = np.ones(num, int)
  for s, r, w in zip(senders, receivers, edge_w):
    table[r, slot[r]], weight[r, slot[r]] = s, w
    slot[r] += 1
  table, weight = jnp.asarray(table), jnp.asarray(weight)

  @jax.custom_vjp
  def prop(hw):
    return jnp.einsum('nd,ndf->nf', weight, hw[table])
  prop.defvjp(lambda hw: (prop(hw), None), lambda _, g: (prop(g),))   # Â is symmetric
  return prop, np.arange(num), num


def time_call(fn, *args) -> float:
  """Milliseconds per call of jitted `fn`, compiled first, untimed."""
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(_REPEATS.value):
    out = fn(*args)
  jax.block_until_ready(out)
  return 1000 * (time.perf_counter() - start) / _REPEATS.value


def measure(prop, rows: int, folds: int, units: int) -> dict:
  def loss(w, h):
    return jnp.sum(jax.nn.relu(prop(h @ w)) ** 2)
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(0, 0.1, (folds, units, units)).astype(np.float32))
  h = jnp.asarray(rng.random((folds, rows, units)).astype(np.float32))
  one = time_call(jax.jit(jax.grad(loss)), w[0], h[0])
  vmapped = time_call(jax.jit(jax.grad(lambda w, h: jax.vmap(loss)(w, h).sum())), w, h)
  return {'rows': rows, 'one_fold_ms': round(one, 2), 'vmapped_ms': round(vmapped, 2),
          'vmapped_ms_per_fold': round(vmapped / folds, 2),
          'sequential_over_vmapped': round(folds * one / vmapped, 2)}


def main(argv):
  del argv
  ds = data.load_dataset(baseline.get_config('lodo').data)
  n_node, senders, receivers, edge_w, self_w = graph_arrays(ds.drug_graphs)
  layouts = {'flat': flat_propagation(senders, receivers, edge_w, self_w),
             'padded': padded_propagation(n_node, senders, receivers, edge_w, self_w),
             'ell': ell_propagation(senders, receivers, edge_w, self_w)}
  out = {'folds': _FOLDS.value, 'units': _UNITS.value, 'atoms': int(n_node.sum()),
         'edges': int(len(senders)), 'backend': jax.default_backend()}
  hw = np.random.default_rng(1).random((int(n_node.sum()), 4)).astype(np.float32)
  reference = np.asarray(layouts['flat'][0](jnp.asarray(hw)))
  for name, (prop, atom_rows, rows) in layouts.items():
    h = np.zeros((rows, hw.shape[1]), np.float32)
    h[atom_rows] = hw
    np.testing.assert_allclose(np.asarray(prop(jnp.asarray(h)))[atom_rows], reference, rtol=1e-5,
                               atol=1e-6, err_msg=f'{name} propagation differs from flat')
    out[name] = measure(prop, rows, _FOLDS.value, _UNITS.value)
    print(name, out[name], file=sys.stderr, flush=True)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
