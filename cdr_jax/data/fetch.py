"""Fetches the pinned data files of `manifest.tsv` with pooch; `ensure` fetches missing ones on use.

Each manifest row pins a file to a repository commit and to its git blob SHA-1 (sha1 of
b'blob <size>\\0' + content, what `git ls-tree` lists). Pooch's own hashes are of the raw content,
so our downloader checks the blob hash of pooch's temporary file; pooch moves only a verified file
into place and deletes a rejected one.
"""

import csv
import dataclasses
import fnmatch
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Sequence

import pooch
import requests

from cdr_jax.data import io
from cdr_jax.data import layout
from cdr_jax.errors import DataError

MANIFEST = pathlib.Path(__file__).with_name('manifest.tsv')
BASE_URL = 'https://raw.githubusercontent.com'
COLUMNS = ('local_path', 'repository', 'commit', 'upstream_path', 'git_blob_sha1', 'size')
EXPRESSION_CSV, DERIVED_CELLS = layout.EXPRESSION_FILE, layout.SCFOUNDATION_CELLS_FILE
SCGPT_VOCAB = layout.SCGPT_VOCAB_FILE
OFFLINE_ENV = 'CDR_OFFLINE'
FETCH_COMMAND = 'python launch/fetch_data.py --dest'
_LFS_POINTER = b'version https://git-lfs.github.com/spec/v1'
_RETRYABLE_4XX = (408, 429)

Downloader = Callable[[str, str, pooch.Pooch | None], None]


class FetchError(Exception):
  """A file could not be obtained or failed verification (not a ValueError: pooch retries those)."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One pinned data file: where it goes under the data root and where it lives upstream."""
  local_path: str
  repository: str
  commit: str
  upstream_path: str
  git_blob_sha1: str
  size: int | None

  def url(self, base_url: str = BASE_URL) -> str:
    """{base_url}/{repository}/{commit}/{upstream_path}, URL-quoted."""
    parts = (self.repository, self.commit, self.upstream_path)
    return base_url.rstrip('/') + '/' + '/'.join(urllib.parse.quote(p) for p in parts)


@dataclasses.dataclass
class Summary:
  """Outcome of `fetch_all`: files fetched, already verified, failed (with reasons), derived."""
  ok: list[str] = dataclasses.field(default_factory=list)
  skipped: list[str] = dataclasses.field(default_factory=list)
  failed: dict[str, str] = dataclasses.field(default_factory=dict)
  derived: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def to_json(self) -> str:
    """One line: counts, derived files and the failures with reasons."""
    return json.dumps({'ok': len(self.ok), 'skipped': len(self.skipped), 'failed': len(self.failed),
                       'derived': self.derived, 'failures': self.failed}, sort_keys=True)


def _entry(row: dict[str, str], where: str) -> Entry:
  """One manifest row, its hash, size and local path checked."""
  sha, size, local = row['git_blob_sha1'].lower(), row['size'], row['local_path']
  if len(sha) != 40 or set(sha) - set('0123456789abcdef'):
    raise DataError(f'{where}: git_blob_sha1 must be 40 hex digits, got {sha!r}')
  if size != '-' and not size.isdigit():
    raise DataError(f"{where}: size must be a byte count or '-', got {size!r}")
  if not local or local.startswith('/') or '..' in local.split('/'):
    raise DataError(f'{where}: local_path must be relative, inside the data root; got {local!r}')
  return Entry(local, row['repository'], row['commit'], row['upstream_path'], sha,
               None if size == '-' else int(size))


def read_manifest(path: io.PathLike | None = None) -> list[Entry]:
  """Reads a tab-separated manifest (default `MANIFEST`); lines starting with '#' are comments."""
  path = pathlib.Path(path or MANIFEST)
  lines = [l for l in path.read_text(encoding='utf-8').splitlines() if l.strip() and l[0] != '#']
  reader = csv.DictReader(lines, delimiter='\t', quoting=csv.QUOTE_NONE)
  if tuple(reader.fieldnames or ()) != COLUMNS:
    raise DataError(f'{path}: manifest header is {reader.fieldnames}, expected {list(COLUMNS)}')
  entries = [_entry(row, f'{path} row {i}') for i, row in enumerate(reader, start=1)]
  if not entries:
    raise DataError(f'{path}: manifest has no entries')
  return entries


def select(entries: Iterable[Entry], only: Sequence[str] = ()) -> list[Entry]:
  """Entries whose local path matches a glob or starts with a prefix in `only` (all if empty)."""
  def chosen(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or path.startswith(p) for p in only)
  return [e for e in entries if not only or chosen(e.local_path)]


