"""Tuned classical predictors of ln IC50: ridge, kernel ridge, matrix factorisation, kNN, a blend.

Inputs are plain arrays: each pair's cell-line index, drug index and ln IC50, and pair-index arrays
of a split's parts. GDSC measured some (line, drug) pairs twice; every predictor here averages a
pair's training measurements into one observation (a replicate is not another cell line).
Hyperparameters come from inner cross-validation over training lines (ridge, kernel ridge) or from
the validation pairs (matrix factorisation, kNN, blend); the labels of the pairs to predict never
reach a fit.

`fit_classical` fits the predictors that apply to a kind of split and says why the others do not:
  seen_pairs    (legacy, random): all of them (additive effects, matrix factorisation, item- and
                user-kNN on their residuals, user-kNN on item-kNN's residuals, ridge, kernel
                ridge, blend, and the per-drug blend fitted on cross-fitted predictions).
  unseen_cells  (leave_cell_out, leave_cancer_type_out): ridge, kernel ridge and their blend; the
                identity models learn one code per line and have none for a line never seen.
  unseen_drugs  (leave_drug_out): none; every predictor here is fitted per drug or learns drug
                codes.
"""

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import optimize

from cdr_jax.errors import DataError

# Ridge and kernel ridge: lambda in units of the mean diagonal of the centred training-line kernel
# (one grid then serves any feature scale or dimension); RBF width in units of the median distance
# between training lines (the median heuristic).
LAMBDAS = tuple(2.0 ** k for k in range(-4, 5))
WIDTHS = (0.5, 1.0, 2.0, 4.0)
# Kernel ridge adds, per line annotation (`splits.line_annotations`), `weight` x a kernel on it to
# the RBF kernel: for a categorical one (cancer type; GDSC's screening medium) 1 for two lines of one
# group, for a numeric one (CCLE's calculated doubling time, log2 hours) the product of the values
# standardised over the training lines. Lines of a type share a sensitivity the expression profile
# shows only in part, lines screened in one medium share a shift of their measured ln IC50, and
# slowly dividing lines resist most drugs (PCC 0.35 with a line's mean drug-centred ln IC50). The
# weights are chosen one after another in this order, each with lambda (the first with the width
# too) by the same inner CV. The type grid steps by 2 as lambda's does (on the five leave_cell_out
# folds a finer one, 0.01 to 0.08, chose less steadily: 0.449 vs 0.451); the medium and doubling
# grids reach down to 0.005-0.01 (inner CV chose 0.02 on the folds, where coarser grids from 0.05
# chose their smallest weight: bench/lco_kernels.py).
ANNOTATION_WEIGHTS = {'type': (0.0, 0.05, 0.1, 0.2), 'medium': (0.0, 0.01, 0.02, 0.05, 0.1),
                      'doubling': (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)}
# Kernel ridge's last stage: one lambda per drug-space principal component of the training
# response matrix, lambda_j = lambda (s_j^2 / mean s^2)^-gamma (`_Spectrum`), gamma and lambda by the
# same inner CV. On the five leave_cell_out folds inner CV chose gamma 0.25 in every fold: 0.4611 ->
# 0.4657 per-drug PCC, higher on all five (bench/lco_kernels.py).
SPECTRUM_GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# After the annotation kernels, kernel ridge adds weight x a second, fine RBF kernel on the same
# features, FINE_WIDTH_REL times the median distance wide: it lets the lines closest in expression
# share more than the main width allows (weight chosen from FINE_WEIGHTS by the same inner CV,
# with lambda). On the five leave_cell_out folds, with the fine width from 0.25-4 also left to
# inner CV, it chose 0.25 in every fold (weight 0.5-1): 0.4657 -> 0.4666 per-drug PCC, higher on
# all five. Weights to 4 were never chosen; widths 0.1 and 0.15 scored lower in inner CV and on
# the folds (0.4647-0.4649), 0.35 the same (0.4666; session 14, scratch).
FINE_WIDTH_REL = 0.25
FINE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
# Every kernel added to the main RBF, in the order their weights are chosen: the line annotations,
# then the fine RBF ('fine': not an annotation; kernel ridge builds it from the features).
KERNEL_WEIGHTS = {**ANNOTATION_WEIGHTS, 'fine': FINE_WEIGHTS}
INNER_FOLDS = 5
MF_RANKS = (10, 20, 40, 80, 120)
MF_L2S = tuple(5.0 * 2.0 ** (k / 2) for k in range(7))   # 5 to 40 in steps of sqrt(2)
MF_TOL = 1e-4        # ALS stops when the training objective changes by less than this, relatively
MF_MAX_ITERS = 300   # a guard only; a fit that reaches it says so (`converged`: False)
KNN_KS = (5, 10, 20, 40, 80)
# kNN weighs a neighbour by its similarity s shaped as sign(s) |s|^power n / (n + shrink), n the
# lines (drugs) the two columns share (`shaped_similarity`); power and shrink are chosen with k on
# the validation pairs. A higher power trusts the most similar neighbours more; shrink discounts a
# correlation measured on few shared lines (10000: weight about proportional to n). On the legacy
# split (seed 0, before the refit) validation chose power 2-4 and the largest shrinks; the blend
# rose from 0.7504 to 0.7546 per-drug PCC on test; over 3 seeds with the refit, 0.7540 -> 0.7585.
KNN_POWERS = (1, 2, 3, 4)
KNN_SHRINKS = (0.0, 100.0, 1000.0, 10000.0)
# The per-drug blend (`drug_blend`) is fitted on cross-fitted predictions of the pairs it was
# given (each predictor refit without the pair's fold, CROSS_FOLDS folds); each drug's weights are
# a ridge toward the weights shared by all drugs, penalty DRUG_BLEND_SHRINKS (chosen on validation).
CROSS_FOLDS = 5
# Folds deal (line, drug) keys: a second measurement of a pair is held out with the first, so the
# blend learns to predict pairs never measured. Dealing measurements instead (False), as the legacy
# and random splits do, leaves a held-out pair's replicate in training as often as the split's test
# pairs have one, and the blend leans on predictors that recall it (bench/legacy_replicates.py).
CROSS_BY_KEY = True
DRUG_BLEND_SHRINKS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
MIN_PAIRS = 3        # a drug's PCC needs this many pairs (as cdr_jax.metrics.MIN_GROUP_PAIRS)
KINDS = ('seen_pairs', 'unseen_cells', 'unseen_drugs')
SPLIT_KINDS = {'legacy': 'seen_pairs', 'random': 'seen_pairs', 'leave_cell_out': 'unseen_cells',
               'leave_cancer_type_out': 'unseen_cells', 'leave_drug_out': 'unseen_drugs'}


class UnseenEntityError(ValueError):
  """A predictor was asked for a pair whose cell line or drug it has no parameters for."""


