"""The kernel-ridge leave-one-drug-out baseline: hand-checked folds, closed-form LOO, no leakage."""

import dataclasses
import re

import numpy as np
import pytest

from cdr_jax.eval import lodo_kernel as lk


def pairs_from_matrix(y):
  """Pairs (cell, drug, y) of a [C, D] matrix, nan = unmeasured."""
  cell, drug = np.nonzero(np.isfinite(y))
  return cell.astype(np.int32), drug.astype(np.int32), y[cell, drug].astype(np.float32)


PLAIN = {'naive': 'mean', 'per_component': False}   # the forms the hand checks below spell out


def random_problem(seed=0, n_cells=9, n_drugs=7):
  rng = np.random.default_rng(seed)
  y = rng.normal(size=(n_cells, n_drugs)) + rng.normal(size=(n_cells, 1))
  y[rng.random(y.shape) < 0.15] = np.nan
  features = rng.normal(size=(n_drugs, 3))
  kernels = np.stack([lk.rbf_kernel(features), lk.cosine_kernel(features) ** 2])
  return pairs_from_matrix(y), kernels


def explicit_ridge(kernel, train, test, targets, lam):
  """Kernel ridge refitted from scratch on `train` rows, evaluated at `test` rows."""
  a = kernel[np.ix_(train, train)] + lam * np.eye(len(train))
  return kernel[np.ix_(test, train)] @ np.linalg.solve(a, targets)


def test_naive_profile_and_profile_matrix_by_hand():
  # 2 lines x 3 drugs; line 0 measured twice on drug 1 (GDSC repeats pairs).
  cell = np.array([0, 0, 0, 0, 1, 1])
  drug = np.array([0, 1, 1, 2, 0, 2])
  y = np.array([1.0, 2.0, 4.0, 6.0, 3.0, 5.0], np.float32)
  np.testing.assert_allclose(lk.naive_profile(cell, drug, y, 2, 0), [(2 + 4 + 6) / 3, 5.0])
  np.testing.assert_allclose(lk.naive_profile(cell, drug, y, 2, 2), [(1 + 2 + 4) / 3, 3.0])
  # Line 1 has no pair outside drug 0 and 2 together: it gets the mean of all other pairs.
  np.testing.assert_allclose(lk.naive_profile(cell[:4], drug[:4], y[:4], 2, 0), [4.0, 4.0])
  np.testing.assert_allclose(lk.profile_matrix(cell, drug, y, 2, 3),
                             [[1.0, 3.0, 6.0], [3.0, np.nan, 5.0]])


def test_zscored_deviations_by_hand():
  profiles = np.array([[1.0, 5.0], [2.0, np.nan], [6.0, 1.0]])
  z, spread = lk.zscored_deviations(profiles, naive=np.array([1.0, 1.0, 1.0]))
  # drug 0: deviations 0, 1, 5 (mean 2, std sqrt(14/3)); drug 1: 4, -, 0 (mean 2, std 2).
  np.testing.assert_allclose(spread, [np.sqrt(14 / 3), 2.0])
  np.testing.assert_allclose(z, [np.array([-2, -1, 3]) / np.sqrt(14 / 3), [1.0, 0.0, -1.0]])


def test_kernels_by_hand():
  bits = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]])
  np.testing.assert_allclose(lk.tanimoto_kernel(bits), [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 0]])
  x = np.array([[3.0, 4.0], [4.0, 3.0], [0.0, 0.0]])
  np.testing.assert_allclose(lk.cosine_kernel(x), [[1, 0.96, 0], [0.96, 1, 0], [0, 0, 0]])
  # Squared distances 2, 25, 25: median 25, so gamma = 1/25.
  np.testing.assert_allclose(lk.rbf_kernel(x)[0], [1.0, np.exp(-2 / 25), np.exp(-1.0)])
  np.testing.assert_allclose(lk.rbf_kernel(x, gamma=1.0)[0, 1], np.exp(-2.0))


@pytest.mark.parametrize('held_out', [0, 3, 6])
def test_closed_form_equals_explicit_refits(held_out):
  rng = np.random.default_rng(1)
  f = rng.normal(size=(7, 4))
  kernel = lk.rbf_kernel(f) + 0.5 * lk.tanimoto_kernel(f > 0)
  targets = rng.normal(size=(6, 5))  # the 6 drugs other than held_out, in drug order
  others = np.delete(np.arange(7), held_out)
  eigen = lk.KernelEigen(kernel)
  lambdas = [0.05, 0.7, 4.0]
  errors = eigen.loo_errors(held_out, targets, lambdas)
  for lam, error in zip(lambdas, errors):
    np.testing.assert_allclose(eigen.predict(held_out, targets, lam),
                               explicit_ridge(kernel, others, [held_out], targets, lam)[0])
    resid = [targets[i] - explicit_ridge(kernel, np.delete(others, i), [others[i]],
                                         np.delete(targets, i, axis=0), lam)[0]
             for i in range(6)]
    assert error == pytest.approx(np.mean(np.square(resid)), rel=1e-9)


