"""Can the drug features tell which known drugs a new one behaves like? (JSON out)

The gap between the kernel baseline (0.576 per-drug PCC over all 223 LODO folds) and the oracle
(the best-correlated other drug, 0.680; `bench/lodo_ceiling.py`) is in choosing neighbours. This
measures the choice itself. In each fold (drug d held out), the other drugs' z-scored deviation
profiles (`lodo_kernel.fold_targets`, naive from z-scored profiles: what kernel ridge fits) give
their pairwise behaviour similarity (the correlation of two drugs' deviations over the lines).
Each predictor scores d's similarity to every other drug without d's labels:
  each label-free kernel alone (`lodo_kernel.drug_kernels`, plus ChemNet when the data root has
    `drugs/chemnet.npy`), and the baseline's weighted sum;
  learned: a quadratic model of the kernel values (each kernel, its square and every product of
    two; ridge with a fixed, small L2 on standardised features: about 24,000 pairs per fold, so
    it hardly binds) fitted per fold to the similarities of the other drugs' pairs, so which
    features matter, and how they interact, is learned from the drugs that have labels.
Then d's own deviation profile (in the fold's units; read only to score) says how good the
choice was: the correlation between predicted and actual similarity over the other drugs (mean
over the folds where the predictor is not constant: a drug whose targets no other drug shares
has a constant target-kernel row), and the mean actual similarity of the 5 drugs each predictor
ranks first (ties in drug order), beside the 5 truly most similar drugs and the mean over all
other drugs (a random choice). About a minute.

  CDR_DATA_DIR=../shared/data python bench/lodo_neighbours.py --config=configs/baseline.py
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

from cdr_jax import data
from cdr_jax.data import dataset
from cdr_jax.eval import lodo_kernel as lk

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'The dataset.')
_TOP = flags.DEFINE_integer('top', 5, 'Neighbours each predictor picks.')
_RIDGE = flags.DEFINE_float('ridge', 1.0, "The learned model's L2, per pair feature.")


def quadratic(values: np.ndarray) -> np.ndarray:
  """[..., K] kernel values -> [..., 1 + 2K + K(K-1)/2]: 1, each value, its square, every product
  (the 0/1 pathway kernel's square repeats it; the ridge shares the weight)."""
  pairs = [values[..., i] * values[..., j]
           for i, j in itertools.combinations(range(values.shape[-1]), 2)]
  return np.concatenate([np.ones(values.shape[:-1] + (1,)), values, values ** 2,
                         np.stack(pairs, -1)], -1)


def fit_similarity(features: np.ndarray, similarity: np.ndarray, ridge: float) -> np.ndarray:
  """Ridge weights of `similarity` [n] on `features` [n, F] whose first column is the constant
  (`quadratic`'s): the other columns standardised for the penalty, the intercept unpenalised; the
  weights are returned on the unstandardised features."""
  mean, scale = features[:, 1:].mean(0), features[:, 1:].std(0) + 1e-12
  x = np.concatenate([features[:, :1], (features[:, 1:] - mean) / scale], 1)
  penalty = ridge * np.eye(x.shape[1])
  penalty[0, 0] = 0.0
  w = np.linalg.solve(x.T @ x + penalty, x.T @ similarity)
  return np.concatenate([[w[0] - (w[1:] * mean / scale).sum()], w[1:] / scale])


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  root = dataset.resolve_data_root(config.data.root)
  n_cells, n_drugs = len(ds.cell_ids), len(ds.drug_ids)
  kernels = lk.drug_kernels(ds, root)
  chemnet = lk.chemnet_kernel(ds, config.data, root)
  if chemnet is not None:
    kernels['chemnet'] = chemnet
  kernels['baseline (weighted sum)'] = lk.weighted_kernel(ds, root)[0]
  single = [n for n in kernels if n != 'baseline (weighted sum)']
  values = np.stack([kernels[n] for n in single], -1)   # [D, D, K]
  ybar = lk.profile_matrix(ds.pair_cell, ds.pair_drug, ds.pair_y, n_cells, n_drugs)
  predictors = list(kernels) + ['learned (quadratic in the kernels)']
  corr = {p: [] for p in predictors}
  top_sim = {p: [] for p in predictors + ['truly most similar', 'random (all other drugs)']}
  k = _TOP.value
  for d in range(n_drugs):
    others = np.delete(np.arange(n_drugs), d)
    # The other drugs' deviations as `lodo_kernel.fold_targets` makes them (naive from z-scored
    # profiles), and d's own in the same units: z-scored, minus the others' mean z per line.
    std = lk.standardise_profiles(ybar[:, others])
    zu = lk.unit_rows(lk.zscored_deviations(std.columns, std.line_z)[0])   # [n, C]
    similarity = zu @ zu.T                                       # the other drugs' pairs
    own = lk.zscored_deviations(lk.standardise_profiles(ybar[:, [d]]).columns, std.line_z)[0]
    actual = zu @ lk.unit_rows(own[0])                              # d's labels: scoring only
    iu = np.triu_indices(len(others), 1)
    w = fit_similarity(quadratic(values[np.ix_(others, others)][iu]), similarity[iu],
                       _RIDGE.value)
    scores = {n: kernels[n][d, others] for n in kernels}
    scores['learned (quadratic in the kernels)'] = quadratic(values[d, others]) @ w
    for p, s in scores.items():
      corr[p].append(np.corrcoef(s, actual)[0, 1] if s.std() > 0 else np.nan)
      top_sim[p].append(actual[np.argsort(-s, kind='stable')[:k]].mean())
    top_sim['truly most similar'].append(np.sort(actual)[-k:].mean())
    top_sim['random (all other drugs)'].append(actual.mean())
  out = {'drugs': n_drugs, 'top': k, 'ridge': _RIDGE.value, 'chemnet': chemnet is not None,
         'correlation_with_actual_similarity': {p: round(float(np.nanmean(v)), 4)
                                                for p, v in corr.items()},
         'folds_without_a_correlation': {p: int(np.isnan(v).sum()) for p, v in corr.items()},
         f'mean_actual_similarity_of_top_{k}': {p: round(float(np.mean(v)), 4)
                                                for p, v in top_sim.items()}}
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  app.run(main)
