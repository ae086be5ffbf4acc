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

Two refinements (`lodo_kernel_ridge`'s `naive` and `per_component`, on by default: `NAIVE`,
`PER_COMPONENT`): each other drug's profile is z-scored over its lines first, naive_d is the
line's mean z-score and z_e the deviations from it (every drug counts alike, not by its ln IC50
range; mapped back by the drugs' mean level and spread); and each principal component of Z gets
its own lam, each by the same leave-one-out over the other drugs.

Screens (`pair_screen`): GDSC screened 15 drugs under two drug ids whose readings of the same lines
differ (README, session 20). Given each pair's screen, the profiles are one column per screen (a
drug's screens share its kernel row): each screen is z-scored on its own, and the naive, level and
spread are means over the columns. Rows sharing a kernel row make it the same ridge as one row per
drug holding the mean of its screens' z-scored deviations, with lam / n on the diagonal of a drug
measured in n screens: such a drug weighs more. (That weight is what moves the baseline: averaged
at one ridge the screens give 0.5736, per screen 0.5759, per drug 0.5740; `bench/
lodo_kernel_variants.py`, "screens".) A held-out drug leaves with all its screens, and the
leave-one-out over the other drugs leaves each drug out with all its screens too
(`loo_residuals`). Every prediction and score stays per drug.

Screening batch (`screening_kernel`, opt in: `data.screening_batch`): drugs GDSC screened close
together in time (near GDSC drug ids) deviate alike on the same lines, more than drugs with the
same targets do (README, session 24). The kernel can add an RBF over the screens' drug ids. It is
label-free, but it is a covariate of the GDSC assay, not of the drug: a compound screened outside
GDSC has no place in that order, so it is reported apart from the drug representations.
"""

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np

# How a fold's targets are formed (`lodo_kernel_ridge`): the naive line means from the z-scored
# profiles and one ridge per principal component. Chosen by leave-one-out over the OTHER drugs:
# per fold, the mean per-drug PCC of the other drugs' leave-one-out profiles is highest with both
# in all 223 folds (`bench/lodo_kernel_variants.py`, "inner choice"), never with a held-out label.
NAIVE = 'zscored'
PER_COMPONENT = True


@dataclasses.dataclass(frozen=True)
class LodoKernelResult:
  """Per held-out drug: the predicted profile over all cell lines and what was chosen for it."""
  profiles: np.ndarray   # [D, C] predicted ln IC50 of drug d on every line, from other drugs only
  naive: np.ndarray      # [D, C] each fold's naive line means (`fold_targets`)
  weights: np.ndarray    # [D, K] kernel weights chosen for each fold
  lam: np.ndarray        # [D] ridge chosen for each fold
  loo_error: np.ndarray  # [D] the chosen setting's leave-one-out error over the other drugs
  component_lam: np.ndarray | None = None  # [D, r] with per_component: each component's ridge

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


@dataclasses.dataclass(frozen=True)
class Standardised:
  """Drug profiles z-scored per drug over its measured lines, and each line's mean z-score."""
  columns: np.ndarray  # [C, n] z-scores; nan where unmeasured or where a drug has no spread
  line_z: np.ndarray   # [C] each line's mean z-score over its measured drugs (0 if none)
  level: float         # the drugs' mean ln IC50
  width: float         # the drugs' mean spread: ln IC50 per z unit

  @property
  def naive(self) -> np.ndarray:
    """[C] the line means in ln IC50 units (`zscored_naive`)."""
    return self.level + self.width * self.line_z


def standardise_profiles(profiles: np.ndarray) -> Standardised:
  """`profiles` ([C, n] ln IC50, nan where unmeasured) z-scored per drug (`Standardised`)."""
  seen = np.isfinite(profiles)
  count = np.maximum(seen.sum(0), 1)
  mean = np.where(seen, profiles, 0.0).sum(0) / count
  spread = np.sqrt(np.where(seen, (profiles - mean) ** 2, 0.0).sum(0) / count)
  ok = spread > 1e-12
  used = seen & ok
  columns = np.where(used, (profiles - mean) / np.where(ok, spread, 1.0), np.nan)
  line_z = np.where(used, columns, 0.0).sum(1) / np.maximum(used.sum(1), 1)
  return Standardised(columns, line_z, float(mean.mean()), float(spread.mean()))