def test_three_drug_fold_by_hand():
  # Held-out drug 0 resembles drug 1 (k = 0.5) only. Lines 0..2: drug 1 = 1, 2, 3 and
  # drug 2 = 3, 2, 1, so naive = 2, 2, 2; both deviations have spread sqrt(2/3) and
  # z_1 = (-1, 0, 1) / sqrt(2/3).
  # zhat_0 = 0.5 / (1 + lam) * z_1, and with lam = 1 the profile is 2 + 0.25 * (-1, 0, 1).
  y = np.array([[9.0, 1.0, 3.0], [-4.0, 2.0, 2.0], [0.0, 3.0, 1.0]])
  kernel = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
  res = lk.lodo_kernel_ridge(*pairs_from_matrix(y), 3, kernel[None], [[1.0]], [1.0], **PLAIN)
  np.testing.assert_allclose(res.profiles[0], [1.75, 2.0, 2.25])
  np.testing.assert_allclose(res.naive[0], [2.0, 2.0, 2.0])
  cell, drug, _ = pairs_from_matrix(y)
  np.testing.assert_allclose(res.pair_predictions(cell, drug)[drug == 0], [1.75, 2.0, 2.25])


def test_choice_is_the_explicit_leave_one_out_minimum():
  (cell, drug, y), kernels = random_problem()
  grid, lambdas = np.array([[1.0, 0.0], [0.3, 1.0]]), [0.1, 1.0, 10.0]
  res = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, grid, lambdas, **PLAIN)
  ybar = lk.profile_matrix(cell, drug, y, 9, 7)
  for d in (0, 4):
    z, spread = lk.zscored_deviations(np.delete(ybar, d, axis=1), res.naive[d])
    others = np.delete(np.arange(7), d)
    errors = {}
    for g, w in enumerate(grid):
      kernel = np.tensordot(w, kernels, 1)
      for lam in lambdas:
        resid = [z[i] - explicit_ridge(kernel, np.delete(others, i), [others[i]],
                                       np.delete(z, i, axis=0), lam)[0] for i in range(6)]
        errors[g, lam] = np.mean(np.square(resid))
    g, lam = min(errors, key=errors.get)
    np.testing.assert_array_equal(res.weights[d], grid[g])
    assert res.lam[d] == lam and res.loo_error[d] == pytest.approx(errors[g, lam])
    kernel = np.tensordot(grid[g], kernels, 1)
    expected = res.naive[d] + spread.mean() * explicit_ridge(kernel, others, [d], z, lam)[0]
    np.testing.assert_allclose(res.profiles[d], expected)


def test_held_out_labels_never_reach_their_prediction():
  (cell, drug, y), kernels = random_problem(seed=2)
  grid, lambdas = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), [0.1, 1.0, 10.0]
  res = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, grid, lambdas)
  rng = np.random.default_rng(3)
  for d in range(7):
    scrambled = y.copy()
    mine = drug == d
    scrambled[mine] = rng.normal(5.0, 3.0, mine.sum())
    other = lk.lodo_kernel_ridge(cell, drug, scrambled, 9, kernels, grid, lambdas)
    np.testing.assert_array_equal(other.profiles[d], res.profiles[d])
    np.testing.assert_array_equal(other.weights[d], res.weights[d])
    assert other.lam[d] == res.lam[d]
    assert not np.array_equal(other.profiles, res.profiles)  # other folds do read drug d's labels


def test_per_drug_pcc_by_hand():
  pred = np.array([1.0, 2.0, 3.0, 5.0, 5.0, 1.0, 2.0])
  obs = np.array([2.0, 4.0, 6.0, 1.0, 2.0, 3.0, 1.0])
  drug = np.array([0, 0, 0, 1, 1, 2, 2])
  out = lk.per_drug_pcc(pred, obs, drug, 4)
  np.testing.assert_allclose(out[[0, 2]], [1.0, -1.0])
  assert np.isnan(out[1]) and np.isnan(out[3])  # constant prediction; no pairs


def test_bad_shapes_are_refused():
  with pytest.raises(ValueError, match='weight_grid'):
    lk.lodo_kernel_ridge(np.zeros(2, int), np.zeros(2, int), np.zeros(2), 1, np.ones((2, 3, 3)),
                         [[1.0, 2.0, 3.0]], [1.0])
  with pytest.raises(ValueError, match='positive'):
    lk.lodo_kernel_ridge(np.zeros(2, int), np.zeros(2, int), np.zeros(2), 1, np.ones((1, 3, 3)),
                         [[1.0]], [0.0])


def test_folds_subset_matches_all_folds():
  (cell, drug, y), kernels = random_problem(seed=4)
  full = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, np.ones((1, 2)), [0.1, 1.0])
  some = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, np.ones((1, 2)), [0.1, 1.0],
                              folds=[1, 5])
  np.testing.assert_allclose(some.profiles[[1, 5]], full.profiles[[1, 5]])
  assert np.isnan(some.profiles[[0, 2, 3, 4, 6]]).all()


