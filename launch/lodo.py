"""Leave-one-drug-out: all 223 folds (or a subset) trained side by side in one vmapped sweep.

  python launch/lodo.py --config=configs/scfoundation.py:lodo [--workdir=runs/lodo_scf]
  python launch/lodo.py --config=configs/baseline.py:lodo --drugs=random:20:0
Re-running the same command resumes at the first unfinished chunk of folds.
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
from cdr_jax import lodo
from cdr_jax import logs
from cdr_jax import runs
from cdr_jax.train import sharding

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (default: runs/lodo_<config>).')
_DRUGS = flags.DEFINE_string('drugs', None, 'Subset of folds: CIDs or names (comma-separated), or '
                             'random:<n>:<seed>. Default: config.lodo.drugs.')


def main(argv):
  del argv
  logs.quiet_libraries()
  sharding.initialize_multihost()
  config_arg = flags.FLAGS['config'].serialize().split('=', 1)[1]
  stem, _, variant = config_arg.partition(':')
  workdir = _WORKDIR.value or str(pathlib.Path('runs') / (
      'lodo_' + pathlib.Path(stem).stem + (f'_{variant.replace(",", "_")}' if variant else '')))
  logging.info('workdir: %s; devices: %s', workdir, jax.devices())
  summary = lodo.run_sweep(_CONFIG.value, workdir, _DRUGS.value)
  print(runs.json_dumps({'workdir': workdir, **summary}))


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(cli.reporting_errors(main))
