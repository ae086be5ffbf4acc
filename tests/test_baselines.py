"""Baselines against values worked out by hand on tiny matrices (the arithmetic in comments)."""

import dataclasses

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax.data import splits
from cdr_jax.eval import baselines
from configs import test as test_config
from tests.conftest import hand_dataset

NAMES = {'global_mean', 'drug_mean', 'cell_mean', 'additive', 'type_drug_mean',
         'matrix_factorization', 'ridge_per_drug'}


def test_group_mean_falls_back_for_empty_and_small_groups():
  values = np.array([1.0, 2.0, 6.0, 10.0])
  group = np.array([0, 0, 0, 2])
  # Group 0: (1 + 2 + 6) / 3 = 3; group 1: no value; group 2: 10 / 1 = 10; group 3: no value.
  np.testing.assert_allclose(baselines.group_mean(values, group, 4, -1.0), [3, -1, 10, -1])
  # min_count=2 sends group 2 (one value) to the fallback too; an array fallback is per group.
  fallback = np.array([100.0, 101.0, 102.0, 103.0])
  np.testing.assert_allclose(baselines.group_mean(values, group, 4, fallback, min_count=2),
                             [3, 101, 102, 103])
  # min_count=4: group 0's three values are too few as well.
  np.testing.assert_allclose(baselines.group_mean(values, group, 4, fallback, min_count=4),
                             fallback)


def test_additive_effects_one_iteration_by_hand():
  # y[cell, drug]: (0,0)=1 (1,0)=3 (0,1)=5 (1,1)=7, so mu = 16 / 4 = 4; drug 2 has no pairs.
  y = np.array([1.0, 3.0, 5.0, 7.0])
  cell, drug = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
  mu, a, b = baselines.additive_effects(y, cell, drug, 2, 3, iters=1, l2=1.0)
  # b = 0, so r = y - 4 = [-3, -1, 1, 3]; a[d] = sum of r over d's pairs / (count + l2):
  # a[0] = (-3 - 1) / (2 + 1) = -4/3, a[1] = (1 + 3) / 3 = 4/3, a[2] = 0 / (0 + 1) = 0.
  # r = y - 4 - a[drug] = [-5/3, 1/3, -1/3, 5/3]; b[0] = (-5/3 - 1/3) / 3 = -2/3, b[1] = 2/3.
  assert mu == 4.0
  np.testing.assert_allclose(a, [-4 / 3, 4 / 3, 0.0])
  np.testing.assert_allclose(b, [-2 / 3, 2 / 3])


def additive_matrix():
  """y = 2 + a[drug] + b[cell] exactly, 4 cells x 3 drugs with 3 of the 12 entries missing."""
  a, b = np.array([1.0, -2.0, 0.5]), np.array([0.0, 3.0, -1.0, 2.0])
  cell, drug = np.meshgrid(np.arange(4), np.arange(3), indexing='ij')
  keep = np.ones(12, bool)
  keep[[1, 6, 11]] = False  # (0, 1), (2, 0), (3, 2) missing: the alternation has to iterate
  cell, drug = cell.ravel()[keep], drug.ravel()[keep]
  return 2.0 + a[drug] + b[cell], cell, drug


def additive_error(iters: int, l2: float) -> float:
  y, cell, drug = additive_matrix()
  mu, a, b = baselines.additive_effects(y, cell, drug, 4, 3, iters=iters, l2=l2)
  return float(np.abs(mu + a[drug] + b[cell] - y).max())


def test_additive_effects_reproduce_an_additive_matrix():
  # More iterations and less shrinkage bring mu + a + b onto the exactly additive y.
  errors = [additive_error(iters, 1e-9) for iters in (1, 5, 50, 300)]
  assert errors[0] > 0.1
  assert errors == sorted(errors, reverse=True)
  assert errors[-1] < 1e-6
  by_l2 = [additive_error(300, l2) for l2 in (1.0, 1e-2, 1e-9)]
  assert by_l2 == sorted(by_l2, reverse=True)
  assert by_l2[0] > 0.1


def rank1_matrix():
  """y = 1 + a[drug] + b[cell] + u[cell] * v[drug] on a full 5 x 4 grid (rank 1 plus biases)."""
  u, v = np.array([1.0, -1.0, 2.0, 0.5, -2.0]), np.array([1.0, 2.0, -1.0, 0.5])
  a, b = np.array([0.5, -0.5, 1.0, 0.0]), np.array([0.2, -0.3, 0.1, 0.0, 0.4])
  cell, drug = (x.ravel() for x in np.meshgrid(np.arange(5), np.arange(4), indexing='ij'))
  return 1.0 + a[drug] + b[cell] + u[cell] * v[drug], cell, drug


