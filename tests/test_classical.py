"""Classical predictors on tiny matrices, checked by hand; selection never reads test labels."""

import dataclasses

import numpy as np
import pytest

from cdr_jax.errors import DataError
from cdr_jax.eval import classical as cl


def _pairs(mask: np.ndarray, ymat: np.ndarray) -> cl.Pairs:
  cell, drug = np.nonzero(mask)
  return cl.Pairs(cell, drug, ymat[cell, drug].astype(np.float64))


def _synthetic(n_cells: int = 40, n_drugs: int = 12, dim: int = 6, seed: int = 0):
  """Features, low-rank + feature signal, 85% of pairs observed, noisy labels."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n_cells, dim))
  truth = (0.5 * rng.standard_normal(n_drugs) + 0.3 * x @ rng.standard_normal((dim, n_drugs))
           + rng.standard_normal((n_cells, 2)) @ rng.standard_normal((2, n_drugs)))
  cell, drug = np.nonzero(rng.random((n_cells, n_drugs)) < 0.85)
  return x, cell, drug, truth[cell, drug] + 0.3 * rng.standard_normal(len(cell))


def test_response_matrix_averages_duplicates():
  pairs = cl.Pairs(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([2.0, 4.0, -1.0]))
  ymat, mask = cl.response_matrix(pairs, 2, 2)
  np.testing.assert_array_equal(mask, [[False, True], [True, False]])
  assert ymat[0, 1] == 3.0 and ymat[1, 0] == -1.0


def test_mean_drug_pcc_matches_per_drug_correlations():
  rng = np.random.default_rng(0)
  drug = np.repeat([0, 1, 2, 3], [5, 6, 2, 4])  # drug 2 has too few pairs
  y, pred = rng.standard_normal(len(drug)), rng.standard_normal(len(drug))
  pred[drug == 3] = 1.5                          # constant predictions: no correlation
  expected = np.mean([np.corrcoef(pred[drug == d], y[drug == d])[0, 1] for d in (0, 1)])
  assert cl.mean_drug_pcc(pred, y, drug) == pytest.approx(expected, abs=1e-12)


def test_ridge_per_drug_is_each_drugs_closed_form_on_its_own_lines():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((14, 3))
  ymat = x @ rng.standard_normal((3, 2)) + rng.standard_normal((14, 2))
  mask = np.ones((14, 2), bool)
  mask[[1, 4, 5, 9], 1] = False  # drug 1 misses four lines: fitted on the other ten
  fit = cl.ridge_per_drug(x, _pairs(mask, ymat), 2, lambdas=(0.5,))
  xc = x - x.mean(0)
  assert fit.params['lambda'] == pytest.approx(0.5 * np.trace(xc @ xc.T) / 14)
  for d in range(2):
    xo, yo = x[mask[:, d]], ymat[mask[:, d], d]
    w = np.linalg.solve((xo - xo.mean(0)).T @ (xo - xo.mean(0)) + fit.params['lambda'] * np.eye(3),
                        (xo - xo.mean(0)).T @ (yo - yo.mean()))
    np.testing.assert_allclose(fit.scores[:, d], yo.mean() + (x - xo.mean(0)) @ w, atol=1e-6)


def test_group_kernel_by_hand():
  same = cl.group_kernel(np.array([0, 1, 0, -1, -1]), 5)
  np.testing.assert_array_equal(same, [[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 0, 1, 0, 0],
                                       [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])   # -1: no group
  assert cl.group_kernel(None, 5) is None
  with pytest.raises(ValueError, match='one integer per cell line'):
    cl.group_kernel(np.zeros(4, int), 5)


@pytest.mark.parametrize('grouped', [False, True])
def test_kernel_ridge_is_the_direct_solve_per_drug(grouped):
  """Per drug, ridge with an intercept on the kernel RBF (+ weight x same group), solved directly."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((15, 4))
  # Three annotations: groups -1, 0, 1, -1, ... and 0, 0, 1, 1, 0, 0, ...; values, two missing.
  values = np.where(np.arange(15) % 7 == 3, np.nan, np.cos(np.arange(15.0)))
  groups = ({'type': np.arange(15) % 3 - 1, 'medium': np.arange(15) // 2 % 2, 'doubling': values}
            if grouped else None)
  ymat = np.sin(x[:, :2]) + 0.1 * rng.standard_normal((15, 2))
  mask = np.ones((15, 2), bool)
  mask[[0, 7, 8], 0] = False
  fit = cl.kernel_ridge(x, _pairs(mask, ymat), 2, seed=3, annotations=groups,
                        annotation_weights={'type': (0.5,), 'medium': (0.25,), 'doubling': (0.1,),
                                            'fine': (0.3,)},
                        spectrum=None)
  width, lam = fit.params['width'], fit.params['lambda']
  assert 'spectrum_gamma' not in fit.params
  assert fit.params['width_rel'] in cl.WIDTHS and fit.params['lambda_rel'] in cl.LAMBDAS
  assert fit.params['type_weight'] == (0.5 if grouped else 0.0)
  assert fit.params['medium_weight'] == (0.25 if grouped else 0.0)
  assert fit.params['doubling_weight'] == (0.1 if grouped else 0.0)
  d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
  distances = np.sqrt(d2[np.triu_indices(15, 1)])
  assert fit.params['median_distance'] == pytest.approx(np.median(distances))
  assert fit.params['fine_weight'] == 0.3
  median = np.median(distances)
  k = np.exp(-d2 / (2 * width ** 2)) + 0.3 * np.exp(-d2 / (2 * (0.25 * median) ** 2))
  if grouped:
    for name, w in (('type', 0.5), ('medium', 0.25)):
      g = groups[name]
      k += w * ((g[:, None] == g[None]) & (g[:, None] >= 0))
    # Values standardised over the training lines with one (all 15 lines train here); none: 0.
    has = np.isfinite(values)
    z = np.where(has, (values - values[has].mean()) / values[has].std(), 0.0)
    k += 0.1 * np.outer(z, z)
  for d in range(2):
    o = mask[:, d]
    ko = k[np.ix_(o, o)]
    col = ko.mean(0)
    kc = ko - col[None] - col[:, None] + col.mean()
    cross = k[:, o] - k[:, o].mean(1, keepdims=True) - col[None] + col.mean()
    alpha = np.linalg.solve(kc + lam * np.eye(o.sum()), ymat[o, d] - ymat[o, d].mean())
    np.testing.assert_allclose(fit.scores[:, d], ymat[o, d].mean() + cross @ alpha, atol=1e-6)


def _spectral_by_hand(k: np.ndarray, y: np.ndarray, lam: float, gamma: float) -> np.ndarray:
  """Kernel ridge with an intercept, one lambda per principal component of the centred targets
  in drug space, lambda_j = lam (s_j^2 / mean s^2)^-gamma; fitted on all rows of `y`, predicting
  every row of `k`'s rows (k: [all lines, training lines = rows of y])."""
  n = len(y)
  kt = k[:n]
  col = kt.mean(0)
  kc = kt - col[None] - col[:, None] + col.mean()
  cross = k - k.mean(1, keepdims=True) - col[None] + col.mean()
  mu = y.mean(0)
  _, s, vt = np.linalg.svd(y - mu, full_matrices=False)
  power = s ** 2 / np.mean(s ** 2)
  pred = np.tile(mu, (len(k), 1))
  for j, v in enumerate(vt):
    alpha = np.linalg.solve(kc + lam * power[j] ** -gamma * np.eye(n), (y - mu) @ v)
    pred += np.outer(cross @ alpha, v)
  return pred


@pytest.mark.parametrize('gamma', [0.0, 0.5])
def test_spectrum_stage_is_one_lambda_per_response_component(gamma):
  """The spectrum stage by hand; its missing entries are those the per-drug fits fill."""
  rng = np.random.default_rng(4)
  x = rng.standard_normal((14, 3))
  ymat = np.sin(x[:, :1] + rng.standard_normal(4)) + 0.2 * rng.standard_normal((14, 4))
  mask = np.ones((14, 4), bool)
  mask[[1, 5], 2] = mask[9, 0] = False
  grid = {'widths': (1.0,), 'lambdas': (0.5,)}
  plain = cl.kernel_ridge(x, _pairs(mask, ymat), 4, spectrum=None, **grid)
  fit = cl.kernel_ridge(x, _pairs(mask, ymat), 4, spectrum=((0.25,), (gamma,)), **grid)
  assert (fit.params['spectrum_lambda_rel'], fit.params['spectrum_gamma']) == (0.25, gamma)
  assert cl.spectrum_of(fit.params) == ((0.25,), (gamma,)) and cl.spectrum_of(plain.params) is None
  filled = np.where(mask, ymat, plain.scores)   # the per-drug fits at lambda_rel 0.5 fill the gaps
  d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
  k = np.exp(-d2 / (2 * fit.params['width'] ** 2))
  col = k.mean(0)
  scale = np.mean(np.diag(k - col[None] - col[:, None] + col.mean()))
  np.testing.assert_allclose(fit.scores, _spectral_by_hand(k, filled, 0.25 * scale, gamma),
                             atol=1e-8)
  if not gamma:   # one lambda for all components: each drug's own ridge on the filled matrix
    again = cl.kernel_ridge(x, _pairs(np.ones_like(mask), filled), 4, spectrum=None,
                            widths=(1.0,), lambdas=(0.25,))
    np.testing.assert_allclose(fit.scores, again.scores, atol=1e-8)


def test_spectrum_stage_chooses_to_fit_the_shared_component_closer():
  """Lines share one strong sensitivity across drugs; the rest is noise: inner CV picks gamma > 0,
  and it predicts new lines better than one lambda for all."""
  rng = np.random.default_rng(5)
  x = rng.standard_normal((150, 3))
  truth = np.sin(2 * x[:, :1]) + x[:, 1:2] ** 2 + 0.05 * rng.standard_normal((1, 40))
  y = truth + 1.0 * rng.standard_normal(truth.shape)
  train = _pairs(np.arange(150)[:, None] < 100 + np.zeros((1, 40), bool), y)
  fit = cl.kernel_ridge(x, train, 40)
  plain = cl.kernel_ridge(x, train, 40, spectrum=None)
  assert fit.params['spectrum_gamma'] > 0, fit.params
  assert fit.params['spectrum_cv_score'] > fit.params['cv_score']
  err = lambda f: np.mean((f.scores[100:] - truth[100:]) ** 2)
  assert err(fit) < 0.8 * err(plain)


def test_inner_cv_picks_the_lambda_that_predicts_held_out_lines():
  x, cell, drug, y = _synthetic()
  fit = cl.ridge_per_drug(x, cl.Pairs(cell, drug, y), 12, lambdas=(1e-3, 1.0, 1e3))
  cv = fit.params['cv']
  assert fit.params['lambda_rel'] == 1.0, cv  # the signal is linear: neither extreme wins
  assert cv['lambda_rel=1'] > max(cv['lambda_rel=0.001'], cv['lambda_rel=1000'])


def _low_rank(seed: int = 0):
  rng = np.random.default_rng(seed)
  ymat = (1.0 + rng.standard_normal((30, 1)) + rng.standard_normal(20)
          + rng.standard_normal((30, 2)) @ rng.standard_normal((2, 20)))
  mask = rng.random((30, 20)) < 0.7
  return ymat, mask


def test_matrix_factorization_recovers_an_exact_low_rank_matrix():
  ymat, mask = _low_rank()  # biases + rank 2, entries of sd ~2, 30% of them held out
  fit = cl.matrix_factorization(_pairs(mask, ymat), 30, 20, rank=2, l2=0.01, seed=0, tol=1e-5,
                                max_iters=3000)
  assert fit.params['converged']
  np.testing.assert_allclose(fit.scores[~mask], ymat[~mask], atol=0.02)  # L2 shrinks a little


def test_matrix_factorization_stops_by_tolerance():
  ymat, mask = _low_rank()
  pairs = _pairs(mask, ymat)
  tol = 1e-4
  full = cl.matrix_factorization(pairs, 30, 20, rank=3, l2=1.0, seed=0, tol=tol)
  n = full.params['iterations']
  assert full.params['converged'] and 3 < n < cl.MF_MAX_ITERS
  stopped = [cl.matrix_factorization(pairs, 30, 20, 3, 1.0, 0, tol, max_iters=i)
             for i in (n - 2, n - 1)]
  objective = [f.params['objective'] for f in stopped] + [full.params['objective']]
  assert abs(objective[1] - objective[2]) <= tol * objective[2]     # stopped at the first step
  assert abs(objective[0] - objective[1]) > tol * objective[1]      # that changed by < tol
  guard = cl.matrix_factorization(pairs, 30, 20, 3, 1.0, 0, tol, max_iters=n - 1)
  assert not guard.params['converged'] and guard.params['iterations'] == n - 1
  tight = cl.matrix_factorization(pairs, 30, 20, 3, 1.0, 0, tol=1e-9)
  assert tight.params['iterations'] > n


def test_matrix_factorization_depends_on_the_seed():
  ymat, mask = _low_rank()
  pairs = _pairs(mask, ymat)
  fit = lambda seed: cl.matrix_factorization(pairs, 30, 20, 3, 1.0, seed, tol=1e-3).scores
  np.testing.assert_array_equal(fit(0), fit(0))
  assert np.abs(fit(0) - fit(1)).max() > 1e-6


def test_matrix_factorization_cannot_score_unseen_lines():
  ymat, mask = _low_rank()
  mask[5] = False  # line 5 has no training pairs
  fit = cl.matrix_factorization(_pairs(mask, ymat), 30, 20, 2, 1.0, 0)
  np.testing.assert_array_equal(fit.covers(np.array([4, 5]), np.array([0, 0])), [True, False])
  with pytest.raises(cl.UnseenEntityError, match=r'pair 1 \(cell line 5, drug 0\)'):
    fit.predict(np.array([4, 5]), np.array([0, 0]))


PLAIN = {'powers': (1,), 'shrinks': (0.0,)}   # kNN weights = the similarities themselves


def _knn_case():
  """4 lines x 3 drugs; line 3 was not screened with drug 0 (nan)."""
  ymat = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 1.0], [3.0, 6.0, 2.0], [np.nan, 5.0, 0.0]])
  mask = np.isfinite(ymat)
  zero = cl.Predictor('zero', np.zeros((4, 3)), {})
  return np.nan_to_num(ymat), mask, zero


