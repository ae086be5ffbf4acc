"""How far can the unseen-drug kernel baseline be pushed? Variants over all 223 LODO folds (JSON).

  CDR_DATA_DIR=../shared/data python bench/lodo_kernel_variants.py --config=configs/baseline.py
Every variant is the sweep's classical baseline (`cdr_jax.eval.lodo_kernel`: naive cell-line mean
plus kernel ridge over the other drugs' z-scored profiles, the ridge chosen per fold by
leave-one-out over the other drugs) with one thing changed:
  kernels: each label-free drug kernel alone, the baseline's weighted sum, the sum plus ChemNet
    (RBF on standardised ChemNet embeddings, when the data root has `drugs/chemnet.npy`), the sum
    normalised to a unit diagonal, and its elementwise square (sharper: near neighbours count more);
  scale: the predicted deviation times beta (per-drug PCC weighs naive against the deviation);
  target expression: plus gamma times the mean standardised expression of the held-out drug's
    annotated target genes (those among the expression genes), a mechanism prior that needs no
    similar drug;
  target genomics (session 23): the per-screen baseline plus a learned prior from the held-out
    drug's target genes (GDSC target names mapped to gene symbols by `TARGET_GENES`): their mean
    standardised expression, and whether a line carries a mutation or a copy-number event naming
    one (GDSC event matrix; a blank event reads as none). Three coefficients, shared by all drugs,
    are fitted per fold by least squares of the other drugs' residuals (own profile minus their
    leave-one-out profile within the fold, fitted without the held-out drug; over each drug's
    spread) on their own features; the held-out drug's prior is scaled by the median spread of
    the other drugs. Also at 2x and 4x the fitted coefficients;
  naive / ridge: the naive mean over the other drugs' z-scored profiles (`naive='zscored'`), one
    ridge per principal component of the deviations (`per_component=True`), both (the baseline
    since session 17: `lodo_kernel.NAIVE`, `PER_COMPONENT`), and neither (the baseline before).
  the network's start: the baseline fitted on each LODO fold's training drugs only (without the
    fold's validation drugs, `lodo.make_fold` with the lodo variant's val_fraction), as every
    fold of a sweep starts (`lodo_kernel.fit_drugs`).
  screens (session 21): the baseline with one profile column per GDSC screen (`pair_screen`: the
    sweep's baseline and start since then), the network's start per screen, and the inner choice
    below between the two; and (session 22) its ablation: screens standardised apart but averaged
    per drug at one ridge (`screens_averaged`), which tells what the per-screen gain comes from.
Inner choice: how those four forms were chosen without any held-out label. In each fold, every
other drug e is scored by leave-one-out over the other drugs (the fold's ridge without e) and
correlated with e's own profile; the form with the highest mean of those per-drug PCCs wins the
fold. (The fold's naive line means include e itself, as they do for every form.)
Each variant is scored on all folds: a diagnostic of what these inputs can give, not a selection
(the sweep keeps the baseline as it is). Seconds per variant.
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags
import numpy as np
import threadpoolctl

from cdr_jax import data
from cdr_jax import lodo
from cdr_jax.data import cells
from cdr_jax.data import dataset
from cdr_jax.data import drugs
from cdr_jax.data import events
from cdr_jax.data import io
from cdr_jax.eval import lodo_kernel as lk

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Data config.')


FORMS = {'neither': ('mean', False), 'naive from z-scored profiles': ('zscored', False),
         'one lambda per component': ('mean', True), 'both': ('zscored', True)}


def fold_loo_profiles(ds, kernel: np.ndarray, naive: str, per_component: bool,
                      pair_screen: np.ndarray | None = None):
  """Per fold d, yields (d, [n] the other drugs, [n, C] their leave-one-out profiles): each other
  drug scored by the fold's ridge (the baseline's form: `naive`, `per_component`) refitted without
  it, leaving with all its screens when `pair_screen` gives one column per screen. Fitted on the
  other drugs' profiles only: no label of d is read."""
  n_cells, n_drugs = len(ds.cell_ids), len(ds.drug_ids)
  column, column_drug = lk.column_drugs(ds.pair_drug, pair_screen, n_drugs)
  ybar = lk.profile_matrix(ds.pair_cell, column, ds.pair_y, n_cells, len(column_drug))
  eigen = lk.KernelEigen(kernel[np.ix_(column_drug, column_drug)])
  lambdas = np.asarray(lk.LAMBDAS)
  for d in range(n_drugs):
    held = np.flatnonzero(column_drug == d)
    groups = np.delete(column_drug, held)
    mean_naive = (lk.naive_profile(ds.pair_cell, ds.pair_drug, ds.pair_y, n_cells, d)
                  if naive == 'mean' else None)
    base, z, unit = lk.fold_targets(np.delete(ybar, held, axis=1), naive, mean_naive)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    scores = u * s
    resid = np.array([lk.loo_residuals(eigen.fold_inverse(held, lam)[0], scores, groups)
                      for lam in lambdas])   # [L, n, r] leave-one-out residuals of the scores
    errors = (resid ** 2).sum(1)   # [L, r]
    pick = errors.argmin(0) if per_component else np.full(len(s), errors.sum(1).argmin())
    loo = base[:, None] + unit * (z - resid[pick, :, np.arange(len(s))].T @ vt).T   # [C, n]
    others, first = np.unique(groups, return_index=True)   # a drug's columns share its prediction
    yield d, others, loo[:, first].T


