"""What can a held-out drug's structure add to the naive predictor? (JSON out)

For every drug d (each one a leave-one-drug-out fold), the mean over d of the per-drug PCC across
cell lines of:
  naive: each line's mean ln IC50 over the other drugs (the sweep's naive predictor);
  structure_nn: the profile of the training drug most similar to d in structure (Tanimoto on
    Morgan fingerprints, radius 2, 2048 bits); lines it was not measured on get the naive value;
  structure_knn: naive + the similarity-weighted mean of the k most similar drugs' deviations from
    naive (how a structure-aware model could move away from naive);
  oracle_best_drug: the profile of whichever other drug correlates best with d's own (it reads d's
    labels to choose: a reference, not a predictor). What copying one known drug could reach.
Uses every pair of the dataset (no model, no training), so it runs in seconds. Each drug is scored
on all its pairs, as the sweep scores it; GDSC lists some (line, drug) pairs twice, and a
neighbour's profile (and the oracle) takes one of those measurements.

  CDR_DATA_DIR=../shared/data python bench/lodo_ceiling.py [--config=configs/scfoundation.py]
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags
import numpy as np
from rdkit import Chem
from rdkit import DataStructs
from rdkit.Chem import rdFingerprintGenerator

from cdr_jax import data
from cdr_jax.data import dataset
from cdr_jax.data import deepcdr
from cdr_jax.eval import baselines
from cdr_jax.eval import metrics

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py', 'The dataset.')
_K = flags.DEFINE_integer('k', 5, 'Neighbours of structure_knn.')


def similarity(smiles: list[str]) -> np.ndarray:
  """[D, D] Tanimoto similarity of Morgan fingerprints (radius 2, 2048 bits); diagonal 0."""
  gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
  fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
  sim = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])
  np.fill_diagonal(sim, 0.0)
  return sim


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  raw = deepcdr.read_drugs(dataset.resolve_data_root(config.data.root))
  n_c, n_d = len(ds.cell_ids), len(ds.drug_ids)
  y = np.full((n_c, n_d), np.nan)
  y[ds.pair_cell, ds.pair_drug] = ds.pair_y
  seen = np.isfinite(y)
  sim = similarity([raw.cid_smiles[cid] for cid in ds.drug_ids])
  scores = {k: [] for k in ('naive', 'structure_nn', 'structure_knn', 'oracle_best_drug')}
  for d in range(n_d):
    test = np.flatnonzero(ds.pair_drug == d)
    lines, obs = ds.pair_cell[test], ds.pair_y[test]
    naive = baselines.naive_cell_mean(ds, d, test)  # the sweep's naive
    nn = int(np.argmax(sim[d]))
    nn_pred = np.where(seen[lines, nn], y[lines, nn], naive)
    top = np.argsort(-sim[d])[:_K.value]
    known = seen[lines][:, top]
    dev = np.where(known, y[lines][:, top] - naive[:, None], 0.0)  # neighbours' deviations
    w = sim[d, top][None, :] * known
    knn_pred = naive + (dev * w).sum(1) / np.maximum(w.sum(1), 1e-12)
    rows = seen[:, d]
    best = max(metrics.pcc(y[rows & seen[:, e], e], y[rows & seen[:, e], d])
               if (rows & seen[:, e]).sum() >= metrics.MIN_GROUP_PAIRS else -1.0
               for e in range(n_d) if e != d)
    scores['naive'].append(metrics.pcc(naive, obs))
    scores['structure_nn'].append(metrics.pcc(nn_pred, obs))
    scores['structure_knn'].append(metrics.pcc(knn_pred, obs))
    scores['oracle_best_drug'].append(best)
  out = {'drugs': n_d, 'cell_repr': config.data.cell_repr, 'k': _K.value,
         'mean_nn_similarity': float(sim.max(1).mean())}
  for k, v in scores.items():
    v = np.array(v)
    out[k] = {'mean': float(np.nanmean(v)), 'median': float(np.nanmedian(v))}
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  app.run(main)
