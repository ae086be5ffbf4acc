"""Prints one JSON object describing the dataset and split of a config; optionally dumps the test pairs.

  python launch/inspect_data.py --config=configs/scfoundation.py [--dump_test=test_pairs.csv]
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from cdr_jax import cli
from cdr_jax import inspect

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_DUMP_TEST = flags.DEFINE_string('dump_test', None, 'Write the test pairs (cell_id,drug_id,ln_ic50) '
                                 'as CSV, in split order, to this path.')


def main(argv):
  del argv
  summary = inspect.inspect_data(_CONFIG.value, _DUMP_TEST.value)
  print(json.dumps(summary))


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(cli.reporting_errors(main))