def test_without_drug_is_the_baseline_on_the_data_without_that_drug():
  """Scores drugs 2 and 4 as held out from the data without drug 0; drug 0's labels are unread."""
  from tests.conftest import hand_dataset  # pylint: disable=g-import-not-at-top
  (cell, drug, y), kernels = random_problem(seed=5)
  kernel = kernels.sum(0)
  ds = hand_dataset(cell, drug, y)
  pairs = np.flatnonzero(np.isin(drug, [2, 4]))
  got = lk.without_drug(ds, kernel, 0, [2, 4], pairs)
  keep = drug != 0   # drugs 1..6 become 0..5
  ref = lk.lodo_kernel_ridge(cell[keep], drug[keep] - 1, y[keep], 9, kernel[1:, 1:][None],
                             np.ones((1, 1)), lk.LAMBDAS)
  np.testing.assert_allclose(got, ref.profiles[drug[pairs] - 1, cell[pairs]])
  scrambled = y.copy()
  scrambled[drug == 0] = 99.0
  again = lk.without_drug(hand_dataset(cell, drug, scrambled), kernel, 0, [2, 4], pairs)
  np.testing.assert_array_equal(again, got)


def test_kernel_map_reproduces_the_kernel_and_its_ridge():
  """Dot products of the map are the kernel; ridge without intercept on the map, fitted on some
  drugs, scores another drug exactly as kernel ridge does."""
  rng = np.random.default_rng(4)
  f = rng.normal(size=(7, 3))
  kernel = lk.rbf_kernel(f) + 2.0 * lk.tanimoto_kernel(f > 0)
  phi = lk.kernel_map(kernel)
  np.testing.assert_allclose(phi @ phi.T, kernel, atol=1e-10)
  train, targets, lam = np.array([0, 2, 3, 5]), rng.normal(size=(4, 6)), 0.7
  w = np.linalg.solve(phi[train].T @ phi[train] + lam * np.eye(phi.shape[1]), phi[train].T @ targets)
  np.testing.assert_allclose(phi[[1, 6]] @ w, explicit_ridge(kernel, train, [1, 6], targets, lam),
                             atol=1e-10)
  # A rank-deficient kernel keeps only its positive eigenvalues.
  low = np.outer(f[:, 0], f[:, 0])
  assert lk.kernel_map(low).shape == (7, 1)
  np.testing.assert_allclose(lk.kernel_map(low) @ lk.kernel_map(low).T, low, atol=1e-10)


@pytest.mark.parametrize('naive,per_component',
                         [('mean', False), ('zscored', False), ('zscored', True)])
def test_fit_drugs_is_the_baseline_on_its_drugs(naive, per_component):
  """Fitted on the pairs of drugs 1..6, `fit_drugs` is the held-out-drug baseline of drug 0 (which
  holds out drug 0 from the same data): the same ridge, the same profile."""
  (cell, drug, y), kernels = random_problem(seed=5)
  kernel = kernels[0] + kernels[1]
  lambdas = [0.1, 1.0, 10.0]
  opts = {'naive': naive, 'per_component': per_component}
  base = lk.lodo_kernel_ridge(cell, drug, y, 9, kernel[None], [[1.0]], lambdas, folds=[0], **opts)
  rest = drug != 0
  fit = lk.fit_drugs(cell[rest], drug[rest], y[rest], 9, kernel, lambdas, **opts)
  np.testing.assert_array_equal(fit.drugs, np.arange(1, 7))
  assert fit.lam == base.lam[0] and fit.loo_error == pytest.approx(base.loo_error[0])
  if per_component:
    np.testing.assert_array_equal(fit.component_lam, base.component_lam[0])
    assert sum(fit.params['components_per_lambda'].values()) == len(fit.component_lam)
  np.testing.assert_allclose(fit.naive, base.naive[0])
  np.testing.assert_allclose(fit.profiles(kernel, [0])[0], base.profiles[0], atol=1e-10)


def test_fit_drugs_three_drugs_by_hand():
  """The three-drug fold above, fitted on drugs 1 and 2 plus a drug 3 that makes three: drug 3 has
  the profile of drug 1 and no similarity to anything, so with lam = 1 drug 0 is still scored
  2 + 0.25 * (-1, 0, 1) x (the spread of drugs 1..3 over the mean spread)."""
  y = np.array([[9.0, 1.0, 3.0, 1.0], [-4.0, 2.0, 2.0, 2.0], [0.0, 3.0, 1.0, 3.0]])
  kernel = np.eye(4)
  kernel[0, 1] = kernel[1, 0] = 0.5
  cell, drug, vals = pairs_from_matrix(y)
  rest = drug != 0
  fit = lk.fit_drugs(cell[rest], drug[rest], vals[rest], 3, kernel, [1.0], **PLAIN)
  # Naive over drugs 1..3: (5/3, 2, 7/3); each deviation z-scored; zhat_0 = 0.5 / 2 * z_1.
  naive = np.array([5.0, 6.0, 7.0]) / 3
  dev1 = y[:, 1] - naive
  z1 = (dev1 - dev1.mean()) / dev1.std()
  spreads = [(y[:, j] - naive).std() for j in (1, 2, 3)]
  np.testing.assert_allclose(fit.naive, naive)
  assert fit.spread == pytest.approx(np.mean(spreads))
  np.testing.assert_allclose(fit.profiles(kernel, [0])[0], naive + np.mean(spreads) * 0.25 * z1)
  with pytest.raises(ValueError, match='at least 2 drugs'):
    lk.fit_drugs(cell[drug == 1], drug[drug == 1], vals[drug == 1], 3, kernel, [1.0])
  with pytest.raises(ValueError, match='positive ridges'):
    lk.fit_drugs(cell, drug, vals, 3, kernel, [0.0])