def inner_pcc(ds, folds) -> np.ndarray:
  """[D] per fold, the mean over the other drugs of the per-drug PCC of their leave-one-out
  profiles (`folds`: what `fold_loo_profiles` yields) against their own profile: reads no held-out
  label."""
  own = lk.profile_matrix(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids),
                          len(ds.drug_ids))
  out = np.zeros(len(ds.drug_ids))
  for d, others, loo in folds:
    r = []
    for e, profile in zip(others, loo):
      obs = own[:, e]
      seen = np.isfinite(obs)
      r.append(np.corrcoef(profile[seen], obs[seen])[0, 1])
    out[d] = np.nanmean(r)
  return out


def start_profiles(ds, kernel: np.ndarray, val_fraction: float, seed: int,
                   pair_screen: np.ndarray | None = None) -> np.ndarray:
  """[D, C] each drug's profile from the baseline fitted on its LODO fold's training drugs (per
  screen with `pair_screen`, as the sweep's start with `data.screens`)."""
  out = np.zeros((len(ds.drug_ids), len(ds.cell_ids)))
  for d in range(len(ds.drug_ids)):
    train = lodo.make_fold(ds, d, val_fraction, seed).train
    screens = None if pair_screen is None else pair_screen[train]
    out[d] = lk.fit_drugs(ds.pair_cell[train], ds.pair_drug[train], ds.pair_y[train],
                          len(ds.cell_ids), kernel,
                          pair_screen=screens).profiles(kernel, [d])[0]
  return out


def screens_averaged(ds, kernel: np.ndarray) -> np.ndarray:
  """[D, C] the per-screen baseline's ablation: each fold standardises the other drugs' screens
  apart (naive, level and spread over the screen columns, as per screen), then averages each
  drug's z-scored columns into one row of the ridge over drugs, every drug at the same ridge.

  One column per screen is the same ridge as that average with lam / n on the diagonal of a drug
  measured in n screens (rows sharing a kernel row); this one keeps lam, so it tells whether the
  separate standardisation or the extra weight of the twice-screened drugs moves the baseline.
  """
  n_cells, n_drugs = len(ds.cell_ids), len(ds.drug_ids)
  column, column_drug = lk.column_drugs(ds.pair_drug, ds.pair_screen, n_drugs)
  ybar = lk.profile_matrix(ds.pair_cell, column, ds.pair_y, n_cells, len(column_drug))
  eigen = lk.KernelEigen(kernel)
  out = np.zeros((n_drugs, n_cells))
  for d in range(n_drugs):
    held = np.flatnonzero(column_drug == d)
    base, z, unit = lk.fold_targets(np.delete(ybar, held, axis=1), lk.NAIVE)
    row = np.searchsorted(np.delete(np.arange(n_drugs), d), np.delete(column_drug, held))
    mean = np.zeros((n_drugs - 1, n_cells))
    np.add.at(mean, row, z)
    mean /= np.bincount(row, minlength=n_drugs - 1)[:, None]
    out[d] = base + unit * eigen.per_component(d, mean, lk.LAMBDAS)[0]
  return out


