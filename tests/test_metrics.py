"""Metrics: the mean within-group PCC used to select LODO folds and reported per drug."""

import numpy as np

from cdr_jax.eval import metrics


def test_mean_group_pcc_averages_within_group_correlations():
  # Group 0 is perfectly ranked, group 1 perfectly reversed; their offsets make the pooled PCC high.
  pred = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 5.0, 6.0])
  obs = np.array([0.0, 1.0, 2.0, 12.0, 11.0, 10.0, 5.0, 5.0])
  group = np.array([0, 0, 0, 1, 1, 1, 2, 2])   # group 2 has < 3 pairs: left out
  assert metrics.mean_group_pcc(pred, obs, group) == 0.0
  assert metrics.pcc(pred, obs) > 0.9
  assert np.isnan(metrics.mean_group_pcc(pred[6:], obs[6:], group[6:]))