def test_zscored_naive_by_hand():
  # Drug 0: 1, 3, nan (mean 2, spread 1 -> z -1, 1); drug 1: 10, 30, 20 (mean 20, spread
  # sqrt(200/3) -> z -sqrt(1.5), sqrt(1.5), 0). Mean level 11, mean spread (1 + sqrt(200/3)) / 2.
  profiles = np.array([[1.0, 10.0], [3.0, 30.0], [np.nan, 20.0], [np.nan, np.nan]])
  line_z = np.array([(-1 - np.sqrt(1.5)) / 2, (1 + np.sqrt(1.5)) / 2, 0.0, 0.0])
  np.testing.assert_allclose(lk.zscored_naive(profiles),
                             11.0 + (1 + np.sqrt(200 / 3)) / 2 * line_z)
  # The wide drug 1 does not outweigh drug 0: line 0 and line 1 are symmetric about the level.
  out = lk.zscored_naive(profiles)
  assert out[0] - 11.0 == pytest.approx(11.0 - out[1])


@pytest.mark.parametrize('held_out', [0, 4])
def test_per_component_lambdas_are_explicit_leave_one_out_minima(held_out):
  rng = np.random.default_rng(4)
  f = rng.normal(size=(7, 3))
  kernel = lk.rbf_kernel(f) + 0.3 * lk.cosine_kernel(f) ** 2
  targets = rng.normal(size=(6, 5)) + np.outer(rng.normal(size=6), rng.normal(size=5)) * 3
  others = np.delete(np.arange(7), held_out)
  lambdas = [0.05, 0.5, 5.0]
  eigen = lk.KernelEigen(kernel)
  pred, lams, error = eigen.per_component(held_out, targets, lambdas)
  u, s, vt = np.linalg.svd(targets, full_matrices=False)
  scores, expected, total = u * s, np.zeros(5), 0.0
  for j in range(scores.shape[1]):
    errs = {}
    for lam in lambdas:
      resid = [scores[i, j] - explicit_ridge(kernel, np.delete(others, i), [others[i]],
                                             np.delete(scores[:, j], i), lam)[0]
               for i in range(6)]
      errs[lam] = np.sum(np.square(resid))
    best = min(errs, key=errs.get)
    assert lams[j] == best
    total += errs[best]
    expected += explicit_ridge(kernel, others, [held_out], scores[:, j], best)[0] * vt[j]
  np.testing.assert_allclose(pred, expected, atol=1e-10)
  assert error == pytest.approx(total / targets.size)
  # One candidate lambda: the plain ridge; and no single lambda has a lower LOO error.
  np.testing.assert_allclose(eigen.per_component(held_out, targets, [0.5])[0],
                             eigen.predict(held_out, targets, 0.5), atol=1e-10)
  assert error <= eigen.loo_errors(held_out, targets, lambdas).min() + 1e-12


def test_variants_wire_through_and_never_read_held_out_labels():
  (cell, drug, y), kernels = random_problem(seed=5)
  ybar = lk.profile_matrix(cell, drug, y, 9, 7)
  res = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, [[1.0, 1.0]], [0.1, 1.0, 10.0],
                             naive='zscored', per_component=True)
  eigen = lk.KernelEigen(kernels.sum(0))
  rng = np.random.default_rng(6)
  for d in range(7):
    rest = np.delete(ybar, d, axis=1)
    np.testing.assert_allclose(res.naive[d], lk.zscored_naive(rest))
    # Deviations of the z-scored profiles (by hand) from the line's mean z-score.
    mean, sd = np.nanmean(rest, 0), np.nanstd(rest, 0)
    cols = (rest - mean) / sd
    line_z = np.nanmean(cols, 1)
    np.testing.assert_allclose(res.naive[d], mean.mean() + sd.mean() * line_z)
    z, spread = lk.zscored_deviations(cols, line_z)
    zhat, lams, _ = eigen.per_component(d, z, [0.1, 1.0, 10.0])
    np.testing.assert_allclose(res.profiles[d],
                               res.naive[d] + sd.mean() * spread.mean() * zhat)
    np.testing.assert_array_equal(res.component_lam[d], lams)
    scrambled = y.copy()
    scrambled[drug == d] = rng.normal(5.0, 3.0, (drug == d).sum())
    other = lk.lodo_kernel_ridge(cell, drug, scrambled, 9, kernels, [[1.0, 1.0]],
                                 [0.1, 1.0, 10.0], naive='zscored', per_component=True)
    np.testing.assert_array_equal(other.profiles[d], res.profiles[d])
  with pytest.raises(ValueError, match='naive'):
    lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, [[1.0, 1.0]], [1.0], naive='median')