def standardised_expression(ds, root: pathlib.Path) -> tuple[np.ndarray, dict[str, int]]:
  """[C, G] the dataset's lines' expression (gaps at the gene mean), standardised over them, and
  each gene's column by upper-case symbol."""
  ids, genes, x = io.read_matrix_csv(root / cells.EXPRESSION_FILE, 'expression', 'DepMap_ID')
  x = np.where(np.isnan(x), np.nanmean(x, 0), x)
  row = {c: i for i, c in enumerate(ids)}
  x = cells.standardize(x[[row[c] for c in ds.cell_ids]], np.arange(len(ds.cell_ids)))
  return x, {g.upper(): j for j, g in enumerate(genes)}


def target_expression(ds, root: pathlib.Path) -> tuple[np.ndarray, int]:
  """[D, C] mean standardised expression of each drug's annotated targets (0 where none of its
  targets is an expression gene), and how many drugs have one. Label-free."""
  x, column = standardised_expression(ds, root)
  ann = drugs.read_drug_list_annotations(root)
  out = np.zeros((len(ds.drug_ids), len(ds.cell_ids)))
  for d, cid in enumerate(ds.drug_ids):
    hit = [column[t] for t in ann.targets[cid] if t in column]
    if hit:
      out[d] = x[:, hit].mean(1)
  return out, int((out != 0).any(1).sum())


# GDSC target names -> gene symbols, for names that are not one (label-free: from the names alone).
TARGET_GENES = {
    'MEK1': ('MAP2K1',), 'MEK2': ('MAP2K2',), 'ERK1': ('MAPK3',), 'ERK2': ('MAPK1',),
    'ERK5': ('MAPK7',), 'MTORC1': ('MTOR',), 'MTORC2': ('MTOR',), 'ABL': ('ABL1',),
    'PDGFR': ('PDGFRA', 'PDGFRB'), 'VEGFR': ('KDR', 'FLT1', 'FLT4'), 'VEGFR1': ('FLT1',),
    'VEGFR2': ('KDR',), 'VEGFR3': ('FLT4',), 'PI3K (CLASS 1)': ('PIK3CA', 'PIK3CB', 'PIK3CD'),
    'PI3KALPHA': ('PIK3CA',), 'PI3KBETA': ('PIK3CB',), 'PI3KGAMMA': ('PIK3CG',),
    'PI3KDELTA': ('PIK3CD',), 'IR': ('INSR',), 'TIE2': ('TEK',), 'PDK1 (PDPK1)': ('PDPK1',),
    'BCL-XL': ('BCL2L1',), 'BCL-W': ('BCL2L2',), 'BCL-2': ('BCL2',), 'JNK1': ('MAPK8',),
    'JNK2': ('MAPK9',), 'P38': ('MAPK14',), 'TAK1': ('MAP3K7',), 'IKK2': ('IKBKB',),
    'IKK1': ('CHUK',), 'ALK5': ('TGFBR1',), 'HSP90': ('HSP90AA1', 'HSP90AB1'), 'HER2': ('ERBB2',),
    'FGFR': ('FGFR1', 'FGFR2', 'FGFR3')}