def git_blob_sha1(path: io.PathLike) -> str:
  """Git's blob SHA-1 of a file, streamed."""
  digest = hashlib.sha1(b'blob %d\0' % os.path.getsize(path))
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 16), b''):
      digest.update(chunk)
  return digest.hexdigest()


def verification_error(path: io.PathLike, entry: Entry) -> str | None:
  """Why the file at `path` is not `entry` (None when it is)."""
  if not os.path.isfile(path):
    return f'{entry.local_path}: no file at {path}'
  size = os.path.getsize(path)
  if entry.size is not None and size != entry.size:
    return f'{entry.local_path}: size {size} bytes, expected {entry.size}'
  with open(path, 'rb') as f:
    lfs = f.read(len(_LFS_POINTER)) == _LFS_POINTER
  got = git_blob_sha1(path)
  if got != entry.git_blob_sha1:
    return (f'{entry.local_path}: git blob SHA-1 {got}, expected {entry.git_blob_sha1}'
            + (' (content is a Git LFS pointer, not the data)' if lfs else ''))
  if lfs:
    return f'{entry.local_path}: upstream blob is a Git LFS pointer; the data is not in git'
  return None


def _http(entry: Entry, timeout: float, progress: bool) -> Downloader:
  """pooch's HTTP downloader (tqdm bar on stderr); a 4xx but 408/429 is final, not retried."""
  def download(url: str, output_file: str, store: pooch.Pooch | None) -> None:
    try:
      pooch.HTTPDownloader(progressbar=progress, timeout=timeout)(url, output_file, store)
    except requests.HTTPError as e:
      status = e.response.status_code
      if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        raise FetchError(f'{entry.local_path}: HTTP {status} for {url}') from e
      raise
  return download


def _copy(entry: Entry, mirror: pathlib.Path) -> Downloader:
  """A downloader that copies the entry from a local mirror laid out like the data root."""
  def copy(url: str, output_file: str, store: pooch.Pooch | None) -> None:
    del url, store
    source = mirror / entry.local_path
    if not source.is_file():
      raise FetchError(f'{entry.local_path}: not found in mirror (expected {source})')
    shutil.copyfile(source, output_file)
  return copy


def _verified(entry: Entry, download: Downloader) -> Downloader:
  """Runs `download`, then rejects the temporary file unless its git blob SHA-1 is the entry's."""
  def verified(url: str, output_file: str, store: pooch.Pooch | None) -> None:
    download(url, output_file, store)
    error = verification_error(output_file, entry)
    if error:
      raise FetchError(error)  # pooch deletes the temporary file; a pinned blob is not retried
    # tempfile makes 0600 files; a data file gets the mode a plain open() would give it.
    os.chmod(output_file, 0o666 & ~io._UMASK)  # pylint: disable=protected-access
  return verified


def fetch_entry(entry: Entry, dest: io.PathLike, base_url: str = BASE_URL,
                mirror: io.PathLike | None = None, retries: int = 3, timeout: float = 60.0,
                progress: bool = True) -> None:
  """Downloads (or copies from `mirror`) one entry into `dest`; only a verified copy lands there."""
  dest, stage = pathlib.Path(dest), None
  try:
    dest.mkdir(parents=True, exist_ok=True)
    # pooch skips a file that is already present, so it fetches into a fresh staging folder.
    stage = tempfile.mkdtemp(dir=dest, prefix='.fetch-')
    if mirror is None:
      url, download = entry.url(base_url), _http(entry, timeout, progress)
    else:
      mirror = pathlib.Path(mirror).resolve()
      url, download = (mirror / entry.local_path).as_uri(), _copy(entry, mirror)
    store = pooch.create(stage, base_url='', registry={entry.local_path: None},
                         urls={entry.local_path: url}, retry_if_failed=retries)
    staged = store.fetch(entry.local_path, downloader=_verified(entry, download))
    (dest / entry.local_path).parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest / entry.local_path)
  except OSError as e:  # requests' errors are OSErrors too
    raise FetchError(f'{entry.local_path}: {e}') from e
  finally:
    if stage:
      shutil.rmtree(stage, ignore_errors=True)


def write_derived_cells(root: io.PathLike) -> pathlib.Path | None:
  """Writes the scFoundation embedding's row ids (the expression csv's); None without the csv."""
  root = pathlib.Path(root)
  if not (root / EXPRESSION_CSV).is_file():
    return None
  _, body = io.read_table(root / EXPRESSION_CSV, 'expression: DepMap_ID x gene symbols',
                          header=['DepMap_ID'])
  data = ''.join(f'{row[0].strip()}\n' for row in body).encode('ascii')
  target = root / DERIVED_CELLS
  if not (target.is_file() and target.read_bytes() == data):
    io.atomic_write_bytes(target, data)
  return target


