"""The tuned classical predictors on the real splits, without the network (seconds per split).

  python bench/classical.py --config=configs/baseline.py [--folds=0,1,2,3,4]
Legacy split (seed of the config) and the leave_cell_out folds: every predictor that applies, its
test PCC and mean per-drug PCC, and what it chose on training / validation pairs (JSON). These are
the predictors every training run fits beside the network (`experiment.classical_predictions`).
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
from cdr_jax.eval import evaluate

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Data config.')
_FOLDS = flags.DEFINE_list('folds', ['0', '1', '2', '3', '4'], 'leave_cell_out folds.')


def score(ds, config, split) -> dict:
  cell_x, _ = experiment.standardized_features(ds, np.unique(ds.pair_cell[split.train]),
                                               np.unique(ds.pair_drug[split.train]), config)
  preds, info = experiment.fit_classical(ds, split, cell_x, config, split.test)
  out = {}
  for name, p in preds.items():
    m = evaluate.evaluate(p, ds, split.test, 'regression')
    out[name] = {'pcc': m['pcc'], 'per_drug_pcc': m['per_drug_pcc']['mean'],
                 'seconds': info[name]['seconds']}
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  result = {'cell_repr': config.data.cell_repr, 'legacy': score(ds, config, splits.make_split(
      ds, config.split))}
  config.split.name = 'leave_cell_out'
  folds = []
  for f in _FOLDS.value:
    config.split.fold = int(f)
    folds.append(score(ds, config, splits.make_split(ds, config.split)))
  result['leave_cell_out'] = {
      name: {'per_drug_pcc_mean': float(np.mean([f[name]['per_drug_pcc'] for f in folds])),
             'per_drug_pcc_sd': float(np.std([f[name]['per_drug_pcc'] for f in folds], ddof=1)),
             'folds': [f[name]['per_drug_pcc'] for f in folds]} for name in folds[0]}
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  app.run(main)