class Pairs(NamedTuple):
  """Observed pairs: cell-line index, drug index and ln IC50 of each."""
  cell: np.ndarray
  drug: np.ndarray
  y: np.ndarray


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A fitted predictor as its [n_cells, n_drugs] scores; nan where it has no parameters.

  `factors`: matrix factorisation's fitted parameters (`mu`, and `line` / `drug`: codes with the
  bias as last column), which can initialise the network's identity codes (train/warm_start.py).
  """
  name: str
  scores: np.ndarray
  params: dict
  factors: dict | None = dataclasses.field(default=None, repr=False, compare=False)

  def covers(self, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    """Which of the pairs it can score."""
    return np.isfinite(self.scores[cell, drug])

  def predict(self, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    """Scores of the pairs; UnseenEntityError if it cannot score one."""
    out = self.scores[cell, drug]
    _check_covered(self.name, out, cell, drug)
    return out


def _check_covered(name: str, out: np.ndarray, cell: np.ndarray, drug: np.ndarray) -> None:
  bad = np.flatnonzero(~np.isfinite(out))
  if len(bad):
    i = bad[0]
    raise UnseenEntityError(
        f'{name} cannot score pair {i} (cell line {cell[i]}, drug {drug[i]}) nor {len(bad) - 1} '
        'other(s): their line or drug had no training pairs')


def check_pairs(pairs: Pairs, n_cells: int, n_drugs: int, what: str) -> None:
  """Raises if the arrays differ in length, an index is out of range or a label is not finite."""
  n = len(pairs.cell)
  if len(pairs.drug) != n or len(pairs.y) != n:
    raise ValueError(f'{what}: cell, drug and y differ in length '
                     f'({n}, {len(pairs.drug)}, {len(pairs.y)})')
  for name, idx, size in (('cell', pairs.cell, n_cells), ('drug', pairs.drug, n_drugs)):
    if not np.issubdtype(np.asarray(idx).dtype, np.integer):
      raise ValueError(f'{what}: {name} indices have dtype {np.asarray(idx).dtype}; expected ints')
    bad = np.flatnonzero((idx < 0) | (idx >= size))
    if len(bad):
      raise ValueError(f'{what}: pair {bad[0]} has {name} index {idx[bad[0]]}; '
                       f'expected 0..{size - 1}')
  bad = np.flatnonzero(~np.isfinite(pairs.y))
  if len(bad):
    raise DataError(f'{what}: pair {bad[0]} has ln IC50 {pairs.y[bad[0]]}; expected a finite '
                    'value')


def response_matrix(pairs: Pairs, n_cells: int, n_drugs: int) -> tuple[np.ndarray, np.ndarray]:
  """[n_cells, n_drugs] mean ln IC50 of each observed pair (duplicates averaged), and the mask."""
  flat = pairs.cell.astype(np.int64) * n_drugs + pairs.drug
  total = np.bincount(flat, pairs.y.astype(np.float64), n_cells * n_drugs)
  count = np.bincount(flat, minlength=n_cells * n_drugs)
  mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
  return mean.reshape(n_cells, n_drugs), (count > 0).reshape(n_cells, n_drugs)


def mean_drug_pcc(pred: np.ndarray, y: np.ndarray, drug: np.ndarray) -> float:
  """Mean over drugs with >= 3 pairs of the per-drug PCC (the score of cdr_jax's metrics)."""
  _, group = np.unique(drug, return_inverse=True)
  n = np.bincount(group).astype(np.float64)
  pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
  dp = pred - (np.bincount(group, pred) / n)[group]
  dy = y - (np.bincount(group, y) / n)[group]
  vp, vy = np.bincount(group, dp * dp), np.bincount(group, dy * dy)
  # A constant side has no correlation (nan in metrics.pcc); relative test, as the means round.
  ok = ((n >= MIN_PAIRS) & (vp > 1e-20 * np.bincount(group, pred * pred))
        & (vy > 1e-20 * np.bincount(group, y * y)))
  if not ok.any():
    return float('nan')
  return float(np.mean(np.bincount(group, dp * dy)[ok] / np.sqrt(vp[ok] * vy[ok])))


def _matrix_score(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
  rows, cols = np.nonzero(mask)
  return mean_drug_pcc(pred[rows, cols], y[rows, cols], cols)


# --- Kernel ridge per drug on the training lines (ridge is the linear kernel). -------------------


@dataclasses.dataclass(frozen=True)
class _Eig:
  """Eigendecomposition of a training-line kernel centred in feature space; its column means."""
  s: np.ndarray
  u: np.ndarray
  col_mean: np.ndarray


def _centred_eig(k: np.ndarray) -> _Eig:
  col = k.mean(0)
  s, u = np.linalg.eigh(k - col[None] - col[:, None] + col.mean())
  return _Eig(np.maximum(s, 0.0), u, col)


def _centre_cross(k_cross: np.ndarray, eig: _Eig) -> np.ndarray:
  """Centres kernel rows between new lines and the training lines as the training kernel was."""
  return k_cross - k_cross.mean(1, keepdims=True) - eig.col_mean[None] + eig.col_mean.mean()


def _smooth(eig: _Eig, f: np.ndarray, z: np.ndarray) -> np.ndarray:
  """Fitted values of ridge with an unpenalised intercept (per column) on targets z."""
  return z.mean(0) + eig.u @ (f[:, None] * (eig.u.T @ z))


def _complete(eig: _Eig, lam: float, y: np.ndarray, mask: np.ndarray, tol: float = 1e-8,
              max_iters: int = 1000) -> tuple[np.ndarray, int]:
  """Fills y's missing entries so that ridge on the full matrix is each drug's on its own lines.

  Each drug's fit on its observed lines (intercept included) is the fixed point of EM imputation:
  the fill z equals the fit's values there, z = P H (y0 + z) with H the smoother and P the missing
  entries. So z solves (I - P H P) z = P H y0, done for all drugs at once by conjugate gradients.
  """
  f = eig.s / (eig.s + lam)
  miss = ~mask
  y0 = np.where(mask, y, 0.0)
  b = np.where(miss, _smooth(eig, f, y0), 0.0)
  op = lambda z: z - np.where(miss, _smooth(eig, f, z), 0.0)
  mean = y0.sum(0) / np.maximum(mask.sum(0), 1)
  z = np.where(miss, mean, 0.0)  # start from the drug mean (residual 0)
  z, iters = _cg(op, b, z, tol, max_iters, axis=0)
  return np.where(mask, y, z), iters


def _cg(op, b: np.ndarray, x: np.ndarray, tol: float, max_iters: int,
        axis: int) -> tuple[np.ndarray, int]:
  """Conjugate gradients for many SPD systems side by side (one per slice along `axis`)."""
  dot = lambda p, q: (p * q).sum(axis, keepdims=True)
  r = b - op(x)
  p, rr = r.copy(), dot(r, r)
  target = tol ** 2 * np.maximum(dot(b, b), 1e-30)
  for it in range(max_iters):
    active = rr > target
    if not active.any():
      return x, it
    ap = op(p)
    alpha = np.where(active, rr / np.maximum(dot(p, ap), 1e-300), 0.0)
    x, r = x + alpha * p, r - alpha * ap
    rr_new = dot(r, r)
    p = r + np.where(active, rr_new / np.maximum(rr, 1e-300), 0.0) * p
    rr = rr_new
  return x, max_iters


def _dual_predict(eig: _Eig, k_cross: np.ndarray, filled: np.ndarray, lam: float,
                  gamma: float = 0.0) -> np.ndarray:
  """Predictions for the rows of `k_cross` from the ridge fit on the filled training matrix (with
  `gamma` > 0, one lambda per drug-space component: `_Spectrum`)."""
  mu = filled.mean(0)
  coef = _Spectrum(eig, filled - mu).coef(lam, gamma)
  return mu + (_centre_cross(k_cross, eig) @ eig.u) @ coef


class _Spectrum:
  """Dual coefficients of kernel ridge on centred targets `yc` [lines, drugs], one lambda per
  principal component of `yc` in drug space: lambda_j = lambda (s_j^2 / mean s^2)^-gamma with s_j
  its singular values. The components are the response patterns the training lines share across
  drugs (the first: a line's overall sensitivity); with gamma > 0 the strong ones are fitted more
  closely and the weak ones, mostly noise, shrunk harder. This is multi-output kernel ridge with
  the output kernel (yc^T yc)^gamma over drugs; gamma = 0 is one lambda for all (each drug its
  own ridge). The decomposition is computed once and serves any (lambda, gamma)."""

  def __init__(self, eig: _Eig, yc: np.ndarray):
    self.eig, self.uy, self.yc = eig, eig.u.T @ yc, yc
    self._svd = None

  def coef(self, lam: float, gamma: float) -> np.ndarray:
    if not gamma:
      return self.uy / (self.eig.s + lam)[:, None]
    if self._svd is None:
      _, sv, vt = np.linalg.svd(self.yc, full_matrices=False)
      power = sv ** 2 / max(float(np.mean(sv ** 2)), 1e-300)
      self._svd = (power, vt, self.uy @ vt.T)
    power, vt, uz = self._svd
    with np.errstate(divide='ignore'):   # a component of power 0 gets lambda inf: coefficient 0
      lam_c = lam * power ** -gamma
    return (uz / (self.eig.s[:, None] + lam_c[None])) @ vt


def _cv_scores(k: np.ndarray, y: np.ndarray, mask: np.ndarray, lams: np.ndarray, folds: int,
               seed: int, gammas: Sequence[float] = (0.0,)) -> np.ndarray:
  """[lambda, gamma] the mean per-drug PCC of pooled out-of-fold predictions over the training
  lines (gamma: `_Spectrum`'s exponent; 0, the default, is one lambda for all components).

  Inside the folds a drug's missing lines are filled with its mean (residual 0 after centring), so
  one eigendecomposition per fold serves the whole grid; the final fit is exact (`_complete`).
  """
  fold = np.random.default_rng(seed).permutation(len(y)) % folds
  pred = np.zeros((len(lams), len(gammas)) + y.shape)
  for f in range(folds):
    out, inn = fold == f, fold != f
    eig = _centred_eig(k[np.ix_(inn, inn)])
    count = mask[inn].sum(0)
    mean = np.where(mask[inn], y[inn], 0.0).sum(0) / np.maximum(count, 1)
    spectrum = _Spectrum(eig, np.where(mask[inn], y[inn], mean) - mean)
    cross = _centre_cross(k[np.ix_(out, inn)], eig) @ eig.u
    for i, lam in enumerate(lams):
      for j, gamma in enumerate(gammas):
        pred[i, j][out] = mean + cross @ spectrum.coef(lam, gamma)
  return np.array([[_matrix_score(p, y, mask) for p in row] for row in pred])


def _fit_kernels(name: str, kernels: Sequence[tuple[dict, np.ndarray]], train: Pairs,
                 n_cells: int, n_drugs: int, lambdas: Sequence[float], folds: int,
                 seed: int, spectrum: tuple[Sequence[float], Sequence[float]] | None = None
                 ) -> Predictor:
  """Per-drug kernel ridge; (kernel, lambda) by inner CV over training lines, one for all drugs.

  `kernels`: (description, [n_cells, n_cells] kernel) candidates; a single candidate and lambda is
  fitted without CV. Drugs with < 2 training lines get no fit (nan). `spectrum`: (lambdas, gammas)
  grids of a last stage, one lambda per drug-space component (`_Spectrum`), both chosen by the same
  CV for the chosen kernel (a single pair: taken as it is). The drugs' missing training lines are
  filled by the first stage's per-drug fits (`_complete`), and the components are those of the
  filled matrix.
  """
  ymat, mask = response_matrix(train, n_cells, n_drugs)
  lines = np.flatnonzero(mask.any(1))
  drugs = np.flatnonzero(mask.sum(0) >= 2)
  if len(lines) < 2 * folds or not len(drugs):
    raise ValueError(f'{name}: {len(lines)} training lines and {len(drugs)} drugs with two or more '
                     f'lines; inner {folds}-fold CV needs at least {2 * folds} lines and one drug')
  y, m = ymat[np.ix_(lines, drugs)], mask[np.ix_(lines, drugs)]
  table, best = {}, (None, kernels[0][0], lambdas[0], kernels[0][1])
  for desc, k_all in (kernels if len(kernels) * len(lambdas) > 1 else []):
    k = k_all[np.ix_(lines, lines)]
    for rel, score in zip(lambdas, _cv_scores(k, y, m, _scale(k) * np.asarray(lambdas), folds,
                                              seed)[:, 0]):
      table[_key(desc, lambda_rel=rel)] = float(score)
      if best[0] is None or score > best[0]:
        best = (float(score), desc, rel, k_all)
  score, desc, rel, k_all = best
  k = k_all[np.ix_(lines, lines)]
  eig, lam = _centred_eig(k), rel * _scale(k)
  spec = {}
  if spectrum:
    spec_lams, gammas = map(tuple, spectrum)
    spec_rel, gamma, spec_score = spec_lams[0], gammas[0], None
    if len(spec_lams) * len(gammas) > 1:
      cv = _cv_scores(k, y, m, _scale(k) * np.asarray(spec_lams), folds, seed, gammas)
      for (i, j), s in np.ndenumerate(cv):
        table[_key(desc, lambda_rel=spec_lams[i], spectrum_gamma=gammas[j])] = float(s)
      i, j = np.unravel_index(np.argmax(cv), cv.shape)
      spec_rel, gamma, spec_score = spec_lams[i], gammas[j], float(cv[i, j])
    spec = {'spectrum_lambda_rel': spec_rel, 'spectrum_gamma': gamma,
            'spectrum_cv_score': spec_score}
  filled, iters = _complete(eig, lam, y, m)
  scores = np.full((n_cells, n_drugs), np.nan)
  scores[:, drugs] = _dual_predict(eig, k_all[:, lines], filled,
                                   spec.get('spectrum_lambda_rel', rel) * _scale(k),
                                   spec.get('spectrum_gamma', 0.0))
  params = dict(desc, lambda_rel=rel, **{'lambda': lam}, cv_score=score, **spec, cv=table,
                inner_folds=folds, completion_iters=iters, fitted_drugs=int(len(drugs)))
  return Predictor(name, scores, params)


def _scale(k: np.ndarray) -> float:
  """Mean diagonal of the kernel centred in feature space (lambda's unit)."""
  return float(np.mean(np.diag(k)) - np.mean(k))


def _key(desc: dict, **more) -> str:
  return ','.join(f'{k}={v:g}' for k, v in {**desc, **more}.items())


def _check_features(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ValueError(f'cell features have shape {x.shape}; expected [n_cells, d]')
  bad = np.flatnonzero(~np.isfinite(x).all(1))
  if len(bad):
    raise DataError(f'cell features: row {bad[0]} has a non-finite value; expected finite, '
                    'standardised features')
  return x


def ridge_per_drug(x: np.ndarray, train: Pairs, n_drugs: int, seed: int = 0,
                   lambdas: Sequence[float] = LAMBDAS, folds: int = INNER_FOLDS,
                   spectrum: tuple[Sequence[float], Sequence[float]] | None = None) -> Predictor:
  """Ridge of ln IC50 on the cell features, one per drug with its own intercept.

  Each drug is fitted exactly on its own training lines (features and labels centred on them), in
  the dual form, all drugs through one eigendecomposition of the training-line kernel. One lambda
  for all drugs, by inner K-fold CV over training lines: a drug has a few hundred lines, too few to
  tune its own lambda without the choice's noise costing more than it gains (per-drug lambdas
  scored 0.438 against 0.442 per-drug PCC over the five leave_cell_out folds). `spectrum`: a last
  stage of one lambda per drug-space component, as kernel ridge's (`_fit_kernels`; the baseline
  runs without it; on `kernel_map` features with it, it is kernel ridge).
  """
  x = _check_features(x)
  check_pairs(train, len(x), n_drugs, 'ridge_per_drug training pairs')
  return _fit_kernels('ridge_per_drug', [({}, x @ x.T)], train, len(x), n_drugs, lambdas, folds,
                      seed, spectrum)


def spectrum_of(params: Mapping) -> tuple[tuple[float], tuple[float]] | None:
  """The (lambda, gamma) a fit's spectrum stage chose, as a one-point grid (None: it had none)."""
  if 'spectrum_gamma' not in params:
    return None
  return (params['spectrum_lambda_rel'],), (params['spectrum_gamma'],)


def _sq_dists(x: np.ndarray) -> np.ndarray:
  sq = (x * x).sum(1)
  return np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0.0)


def kernel_ridge(x: np.ndarray, train: Pairs, n_drugs: int, seed: int = 0,
                 widths: Sequence[float] = WIDTHS, lambdas: Sequence[float] = LAMBDAS,
                 folds: int = INNER_FOLDS, annotations: Mapping[str, np.ndarray] | None = None,
                 annotation_weights: Mapping[str, Sequence[float]] | None = None,
                 spectrum: tuple[Sequence[float], Sequence[float]] | None = (
                     LAMBDAS, SPECTRUM_GAMMAS)) -> Predictor:
  """Multi-output kernel ridge over drugs, RBF kernel on the cell features; scores unseen lines.

  All drugs share the kernel, its width (times the median distance between training lines) and
  lambda, chosen by inner K-fold CV over training lines. `annotations` maps line annotations named
  in `ANNOTATION_WEIGHTS` to each line's group or value (`annotation_kernels`;
  `splits.line_annotations`): the kernel is then RBF + sum of weight x each annotation's kernel
  + weight x a fine RBF (`FINE_WIDTH_REL`), the weights from `annotation_weights[name]` (default
  `KERNEL_WEIGHTS[name]`) chosen in that order, one after another: the first with the width and
  lambda, each next one with lambda and the earlier choices fixed, all by the same CV. Last,
  `spectrum`'s (lambdas, gammas): one lambda per drug-space component of the training responses
  (`_Spectrum`), chosen by the same CV (None: one lambda for all). A drug missing on some training
  lines is fitted exactly on the lines that have it (see `_complete`), not by imputing them; the
  spectrum stage sees the matrix those fits fill.
  """
  x = _check_features(x)
  check_pairs(train, len(x), n_drugs, 'kernel_ridge training pairs')
  d2 = _sq_dists(x)
  lines = np.unique(train.cell)
  median = rbf_width(x, lines)
  kern = dict(annotation_kernels(annotations, len(x), lines), fine=_fine_rbf(d2, median))
  grids = {n: tuple(dict(annotation_weights or {}).get(n, KERNEL_WEIGHTS[n])) if n in kern
           else (0.0,) for n in KERNEL_WEIGHTS}
  weights = {n: g[0] for n, g in grids.items()}
  stages = [n for n, g in grids.items() if len(g) > 1] or [None]
  cv = {}
  for stage in stages:
    kernels = []
    for width in widths:
      for w in grids[stage] if stage else (None,):
        if stage:
          weights[stage] = w
        desc = {'width_rel': width, **{f'{n}_weight': v for n, v in weights.items()}}
        kernels.append((desc, _rbf_plus(d2, width * median, kern, weights)))
    fit = _fit_kernels('kernel_ridge', kernels, train, len(x), n_drugs, lambdas, folds, seed,
                       spectrum if stage == stages[-1] else None)
    cv.update(fit.params['cv'])
    widths = (fit.params['width_rel'],)
    weights = annotation_weights_of(fit.params)
  fit.params.update(cv=cv, width=fit.params['width_rel'] * median, median_distance=median,
                    annotations=_annotation_counts(annotations))
  return fit


def cv_score_of(params: Mapping) -> float:
  """The inner-CV score of what a `kernel_ridge` / `_fit_kernels` fit chose: its last stage's
  (the spectrum stage when it had one to choose), comparable between fits on the same lines and
  seed. A fit that chose nothing has none (ValueError)."""
  score = params.get('spectrum_cv_score')
  score = params.get('cv_score') if score is None else score
  if score is None:
    raise ValueError('this fit chose nothing by inner CV (a single kernel and lambda): no score')
  return float(score)


def annotation_weights_of(params: Mapping) -> dict[str, float]:
  """{name: weight} of the kernels added to the main RBF (`KERNEL_WEIGHTS`: the line annotations
  and the fine RBF) that a `kernel_ridge` fit (or `kernel_map`) chose."""
  return {n: float(params.get(f'{n}_weight', 0.0)) for n in KERNEL_WEIGHTS}


def _fine_rbf(d2: np.ndarray, median: float) -> np.ndarray:
  """The fine RBF kernel (`FINE_WIDTH_REL` times the median distance) on squared distances."""
  return np.exp(-d2 / (2 * (FINE_WIDTH_REL * median) ** 2))


def group_kernel(groups: np.ndarray | None, n_cells: int) -> np.ndarray | None:
  """[C, C] 1 where two lines share a group (index >= 0), else 0; None for no groups."""
  if groups is None:
    return None
  groups = np.asarray(groups)
  if groups.shape != (n_cells,) or not np.issubdtype(groups.dtype, np.integer):
    raise ValueError(f'cell groups: shape {groups.shape}, dtype {groups.dtype}; expected one '
                     f'integer per cell line ({n_cells}), -1 for a line with none')
  return ((groups[:, None] == groups[None]) & (groups[:, None] >= 0)).astype(np.float64)


def value_kernel(values: np.ndarray, n_cells: int, lines: np.ndarray) -> np.ndarray:
  """[C, C] z z^T, z = the values standardised over the lines of `lines` that have one (nan: no
  value, z = 0: the line is like the average). Label-free; fitted on the training lines only."""
  v = np.asarray(values, np.float64)
  if v.shape != (n_cells,):
    raise ValueError(f'line values: shape {v.shape}; expected one float per cell line '
                     f'({n_cells}), nan for a line with none')
  has = np.isfinite(v)
  fit = v[np.asarray(lines)[has[lines]]]
  if len(fit) < 2 or not fit.std() > 0:
    raise DataError(f'line values: {len(fit)} training lines have one, and they do not vary; '
                    'a kernel on them needs at least 2 different values')
  z = np.where(has, (np.where(has, v, 0.0) - fit.mean()) / fit.std(), 0.0)
  return np.outer(z, z)


def annotation_kernels(annotations: Mapping[str, np.ndarray] | None, n_cells: int,
                       lines: np.ndarray) -> dict[str, np.ndarray]:
  """{name: [C, C] kernel} of line annotations named in `ANNOTATION_WEIGHTS`: `group_kernel` of an
  integer array (groups, -1: none), `value_kernel` of a float array (standardised over `lines`)."""
  unknown = sorted(set(annotations or {}) - set(ANNOTATION_WEIGHTS))
  if unknown:
    raise ValueError(f'unknown line annotation {unknown[0]!r}; kernel ridge knows '
                     f'{", ".join(ANNOTATION_WEIGHTS)}')
  return {n: group_kernel(a, n_cells) if _is_groups(a) else value_kernel(a, n_cells, lines)
          for n, a in (annotations or {}).items()}


def _is_groups(annotation: np.ndarray) -> bool:
  """A categorical annotation (integer groups) rather than a numeric one (float values)."""
  return bool(np.issubdtype(np.asarray(annotation).dtype, np.integer))


def _annotation_counts(annotations: Mapping[str, np.ndarray] | None) -> dict[str, int]:
  """Groups of each categorical annotation, lines with a value of each numeric one."""
  out = {}
  for name, a in (annotations or {}).items():
    a = np.asarray(a)
    out[name] = int(len(np.unique(a[a >= 0])) if _is_groups(a) else np.isfinite(a).sum())
  return out


def _rbf_plus(d2: np.ndarray, width: float, kern: Mapping[str, np.ndarray],
              weights: Mapping[str, float]) -> np.ndarray:
  k = np.exp(-d2 / (2 * width ** 2))
  for name, w in weights.items():
    if w:
      k = k + w * kern[name]
  return k


def rbf_width(x: np.ndarray, lines: np.ndarray) -> float:
  """The median distance between the training lines `lines` (the RBF width's unit)."""
  d2 = _sq_dists(x[lines])
  median = float(np.sqrt(np.median(d2[np.triu_indices(len(lines), 1)])))
  if not median > 0:
    raise DataError('RBF kernel: the training lines\' features are all identical; no width')
  return median


def kernel_map(x: np.ndarray, lines: np.ndarray, width_rel: float,
               annotations: Mapping[str, np.ndarray] | None = None,
               weights: Mapping[str, float] | None = None,
               rel_tol: float = 1e-10) -> tuple[np.ndarray, dict]:
  """Features whose dot products are the kernel of `kernel_ridge`, centred as it centres it.

  phi[c] = k~(x[c], training lines) U S^(-1/2), with U S U^T the eigendecomposition of the
  training lines' centred kernel (eigenvalues above `rel_tol` times the largest): on the training
  lines phi phi^T is that kernel, and for any line the kernel ridge of `kernel_ridge` (RBF width
  `width_rel` times the median distance between training lines, plus `weights[name]` x the kernel
  of `annotations[name]` for each line annotation and `weights['fine']` x the fine RBF) is ridge
  with an intercept on phi, same lambda.
  Label-free: only the training lines' features (and annotations) enter.
  """
  x = _check_features(x)
  lines = np.asarray(lines)
  median = rbf_width(x, lines)
  width = width_rel * median
  weights = {n: float(w) for n, w in (weights or {}).items() if w}
  unknown = sorted(set(weights) - set(KERNEL_WEIGHTS))
  if unknown:
    raise ValueError(f'kernel map: a weight for {unknown[0]!r}; the kernels are '
                     f'{", ".join(KERNEL_WEIGHTS)}')
  missing = sorted(set(weights) - set(annotations or {}) - {'fine'})
  if missing:
    raise ValueError(f'kernel map: a weight for {missing[0]!r} but no such line annotation given')
  d2 = _sq_dists(x)[:, lines]
  kern = {n: k[:, lines] for n, k in annotation_kernels(annotations, len(x), lines).items()}
  kern['fine'] = _fine_rbf(d2, median)
  k_cross = _rbf_plus(d2, width, kern, weights)
  eig = _centred_eig(k_cross[lines])
  keep = eig.s > rel_tol * eig.s.max()
  phi = (_centre_cross(k_cross, eig) @ eig.u[:, keep]) / np.sqrt(eig.s[keep])
  return phi, {'width_rel': width_rel, 'width': width, 'median_distance': median,
               **{f'{n}_weight': weights.get(n, 0.0) for n in KERNEL_WEIGHTS},
               'dim': int(keep.sum()), 'training_lines': int(len(lines))}


# --- Identity models: additive effects and matrix factorisation (ALS). ---------------------------


def additive(train: Pairs, n_cells: int, n_drugs: int, l2: float = 1.0) -> Predictor:
  """y = mu + b[line] + a[drug] with L2 `l2` on the biases, solved exactly (one linear system).

  Scores only pairs whose line and drug have training pairs. Its residuals (responses with line and
  drug effects removed) are the profiles that kNN compares.
  """
  check_pairs(train, n_cells, n_drugs, 'additive training pairs')
  ymat, mask = response_matrix(train, n_cells, n_drugs)
  mu = float(ymat[mask].mean())
  m = mask.astype(np.float64)
  r = np.where(mask, ymat - mu, 0.0)
  # Normal equations of the biases [b; a]: per line / drug counts on the diagonal, the mask between.
  lhs = np.block([[np.diag(m.sum(1) + l2), m], [m.T, np.diag(m.sum(0) + l2)]])
  sol = np.linalg.solve(lhs, np.concatenate([r.sum(1), r.sum(0)]))
  scores = mu + sol[:n_cells, None] + sol[None, n_cells:]
  scores[~mask.any(1)] = np.nan
  scores[:, ~mask.any(0)] = np.nan
  return Predictor('additive', scores, {'l2': l2})


def _ridge_rows(t: np.ndarray, mask: np.ndarray, f: np.ndarray, l2: float, w: np.ndarray,
                tol: float) -> np.ndarray:
  """Each row i's ridge solution of sum_j mask[i,j] (t[i,j] - w[i] . f[j])^2 + l2 |w[i]|^2.

  Conjugate gradients from `w` (the previous sweep's solution), all rows at once: a matrix product
  per step instead of a Gram matrix and a solve per row.
  """
  m = mask.astype(np.float64)
  op = lambda z: ((z @ f.T) * m) @ f + l2 * z
  w, _ = _cg(op, (t * m) @ f, w, tol, 500, axis=1)
  return w


@dataclasses.dataclass(frozen=True)
class _Als:
  mu: float
  wu: np.ndarray   # [n_cells, rank + 1]: line codes and line biases (last column)
  wv: np.ndarray   # [n_drugs, rank + 1]: drug codes and drug biases
  iterations: int
  converged: bool
  objective: float

  def scores(self) -> np.ndarray:
    return (self.mu + self.wu[:, -1:] + self.wv[:, -1] + self.wu[:, :-1] @ self.wv[:, :-1].T)


def _als(ymat: np.ndarray, mask: np.ndarray, rank: int, l2: float, seed: int, tol: float,
         max_iters: int) -> _Als:
  """ALS for y = mu + b[line] + a[drug] + U[line] . V[drug], L2 `l2` on codes and biases.

  Stops when the objective (squared error over observed pairs plus the penalty) changes by less
  than `tol` relatively; inner solves are 100 times tighter so that the change is ALS's own.
  """
  rng = np.random.default_rng(seed)
  n_cells, n_drugs = ymat.shape
  mu = float(ymat[mask].mean())
  wu = np.hstack([0.1 * rng.standard_normal((n_cells, rank)), np.zeros((n_cells, 1))])
  wv = np.hstack([0.1 * rng.standard_normal((n_drugs, rank)), np.zeros((n_drugs, 1))])
  ones_c, ones_d = np.ones((n_cells, 1)), np.ones((n_drugs, 1))
  previous = np.inf
  for it in range(1, max_iters + 1):
    wu = _ridge_rows(ymat - mu - wv[:, -1], mask, np.hstack([wv[:, :-1], ones_d]), l2, wu,
                     tol / 100)
    wv = _ridge_rows((ymat - mu - wu[:, -1:]).T, mask.T, np.hstack([wu[:, :-1], ones_c]), l2, wv,
                     tol / 100)
    fit = _Als(mu, wu, wv, it, False, 0.0)
    sq = float(np.sum(np.where(mask, ymat - fit.scores(), 0.0) ** 2))
    objective = sq + l2 * float(np.sum(wu ** 2) + np.sum(wv ** 2))
    if abs(previous - objective) <= tol * objective:
      return dataclasses.replace(fit, converged=True, objective=objective)
    previous = objective
  return dataclasses.replace(fit, objective=objective)


def matrix_factorization(train: Pairs, n_cells: int, n_drugs: int, rank: int, l2: float,
                         seed: int, tol: float = MF_TOL,
                         max_iters: int = MF_MAX_ITERS) -> Predictor:
  """Biased matrix factorisation (global, line and drug biases + rank-r codes) fitted by ALS.

  Initialised from `seed`; run until the relative change of the training objective is below
  `tol`. It scores only pairs whose line and drug have training pairs (others are nan).
  """
  check_pairs(train, n_cells, n_drugs, 'matrix_factorization training pairs')
  ymat, mask = response_matrix(train, n_cells, n_drugs)
  fit = _als(ymat, mask, rank, l2, seed, tol, max_iters)
  scores = fit.scores()
  scores[~mask.any(1)] = np.nan
  scores[:, ~mask.any(0)] = np.nan
  params = {'rank': rank, 'l2': l2, 'seed': seed, 'tol': tol, 'iterations': fit.iterations,
            'converged': fit.converged, 'objective': fit.objective,
            'effective_rank': _effective_rank(fit)}
  return Predictor('matrix_factorization', scores, params,
                   factors={'mu': fit.mu, 'line': fit.wu, 'drug': fit.wv})


def _effective_rank(fit: _Als, rel: float = 1e-4) -> int:
  """Singular values of U V^T above `rel` times the largest (below the rank: rank not binding)."""
  sv = np.linalg.svd(fit.wu[:, :-1] @ fit.wv[:, :-1].T, compute_uv=False)
  return int(np.sum(sv > rel * sv[0])) if sv[0] > 0 else 0


def select_matrix_factorization(train: Pairs, val: Pairs, n_cells: int, n_drugs: int, seed: int,
                                ranks: Sequence[int] = MF_RANKS, l2s: Sequence[float] = MF_L2S,
                                tol: float = MF_TOL,
                                max_iters: int = MF_MAX_ITERS) -> Predictor:
  """The grid's (rank, L2) with the best mean per-drug PCC on the validation pairs.

  For each L2, ranks go up while the validation score improves (the slowest fits are large ranks
  at small L2, which overfit) and until a fit leaves some rank unused (effective rank below it):
  the L2 then bounds the rank, and a larger rank would fit the same model.
  """
  check_pairs(val, n_cells, n_drugs, 'matrix_factorization validation pairs')
  table, best = {}, None
  for l2 in l2s:
    previous = -np.inf
    for rank in sorted(ranks):
      fit = matrix_factorization(train, n_cells, n_drugs, rank, l2, seed, tol, max_iters)
      score = mean_drug_pcc(fit.predict(val.cell, val.drug), val.y, val.drug)
      table[_key({'rank': rank, 'l2': l2})] = score
      if best is None or score > best.params['val_score']:
        best = dataclasses.replace(fit, params=dict(fit.params, val_score=score))
      if score < previous or fit.params['effective_rank'] < rank:
        break
      previous = score
  best.params.update(val=table)
  return best


# --- kNN on residuals. ----------------------------------------------------------------------------


def column_similarity(r: np.ndarray, mask: np.ndarray, min_shared: int = MIN_PAIRS) -> np.ndarray:
  """Pearson correlation between columns of r over the rows where both are observed (0 if too few).

  The diagonal is 0 (a column is not its own neighbour).
  """
  w = mask.astype(np.float64)
  rz = np.where(mask, r, 0.0)
  n, sx, sxx, sxy = w.T @ w, rz.T @ w, (rz * rz).T @ w, rz.T @ rz
  var = n * sxx - sx * sx
  ok = (n >= min_shared) & (var > 1e-12 * n * sxx) & (var.T > 1e-12 * n * sxx.T)
  corr = np.where(ok, (n * sxy - sx * sx.T) / np.sqrt(np.where(ok, var * var.T, 1.0)), 0.0)
  np.fill_diagonal(corr, 0.0)
  return corr


def _neighbour_means(sim: np.ndarray, resid: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                     cols: np.ndarray, ks: Sequence[int], chunk: int = 4096) -> np.ndarray:
  """[len(ks), n]: per k, each query's similarity-weighted mean residual over its k neighbours.

  Query i's neighbours are the k columns c most similar to cols[i] (positive similarity only) that
  row rows[i] observed; the mean is of resid[rows[i], c].
  """
  kmax = min(max(ks), sim.shape[1])
  out = np.zeros((len(ks), len(rows)))
  for start in range(0, len(rows), chunk):
    r, c = rows[start:start + chunk], cols[start:start + chunk]
    s = np.where(mask[r], np.maximum(sim[c], 0.0), 0.0)
    top = np.argpartition(-s, kmax - 1, axis=1)[:, :kmax]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), 1), 1)
    ts = np.take_along_axis(s, top, 1)
    num = np.cumsum(ts * resid[r[:, None], top], 1)
    den = np.cumsum(ts, 1)
    for i, k in enumerate(ks):
      j = min(k, kmax) - 1
      mean = num[:, j] / np.maximum(den[:, j], 1e-300)
      out[i, start:start + chunk] = np.where(den[:, j] > 0, mean, 0.0)
  return out


