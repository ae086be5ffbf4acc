"""Screens as identities: the classical predictors with one identity per drug against one per
GDSC screen (`data.screens`), on validation and test pairs (minutes; no network).

  python bench/screens.py --config=configs/baseline.py --seeds=0,1,2            # legacy split
  python bench/screens.py --config=configs/baseline.py:leave_cell_out --folds=0,1,2,3,4

GDSC screened 15 drugs (one PubChem CID each) under two drug ids whose ln IC50s on the same lines
differ. Printed first, per such drug: the lines measured in both screens, the two readings'
correlation and mean difference. Then, per seed (or fold of held-out lines), each predictor
(`experiment.fit_classical`, refit as in every run) with `data.screens` off and on: the
validation score its choices were made on (fits on training pairs), and test per-drug / overall PCC
on all test pairs, on the test pairs of the 15 twice-screened drugs and of the other drugs, and on
seen pairs also on the test pairs never measured in training (`splits.measured_before`). Scores are
per drug (PubChem CID) either way. JSON on stdout.
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags
import numpy as np

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax.data import splits
from cdr_jax.eval import classical
from cdr_jax.eval import evaluate
from configs import common

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Data config.')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds (validation carve, MF init, inner folds).')
_FOLDS = flags.DEFINE_list('folds', [], 'Folds of a split with folds (leave_cell_out); each with '
                           'the config\'s seed. Empty: the seeds.')
SHOWN = ('matrix_factorization', 'item_knn_after_cascade', 'ridge_per_drug', 'kernel_ridge',
         'blend', 'drug_blend')


def screen_pairs(ds) -> dict:
  """Per twice-screened drug: lines measured in both screens, correlation, mean difference."""
  column, _, screen_drug = ds.drug_columns()
  out = {}
  for d in np.flatnonzero(np.bincount(screen_drug) > 1):
    a, b = np.flatnonzero(screen_drug == d)[:2]
    ya = dict(zip(ds.pair_cell[column == a], ds.pair_y[column == a]))
    yb = dict(zip(ds.pair_cell[column == b], ds.pair_y[column == b]))
    both = sorted(set(ya) & set(yb))
    u, v = np.array([ya[c] for c in both]), np.array([yb[c] for c in both])
    out[f'{ds.drug_names[d]} ({ds.drug_ids[d]}: GDSC {ds.screen_ids[a]} / {ds.screen_ids[b]})'] = {
        'lines_in_both': len(both), 'pcc': round(float(np.corrcoef(u, v)[0, 1]), 3),
        'mean_difference': round(float(np.mean(v - u)), 3)}
  return out


def scores(p: np.ndarray, ds, pairs: np.ndarray) -> dict:
  m = evaluate.evaluate(p, ds, pairs, 'regression')
  return {'per_drug_pcc': round(m['per_drug_pcc']['mean'], 4), 'pcc': round(m['pcc'], 4),
          'pairs': int(len(pairs))}


def run(ds, config) -> dict:
  split = splits.make_split(ds, config.split)
  cell_x, _ = experiment.standardized_features(ds, np.unique(ds.pair_cell[split.train]),
                                               np.unique(ds.pair_drug[split.train]), config)
  _, _, screen_drug = ds.drug_columns()
  twice = np.flatnonzero(np.bincount(screen_drug) > 1)
  drug = ds.pair_drug[split.test]
  yv, drug_v = ds.pair_y[split.val], ds.pair_drug[split.val]
  subsets = {'all': np.ones(len(drug), bool), 'twice_screened_drugs': np.isin(drug, twice),
             'other_drugs': ~np.isin(drug, twice)}
  if classical.kind_of(split.name) == 'seen_pairs':
    subsets['unmeasured'] = ~splits.measured_before(
        ds, np.concatenate([split.train, split.val]), split.test)
  out = {}
  for screens in (False, True):
    config.data.screens = screens
    val = {}
    preds, _ = experiment.fit_classical(ds, split, cell_x, config, split.test,
                                        val_predictions=val)
    for name in (n for n in SHOWN if n in preds):
      p = preds[name]
      out[f'{name}, {"screens" if screens else "drugs"}'] = {
          'val_per_drug_pcc': round(classical.mean_drug_pcc(val[name], yv, drug_v), 4),
          **{k: scores(p[m], ds, split.test[m]) for k, m in subsets.items()}}
  config.data.screens = True
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  result = {'screens': screen_pairs(ds)}
  for fold in _FOLDS.value:
    config.split.fold = int(fold)
    result[f'fold_{fold}'] = run(ds, config)
  for seed in [] if _FOLDS.value else _SEEDS.value:
    common.set_seed(config, int(seed))
    result[f'seed_{seed}'] = run(ds, config)
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  app.run(main)
