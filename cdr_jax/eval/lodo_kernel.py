"""The classical leave-one-drug-out baseline: naive cell-line mean plus kernel ridge over drugs.

For a held-out drug d, with every other drug's labels and no label of d:
  naive_d(c)  = each cell line's mean ln IC50 over the pairs of the other drugs
                (`cdr_jax.lodo.naive_cell_mean`);
  z_e(c)      = drug e's deviation y(c, e) - naive_d(c), z-scored over the lines e was measured on
                (0 where e was not measured), for every other drug e;
  zhat_d      = kernel ridge of the profiles z_e on a drug kernel: k_d^T (K + lam I)^-1 Z;
  profile_d   = naive_d + s * zhat_d, s = the other drugs' mean deviation spread (ln IC50 units).
The kernel is a weighted sum of label-free drug kernels (pathway, targets, fingerprints,
descriptors); its weights and lam are chosen per fold by leave-one-out over the OTHER drugs, in
closed form: all 223 folds take seconds per candidate weight vector.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class LodoKernelResult:
  """Per held-out drug: the predicted profile over all cell lines and what was chosen for it."""
  profiles: np.ndarray   # [D, C] predicted ln IC50 of drug d on every line, from other drugs only
  naive: np.ndarray      # [D, C] the naive cell-line mean of each fold
  weights: np.ndarray    # [D, K] kernel weights chosen for each fold
  lam: np.ndarray        # [D] ridge chosen for each fold
  loo_error: np.ndarray  # [D] the chosen setting's leave-one-out error over the other drugs

  def pair_predictions(self, pair_cell: np.ndarray, pair_drug: np.ndarray) -> np.ndarray:
    """[P] each pair's prediction by its drug's fold (duplicate pairs get the same value)."""
    return self.profiles[pair_drug, pair_cell]


def profile_matrix(pair_cell: np.ndarray, pair_drug: np.ndarray, pair_y: np.ndarray,
                   n_cells: int, n_drugs: int) -> np.ndarray:
  """[C, D] mean ln IC50 of each (line, drug) over its pairs (GDSC repeats some); nan if none."""
  flat = np.asarray(pair_cell, np.int64) * n_drugs + np.asarray(pair_drug, np.int64)
  total = np.bincount(flat, np.asarray(pair_y, np.float64), n_cells * n_drugs)
  count = np.bincount(flat, minlength=n_cells * n_drugs)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(count > 0, total / count, np.nan).reshape(n_cells, n_drugs)


def naive_profile(pair_cell: np.ndarray, pair_drug: np.ndarray, pair_y: np.ndarray,
                  n_cells: int, held_out: int) -> np.ndarray:
  """[C] each line's mean ln IC50 over the pairs of drugs other than `held_out`.

  As `cdr_jax.lodo.naive_cell_mean`: a repeated pair counts twice, a line with no other pair gets
  the mean of all other pairs. Only the other drugs' pairs are read, so the held-out labels cannot
  leak in, not even through rounding.
  """
  rest = np.asarray(pair_drug) != held_out
  cell, y = np.asarray(pair_cell)[rest], np.asarray(pair_y, np.float64)[rest]
  total = np.bincount(cell, y, n_cells)
  count = np.bincount(cell, minlength=n_cells)
  return np.where(count > 0, total / np.maximum(count, 1), y.mean())


def tanimoto_kernel(x: np.ndarray) -> np.ndarray:
  """[D, D] Tanimoto (Jaccard) similarity of 0/1 rows; 0 between rows with no bit set."""
  x = (np.asarray(x) > 0).astype(np.float64)
  inter = x @ x.T
  union = x.sum(1)[:, None] + x.sum(1)[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def cosine_kernel(x: np.ndarray) -> np.ndarray:
  """[D, D] cosine similarity of rows; 0 for a row of zeros."""
  x = np.asarray(x, np.float64)
  norm = np.linalg.norm(x, axis=1)
  unit = x / np.where(norm > 0, norm, 1.0)[:, None]
  return unit @ unit.T


def rbf_kernel(x: np.ndarray, gamma: float | None = None) -> np.ndarray:
  """[D, D] exp(-gamma |x_i - x_j|^2); gamma defaults to 1 / the median squared distance."""
  x = np.asarray(x, np.float64)
  sq = (x ** 2).sum(1)
  dist = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
  if gamma is None:
    off = dist[~np.eye(len(x), dtype=bool)]
    median = np.median(off) if off.size else 0.0
    gamma = 1.0 / median if median > 0 else 1.0
  return np.exp(-gamma * dist)


def zscored_deviations(profiles: np.ndarray, naive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each drug's deviation from `naive` z-scored over its measured lines.

  Args:
    profiles: [C, n] ln IC50, nan where unmeasured.
    naive: [C] the fold's naive cell-line mean.

  Returns:
    [n, C] z-scores (0 where unmeasured or where a drug has no spread) and [n] the spreads.
  """
  dev = profiles - naive[:, None]
  seen = np.isfinite(dev)
  count = np.maximum(seen.sum(0), 1)
  mean = np.where(seen, dev, 0.0).sum(0) / count
  spread = np.sqrt(np.where(seen, (dev - mean) ** 2, 0.0).sum(0) / count)
  ok = spread > 1e-12
  z = np.where(seen & ok, (dev - mean) / np.where(ok, spread, 1.0), 0.0)
  return z.T, spread


