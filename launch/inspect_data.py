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

from cdr_jax import inspect
from cdr_jax.errors import DataError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_DUMP_TEST = flags.DEFINE_string('dump_test', None, 'Write the test pairs (cell_id,drug_id,ln_ic50) '
                                 'as CSV, in split order, to this path.')


def main(argv):
  del argv
  summary = inspect.inspect_data(_CONFIG.value, _DUMP_TEST.value)
  print(json.dumps(summary))


def run(argv):
  """main, with bad input reported as one clear line (exit status 2) instead of a traceback."""
  try:
    main(argv)
  except DataError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(run)
