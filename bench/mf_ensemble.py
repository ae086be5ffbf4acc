"""Matrix factorisation as a seed ensemble: the fair comparator for a model's seed ensemble (JSON).

`launch/report.py` scores the mean prediction of a model's repeats ("ensemble" rows). A model run
with `seed=N` trains on the split carved with seed N; this fits the matrix-factorisation baseline
(the same settings as every run's `matrix_factorization` row) on each of those training sets, with
ALS initialised from seed N, and scores each fit and their mean prediction on the test pairs.

  CDR_DATA_DIR=../shared/data python bench/mf_ensemble.py --config=configs/scfoundation.py \
      --seeds=0,1,2
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
from cdr_jax.data import splits
from cdr_jax.eval import baselines
from cdr_jax.eval import evaluate

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py', 'Data and split.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Split and ALS seeds, one fit each.')


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  n_cells, n_drugs, e = len(ds.cell_ids), len(ds.drug_ids), config.eval
  fits, test = {}, None
  for seed in map(int, _SEEDS.value):
    config.split.seed = seed
    split = splits.make_split(ds, config.split)
    if test is not None and not np.array_equal(split.test, test):
      raise ValueError(f'split {config.split.name!r}: the test pairs change with the seed, so '
                       'there is no common test set to ensemble on')
    test, tr = split.test, split.train
    mu, a, b, u, v = baselines.matrix_factorization(
        ds.pair_y[tr].astype(np.float64), ds.pair_cell[tr], ds.pair_drug[tr], n_cells, n_drugs,
        e.mf_rank, e.mf_l2, e.mf_iters, seed=seed)
    c, d = ds.pair_cell[test], ds.pair_drug[test]
    fits[seed] = mu + a[d] + b[c] + (u[c] * v[d]).sum(1)
  score = lambda pred: evaluate.evaluate(pred, ds, test, 'regression')
  out = {'split': config.split.name, 'mf_rank': e.mf_rank, 'mf_l2': e.mf_l2,
         'test_pairs': len(test), 'fits': {s: score(p) for s, p in fits.items()},
         'ensemble': score(np.mean(list(fits.values()), axis=0))}
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  app.run(main)
