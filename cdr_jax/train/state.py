"""What lives on device: the train state of F stacked models and the dataset arrays they read.

Every leaf of a `TrainState` carries a leading model axis of size F (F = 1 for a single run, F =
folds for the leave-one-drug-out sweep). `DeviceData` holds the dataset once for all models; its
per-model fields carry the same leading axis, declared once in `MODEL_AXES`.
"""

from typing import Any

import flax
import jax
import jraph
import numpy as np

from cdr_jax.data.dataset import Dataset


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (one model; stacked along axis 0 for F models)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


@flax.struct.dataclass
class DeviceData:
  """Dataset arrays on device: shared by all models, except the per-model fields (axis 0 = model).

  `train_mask` marks each model's training pairs (its loss weights); `cell_active` / `drug_active`
  the entities in them (only those enter BatchNorm statistics); `y_mean` / `y_std` standardise ln
  IC50 with the model's training pairs; `l2_scale` is 1 / its number of training pairs (a penalty
  lambda on the summed squared error becomes lambda * l2_scale on the mean loss of a step);
  `line_l2` is the model's lambda of the per-line linear term (`models.EntityLinear`: each LODO fold
  chooses its own).
  """
  graphs: jraph.GraphsTuple   # every drug graph once, padded to fixed budgets
  cell_x: jax.Array           # [C, K] cell features (standardised on training cells)
  drug_x: jax.Array           # [D, K'] vector drug features (standardised; K' = 0: graph only)
  drug_k: jax.Array           # [D, m] the drug kernel map (lodo_kernel.kernel_map; m = 0: none)
  pair_cell: jax.Array        # [P] int32
  pair_drug: jax.Array        # [P] int32
  pair_y: jax.Array           # [P] float32 ln IC50
  pair_label: jax.Array       # [P] float32: 1 sensitive, 0 resistant, -1 no threshold
  train_mask: jax.Array       # [F, P] uint8 (per model)
  cell_active: jax.Array      # [F, C] bool (per model)
  drug_active: jax.Array      # [F, D] bool (per model)
  y_mean: jax.Array           # [F] float32 (per model)
  y_std: jax.Array            # [F] float32 (per model)
  l2_scale: jax.Array         # [F] float32 (per model)
  line_l2: jax.Array          # [F] float32 (per model)

  def model(self, i: int) -> 'DeviceData':
    """The single-model view of model `i` (per-model fields indexed, shared fields as they are)."""
    return jax.tree.map(lambda axis, x: x if axis is None else jax.tree.map(lambda a: a[i], x),
                        MODEL_AXES, self, is_leaf=lambda a: a is None)


# The vmap axes of `DeviceData`: None for shared fields, 0 for per-model ones.
MODEL_AXES = DeviceData(graphs=None, cell_x=None, drug_x=None, drug_k=None, pair_cell=None,
                        pair_drug=None, pair_y=None, pair_label=None, train_mask=0, cell_active=0,
                        drug_active=0, y_mean=0, y_std=0, l2_scale=0, line_l2=0)


def device_data(ds: Dataset, features: np.ndarray, drug_features: np.ndarray,
                train_sets: list[np.ndarray], drug_kmap: np.ndarray | None = None,
                line_l2: np.ndarray | float = 0.0) -> DeviceData:
  """Host arrays for F models, model f training on the pairs `train_sets[f]` (`drug_kmap`: the
  drug kernel map, `line_l2`: the per-line linear term's lambda, one or one per model)."""
  if drug_kmap is None:
    drug_kmap = np.zeros((len(ds.drug_ids), 0), np.float32)
  g = ds.drug_graphs
  mask = np.zeros((len(train_sets), ds.num_pairs), np.uint8)
  for f, pairs in enumerate(train_sets):
    mask[f, pairs] = 1
  ys = [ds.pair_y[pairs] for pairs in train_sets]
  return DeviceData(
      graphs=jraph.GraphsTuple(nodes=g.nodes, edges=None, senders=g.senders,
                               receivers=g.receivers, globals=None, n_node=g.n_node,
                               n_edge=g.n_edge),
      cell_x=np.asarray(features, np.float32), drug_x=np.asarray(drug_features, np.float32),
      drug_k=np.asarray(drug_kmap, np.float32),
      pair_cell=ds.pair_cell, pair_drug=ds.pair_drug,
      pair_y=ds.pair_y, pair_label=ds.pair_label.astype(np.float32), train_mask=mask,
      cell_active=np.stack([np.isin(np.arange(len(ds.cell_ids)), ds.pair_cell[p])
                            for p in train_sets]),
      drug_active=np.stack([np.isin(np.arange(len(ds.drug_ids)), ds.pair_drug[p])
                            for p in train_sets]),
      y_mean=np.array([y.mean() for y in ys], np.float32),
      y_std=np.array([y.std() for y in ys], np.float32),
      l2_scale=np.array([1.0 / max(len(p), 1) for p in train_sets], np.float32),
      line_l2=np.broadcast_to(np.asarray(line_l2, np.float32), (len(train_sets),)).copy())


def num_models(states: TrainState) -> int:
  """F, the size of the leading model axis."""
  return int(states.step.shape[0])


def param_count(params) -> int:
  """Number of parameters of one model (`params` without a model axis)."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