# ---------------------------------------------------------------------------------------------
# Screens: one profile column per (drug, screen); a drug leaves with all its screens.

def screened_problem(seed=0, third=False):
  """`random_problem` with drugs 1 and 4 measured again in a second screen (ids 7 and 8) on six
  lines each, fresh readings drawn around 2 ln IC50 (unrelated to the first screen's); with
  `third`, drug 1 also in a third screen (id 9): [P] cell, drug, y and screen, and the kernels."""
  (cell, drug, y), kernels = random_problem(seed)
  rng = np.random.default_rng(seed + 100)
  again = ((1, 7), (4, 8)) + (((1, 9),) if third else ())
  extra = [(np.sort(rng.choice(9, 6, replace=False)), d, s) for d, s in again]
  n = len(drug)
  cell = np.concatenate([cell] + [lines for lines, _, _ in extra]).astype(np.int32)
  drug = np.concatenate([drug] + [np.full(6, d) for _, d, _ in extra]).astype(np.int32)
  y = np.concatenate([y] + [rng.normal(2.0, 1.0, 6) for _ in extra]).astype(np.float32)
  screen = np.concatenate([drug[:n]] + [np.full(6, s) for _, _, s in extra])
  return cell, drug, y, screen, kernels


def test_column_drugs_by_hand():
  drug, screen = np.array([2, 0, 2, 1, 2]), np.array([5, 3, 9, 4, 5])
  column, column_drug = lk.column_drugs(drug, screen, 3)
  np.testing.assert_array_equal(column_drug, [0, 1, 2, 2])       # (0,3) (1,4) (2,5) (2,9)
  np.testing.assert_array_equal(column, [2, 0, 3, 1, 2])
  column, column_drug = lk.column_drugs(drug, None, 4)            # one column per drug
  np.testing.assert_array_equal(column, drug)
  np.testing.assert_array_equal(column_drug, np.arange(4))
  with pytest.raises(ValueError, match='pair_screen has 2 entries for 5 pairs'):
    lk.column_drugs(drug, screen[:2], 3)
  # Drug 3 has no pair: an empty column of its own, as without screens.
  column, column_drug = lk.column_drugs(drug, screen, 4)
  np.testing.assert_array_equal(column_drug, [0, 1, 2, 2, 3])
  np.testing.assert_array_equal(column, [2, 0, 3, 1, 2])


def test_group_residuals_are_explicit_refits_without_the_group():
  rng = np.random.default_rng(4)
  f = rng.normal(size=(5, 3))
  groups = np.array([0, 1, 1, 2, 3, 3, 3, 4])            # drug 1: two columns; drug 3: three
  kernel = lk.rbf_kernel(f)[np.ix_(groups, groups)]
  targets = rng.normal(size=(8, 4))
  lam = 0.4
  got = lk.loo_residuals(np.linalg.inv(kernel + lam * np.eye(8)), targets, groups)
  for g in range(5):
    rows, rest = np.flatnonzero(groups == g), np.flatnonzero(groups != g)
    want = targets[rows] - explicit_ridge(kernel, rest, rows, targets[rest], lam)
    np.testing.assert_allclose(got[rows], want, atol=1e-10)
  # Without groups, row 1 alone leaves: its twin (same drug) stays and predicts it.
  alone = lk.loo_residuals(np.linalg.inv(kernel + lam * np.eye(8)), targets)
  assert np.abs(alone[1] - got[1]).max() > 1e-3


@pytest.mark.parametrize('third', [False, True])
@pytest.mark.parametrize('held_out', [1, 0])
def test_screen_columns_choice_and_profile_are_explicit_refits(held_out, third):
  """With screens, fold d fits one column per screen of the other drugs, chooses lambda by
  leaving each other drug out with all its screens, and predicts d (all its screens held out)
  from its kernel row: each step checked against refits from scratch. With `third`, drug 1 has
  three screens: held out (held_out=1), or leaving the leave-one-out as a group of three."""
  cell, drug, y, screen, kernels = screened_problem(third=third)
  kernel, lambdas = kernels[0] + kernels[1], [0.1, 1.0, 10.0]
  res = lk.lodo_kernel_ridge(cell, drug, y, 9, kernel[None], [[1.0]], lambdas, **PLAIN,
                             pair_screen=screen)
  column, column_drug = lk.column_drugs(drug, screen, 7)
  assert len(column_drug) == 9 + third and (column_drug == 1).sum() == 2 + third
  others = np.flatnonzero(column_drug != held_out)
  groups, ck = column_drug[others], kernel[np.ix_(column_drug, column_drug)]
  ybar = lk.profile_matrix(cell, column, y, 9, len(column_drug))[:, others]
  z, spread = lk.zscored_deviations(ybar, res.naive[held_out])
  errors = {}
  for lam in lambdas:
    resid = np.concatenate([
        z[groups == g] - explicit_ridge(ck[np.ix_(others, others)], np.flatnonzero(groups != g),
                                        np.flatnonzero(groups == g), z[groups != g], lam)
        for g in np.unique(groups)])
    errors[lam] = np.mean(np.square(resid))
  lam = min(errors, key=errors.get)
  assert res.lam[held_out] == lam and res.loo_error[held_out] == pytest.approx(errors[lam])
  k_row = kernel[held_out, groups]
  expected = res.naive[held_out] + spread.mean() * k_row @ np.linalg.solve(
      ck[np.ix_(others, others)] + lam * np.eye(len(others)), z)
  np.testing.assert_allclose(res.profiles[held_out], expected, atol=1e-10)
  # Per screen differs from the per-drug fit, which averages drug 1's and 4's two screens.
  plain = lk.lodo_kernel_ridge(cell, drug, y, 9, kernel[None], [[1.0]], lambdas, **PLAIN)
  assert np.abs(plain.profiles[held_out] - res.profiles[held_out]).max() > 1e-3