def shaped_similarity(sim: np.ndarray, shared: np.ndarray, power: float,
                      shrink: float) -> np.ndarray:
  """sign(sim) |sim|^power shared / (shared + shrink): the weight kNN gives a neighbour
  (`shared`: how many lines, or drugs, the two columns have in common)."""
  with np.errstate(invalid='ignore', divide='ignore'):
    damp = np.where(shared > 0, shared / (shared + shrink), 0.0)
  return np.sign(sim) * np.abs(sim) ** power * damp


@dataclasses.dataclass(frozen=True)
class KnnPredictor:
  """A base predictor plus the weighted mean residual of a pair's k most similar drugs (lines)."""
  name: str
  base: Predictor
  resid: np.ndarray   # [n_cells, n_drugs] training residuals of the base (0 where unobserved)
  mask: np.ndarray
  sim: np.ndarray     # [n_drugs, n_drugs] (axis 'drug') or [n_cells, n_cells] (axis 'cell'),
                      # shaped (`shaped_similarity`) with `power` and `shrink`
  axis: str
  k: int
  params: dict
  power: float = 1.0
  shrink: float = 0.0

  def covers(self, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    return self.base.covers(cell, drug)

  def predict(self, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    return self.base.predict(cell, drug) + self.corrections(cell, drug, [self.k])[0]

  @property
  def scores(self) -> np.ndarray:
    """[n_cells, n_drugs] its prediction of every pair it covers (nan elsewhere), as a
    `Predictor`'s: another kNN can correct its residuals."""
    out = np.full(self.base.scores.shape, np.nan)
    cell, drug = np.nonzero(np.isfinite(self.base.scores))
    out[cell, drug] = self.predict(cell, drug)
    return out

  def corrections(self, cell: np.ndarray, drug: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    if self.axis == 'drug':
      return _neighbour_means(self.sim, self.resid, self.mask, cell, drug, ks)
    return _neighbour_means(self.sim, self.resid.T, self.mask.T, drug, cell, ks)


def knn_residual(base: Predictor, profiles: Predictor, train: Pairs, val: Pairs | None,
                 axis: str, ks: Sequence[int] = KNN_KS, powers: Sequence[float] = KNN_POWERS,
                 shrinks: Sequence[float] = KNN_SHRINKS) -> KnnPredictor:
  """Item-kNN (axis 'drug': drug-drug) or user-kNN ('cell': line-line) on the base's residuals.

  A pair's correction is the similarity-weighted mean of the base's training residuals on the k
  most similar drugs the line was screened with (lines screened with the drug). Similarity is the
  correlation of two drugs' (lines') training residual profiles of `profiles` over their shared
  lines (drugs): with `additive`, responses with line and drug effects removed, which on the legacy
  split's validation pairs finds better neighbours than a fitted factor model's own residuals;
  it is shaped by `power` and `shrink` (`shaped_similarity`). k, power and shrink by the mean
  per-drug PCC of base + correction on the validation pairs (`val` None: one value of each).
  """
  if axis not in ('drug', 'cell'):
    raise ValueError(f'unknown kNN axis {axis!r}; choose drug (item-kNN) or cell (user-kNN)')
  grid = {'k': ks, 'power': powers, 'shrink': shrinks}
  if val is None and any(len(g) != 1 for g in grid.values()):
    raise ValueError(f'knn_residual: grids of sizes {[len(g) for g in grid.values()]} (k, power, '
                     'shrink) and no validation pairs to choose from them; give one value of each')
  scores = base.scores   # computed once: a kNN base predicts its whole matrix here
  n_cells, n_drugs = scores.shape
  ymat, mask = response_matrix(train, n_cells, n_drugs)
  mask = mask & np.isfinite(scores) & np.isfinite(profiles.scores)
  resid = np.where(mask, ymat - np.where(mask, scores, 0.0), 0.0)
  prof = np.where(mask, ymat - np.where(mask, profiles.scores, 0.0), 0.0)
  cols = mask.astype(np.float64) if axis == 'drug' else mask.T.astype(np.float64)
  sim = column_similarity(prof, mask) if axis == 'drug' else column_similarity(prof.T, mask.T)
  shared = cols.T @ cols
  name = ('item_knn' if axis == 'drug' else 'user_knn') + _SUFFIX.get(base.name, '')
  params = {'base': base.name, 'similarity': f'correlation of {profiles.name} residuals'}
  make = lambda k, power, shrink: KnnPredictor(
      name, base, resid, mask, shaped_similarity(sim, shared, power, shrink), axis, int(k),
      dict(params, k=int(k), power=float(power), shrink=float(shrink)), float(power),
      float(shrink))
  if val is None:
    return make(ks[0], powers[0], shrinks[0])
  base_val = base.predict(val.cell, val.drug)
  table, best = {}, None
  for power in powers:
    for shrink in shrinks:
      corr = make(ks[0], power, shrink).corrections(val.cell, val.drug, ks)
      for k, c in zip(ks, corr):
        score = mean_drug_pcc(base_val + c, val.y, val.drug)
        table[f'k={k},power={power:g},shrink={shrink:g}'] = score
        if best is None or score > best[0]:
          best = (score, k, power, shrink)
  knn = make(*best[1:])
  return dataclasses.replace(knn, params=dict(knn.params, val_score=best[0], val=table))


_SUFFIX = {'additive': '_additive', 'item_knn': '_after_item_knn',
           'user_knn_after_item_knn': '_after_cascade'}


# --- Blend and the split-level entry point. -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Blend:
  """Within a drug, intercept + sum_j weights[j] * parts[j]; across drugs, each drug's level is
  sum_j level_weights[j] * (part j's mean on that drug's validation pairs). Both sets of weights are
  non-negative and fitted on validation pairs (`blend`)."""
  name: str
  parts: tuple
  weights: np.ndarray
  intercept: float
  params: dict
  level_weights: np.ndarray   # [J]
  level_drugs: np.ndarray     # [G] sorted drugs with validation pairs
  levels: np.ndarray          # [G, J] each part's mean on them

  def predict(self, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    p = np.stack([q.predict(cell, drug) for q in self.parts], 1)
    out = self.intercept + p @ self.weights
    # Drugs without validation pairs keep the within-drug formula's level.
    at = np.clip(np.searchsorted(self.level_drugs, drug), 0, len(self.level_drugs) - 1)
    known = self.level_drugs[at] == drug
    shift = self.levels[at] @ (self.level_weights - self.weights)
    return out + np.where(known, shift, 0.0)


def blend(parts: Sequence, val: Pairs) -> Blend:
  """Non-negative least squares of the validation labels on the parts' predictions: within drugs,
  then for the drugs' levels.

  Labels and predictions are centred per drug before the first fit: the score is a per-drug
  correlation, so the weights should explain each drug's ranking of lines, not the spread between
  drugs' means, which would otherwise dominate the squares. Those weights need not sum to one, so
  the drugs' levels get their own fit: the validation labels' mean per drug on the parts' means per
  drug (weighted by pairs). The second fit moves each drug's predictions by a constant, so the
  per-drug ranking, and every per-drug correlation, are the first fit's. Weights are non-negative:
  a part may be dropped (weight 0) but not subtracted, which would fit the few thousand validation
  pairs' noise rather than a stable combination.
  """
  if not parts or not len(val.y):
    raise ValueError(f'blend needs parts and validation pairs (got {len(parts)} parts, '
                     f'{len(val.y)} validation pairs)')
  p = np.stack([part.predict(val.cell, val.drug) for part in parts], 1)
  y = np.asarray(val.y, np.float64)
  drugs, group = np.unique(val.drug, return_inverse=True)
  n = np.bincount(group).astype(np.float64)
  mean_of = lambda v: np.bincount(group, v) / n   # per drug
  weights, _ = optimize.nnls(np.stack([c - mean_of(c)[group] for c in p.T], 1),
                             y - mean_of(y)[group])
  levels, level_y = np.stack([mean_of(c) for c in p.T], 1), mean_of(y)
  root = np.sqrt(n / n.sum())[:, None]
  centred = lambda v: v - (n @ v) / n.sum()
  level_weights, _ = optimize.nnls(root * centred(levels), root[:, 0] * centred(level_y))
  fit = Blend('blend', tuple(parts), weights, 0.0, {}, level_weights, drugs, levels)
  intercept = float(np.mean(y - fit.predict(val.cell, val.drug)))
  fit = dataclasses.replace(fit, intercept=intercept)
  score = mean_drug_pcc(fit.predict(val.cell, val.drug), y, val.drug)
  params = {'weights': {q.name: float(w) for q, w in zip(parts, weights)},
            'level_weights': {q.name: float(w) for q, w in zip(parts, level_weights)},
            'intercept': intercept, 'val_score': score,
            'note': 'val_score is in-sample: the weights were fitted on it'}
  return dataclasses.replace(fit, params=params)


@dataclasses.dataclass(frozen=True)
class DrugBlend:
  """Each drug g its own linear blend: intercepts[g] + weights[g] . (the parts' predictions).

  Fitted by `drug_blend` on cross-fitted predictions of training pairs, not on validation pairs:
  with about 400 training pairs per drug there are enough to weigh the parts per drug, and the
  validation pairs stay held out to choose the one shrinkage and to score the blend.
  """
  name: str
  parts: tuple
  weights: np.ndarray     # [n_drugs, J]
  intercepts: np.ndarray  # [n_drugs]
  params: dict

  def predict(self, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    p = np.stack([q.predict(cell, drug) for q in self.parts], 1)
    return self.intercepts[drug] + np.sum(p * self.weights[drug], 1)


def cross_folds(pairs: Pairs, n_cells: int, n_drugs: int, seed: int,
                folds: int = CROSS_FOLDS, by_key: bool = True) -> np.ndarray:
  """Each pair's fold (0..folds-1).

  With `by_key`, folds are dealt over (line, drug) keys, not over measurements: GDSC measured some
  pairs twice, and a replicate left in the other folds would hand the refit the held-out pair's
  label (`CROSS_BY_KEY`). Each line's keys (or measurements) are dealt round the folds in a random
  order from a random start, so every fold holds about a fifth of every line's pairs.
  """
  unit = pairs.cell.astype(np.int64) * n_drugs + pairs.drug
  if not by_key:
    unit = np.arange(len(unit))
  keys, inverse = np.unique(unit, return_inverse=True)
  line = pairs.cell[np.unique(inverse, return_index=True)[1]]   # each key's line
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(keys))
  order = order[np.argsort(line[order], kind='stable')]   # by line, random within a line
  starts = np.searchsorted(line[order], line[order])
  offset = rng.integers(0, folds, n_cells)
  fold = np.empty(len(keys), np.int64)
  fold[order] = (np.arange(len(order)) - starts + offset[line[order]]) % folds
  return fold[inverse]


def cross_fitted(fitted: Mapping[str, Predictor], info: Mapping[str, dict], pairs: Pairs,
                 x: np.ndarray | None, n_cells: int, n_drugs: int, seed: int,
                 annotations: Mapping[str, np.ndarray] | None = None,
                 folds: int = CROSS_FOLDS) -> tuple[np.ndarray, np.ndarray]:
  """[len(pairs), J]: each pair predicted by each predictor of `fitted` refit, with the
  hyperparameters it chose, on the other folds' pairs (`cross_folds`); nan where never held out.
  Also [len(pairs)]: the fold each pair was held out in (-1: never).

  The predictions a blend can be fitted on without reading labels its parts were fitted to. A
  pair whose line or drug would have no pair left in the other folds stays in for its fold (nan
  here): without it the refit could not score that pair.
  """
  fold = cross_folds(pairs, n_cells, n_drugs, seed, folds, CROSS_BY_KEY)
  out = np.full((len(pairs.y), len(fitted)), np.nan)
  held_in = np.full(len(pairs.y), -1)
  for f in range(folds):
    held = fold == f
    left = lambda idx, n: np.bincount(idx[~held], minlength=n)[idx] > 0
    held &= left(pairs.cell, n_cells) & left(pairs.drug, n_drugs)
    rest = Pairs(*(a[~held] for a in pairs))
    scratch = {name: dict(info[name]) for name in fitted}   # _refit notes into it; not kept
    refit = _refit(dict(fitted), scratch, rest, x, n_cells, n_drugs, seed, annotations)
    out[held] = np.stack([refit[name].predict(pairs.cell[held], pairs.drug[held])
                          for name in fitted], 1)
    held_in[held] = f
  return out, held_in


def _group_means(p: np.ndarray, y: np.ndarray, group: np.ndarray, n_groups: int):
  """Per group: count, and the means of p's columns and of y (0 for an empty group)."""
  n = np.bincount(group, minlength=n_groups).astype(np.float64)
  safe = np.maximum(n, 1)
  mp = np.stack([np.bincount(group, c, n_groups) for c in p.T], 1) / safe[:, None]
  return n, mp, np.bincount(group, y, n_groups) / safe


def _group_moments(p: np.ndarray, y: np.ndarray, group: np.ndarray, n_groups: int):
  """Per group: the Gram matrix of p and its cross products with y, both centred on the group's
  means (`_group_means`)."""
  _, mp, my = _group_means(p, y, group, n_groups)
  pc, yc = p - mp[group], y - my[group]
  gram = np.empty((n_groups, p.shape[1], p.shape[1]))
  for i in range(p.shape[1]):
    for j in range(i + 1):
      gram[:, i, j] = gram[:, j, i] = np.bincount(group, pc[:, i] * pc[:, j], n_groups)
  cross = np.stack([np.bincount(group, c * yc, n_groups) for c in pc.T], 1)
  return gram, cross


def drug_blend(parts: Sequence[Predictor], cross: np.ndarray, pairs: Pairs, n_drugs: int,
               val: Pairs | None, shrinks: Sequence[float] = DRUG_BLEND_SHRINKS,
               fold: np.ndarray | None = None) -> DrugBlend:
  """A blend with each drug's own weights, fitted on cross-fitted predictions (`cross_fitted`).

  Within each drug, least squares of the labels on the parts' cross-fitted predictions (both
  centred per drug and `fold`), ridge-penalised toward w0, the least-squares weights of all drugs
  together: w_g = (G_g + s I)^-1 (c_g + s w0), G_g and c_g the drug's Gram matrix and cross
  products summed over its folds, each centred on its own means. Centring per fold matters: a
  fold's pairs are predicted by fits that learned the drug's level from the other folds, whose mean
  moves against the held-out fold's own, so across folds a part's level anti-correlates with the
  labels; that would reward a part which only knows each drug's level (a per-drug mean, or ridge
  on one-hot line features) with a negative weight that does not carry to new pairs. The
  intercept puts the drug's level at its cross-fitted pairs' mean label; a drug without
  cross-fitted pairs gets w0 and the intercept of all pairs together. Weights may be
  negative (a part subtracted where it helps that drug): they are fitted on hundreds of pairs per
  drug, not on the few validation pairs. s is in the units of G_g (squared ln IC50 summed over the
  drug's pairs); it is the one in `shrinks` that scores best on `val` (a single value given: taken
  as it is, no validation needed). `fold`: each pair's fold (None: one per drug).
  """
  keep = np.all(np.isfinite(cross), 1)
  p, y, drug = cross[keep], np.asarray(pairs.y, np.float64)[keep], pairs.drug[keep]
  if not len(y):
    raise ValueError('drug_blend needs cross-fitted predictions of some pairs')
  f = np.zeros(len(y), np.int64) if fold is None else np.asarray(fold)[keep]
  folds = int(f.max()) + 1
  n, mp, my = _group_means(p, y, drug, n_drugs)
  gram, cr = _group_moments(p, y, drug * folds + f, n_drugs * folds)
  gram = gram.reshape(n_drugs, folds, *gram.shape[1:]).sum(1)
  cr = cr.reshape(n_drugs, folds, -1).sum(1)
  w0 = np.linalg.lstsq(gram.sum(0), cr.sum(0), rcond=None)[0]
  pooled = float(y.mean() - p.mean(0) @ w0)
  eye = np.eye(p.shape[1])
  names = [q.name for q in parts]

  def fit(s: float) -> DrugBlend:
    w = np.linalg.solve(gram + s * eye, (cr + s * w0)[:, :, None])[:, :, 0]
    w[n == 0] = w0
    intercepts = np.where(n > 0, my - np.sum(w * mp, 1), pooled)
    return DrugBlend('drug_blend', tuple(parts), w, intercepts,
                     {'shrink': s, 'shared_weights': dict(zip(names, w0.tolist())),
                      'cross_fitted_pairs': int(keep.sum()), 'folds': folds})

  if len(shrinks) == 1:
    return fit(shrinks[0])
  if val is None:
    raise ValueError('drug_blend chooses its shrinkage on validation pairs: give val or a single '
                     'shrink')
  table, best = {}, None
  for s in shrinks:
    blended = fit(s)
    score = mean_drug_pcc(blended.predict(val.cell, val.drug), val.y, val.drug)
    table[f'shrink={s:g}'] = score
    if best is None or score > best[0]:
      best = (score, blended)
  spread = best[1].weights[n > 0]
  params = dict(best[1].params, val_score=best[0], val=table,
                weights_sd_over_drugs=dict(zip(names, spread.std(0).tolist())))
  return dataclasses.replace(best[1], params=params)


def kind_of(name: str) -> str:
  """The kind of a split name (splits.NAMES) or of a kind itself."""
  kind = SPLIT_KINDS.get(name, name)
  if kind not in KINDS:
    raise ValueError(f'unknown split kind {name!r}; choose one of {", ".join(KINDS)} or a split '
                     f'name ({", ".join(SPLIT_KINDS)})')
  return kind


def fit_classical(split_kind: str, cell: np.ndarray, drug: np.ndarray, y: np.ndarray,
                  train: np.ndarray, val: np.ndarray, pairs: np.ndarray, n_cells: int,
                  n_drugs: int, x: np.ndarray | None = None, seed: int = 0,
                  refit: bool = False, annotations: Mapping[str, np.ndarray] | None = None,
                  prefit: dict[str, Predictor] | None = None,
                  val_predictions: dict[str, np.ndarray] | None = None
                  ) -> tuple[dict[str, np.ndarray], dict]:
  """Fits the classical predictors that apply to the split; predicts the pairs `pairs`.

  Args:
    split_kind: 'seen_pairs', 'unseen_cells', 'unseen_drugs' or a split name (SPLIT_KINDS).
    cell, drug, y: every pair's line index, drug index and ln IC50. Only y[train] and y[val] are
      read: the labels of `pairs` never reach a fit.
    train, val, pairs: pair indices to fit on, to select on, and to predict.
    x: [n_cells, d] cell features standardised on training lines, or None (no feature models).
    seed: initialises matrix factorisation and assigns the inner CV folds.
    annotations: {name: each line's group (-1: none) or value (nan: none)}: cancer type,
      screening medium, doubling time (`splits.line_annotations`), or None: kernel ridge may add a
      kernel on each (`kernel_ridge`). Give a categorical one only where the lines to predict
      share its groups with training lines (not the type when a whole cancer type is held out).
    refit: once every hyperparameter and the blend's weights are chosen, refit each predictor with
      them on the training and validation pairs together (more data; no choice is revisited).
    prefit: predictors already fitted and selected on these same training and validation pairs
      with this seed, by name (e.g. the matrix factorisation that initialised the network's
      identity codes): used as they are, not fitted again.
    val_predictions: if a dict is given, it receives each predictor's predictions of the
      validation pairs by the fit that made the choices (before any refit): a later blend of
      these predictors (`stack`) is fitted on them, not on refit predictions of their own
      training pairs.
  Returns:
    predictions: name -> predictions for `pairs`, for each predictor that applies;
    info: name -> {'applies', 'why', 'params', 'seconds'} for every predictor ('refit' added).
  """
  kind = kind_of(split_kind)
  if x is not None and len(x) != n_cells:
    raise ValueError(f'cell features have {len(x)} rows; expected one per cell line ({n_cells})')
  if not len(val):
    raise ValueError('fit_classical needs validation pairs: they choose matrix factorisation\'s '
                     'rank and L2, kNN\'s k and the blend\'s weights')
  tr = Pairs(cell[train], drug[train], np.asarray(y[train], np.float64))
  va = Pairs(cell[val], drug[val], np.asarray(y[val], np.float64))
  check_pairs(tr, n_cells, n_drugs, 'training pairs')
  check_pairs(va, n_cells, n_drugs, 'validation pairs')
  if kind == 'seen_pairs':
    _check_seen(tr, va, cell[pairs], drug[pairs])
  fitted, info = _select(kind, tr, va, x, n_cells, n_drugs, seed, prefit or {}, annotations)
  if val_predictions is not None:
    val_predictions.update({name: p.predict(va.cell, va.drug) for name, p in fitted.items()})
  if refit:
    both = Pairs(*(np.concatenate([a, b]) for a, b in zip(tr, va)))
    fitted = _refit(fitted, info, both, x, n_cells, n_drugs, seed, annotations)
  return {name: p.predict(cell[pairs], drug[pairs]) for name, p in fitted.items()}, info


def _select(kind: str, tr: Pairs, va: Pairs, x: np.ndarray | None, n_cells: int, n_drugs: int,
            seed: int, prefit: dict[str, Predictor],
            annotations: Mapping[str, np.ndarray] | None = None
            ) -> tuple[dict, dict]:
  """Fits, in order, each predictor that applies (hyperparameters chosen; those in `prefit` are
  taken as they are); info for all of them."""
  fitted, info = {}, {}
  knn = lambda base, axis: knn_residual(fitted[base], fitted['additive'], tr, va, axis)
  steps = {
      'additive': lambda: additive(tr, n_cells, n_drugs),
      'matrix_factorization': lambda: select_matrix_factorization(tr, va, n_cells, n_drugs, seed),
      'item_knn': lambda: knn('matrix_factorization', 'drug'),
      'user_knn': lambda: knn('matrix_factorization', 'cell'),
      'item_knn_additive': lambda: knn('additive', 'drug'),
      'user_knn_additive': lambda: knn('additive', 'cell'),
      'user_knn_after_item_knn': lambda: knn('item_knn', 'cell'),
      'item_knn_after_cascade': lambda: knn('user_knn_after_item_knn', 'drug'),
      'ridge_per_drug': lambda: ridge_per_drug(x, tr, n_drugs, seed),
      'kernel_ridge': lambda: _kernel_ridge_for(fitted.get('additive'), x, tr, n_drugs, seed,
                                                annotations=annotations),
      'blend': lambda: blend(list(fitted.values()), va),
      'drug_blend': lambda: _drug_blend_for(fitted, info, tr, va, x, n_cells, n_drugs, seed,
                                            annotations),
  }
  for name, fit in steps.items():
    why_not = _why_not(name, kind, x is not None, bool(fitted))
    if why_not:
      info[name] = {'applies': False, 'why': why_not}
      continue
    start = time.perf_counter()
    fitted[name] = prefit[name] if name in prefit else fit()
    info[name] = {'applies': True, 'why': _ABOUT[name], 'params': fitted[name].params,
                  'seconds': time.perf_counter() - start, 'prefit': name in prefit}
  return fitted, info


def _refit(fitted: dict, info: dict, both: Pairs, x: np.ndarray | None, n_cells: int,
           n_drugs: int, seed: int,
           annotations: Mapping[str, np.ndarray] | None = None) -> dict:
  """Each fitted predictor again on `both` pairs with the hyperparameters it chose."""
  out = {}
  knn = lambda p: knn_residual(out[p.base.name], out['additive'], both, None, p.axis, (p.k,),
                               (p.power,), (p.shrink,))
  steps = {
      'additive': lambda p: additive(both, n_cells, n_drugs, p.params['l2']),
      'matrix_factorization': lambda p: matrix_factorization(
          both, n_cells, n_drugs, p.params['rank'], p.params['l2'], seed),
      'item_knn': knn, 'user_knn': knn, 'item_knn_additive': knn, 'user_knn_additive': knn,
      'user_knn_after_item_knn': knn, 'item_knn_after_cascade': knn,
      'ridge_per_drug': lambda p: ridge_per_drug(x, both, n_drugs, seed,
                                                 lambdas=(p.params['lambda_rel'],)),
      'kernel_ridge': lambda p: _kernel_ridge_for(
          out.get('additive'), x, both, n_drugs, seed, widths=(p.params['width_rel'],),
          lambdas=(p.params['lambda_rel'],), spectrum=spectrum_of(p.params),
          annotations=annotations,
          annotation_weights={n: (w,) for n, w in annotation_weights_of(p.params).items()}),
      'blend': lambda p: dataclasses.replace(p, parts=tuple(out[q.name] for q in p.parts)),
      'drug_blend': lambda p: _drug_blend_for({q.name: q for q in p.parts}, info, both, None, x,
                                              n_cells, n_drugs, seed, annotations,
                                              (p.params['shrink'],), out),
  }
  for name, p in fitted.items():
    start = time.perf_counter()
    out[name] = steps[name](p)
    info[name]['refit'] = {'params': out[name].params, 'seconds': time.perf_counter() - start,
                           'pairs': len(both.y)}
  return out


def _drug_blend_for(parts: Mapping[str, Predictor], info: Mapping[str, dict], pairs: Pairs,
                    val: Pairs | None, x: np.ndarray | None, n_cells: int, n_drugs: int, seed: int,
                    annotations: Mapping[str, np.ndarray] | None,
                    shrinks: Sequence[float] = DRUG_BLEND_SHRINKS,
                    refit: Mapping[str, Predictor] | None = None) -> DrugBlend:
  """`drug_blend` of the fitted predictors (every one but the blends), cross-fitted on `pairs`
  with the hyperparameters each chose; with `refit`, the blend predicts through those refit
  predictors (same names) instead of `parts`."""
  parts = {name: p for name, p in parts.items() if name not in ('blend', 'drug_blend')}
  cross, fold = cross_fitted(parts, info, pairs, x, n_cells, n_drugs, seed, annotations)
  final = [refit[name] if refit else p for name, p in parts.items()]
  return drug_blend(final, cross, pairs, n_drugs, val, shrinks, fold)


def _why_not(name: str, kind: str, has_features: bool, any_fitted: bool) -> str | None:
  """Why a predictor does not apply to a kind of split (None: it applies)."""
  if name == 'drug_blend' and kind != 'seen_pairs':
    return _WHY_NOT_DRUG_BLEND
  if name in ('blend', 'drug_blend'):
    return None if any_fitted else 'no predictor applies to this split'
  if name in ('ridge_per_drug', 'kernel_ridge'):
    if not has_features:
      return 'no cell features given'
    return _WHY_NOT_PER_DRUG if kind == 'unseen_drugs' else None
  return _WHY_NOT_IDENTITY.get(kind)


def _kernel_ridge_for(base: Predictor | None, x: np.ndarray, train: Pairs, n_drugs: int,
                      seed: int, **grid) -> Predictor:
  """Kernel ridge of ln IC50; given a base (seen lines), of the base's residuals, added back.

  On seen lines the line and drug effects are known, so the features need only explain what they
  leave. (The matrix-factorisation residuals leave them almost nothing: on the legacy split, inner
  CV per-drug PCC 0.09 on those against 0.33 on the additive residuals.)
  """
  if base is None:
    return kernel_ridge(x, train, n_drugs, seed, **grid)
  resid = Pairs(train.cell, train.drug, train.y - base.predict(train.cell, train.drug))
  fit = kernel_ridge(x, resid, n_drugs, seed, **grid)
  return Predictor('kernel_ridge', base.scores + fit.scores,
                   dict(fit.params, target=f'{base.name} residual'))


def _check_seen(train: Pairs, val: Pairs, cell: np.ndarray, drug: np.ndarray) -> None:
  """In a seen-pairs split, every validation and requested pair's line and drug was trained on."""
  for what, c, d in (('validation', val.cell, val.drug), ('requested', cell, drug)):
    for name, idx, seen in (('cell line', c, train.cell), ('drug', d, train.drug)):
      bad = np.flatnonzero(~np.isin(idx, seen))
      if len(bad):
        raise ValueError(f'seen_pairs split: {what} pair {bad[0]} has {name} {idx[bad[0]]} with no '
                         f'training pairs ({len(bad)} such pairs); use kind unseen_cells or '
                         'unseen_drugs')


_WHY_NOT_IDENTITY = {
    'unseen_cells': 'learns a code per cell line: a held-out line has no training pairs, no code',
    'unseen_drugs': 'learns a code per drug: a held-out drug has no training pairs, so no code',
}
_WHY_NOT_PER_DRUG = 'fitted per drug: a held-out drug has no training pairs, so no fit'
_WHY_NOT_DRUG_BLEND = ('fitted on cross-fitted predictions of held-out pairs, seen lines and drugs '
                       'only; held-out lines or drugs would need folds of whole lines or drugs')
_ABOUT = {
    'additive': 'line and drug effects; every line and drug to score has training pairs',
    'matrix_factorization': 'line and drug codes; every line and drug to score has training pairs',
    'item_knn': 'matrix factorisation + its residuals on similar drugs',
    'user_knn': 'matrix factorisation + its residuals on similar lines',
    'item_knn_additive': 'additive effects + their residuals on similar drugs',
    'user_knn_additive': 'additive effects + their residuals on similar lines',
    'user_knn_after_item_knn': 'item-kNN + its residuals on similar lines (a cascade)',
    'item_knn_after_cascade': 'the cascade + its residuals on similar drugs (a third kNN step)',
    'ridge_per_drug': 'per-drug model of the cell features: scores any line with features',
    'kernel_ridge': 'per-drug model of the cell features: scores any line with features',
    'blend': 'weights fitted on the validation pairs',
    'drug_blend': 'each drug its own weights, fitted on cross-fitted training predictions',
}


def stack(predictions: dict[str, np.ndarray], cell: np.ndarray, drug: np.ndarray, y: np.ndarray,
          val: np.ndarray, pairs: np.ndarray, n_cells: int,
          n_drugs: int) -> tuple[np.ndarray, dict]:
  """The `blend` of any predictors given as predictions (name -> [len(val) + len(pairs)], the
  validation pairs first), weights fitted on the validation labels only; predicts `pairs`.

  This is how the network joins the classical predictors: its validation and test predictions
  become one more part. Only y[val] is read.
  """
  both = np.concatenate([val, pairs])
  parts = []
  for name, p in predictions.items():
    scores = np.full((n_cells, n_drugs), np.nan)
    scores[cell[both], drug[both]] = p
    parts.append(Predictor(name, scores, {}))
  fit = blend(parts, Pairs(cell[val], drug[val], y[val]))
  return fit.predict(cell[pairs], drug[pairs]), fit.params