def test_column_similarity_by_hand():
  ymat, mask, _ = _knn_case()
  sim = cl.column_similarity(ymat, mask)
  # Drugs 0, 1 over lines 0-2: (1, 2, 3) and (2, 4, 6); drugs 0, 2: (1, 2, 3) and (3, 1, 2);
  # drugs 1, 2 over all four lines: (2, 4, 6, 5) and (3, 1, 2, 0): cov -3.5, variances 8.75 and 5.
  np.testing.assert_allclose(sim, [[0, 1, -0.5], [1, 0, -3.5 / np.sqrt(43.75)],
                                   [-0.5, -3.5 / np.sqrt(43.75), 0]], atol=1e-12)


def test_item_knn_by_hand_and_user_knn_is_its_transpose():
  ymat, mask, zero = _knn_case()
  train = _pairs(mask, ymat)
  knn = cl.knn_residual(zero, zero, train, None, 'drug', ks=(2,), **PLAIN)
  # Line 3, drug 0: drug 1 is the only positively similar drug line 3 has (residual 5); drug 2
  # (similarity -0.5) is not a neighbour. Line 0, drug 1: drug 0 (similarity 1, residual 1).
  np.testing.assert_allclose(knn.predict(np.array([3, 0]), np.array([0, 1])), [5.0, 1.0])
  zero_t = cl.Predictor('zero', np.zeros((3, 4)), {})
  swapped = cl.Pairs(train.drug, train.cell, train.y)
  user = cl.knn_residual(zero_t, zero_t, swapped, None, 'cell', ks=(2,), **PLAIN)
  np.testing.assert_allclose(user.predict(np.array([0, 1]), np.array([3, 0])), [5.0, 1.0])