def test_screen_columns_never_read_the_held_out_drugs_screens():
  cell, drug, y, screen, kernels = screened_problem(seed=1)
  lambdas = [0.1, 1.0, 10.0]
  res = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, [[1.0, 1.0]], lambdas, pair_screen=screen)
  for d in (1, 4, 2):
    scrambled = y.copy()
    mine = drug == d
    scrambled[mine] = np.random.default_rng(d).normal(5.0, 3.0, mine.sum())
    other = lk.lodo_kernel_ridge(cell, drug, scrambled, 9, kernels, [[1.0, 1.0]], lambdas,
                                 pair_screen=screen)
    np.testing.assert_array_equal(other.profiles[d], res.profiles[d])
    np.testing.assert_array_equal(other.component_lam[d], res.component_lam[d])


def test_one_screen_per_drug_is_one_column_per_drug():
  """Equal fits, also with a drug (5) that has no pair: an empty column either way."""
  (cell, drug, y), kernels = random_problem(seed=3)
  keep = drug != 5
  cell, drug, y = cell[keep], drug[keep], y[keep]
  a = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, [[1.0, 0.5]], [0.1, 1.0])
  b = lk.lodo_kernel_ridge(cell, drug, y, 9, kernels, [[1.0, 0.5]], [0.1, 1.0],
                           pair_screen=drug + 10)
  np.testing.assert_allclose(b.profiles, a.profiles, atol=1e-10)
  np.testing.assert_array_equal(b.component_lam, a.component_lam)


@pytest.mark.parametrize('per_component', [False, True])
def test_fit_drugs_with_screens_is_the_baseline_on_its_drugs(per_component):
  """As `test_fit_drugs_is_the_baseline_on_its_drugs`, one column per screen: fitted on every
  drug but 0, `fit_drugs` repeats drugs 1 and 4 (two screens each) and is drug 0's fold."""
  cell, drug, y, screen, kernels = screened_problem(seed=2)
  kernel, lambdas = kernels[0] + kernels[1], [0.1, 1.0, 10.0]
  opts = {'naive': 'zscored', 'per_component': per_component}
  base = lk.lodo_kernel_ridge(cell, drug, y, 9, kernel[None], [[1.0]], lambdas, folds=[0],
                              pair_screen=screen, **opts)
  rest = drug != 0
  fit = lk.fit_drugs(cell[rest], drug[rest], y[rest], 9, kernel, lambdas, pair_screen=screen[rest],
                     **opts)
  np.testing.assert_array_equal(fit.drugs, [1, 1, 2, 3, 4, 4, 5, 6])
  assert fit.params['drugs'] == 6 and fit.params['columns'] == 8
  assert fit.loo_error == pytest.approx(base.loo_error[0])
  if per_component:
    np.testing.assert_array_equal(fit.component_lam, base.component_lam[0][:len(fit.component_lam)])
  else:
    assert fit.lam == base.lam[0]
  np.testing.assert_allclose(fit.profiles(kernel, [0])[0], base.profiles[0], atol=1e-10)


def test_without_drug_with_screens_fits_per_screen_and_reads_no_excluded_label():
  """As `test_without_drug_is_the_baseline_on_the_data_without_that_drug`, one column per screen:
  drug 1 (two screens) excluded, drugs 2 and 4 (4: two
  screens) scored per screen; drug 1's labels are unread."""
  from tests.conftest import hand_dataset  # pylint: disable=g-import-not-at-top
  cell, drug, y, screen, kernels = screened_problem(seed=2)
  kernel = kernels.sum(0)
  pairs = np.flatnonzero(np.isin(drug, [2, 4]))
  got = lk.without_drug(hand_dataset(cell, drug, y), kernel, 1, [2, 4], pairs, screen)
  keep, others = drug != 1, np.array([0, 2, 3, 4, 5, 6])
  new = np.searchsorted(others, drug[keep])
  ref = lk.lodo_kernel_ridge(cell[keep], new, y[keep], 9, kernel[np.ix_(others, others)][None],
                             np.ones((1, 1)), lk.LAMBDAS, pair_screen=screen[keep])
  np.testing.assert_allclose(got, ref.profiles[np.searchsorted(others, drug[pairs]), cell[pairs]])
  per_drug = lk.without_drug(hand_dataset(cell, drug, y), kernel, 1, [2, 4], pairs)
  assert np.abs(per_drug - got).max() > 1e-3
  scrambled = y.copy()
  scrambled[drug == 1] = 99.0
  again = lk.without_drug(hand_dataset(cell, drug, scrambled), kernel, 1, [2, 4], pairs, screen)
  np.testing.assert_array_equal(again, got)


