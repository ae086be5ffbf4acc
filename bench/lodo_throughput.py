"""K leave-one-drug-out folds trained side by side (vmapped) versus one after another.

  python bench/lodo_throughput.py --config=configs/scfoundation.py:lodo [--folds=8] [--epochs=2]
Same folds, same epochs (patience off), on the real data. Prints JSON: wall time of each mode and
their ratio, folds per hour, peak RSS per fold, and the projected time of the full 223-fold sweep
(at `--projected_epochs` epochs per fold). Each mode runs in its own process (clean peak RSS).
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
_EPOCHS = flags.DEFINE_integer('epochs', 2, 'Epochs per fold (both modes).')
_PROJECTED_EPOCHS = flags.DEFINE_integer('projected_epochs', 20, 'Epochs per fold assumed for the '
                                         'projection of the full sweep.')
_CHUNK = flags.DEFINE_integer('folds_per_chunk', 0, 'Folds vmapped side by side in the vmapped '
                               'mode (0: all K in one chunk); chunks run one after another.')
_MODES = flags.DEFINE_list('modes', ['vmapped', 'sequential'], 'Modes to measure.')
_MODE = flags.DEFINE_enum('mode', None, ['vmapped', 'sequential'], 'Internal: run one mode.')


def run_mode(config, mode: str, folds: int, epochs: int, chunk: int) -> dict:
  """Trains the first `folds` folds in `mode`; returns wall time (after compilation) and RSS.

  vmapped: `lodo.run_chunk` on chunks of `chunk` folds (all K by default). sequential: each fold
  as its own single-model run over that fold's training pairs, validation every epoch (the one loop
  with F = 1, as `launch/train.py` trains), minus checkpoint I/O. Both compile once, untimed.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from cdr_jax import data, experiment, lodo  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import loop  # pylint: disable=g-import-not-at-top
  config.train.num_epochs, config.train.patience = epochs, epochs + 1
  ds = data.load_dataset(config.data)
  chosen = [lodo.make_fold(ds, d, config.lodo.val_fraction, 0) for d in range(folds)]
  size = chunk or folds
  if mode == 'vmapped':
    warm = config.copy_and_resolve_references()
    warm.train.num_epochs = 1
    lodo.run_chunk(ds, warm, chosen[:size])  # compile outside the timing
    t0 = time.time()
    for k in range(0, folds, size):
      lodo.run_chunk(ds, config, chosen[k:k + size])
  else:
    t0 = None
    for k, f in enumerate([chosen[0]] + chosen):  # the first pass compiles
      run = experiment.setup(config, ds, [f.train], f.train)
      rng = jax.device_put(jax.random.key(1), run.engine.replicated)
      schedule = loop.Schedule(1 if k == 0 else epochs, epochs + 1)
      loop.fit(run.step(rng), run.init(), run.stream, run.selector([f.val]), None, schedule)
      if k == 0:
        t0 = time.time()
  return {'mode': mode, 'folds': folds, 'epochs': epochs, 'seconds': time.time() - t0,
          'folds_per_chunk': size if mode == 'vmapped' else 1,
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv):
  if _MODE.value:
    print(json.dumps(run_mode(_CONFIG.value, _MODE.value, _FOLDS.value, _EPOCHS.value,
                              _CHUNK.value)))
    return
  out = {}
  for mode in _MODES.value:
    cmd = [sys.executable, __file__, f'--mode={mode}', f'--folds={_FOLDS.value}',
           f'--epochs={_EPOCHS.value}', f'--folds_per_chunk={_CHUNK.value}',
           *[a for a in sys.argv[1:] if a.startswith('--config')]]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
      raise RuntimeError(f'{mode} run failed:\n{res.stderr[-3000:]}')
    out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(out[mode]), flush=True)
  del argv
  if set(out) != {'vmapped', 'sequential'}:
    return
  k, e = _FOLDS.value, _EPOCHS.value
  vm, sq = out['vmapped']['seconds'], out['sequential']['seconds']
  folds_per_hour = 3600 * k / vm * e / _PROJECTED_EPOCHS.value
  print(json.dumps({
      'benchmark': 'lodo_throughput', 'folds': k, 'epochs': e,
      'vmapped_s': round(vm, 1), 'sequential_s': round(sq, 1), 'speedup': round(sq / vm, 2),
      'folds_per_hour_at_projected_epochs': round(folds_per_hour, 1),
      'projected_epochs_per_fold': _PROJECTED_EPOCHS.value,
      'projected_full_sweep_hours': round(223 / folds_per_hour, 2),
      'peak_rss_mb_vmapped': round(out['vmapped']['peak_rss_mb']),
      'peak_rss_mb_per_fold_vmapped': round(out['vmapped']['peak_rss_mb'] / k),
      'peak_rss_mb_sequential': round(out['sequential']['peak_rss_mb']),
      'folds_per_chunk': out['vmapped']['folds_per_chunk'], 'target_speedup': 3.0}))


if __name__ == '__main__':
  app.run(main)
