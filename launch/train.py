"""Trains one model and evaluates it beside the naive baselines.

  python launch/train.py --config=configs/scgpt.py [--workdir=runs/scgpt]
Re-running the same command resumes from the last checkpoint. Multi-host (e.g. a TPU VM pod slice):
run the same command on every host with CDR_MULTIHOST=1.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from cdr_jax import cli
from cdr_jax import experiment
from cdr_jax import logs
from cdr_jax import runs
from cdr_jax.train import sharding

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (default: runs/<config name>).')


def default_workdir(config_flag: str) -> str:
  """runs/<config file stem>[_<variant>] for `configs/x.py[:variant]`."""
  path, _, variant = config_flag.partition(':')
  name = pathlib.Path(path).stem + (f'_{variant.replace(",", "_").replace("=", "")}' if variant else '')
  return str(pathlib.Path('runs') / name)


def main(argv):
  del argv
  logs.quiet_libraries()
  sharding.initialize_multihost()
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS['config'].serialize().split('=', 1)[1])
  logging.info('config:\n%s', _CONFIG.value)
  logging.info('workdir: %s; devices: %s', workdir, jax.devices())
  summary = experiment.train_and_evaluate(_CONFIG.value, workdir)
  if summary.get('interrupted'):
    print(f'{workdir}: stopped after epoch {summary["epoch"]}; the same command resumes')
    return
  print(f'test results ({workdir}/summary.md; every number in metrics.json):')
  print(runs.short_table(summary))


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(cli.reporting_errors(main))
