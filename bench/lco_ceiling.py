"""How much of a held-out cell line's per-drug PCC is its general sensitivity? (JSON out)

Per-drug PCC on unseen cell lines ranks the held-out lines within each drug. A large part of that
ranking is a line's overall sensitivity (its cell effect in y ≈ mu + drug + cell), the same for
every drug. For each leave_cell_out fold this prints, on the test pairs:
  oracle_cell_effect: drug effect + the held-out line's TRUE cell effect, estimated from its other
    test drugs (leave-one-drug-out, so the scored pair is never used). Not a predictor (it reads test
    labels); the reference a predictor of general sensitivity alone can at best reach;
  ridge_cell_effect: the same with the cell effect predicted from the features by one ridge fit on
    the training lines' effects (one model for all drugs);
  ridge_per_drug: the classic baseline (one ridge per drug, as in cdr_jax.baselines);
  effect_pcc: PCC between predicted and true cell effects of the held-out lines.

  CDR_DATA_DIR=../shared/data python bench/lco_ceiling.py [--config=configs/baseline.py]
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
from cdr_jax.data import cells
from cdr_jax.data import splits
from cdr_jax.eval import baselines
from cdr_jax.eval import metrics

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Cell representation.')
_FOLDS = flags.DEFINE_list('folds', ['0', '1', '2', '3', '4'], 'leave_cell_out folds to score.')


def loo_cell_effect(resid: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
  """Per pair: the mean residual of its cell line over the line's OTHER pairs (nan if none)."""
  total = np.bincount(cell, resid, n_cells)[cell] - resid
  count = np.bincount(cell, minlength=n_cells)[cell] - 1
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def fold_figures(ds: data.Dataset, split: splits.Split, lam: float) -> dict:
  """The three predictors' per-drug PCC on one fold's test pairs, and the effect PCC."""
  n_cells, n_drugs = len(ds.cell_ids), len(ds.drug_ids)
  tr, te = split.train, split.test
  y, cell, drug = ds.pair_y.astype(np.float64), ds.pair_cell, ds.pair_drug
  mu, drug_eff, cell_eff = baselines.additive_effects(y[tr], cell[tr], drug[tr], n_cells, n_drugs)
  base = mu + drug_eff[drug[te]]
  oracle = base + loo_cell_effect(y[te] - base, cell[te], n_cells)
  # One ridge (primal: features are few hundred) from standardised features to the cell effect.
  train_cells = np.unique(cell[tr])
  x = cells.standardize(ds.cell_features, train_cells).astype(np.float64)
  xt, t = x[train_cells], cell_eff[train_cells]
  w = np.linalg.solve(xt.T @ xt + lam * np.eye(x.shape[1]), xt.T @ (t - t.mean()))
  predicted_eff = t.mean() + x @ w
  test_cells = np.unique(cell[te])
  true_eff = baselines.group_mean(
      y[te] - base, cell[te], n_cells, np.nan)[test_cells]
  per_drug = baselines.ridge_per_drug(ds, y, tr, te, lam, np.full(len(te), mu))
  score = lambda pred: metrics.mean_group_pcc(pred, y[te], drug[te])
  return {'test_lines': len(test_cells), 'test_pairs': len(te),
          'oracle_cell_effect': score(oracle),
          'ridge_cell_effect': score(base + predicted_eff[cell[te]]),
          'ridge_per_drug': score(per_drug),
          'effect_pcc': metrics.pcc(predicted_eff[test_cells], true_eff)}


def main(argv):
  del argv
  config = _CONFIG.value
  config.split.name = 'leave_cell_out'
  ds = data.load_dataset(config.data)
  out = {'cell_repr': config.data.cell_repr, 'ridge_lambda': config.eval.ridge_lambda, 'folds': {}}
  for f in map(int, _FOLDS.value):
    config.split.fold = f
    out['folds'][f] = fold_figures(ds, splits.make_split(ds, config.split),
                                   config.eval.ridge_lambda)
  keys = ('oracle_cell_effect', 'ridge_cell_effect', 'ridge_per_drug', 'effect_pcc')
  out['mean'] = {k: float(np.mean([v[k] for v in out['folds'].values()])) for k in keys}
  out['sd'] = {k: float(np.std([v[k] for v in out['folds'].values()], ddof=1))
               for k in keys} if len(out['folds']) > 1 else {}
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  app.run(main)