def test_matrix_factorization_fits_rank1_plus_biases():
  y, cell, drug = rank1_matrix()
  mu, a, b, u, v = baselines.matrix_factorization(y, cell, drug, 5, 4, rank=1, l2=1e-8, iters=100)
  fit = mu + a[drug] + b[cell] + (u[cell] * v[drug]).sum(1)
  assert np.abs(fit - y).max() < 1e-4
  # The factor term is what fits it: biases alone leave the u·v part as residual.
  mu, a, b = baselines.additive_effects(y, cell, drug, 5, 4, iters=100, l2=1e-8)
  assert np.abs(mu + a[drug] + b[cell] - y).max() > 0.5


def test_matrix_factorization_seed_sets_the_initial_factors():
  y, cell, drug = rank1_matrix()
  # iters=0 returns the initial factors: 0.1 x standard normals from the seed's generator.
  _, _, _, u0, v0 = baselines.matrix_factorization(y, cell, drug, 5, 4, 2, 1.0, 0, seed=0)
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(u0, 0.1 * rng.standard_normal((5, 2)))
  np.testing.assert_array_equal(v0, 0.1 * rng.standard_normal((4, 2)))
  u1 = baselines.matrix_factorization(y, cell, drug, 5, 4, 2, 1.0, 0, seed=1)[3]
  assert not np.allclose(u0, u1)
  # After a few iterations the fit still depends on the seed; the same seed repeats exactly.
  fits = [baselines.matrix_factorization(y, cell, drug, 5, 4, 2, 1.0, 2, seed=s)[3]
          for s in (0, 0, 1)]
  np.testing.assert_array_equal(fits[0], fits[1])
  assert not np.allclose(fits[0], fits[2])


def ridge_dataset():
  """4 cells with features [f, 5] for f = 0..3 (the constant column must not break scaling)."""
  features = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
  # pair: 0 (c0,d0,1)  1 (c1,d0,2)  2 (c2,d0,6)  3 (c3,d0,0)  4 (c0,d1,9)  5 (c3,d2,4)
  return hand_dataset([0, 1, 2, 3, 0, 3], [0, 0, 0, 0, 1, 2], [1, 2, 6, 0, 9, 4],
                      cell_features=features)


def test_ridge_per_drug_matches_the_closed_form():
  ds = ridge_dataset()
  train, pairs = np.array([0, 1, 2, 4]), np.array([3, 0, 5, 4])
  fallback = np.array([-1.0, -2.0, -3.0, -4.0])
  pred = baselines.ridge_per_drug(ds, ds.pair_y, train, pairs, 1.0, fallback)
  # Features are standardised on the training cells 0, 1, 2: mean 1, sd sqrt(2/3), so
  # x = [-sqrt(1.5), 0, sqrt(1.5), 2 sqrt(1.5)] for cells 0..3; the constant column (sd 0) is only
  # centred, to 0, and adds nothing.
  # Drug 0: intercept = mean y = (1 + 2 + 6) / 3 = 3, centred y = [-2, -1, 3];
  # w = sum x (y - 3) / (sum x^2 + lambda) = sqrt(1.5) (2 + 3) / (1.5 + 0 + 1.5 + 1)
  #   = 5 sqrt(1.5) / 4.
  # Cell 3: 3 + 2 sqrt(1.5) * 5 sqrt(1.5) / 4 = 3 + 15/4 = 6.75; cell 0: 3 - 1.5 * 5/4 = 1.125.
  # Drug 1 has one training pair (y = 9): centred y = 0, so w = 0 and it predicts 9.
  # Drug 2 has no training pair: the fallback given for that position (-3).
  np.testing.assert_allclose(pred, [6.75, 1.125, -3.0, 9.0], rtol=1e-6)
  # A huge lambda shrinks w to 0: every drug-0 prediction is its mean, 3.
  pred = baselines.ridge_per_drug(ds, ds.pair_y, train, pairs, 1e12, fallback)
  np.testing.assert_allclose(pred, [3.0, 3.0, -3.0, 9.0], rtol=1e-6)


def naive_dataset():
  """3 cells x 3 drugs, 6 pairs; cell 2 is measured only with drug 0."""
  # pair: 0 (c0,d0,10)  1 (c0,d1,1)  2 (c0,d2,3)  3 (c1,d0,20)  4 (c1,d1,5)  5 (c2,d0,30)
  return hand_dataset([0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 1, 0], [10, 1, 3, 20, 5, 30],
                      cell_type=[0, 1, 1])