def test_chemnet_kernel_reads_the_sidecar_file_in_dataset_order(tmp_path):
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from cdr_jax.data import drugs  # pylint: disable=g-import-not-at-top
  from cdr_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  cfg = test_config.get_config().data
  ds = SimpleNamespace(drug_ids=['a', 'b', 'c'], drug_smiles=['C', 'CC', 'CCC'])
  assert lk.chemnet_kernel(ds, cfg, tmp_path) is None   # no embedding file: no ChemNet kernel
  (tmp_path / 'drugs').mkdir()
  rows = {'c': [0.0, 5.0], 'a': [1.0, 2.0], 'b': [4.0, -1.0]}   # file order differs from ds's
  np.save(tmp_path / 'drugs/chemnet.npy', np.array(list(rows.values()), np.float32))
  (tmp_path / 'drugs/chemnet.cells.txt').write_text('\n'.join(rows) + '\n')
  k = lk.chemnet_kernel(ds, cfg, tmp_path)
  x = np.array([rows[d] for d in ds.drug_ids])
  expected = lk.rbf_kernel(drugs.standardize(x, np.arange(3), ['chemnet:0', 'chemnet:1']).features)
  np.testing.assert_allclose(k, expected, rtol=1e-6)
  cfg.shuffle_drugs = True   # the shuffled-features control does not touch the kernel baseline
  np.testing.assert_allclose(lk.chemnet_kernel(ds, cfg, tmp_path), expected, rtol=1e-6)
  assert not np.allclose(k, lk.rbf_kernel(drugs.standardize(
      np.array(list(rows.values())), np.arange(3), ['chemnet:0', 'chemnet:1']).features))
  with pytest.raises(DataError, match="no embedding for drug 'z'"):
    lk.chemnet_kernel(SimpleNamespace(drug_ids=['a', 'z'], drug_smiles=['C', 'N']), cfg, tmp_path)


def _screened(screen_drug, screen_ids, n_cells=4):
  """A hand dataset with every drug measured on every line once per screen (`screen_drug`: each
  screen's drug), the labels all zero."""
  from tests.conftest import hand_dataset  # pylint: disable=g-import-not-at-top
  screen = np.repeat(np.arange(len(screen_drug)), n_cells)
  cell = np.tile(np.arange(n_cells), len(screen_drug))
  ds = hand_dataset(cell, np.asarray(screen_drug)[screen], np.zeros(len(cell)))
  return dataclasses.replace(ds, pair_screen=screen.astype(np.int32), screen_ids=screen_ids)


def test_screening_kernel_by_hand():
  # Drug 0 screened as GDSC ids 1 and 61, drug 1 as 31, drug 2 as 1001; drug 3 never measured.
  ds = _screened([0, 0, 1, 2], ('1', '61', '31', '1001'))
  ds = dataclasses.replace(ds, drug_ids=ds.drug_ids + ('D3',), drug_names=ds.drug_names + ('x',))
  k = lk.screening_kernel(ds, width=30.0)
  rbf = lambda a, b: np.exp(-(a - b) ** 2 / (2 * 30.0 ** 2))
  np.testing.assert_allclose(k[0, 0], (2 + 2 * rbf(1, 61)) / 4)    # its two screens, averaged
  np.testing.assert_allclose(k[0, 1], (rbf(1, 31) + rbf(61, 31)) / 2)
  np.testing.assert_allclose(k[1, 1], 1.0)
  np.testing.assert_allclose(k[1, 2], rbf(31, 1001), atol=1e-300)  # far apart in the order
  np.testing.assert_array_equal(k[3], 0.0)                         # no screen: no place
  np.testing.assert_allclose(k, k.T)
  assert np.linalg.eigvalsh(k).min() > -1e-12
  assert lk.has_screening_order(ds)
  unrecorded = dataclasses.replace(ds, pair_screen=None, screen_ids=())
  assert not lk.has_screening_order(unrecorded)
  with pytest.raises(ValueError, match='records none'):
    lk.screening_kernel(unrecorded)
  for ids in (('G1', 'G1b', 'G2', 'G3'), ('1', 'nan', '31', '1001')):
    named = dataclasses.replace(ds, screen_ids=ids)
    assert not lk.has_screening_order(named)
    with pytest.raises(ValueError, match=r'as whole numbers .*' + re.escape(repr(ids[:3]))):
      lk.screening_kernel(named)


