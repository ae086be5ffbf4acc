"""Fetches the project's data files (pinned upstream commits, verified by git blob SHA-1).

  python launch/fetch_data.py --dest data
  python launch/fetch_data.py --dest data --from /path/to/mirror
  python launch/fetch_data.py --dest data --only 'deepcdr/CCLE/*' --only scfoundation/
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from cdr_jax.data import fetch

_DEST = flags.DEFINE_string('dest', None, 'Data root to fill (deepcdr/, scfoundation/, scgpt/).',
                            required=True)
_MANIFEST = flags.DEFINE_string('manifest', str(fetch.MANIFEST), 'Manifest TSV of pinned files.')
_ONLY = flags.DEFINE_multi_string('only', [], 'Only local paths matching this glob or prefix.')
_FROM = flags.DEFINE_string('from', None, 'Copy from this local mirror (same layout) instead.')
_BASE_URL = flags.DEFINE_string('base_url', fetch.BASE_URL,
                                'File URL is {base_url}/{repository}/{commit}/{upstream_path}.')
_RETRIES = flags.DEFINE_integer('retries', 4, 'Retries per file after a transient failure '
                                '(pooch waits 1, 2, ... 10 s between tries).', lower_bound=0)
_TIMEOUT = flags.DEFINE_float('timeout', 60.0, 'Network timeout in seconds.', lower_bound=0.001)
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show progress bars on stderr.')


def main(argv: list[str]) -> int:
  """Fetches, prints notes and a one-line JSON summary; exits 1 if any file failed."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  summary = fetch.fetch_all(_DEST.value, _MANIFEST.value, _ONLY.value, _BASE_URL.value, _FROM.value,
                            _RETRIES.value, _TIMEOUT.value, _PROGRESS.value)
  for note in summary.notes:
    print(f'NOTE: {note}', file=sys.stderr)
  for reason in summary.failed.values():
    print(f'FAILED: {reason}', file=sys.stderr)
  print(summary.to_json(), flush=True)
  return 1 if summary.failed else 0


if __name__ == '__main__':
  app.run(main)
