"""Where a leave-one-drug-out training step's time goes: one fold, K folds in a loop, K vmapped.

  python bench/lodo_step.py --config=configs/scfoundation.py:lodo [--folds=8] [--steps=6]
The `lodo` model's jitted training step on the real data (the sweep's batch, its drug kernel),
for K = 1 (the plain single-model step) and for K folds stacked, mapped as a loop inside the step
(`lodo.fold_map=loop`, the CPU default) or vmapped (`lodo.fold_map=vmap`). Prints JSON: the
step's wall time per fold in each mode (after compilation, the mean of `--steps` steps), and per
mode the XLA operations that take the most time per fold (a `jax.profiler` trace of 3 steps,
operations grouped by their HLO name without its number: e.g. `wrapped_reduce-window` are the
BatchNorm sums, `*gather*` / `wrapped_scatter` the gathers and their gradients). Op times are
summed over the threads that ran them, so they can exceed the wall time.
"""

import collections
import gzip
import json
import pathlib
import re
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py:lodo', 'Config file.')
_FOLDS = flags.DEFINE_integer('folds', 8, 'K: stacked folds.')
_STEPS = flags.DEFINE_integer('steps', 6, 'Timed steps per mode.')
_TOP = flags.DEFINE_integer('top', 8, 'Operation groups listed per mode.')
TRACED_STEPS = 3


def op_times(trace_dir: str) -> collections.Counter:
  """Microseconds per HLO operation group in the perfetto trace under `trace_dir`."""
  path = next(pathlib.Path(trace_dir).rglob('*.trace.json.gz'))
  trace = json.load(gzip.open(path))
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  groups = collections.Counter()
  for e in events:
    name = e.get('name', '')
    if e.get('ph') != 'X' or name.startswith(('$', 'ThunkExecutor', 'Pjit', 'Common')):
      continue   # Python frames and the executor's own spans, not operations
    groups[re.sub(r'\.\d+$', '', name)] += e.get('dur', 0)
  return groups


def measure(config, ds, folds, kernel, fold_map: str) -> dict:
  """Step time per fold and the top operation groups, for `folds` mapped by `fold_map`."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cdr_jax import experiment  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.lodo.fold_map = fold_map
  k = len(folds)
  run = experiment.setup(config, ds, [f.train for f in folds], np.arange(ds.num_pairs), kernel,
                         [1.0] * k if k > 1 else None)
  states, step = run.init(), run.step(run.engine.key(1))
  batches = run.stream(0)
  active = jax.device_put(np.ones(k, bool), jax.tree.leaves(states)[0].sharding)
  run_steps = lambda n, s: [s := step(s, active, batches[i % len(batches)])[0] for i in range(n)][-1]
  states = jax.block_until_ready(run_steps(2, states))   # compiles
  t0 = time.time()
  states = jax.block_until_ready(run_steps(_STEPS.value, states))
  per_fold_ms = 1000 * (time.time() - t0) / _STEPS.value / k
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    jax.block_until_ready(run_steps(TRACED_STEPS, states))
    jax.profiler.stop_trace()
    groups = op_times(trace_dir)
  scale = 1e-3 / TRACED_STEPS / k   # -> ms per fold and step
  return {'step_ms_per_fold': round(per_fold_ms, 1),
          'op_ms_per_fold': round(sum(groups.values()) * scale, 1),
          'top_ops_ms_per_fold': {n: round(t * scale, 2) for n, t in groups.most_common(_TOP.value)}}


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from cdr_jax import data, lodo  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import warm_start  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  kernel = warm_start.drug_kernel(ds, config)
  folds = [lodo.make_fold(ds, d, config.lodo.val_fraction, 0) for d in range(_FOLDS.value)]
  out = {'benchmark': 'lodo_step', 'folds': len(folds), 'batch_size': config.train.batch_size,
         'backend': jax.default_backend()}
  for mode, chosen in [('plain', folds[:1]), ('loop', folds), ('vmap', folds)]:
    out[mode] = measure(config, ds, chosen, kernel, 'loop' if mode == 'plain' else mode)
    print(json.dumps({'mode': mode, **out[mode]}), flush=True)
  plain = out['plain']['step_ms_per_fold']
  out['loop_vs_plain'] = round(plain / out['loop']['step_ms_per_fold'], 2)
  out['vmap_vs_plain'] = round(plain / out['vmap']['step_ms_per_fold'], 2)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
