"""Scoring predictions on a 6-pair dataset whose metrics are worked out by hand in the comments."""

import math

import numpy as np
import pytest

from cdr_jax.eval import evaluate
from tests.conftest import hand_dataset

# pair: 0 (c0,d0)  1 (c1,d0)  2 (c2,d0)  3 (c0,d1)  4 (c1,d1)  5 (c2,d1); c0, c1 are T0, c2 is T1.
OBS = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
PRED = np.array([1.0, 2.0, 3.0, 1.0, 3.0, 2.0])
LABELS = [1, 0, 1, 0, -1, 1]
SCORES = np.array([0.9, 0.2, 0.4, 0.6, 0.5, 0.7])
ALL = np.arange(6)
# Overall: deviations from the means (2, 2) are obs [-1,0,1,-1,0,1], pred [-1,0,1,-1,1,0]:
# PCC = 3 / sqrt(4 * 4) = 0.75. Errors [0,0,0,0,1,-1]: RMSE = sqrt(2/6), R² = 1 - 2/4 = 0.5.
# Ranks (ties averaged) are [.5,2.5,4.5] per drug for obs, [.5,2.5,4.5,.5,4.5,2.5] for pred:
# deviations [-2,0,2,-2,0,2] and [-2,0,2,-2,2,0] give Spearman 12 / 16 = 0.75.
# Drug 0 is predicted exactly (PCC 1); drug 1: obs [1,2,3], pred [1,3,2]: PCC 1 / 2 = 0.5.
# T0 = pairs 0,1,3,4: obs [1,2,1,2] (dev ±.5), pred [1,2,1,3] (mean 1.75,
# dev [-.75,.25,-.75,1.25]):
# PCC = 1.5 / sqrt(1 * 2.75) = 3 / sqrt(11). T1 and every cell line have 2 pairs: no PCC.
T0_PCC = 3 / math.sqrt(11)


@pytest.fixture(scope='module')
def ds():
  return hand_dataset([0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1], OBS, cell_type=[0, 0, 1],
                      pair_label=LABELS)


def test_evaluate_regression_overall_and_per_group(ds):
  out = evaluate.evaluate(PRED, ds, ALL, 'regression')
  assert out['n'] == 6
  for key, value in (('pcc', 0.75), ('spearman', 0.75), ('rmse', math.sqrt(1 / 3)), ('r2', 0.5)):
    assert out[key] == pytest.approx(value), key
  assert out['per_drug_pcc'] == pytest.approx({'mean': 0.75, 'median': 0.75, 'groups': 2})
  assert out['per_type_pcc'] == pytest.approx({'mean': T0_PCC, 'median': T0_PCC, 'groups': 1})
  assert out['per_cell_pcc']['groups'] == 0 and math.isnan(out['per_cell_pcc']['mean'])


def test_evaluate_scores_only_the_given_pairs(ds):
  # Pairs 0..2 are drug 0, predicted exactly; `pred` is aligned with `pairs`.
  out = evaluate.evaluate(PRED[:3], ds, np.arange(3), 'regression')
  assert out['pcc'] == pytest.approx(1.0) and out['rmse'] == 0.0 and out['n'] == 3
  assert out['per_drug_pcc'] == pytest.approx({'mean': 1.0, 'median': 1.0, 'groups': 1})


def test_evaluate_classification(ds):
  out = evaluate.evaluate(SCORES, ds, ALL, 'classification')
  # Pair 4 is unlabelled (-1). Positives score .9 .4 .7, negatives .2 .6: of the 6 pairs a
  # positive wins 2 + 1 + 2 = 5, AUROC 5/6. Ranked .9+ .7+ .6- .4+ .2-: precision at each positive
  # 1, 1, 3/4, AUPRC 11/12. At 0.5: predicted [1,0,0,1,1] vs [1,0,1,0,1], accuracy 3/5.
  assert out == pytest.approx({'auroc': 5 / 6, 'auprc': 11 / 12, 'accuracy': 0.6, 'n': 5})


def test_group_tables_put_every_predictor_side_by_side(ds):
  other = np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.0])  # each drug reversed: PCC -1 in both
  tables = evaluate.group_tables({'model': PRED, 'other': other}, ds, ALL)
  assert set(tables) == {'drug', 'cell', 'type'}
  drug = tables['drug']
  assert list(drug[0]) == ['drug', 'n', 'drug_name', 'model_pcc', 'model_spearman', 'model_rmse',
                           'other_pcc']
  assert drug[0] == pytest.approx({'drug': 'D0', 'n': 3, 'drug_name': 'drug 0', 'model_pcc': 1.0,
                                   'model_spearman': 1.0, 'model_rmse': 0.0, 'other_pcc': -1.0})
  # Drug 1: errors [0, 1, -1], RMSE sqrt(2/3); Spearman of [1,3,2] vs [1,2,3] is also 0.5.
  assert drug[1] == pytest.approx({'drug': 'D1', 'n': 3, 'drug_name': 'drug 1', 'model_pcc': 0.5,
                                   'model_spearman': 0.5, 'model_rmse': math.sqrt(2 / 3),
                                   'other_pcc': -1.0})
  cell = tables['cell']
  assert [(r['cell'], r['n']) for r in cell] == [('C0', 2), ('C1', 2), ('C2', 2)]
  assert all(math.isnan(r['model_pcc']) and math.isnan(r['other_pcc']) for r in cell)
  # Cell 0's errors are [0, 0]; cells 1 and 2 have one error of 1: RMSE sqrt(1/2).
  assert [r['model_rmse'] for r in cell] == pytest.approx([0.0, math.sqrt(0.5), math.sqrt(0.5)])
  types = tables['type']
  assert [(r['type'], r['n']) for r in types] == [('T0', 4), ('T1', 2)]
  assert types[0]['model_pcc'] == pytest.approx(T0_PCC) and math.isnan(types[1]['model_pcc'])


def test_selection_metrics(ds):
  m = evaluate.selection_metrics(PRED, ALL, ds, 'regression')
  assert m == pytest.approx({'pcc': 0.75, 'spearman': 0.75, 'rmse': math.sqrt(1 / 3),
                             'per_drug_pcc': 0.75})
  assert evaluate.selection_metrics(SCORES, ALL, ds, 'classification') == pytest.approx(
      {'auroc': 5 / 6})


def test_selection_score_higher_is_better():
  m = {'pcc': 0.3, 'rmse': 2.0, 'per_drug_pcc': float('nan')}
  assert evaluate.selection_score(m, 'pcc') == 0.3
  assert evaluate.selection_score(m, 'rmse') == -2.0  # lower RMSE, higher score
  assert evaluate.selection_score(m, 'per_drug_pcc') == -np.inf  # nan never wins
  with pytest.raises(ValueError, match="'auroc'; for this task choose one of pcc, rmse, per_drug"):
    evaluate.selection_score(m, 'auroc')