def _derive(dest: pathlib.Path, entries: list[Entry], summary: Summary) -> None:
  """Writes the derived cells list, noting when its source csv is not upstream's."""
  try:
    if write_derived_cells(dest) is None:
      summary.notes.append(f'{DERIVED_CELLS} not written: {EXPRESSION_CSV} is absent')
      return
  except (DataError, OSError, UnicodeError) as e:
    summary.failed[DERIVED_CELLS] = f'{DERIVED_CELLS}: could not derive from {EXPRESSION_CSV}: {e}'
    return
  summary.derived.append(DERIVED_CELLS)
  expression = [e for e in entries if e.local_path == EXPRESSION_CSV]
  if expression and verification_error(dest / EXPRESSION_CSV, expression[0]):
    summary.notes.append(f'{DERIVED_CELLS} derived from an expression csv that does NOT match '
                         "upstream; its row order is that copy's, not necessarily upstream's")


def fetch_all(dest: io.PathLike, manifest: io.PathLike | None = None, only: Sequence[str] = (),
              base_url: str = BASE_URL, mirror: io.PathLike | None = None, retries: int = 3,
              timeout: float = 60.0, progress: bool = True) -> Summary:
  """Fetches each selected manifest file not yet verified in `dest`; failures go in the summary."""
  dest, entries = pathlib.Path(dest), read_manifest(manifest)
  chosen = select(entries, only)
  if not chosen:
    raise ValueError(f'--only {list(only)} matches no entry of {manifest or MANIFEST}')
  summary = Summary()
  for entry in chosen:
    if verification_error(dest / entry.local_path, entry) is None:
      summary.skipped.append(entry.local_path)
      continue
    try:
      fetch_entry(entry, dest, base_url, mirror, retries, timeout, progress)
      summary.ok.append(entry.local_path)
    except FetchError as e:
      kept = ' (the existing file is left untouched)' if (dest / entry.local_path).exists() else ''
      summary.failed[entry.local_path] = f'{e}{kept}'
  _derive(dest, entries, summary)
  summary.notes.append(f'{SCGPT_VOCAB} has no GitHub source: it comes with the scGPT checkpoint; '
                       f'put it at {dest / SCGPT_VOCAB} yourself '
                       + ('(present)' if (dest / SCGPT_VOCAB).is_file() else '(currently missing)'))
  return summary


def _relative(root: pathlib.Path, path: io.PathLike) -> str | None:
  """`path` (relative to `root` or absolute inside it) as a manifest key; None if outside."""
  try:
    return (root / path).relative_to(root).as_posix()
  except ValueError:
    return None


def ensure(root: io.PathLike, paths: Iterable[io.PathLike], base_url: str | None = None,
           retries: int = 2, progress: bool = True) -> None:
  """Fetches and verifies into `root` those of `paths` that are absent and in the manifest.

  The derived cells list is written from the expression csv (fetched if absent). Present files
  are not checked, downloaded or written, so a complete read-only root works. Paths the manifest
  does not know are left to their reader's missing-file error. Offline (or with $CDR_OFFLINE set),
  raises DataError naming the missing files and the fetch command.
  """
  root = pathlib.Path(root)
  missing = [_relative(root, p) for p in paths if not (root / p).is_file()]
  if not missing:
    return
  entries = {e.local_path: e for e in read_manifest()}
  derive = DERIVED_CELLS in missing
  if derive and not (root / EXPRESSION_CSV).is_file():
    missing.append(EXPRESSION_CSV)
  needed = [entries[p] for p in dict.fromkeys(missing) if p in entries]
  if not needed and not derive:
    return
  try:
    if needed and os.environ.get(OFFLINE_ENV, '') not in ('', '0'):
      raise FetchError(f'${OFFLINE_ENV} is set')
    for entry in needed:
      fetch_entry(entry, root, base_url or BASE_URL, retries=retries, progress=progress)
    if derive:
      write_derived_cells(root)
  except (FetchError, OSError) as e:
    names = [x.local_path for x in needed] + [DERIVED_CELLS] * derive
    names = ', '.join(str(root / n) for n in names)
    raise DataError(f'missing file {names}: fetching failed ({e}); fetch the data with: '
                    f'{FETCH_COMMAND} {root}') from e