def test_a_knn_predictor_is_a_base_for_another_knn():
  ymat, mask, zero = _knn_case()
  train = _pairs(mask, ymat)
  item = cl.knn_residual(zero, zero, train, None, 'drug', ks=(2,), **PLAIN)
  cell, drug = np.nonzero(np.ones(ymat.shape, bool))
  np.testing.assert_allclose(item.scores[cell, drug], item.predict(cell, drug))
  cascade = cl.knn_residual(item, zero, train, None, 'cell', ks=(2,), **PLAIN)
  plain = cl.knn_residual(cl.Predictor('item_knn', item.scores, {}), zero, train, None, 'cell',
                          ks=(2,), **PLAIN)
  assert cascade.name == 'user_knn_after_item_knn'
  np.testing.assert_allclose(cascade.predict(cell, drug), plain.predict(cell, drug))
  assert not np.allclose(cascade.predict(cell, drug), item.predict(cell, drug))
  third = cl.knn_residual(cascade, zero, train, None, 'drug', ks=(2,), **PLAIN)
  assert third.name == 'item_knn_after_cascade'
  np.testing.assert_allclose(third.predict(cell, drug) - cascade.predict(cell, drug),
                             third.corrections(cell, drug, [2])[0])


def test_knn_weights_neighbours_by_similarity_and_picks_k_on_validation():
  # Drug 0's neighbours: drug 1 (similarity 1) and drug 2 (similarity 0.5); line 4 lacks drug 0.
  ymat = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 3.0], [3.0, 3.0, 2.0], [4.0, 4.0, 4.0],
                   [0.0, 3.0, 6.0]])
  mask = np.ones_like(ymat, bool)
  mask[4, 0] = False
  zero = cl.Predictor('zero', np.zeros((5, 3)), {})
  knn = cl.knn_residual(zero, zero, _pairs(mask, ymat), None, 'drug', ks=(1,), **PLAIN)
  sim = cl.column_similarity(ymat, mask)
  assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(0.8)
  corr = knn.corrections(np.array([4]), np.array([0]), (1, 2))
  np.testing.assert_allclose(corr[:, 0], [3.0, (1.0 * 3 + 0.8 * 6) / 1.8])


