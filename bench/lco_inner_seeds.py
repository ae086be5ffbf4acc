"""How much does kernel ridge's inner-CV seed move its unseen-lines score? (JSON out, ~1 min/seed)

Kernel ridge (`classical.kernel_ridge`, the runs' default) chooses its width, kernel weights,
lambda and spectrum stage by inner K-fold CV over the training lines; the seed (the run's
`train.seed`) assigns those inner folds. The runs report seed 0. For each leave_cell_out fold and
each inner seed this prints the per-drug PCC on the test pairs and what inner CV chose, then the
mean over folds per seed: the spread is the selection noise of the reported figure, which no
choice made without test labels can remove.

  CDR_DATA_DIR=../shared/data python bench/lco_inner_seeds.py [--config=configs/baseline.py]
      [--seeds=0,1,2,3,4]
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

import lco_kernels  # bench/, the script's own folder
from cdr_jax import data
from cdr_jax.data import splits
from cdr_jax.eval import classical as cl

# --config and --folds are lco_kernels' flags (importing it defines them).
_CONFIG, _FOLDS = lco_kernels._CONFIG, lco_kernels._FOLDS  # pylint: disable=protected-access
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2', '3', '4'], 'Inner-CV seeds.')


def main(argv):
  del argv
  config = _CONFIG.value
  config.split.name = 'leave_cell_out'
  ds = data.load_dataset(config.data)
  n_drugs = len(ds.drug_ids)
  annotations = splits.line_annotations(ds, config.split.name)
  seeds = [int(s) for s in _SEEDS.value]
  folds = []
  for f in map(int, _FOLDS.value):
    _, x, train, score = lco_kernels.fold_data(ds, config, f)
    row = {'fold': f, 'test': {}, 'chosen': {}}
    for seed in seeds:
      fit = cl.kernel_ridge(x, train, n_drugs, seed, annotations=annotations)
      row['test'][seed] = score(fit.scores)
      row['chosen'][seed] = {k: fit.params[k] for k in lco_kernels.CHOICES}
    folds.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
  per_seed = {s: float(np.mean([r['test'][s] for r in folds])) for s in seeds}
  print(json.dumps({'cell_repr': config.data.cell_repr, 'folds': folds, 'summary': {
      'per_seed_mean': per_seed, 'mean_over_seeds': float(np.mean(list(per_seed.values()))),
      'min': min(per_seed.values()), 'max': max(per_seed.values())}}, indent=1))


if __name__ == '__main__':
  app.run(main)