def zscored_naive(profiles: np.ndarray) -> np.ndarray:
  """[C] each line's mean z-score over the drugs of `profiles` ([C, n] ln IC50, nan where
  unmeasured; each drug z-scored over its measured lines), in ln IC50 units: the drugs' mean
  level plus their mean spread times that mean z-score. A line no drug measured gets the mean
  level. Unlike `naive_profile`, a drug with a wide ln IC50 range weighs no more than another."""
  return standardise_profiles(profiles).naive


def fold_targets(profiles: np.ndarray, naive: str,
                 mean_naive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
  """What kernel ridge over drugs fits, from the drugs of `profiles` ([C, n], nan = unmeasured).

  Args:
    profiles: [C, n] the fitted drugs' ln IC50 profiles.
    naive: 'mean' (deviations from `mean_naive`, each line's mean ln IC50 over the pairs of these
      drugs, `naive_profile`) or 'zscored' (each drug z-scored first; deviations from the line's
      mean z-score, `standardise_profiles`).
    mean_naive: [C] with naive='mean'.

  Returns:
    [C] the naive profile (ln IC50), [n, C] the z-scored deviations, and the ln IC50 per unit of
    them: a drug predicted `zhat` is scored naive + unit * zhat.
  """
  if naive == 'mean':
    z, spread = zscored_deviations(profiles, mean_naive)
    return mean_naive, z, float(spread.mean())
  if naive != 'zscored':
    raise ValueError(f"naive must be 'mean' or 'zscored', got {naive!r}")
  std = standardise_profiles(profiles)
  z, spread = zscored_deviations(std.columns, std.line_z)
  return std.naive, z, std.width * float(spread.mean())


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


def column_drugs(pair_drug: np.ndarray, pair_screen: np.ndarray | None, n_drugs: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """The profile columns: [P] each pair's column and [S] each column's drug, in drug order. One
  column per drug (of `n_drugs`) without screens; with them, one per (drug, screen) measured, and
  one (empty) column for a drug with no pair, as without screens, so one screen per drug gives the
  same columns either way."""
  pair_drug = np.asarray(pair_drug, np.int64)
  if pair_screen is None:
    return pair_drug, np.arange(n_drugs)
  if len(pair_screen) != len(pair_drug):
    raise ValueError(f'pair_screen has {len(pair_screen)} entries for {len(pair_drug)} pairs')
  screen = np.asarray(pair_screen, np.int64) + 1          # 0: the empty column of an unmeasured drug
  keys = np.unique(np.stack([pair_drug, screen], 1), axis=0)
  unmeasured = np.setdiff1d(np.arange(n_drugs), keys[:, 0])
  keys = np.concatenate([keys, np.stack([unmeasured, np.zeros_like(unmeasured)], 1)])
  keys = keys[np.lexsort((keys[:, 1], keys[:, 0]))]
  stride = int(screen.max(initial=0)) + 1
  column = np.searchsorted(keys[:, 0] * stride + keys[:, 1], pair_drug * stride + screen)
  return column, keys[:, 0]


def loo_residuals(g: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None
                  ) -> np.ndarray:
  """[n, m] leave-one-out residuals of kernel ridge with G = (K + lam I)^-1 over n rows.

  Row e alone: (G T)_e / G_ee. With `groups` ([n] a drug per row), each drug's rows leave
  together: a group b's residuals are G_bb^-1 (G T)_b (T_b minus the ridge refitted without b,
  at b)."""
  gt = g @ targets
  out = gt / np.diag(g)[:, None]
  if groups is not None:
    for rows in _several(groups):
      out[rows] = np.linalg.solve(g[np.ix_(rows, rows)], gt[rows])
  return out


def _several(groups: np.ndarray) -> list[np.ndarray]:
  """The row indices of each group with more than one row."""
  ids, counts = np.unique(groups, return_counts=True)
  return [np.flatnonzero(groups == i) for i in ids[counts > 1]]


class KernelEigen:
  """A kernel over ALL columns (drugs, or screens), eigendecomposed once; every fold's ridge is
  derived from it.

  With B = (K + lam I)^-1 = U diag(1 / (evals + lam)) U^T, dropping the held-out columns h (a
  drug's one column, or its screens) is a low-rank downdate, (K_oo + lam I)^-1 = B_oo - B_oh
  B_hh^-1 B_ho, and the ridge fitted on the others predicts h as -B_hh^-1 B_ho Z: no fold
  refactorises a matrix. The kernel holds no labels.
  """

  def __init__(self, kernel: np.ndarray):
    evals, self.vecs = np.linalg.eigh(np.asarray(kernel, np.float64))
    self.evals = np.maximum(evals, 0.0)  # sums of PSD kernels: negatives are rounding

  def _blocks(self, held_out, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U_o scaled by 1 / (evals + lam), B_oh and B_hh for the held-out columns."""
    h = np.atleast_1d(held_out)
    scaled_h = self.vecs[h] / (self.evals + lam)
    others = np.delete(self.vecs, h, axis=0)
    return others, others @ scaled_h.T, self.vecs[h] @ scaled_h.T

  def predict(self, held_out, targets: np.ndarray, lam: float) -> np.ndarray:
    """The ridge fitted on all columns but `held_out` (an index or a drug's indices; targets
    [n, C] in column order without them), at the first held-out column."""
    _, b_oh, b_hh = self._blocks(held_out, lam)
    return -np.linalg.solve(b_hh, b_oh.T @ targets)[0]

  def fold_inverse(self, held_out, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """G = (K_oo + lam I)^-1 over the columns other than `held_out`, with B_oh and B_hh."""
    others, b_oh, b_hh = self._blocks(held_out, lam)
    g = (others / (self.evals + lam)) @ others.T - b_oh @ np.linalg.solve(b_hh, b_oh.T)
    return g, b_oh, b_hh

  def per_component(self, held_out, targets: np.ndarray, lambdas: Sequence[float],
                    groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The ridge at `held_out` with one lambda per principal component of `targets` ([n, C]).

    With targets = U S V^T, component j's scores (U S)_j get the lambda whose leave-one-out
    residual over the other drugs (`loo_residuals`, by `groups`) is smallest; the prediction is
    sum_j pred_j V_j. V is orthonormal, so the total leave-one-out error is the sum of the
    components' and no single lambda beats the per-component choice on it (with one lambda it
    is `predict`).

    Returns:
      [C] the prediction, [r] each component's lambda, the mean squared leave-one-out residual.
    """
    u, s, vt = np.linalg.svd(targets, full_matrices=False)
    scores = u * s
    errors, preds = [], []
    for lam in lambdas:
      g, b_oh, b_hh = self.fold_inverse(held_out, lam)
      errors.append((loo_residuals(g, scores, groups) ** 2).sum(0))
      preds.append(-np.linalg.solve(b_hh, b_oh.T @ scores)[0])
    errors, preds = np.array(errors), np.array(preds)   # [L, r]
    pick, cols = errors.argmin(0), np.arange(scores.shape[1])
    return (preds[pick, cols] @ vt, np.asarray(lambdas, np.float64)[pick],
            float(errors[pick, cols].sum() / targets.size))

  def loo_errors(self, held_out, targets: np.ndarray, lambdas: Sequence[float],
                 gram: np.ndarray | None = None, groups: np.ndarray | None = None
                 ) -> np.ndarray:
    """[L] mean squared leave-one-out residual over the drugs other than `held_out`, per ridge.

    Where a drug has several columns (`groups`), its columns leave together (`loo_residuals`).
    Else, inside the ridge over the other drugs, G = (K_oo + lam I)^-1 and dropping drug e as
    well leaves the residual (G Z)_e / G_ee; its squared norm is (G M G)_ee / G_ee^2 with
    M = Z Z^T (`gram`, if the caller has it), so the cost does not grow with the number of lines.
    """
    if np.size(held_out) > 1 or (groups is not None and _several(groups)):
      return np.array([(loo_residuals(self.fold_inverse(held_out, lam)[0], targets, groups)
                        ** 2).sum() for lam in lambdas]) / targets.size
    held_out = int(np.atleast_1d(held_out)[0])
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
                      lambdas: Sequence[float], folds: Sequence[int] | None = None,
                      naive: str = NAIVE, per_component: bool = PER_COMPONENT,
                      pair_screen: np.ndarray | None = None) -> LodoKernelResult:
  """Predicts every drug's profile from the other drugs' labels (all leave-one-drug-out folds, or
  only the drugs in `folds`: the other rows of the result are nan).

  Args:
    pair_cell, pair_drug, pair_y: [P] the dataset's pairs (line index, drug index, ln IC50).
    n_cells: number of cell lines C.
    kernels: [K, D, D] label-free PSD drug kernels (unit diagonals make the weights comparable).
    weight_grid: [G, K] candidate kernel weights; a single row fixes them.
    lambdas: candidate ridges.
    naive: 'mean' (each line's mean ln IC50 over the other drugs' pairs, `naive_profile`) or
      'zscored' (its mean z-score over the other drugs' profiles, `zscored_naive`; the
      deviations are then those of the z-scored profiles, and ln IC50 = level + width x z).
    per_component: after the weights (and a common lambda) are chosen, one lambda per principal
      component of the fold's z-scored deviations (`KernelEigen.per_component`).
    pair_screen: [P] each pair's screen, or None: with it, one profile column per (drug, screen)
      (`column_drugs`; a held-out drug leaves with all its screens, and so does each other drug
      in the leave-one-out).

  Returns:
    A `LodoKernelResult`; fold d's profile, weights and ridges depend on no label of drug d.
  """
  kernels = np.asarray(kernels, np.float64)
  grid = np.atleast_2d(np.asarray(weight_grid, np.float64))
  n_drugs = kernels.shape[-1]
  if kernels.shape != (len(kernels), n_drugs, n_drugs) or grid.shape[1] != len(kernels):
    raise ValueError(f'expected kernels [K, D, D] and weight_grid [G, K], got {kernels.shape} '
                     f'and {grid.shape}')
  if not len(lambdas) or min(lambdas) <= 0:
    raise ValueError(f'lambdas must be positive ridges, got {list(lambdas)}')
  if naive not in ('mean', 'zscored'):
    raise ValueError(f"naive must be 'mean' or 'zscored', got {naive!r}")
  pair_column, column_drug = column_drugs(pair_drug, pair_screen, n_drugs)
  eigens = [KernelEigen(np.tensordot(w, kernels, 1)[np.ix_(column_drug, column_drug)])
            for w in grid]
  ybar = profile_matrix(pair_cell, pair_column, pair_y, n_cells, len(column_drug))
  several = pair_screen is not None and len(column_drug) > len(np.unique(column_drug))
  folds = range(n_drugs) if folds is None else folds
  base = np.full((n_drugs, n_cells), np.nan)
  profiles = np.full_like(base, np.nan)
  weights, lam = np.full((n_drugs, len(kernels)), np.nan), np.full(n_drugs, np.nan)
  loo_error = np.full(n_drugs, np.nan)
  component_lam = (np.full((n_drugs, min(len(column_drug) - 1, n_cells)), np.nan) if per_component
                   else None)
  for d in folds:
    held = np.flatnonzero(column_drug == d)
    if not len(held):
      raise ValueError(f'drug {d} has no pair to hold out')
    groups = np.delete(column_drug, held) if several else None
    mean_naive = (naive_profile(pair_cell, pair_drug, pair_y, n_cells, d) if naive == 'mean'
                  else None)
    base[d], z, unit = fold_targets(np.delete(ybar, held, axis=1), naive, mean_naive)
    gram = z @ z.T
    errors = np.stack([e.loo_errors(held, z, lambdas, gram, groups) for e in eigens])  # [G, L]
    g, l = np.unravel_index(np.argmin(errors), errors.shape)
    weights[d], lam[d], loo_error[d] = grid[g], lambdas[l], errors[g, l]
    if per_component:
      zhat, lams, loo_error[d] = eigens[g].per_component(held, z, lambdas, groups)
      component_lam[d, :len(lams)] = lams
    else:
      zhat = eigens[g].predict(held, z, lambdas[l])
    profiles[d] = base[d] + unit * zhat
  return LodoKernelResult(profiles, base, weights, lam, loo_error, component_lam)


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
  drugs: np.ndarray   # [n] the drug of each fitted column (a drug fitted per screen: repeated)
  alpha: np.ndarray   # [n, C] dual coefficients of the z-scored profiles
  naive: np.ndarray   # [C] each line's naive ln IC50 over the fitted drugs (`fold_targets`)
  spread: float       # ln IC50 per unit of the z-scored deviations
  lam: float          # chosen by leave-one-out over the fitted drugs (one for all components)
  loo_error: float    # of what was used: per component's lambdas, or `lam`
  component_lam: np.ndarray | None = None  # [r] each principal component's ridge, if per component

  name = 'lodo_kernel_ridge'   # not a field: named as `classical.Predictor`s are

  @property
  def params(self) -> dict:
    """What it chose, as `classical.Predictor.params`."""
    out = {'lambda': self.lam, 'drugs': int(len(np.unique(self.drugs))),
           'columns': int(len(self.drugs)), 'loo_error': self.loo_error}
    if self.component_lam is not None:
      lam, count = np.unique(self.component_lam, return_counts=True)
      out['components_per_lambda'] = {f'{l:g}': int(c) for l, c in zip(lam, count)}
    return out

  def profiles(self, kernel: np.ndarray, drugs: Sequence[int]) -> np.ndarray:
    """[len(drugs), C] predicted ln IC50 of `drugs` on every line (`kernel`: [D, D], all drugs)."""
    k = np.asarray(kernel, np.float64)[np.ix_(np.asarray(drugs), self.drugs)]
    return self.naive + self.spread * (k @ self.alpha)


def fit_drugs(pair_cell: np.ndarray, pair_drug: np.ndarray, pair_y: np.ndarray, n_cells: int,
              kernel: np.ndarray, lambdas: Sequence[float] | None = None, naive: str = NAIVE,
              per_component: bool = PER_COMPONENT,
              pair_screen: np.ndarray | None = None) -> DrugRidge:
  """Kernel ridge over the drugs of the given pairs (pass only training pairs: every label given
  is read), the ridge chosen by leave-one-out over those drugs in closed form.

  Args:
    pair_cell, pair_drug, pair_y: [P] the pairs to fit on (line index, drug index, ln IC50).
    n_cells: number of cell lines C.
    kernel: [D, D] label-free PSD kernel over all drugs (indexed by `pair_drug`).
    lambdas: candidate ridges (default: `LAMBDAS`, the sweep baseline's).
    naive, per_component, pair_screen: as `lodo_kernel_ridge`'s (with screens, one column per
      (drug, screen), and each drug leaves the leave-one-out with all its screens).
  """
  lambdas = LAMBDAS if lambdas is None else lambdas
  if not len(lambdas) or min(lambdas) <= 0:
    raise ValueError(f'lambdas must be positive ridges, got {list(lambdas)}')
  kernel = np.asarray(kernel, np.float64)
  if len(np.unique(pair_drug)) < 2:  # leave-one-out needs two
    raise ValueError('kernel ridge over drugs needs at least 2 drugs with pairs, got '
                     f'{len(np.unique(pair_drug))}')
  pair_column, column_drug = column_drugs(pair_drug, pair_screen, len(kernel))
  columns = np.unique(pair_column)       # the columns with pairs; `drugs` is each one's drug
  drugs = column_drug[columns]
  groups = drugs if len(drugs) > len(np.unique(drugs)) else None
  ybar = profile_matrix(pair_cell, pair_column, pair_y, n_cells, len(column_drug))[:, columns]
  mean_naive = (naive_profile(pair_cell, pair_drug, pair_y, n_cells, held_out=-1)
                if naive == 'mean' else None)
  base, z, unit = fold_targets(ybar, naive, mean_naive)
  # Principal components of the targets: the leave-one-out error of all of them is the sum of
  # the components' (V is orthonormal), so one lambda for all is the plain ridge.
  u, s, vt = np.linalg.svd(z, full_matrices=False)
  evals, vecs = np.linalg.eigh(kernel[np.ix_(drugs, drugs)])
  evals = np.maximum(evals, 0.0)
  proj = vecs.T @ (u * s)
  errors = []   # [L, r]: leave-one-out residuals (`loo_residuals`), G = (K + lam I)^-1
  for lam in lambdas:
    shrink = 1.0 / (evals + lam)
    if groups is None:   # one column per drug: (G T)_e / G_ee without forming G
      gt = vecs @ (shrink[:, None] * proj)
      errors.append(((gt / ((vecs ** 2) @ shrink)[:, None]) ** 2).sum(0))
    else:
      errors.append((loo_residuals((vecs * shrink) @ vecs.T, u * s, groups) ** 2).sum(0))
  errors = np.array(errors)
  best = int(np.argmin(errors.sum(1)))
  pick = errors.argmin(0) if per_component else np.full(errors.shape[1], best)
  cols = np.arange(errors.shape[1])
  lam_j = np.asarray(lambdas, np.float64)[pick]
  alpha = vecs @ (proj / (evals[:, None] + lam_j[None, :])) @ vt
  return DrugRidge(drugs, alpha, base, unit, float(lambdas[best]),
                   float(errors[pick, cols].sum() / z.size), lam_j if per_component else None)


def fit_without(ds, kernel: np.ndarray, excluded: int | Sequence[int],
                pair_screen: np.ndarray | None = None) -> DrugRidge:
  """`fit_drugs` on the pairs of every drug of `ds` but `excluded` (no label of those is read):
  e.g. a held-out drug with its screening batch-mates (`batch_mates`). `pair_screen`: [P] all of
  `ds`'s pairs' screens, or None."""
  keep = ~np.isin(ds.pair_drug, np.atleast_1d(np.asarray(excluded, np.int64)))
  return fit_drugs(ds.pair_cell[keep], ds.pair_drug[keep], ds.pair_y[keep], len(ds.cell_ids),
                   kernel, pair_screen=None if pair_screen is None else pair_screen[keep])


def profile_pccs(profiles: np.ndarray, ds) -> np.ndarray:
  """[D] each drug's PCC over all its pairs of `profiles` ([D, C], e.g. held-out profiles) against
  the measured ln IC50 of `ds`."""
  return per_drug_pcc(profiles[ds.pair_drug, ds.pair_cell], ds.pair_y, ds.pair_drug,
                      len(ds.drug_ids))


def pcc_summary(profiles: np.ndarray, ds, naive: np.ndarray) -> dict:
  """Mean / median per-drug PCC of `profiles` ([D, C]) over each drug's pairs (`profile_pccs`),
  rounded for a benchmark's JSON, and the drugs above `naive` ([D] per-drug PCCs)."""
  r = profile_pccs(profiles, ds)
  return {'mean': round(float(np.nanmean(r)), 4), 'median': round(float(np.nanmedian(r)), 4),
          'drugs_beating_naive': int((r > naive).sum())}


def unit_rows(z: np.ndarray) -> np.ndarray:
  """Rows scaled to unit norm (a zero row stays zero)."""
  return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


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


def chemnet_kernel(ds, data_config, root) -> np.ndarray | None:
  """[D, D] RBF on the standardised ChemNet embeddings of `ds`'s drugs, read and aligned as the
  `chemnet` drug representation is (`data_config.drug_embeddings`, under `root`); None when the
  data root has no embedding file (`python -m embed_torch chemnet` makes it)."""
  from cdr_jax.data import drugs  # pylint: disable=g-import-not-at-top
  if not (pathlib.Path(root) / data_config.drug_embeddings['chemnet']).exists():
    return None
  part = data_config.copy_and_resolve_references()
  part.drug_repr, part.shuffle_drugs = 'chemnet', False
  raw, names, _ = drugs.build_drug_features(part, pathlib.Path(root), list(ds.drug_ids),
                                            dict(zip(ds.drug_ids, ds.drug_smiles)))
  return rbf_kernel(drugs.standardize(raw, np.arange(len(raw)), names).features)


# The screening-batch kernel (`screening_kernel`): its width in GDSC drug ids and its weight
# beside `KERNEL_WEIGHTS`. Chosen by leave-one-out over the other drugs in each fold, from widths
# 5, 10, 20, 30, 50 x weights 1, 2, 3, 4, 6 (per screen, all 223 folds): every fold chose 30 and 3
# (`bench/lodo_screening_batch.py`), so the fixed pair is each fold's own choice (the folds share
# 222 of their 223 drugs: in effect one choice).
SCREENING_WIDTH = 30.0
SCREENING_WEIGHT = 3.0


def has_screening_order(ds) -> bool:
  """Whether `ds` records each pair's screen under a GDSC drug id, a whole number
  (`screening_kernel`)."""
  if ds.pair_screen is None or not len(ds.screen_ids):
    return False
  return all(s.strip().isdigit() for s in ds.screen_ids)


def screening_order(ds) -> np.ndarray:
  """[S] each screen's GDSC drug id as a number: its place in GDSC's screening order (GDSC
  numbered drugs as it screened them). A clear error where `ds` has no such ids."""
  if ds.pair_screen is None or not len(ds.screen_ids):
    raise ValueError('the GDSC screening order (the screening-batch kernel, lodo.apart) reads '
                     'each pair\'s GDSC screen (drug id); this dataset records none: '
                     'data.screening_batch and lodo.apart are for unseen drugs '
                     '(launch/lodo.py, or split leave_drug_out), where each drug keeps its '
                     'screens; seen pairs and unseen lines with data.screens make each screen a '
                     'drug, and synthetic data without screens have none')
  if not has_screening_order(ds):
    raise ValueError(f'the GDSC screening order (the screening-batch kernel, lodo.apart) reads '
                     f'GDSC drug ids as whole numbers (their order); screen ids here are e.g. '
                     f'{ds.screen_ids[:3]}')
  return np.array([int(s) for s in ds.screen_ids], np.float64)


def batch_mates(ds, drug: int, within: float) -> np.ndarray:
  """The other drugs GDSC screened within `within` ids of one of `drug`'s screens (its screening
  batch-mates; `screening_order`), sorted. Label-free. A held-out drug's batch-mates deviate as it
  does on the same lines (README, session 24), so a LODO fold that drops them (`lodo.apart`)
  scores a drug screened apart from every drug it learns from."""
  order = screening_order(ds)
  _, _, screen_drug = ds.drug_columns()
  own = order[screen_drug == drug]
  if not len(own):
    raise ValueError(f'drug {drug} ({ds.drug_ids[drug]}) has no screen: no place in the order')
  near = np.abs(order[:, None] - own[None, :]).min(1) <= within
  return np.setdiff1d(screen_drug[near & (screen_drug >= 0)], [drug])


def screening_kernel(ds, width: float = SCREENING_WIDTH) -> np.ndarray:
  """[D, D] how close two drugs were in GDSC's screening order: exp(-(a - b)^2 / (2 width^2))
  between the GDSC drug ids a, b of their screens (`screening_order`), averaged over each drug's
  screens (a drug screened twice sits between its two). PSD with a unit diagonal for a drug with
  one screen; a drug with no screen has a zero row (no place in the order). Label-free, and not a
  drug representation: the module docstring."""
  order = screening_order(ds)
  _, n_screens, screen_drug = ds.drug_columns()
  measured = np.flatnonzero(screen_drug >= 0)
  average = np.zeros((len(ds.drug_ids), n_screens))
  average[screen_drug[measured], measured] = 1.0
  average /= np.maximum(average.sum(1, keepdims=True), 1.0)
  rbf = np.exp(-(order[:, None] - order[None, :]) ** 2 / (2.0 * width ** 2))
  return average @ rbf @ average.T


# The binding-panel kernel's weight beside `KERNEL_WEIGHTS` (`binding_kernel`, with the `binding`
# drug representation). Chosen by leave-one-out over the other drugs in each fold from 0 (none),
# 0.5, 1, 2, 4: 217 of 223 folds chose 2, the other 6 chose 1 (`bench/lodo_binding.py`, all
# folds per screen; README, session 26), so the fixed weight is the folds' majority choice (each
# fold's own choice scores 0.5770, the fixed 2 0.5773).
BINDING_WEIGHT = 2.0


def binding_kernel(ds, root) -> np.ndarray:
  """[D, D] the sum over the binding panels (`cdr_jax.data.binding`) of the Tanimoto similarity
  of the kinases two drugs bind; 0 where either drug is not in a panel. Label-free. A data root
  without the panels is a clear error naming the fetch command."""
  from cdr_jax.data import binding  # pylint: disable=g-import-not-at-top
  info = binding.drug_binding(root, list(ds.drug_ids), dict(zip(ds.drug_ids, ds.drug_smiles)))
  return sum(tanimoto_kernel(b) for b in info.binds.values())


def weighted_kernel(ds, root=None, screening_batch: bool = False, binding: bool = False
                    ) -> tuple[np.ndarray, dict[str, float]]:
  """[D, D] the baseline's drug kernel: `drug_kernels` summed with `KERNEL_WEIGHTS` (plus
  `SCREENING_WEIGHT` x `screening_kernel` with `screening_batch`, and `BINDING_WEIGHT` x
  `binding_kernel` with `binding`), and the weights used (pathway and targets only with a data
  root)."""
  kernels = drug_kernels(ds, root)
  weights = {n: KERNEL_WEIGHTS[n] for n in kernels}
  if screening_batch:
    kernels['screening_batch'] = screening_kernel(ds)
    weights['screening_batch'] = SCREENING_WEIGHT
  if binding:
    kernels['binding'] = binding_kernel(ds, root)
    weights['binding'] = BINDING_WEIGHT
  return sum(w * kernels[n] for n, w in weights.items()), weights


def held_out_drug_predictions(ds, root=None, pair_screen: np.ndarray | None = None,
                              screening_batch: bool = False, binding: bool = False
                              ) -> tuple[np.ndarray, dict, np.ndarray]:
  """[P] the classical baseline's prediction of every pair, its drug held out (every fold at
  once); what it used (kernels, weights, the ridge chosen per fold, the profile columns: one per
  screen with `pair_screen`, `lodo_kernel_ridge`); and the [D, D] weighted kernel (for
  `without_drug`). `screening_batch`, `binding`: `weighted_kernel`'s."""
  kernel, weights = weighted_kernel(ds, root, screening_batch, binding)
  res = lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids), kernel[None],
                          np.ones((1, 1)), LAMBDAS, pair_screen=pair_screen)
  lam, count = np.unique(res.lam, return_counts=True)
  info = baseline_info(weights, pair_screen, screening_batch,
                       {f'{l:g}': int(c) for l, c in zip(lam, count)})
  return res.pair_predictions(ds.pair_cell, ds.pair_drug), info, kernel


