"""How far apart must a held-out drug be screened before its batch-mates stop helping? (JSON.)

  CDR_DATA_DIR=../shared/data python bench/lodo_apart.py --config=configs/baseline.py

`lodo.apart` (the `apart` variant: 60 GDSC ids) drops from each LODO fold the drugs GDSC screened
within that many ids of the held-out drug (`lodo_kernel.batch_mates`). This scores the sweep's
classical predictors of the held-out drug, all 223 folds, for several such distances, with no
label of the held-out drug nor of the dropped drugs (each fitted on the rest with
`lodo_kernel.fit_drugs`: per screen, as the sweep's baseline):
  naive: each line's mean ln IC50 over the kept drugs (the sweep's `naive_pcc`);
  kernel: the baseline's drug kernel (the sweep's `kernel_pcc`);
  kernel + screening batch: fitted and scored on the kernel plus `SCREENING_WEIGHT` x the
    screening kernel (the sweep's `kernel_batch_pcc`: what the order of the remaining drugs
    still tells);
  batch explained away: fitted on that sum, the held-out drug scored by the drug kernel alone (a
    new compound has no place in GDSC's order; the other drugs' batch patterns go to the batch
    term);
  control: as many other drugs dropped at random, none of them a batch-mate (where there are
    enough), the naive mean and the kernel refitted: what losing that many drugs costs by itself.
Mean, median and drugs beating the naive mean per predictor and distance. Then forward in time:
each drug with at least `--forward_min` earlier drugs is predicted from the drugs all of whose
screens GDSC ran before its first one (a new compound is screened after the known ones, so its
nearest neighbours in the order are the latest known drugs), by the same predictors, beside the
plain LODO folds of the same drugs. About 8 minutes on this CPU (the last part 1).
"""

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
from cdr_jax.eval import baselines
from cdr_jax.eval import lodo_kernel as lk
from cdr_jax.train import warm_start

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'The dataset.')
_APART = flags.DEFINE_list('apart', ['0', '30', '60', '120', '240'],
                           'Distances in GDSC ids (0: the plain LODO folds).')
_FORWARD_MIN = flags.DEFINE_integer('forward_min', 50, 'Forward in time: the fewest earlier drugs '
                                    'a drug needs to be predicted.')

NAMES = ('naive', 'kernel', 'kernel + screening batch', 'batch explained away', 'control: naive',
         'control: kernel')


