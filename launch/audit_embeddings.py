"""Audits a cell embedding: does it carry expression biology beyond cell identity?

  python launch/audit_embeddings.py --embedding data/scfoundation/50M-0.1B-res_embedding.npy \
      [--expression CSV] [--annotations TXT] [--runs RUN_REAL RUN_SHUFFLED] [--out DIR]
Expression and annotations default to the DeepCDR files under $CDR_DATA_DIR. Prints the verdict line
and writes audit.md + audit.json to --out (default runs/audit/<embedding name>).
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from cdr_jax import audit

_EMBEDDING = flags.DEFINE_string('embedding', None, 'Cells x d .npy; row ids in <name>.cells.txt.')
_EXPRESSION = flags.DEFINE_string('expression', None, 'Cells x genes CSV (default: DeepCDR '
                                  'expression under $CDR_DATA_DIR).')
_ANNOTATIONS = flags.DEFINE_string('annotations', None, 'CCLE annotation TXT (default: under '
                                   '$CDR_DATA_DIR).')
_RUNS = flags.DEFINE_list('runs', [], 'Optional: a run on the embedding and its shuffled-row '
                          'control run (space- or comma-separated).')
_OUT = flags.DEFINE_string('out', None, 'Output directory (default: runs/audit/<embedding stem>).')


def data_file(given: str | None, relative: str) -> str:
  """The flag's path, else `relative` under $CDR_DATA_DIR."""
  if given:
    return given
  root = os.environ.get('CDR_DATA_DIR')
  if not root:
    raise app.UsageError(f'set $CDR_DATA_DIR or pass the file explicitly (default: {relative})')
  return str(pathlib.Path(root) / relative)


def main(argv):
  runs = tuple(_RUNS.value + argv[1:])  # `--runs A B`: absl leaves B as a positional argument.
  out = _OUT.value or str(pathlib.Path('runs/audit') / pathlib.Path(_EMBEDDING.value).stem)
  logging.info('embedding %s; runs %s; out %s', _EMBEDDING.value, runs, out)
  result = audit.run_audit(_EMBEDDING.value, data_file(_EXPRESSION.value, audit.EXPRESSION_FILE),
                           data_file(_ANNOTATIONS.value, audit.ANNOTATION_FILE), runs, out)
  print(result['verdict'])
  print(f'wrote {out}/audit.md and {out}/audit.json')


if __name__ == '__main__':
  flags.mark_flag_as_required('embedding')
  app.run(main)