class KernelEigen:
  """A drug kernel over ALL drugs, eigendecomposed once; every fold's ridge is derived from it.

  With B = (K + lam I)^-1 = U diag(1 / (evals + lam)) U^T, dropping the held-out drug d is a
  rank-one downdate, (K_oo + lam I)^-1 = B_oo - B_od B_do / B_dd, and the ridge fitted on the
  others predicts d as -B_do Z / B_dd: no fold refactorises a matrix. The kernel holds no labels.
  """

  def __init__(self, kernel: np.ndarray):
    evals, self.vecs = np.linalg.eigh(np.asarray(kernel, np.float64))
    self.evals = np.maximum(evals, 0.0)  # sums of PSD kernels: negatives are rounding

  def predict(self, held_out: int, targets: np.ndarray, lam: float) -> np.ndarray:
    """The ridge fitted on all drugs but `held_out` (targets [n, C], drug order), at `held_out`."""
    t = self.vecs[held_out] / (self.evals + lam)
    b_od = np.delete(self.vecs, held_out, axis=0) @ t
    return -(b_od @ targets) / float(self.vecs[held_out] @ t)

  def loo_errors(self, held_out: int, targets: np.ndarray, lambdas: Sequence[float],
                 gram: np.ndarray | None = None) -> np.ndarray:
    """[L] mean squared leave-one-out residual over the drugs other than `held_out`, per ridge.

    Inside the ridge over the other drugs, G = (K_oo + lam I)^-1 and dropping drug e as well
    leaves the residual (G Z)_e / G_ee; its squared norm is (G M G)_ee / G_ee^2 with M = Z Z^T
    (`gram`, if the caller has it), so the cost does not grow with the number of cell lines.
    """
    gram = targets @ targets.T if gram is None else gram
    others = np.delete(self.vecs, held_out, axis=0)                     # [n, D]
    shrink = 1.0 / (self.evals[None, :] + np.asarray(lambdas)[:, None])  # [L, D]
    scaled = others[None] * shrink[:, None, :]                           # [L, n, D]: U_o S
    v = scaled @ self.vecs[held_out]                                     # [L, n]: B_od
    beta = shrink @ self.vecs[held_out] ** 2                             # [L]: B_dd
    proj = others.T @ gram @ others                                      # M in the eigenbasis
    gm = gram @ v.T                                                      # [n, L]
    # G = U_o S U_o^T - v v^T / beta; expand diag(G M G) so the only n^3 term is one GEMM.
    quad = ((scaled @ proj) * scaled).sum(-1)                            # diag(U_o S P S U_o^T)
    cross = np.einsum('lnd,dl->ln', scaled, others.T @ gm) * v / beta[:, None]
    tail = v ** 2 * np.einsum('ln,nl->l', v, gm)[:, None] / beta[:, None] ** 2
    g_diag = (scaled * others[None]).sum(-1) - v ** 2 / beta[:, None]
    return ((quad - 2 * cross + tail) / g_diag ** 2).sum(1) / targets.size