def test_batch_mates_by_hand():
  # Drug 0 screened as GDSC ids 1 and 61, drug 1 as 31, drug 2 as 1001; drug 3 never measured.
  ds = _screened([0, 0, 1, 2], ('1', '61', '31', '1001'))
  ds = dataclasses.replace(ds, drug_ids=ds.drug_ids + ('D3',), drug_names=ds.drug_names + ('x',))
  assert list(lk.batch_mates(ds, 1, 30.0)) == [0]      # 31 is 30 ids from both of drug 0's
  assert list(lk.batch_mates(ds, 1, 29.0)) == []
  assert list(lk.batch_mates(ds, 0, 30.0)) == [1]      # through either of its screens
  assert list(lk.batch_mates(ds, 0, 1000.0)) == [1, 2]  # never itself
  assert list(lk.batch_mates(ds, 2, 60.0)) == []
  with pytest.raises(ValueError, match='drug 3 .* has no screen'):
    lk.batch_mates(ds, 3, 30.0)


def test_screening_batch_recovers_a_batch_shared_deviation():
  """Drugs screened in two batches (ids 1-8 and 501-508): each batch adds its own pattern over the
  lines, the drugs' own deviations are noise, and the drug kernel says nothing. Kernel ridge
  with the screening-order kernel predicts a held-out drug's batch pattern, without it only the
  naive mean; no label of the held-out drug is read either way."""
  rng = np.random.default_rng(0)
  n_cells, ids = 30, np.r_[1:9, 501:509]
  pattern = rng.normal(size=(2, n_cells))
  y = (rng.normal(size=(n_cells, 1)) + 2.0 * pattern[(ids > 500).astype(int)].T
       + rng.normal(size=(n_cells, len(ids))))
  ds = _screened(np.arange(len(ids)), tuple(str(i) for i in ids), n_cells)
  ds = dataclasses.replace(ds, pair_y=y[ds.pair_cell, ds.pair_drug].astype(np.float32))
  batch = lk.screening_kernel(ds, width=30.0)
  nothing = np.eye(len(ids))
  pcc = {}
  for name, kernel in (('without', nothing), ('with', nothing + 3.0 * batch)):
    res = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, n_cells, kernel[None],
                               np.ones((1, 1)), lk.LAMBDAS, pair_screen=ds.pair_screen)
    pcc[name] = np.nanmean(lk.per_drug_pcc(res.pair_predictions(ds.pair_cell, ds.pair_drug),
                                           ds.pair_y, ds.pair_drug, len(ids)))
    scrambled = dataclasses.replace(ds, pair_y=np.where(ds.pair_drug == 3, 99.0, ds.pair_y))
    again = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, scrambled.pair_y, n_cells,
                                 kernel[None], np.ones((1, 1)), lk.LAMBDAS,
                                 pair_screen=ds.pair_screen, folds=[3])
    np.testing.assert_array_equal(again.profiles[3], res.profiles[3])
  assert pcc['with'] > pcc['without'] + 0.2, pcc


def test_screening_batch_is_added_to_the_baseline_kernel():
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from cdr_jax import data  # pylint: disable=g-import-not-at-top
  c = test_config.get_config()
  c.data.synthetic_screens = 2
  ds = data.load_dataset(c.data)
  plain, weights = lk.weighted_kernel(ds)
  batch, batch_weights = lk.weighted_kernel(ds, screening_batch=True)
  np.testing.assert_allclose(batch - plain, lk.SCREENING_WEIGHT * lk.screening_kernel(ds))
  assert batch_weights == dict(weights, screening_batch=lk.SCREENING_WEIGHT)
  _, info, kernel = lk.held_out_drug_predictions(ds, None, ds.pair_screen, screening_batch=True)
  np.testing.assert_array_equal(kernel, batch)
  assert info['kernels']['screening_batch'] == lk.SCREENING_WEIGHT
  assert info['screening_width'] == lk.SCREENING_WIDTH


def test_fit_without_is_fit_drugs_on_the_other_drugs_and_reads_no_excluded_label():
  """Drugs 1 and 3 excluded (1 has two screens): the fit is `fit_drugs` on the other drugs' pairs
  per screen, and scrambling the excluded drugs' labels changes nothing."""
  from tests.conftest import hand_dataset  # pylint: disable=g-import-not-at-top
  cell, drug, y, screen, kernels = screened_problem(seed=3)
  kernel = kernels.sum(0)
  got = lk.fit_without(hand_dataset(cell, drug, y), kernel, [1, 3], screen)
  keep = ~np.isin(drug, [1, 3])
  ref = lk.fit_drugs(cell[keep], drug[keep], y[keep], 9, kernel, pair_screen=screen[keep])
  np.testing.assert_array_equal(got.drugs, ref.drugs)
  np.testing.assert_allclose(got.profiles(kernel, [1, 3]), ref.profiles(kernel, [1, 3]))
  assert got.lam == ref.lam and 1 not in got.drugs and 3 not in got.drugs
  scrambled = y.copy()
  scrambled[np.isin(drug, [1, 3])] = 99.0
  again = lk.fit_without(hand_dataset(cell, drug, scrambled), kernel, [1, 3], screen)
  np.testing.assert_array_equal(again.profiles(kernel, [1, 3]), got.profiles(kernel, [1, 3]))
  one = lk.fit_without(hand_dataset(cell, drug, y), kernel, 3)   # one drug, one column per drug
  assert 1 in one.drugs and 3 not in one.drugs
