"""The synthetic dataset: deterministic, real layout, and a planted non-additive interaction."""

import numpy as np

from cdr_jax import data
from configs import demo


def test_deterministic_and_layout():
  cfg = demo.get_config().data
  a, b = data.load_dataset(cfg), data.load_dataset(cfg)
  np.testing.assert_array_equal(a.pair_y, b.pair_y)
  np.testing.assert_array_equal(a.cell_features, b.cell_features)
  assert a.drug_graphs.nodes.shape[1] == 75 and len(a.drug_ids) == 36
  cfg.synthetic_seed = 1
  assert not np.array_equal(data.load_dataset(cfg).pair_y, a.pair_y)


def test_additive_model_leaves_interaction_unexplained():
  ds = data.load_dataset(demo.get_config().data)
  # Fit drug + cell effects by least squares on all pairs; the residual sd stays well above noise.
  n_d, n_c = len(ds.drug_ids), len(ds.cell_ids)
  x = np.zeros((ds.num_pairs, n_d + n_c))
  x[np.arange(ds.num_pairs), ds.pair_drug] = 1
  x[np.arange(ds.num_pairs), n_d + ds.pair_cell] = 1
  coef, *_ = np.linalg.lstsq(x, ds.pair_y, rcond=None)
  residual = ds.pair_y - x @ coef
  assert residual.std() > 2 * demo.get_config().data.noise