def lodo_kernel_ridge(pair_cell: np.ndarray, pair_drug: np.ndarray, pair_y: np.ndarray,
                      n_cells: int, kernels: np.ndarray, weight_grid: np.ndarray,
                      lambdas: Sequence[float],
                      folds: Sequence[int] | None = None) -> LodoKernelResult:
  """Predicts every drug's profile from the other drugs' labels (all leave-one-drug-out folds, or
  only the drugs in `folds`: the other rows of the result are nan).

  Args:
    pair_cell, pair_drug, pair_y: [P] the dataset's pairs (line index, drug index, ln IC50).
    n_cells: number of cell lines C.
    kernels: [K, D, D] label-free PSD drug kernels (unit diagonals make the weights comparable).
    weight_grid: [G, K] candidate kernel weights; a single row fixes them.
    lambdas: candidate ridges.

  Returns:
    A `LodoKernelResult`; fold d's profile, weights and ridge depend on no label of drug d.
  """
  kernels = np.asarray(kernels, np.float64)
  grid = np.atleast_2d(np.asarray(weight_grid, np.float64))
  n_drugs = kernels.shape[-1]
  if kernels.shape != (len(kernels), n_drugs, n_drugs) or grid.shape[1] != len(kernels):
    raise ValueError(f'expected kernels [K, D, D] and weight_grid [G, K], got {kernels.shape} '
                     f'and {grid.shape}')
  if not len(lambdas) or min(lambdas) <= 0:
    raise ValueError(f'lambdas must be positive ridges, got {list(lambdas)}')
  eigens = [KernelEigen(np.tensordot(w, kernels, 1)) for w in grid]
  ybar = profile_matrix(pair_cell, pair_drug, pair_y, n_cells, n_drugs)
  folds = range(n_drugs) if folds is None else folds
  naive = np.full((n_drugs, n_cells), np.nan)
  for d in folds:
    naive[d] = naive_profile(pair_cell, pair_drug, pair_y, n_cells, d)
  profiles = np.full_like(naive, np.nan)
  weights, lam = np.full((n_drugs, len(kernels)), np.nan), np.full(n_drugs, np.nan)
  loo_error = np.full(n_drugs, np.nan)
  for d in folds:
    z, spread = zscored_deviations(np.delete(ybar, d, axis=1), naive[d])
    gram = z @ z.T
    errors = np.stack([e.loo_errors(d, z, lambdas, gram) for e in eigens])  # [G, L]
    g, l = np.unravel_index(np.argmin(errors), errors.shape)
    weights[d], lam[d], loo_error[d] = grid[g], lambdas[l], errors[g, l]
    profiles[d] = naive[d] + spread.mean() * eigens[g].predict(d, z, lambdas[l])
  return LodoKernelResult(profiles, naive, weights, lam, loo_error)


def kernel_map(kernel: np.ndarray, rel_tol: float = 1e-10) -> np.ndarray:
  """[D, m] features whose dot products are the PSD drug kernel `kernel` (U S^(1/2) over the
  eigenvalues above `rel_tol` times the largest). Ridge without intercept on them, fitted on any
  set of drugs, is kernel ridge with the same lambda, and scores every other drug as kernel ridge
  does (the network's per-line linear term reads them: `cdr_jax.train.warm_start`). Label-free."""
  evals, vecs = np.linalg.eigh(np.asarray(kernel, np.float64))
  keep = evals > rel_tol * evals.max()
  return vecs[:, keep] * np.sqrt(evals[keep])