def target_genomics(ds, root: pathlib.Path) -> tuple[np.ndarray, list[int]]:
  """[3, D, C] per drug and line, from the drug's target genes: mean standardised expression, and
  any mutation / any copy-number event naming one (standardised over the lines; lines without an
  events row, and blank events, read as no event); 0 where a drug has no such gene. And how many
  drugs have each. Label-free."""
  n_cells = len(ds.cell_ids)
  x, column = standardised_expression(ds, root)
  ev = events.read_events(root)
  mapping, _ = events.map_to_depmap(ev, root)
  event_row = {mapping[c]: i for i, c in enumerate(ev.cosmic_ids) if c in mapping}
  line_rows = np.array([event_row.get(c, -1) for c in ds.cell_ids])
  ann = drugs.read_drug_list_annotations(root)
  out = np.zeros((3, len(ds.drug_ids), n_cells))
  for d, cid in enumerate(ds.drug_ids):
    genes_d = {g for t in ann.targets[cid] for g in TARGET_GENES.get(t, (t,))}
    hit = [column[g] for g in genes_d if g in column]
    if hit:
      out[0, d] = x[:, hit].mean(1)
    for k, group in ((1, 'mutation'), (2, 'cna')):
      cols = [j for j in ev.group(group) if set(events.event_genes(ev.columns[j])) & genes_d]
      if cols:
        flag = np.nan_to_num(ev.values[:, cols]).max(1)
        f = np.where(line_rows >= 0, flag[line_rows], 0.0)
        if f.std() > 0:
          out[k, d] = (f - f.mean()) / f.std()
  return out, (out != 0).any(2).sum(1).tolist()


