"""Naive baselines fitted on the training pairs of the same split, predicted for any pairs.

Identity baselines (means, additive effects, matrix factorisation) need no features; per-drug ridge
uses the cell representation (the classic baseline for unseen cell lines). Entities unseen in
training fall back to the next coarser estimate (e.g. an unseen cell line's effect is 0).
"""

import ml_collections
import numpy as np

from cdr_jax.data import Dataset

def group_mean(values: np.ndarray, group: np.ndarray, n: int, fallback: np.ndarray | float,
                min_count: int = 1):
  """Per-group means over `n` groups; groups with fewer than `min_count` values get `fallback`."""
  total = np.bincount(group, values, minlength=n)
  count = np.bincount(group, minlength=n)
  return np.where(count >= min_count, total / np.maximum(count, 1), fallback)


def additive_effects(y, cell, drug, n_cells, n_drugs, iters: int = 20, l2: float = 1.0):
  """Fits y ≈ mu + a[drug] + b[cell] by alternating ridge-shrunk means; unseen entities get 0."""
  mu = float(y.mean())
  a, b = np.zeros(n_drugs), np.zeros(n_cells)
  for _ in range(iters):
    r = y - mu - b[cell]
    a = np.bincount(drug, r, n_drugs) / (np.bincount(drug, minlength=n_drugs) + l2)
    r = y - mu - a[drug]
    b = np.bincount(cell, r, n_cells) / (np.bincount(cell, minlength=n_cells) + l2)
  return mu, a, b


def _ridge_rows(target, feats, rows_of, n_rows, lam):
  """Per-row ridge solutions: for each entity i, solve over its pairs (features `feats`)."""
  out = np.zeros((n_rows, feats.shape[1]))
  eye = lam * np.eye(feats.shape[1])
  for i, idx in enumerate(rows_of):
    if len(idx):
      f = feats[idx]
      out[i] = np.linalg.solve(f.T @ f + eye, f.T @ target[idx])
  return out


def _rows_by_entity(entity, n):
  order = np.argsort(entity, kind='stable')
  return np.split(order, np.cumsum(np.bincount(entity, minlength=n))[:-1])


def matrix_factorization(y, cell, drug, n_cells, n_drugs, rank: int, l2: float, iters: int,
                         seed: int = 0):
  """ALS for y ≈ mu + a[drug] + b[cell] + U[cell]·V[drug] (L2 `l2` on factors and biases)."""
  mu, a, b = additive_effects(y, cell, drug, n_cells, n_drugs)
  rng = np.random.default_rng(seed)
  u = 0.1 * rng.standard_normal((n_cells, rank))
  v = 0.1 * rng.standard_normal((n_drugs, rank))
  cells_rows, drug_rows = _rows_by_entity(cell, n_cells), _rows_by_entity(drug, n_drugs)
  ones = np.ones((len(y), 1))
  for _ in range(iters):
    sol = _ridge_rows(y - mu - a[drug], np.hstack([v[drug], ones]), cells_rows, n_cells, l2)
    u, b = sol[:, :rank], sol[:, rank]
    sol = _ridge_rows(y - mu - b[cell], np.hstack([u[cell], ones]), drug_rows, n_drugs, l2)
    v, a = sol[:, :rank], sol[:, rank]
  return mu, a, b, u, v


def ridge_per_drug(ds: Dataset, target: np.ndarray, train: np.ndarray, pairs: np.ndarray,
                   lam: float, fallback: np.ndarray) -> np.ndarray:
  """Per drug, ridge of ln IC50 on standardised cell features (dual form); `fallback` if no data."""
  x = ds.cell_features.astype(np.float64)
  fit_cells = np.unique(ds.pair_cell[train])
  mean, sd = x[fit_cells].mean(0), x[fit_cells].std(0)
  x = (x - mean) / np.where(sd > 1e-8, sd, 1.0)
  pred = fallback.astype(np.float64).copy()
  train_rows = _rows_by_entity(ds.pair_drug[train], len(ds.drug_ids))
  eval_rows = _rows_by_entity(ds.pair_drug[pairs], len(ds.drug_ids))
  for d in range(len(ds.drug_ids)):
    tr, ev = train[train_rows[d]], eval_rows[d]
    if not len(tr) or not len(ev):
      continue
    xt, yt = x[ds.pair_cell[tr]], target[tr].astype(np.float64)
    alpha = np.linalg.solve(xt @ xt.T + lam * np.eye(len(tr)), yt - yt.mean())
    pred[ev] = yt.mean() + x[ds.pair_cell[pairs[ev]]] @ (xt.T @ alpha)
  return pred


def predict_all(ds: Dataset, train: np.ndarray, pairs: np.ndarray,
                config: ml_collections.ConfigDict,
                target: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Every baseline's predictions for `pairs`, fitted on `train` pairs only.

  `target` replaces ln IC50 (e.g. 0/1 sensitivity labels, whose fitted means are scores).
  """
  target = ds.pair_y if target is None else target
  y, cell, drug = target[train].astype(np.float64), ds.pair_cell[train], ds.pair_drug[train]
  n_c, n_d, n_t = len(ds.cell_ids), len(ds.drug_ids), len(ds.cancer_types)
  pc, pd = ds.pair_cell[pairs], ds.pair_drug[pairs]
  g = float(y.mean())
  drug_mean = group_mean(y, drug, n_d, g)
  cell_mean = group_mean(y, cell, n_c, g)
  mu, a, b = additive_effects(y, cell, drug, n_c, n_d)
  type_drug = group_mean(y, ds.cell_type[cell] * n_d + drug, n_t * n_d, np.tile(drug_mean, n_t))
  mf = matrix_factorization(y, cell, drug, n_c, n_d, config.mf_rank, config.mf_l2, config.mf_iters)
  out = {
      'global_mean': np.full(len(pairs), g),
      'drug_mean': drug_mean[pd],
      'cell_mean': cell_mean[pc],
      'additive': mu + a[pd] + b[pc],
      'type_drug_mean': type_drug[ds.cell_type[pc] * n_d + pd],
      'matrix_factorization': mf[0] + mf[1][pd] + mf[2][pc] + (mf[3][pc] * mf[4][pd]).sum(1),
      'ridge_per_drug': ridge_per_drug(ds, target, train, pairs, config.ridge_lambda,
                                       cell_mean[pc]),
  }
  return {k: v.astype(np.float32) for k, v in out.items()}


def naive_cell_mean(ds: Dataset, held_out_drug: int, pairs: np.ndarray,
                    excluded: np.ndarray | None = None) -> np.ndarray:
  """The naive predictor for a held-out drug: each cell line's mean ln IC50 over the other drugs
  (the global mean of the other drugs' pairs for a line with none), for `pairs`; the drugs
  `excluded` (a fold's dropped batch-mates, `lodo.apart`) count as held out too."""
  out = np.r_[held_out_drug, [] if excluded is None else excluded].astype(np.int64)
  rest = np.flatnonzero(~np.isin(ds.pair_drug, out))
  y = ds.pair_y[rest]
  return group_mean(y, ds.pair_cell[rest], len(ds.cell_ids), y.mean())[ds.pair_cell[pairs]]