@dataclasses.dataclass(frozen=True)
class DrugRidge:
  """Kernel ridge of drugs' z-scored deviation profiles, fitted on one set of drugs (`fit_drugs`).

  A drug x is scored as naive + spread * k(x, drugs) @ alpha: the held-out-drug baseline above,
  with a fold's training drugs in place of all other drugs.
  """
  drugs: np.ndarray   # [n] the drugs it was fitted on
  alpha: np.ndarray   # [n, C] dual coefficients of the z-scored profiles
  naive: np.ndarray   # [C] each line's mean ln IC50 over the fitted pairs
  spread: float       # the fitted drugs' mean deviation spread (ln IC50 units)
  lam: float          # chosen by leave-one-out over the fitted drugs
  loo_error: float

  name = 'lodo_kernel_ridge'   # not a field: named as `classical.Predictor`s are

  @property
  def params(self) -> dict:
    """What it chose, as `classical.Predictor.params`."""
    return {'lambda': self.lam, 'drugs': int(len(self.drugs)), 'loo_error': self.loo_error}

  def profiles(self, kernel: np.ndarray, drugs: Sequence[int]) -> np.ndarray:
    """[len(drugs), C] predicted ln IC50 of `drugs` on every line (`kernel`: [D, D], all drugs)."""
    k = np.asarray(kernel, np.float64)[np.ix_(np.asarray(drugs), self.drugs)]
    return self.naive + self.spread * (k @ self.alpha)


def fit_drugs(pair_cell: np.ndarray, pair_drug: np.ndarray, pair_y: np.ndarray, n_cells: int,
              kernel: np.ndarray, lambdas: Sequence[float] | None = None) -> DrugRidge:
  """Kernel ridge over the drugs of the given pairs (pass only training pairs: every label given
  is read), the ridge chosen by leave-one-out over those drugs in closed form.

  Args:
    pair_cell, pair_drug, pair_y: [P] the pairs to fit on (line index, drug index, ln IC50).
    n_cells: number of cell lines C.
    kernel: [D, D] label-free PSD kernel over all drugs (indexed by `pair_drug`).
    lambdas: candidate ridges (default: `LAMBDAS`, the sweep baseline's).
  """
  lambdas = LAMBDAS if lambdas is None else lambdas
  if not len(lambdas) or min(lambdas) <= 0:
    raise ValueError(f'lambdas must be positive ridges, got {list(lambdas)}')
  kernel = np.asarray(kernel, np.float64)
  drugs = np.unique(pair_drug)
  if len(drugs) < 2:  # leave-one-out needs two
    raise ValueError(f'kernel ridge over drugs needs at least 2 drugs with pairs, got {len(drugs)}')
  naive = naive_profile(pair_cell, pair_drug, pair_y, n_cells, held_out=-1)
  ybar = profile_matrix(pair_cell, pair_drug, pair_y, n_cells, len(kernel))[:, drugs]
  z, spread = zscored_deviations(ybar, naive)
  evals, vecs = np.linalg.eigh(kernel[np.ix_(drugs, drugs)])
  evals = np.maximum(evals, 0.0)
  proj = vecs.T @ z
  errors = []
  for lam in lambdas:  # leave-one-out residual of drug e: (G Z)_e / G_ee, G = (K + lam I)^-1
    shrink = 1.0 / (evals + lam)
    gz = vecs @ (shrink[:, None] * proj)
    errors.append(float(((gz / ((vecs ** 2) @ shrink)[:, None]) ** 2).sum() / z.size))
  best = int(np.argmin(errors))
  lam = float(lambdas[best])
  alpha = vecs @ (proj / (evals + lam)[:, None])
  return DrugRidge(drugs, alpha, naive, float(spread.mean()), lam, errors[best])


def per_drug_pcc(pred: np.ndarray, obs: np.ndarray, pair_drug: np.ndarray,
                 n_drugs: int) -> np.ndarray:
  """[D] Pearson correlation over each drug's pairs; nan where either side is constant."""
  out = np.full(n_drugs, np.nan)
  for d in range(n_drugs):
    p, o = pred[pair_drug == d], obs[pair_drug == d]
    if len(p) > 1 and p.std() > 0 and o.std() > 0:
      out[d] = np.corrcoef(p, o)[0, 1]
  return out


# ---------------------------------------------------------------------------------------------
# The sweep's classical baseline: drug kernels from annotations and structure.

