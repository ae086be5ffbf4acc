"""Writes one Markdown report (figures + tables) comparing finished runs.

  python launch/report.py --runs runs/scfoundation runs/scfoundation_shuffled [...] --out report/
  python launch/report.py --runs runs/A runs/B runs/C --pair runs/C,runs/A --out report/
Figure 2 compares the first two training runs unless --pair names two (paths or directory names).
A LODO sweep directory (lodo_per_drug.csv) among the runs feeds Figure 4.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from cdr_jax import report

_RUNS = flags.DEFINE_list('runs', [], 'Run directories (space- or comma-separated).')
_OUT = flags.DEFINE_string('out', 'report', 'Output directory for report.md and the figures.')
_PAIR = flags.DEFINE_string('pair', None, 'A,B: the two runs Figure 2 compares.')


def main(argv):
  runs = _RUNS.value + argv[1:]  # `--runs A B C`: absl leaves B and C as positional arguments.
  logging.info('runs: %s', runs)
  print(report.build_report(runs, _OUT.value, _PAIR.value))


if __name__ == '__main__':
  app.run(main)