def genomics_prior(ds, folds, profiles: np.ndarray,
                   features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[D, C] `profiles` (each drug's held-out per-screen baseline) plus the target-genomics prior,
  and [D, 3] the coefficients of each fold.

  In fold d the coefficients are the least-squares fit, over the other drugs with a feature, of
  their residuals (own profile minus their leave-one-out profile within the fold, `folds` as
  `fold_loo_profiles` yields them for the baseline per screen: fitted without d; over each drug's
  spread) on their own features. d's prior
  is those coefficients times its features, in units of the other drugs' median spread. No label
  of d is read for its row.
  """
  n_drugs = len(ds.drug_ids)
  own = lk.profile_matrix(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids), n_drugs).T
  spread = np.nanstd(own, 1)
  has = (features != 0).any((0, 2))
  out, coefs = profiles.copy(), np.zeros((n_drugs, len(features)))
  for d, others, loo in folds:
    pick = has[others]
    resid = (own[others[pick]] - loo[pick]) / spread[others[pick], None]
    seen = np.isfinite(resid)
    a = np.concatenate([features[:, e, m].T for e, m in zip(others[pick], seen)])
    coefs[d] = np.linalg.lstsq(a, resid[seen], rcond=None)[0]
    out[d] = profiles[d] + np.median(np.delete(spread, d)) * (coefs[d] @ features[:, d])
  return out, coefs


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  root = dataset.resolve_data_root(config.data.root)
  kernels = lk.drug_kernels(ds, root)
  chemnet = lk.chemnet_kernel(ds, config.data, root)
  if chemnet is not None:
    kernels['chemnet'] = chemnet
  base, _ = lk.weighted_kernel(ds, root)
  unit = base / np.sqrt(np.outer(np.diag(base), np.diag(base)))
  variants = {f'{name} alone': k for name, k in kernels.items()}
  variants['baseline (weighted sum)'] = base
  if 'chemnet' in kernels:
    variants['baseline + chemnet'] = base + kernels['chemnet']
  variants['baseline, unit diagonal'] = unit
  variants['baseline, unit diagonal, squared'] = unit ** 2
  options = {name: {} for name in variants}
  options.update({f'baseline, {form}': {'naive': n, 'per_component': c}
                  for form, (n, c) in FORMS.items()})
  out, fits = {}, {}
  with threadpoolctl.threadpool_limits(1):
    for name, opts in options.items():
      fits[name] = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids),
                                        variants.get(name, base)[None], np.ones((1, 1)),
                                        lk.LAMBDAS, **opts)
  res, plain = fits['baseline (weighted sum)'], fits['baseline, neither']
  naive = lk.profile_pccs(plain.naive, ds)
  out['naive'] = lk.pcc_summary(plain.naive, ds, naive)   # the plain cell-line mean (the sweep's)
  out['naive from z-scored profiles'] = lk.pcc_summary(res.naive, ds, naive)
  for name, fit in fits.items():
    out[name] = lk.pcc_summary(fit.profiles, ds, naive)
  for beta in (0.75, 1.25, 1.5):
    out[f'baseline, deviation x {beta:g}'] = lk.pcc_summary(
        res.naive + beta * (res.profiles - res.naive), ds, naive)
  out["the network's start (fitted on the fold's training drugs)"] = lk.pcc_summary(
      start_profiles(ds, base, config.lodo.val_fraction, config.split.seed), ds, naive)
  target, covered = target_expression(ds, root)
  for gamma in (-0.1, -0.2):
    out[f'baseline + {gamma:g} x target expression'] = lk.pcc_summary(
        res.profiles + gamma * target, ds, naive)
  with threadpoolctl.threadpool_limits(1):
    inner = np.stack([inner_pcc(ds, fold_loo_profiles(ds, base, n, c))
                      for n, c in FORMS.values()])   # [4, D]
  won = inner.argmax(0)
  names = list(FORMS)
  chosen = np.stack([fits[f'baseline, {f}'].profiles for f in names])[won, np.arange(len(won))]
  choice = {'inner_mean_pcc': {f: round(float(inner[i].mean()), 4) for i, f in enumerate(names)},
            'folds_won': {f: int((won == i).sum()) for i, f in enumerate(names)},
            'chosen_per_fold': lk.pcc_summary(chosen, ds, naive)}
  # Screens (session 21): the baseline ('both') with one profile column per GDSC screen, and the
  # same inner criterion, a drug leaving with all its screens, against one column per drug.
  screens = {}
  if ds.pair_screen is not None:
    with threadpoolctl.threadpool_limits(1):
      per_screen = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids),
                                        base[None], np.ones((1, 1)), lk.LAMBDAS,
                                        pair_screen=ds.pair_screen)
      # The baseline's leave-one-out per fold, per screen: read by the inner criterion and by
      # the target-genomics prior (about 200 MB, computed once).
      screen_folds = list(fold_loo_profiles(ds, base, lk.NAIVE, lk.PER_COMPONENT, ds.pair_screen))
      inner_screens = inner_pcc(ds, screen_folds)
      averaged = screens_averaged(ds, base)
    start = start_profiles(ds, base, config.lodo.val_fraction, config.split.seed, ds.pair_screen)
    genomics, with_gene = target_genomics(ds, root)
    with threadpoolctl.threadpool_limits(1):
      prior, coefs = genomics_prior(ds, screen_folds, per_screen.profiles, genomics)
    at_scale = {f'x {m:g}': lk.pcc_summary(
        per_screen.profiles + m * (prior - per_screen.profiles), ds, naive) for m in (1, 2, 4)}
    gain = lk.profile_pccs(prior, ds) - lk.profile_pccs(per_screen.profiles, ds)
    screens = {'columns': int(len(lk.column_drugs(ds.pair_drug, ds.pair_screen,
                                                  len(ds.drug_ids))[1])),
               'one column per drug (baseline)': out['baseline, both'],
               'one column per screen': lk.pcc_summary(per_screen.profiles, ds, naive),
               'screens standardised apart, averaged per drug at one ridge':
                   lk.pcc_summary(averaged, ds, naive),
               "the network's start per screen (fold's training drugs)":
                   lk.pcc_summary(start, ds, naive),
               'inner_mean_pcc': {'drug': round(float(inner[3].mean()), 4),
                                  'screen': round(float(inner_screens.mean()), 4)},
               'folds_won_by_screens': int((inner_screens > inner[3]).sum()),
               'per screen + target genomics': {
                   'drugs_with_expression_mutation_cna_feature': with_gene,
                   'coefficients_mean_over_folds': coefs.mean(0).round(4).tolist(),
                   'gain_mean': round(float(np.nanmean(gain)), 4),
                   'gain_standard_error': round(
                       float(np.nanstd(gain) / np.sqrt(np.isfinite(gain).sum())), 4),
                   'drugs_up_down': [int((gain > 1e-9).sum()), int((gain < -1e-9).sum())],
                   **at_scale}}
  print(json.dumps({'drugs': len(ds.drug_ids), 'drugs_with_a_target_gene_in_expression': covered,
                    'chemnet': chemnet is not None, 'variants': out, 'inner_choice': choice,
                    'screens': screens}, indent=1))


if __name__ == '__main__':
  app.run(main)
