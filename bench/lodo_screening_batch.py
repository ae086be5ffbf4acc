"""How much of a held-out drug's profile is its GDSC screening batch? All 223 LODO folds (JSON).

  CDR_DATA_DIR=../shared/data python bench/lodo_screening_batch.py --config=configs/baseline.py

GDSC numbered its drugs as it screened them, so two drug ids close together are two drugs screened
close together in time. This measures what that order tells about a drug's profile, with no label
of the held-out drug (the screening order is label-free; `lodo_kernel.screening_kernel`):
  behaviour similarity: over all pairs of drugs, the correlation of their z-scored deviation
    profiles (from the naive line means of all drugs' z-scored profiles, as kernel ridge fits
    them) with each label-free kernel, and with the screening order once the baseline's weighted
    kernel is regressed out (what it adds);
  twice-screened drugs: GDSC screened 15 drugs under two ids; per screen, the correlation of its
    deviations with the same drug's other screen, and with the other drug nearest in the order;
    and over every screen, the other drug nearest in the order against the other drug the
    baseline kernel rates most similar;
  the oracle's neighbour: for each drug, the other drug whose deviations correlate best (what the
    0.680 oracle of `bench/lodo_ceiling.py` uses): how many are within `--width` ids of it,
    against the share of all other drugs that are (a drug is within the width of another when
    one of its screens is);
  kernel ridge (the sweep's baseline: per screen, naive from z-scored profiles, one ridge per
    component): the screening order alone; the baseline kernel plus `SCREENING_WEIGHT` x the
    screening kernel (`data.screening_batch`), per screen and per drug; and the per-fold choice of
    width and weight from a grid by leave-one-out over the other drugs (the fixed pair's origin);
  without batch-mates (a new drug screened apart from every known one): each fold also drops
    every drug with a screen within `--apart` widths of one of the held-out drug's screens, and
    fits on the rest (`lodo_kernel.fit_drugs`: the same naive, ridges and per-screen columns):
    the naive line means alone, the baseline's kernel, and the kernel fitted beside the
    screening kernel but scoring the held-out drug by the drug kernel alone (the batch explained
    away); against the control that drops as many other drugs at random, none of them a
    batch-mate. What the drug descriptions give a drug whose batch-mates are unknown.
The similarity figures read every drug's labels: they describe the data, they select nothing.
About 7 minutes on this CPU.
"""

import collections
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags
import numpy as np
import threadpoolctl

from cdr_jax import data
from cdr_jax.data import dataset
from cdr_jax.eval import lodo_kernel as lk

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'The dataset.')
_WIDTH = flags.DEFINE_float('width', lk.SCREENING_WIDTH, 'Screening-kernel width (GDSC ids).')
_APART = flags.DEFINE_float('apart', 2.0, 'Without batch-mates: drop the drugs screened within '
                            'this many widths of the held-out drug (2: its kernel to them is '
                            'above exp(-2)).')
WIDTHS = (5.0, 10.0, 20.0, 30.0, 50.0)
WEIGHTS = (1.0, 2.0, 3.0, 4.0, 6.0)


