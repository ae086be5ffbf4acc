"""Time to quality: wall time until the validation per-drug PCC first reaches the default run's best.

  python bench/time_to_quality.py --config=configs/scfoundation.py [--settings=...]
Legacy split, the config's seed. The default setting (batch 2,048, identity codes from a random
init: the network as trained before warm starts) trains `--default_epochs` epochs; its best
validation per-drug PCC is the target. Every other setting (batch size, learning-rate scaling,
warm-up, and `mf`: identity codes started from the tuned matrix factorisation, train/warm_start.py,
the current default) trains until it reaches the target or `--max_epochs`. Everything is chosen and
measured on validation pairs (never test). Prints one JSON line per setting, then a summary:
seconds to the target (compilation and the warm start's fit included, as a user waits for them),
epochs, and the speed-up over the default.
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py', 'Config file.')
_SETTINGS = flags.DEFINE_list(
    'settings', ['8192:sqrt:1', '16384:sqrt:2', '0:sqrt:5', '2048:none:0:mf', '16384:sqrt:2:mf'],
    'batch_size:lr_scaling:warmup_epochs[:mf] per setting (batch 0: full batch; mf: the warm '
    'start from matrix factorisation).')
_DEFAULT_EPOCHS = flags.DEFINE_integer('default_epochs', 50, 'Epochs of the default setting.')
_MAX_EPOCHS = flags.DEFINE_integer('max_epochs', 100, 'Epoch budget of the other settings.')


class Reached(Exception):
  """The target was reached (stops the loop early)."""


def train(config, target: float | None, max_epochs: int) -> dict:
  """Trains with the one loop; returns per-epoch times and validation per-drug PCC."""
  from cdr_jax import data, experiment  # pylint: disable=g-import-not-at-top
  from cdr_jax.data import splits  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import loop, optimizer  # pylint: disable=g-import-not-at-top
  config.train.num_epochs, config.train.patience = max_epochs, max_epochs
  ds = data.load_dataset(config.data)
  split = splits.make_split(ds, config.split)
  t0 = time.time()
  _, run, states = experiment.prepare(config, ds, split)   # with the warm start when id_init=mf
  curve = []

  def on_epoch(progress):
    row = progress.history[0][-1]
    curve.append({'epoch': row['epoch'], 'seconds': round(time.time() - t0, 2),
                  'val_per_drug_pcc': row['val_per_drug_pcc'], 'val_pcc': row['val_pcc']})
    if target is not None and row['val_per_drug_pcc'] >= target:
      raise Reached()

  try:
    loop.fit(run.step(run.engine.key(config.train.seed + 1)), states, run.stream,
             run.selector([split.val]), None, loop.Schedule(max_epochs, max_epochs),
             on_epoch=on_epoch)
  except Reached:
    pass
  best = max(c['val_per_drug_pcc'] for c in curve)
  return {'batch_size': run.batch_size, 'steps_per_epoch': len(run.stream(0)),
          'learning_rate': optimizer.learning_rate(config.optimizer, run.batch_size),
          'epochs': len(curve), 'best_val_per_drug_pcc': best, 'curve': curve}


def main(argv):
  del argv
  base = _CONFIG.value
  reference = base.copy_and_resolve_references()
  reference.model.id_init = 'random'
  default = train(reference, None, _DEFAULT_EPOCHS.value)
  target = default['best_val_per_drug_pcc']
  hit = next(c for c in default['curve'] if c['val_per_drug_pcc'] >= target)
  default.update(setting='default', seconds_to_target=hit['seconds'],
                 epochs_to_target=hit['epoch'] + 1)
  print(json.dumps({k: v for k, v in default.items() if k != 'curve'}), flush=True)
  results = [default]
  for setting in _SETTINGS.value:
    size, scaling, warmup, *start = setting.split(':')
    if start not in ([], ['mf']):
      raise ValueError(f'setting {setting!r}: the fourth field may only be mf (the warm start)')
    c = base.copy_and_resolve_references()
    c.train.batch_size, c.optimizer.lr_scaling = int(size), scaling
    c.optimizer.warmup_epochs = float(warmup)
    c.model.id_init = 'mf' if start == ['mf'] else 'random'
    r = train(c, target, _MAX_EPOCHS.value)
    reached = r['best_val_per_drug_pcc'] >= target
    r.update(setting=setting, reached=reached,
             seconds_to_target=r['curve'][-1]['seconds'] if reached else None,
             epochs_to_target=r['epochs'] if reached else None)
    print(json.dumps({k: v for k, v in r.items() if k != 'curve'}), flush=True)
    results.append(r)
  fastest = min((r for r in results[1:] if r['reached']), key=lambda r: r['seconds_to_target'],
                default=None)
  print(json.dumps({
      'benchmark': 'time_to_quality', 'target_val_per_drug_pcc': target,
      'default_seconds': default['seconds_to_target'],
      'fastest_setting': fastest and fastest['setting'],
      'fastest_seconds': fastest and fastest['seconds_to_target'],
      'speedup': fastest and round(default['seconds_to_target'] / fastest['seconds_to_target'], 2),
      'settings': [{k: r[k] for k in ('setting', 'batch_size', 'learning_rate', 'epochs',
                                      'seconds_to_target', 'best_val_per_drug_pcc')}
                   for r in results], 'target_speedup': 3.0}))


if __name__ == '__main__':
  app.run(main)