def test_shaped_similarity_by_hand():
  sim = np.array([[0.0, 0.5, -0.5], [0.5, 0.0, 0.9], [-0.5, 0.9, 0.0]])
  shared = np.array([[3.0, 10.0, 20.0], [10.0, 4.0, 30.0], [20.0, 30.0, 5.0]])
  out = cl.shaped_similarity(sim, shared, 2, 10.0)
  np.testing.assert_allclose(out, [[0.0, 0.25 * 0.5, -0.25 * 2 / 3], [0.125, 0.0, 0.81 * 0.75],
                                   [-0.25 * 2 / 3, 0.81 * 0.75, 0.0]])   # sign kept
  np.testing.assert_array_equal(cl.shaped_similarity(sim, shared, 1, 0.0), sim)
  shared[0, 1] = shared[1, 0] = 0.0   # nothing shared: weight 0, not 0 / 0
  assert cl.shaped_similarity(sim, shared, 1, 0.0)[0, 1] == 0.0


def test_knn_shrink_discounts_a_correlation_seen_on_few_lines():
  """Drug 0's profile follows drug 1 over 40 lines (correlation 0.9 by construction); drug 2 agrees
  with drug 0 perfectly but shares only 3 lines with it, and its residuals are noise elsewhere.
  Without shrinking drug 2 is the nearest neighbour; validation picks a shrink that prefers drug 1."""
  rng = np.random.default_rng(0)
  n = 60
  a = rng.standard_normal(n)
  ymat = np.stack([a, 0.9 * a + np.sqrt(1 - 0.81) * rng.standard_normal(n),
                   rng.standard_normal(n)], 1)
  mask = np.zeros((n, 3), bool)
  mask[:40, :2] = True          # drugs 0 and 1 on lines 0-39
  mask[:, 1] = True             # drug 1 on every line
  mask[37:, 2] = True           # drug 2 on lines 37-59: shares lines 37-39 with drug 0
  ymat[37:40, 2] = ymat[37:40, 0]   # and agrees with it exactly there
  zero = cl.Predictor('zero', np.zeros((n, 3)), {})
  train = _pairs(mask, ymat)
  lines = np.arange(40, n)
  val = cl.Pairs(lines, np.zeros(len(lines), int), ymat[40:, 0])
  sim = cl.column_similarity(ymat, mask)
  assert sim[0, 2] > sim[0, 1] > 0.8
  knn = cl.knn_residual(zero, zero, train, val, 'drug', ks=(1,), powers=(1,),
                        shrinks=(0.0, 100.0))
  assert knn.shrink == 100.0 and knn.params['shrink'] == 100.0
  assert set(knn.params['val']) == {'k=1,power=1,shrink=0', 'k=1,power=1,shrink=100'}
  assert knn.params['val']['k=1,power=1,shrink=100'] > knn.params['val']['k=1,power=1,shrink=0']
  with pytest.raises(ValueError, match='no validation pairs to choose'):
    cl.knn_residual(zero, zero, train, None, 'drug', ks=(1,), powers=(1, 2), shrinks=(0.0,))


def test_blend_gives_an_exact_predictor_all_the_weight():
  rng = np.random.default_rng(4)
  cell, drug = np.arange(60) % 20, np.arange(60) // 20
  truth = rng.standard_normal((20, 3))
  val = cl.Pairs(cell, drug, truth[cell, drug])
  exact = cl.Predictor('exact', 2 * truth + 1.0, {})           # exact up to scale and shift
  noise = cl.Predictor('noise', rng.standard_normal((20, 3)), {})
  fit = cl.blend([noise, exact], val)
  np.testing.assert_allclose(fit.weights, [0.0, 0.5], atol=1e-12)
  assert fit.intercept == pytest.approx(-0.5)
  np.testing.assert_allclose(fit.predict(cell, drug), val.y, atol=1e-12)


def test_blend_fits_drug_levels_apart_from_the_ranking_within_drugs():
  """One part ranks lines within each drug and knows no drug level, the other knows only the
  levels: the within-drug fit alone would drop the levels; the level fit restores them."""
  rng = np.random.default_rng(8)
  cell, drug = np.arange(80) % 20, np.arange(80) // 20
  within = rng.standard_normal((20, 4))
  within -= within.mean(0)
  level = np.array([-2.0, 0.0, 1.0, 3.0])
  val = cl.Pairs(cell, drug, (within + level)[cell, drug])
  ranking = cl.Predictor('ranking', 3 * within, {})
  levels = cl.Predictor('levels', np.tile(2 * level + 5, (20, 1)), {})
  fit = cl.blend([ranking, levels], val)
  np.testing.assert_allclose(fit.weights[0], 1 / 3)
  assert fit.level_weights[1] == pytest.approx(0.5)   # the ranking part's levels are all 0
  np.testing.assert_allclose(fit.predict(cell, drug), val.y, atol=1e-12)
  # A drug without validation pairs keeps the within-drug formula.
  other = cl.Predictor('ranking', np.zeros((20, 5)), {})
  lonely = dataclasses.replace(fit, parts=(other, other))
  assert lonely.predict(np.array([0]), np.array([4]))[0] == pytest.approx(fit.intercept)


def test_cross_folds_deal_each_lines_pairs_round_the_folds():
  rng = np.random.default_rng(2)
  cell, drug = np.nonzero(rng.random((9, 7)) < 0.8)
  twins = np.flatnonzero(cell == 4)[:2]                  # line 4's first two pairs measured twice
  cell, drug = np.r_[cell, cell[twins]], np.r_[drug, drug[twins]]
  pairs = cl.Pairs(cell, drug, rng.standard_normal(len(cell)))
  fold = cl.cross_folds(pairs, 9, 7, seed=0, folds=3)
  np.testing.assert_array_equal(fold[-2:], fold[twins])  # a replicate is held out with its twin
  for line in range(9):
    counts = np.bincount(np.unique(np.c_[fold, drug][cell == line], axis=0)[:, 0], minlength=3)
    assert counts.max() - counts.min() <= 1, (line, counts)   # keys dealt evenly
  np.testing.assert_array_equal(fold, cl.cross_folds(pairs, 9, 7, seed=0, folds=3))
  assert not np.array_equal(fold, cl.cross_folds(pairs, 9, 7, seed=1, folds=3))
  # Dealt by measurement (as the legacy split holds pairs out), every line's measurements are even
  # and the twins fall apart for some seed.
  by_pair = [cl.cross_folds(pairs, 9, 7, seed=s, folds=3, by_key=False) for s in range(6)]
  for f in by_pair:
    for line in range(9):
      counts = np.bincount(f[cell == line], minlength=3)
      assert counts.max() - counts.min() <= 1
  assert any((f[-2:] != f[twins]).any() for f in by_pair)