def fold_profiles(ds, kernel: np.ndarray, joint: np.ndarray, screens, drug: int,
                  drop: np.ndarray, with_batch: bool) -> dict[str, np.ndarray]:
  """[C] profiles of `drug` from the drugs other than it and `drop` (`NAMES` without the
  control prefix; the batch ones only `with_batch`)."""
  fit = lambda k: lk.fit_without(ds, k, np.r_[drug, drop], screens)
  own = np.flatnonzero(ds.pair_drug == drug)
  naive = np.full(len(ds.cell_ids), np.nan)
  naive[ds.pair_cell[own]] = baselines.naive_cell_mean(ds, drug, own, drop)
  out = {'naive': naive, 'kernel': fit(kernel).profiles(kernel, [drug])[0]}
  if with_batch:
    both = fit(joint)
    out['kernel + screening batch'] = both.profiles(joint, [drug])[0]
    out['batch explained away'] = both.profiles(kernel, [drug])[0]
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  root = dataset.resolve_data_root(config.data.root)
  screens = warm_start.kernel_screens(ds, config.data)
  kernel = lk.weighted_kernel(ds, root)[0]
  joint = kernel + lk.SCREENING_WEIGHT * lk.screening_kernel(ds)
  n_drugs, n_cells = len(ds.drug_ids), len(ds.cell_ids)
  rng = np.random.default_rng(0)
  out = {}
  for apart in (float(a) for a in _APART.value):
    profiles = {n: np.full((n_drugs, n_cells), np.nan) for n in NAMES}
    dropped, controlled = np.zeros(n_drugs, int), np.zeros(n_drugs, bool)
    with threadpoolctl.threadpool_limits(1):
      for d in range(n_drugs):
        mates = lk.batch_mates(ds, d, apart) if apart > 0 else np.zeros(0, np.int64)
        dropped[d] = len(mates)
        for n, p in fold_profiles(ds, kernel, joint, screens, d, mates, True).items():
          profiles[n][d] = p
        others = np.setdiff1d(np.arange(n_drugs), np.r_[d, mates])   # none a batch-mate
        if 0 < len(mates) <= len(others) - 3:
          controlled[d] = True
          randomly = rng.choice(others, len(mates), replace=False)
          for n, p in fold_profiles(ds, kernel, joint, screens, d, randomly, False).items():
            profiles[f'control: {n}'][d] = p
    naive = lk.profile_pccs(profiles['naive'], ds)
    row = {'drugs_dropped_per_fold_mean': round(float(dropped.mean()), 1),
           'folds_with_a_control': int(controlled.sum())}
    for n, p in profiles.items():
      if n.startswith('control') and not controlled.any():
        continue
      ref = lk.profile_pccs(profiles['control: naive'], ds) if n.startswith('control') else naive
      rows = controlled if n.startswith('control') else np.ones(n_drugs, bool)
      p = np.where(rows[:, None], p, np.nan)
      row[n] = lk.pcc_summary(p, ds, ref)
      if n.startswith('control'):   # the same folds without the control, for comparison
        plain = np.where(rows[:, None], profiles[n.split(': ')[1]], np.nan)
        row[n + ' (its folds, batch-mates dropped)'] = lk.pcc_summary(plain, ds, naive)
    out[f'{apart:g}'] = row
    print(f'apart {apart:g}: ' + json.dumps({k: v.get('mean', v) if isinstance(v, dict) else v
                                             for k, v in row.items()}), file=sys.stderr)
  print(json.dumps({'drugs': n_drugs, 'screening_weight': lk.SCREENING_WEIGHT,
                    'screening_width': lk.SCREENING_WIDTH, 'apart': out,
                    'forward_in_time': forward(ds, kernel, joint, screens)}, indent=1))


def forward(ds, kernel: np.ndarray, joint: np.ndarray, screens) -> dict:
  """Each drug with at least `--forward_min` earlier drugs, predicted from the drugs whose screens
  all precede its first screen (`fold_profiles`), and from all other drugs (the plain fold)."""
  order = lk.screening_order(ds)
  _, _, screen_drug = ds.drug_columns()
  n_drugs, n_cells = len(ds.drug_ids), len(ds.cell_ids)
  first = np.array([order[screen_drug == d].min() for d in range(n_drugs)])
  last = np.array([order[screen_drug == d].max() for d in range(n_drugs)])
  names = ('naive', 'kernel', 'kernel + screening batch', 'batch explained away')
  earlier_p = {n: np.full((n_drugs, n_cells), np.nan) for n in names}
  plain_p = {n: np.full((n_drugs, n_cells), np.nan) for n in names}
  counts = []
  with threadpoolctl.threadpool_limits(1):
    for d in range(n_drugs):
      earlier = last < first[d]
      if earlier.sum() < _FORWARD_MIN.value:
        continue
      counts.append(int(earlier.sum()))
      later = np.setdiff1d(np.flatnonzero(~earlier), [d])
      for target, drop in ((earlier_p, later), (plain_p, np.zeros(0, np.int64))):
        for n, p in fold_profiles(ds, kernel, joint, screens, d, drop, True).items():
          target[n][d] = p
  sets = (('from earlier drugs', earlier_p), ('plain folds, same drugs', plain_p))
  naive = {k: lk.profile_pccs(p['naive'], ds) for k, p in sets}
  return {'drugs_predicted': len(counts), 'earlier_drugs_mean': round(float(np.mean(counts)), 1),
          **{f'{k}: {n}': lk.pcc_summary(p[n], ds, naive[k]) for k, p in sets for n in names}}


if __name__ == '__main__':
  app.run(main)
