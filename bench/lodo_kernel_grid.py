"""How far can re-weighting the unseen-drug kernel go? Every weight vector of a grid, scored on all
223 LODO folds with the held-out labels (JSON out): a ceiling for the lever, not a predictor.

  CDR_DATA_DIR=../shared/data python bench/lodo_kernel_grid.py --config=configs/baseline.py
The sweep's classical baseline (`cdr_jax.eval.lodo_kernel`: z-scored naive line means plus kernel
ridge over the other drugs' profiles, one ridge per component, chosen per fold by leave-one-out
over the other drugs) with its kernel = sum_k w_k x kernel_k over the four label-free kernels
(pathway, target, Morgan, descriptors), each w_k in `--levels` (all-zero left out). The best
vector is picked with the held-out drugs' labels, so its score bounds what choosing the weights in
any label-free way could give on this grid. About 13 s per vector on one core (80 vectors: 17 min).
"""

import itertools
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags
import numpy as np
import threadpoolctl

from cdr_jax import data
from cdr_jax.data import dataset
from cdr_jax.eval import lodo_kernel as lk

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Data config.')
_LEVELS = flags.DEFINE_list('levels', ['0', '1', '3'], 'Candidate weight of each kernel.')

NAMES = ('pathway', 'target', 'morgan', 'descriptors')


def score(ds, kernels: dict, weights) -> float:
  """Mean per-drug PCC over all folds of the baseline with kernel sum_k weights[k] x kernel_k."""
  k = sum(w * kernels[n] for w, n in zip(weights, NAMES))
  res = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids), k[None],
                             np.ones((1, 1)), lk.LAMBDAS)
  return float(np.nanmean(lk.per_drug_pcc(res.profiles[ds.pair_drug, ds.pair_cell], ds.pair_y,
                                          ds.pair_drug, len(ds.drug_ids))))


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  root = dataset.resolve_data_root(config.data.root)
  levels = [float(x) for x in _LEVELS.value]
  with threadpoolctl.threadpool_limits(1):
    kernels = lk.drug_kernels(ds, root)
    baseline = score(ds, kernels, [lk.KERNEL_WEIGHTS[n] for n in NAMES])
    grid = {}
    for w in itertools.product(levels, repeat=len(NAMES)):
      if any(w):
        grid[','.join(f'{x:g}' for x in w)] = round(score(ds, kernels, w), 4)
  best = max(grid, key=grid.get)
  print(json.dumps({'kernels': NAMES, 'levels': levels, 'folds': len(ds.drug_ids),
                    'baseline_weights': lk.KERNEL_WEIGHTS, 'baseline': round(baseline, 4),
                    'best_on_test_labels': {'weights': best, 'mean_per_drug_pcc': grid[best]},
                    'top5': dict(sorted(grid.items(), key=lambda t: -t[1])[:5]),
                    'grid': grid}, indent=1))


if __name__ == '__main__':
  app.run(main)
