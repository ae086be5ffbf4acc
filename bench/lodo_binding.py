"""Do measured binding panels place a new drug better? The unseen-drug kernel baseline with the
kinases each drug binds (JSON).

  CDR_DATA_DIR=<root with binding/> python bench/lodo_binding.py --config=configs/baseline.py
(`python launch/fetch_data.py --dest <root> --only binding/` puts the two public kinase panels,
Davis et al. 2011 and KIBA, under the root; `cdr_jax.data.binding`.) The sweep's classical
baseline (`cdr_jax.eval.lodo_kernel`, per screen, every one of the 223 LODO folds) beside the
same baseline plus w x the Tanimoto kernel of the kinases two drugs bind, for each panel alone
and both, at w = 0.5, 1, 2, 4; and w chosen in each fold by leave-one-out over the other drugs
from 0 (none), 0.5, 1, 2, 4 (`lodo_kernel_ridge`'s weight grid: no held-out label). Scored over
all drugs, over the drugs in a panel and over the rest (whose kernel rows do not change: only
the fit of the drugs in a panel does), with the paired gain over the baseline and its standard error; "beating
naive" counts drugs above the sweep's naive mean (`naive_pcc`). Then the
same two kernels on the honest benchmark, each fold without the held-out drug's screening
batch-mates (`--apart` GDSC ids, `lodo.apart`). About 5 minutes on this CPU.
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
from cdr_jax.data import binding
from cdr_jax.data import dataset
from cdr_jax.eval import baselines
from cdr_jax.eval import lodo_kernel as lk
from cdr_jax.train import warm_start

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'The dataset.')
_APART = flags.DEFINE_float('apart', 60.0, 'The honest benchmark: drop the held-out drug\'s '
                            'batch-mates within this many GDSC ids (0: skip it).')

WEIGHTS = (0.5, 1.0, 2.0, 4.0)


def naive_profiles(ds, excluded=None) -> np.ndarray:
  """[D, C] the sweep's naive predictor of each held-out drug on its lines (nan elsewhere): each
  line's mean ln IC50 over the other drugs, without `excluded[d]` too where given."""
  out = np.full((len(ds.drug_ids), len(ds.cell_ids)), np.nan)
  for d in range(len(ds.drug_ids)):
    own = np.flatnonzero(ds.pair_drug == d)
    out[d, ds.pair_cell[own]] = baselines.naive_cell_mean(
        ds, d, own, None if excluded is None else excluded[d])
  return out


def gain(r: np.ndarray, ref: np.ndarray, rows: np.ndarray) -> dict:
  """Mean paired gain of per-drug PCCs `r` over `ref` on `rows`, its standard error, ups / downs."""
  d = (r - ref)[rows]
  return {'mean': round(float(d.mean()), 4),
          'se': round(float(d.std(ddof=1) / np.sqrt(len(d))), 4),
          'drugs_up': int((d > 1e-9).sum()), 'drugs_down': int((d < -1e-9).sum())}


def scored(r: np.ndarray, ref: np.ndarray, naive: np.ndarray, panels: np.ndarray) -> dict:
  """What one predictor's per-drug PCCs `r` give, beside the baseline's `ref`."""
  return {'mean': round(float(r.mean()), 4), 'median': round(float(np.median(r)), 4),
          'drugs_beating_naive': int((r > naive).sum()),
          'in_a_panel': round(float(r[panels].mean()), 4),
          'in_no_panel': round(float(r[~panels].mean()), 4),
          'gain': gain(r, ref, np.ones(len(r), bool)), 'gain_in_a_panel': gain(r, ref, panels)}


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  root = dataset.resolve_data_root(config.data.root)
  screens = warm_start.kernel_screens(ds, config.data)
  smiles = dict(zip(ds.drug_ids, ds.drug_smiles))
  info = binding.drug_binding(root, list(ds.drug_ids), smiles)
  panels = info.in_any_panel()
  base = lk.weighted_kernel(ds, root)[0]
  kernels = {name: lk.tanimoto_kernel(b) for name, b in info.binds.items()}
  kernels['both'] = sum(kernels[n] for n in info.binds)
  fit = lambda k, grid: lk.lodo_kernel_ridge(ds.pair_cell, ds.pair_drug, ds.pair_y,
                                             len(ds.cell_ids), k, grid, lk.LAMBDAS,
                                             pair_screen=screens)
  with threadpoolctl.threadpool_limits(1):
    res = fit(base[None], np.ones((1, 1)))
    ref = lk.profile_pccs(res.profiles, ds)
    naive = lk.profile_pccs(naive_profiles(ds), ds)   # the sweep's naive_pcc
    out = {'naive': round(float(naive.mean()), 4), 'baseline': scored(ref, ref, naive, panels)}
    for name, k in kernels.items():
      for w in WEIGHTS:
        r = lk.profile_pccs(fit((base + w * k)[None], np.ones((1, 1))).profiles, ds)
        out[f'+ {w:g} x {name}'] = scored(r, ref, naive, panels)
        print(f'+ {w:g} x {name}: {out[f"+ {w:g} x {name}"]["mean"]}', file=sys.stderr)
    chosen = fit(np.stack([base, kernels['both']]),
                 np.array([[1.0, 0.0]] + [[1.0, w] for w in WEIGHTS]))
    r = lk.profile_pccs(chosen.profiles, ds)
    w, count = np.unique(chosen.weights[:, 1], return_counts=True)
    out['+ w x both, w per fold'] = {**scored(r, ref, naive, panels),
                                     'w_chosen': {f'{a:g}': int(c) for a, c in zip(w, count)}}
    apart = {}
    if _APART.value > 0:
      sweep = base + lk.BINDING_WEIGHT * kernels['both']
      prof = {'baseline': np.zeros_like(res.profiles), 'with binding': np.zeros_like(res.profiles)}
      mates = [lk.batch_mates(ds, d, _APART.value) for d in range(len(ds.drug_ids))]
      apart_naive = naive_profiles(ds, mates)   # the sweep's naive_pcc of a fold apart
      for d in range(len(ds.drug_ids)):
        for name, k in (('baseline', base), ('with binding', sweep)):
          prof[name][d] = lk.fit_without(ds, k, np.r_[d, mates[d]], screens).profiles(k, [d])[0]
      r0 = lk.profile_pccs(prof['baseline'], ds)
      r1 = lk.profile_pccs(prof['with binding'], ds)
      naive_apart = lk.profile_pccs(apart_naive, ds)
      apart = {'apart_ids': _APART.value, 'binding_weight': lk.BINDING_WEIGHT,
               'naive': round(float(naive_apart.mean()), 4),
               'baseline': scored(r0, r0, naive_apart, panels),
               'with binding': scored(r1, r0, naive_apart, panels)}
  print(json.dumps({'drugs': len(ds.drug_ids), 'panels': info.summary(),
                    'drugs_in_a_panel': int(panels.sum()),
                    'thresholds': {s.name: s.threshold for s in binding.PANELS},
                    'binding_weight_in_the_sweep': lk.BINDING_WEIGHT, 'plain_folds': out,
                    'apart': apart}, indent=1))


if __name__ == '__main__':
  app.run(main)