def test_cross_fitted_predicts_each_pair_by_a_refit_without_its_fold():
  rng = np.random.default_rng(3)
  cell, drug = np.nonzero(rng.random((12, 5)) < 0.9)
  pairs = cl.Pairs(cell, drug, rng.standard_normal(len(cell)))
  fitted = {'additive': cl.additive(pairs, 12, 5, l2=2.0)}
  info = {'additive': {'params': fitted['additive'].params}}
  cross, held_in = cl.cross_fitted(fitted, info, pairs, None, 12, 5, seed=4, folds=3)
  fold = cl.cross_folds(pairs, 12, 5, seed=4, folds=3)
  np.testing.assert_array_equal(held_in, fold)          # every pair held out, in its own fold
  for f in range(3):
    held = fold == f
    by_hand = cl.additive(cl.Pairs(*(a[~held] for a in pairs)), 12, 5, l2=2.0)
    np.testing.assert_allclose(cross[held, 0], by_hand.predict(cell[held], drug[held]))
  assert info['additive'] == {'params': fitted['additive'].params}   # not written into


def test_cross_fitting_keeps_in_a_pair_whose_drug_would_have_none_left():
  """Drug 5 has two pairs; where both fall in one fold they stay in (nan), never unscoreable."""
  rng = np.random.default_rng(7)
  cell, drug = np.nonzero(rng.random((12, 5)) < 0.9)
  cell, drug = np.r_[cell, 0, 1], np.r_[drug, 5, 5]
  pairs = cl.Pairs(cell, drug, rng.standard_normal(len(cell)))
  fitted = {'additive': cl.additive(pairs, 12, 6, l2=1.0)}
  info = {'additive': {'params': fitted['additive'].params}}
  kept_in = 0
  for seed in range(10):
    cross, _ = cl.cross_fitted(fitted, info, pairs, None, 12, 6, seed=seed, folds=3)
    fold = cl.cross_folds(pairs, 12, 6, seed=seed, folds=3)
    same = fold[-1] == fold[-2]
    assert np.isnan(cross[-2:, 0]).tolist() == [same, same]
    assert np.isfinite(cross[:-2]).all()
    kept_in += same
  assert 0 < kept_in < 10


def test_drug_blend_is_a_ridge_per_drug_toward_the_shared_weights():
  """Two parts, three drugs: the shared weights are least squares over all drugs (centred per
  drug); each drug's weights the closed-form ridge toward them; its level its mean label."""
  rng = np.random.default_rng(5)
  cell, drug = np.arange(90) % 30, np.arange(90) // 30
  a, b = rng.standard_normal((30, 3)), rng.standard_normal((30, 3))
  truth = np.where(np.arange(3) == 0, 2 * a - b, a + 0.5 * b) + 0.1 * rng.standard_normal((30, 3))
  truth += np.array([1.0, -2.0, 0.5])
  pairs = cl.Pairs(cell, drug, truth[cell, drug])
  parts = [cl.Predictor('a', a, {}), cl.Predictor('b', b, {})]
  cross = np.stack([a[cell, drug], b[cell, drug]], 1)
  fit = cl.drug_blend(parts, cross, pairs, 3, None, shrinks=(1.0,))
  centred = lambda v: v - np.array([v[drug == d].mean(0) for d in range(3)])[drug]
  pc, yc = centred(cross), centred(pairs.y)
  w0 = np.linalg.lstsq(pc, yc, rcond=None)[0]
  np.testing.assert_allclose(list(fit.params['shared_weights'].values()), w0)
  for d in range(3):
    m = drug == d
    w = np.linalg.solve(pc[m].T @ pc[m] + np.eye(2), pc[m].T @ yc[m] + w0)
    np.testing.assert_allclose(fit.weights[d], w)
    assert fit.intercepts[d] == pytest.approx(pairs.y[m].mean() - cross[m].mean(0) @ w)
    np.testing.assert_allclose(fit.predict(cell[m], drug[m]), fit.intercepts[d] + cross[m] @ w)
  assert fit.weights[0] == pytest.approx([2.0, -1.0], abs=0.1)   # its own mixture, not the
  assert fit.weights[1] == pytest.approx([1.0, 0.5], abs=0.1)    # shared one
  # A drug with no cross-fitted pairs gets the shared weights and the intercept of all pairs.
  two = drug < 2
  lonely = cl.drug_blend(parts, cross[two], cl.Pairs(cell[two], drug[two], pairs.y[two]), 3,
                         None, (1.0,))
  w0 = np.array(list(lonely.params['shared_weights'].values()))
  assert lonely.predict(np.array([7]), np.array([2]))[0] == pytest.approx(
      pairs.y[two].mean() - cross[two].mean(0) @ w0 + np.array([a[7, 2], b[7, 2]]) @ w0)


def test_drug_blend_centres_per_fold_so_a_left_out_mean_gets_no_weight():
  """A part that knows only each drug's level, cross-fitted, predicts a fold's pairs by the other
  folds' mean, which moves against the fold's own: centred per drug only it earns a negative
  weight; centred per drug and fold, the weights are those of the part that ranks lines."""
  rng = np.random.default_rng(9)
  cell, drug = np.arange(600) % 100, np.arange(600) // 100
  fold = rng.integers(0, 5, 600)
  signal = rng.standard_normal(600)
  y = signal + rng.standard_normal(600)
  level = np.zeros(600)
  for d in range(6):
    for f in range(5):
      rest = (drug == d) & (fold != f)
      level[(drug == d) & (fold == f)] = y[rest].mean()
  cross = np.stack([signal, level], 1)
  parts = [cl.Predictor('ranks', np.zeros((100, 6)), {}), cl.Predictor('level', np.zeros((100, 6)), {})]
  pairs = cl.Pairs(cell, drug, y)
  plain = cl.drug_blend(parts, cross, pairs, 6, None, (1.0,))
  by_fold = cl.drug_blend(parts, cross, pairs, 6, None, (1.0,), fold)
  assert plain.params['shared_weights']['level'] < -1.0           # the artefact
  assert abs(by_fold.params['shared_weights']['level']) < 0.3
  assert by_fold.params['shared_weights']['ranks'] == pytest.approx(1.0, abs=0.15)
  assert by_fold.params['folds'] == 5