# Kernel weights (pathway + 2 x target + 2 x Morgan + 0.5 x descriptors) from the leave-one-out
# analysis over drugs in issue 13; choosing them per fold from a 46-vector grid instead (by each
# fold's leave-one-out error over the other drugs) gave 0.561 against 0.568 on all 223 folds.
KERNEL_WEIGHTS = {'pathway': 1.0, 'target': 2.0, 'morgan': 2.0, 'descriptors': 0.5}
LAMBDAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)   # per fold, by leave-one-out over other drugs


def drug_kernels(ds, root=None) -> dict[str, np.ndarray]:
  """Label-free [D, D] drug kernels: GDSC pathway and targets (when a data root with the drug list
  is given), Morgan Tanimoto and an RBF on standardised RDKit descriptors."""
  from cdr_jax.data import drugs  # pylint: disable=g-import-not-at-top
  ids, smiles = list(ds.drug_ids), dict(zip(ds.drug_ids, ds.drug_smiles))
  out = {}
  if root is not None:
    feats, cols = drugs.annotation_features(drugs.read_drug_list_annotations(root), ids)
    pathway = np.array([c.startswith(drugs.PATHWAY_PREFIX) for c in cols])
    out['pathway'] = feats[:, pathway] @ feats[:, pathway].T
    out['target'] = tanimoto_kernel(feats[:, ~pathway])
  out['morgan'] = tanimoto_kernel(drugs.morgan_features(smiles, ids))
  raw, names = drugs.descriptor_features(smiles, ids)
  out['descriptors'] = rbf_kernel(drugs.standardize(raw, np.arange(len(ids)), names).features)
  return out


def weighted_kernel(ds, root=None) -> tuple[np.ndarray, dict[str, float]]:
  """[D, D] the baseline's drug kernel: `drug_kernels` summed with `KERNEL_WEIGHTS`, and the
  weights used (pathway and targets only with a data root)."""
  kernels = drug_kernels(ds, root)
  weights = {n: KERNEL_WEIGHTS[n] for n in kernels}
  return sum(w * kernels[n] for n, w in weights.items()), weights


def held_out_drug_predictions(ds, root=None) -> tuple[np.ndarray, dict, np.ndarray]:
  """[P] the classical baseline's prediction of every pair, its drug held out (every fold at
  once); what it used (kernels, weights, the ridge chosen per fold); and the [D, D] weighted
  kernel (for `without_drug`)."""
  kernel, weights = weighted_kernel(ds, root)
  res = lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids), kernel[None],
                          np.ones((1, 1)), LAMBDAS)
  lam, count = np.unique(res.lam, return_counts=True)
  info = {'kernels': weights,
          'lambda_chosen': {f'{l:g}': int(c) for l, c in zip(lam, count)}}
  return res.pair_predictions(ds.pair_cell, ds.pair_drug), info, kernel


def without_drug(ds, kernel: np.ndarray, excluded: int, drugs: Sequence[int],
                 pairs: np.ndarray) -> np.ndarray:
  """The baseline's predictions of `pairs` (all of `drugs`' pairs among them), each drug of `drugs`
  held out from the dataset with `excluded` removed as well: no label of `excluded` is read.

  A fold's validation drugs scored this way let a blend with the network be chosen on them without
  the fold's held-out drug (`cdr_jax.lodo`'s stack).
  """
  keep = ds.pair_drug != excluded
  others = np.delete(np.arange(len(ds.drug_ids)), excluded)        # new index -> old drug
  new_index = np.full(len(ds.drug_ids), -1)
  new_index[others] = np.arange(len(others))
  res = lodo_kernel_ridge(ds.pair_cell[keep], new_index[ds.pair_drug[keep]], ds.pair_y[keep],
                          len(ds.cell_ids), kernel[np.ix_(others, others)][None], np.ones((1, 1)),
                          LAMBDAS, folds=new_index[np.asarray(drugs)])
  return res.profiles[new_index[ds.pair_drug[pairs]], ds.pair_cell[pairs]]
