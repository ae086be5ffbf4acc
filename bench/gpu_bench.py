"""The accelerator benchmark behind bench/gpu.sh: training, evaluation and LODO sweep throughput.

  python bench/gpu_bench.py [--cpu]
Real data (scFoundation config, legacy split for training). Prints one JSON line per measurement and
a final summary: train pairs/s at batch 2,048 / 16,384 / full, eval pairs/s, and the LODO sweep's
folds/hour at K folds side by side (2 epochs each, compilation untimed), with the projected minutes
of the full 223-fold sweep at `--projected_epochs` epochs per fold. `--cpu` measures the same on the
host CPU with fewer folds (K = 1, 8) so the script is known to work without an accelerator.
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

_CPU = flags.DEFINE_bool('cpu', False, 'Measure on the CPU, with K = 1, 8 only.')
_FOLDS = flags.DEFINE_list('folds', ['1', '8', '32', '64', '223'], 'K values of the LODO sweep.')
_PROJECTED_EPOCHS = flags.DEFINE_integer('projected_epochs', 20, 'Epochs per fold assumed for the '
                                         'projected full sweep.')


def timed_epochs(run, epochs: int) -> list[float]:
  """Seconds of each epoch of training (no selection), the first including compilation."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import loop  # pylint: disable=g-import-not-at-top
  _, progress = loop.fit(run.step(run.engine.key(0)), run.init(), run.stream,
                         lambda s: (np.zeros(len(run.host.y_mean)), [{}] * len(run.host.y_mean)),
                         None, loop.Schedule(epochs, epochs + 1))
  return [row['seconds'] for row in progress.history[0]]


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cdr_jax import data, experiment, lodo  # pylint: disable=g-import-not-at-top
  from cdr_jax.data import splits  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import warm_start  # pylint: disable=g-import-not-at-top
  from configs import scfoundation  # pylint: disable=g-import-not-at-top
  t_start = time.time()
  out = {'benchmark': 'gpu', 'backend': jax.default_backend(),
         'devices': [str(d) for d in jax.devices()]}
  config = scfoundation.get_config()
  ds = data.load_dataset(config.data)
  split = splits.make_split(ds, config.split)
  train = {}
  for size in (2048, 16384, 0):
    c = config.copy_and_resolve_references()
    c.train.batch_size = size
    run = experiment.setup(c, ds, [split.train], split.train)
    seconds = timed_epochs(run, 3)
    train[str(size or 'full')] = round(len(split.train) / min(seconds[1:]))
    print(json.dumps({'train_batch': size or 'full', 'epoch_s': seconds}), flush=True)
  out['train_pairs_per_s'] = train
  pairs = np.arange(ds.num_pairs)
  states = run.init()
  run.predict(states, [pairs[:100]])
  t0 = time.time()
  run.predict(states, [pairs])
  out['eval_pairs_per_s'] = round(len(pairs) / (time.time() - t0))
  lodo_config = scfoundation.get_config('lodo')
  lodo_config.train.num_epochs, lodo_config.train.patience = 2, 3
  ks = [1, 8] if _CPU.value else [int(k) for k in _FOLDS.value]
  folds = [lodo.make_fold(ds, d, lodo_config.lodo.val_fraction, 0) for d in range(max(ks))]
  kernel = warm_start.drug_kernel(ds, lodo_config)   # once per sweep, as `lodo.run_sweep`
  sweep = {}
  for k in ks:
    warm = lodo_config.copy_and_resolve_references()
    warm.train.num_epochs = 1
    lodo.run_chunk(ds, warm, folds[:k], drug_kernel=kernel)   # compiles (same shapes)
    t0 = time.time()
    lodo.run_chunk(ds, lodo_config, folds[:k], drug_kernel=kernel)
    seconds = time.time() - t0
    per_hour = 3600 * k / seconds * 2 / _PROJECTED_EPOCHS.value
    sweep[str(k)] = {'seconds_2_epochs': round(seconds, 1), 'folds_per_hour': round(per_hour, 1),
                     'projected_full_sweep_min': round(60 * 223 / per_hour, 1)}
    print(json.dumps({'lodo_folds': k, **sweep[str(k)]}), flush=True)
  out['lodo'] = sweep
  out['projected_full_sweep_min_best'] = min(v['projected_full_sweep_min'] for v in sweep.values())
  out['projected_epochs_per_fold'] = _PROJECTED_EPOCHS.value
  out['total_s'] = round(time.time() - t_start, 1)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