def test_drug_blend_chooses_the_shrink_on_validation_pairs():
  """Drugs that mix the parts differently want a small shrink; validation pairs say so."""
  rng = np.random.default_rng(6)
  cell, drug = np.arange(160) % 40, np.arange(160) // 40
  a, b = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
  mix = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
  truth = a * mix[:, 0] + b * mix[:, 1] + 0.2 * rng.standard_normal((40, 4))
  fit_on, val_on = cell < 30, cell >= 30
  pairs = cl.Pairs(cell[fit_on], drug[fit_on], truth[cell, drug][fit_on])
  val = cl.Pairs(cell[val_on], drug[val_on], truth[cell, drug][val_on])
  parts = [cl.Predictor('a', a, {}), cl.Predictor('b', b, {})]
  cross = np.stack([a[pairs.cell, pairs.drug], b[pairs.cell, pairs.drug]], 1)
  fit = cl.drug_blend(parts, cross, pairs, 4, val, shrinks=(0.1, 1000.0))
  assert fit.params['shrink'] == 0.1
  assert fit.params['val']['shrink=0.1'] > fit.params['val']['shrink=1000'] + 0.2
  with pytest.raises(ValueError, match='chooses its shrinkage on validation pairs'):
    cl.drug_blend(parts, cross, pairs, 4, None, shrinks=(0.1, 1000.0))