def baseline_info(weights: dict[str, float], pair_screen: np.ndarray | None,
                  screening_batch: bool, lambda_chosen) -> dict:
  """What the baseline used, for a sweep's summary: its kernels' weights, its form, its profile
  columns, the ridges the folds chose (counts per ridge, or a note), the screening width."""
  info = {'kernels': weights, 'naive': NAIVE, 'per_component': PER_COMPONENT,
          'columns': 'drug' if pair_screen is None else 'screen', 'lambda_chosen': lambda_chosen}
  if screening_batch:
    info['screening_width'] = SCREENING_WIDTH
  return info


def without_drug(ds, kernel: np.ndarray, excluded: int | Sequence[int], drugs: Sequence[int],
                 pairs: np.ndarray, pair_screen: np.ndarray | None = None) -> np.ndarray:
  """The baseline's predictions of `pairs` (all of `drugs`' pairs among them), each drug of `drugs`
  held out from the dataset with the drug(s) `excluded` removed as well: no label of them is read.

  A fold's validation drugs scored this way let a blend with the network be chosen on them without
  the fold's held-out drug (`cdr_jax.lodo`'s stack); a fold's held-out drug scored with its
  batch-mates `excluded` is the baseline of a fold that drops them (`lodo.apart`). `pair_screen`:
  [P] as `held_out_drug_predictions`'.
  """
  excluded = np.atleast_1d(np.asarray(excluded, np.int64))
  keep = ~np.isin(ds.pair_drug, excluded)
  others = np.setdiff1d(np.arange(len(ds.drug_ids)), excluded)     # new index -> old drug
  new_index = np.full(len(ds.drug_ids), -1)
  new_index[others] = np.arange(len(others))
  res = lodo_kernel_ridge(ds.pair_cell[keep], new_index[ds.pair_drug[keep]], ds.pair_y[keep],
                          len(ds.cell_ids), kernel[np.ix_(others, others)][None], np.ones((1, 1)),
                          LAMBDAS, folds=new_index[np.asarray(drugs)],
                          pair_screen=None if pair_screen is None else pair_screen[keep])
  return res.profiles[new_index[ds.pair_drug[pairs]], ds.pair_cell[pairs]]
