"""Metrics against hand-computed values: correlations, tied ranks, errors, AUROC, AUPRC, groups."""

import numpy as np
import pytest

from cdr_jax.eval import metrics


def test_mean_group_pcc_averages_within_group_correlations():
  # Group 0 is perfectly ranked, group 1 perfectly reversed; their offsets make the pooled PCC high.
  pred = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 5.0, 6.0])
  obs = np.array([0.0, 1.0, 2.0, 12.0, 11.0, 10.0, 5.0, 5.0])
  group = np.array([0, 0, 0, 1, 1, 1, 2, 2])   # group 2 has < 3 pairs: left out
  assert metrics.mean_group_pcc(pred, obs, group) == 0.0
  assert metrics.pcc(pred, obs) > 0.9
  assert np.isnan(metrics.mean_group_pcc(pred[6:], obs[6:], group[6:]))


def test_pcc_nan_when_undefined():
  assert metrics.pcc([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) > 0.9
  assert metrics.pcc([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
  # obs [1,2,3] pred [1,3,2]: deviations [-1,0,1] and [-1,1,0], PCC = 1 / sqrt(2 * 2) = 0.5.
  assert metrics.pcc([1.0, 3.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5)
  assert np.isnan(metrics.pcc([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))  # constant prediction
  assert np.isnan(metrics.pcc([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))  # constant observation
  assert np.isnan(metrics.pcc([1.0], [2.0]))
  assert np.isnan(metrics.pcc([], []))


def test_rank_averages_ties():
  # Sorted: 1 (rank 0), 2 (rank 1), 3, 3 (ranks 2 and 3, averaged to 2.5).
  np.testing.assert_array_equal(metrics.rank(np.array([3, 1, 3, 2])), [2.5, 0, 2.5, 1])
  np.testing.assert_array_equal(metrics.rank(np.array([7.0, 7.0, 7.0])), [1, 1, 1])
  np.testing.assert_array_equal(metrics.rank(np.array([0.5, -1.0])), [1, 0])


def test_spearman_is_pcc_of_ranks():
  # Monotone but not linear: Spearman 1, Pearson below 1.
  x = np.array([1.0, 2.0, 3.0, 4.0])
  assert metrics.spearman(x, x ** 3) == pytest.approx(1.0)
  assert metrics.pcc(x, x ** 3) < 0.99
  # pred [1,1,2] ranks [.5,.5,2] (dev [-.5,-.5,1]), obs [1,2,3] ranks [0,1,2] (dev [-1,0,1]):
  # 1.5 / sqrt(1.5 * 2) = sqrt(3) / 2.
  assert metrics.spearman([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(np.sqrt(3) / 2)


def test_rmse_and_r2():
  # Errors [0, -2]: RMSE sqrt(4 / 2); obs mean 2.5, total sum of squares 4.5: R² = 1 - 4 / 4.5.
  assert metrics.rmse(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(np.sqrt(2))
  assert metrics.r2(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(1 / 9)
  assert metrics.r2(np.array([2.5, 2.5]), np.array([1.0, 4.0])) == 0.0  # the mean scores 0
  m = metrics.regression(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0]))
  assert m['n'] == 3 and m['spearman'] == 1.0 and m['rmse'] == pytest.approx(np.sqrt(1 / 3))


def test_auroc_by_hand():
  # Positives .35 and .8 against negatives .1 and .4: .35 beats .1 only, .8 beats both: 3 / 4.
  assert metrics.auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
  # A tie between a positive and a negative counts one half: (.5 + 1 + 1 + 1) / 4.
  assert metrics.auroc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1])) == 0.875
  assert metrics.auroc(np.array([0.3, 0.1]), np.array([1, 0])) == 1.0
  assert np.isnan(metrics.auroc(np.array([0.3, 0.1]), np.array([1, 1])))
  assert np.isnan(metrics.auroc(np.array([0.3, 0.1]), np.array([0, 0])))


def test_auprc_by_hand():
  # Ranked .9+ .8- .7+ .6-: precision at the positives 1/1 and 2/3, mean 5/6.
  score = np.array([0.9, 0.8, 0.7, 0.6])
  assert metrics.auprc(score, np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
  assert metrics.auprc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
  assert np.isnan(metrics.auprc(np.array([0.1, 0.9]), np.array([0, 0])))


def test_classification_leaves_out_unlabelled():
  # Label -1 (no threshold) is dropped: scores [.8, .3, .6] against [1, 0, 0].
  m = metrics.classification(np.array([0.8, 0.3, 0.9, 0.6]), np.array([1, 0, -1, 0]))
  # AUROC: .8 beats .3 and .6: 1. At 0.5: predicted [1, 0, 1] vs [1, 0, 0]: accuracy 2/3.
  assert m == pytest.approx({'auroc': 1.0, 'auprc': 1.0, 'accuracy': 2 / 3, 'n': 3})


def test_per_group_needs_three_pairs_for_a_correlation():
  pred = np.array([1.0, 2.0, 3.0, 5.0, 5.0])
  obs = np.array([1.0, 2.0, 4.0, 1.0, 2.0])
  group = np.array([2, 2, 2, 0, 0])
  rows = metrics.per_group(pred, obs, group, ['g0', 'g1', 'g2'])
  # Groups in index order, only those present; g0 has 2 pairs: no PCC / Spearman, but an RMSE.
  assert [(r['group'], r['n']) for r in rows] == [('g0', 2), ('g2', 3)]
  assert np.isnan(rows[0]['pcc']) and np.isnan(rows[0]['spearman'])
  assert rows[0]['rmse'] == pytest.approx(np.sqrt((16 + 9) / 2))  # errors 4 and 3
  # g2: obs dev [-4/3, -1/3, 5/3], pred dev [-1, 0, 1]: PCC = 3 / sqrt(42/9 * 2) = 0.9820.
  assert rows[1]['pcc'] == pytest.approx(3 / np.sqrt(84 / 9))
  assert rows[1]['spearman'] == 1.0 and rows[1]['rmse'] == pytest.approx(np.sqrt(1 / 3))


def test_summarize_groups_skips_nan():
  rows = [{'pcc': 0.2}, {'pcc': float('nan')}, {'pcc': 0.6}, {'pcc': 0.1}]
  assert metrics.summarize_groups(rows) == pytest.approx({'mean': 0.3, 'median': 0.2, 'groups': 3})
  empty = metrics.summarize_groups([{'pcc': float('nan')}])
  assert empty['groups'] == 0 and np.isnan(empty['mean']) and np.isnan(empty['median'])
  assert metrics.summarize_groups([])['groups'] == 0


def test_mean_group_pcc_is_the_mean_of_per_group():
  rng = np.random.default_rng(0)
  pred, obs = rng.normal(size=40), rng.normal(size=40)
  group = rng.integers(0, 9, 40)
  rows = metrics.per_group(pred, obs, group, [str(g) for g in range(9)])
  assert metrics.mean_group_pcc(pred, obs, group) == pytest.approx(
      metrics.summarize_groups(rows)['mean'])


def test_group_pccs_in_group_order_with_nan_below_three_pairs():
  pred = np.array([5.0, 6.0, 0.0, 1.0, 2.0, 3.0, 1.0, 2.0])
  obs = np.array([1.0, 2.0, 2.0, 1.0, 0.0, 0.0, 1.0, 3.0])
  group = np.array([7, 7, 2, 2, 2, 4, 4, 4])
  out = metrics.group_pccs(pred, obs, group)
  assert out.shape == (3,) and out[0] == pytest.approx(-1.0)       # group 2: reversed
  assert out[1] == pytest.approx(np.corrcoef([3, 1, 2], [0, 1, 3])[0, 1])   # group 4
  assert np.isnan(out[2])                                          # group 7: 2 pairs


def test_gain_lower_bound_by_hand():
  # Gains 0.1 and 0.3 where both are defined: mean 0.2, sd 0.1414 (ddof 1), standard error 0.1.
  pccs, ref = np.array([0.5, 0.7, np.nan]), np.array([0.4, 0.4, 0.3])
  assert metrics.gain_lower_bound(pccs, ref) == pytest.approx(0.1)
  assert metrics.gain_lower_bound(ref, ref) == 0.0                  # the reference itself
  assert metrics.gain_lower_bound(np.array([0.5, 0.3]), np.array([0.4, 0.4])) < 0   # 0 -/+ 0.1
  assert metrics.gain_lower_bound(np.array([0.6, np.nan]), np.array([0.4, 0.1])) == (
      pytest.approx(0.2))                                           # one group: no error term
  assert metrics.gain_lower_bound(np.array([np.nan]), np.array([0.4])) == -np.inf