def _split(n: int, seed: int = 1):
  perm = np.random.default_rng(seed).permutation(n)
  return np.sort(perm[n // 5:]), np.sort(perm[n // 10:n // 5]), np.sort(perm[:n // 10])


def test_scrambled_test_labels_change_no_choice_and_no_prediction():
  x, cell, drug, y = _synthetic()
  train, val, test = _split(len(y))
  scrambled = y.copy()
  scrambled[test] = np.random.default_rng(5).permutation(y[test]) * 3 + 7
  pred_a, info_a = cl.fit_classical('legacy', cell, drug, y, train, val, test, 40, 12, x, seed=0)
  pred_b, info_b = cl.fit_classical('legacy', cell, drug, scrambled, train, val, test, 40, 12, x,
                                    seed=0)
  assert set(pred_a) == {'additive', 'matrix_factorization', 'item_knn', 'user_knn',
                         'item_knn_additive', 'user_knn_additive',
                         'user_knn_after_item_knn', 'item_knn_after_cascade', 'ridge_per_drug',
                         'kernel_ridge', 'blend', 'drug_blend'}
  for name in pred_a:
    np.testing.assert_array_equal(pred_a[name], pred_b[name])
    assert _choices(info_a[name]) == _choices(info_b[name])
  scrambled[test] = np.nan  # not even read
  pred_c, _ = cl.fit_classical('legacy', cell, drug, scrambled, train, val, test, 40, 12, x, 0)
  np.testing.assert_array_equal(pred_a['blend'], pred_c['blend'])
  np.testing.assert_array_equal(pred_a['drug_blend'], pred_c['drug_blend'])


def _choices(info: dict) -> dict:
  return {k: v for k, v in info['params'].items()
          if k in ('rank', 'l2', 'k', 'power', 'shrink', 'lambda_rel', 'width_rel', 'weights',
                   'val', 'cv')}


def test_blend_beats_its_parts_on_seen_pairs():
  x, cell, drug, y = _synthetic(seed=6)
  train, val, test = _split(len(y), seed=6)
  pred, _ = cl.fit_classical('seen_pairs', cell, drug, y, train, val, test, 40, 12, x, seed=0)
  error = {k: np.mean((p - y[test]) ** 2) for k, p in pred.items()}
  assert error['blend'] < error['matrix_factorization'] < error['additive'], error


def test_line_annotations_are_named_and_checked():
  x = np.random.default_rng(0).standard_normal((12, 3))
  lines = np.arange(10)
  with pytest.raises(ValueError, match="unknown line annotation 'tissue'"):
    cl.annotation_kernels({'tissue': np.zeros(12, int)}, 12, lines)
  with pytest.raises(ValueError, match="a weight for 'medium' but no such line annotation"):
    cl.kernel_map(x, lines, 1.0, {'type': np.zeros(12, int)}, {'medium': 0.1})
  with pytest.raises(ValueError, match='one float per cell line'):
    cl.value_kernel(np.zeros(11), 12, lines)
  with pytest.raises(DataError, match='1 training lines have one'):
    cl.value_kernel(np.r_[1.0, np.full(9, np.nan), 2.0, 3.0], 12, lines)   # 10, 11 are not training
  assert cl.annotation_weights_of({'type_weight': 0.1}) == {'type': 0.1, 'medium': 0.0,
                                                            'doubling': 0.0, 'fine': 0.0}
  with pytest.raises(ValueError, match="a weight for 'tissue'; the kernels are type, medium"):
    cl.kernel_map(x, lines, 1.0, None, {'tissue': 0.1})


def test_value_kernel_by_hand():
  """Standardised over the training lines that have a value; a line without one is average."""
  k = cl.value_kernel(np.array([1.0, 3.0, np.nan, 5.0]), 4, np.array([0, 1, 2]))
  z = np.array([-1.0, 1.0, 0.0, 3.0])   # mean 2, sd 1 over lines 0 and 1
  np.testing.assert_allclose(k, np.outer(z, z))


def test_unseen_lines_get_only_feature_models_and_say_why():
  x, cell, drug, y = _synthetic()
  lines = np.random.default_rng(7).permutation(40)
  test, val = np.flatnonzero(np.isin(cell, lines[:6])), np.flatnonzero(np.isin(cell, lines[6:10]))
  train = np.flatnonzero(np.isin(cell, lines[10:]))
  pred, info = cl.fit_classical('leave_cell_out', cell, drug, y, train, val, test, 40, 12, x, 0)
  assert set(pred) == {'ridge_per_drug', 'kernel_ridge', 'blend'}
  assert not info['matrix_factorization']['applies']
  assert 'cell line' in info['matrix_factorization']['why']
  assert set(info['blend']['params']['weights']) == {'ridge_per_drug', 'kernel_ridge'}
  assert not info['drug_blend']['applies'] and 'whole lines' in info['drug_blend']['why']
  assert cl.mean_drug_pcc(pred['kernel_ridge'], y[test], drug[test]) > 0.3  # 0.40 measured
  assert info['kernel_ridge']['params']['type_weight'] == 0.0   # no groups given
  assert info['kernel_ridge']['params']['medium_weight'] == 0.0


def test_refit_keeps_the_chosen_annotation_weights():
  """With annotations, kernel ridge chooses their weights on training lines, one after another
  (the first with the width); the refit on training + validation pairs keeps them all."""
  x, cell, drug, y = _synthetic()
  groups = {'type': np.arange(40) % 4, 'medium': np.arange(40) % 3 - 1,
            'doubling': np.where(np.arange(40) % 5 == 0, np.nan, np.sin(np.arange(40.0)))}
  lines = np.random.default_rng(7).permutation(40)
  test, val = np.flatnonzero(np.isin(cell, lines[:6])), np.flatnonzero(np.isin(cell, lines[6:10]))
  train = np.flatnonzero(np.isin(cell, lines[10:]))
  _, info = cl.fit_classical('leave_cell_out', cell, drug, y, train, val, test, 40, 12, x, 0,
                             refit=True, annotations=groups)
  chosen, refit = info['kernel_ridge']['params'], info['kernel_ridge']['refit']['params']
  for name in ('type', 'medium', 'doubling'):
    assert chosen[f'{name}_weight'] in cl.ANNOTATION_WEIGHTS[name]
  assert chosen['annotations'] == {'type': 4, 'medium': 2, 'doubling': 32}   # -1 / nan: none
  # Widths x type weights, then each further weight (its 0 is the earlier stage's choice), then
  # the spectrum stage's lambdas x gammas.
  grid = cl.ANNOTATION_WEIGHTS
  assert len(chosen['cv']) == len(cl.LAMBDAS) * (
      len(cl.WIDTHS) * len(grid['type']) + len(grid['medium']) - 1 + len(grid['doubling']) - 1
      + len(cl.FINE_WEIGHTS) - 1 + len(cl.SPECTRUM_GAMMAS))
  for key in ('type_weight', 'medium_weight', 'doubling_weight', 'fine_weight', 'width_rel',
              'lambda_rel',
              'spectrum_lambda_rel', 'spectrum_gamma'):
    assert refit[key] == chosen[key]


def test_unseen_drugs_get_no_predictor():
  x, cell, drug, y = _synthetic()
  test, val = np.flatnonzero(drug == 0), np.flatnonzero(drug == 1)
  train = np.flatnonzero(drug > 1)
  pred, info = cl.fit_classical('leave_drug_out', cell, drug, y, train, val, test, 40, 12, x, 0)
  assert pred == {}
  assert not any(v['applies'] for v in info.values())
  assert 'per drug' in info['ridge_per_drug']['why'] and 'code per drug' in info['item_knn']['why']


def test_refit_keeps_every_choice_and_uses_validation_pairs():
  x, cell, drug, y = _synthetic()
  train, val, test = _split(len(y))
  pred, info = cl.fit_classical('seen_pairs', cell, drug, y, train, val, test, 40, 12, x, 0)
  pred_r, info_r = cl.fit_classical('seen_pairs', cell, drug, y, train, val, test, 40, 12, x, 0,
                                    refit=True)
  assert info_r['matrix_factorization']['refit']['pairs'] == len(train) + len(val)
  for name in ('matrix_factorization', 'kernel_ridge', 'item_knn'):
    chosen = {k: v for k, v in info_r[name]['refit']['params'].items()
              if k in ('rank', 'l2', 'k', 'power', 'shrink', 'lambda_rel', 'width_rel')}
    assert chosen and chosen.items() <= info[name]['params'].items()
  for name in ('item_knn', 'user_knn_after_item_knn', 'item_knn_after_cascade'):
    assert {'power', 'shrink'} <= info_r[name]['refit']['params'].keys()
    assert not np.allclose(pred[name], pred_r[name])
  assert info_r['blend']['params']['weights'] == info['blend']['params']['weights']
  assert info_r['drug_blend']['refit']['params']['shrink'] == info['drug_blend']['params']['shrink']
  assert info_r['drug_blend']['refit']['params']['cross_fitted_pairs'] > len(train)
  # The refit blend predicts through the refit predictors, not the ones that chose.
  pairs = lambda idx: cl.Pairs(cell[idx], drug[idx], y[idx])
  fitted, info = cl._select('seen_pairs', pairs(train), pairs(val), x, 40, 12, 0, {})
  out = cl._refit(fitted, info, pairs(np.r_[train, val]), x, 40, 12, 0)
  assert [q.name for q in out['drug_blend'].parts] == [q.name for q in fitted['drug_blend'].parts]
  assert all(q is out[q.name] for q in out['drug_blend'].parts)


def test_refit_reports_validation_predictions_of_the_selecting_fits():
  x, cell, drug, y = _synthetic()
  train, val, test = _split(len(y))
  on_val, _ = cl.fit_classical('seen_pairs', cell, drug, y, train, val, val, 40, 12, x, 0)
  held = {}
  pred_r, _ = cl.fit_classical('seen_pairs', cell, drug, y, train, val, test, 40, 12, x, 0,
                               refit=True, val_predictions=held)
  assert held.keys() == pred_r.keys() == on_val.keys()
  for name, p in on_val.items():
    np.testing.assert_allclose(held[name], p)   # not the refit's in-sample predictions
  refit_on_val, _ = cl.fit_classical('seen_pairs', cell, drug, y, train, val, val, 40, 12, x, 0,
                                     refit=True)
  assert not np.allclose(refit_on_val['matrix_factorization'], held['matrix_factorization'])


def test_bad_input_is_named():
  x, cell, drug, y = _synthetic()
  train, val, test = _split(len(y))
  bad = y.copy()
  bad[train[3]] = np.inf
  with pytest.raises(DataError, match='training pairs: pair 3 has ln IC50 inf'):
    cl.fit_classical('legacy', cell, drug, bad, train, val, test, 40, 12, x)
  with pytest.raises(ValueError, match='unknown split kind'):
    cl.fit_classical('sideways', cell, drug, y, train, val, test, 40, 12, x)
  with pytest.raises(ValueError, match='needs validation pairs'):
    cl.fit_classical('legacy', cell, drug, y, train, val[:0], test, 40, 12, x)
  line = cell[test[0]]
  with pytest.raises(ValueError, match=f'requested pair 0 has cell line {line} with no training'):
    cl.fit_classical('legacy', cell, drug, y, train[cell[train] != line], val[cell[val] != line],
                     test[:1], 40, 12, x)


@pytest.mark.parametrize('grouped', [False, True])
def test_ridge_on_the_kernel_map_is_kernel_ridge(grouped):
  """Per-drug ridge on `kernel_map` features is `kernel_ridge` at that width (and same-group
  weight): the same lambda and spectrum chosen by the same inner CV, the same predictions for
  training and held-out lines."""
  rng = np.random.default_rng(0)
  n, d, drugs = 60, 8, 5
  x = rng.standard_normal((n, d))
  groups = ({'type': rng.integers(-1, 4, n), 'medium': rng.integers(-1, 2, n),
             'doubling': np.where(rng.random(n) < 0.2, np.nan, rng.standard_normal(n))}
            if grouped else None)
  cell, drug = np.repeat(np.arange(n), drugs), np.tile(np.arange(drugs), n)
  y = np.sin(x[cell, 0] * (drug + 1)) + drug + 0.1 * rng.standard_normal(len(cell))
  lines = np.arange(45)
  keep = (rng.random(len(cell)) > 0.2) & np.isin(cell, lines)
  train = cl.Pairs(cell[keep], drug[keep], y[keep])
  kr = cl.kernel_ridge(x, train, drugs, 0, widths=(2.0,), annotations=groups,
                       annotation_weights={'type': (0.3,), 'medium': (0.1,), 'doubling': (0.2,),
                                           'fine': (0.4,)})
  phi, info = cl.kernel_map(x, lines, 2.0, groups, cl.annotation_weights_of(kr.params))
  assert ((info['type_weight'], info['medium_weight'], info['doubling_weight'])
          == ((0.3, 0.1, 0.2) if grouped else (0.0, 0.0, 0.0)))
  assert info['fine_weight'] == 0.4   # a kernel on the features: with or without annotations
  rr = cl.ridge_per_drug(phi, train, drugs, 0, spectrum=(cl.LAMBDAS, cl.SPECTRUM_GAMMAS))
  assert info['dim'] <= len(lines) - 1 and info['width'] == pytest.approx(2 * info['median_distance'])
  assert rr.params['lambda'] == pytest.approx(kr.params['lambda'])
  assert rr.params['lambda_rel'] == kr.params['lambda_rel']
  assert cl.spectrum_of(rr.params) == cl.spectrum_of(kr.params)
  np.testing.assert_allclose(rr.scores, kr.scores, atol=1e-9)
  np.testing.assert_allclose(phi[lines].mean(0), 0.0, atol=1e-9)   # centred on training lines


@pytest.mark.parametrize('kind', ['type', 'medium', 'doubling'])
def test_kernel_ridge_weights_an_annotation_when_it_carries_the_signal(kind):
  """Lines of a group (cancer type, screening medium) or of a similar doubling time share a
  sensitivity the features barely show: inner CV over training lines turns that annotation's
  kernel on, and held-out lines are predicted better than by RBF alone."""
  rng = np.random.default_rng(4)
  n, drugs = 120, 6
  groups = rng.integers(0, 6, n)
  x = rng.standard_normal((n, 5))
  effect = rng.standard_normal(6)[groups]
  if kind == 'doubling':   # a value per line (a sixth unknown), the effect linear in it
    groups = np.where(np.arange(n) % 6 == 5, np.nan, rng.standard_normal(n))
    effect = np.nan_to_num(groups)
  cell, drug = np.repeat(np.arange(n), drugs), np.tile(np.arange(drugs), n)
  y = effect[cell] * (1 + 0.2 * drug) + 0.3 * x[cell, 0] + 0.3 * rng.standard_normal(len(cell))
  held = np.arange(n) >= 90
  train = ~held[cell]
  pairs = cl.Pairs(cell[train], drug[train], y[train])
  with_type = cl.kernel_ridge(x, pairs, drugs, 0, annotations={kind: groups})
  rbf = cl.kernel_ridge(x, pairs, drugs, 0)
  assert with_type.params[f'{kind}_weight'] > 0
  assert with_type.params['annotations'] == {kind: 100 if kind == 'doubling' else 6}
  assert rbf.params[f'{kind}_weight'] == 0.0 and rbf.params['annotations'] == {}
  score = lambda fit: cl.mean_drug_pcc(fit.scores[cell[~train], drug[~train]], y[~train],
                                       drug[~train])
  assert score(with_type) > score(rbf) + 0.2


def test_kernel_ridge_weights_the_fine_rbf_when_close_lines_share_a_response():
  """Lines come in twins (features a hair apart) that share a response the features do not
  otherwise show: only a kernel much narrower than the median distance tells twins from the rest.
  Inner CV over training lines turns the fine RBF on, and a held-out line is predicted from its
  twin better than without it."""
  rng = np.random.default_rng(5)
  pairs_of, drugs = 60, 4
  centre = rng.standard_normal((pairs_of, 6))
  x = np.repeat(centre, 2, 0) + 0.05 * rng.standard_normal((2 * pairs_of, 6))
  shared = np.repeat(rng.standard_normal(pairs_of), 2)
  n = 2 * pairs_of
  cell, drug = np.repeat(np.arange(n), drugs), np.tile(np.arange(drugs), n)
  y = shared[cell] * (1 + 0.3 * drug) + 0.2 * rng.standard_normal(len(cell))
  held = (np.arange(n) % 2 == 1) & (np.arange(n) >= 80)   # one twin of each of the last 20 pairs
  train = ~held[cell]
  pairs = cl.Pairs(cell[train], drug[train], y[train])
  fine = cl.kernel_ridge(x, pairs, drugs, 0, spectrum=None)
  plain = cl.kernel_ridge(x, pairs, drugs, 0, annotation_weights={'fine': (0.0,)}, spectrum=None)
  assert fine.params['fine_weight'] > 0 and plain.params['fine_weight'] == 0.0
  score = lambda fit: cl.mean_drug_pcc(fit.scores[cell[~train], drug[~train]], y[~train],
                                       drug[~train])
  assert score(fine) > score(plain) + 0.05, (score(fine), score(plain))   # 0.95 vs 0.83
