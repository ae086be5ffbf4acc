"""Training and evaluation throughput on the full real dataset, with 1 and 8 (simulated) devices.

  python bench/train_throughput.py --config=configs/scfoundation.py [--devices=1,8] [--epochs=2]
Prints one JSON object per device count and a final JSON summary: training pairs/s (steady state,
after compilation), evaluation pairs/s, epoch wall time, compile time, peak RSS, and the speed-up
over the original DeepCDR (315-399 training pairs/s on this kind of machine, docs/DEEPCDR.md §8).
Each device count runs in its own process (XLA_FLAGS must be set before JAX starts).
"""

import json
import os
import pathlib
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py', 'Config file.')
_DEVICES = flags.DEFINE_string('devices', '1,8', 'Comma-separated device counts to measure.')
_EPOCHS = flags.DEFINE_integer('epochs', 2, 'Epochs to time (the first includes compilation).')
_CHILD = flags.DEFINE_bool('child', False, 'Internal: measure in this process.')
DEEPCDR_PAIRS_PER_S = (315, 399)  # the original DeepCDR (Keras), batch 64, 2 CPU cores


def measure(config, epochs: int) -> dict:
  """Times `epochs` epochs of real training (the one loop) and one evaluation pass over every pair."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cdr_jax import data, experiment  # pylint: disable=g-import-not-at-top
  from cdr_jax.data import splits  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import loop, sharding  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  ds = data.load_dataset(config.data)
  split = splits.make_split(ds, config.split)
  run = experiment.setup(config, ds, [split.train], split.train)
  load_s = time.time() - t0
  states = run.init()
  rng = jax.device_put(jax.random.key(0), run.engine.replicated)
  t0 = time.time()
  active = sharding.put(np.ones(1, bool), run.engine.by_model)  # as the loop passes it
  run.engine.step.lower(states, run.data, active, run.stream(0)[0], rng).compile()
  compile_s = time.time() - t0
  no_selection = lambda s: (np.zeros(1), [{}])  # time training alone
  states, progress = loop.fit(run.step(rng), states, run.stream, no_selection, None,
                              loop.Schedule(epochs, epochs + 1))
  epoch_s = [row['seconds'] for row in progress.history[0]]
  pairs = np.arange(ds.num_pairs)
  run.predict(states, [pairs[:10]])  # compile the evaluation functions
  t0 = time.time()
  run.predict(states, [pairs])
  eval_s = time.time() - t0
  steady = min(epoch_s[1:] or epoch_s)
  train_pps = len(split.train) / steady
  return {
      'devices': jax.device_count(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'model': config.model.name, 'cell_repr': config.data.cell_repr,
      'batch_size': config.train.batch_size, 'train_pairs': len(split.train),
      'dataset_pairs': ds.num_pairs, 'dataset_mb': round(ds.nbytes() / 1e6, 2),
      'data_load_s': round(load_s, 2), 'compile_s': round(compile_s, 2),
      'epoch_s': [round(s, 2) for s in epoch_s], 'train_pairs_per_s': round(train_pps),
      'eval_pairs_per_s': round(len(pairs) / eval_s),
      'speedup_vs_deepcdr': [round(train_pps / d, 1) for d in DEEPCDR_PAIRS_PER_S[::-1]],
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
  }


def main(argv):
  if _CHILD.value:
    print(json.dumps(measure(_CONFIG.value, _EPOCHS.value)))
    return
  results = []
  for n in _DEVICES.value.split(','):
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={n}'}
    cmd = [sys.executable, __file__, '--child', f'--epochs={_EPOCHS.value}',
           *[a for a in argv[1:]], *[f for f in sys.argv[1:] if f.startswith('--config')]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
      raise RuntimeError(f'benchmark with {n} devices failed:\n{out.stderr[-3000:]}')
    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps(results[-1]), flush=True)
  print(json.dumps({'benchmark': 'train_throughput', 'results': results,
                    'targets': {'train_pairs_per_s': 30 * DEEPCDR_PAIRS_PER_S[1],
                                'peak_rss_mb': 1536}}))


if __name__ == '__main__':
  app.run(main)
