"""Fetch the project's data files (pinned upstream commits, verified by git blob SHA-1).

  python launch/fetch_data.py --dest data
  python launch/fetch_data.py --dest data --from /path/to/mirror
  python launch/fetch_data.py --dest data --only 'deepcdr/CCLE/*' --only scfoundation/
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402

from cdr_jax.data import fetch  # noqa: E402

_DEST = flags.DEFINE_string("dest", None, "Data root to fill (deepcdr/, scfoundation/, scgpt/).", required=True)
_MANIFEST = flags.DEFINE_string("manifest", str(fetch.DEFAULT_MANIFEST), "Manifest TSV of pinned files.")
_ONLY = flags.DEFINE_multi_string("only", [], "Only local paths matching this glob or prefix (repeatable).")
_FROM = flags.DEFINE_string("from", None, "Copy from this local mirror (same layout) instead of downloading.")
_BASE_URL = flags.DEFINE_string("base_url", fetch.DEFAULT_BASE_URL,
                                "URL prefix; file URL is {base_url}/{repository}/{commit}/{upstream_path}.")
_RETRIES = flags.DEFINE_integer("retries", 4, "Retries per file after a transient failure.", lower_bound=0)
_BACKOFF = flags.DEFINE_float("backoff", 1.0, "First retry delay in seconds (doubles each retry).", lower_bound=0)
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Per-request network timeout in seconds.", lower_bound=0.001)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show tqdm progress bars on stderr.")


def main(argv: list[str]) -> int:
    """Run the fetch, print notes and a one-line JSON summary; exit 1 if any file failed."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    summary = fetch.fetch_all(_DEST.value, manifest=_MANIFEST.value, only=_ONLY.value, base_url=_BASE_URL.value,
                              mirror=_FROM.value, retries=_RETRIES.value, backoff=_BACKOFF.value,
                              timeout=_TIMEOUT.value, progress=_PROGRESS.value)
    for note in summary.notes:
        print(f"NOTE: {note}", file=sys.stderr)
    for reason in summary.failed.values():
        print(f"FAILED: {reason}", file=sys.stderr)
    print(summary.to_json(), flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    app.run(main)
