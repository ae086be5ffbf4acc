"""How much of the seen-pairs figure is replicate measurements, and which folds the per-drug blend
should be cross-fitted on (minutes; no network).

  python bench/legacy_replicates.py --config=configs/baseline.py [--seeds=0,1,2]

GDSC measured some (line, drug) pairs twice, and the published legacy split holds out measurements,
not pairs: some test pairs have a second measurement in the training pairs. This counts them and
scores the tuned classical predictors (`experiment.fit_classical`, refit as in every run) on all
test pairs, on the test pairs never measured in training or validation ("unmeasured"), and on the
others. The per-drug blend is fitted twice: cross-fitted over (line, drug) keys (the default,
`classical.CROSS_BY_KEY`) and over measurements. JSON on stdout.

Session 20 found what the repeats are: 15 drugs screened under two GDSC ids (`bench/screens.py`).
With screens as identities (`data.screens`, the default since) a key is a (line, screen), which
GDSC measured once, and the two fold rules deal the same folds; session 19's figures are
`--config.data.screens=False`.
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
from configs import common

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Data config.')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds (validation carve, MF init, inner folds).')
SHOWN = ('matrix_factorization', 'item_knn_after_cascade', 'blend', 'drug_blend')


def scores(pred: np.ndarray, y: np.ndarray, drug: np.ndarray) -> dict:
  return {'per_drug_pcc': classical.mean_drug_pcc(pred, y, drug),
          'pcc': float(np.corrcoef(pred, y)[0, 1]), 'pairs': int(len(y))}


def run(ds, config) -> dict:
  split = splits.make_split(ds, config.split)
  cell_x, _ = experiment.standardized_features(ds, np.unique(ds.pair_cell[split.train]),
                                               np.unique(ds.pair_drug[split.train]), config)
  measured = splits.measured_before(ds, np.concatenate([split.train, split.val]), split.test)
  y, drug = ds.pair_y[split.test], ds.pair_drug[split.test]
  out = {'test_pairs': int(len(y)), 'test_pairs_measured_in_training': int(measured.sum()),
         'validation_pairs_measured_in_training': float(
             splits.measured_before(ds, split.train, split.val).mean())}
  for by_key in (True, False):
    classical.CROSS_BY_KEY = by_key
    preds, info = experiment.fit_classical(ds, split, cell_x, config, split.test)
    folds = 'key' if by_key else 'measurement'
    for name in SHOWN if by_key else ('drug_blend',):
      p = preds[name]
      out[name if by_key else f'drug_blend_by_{folds}'] = {
          'all': scores(p, y, drug), 'unmeasured': scores(p[~measured], y[~measured],
                                                           drug[~measured]),
          'measured_pcc': float(np.corrcoef(p[measured], y[measured])[0, 1])}
    out[f'drug_blend_by_{folds}_choice'] = {
        k: info['drug_blend']['params'][k] for k in ('shrink', 'val_score')}
  classical.CROSS_BY_KEY = True
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  result = {}
  for seed in _SEEDS.value:
    common.set_seed(config, int(seed))
    result[f'seed_{seed}'] = run(ds, config)
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  app.run(main)