def deviations(ds, columns: np.ndarray, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
  """[n, C] each column's z-scored deviations from all columns' naive (`fold_targets`' form) and
  [n, C] where it was measured."""
  ybar = lk.profile_matrix(ds.pair_cell, columns, ds.pair_y, len(ds.cell_ids), n_columns)
  std = lk.standardise_profiles(ybar)
  return lk.zscored_deviations(std.columns, std.line_z)[0], np.isfinite(ybar).T


def corr_on_shared(z: np.ndarray, seen: np.ndarray, a: int, b: int) -> float:
  """Correlation of rows a and b of `z` over the lines both were measured on."""
  both = seen[a] & seen[b]
  return float(np.corrcoef(z[a, both], z[b, both])[0, 1])


def without_batch_mates(ds, kernel: np.ndarray, batch: np.ndarray, apart: float
                        ) -> dict[str, np.ndarray]:
  """Per fold, the held-out drug's profile ([D, C] each) from the drugs screened more than `apart`
  ids away from all its screens (`fit_drugs`, per screen): 'naive' (those drugs' z-scored line
  means, the kernel's naive),
  'kernel' (`kernel` ridge), 'kernel, batch explained away' (fitted on `kernel` +
  SCREENING_WEIGHT x `batch`, the held-out drug scored by `kernel` alone: the other drugs' batch
  patterns go to the batch term, not to the drug kernel); and the control, as many drugs dropped
  at random among those that are not batch-mates: 'random drop, naive' and 'random drop,
  kernel'. Also [D] 'dropped'."""
  n_drugs, n_cells = len(ds.drug_ids), len(ds.cell_ids)
  rng = np.random.default_rng(0)
  names = ('naive', 'kernel', 'kernel, batch explained away', 'random drop, naive',
           'random drop, kernel')
  out = {n: np.zeros((n_drugs, n_cells)) for n in names}
  out['dropped'] = np.zeros(n_drugs, int)
  joint = kernel + lk.SCREENING_WEIGHT * batch
  for d in range(n_drugs):
    mates = lk.batch_mates(ds, d, apart)
    out['dropped'][d] = len(mates)
    others = np.setdiff1d(np.arange(n_drugs), np.r_[d, mates])   # none of them a batch-mate
    randomly = rng.choice(others, min(len(mates), len(others)), replace=False)
    for prefix, drop in (('', mates), ('random drop, ', randomly)):
      fit = lambda k: lk.fit_without(ds, k, np.r_[d, drop], ds.pair_screen)
      plain = fit(kernel)
      out[f'{prefix}naive'][d] = plain.naive
      out[f'{prefix}kernel'][d] = plain.profiles(kernel, [d])[0]
      if not prefix:
        out['kernel, batch explained away'][d] = fit(joint).profiles(kernel, [d])[0]
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  root = dataset.resolve_data_root(config.data.root)
  n_drugs, n_cells = len(ds.drug_ids), len(ds.cell_ids)
  base = lk.weighted_kernel(ds, root)[0]
  batch = lk.screening_kernel(ds, _WIDTH.value)
  kernels = dict(lk.drug_kernels(ds, root), **{'baseline (weighted sum)': base,
                                               'screening order': batch})
  # Behaviour similarity over all pairs of drugs.
  z, _ = deviations(ds, ds.pair_drug, n_drugs)
  unit = lk.unit_rows(z)
  iu = np.triu_indices(n_drugs, 1)
  similarity = (unit @ unit.T)[iu]
  x = np.stack([np.ones(len(similarity)), base[iu]], 1)
  beyond = similarity - x @ np.linalg.lstsq(x, similarity, rcond=None)[0]
  behaviour = {'correlation_with_similarity': {
      n: round(float(np.corrcoef(k[iu], similarity)[0, 1]), 4) for n, k in kernels.items()},
               'screening_order_beyond_the_baseline_kernel':
                   round(float(np.corrcoef(batch[iu], beyond)[0, 1]), 4)}
  # Screens: the same drug in another screen against the nearest other drug in the order.
  _, n_screens, screen_drug = ds.drug_columns()
  order = lk.screening_order(ds)
  zs, seen = deviations(ds, ds.pair_screen, n_screens)
  nearest = lambda s, pool: pool[np.argmin(np.abs(order[pool] - order[s]))]
  same, near, near_all, kernel_best = [], [], [], []
  for s in range(n_screens):
    others = np.flatnonzero(screen_drug != screen_drug[s])
    near_all.append(corr_on_shared(zs, seen, s, nearest(s, others)))
    best = others[np.argmax(base[screen_drug[s], screen_drug[others]])]
    kernel_best.append(corr_on_shared(zs, seen, s, best))
    twin = np.flatnonzero((screen_drug == screen_drug[s]) & (np.arange(n_screens) != s))
    if len(twin):
      same.append(corr_on_shared(zs, seen, s, twin[0]))
      near.append(near_all[-1])
  screens = {'screens_of_twice_screened_drugs': len(same),
             'their_other_screen_same_drug': round(float(np.mean(same)), 4),
             'the_other_drug_nearest_in_the_order': round(float(np.mean(near)), 4),
             'every_screen': {'the_other_drug_nearest_in_the_order':
                                  round(float(np.mean(near_all)), 4),
                              'the_other_drug_the_baseline_kernel_rates_closest':
                                  round(float(np.mean(kernel_best)), 4)}}
  # The oracle's neighbour: within the width, against all other drugs.
  full = unit @ unit.T
  np.fill_diagonal(full, -np.inf)
  # Within one width: some screen of one drug within `--width` ids of some screen of the other.
  gap = np.abs(order[:, None] - order[None, :])
  close = np.zeros((n_drugs, n_drugs), bool)
  for a in range(n_drugs):
    near = screen_drug[(gap[screen_drug == a] <= _WIDTH.value).any(0)]
    close[a, near] = True
  np.fill_diagonal(close, False)
  oracle = {'drugs_whose_best_neighbour_is_within_one_width':
                int(close[np.arange(n_drugs), full.argmax(1)].sum()),
            'share_of_all_other_drugs_within_one_width':
                round(float(close.sum() / (n_drugs * (n_drugs - 1))), 4)}
  # Kernel ridge, every fold.
  plain = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, n_cells, base[None],
                               np.ones((1, 1)), lk.LAMBDAS, pair_screen=ds.pair_screen)
  naive = lk.profile_pccs(plain.naive, ds)
  widths = np.stack([lk.screening_kernel(ds, w) for w in WIDTHS])
  grid = np.array([np.r_[1.0, w * (np.arange(len(WIDTHS)) == i)]
                   for i in range(len(WIDTHS)) for w in WEIGHTS])
  fits = {}
  with threadpoolctl.threadpool_limits(1):
    for name, kernel, screens_on in (
        ('screening order alone', batch + 1e-9 * np.eye(n_drugs), True),
        ('baseline + screening batch (per screen; data.screening_batch)',
         base + lk.SCREENING_WEIGHT * batch, True),
        ('baseline + screening batch (per drug)', base + lk.SCREENING_WEIGHT * batch, False)):
      fits[name] = lk.lodo_kernel_ridge(
          ds.pair_cell, ds.pair_drug, ds.pair_y, n_cells, kernel[None], np.ones((1, 1)),
          lk.LAMBDAS, pair_screen=ds.pair_screen if screens_on else None)
    chosen = lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y, n_cells,
                                  np.concatenate([base[None], widths]), grid, lk.LAMBDAS,
                                  pair_screen=ds.pair_screen)
    apart = without_batch_mates(ds, base, batch, _APART.value * _WIDTH.value)
  dropped = apart.pop('dropped')
  explained = (lk.profile_pccs(apart['kernel, batch explained away'], ds)
               - lk.profile_pccs(apart['kernel'], ds))
  mates = {'apart_ids': _APART.value * _WIDTH.value,
           'drugs_dropped_per_fold_mean': round(float(dropped.mean()), 1),
           **{n: lk.pcc_summary(p, ds, naive) for n, p in apart.items()},
           'batch_explained_away_minus_kernel': {
               'mean': round(float(np.nanmean(explained)), 4),
               'standard_error': round(float(np.nanstd(explained) / np.sqrt(n_drugs)), 4),
               'drugs_up_down': [int((explained > 1e-9).sum()), int((explained < -1e-9).sum())]}}
  picks = collections.Counter(
      f'width {WIDTHS[int(np.argmax(w[1:]))]:g}, weight {w[1:].max():g}' for w in chosen.weights)
  ridge = {"naive (z-scored line means, the kernel's)": {'mean': round(float(np.nanmean(naive)),
                                                                     4)},
           'baseline (per screen, the sweep\'s)': lk.pcc_summary(plain.profiles, ds, naive),
           **{n: lk.pcc_summary(f.profiles, ds, naive) for n, f in fits.items()},
           'width and weight chosen per fold': dict(lk.pcc_summary(chosen.profiles, ds, naive),
                                                    choices=dict(picks.most_common()))}
  print(json.dumps({'drugs': n_drugs, 'screens': n_screens, 'width': _WIDTH.value,
                    'weight': lk.SCREENING_WEIGHT, 'behaviour_similarity': behaviour,
                    'screens_compared': screens, 'oracle_neighbour': oracle,
                    'kernel_ridge': ridge, 'without_batch_mates': mates}, indent=1))


if __name__ == '__main__':
  app.run(main)
