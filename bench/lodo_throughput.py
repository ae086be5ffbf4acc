"""K leave-one-drug-out folds trained side by side in one program versus one after another.

  python bench/lodo_throughput.py --config=configs/scfoundation.py:lodo [--folds=8] [--epochs=2]
Same folds, same epochs (patience off; with --early_stopping the config's epochs and patience, as
in a sweep), same work per fold, on the real data; only how the folds are mapped differs. Modes:
  stacked     the K folds as one chunk, mapped as the sweep maps them on this platform
              (`lodo.fold_map=auto`: on CPU a loop over the folds inside the step);
  vmap        the K folds as one chunk, vmapped (`lodo.fold_map=vmap`);
  sequential  one fold per chunk, one after another (`lodo.folds_per_chunk=1`: the plain
              single-model step).
Every mode is the sweep's own `lodo.run_chunk` (each fold's kernel-ridge start, validation every
epoch, test and validation predictions), with the sweep's drug kernel computed once, and compiles
in an untimed first pass. Prints JSON: wall time of each mode, the ratios to sequential, folds per
hour, peak RSS, and the projected time of the full 223-fold sweep (at `--projected_epochs` epochs
per fold). Each mode runs in its own process (clean peak RSS).
"""

import json
import pathlib
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py:lodo', 'Config file.')
_FOLDS = flags.DEFINE_integer('folds', 8, 'K: folds to train.')
_EPOCHS = flags.DEFINE_integer('epochs', 2, 'Epochs per fold (every mode).')
_EARLY = flags.DEFINE_bool('early_stopping', False, "Train as the sweep does, each fold until its "
                           "patience runs out (the config's num_epochs and patience), instead of "
                           "--epochs with patience off.")
_PROJECTED_EPOCHS = flags.DEFINE_integer('projected_epochs', 20, 'Epochs per fold assumed for the '
                                         'projection of the full sweep.')
_CHUNK = flags.DEFINE_integer('folds_per_chunk', 0, 'Folds per chunk in the stacked and vmap modes '
                               '(0: all K in one chunk); chunks run one after another.')
MODES = ('stacked', 'vmap', 'sequential')
_MODES = flags.DEFINE_list('modes', list(MODES), 'Modes to measure.')
_REPEATS = flags.DEFINE_integer('repeats', 1, 'Runs of each mode, interleaved (mode by mode, '
                                'round after round); the medians are compared.')
_MODE = flags.DEFINE_enum('mode', None, list(MODES), 'Internal: run one mode.')


def run_mode(config, mode: str, folds: int, epochs: int, chunk: int, early: bool) -> dict:
  """Trains the first `folds` folds in `mode`; returns wall time (after compilation) and RSS."""
  from cdr_jax import data, lodo  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import engine, warm_start  # pylint: disable=g-import-not-at-top
  if not early:
    config.train.num_epochs, config.train.patience = epochs, epochs + 1
  size = 1 if mode == 'sequential' else (chunk or folds)
  if mode == 'vmap':
    config.lodo.fold_map = 'vmap'
  ds = data.load_dataset(config.data)
  kernel = warm_start.drug_kernel(ds, config)   # once per sweep, as `lodo.run_sweep`
  chosen = [lodo.make_fold(ds, d, config.lodo.val_fraction, 0) for d in range(folds)]
  warm = config.copy_and_resolve_references()
  warm.train.num_epochs = 1
  lodo.run_chunk(ds, warm, chosen[:size], drug_kernel=kernel)  # compiles, untimed
  t0 = time.time()
  rows = []
  for k in range(0, folds, size):
    rows += lodo.run_chunk(ds, config, chosen[k:k + size], drug_kernel=kernel)
  return {'mode': mode, 'folds': folds, 'seconds': time.time() - t0,
          'fold_epochs': sum(len(r['curve']) for r in rows), 'folds_per_chunk': size,
          'loop': size > 1 and engine.fold_loop(config),
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv):
  if _MODE.value:
    print(json.dumps(run_mode(_CONFIG.value, _MODE.value, _FOLDS.value, _EPOCHS.value,
                              _CHUNK.value, _EARLY.value)))
    return
  runs = {mode: [] for mode in _MODES.value}
  for _ in range(_REPEATS.value):
    for mode in _MODES.value:
      cmd = [sys.executable, __file__, f'--mode={mode}', f'--folds={_FOLDS.value}',
             f'--epochs={_EPOCHS.value}', f'--folds_per_chunk={_CHUNK.value}',
             f'--early_stopping={_EARLY.value}',
             *[a for a in sys.argv[1:] if a.startswith('--config')]]
      res = subprocess.run(cmd, capture_output=True, text=True)
      if res.returncode:
        raise RuntimeError(f'{mode} run failed:\n{res.stderr[-3000:]}')
      runs[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
      print(json.dumps(runs[mode][-1]), flush=True)
  median = lambda rs: sorted(rs, key=lambda r: r['seconds'])[len(rs) // 2]
  out = {mode: median(rs) for mode, rs in runs.items()}
  del argv
  if 'sequential' not in out:
    return
  k, e = _FOLDS.value, _EPOCHS.value
  seq = out['sequential']['seconds']
  summary = {'benchmark': 'lodo_throughput', 'folds': k, 'repeats': _REPEATS.value,
             'epochs': 'early stopping' if _EARLY.value else e,
             'fold_epochs': {m: r['fold_epochs'] for m, r in out.items()}}
  for mode, res in out.items():
    summary[f'{mode}_s'] = round(res['seconds'], 1)   # the median run
    summary[f'{mode}_all_s'] = [round(r['seconds'], 1) for r in runs[mode]]
  for mode in out:
    if mode != 'sequential':
      summary[f'{mode}_vs_sequential'] = round(seq / out[mode]['seconds'], 2)
  fastest = min(out, key=lambda m: out[m]['seconds'])
  folds_per_hour = 3600 * k / out[fastest]['seconds']   # with early stopping: as in a sweep
  if not _EARLY.value:   # scaled to --projected_epochs per fold
    folds_per_hour *= e / _PROJECTED_EPOCHS.value
    summary['projected_epochs_per_fold'] = _PROJECTED_EPOCHS.value
  summary.update({
      'fastest': fastest, 'folds_per_hour': round(folds_per_hour, 1),
      'projected_full_sweep_hours': round(223 / folds_per_hour, 2),
      **{f'peak_rss_mb_{m}': round(r['peak_rss_mb']) for m, r in out.items()},
      'folds_per_chunk': out.get('stacked', out[fastest])['folds_per_chunk'],
      'target_vs_sequential': 1.3})
  print(json.dumps(summary))


if __name__ == '__main__':
  app.run(main)