def test_naive_cell_mean_leaves_out_the_held_out_drug():
  ds = naive_dataset()
  # Drug 0 held out: the rest is (c0,d1,1) (c0,d2,3) (c1,d1,5); cell 0 = (1 + 3) / 2 = 2,
  # cell 1 = 5, cell 2 has no other drug: the mean of the rest, (1 + 3 + 5) / 3 = 3.
  np.testing.assert_allclose(baselines.naive_cell_mean(ds, 0, np.array([0, 3, 5])), [2, 5, 3])
  # Drug 1 held out: cell 0 = (10 + 3) / 2 = 6.5, cell 1 = 20.
  np.testing.assert_allclose(baselines.naive_cell_mean(ds, 1, np.array([1, 4])), [6.5, 20])


def test_predict_all_by_hand():
  ds = naive_dataset()
  config = test_config.get_config().eval
  train, pairs = np.array([0, 1, 2, 3, 4]), np.array([5, 1])  # pair 5 = (c2, d0), 1 = (c0, d1)
  out = baselines.predict_all(ds, train, pairs, config)
  assert set(out) == NAMES
  assert all(v.dtype == np.float32 and v.shape == (2,) for v in out.values())
  # Training y = [10, 1, 3, 20, 5]: global mean 39 / 5 = 7.8.
  np.testing.assert_allclose(out['global_mean'], [7.8, 7.8], rtol=1e-6)
  # Drug means: d0 = (10 + 20) / 2 = 15, d1 = (1 + 5) / 2 = 3.
  np.testing.assert_allclose(out['drug_mean'], [15, 3])
  # Cell means: c2 has no training pair (global mean 7.8), c0 = (10 + 1 + 3) / 3 = 14/3.
  np.testing.assert_allclose(out['cell_mean'], [7.8, 14 / 3], rtol=1e-6)
  # Types: c0 is T0, c1 and c2 are T1. (T1, d0) = the pair (c1,d0,20); (T0, d1) = (c0,d1,1).
  np.testing.assert_allclose(out['type_drug_mean'], [20, 1])
  # Constant cell features standardise to 0, so per-drug ridge is the drug's mean.
  np.testing.assert_allclose(out['ridge_per_drug'], [15, 3], rtol=1e-6)
  y, cell, drug = ds.pair_y[train].astype(np.float64), ds.pair_cell[train], ds.pair_drug[train]
  mu, a, b = baselines.additive_effects(y, cell, drug, 3, 3)
  np.testing.assert_allclose(out['additive'], mu + a[[0, 1]] + b[[2, 0]], rtol=1e-6)
  mf = baselines.matrix_factorization(y, cell, drug, 3, 3, config.mf_rank, config.mf_l2,
                                      config.mf_iters)
  expected = mf[0] + mf[1][[0, 1]] + mf[2][[2, 0]] + (mf[3][[2, 0]] * mf[4][[0, 1]]).sum(1)
  np.testing.assert_allclose(out['matrix_factorization'], expected, rtol=1e-6)


def test_predict_all_with_a_label_target():
  ds = naive_dataset()
  labels = np.array([1, 0, 0, 1, 1, 0], np.float32)
  out = baselines.predict_all(ds, np.arange(5), np.array([5, 1]), test_config.get_config().eval,
                              labels)
  # Training labels [1, 0, 0, 1, 1]: global rate 3/5; drug 0's rate (1 + 1) / 2 = 1, drug 1's 1/2.
  np.testing.assert_allclose(out['global_mean'], [0.6, 0.6], rtol=1e-6)
  np.testing.assert_allclose(out['drug_mean'], [1.0, 0.5])


@pytest.fixture(scope='module')
def synthetic():
  config = test_config.get_config()
  ds = data.load_dataset(config.data)
  return ds, splits.make_split(ds, config.split), config


def test_predict_all_uses_only_training_pairs(synthetic):
  """Changing the ln IC50 of every non-training pair changes no baseline's prediction."""
  ds, split, config = synthetic
  out = baselines.predict_all(ds, split.train, split.test, config.eval)
  assert set(out) == NAMES
  assert all(v.shape == split.test.shape and np.isfinite(v).all() for v in out.values())
  y = ds.pair_y.copy()
  others = np.setdiff1d(np.arange(ds.num_pairs), split.train)
  y[others] = 100.0
  again = baselines.predict_all(dataclasses.replace(ds, pair_y=y), split.train, split.test,
                                config.eval)
  for name in NAMES:
    np.testing.assert_array_equal(out[name], again[name], err_msg=name)
  # Sanity on the synthetic data (drug effects dominate): the drug mean beats the global mean.
  obs = ds.pair_y[split.test]
  assert np.sqrt(np.mean((out['drug_mean'] - obs) ** 2)) < np.sqrt(
      np.mean((out['global_mean'] - obs) ** 2))
