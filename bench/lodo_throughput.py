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
_MODE = flags.DEFINE_enum('mode', None, ['vmapped', 'sequential'], 'Internal: run one mode.')


def run_mode(config, mode: str, folds: int, epochs: int) -> dict:
  """Trains the first `folds` folds in `mode`; returns wall time (after compilation) and RSS.

  vmapped: one `lodo.run_chunk` of all folds. sequential: each fold as its own single-model run
  (the plain `train.Trainer` step over that fold's training pairs, validation every epoch), i.e.
  how `launch/train.py` would train it, minus checkpoint I/O.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cdr_jax import data, lodo, sharding, splits, train  # pylint: disable=g-import-not-at-top
  config.train.num_epochs, config.train.patience = epochs, epochs + 1
  ds = data.load_dataset(config.data)
  chosen = [lodo.make_fold(ds, d, config.lodo.val_fraction, 0) for d in range(folds)]
  if mode == 'vmapped':
    prep = train.prepare(config, ds, splits.Split('lodo', np.arange(ds.num_pairs),
                                                  np.zeros(0, int), np.zeros(0, int)))
    warm = config.copy_and_resolve_references()
    warm.train.num_epochs = 1
    lodo.run_chunk(prep, warm, chosen)  # compile outside the timing
    t0 = time.time()
    lodo.run_chunk(prep, config, chosen)
  else:
    mesh = sharding.make_mesh()
    preps = [train.prepare(config, ds, splits.Split('fold', f.train, f.val, f.test))
             for f in chosen]
    trainer = train.Trainer(preps[0], config, mesh)  # one compilation serves every fold
    t0 = None
    for k, prep in enumerate([preps[0]] + preps):  # the first pass compiles
      trainer.prep, trainer.static = prep, sharding.put(prep.static, trainer.rep)
      state = jax_put(train.init_state(trainer.prep, config.train.seed), trainer)
      rng = jax_put(__import__('jax').random.key(1), trainer)
      for epoch in range(1 if k == 0 else epochs):
        state, _ = train.run_epoch(trainer, state, rng, epoch)
        train.validation_metrics(trainer, state, trainer.prep.split.val)
      if k == 0:
        t0 = time.time()
  return {'mode': mode, 'folds': folds, 'epochs': epochs, 'seconds': time.time() - t0,
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def jax_put(tree, trainer):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.device_put(tree, trainer.rep)


def main(argv):
  if _MODE.value:
    print(json.dumps(run_mode(_CONFIG.value, _MODE.value, _FOLDS.value, _EPOCHS.value)))
    return
  out = {}
  for mode in ('vmapped', 'sequential'):
    cmd = [sys.executable, __file__, f'--mode={mode}', f'--folds={_FOLDS.value}',
           f'--epochs={_EPOCHS.value}', *[a for a in sys.argv[1:] if a.startswith('--config')]]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
      raise RuntimeError(f'{mode} run failed:\n{res.stderr[-3000:]}')
    out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(out[mode]), flush=True)
  del argv
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
      'peak_rss_mb_sequential': round(out['sequential']['peak_rss_mb']), 'target_speedup': 3.0}))


if __name__ == '__main__':
  app.run(main)
