"""Download (or copy from a local mirror) the project's data files, verified by git blob SHA-1.

Every file in the manifest (`data_manifest.tsv`) is pinned to a repository commit and a git blob
SHA-1; a file is only ever kept if its content hashes to that value. Writes are atomic: content goes
to a temporary file in the destination directory, is fsynced, verified, then moved into place.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import hashlib
import http.client
import io
import json
import logging
import os
import pathlib
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO, Iterable, Sequence

import tqdm

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = pathlib.Path(__file__).resolve().with_name("data_manifest.tsv")
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
MANIFEST_COLUMNS = ("local_path", "repository", "commit", "upstream_path", "git_blob_sha1", "size")
EXPRESSION_CSV = "deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv"
DERIVED_CELLS = "scfoundation/50M-0.1B-res_embedding.cells.txt"
SCGPT_VOCAB = "scgpt/vocab.json"
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
CHUNK = 1 << 16
USER_AGENT = "cdr-jax-fetch/1"


class FetchError(Exception):
    """A file could not be obtained or failed verification."""


class TransientError(FetchError):
    """A failure worth retrying (5xx, timeout, dropped connection, short read)."""


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One pinned data file: where it goes locally and where it lives upstream."""

    local_path: str
    repository: str
    commit: str
    upstream_path: str
    git_blob_sha1: str
    size: int | None


@dataclasses.dataclass
class FetchSummary:
    """Outcome of a fetch run."""

    ok: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    derived: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        """One-line JSON with counts and the failing files with reasons."""
        return json.dumps({
            "ok": len(self.ok), "skipped": len(self.skipped), "failed": len(self.failed),
            "derived": self.derived, "failures": self.failed,
        }, sort_keys=True)


# ---------------------------------------------------------------- manifest


def _parse_row(row: dict[str, str], where: str) -> ManifestEntry:
    """Turn one manifest row into an entry, validating the hash and size fields."""
    sha = row["git_blob_sha1"].strip().lower()
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"{where}: git_blob_sha1 must be 40 hex digits, got {sha!r}")
    size_text = row["size"].strip()
    if size_text != "-" and not size_text.isdigit():
        raise ValueError(f"{where}: size must be a byte count or '-', got {size_text!r}")
    local = row["local_path"].strip()
    if not local or pathlib.PurePosixPath(local).is_absolute() or ".." in pathlib.PurePosixPath(local).parts:
        raise ValueError(f"{where}: local_path must be a relative path inside the data root, got {local!r}")
    return ManifestEntry(local, row["repository"].strip(), row["commit"].strip(),
                         row["upstream_path"].strip(), sha, None if size_text == "-" else int(size_text))


def read_manifest(path: str | os.PathLike = DEFAULT_MANIFEST) -> list[ManifestEntry]:
    """Read a tab-separated manifest; lines starting with '#' are comments."""
    path = pathlib.Path(path)
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{path}: manifest header lacks columns {sorted(missing)}; expected {MANIFEST_COLUMNS}")
    entries = [_parse_row(row, f"{path} row {i + 1}") for i, row in enumerate(reader)]
    if not entries:
        raise ValueError(f"{path}: manifest has no entries")
    return entries


def select_entries(entries: Iterable[ManifestEntry], only: Sequence[str] = ()) -> list[ManifestEntry]:
    """Keep entries whose local_path matches any glob or starts with any prefix in `only` (all if empty)."""
    entries = list(entries)
    if not only:
        return entries
    return [e for e in entries if any(fnmatch.fnmatchcase(e.local_path, p) or e.local_path.startswith(p) for p in only)]


def upstream_url(entry: ManifestEntry, base_url: str = DEFAULT_BASE_URL) -> str:
    """Public URL of an entry: {base_url}/{repository}/{commit}/{upstream_path}, URL-quoted."""
    parts = (entry.repository, entry.commit, entry.upstream_path)
    return base_url.rstrip("/") + "/" + "/".join(urllib.parse.quote(p, safe="/") for p in parts)


# ---------------------------------------------------------------- verification


def git_blob_sha1_bytes(data: bytes) -> str:
    """Git's blob SHA-1 of in-memory content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def git_blob_sha1(path: str | os.PathLike) -> str:
    """Git's blob SHA-1 of a file, streamed."""
    path = pathlib.Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_lfs_pointer(path: pathlib.Path) -> bool:
    """True if the file is a Git LFS pointer rather than real content."""
    with path.open("rb") as f:
        return f.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def verification_error(path: str | os.PathLike, entry: ManifestEntry) -> str | None:
    """Why `path` is not a valid copy of `entry` (None if it verifies)."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"{entry.local_path}: size {size} bytes, expected {entry.size}"
    got = git_blob_sha1(path)
    lfs = " (content is a Git LFS pointer, not the data)" if _is_lfs_pointer(path) else ""
    if got != entry.git_blob_sha1:
        return f"{entry.local_path}: git blob SHA-1 {got}, expected {entry.git_blob_sha1}{lfs}"
    if lfs:
        return f"{entry.local_path}: upstream blob is a Git LFS pointer; the data itself is not in the repository"
    return None


def is_verified(path: str | os.PathLike, entry: ManifestEntry) -> bool:
    """True if the file exists and matches the entry's blob SHA-1."""
    return pathlib.Path(path).is_file() and verification_error(path, entry) is None


# ---------------------------------------------------------------- atomic writes


def _fsync_dir(directory: pathlib.Path) -> None:
    """Persist a rename in `directory` (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_in(target: pathlib.Path) -> tuple[BinaryIO, pathlib.Path]:
    """Open a temporary file next to `target` (same filesystem, so os.replace is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    f = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    return f, pathlib.Path(f.name)


def _umask_mode() -> int:
    """Mode a normally created file would get (0o666 minus the process umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _commit_temp(tmp: pathlib.Path, target: pathlib.Path, entry: ManifestEntry | None) -> None:
    """Verify the temp file (if an entry is given) and move it onto `target`; delete it on failure."""
    try:
        if entry is not None:
            err = verification_error(tmp, entry)
            if err:
                raise FetchError(err)
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: pathlib.Path, source: BinaryIO, entry: ManifestEntry | None = None,
                 bar: tqdm.tqdm | None = None, expected_len: int | None = None) -> None:
    """Stream `source` into `target` via temp file + fsync + os.replace, verifying against `entry`."""
    f, tmp = _temp_in(target)
    try:
        with f:
            written = 0
            for chunk in iter(lambda: source.read(CHUNK), b""):
                f.write(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        if expected_len is not None and written != expected_len:
            raise TransientError(f"{target.name}: received {written} bytes, server announced {expected_len}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _commit_temp(tmp, target, entry)


# ---------------------------------------------------------------- download / copy


def _open_url(url: str, timeout: float, name: str) -> http.client.HTTPResponse:
    """GET a URL for local file `name`, mapping retryable failures to TransientError."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code >= 500 or e.code in (408, 429):
            raise TransientError(f"{name}: HTTP {e.code} for {url}") from e
        raise FetchError(f"{name}: HTTP {e.code} for {url}") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise TransientError(f"{name}: cannot reach {url}: {e}") from e


def _download_once(entry: ManifestEntry, target: pathlib.Path, url: str, timeout: float, progress: bool) -> None:
    """One download attempt of `url` into `target` with verification."""
    with _open_url(url, timeout, entry.local_path) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        with tqdm.tqdm(total=expected or entry.size, unit="B", unit_scale=True, desc=entry.local_path,
                       disable=not progress, leave=False) as bar:
            try:
                write_atomic(target, response, entry, bar, expected)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
                raise TransientError(f"{entry.local_path}: transfer from {url} interrupted: {e}") from e


def download_entry(entry: ManifestEntry, dest: pathlib.Path, base_url: str = DEFAULT_BASE_URL, retries: int = 3,
                   backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> None:
    """Download one entry into `dest`, retrying transient failures `retries` times with exponential backoff."""
    url = upstream_url(entry, base_url)
    target = dest / entry.local_path
    for attempt in range(retries + 1):
        try:
            return _download_once(entry, target, url, timeout, progress)
        except TransientError as e:
            if attempt == retries:
                raise FetchError(f"{e} (gave up after {retries + 1} attempts)") from e
            delay = backoff * 2 ** attempt
            log.warning("%s (attempt %d/%d); retrying in %.2fs", e, attempt + 1, retries + 1, delay)
            time.sleep(delay)


def copy_entry(entry: ManifestEntry, dest: pathlib.Path, mirror: pathlib.Path) -> None:
    """Copy one entry from a local mirror laid out like the data root, with verification."""
    source = mirror / entry.local_path
    if not source.is_file():
        raise FetchError(f"{entry.local_path}: not found in mirror (expected {source})")
    with source.open("rb") as f:
        write_atomic(dest / entry.local_path, f, entry)


# ---------------------------------------------------------------- derived files


def cell_ids_from_expression(csv_path: pathlib.Path) -> list[str]:
    """First column (ACH ids) of the expression csv's data rows, in row order."""
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows, None)  # header
        ids = [row[0].strip() for row in rows if row]
    if not ids or not all(ids):
        raise FetchError(f"{csv_path}: expected a header then one non-empty cell id per row in column 0")
    return ids


def write_derived_cells(dest: pathlib.Path) -> pathlib.Path | None:
    """Write the scFoundation embedding's row ids from the expression csv; None if the csv is absent."""
    csv_path = dest / EXPRESSION_CSV
    if not csv_path.is_file():
        return None
    data = "".join(f"{cid}\n" for cid in cell_ids_from_expression(csv_path)).encode("ascii")
    target = dest / DERIVED_CELLS
    if target.is_file() and target.read_bytes() == data:
        return target
    write_atomic(target, io.BytesIO(data))
    return target


# ---------------------------------------------------------------- driver


def _fetch_one(entry: ManifestEntry, dest: pathlib.Path, mirror: pathlib.Path | None, base_url: str,
               retries: int, backoff: float, timeout: float, progress: bool) -> None:
    """Obtain one entry from the mirror or over HTTP."""
    if mirror is not None:
        copy_entry(entry, dest, mirror)
    else:
        download_entry(entry, dest, base_url, retries, backoff, timeout, progress)


def _derive(dest: pathlib.Path, summary: FetchSummary, entries: Sequence[ManifestEntry]) -> None:
    """Write the derived cells list when the expression csv is present, noting if it is unverified."""
    try:
        written = write_derived_cells(dest)
    except (FetchError, OSError, UnicodeDecodeError) as e:
        summary.failed[DERIVED_CELLS] = f"{DERIVED_CELLS}: could not derive from {EXPRESSION_CSV}: {e}"
        return
    if written is None:
        summary.notes.append(f"{DERIVED_CELLS} not written: {EXPRESSION_CSV} is absent")
        return
    summary.derived.append(DERIVED_CELLS)
    expr = next((e for e in entries if e.local_path == EXPRESSION_CSV), None)
    if expr is not None and not is_verified(dest / EXPRESSION_CSV, expr):
        summary.notes.append(f"{DERIVED_CELLS} derived from an expression csv that does NOT match upstream; "
                             "its row order is that copy's, not necessarily upstream's")


def fetch_all(dest: str | os.PathLike, manifest: str | os.PathLike = DEFAULT_MANIFEST, only: Sequence[str] = (),
              base_url: str = DEFAULT_BASE_URL, mirror: str | os.PathLike | None = None, retries: int = 3,
              backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> FetchSummary:
    """Fetch every selected manifest file into `dest`; never raises per-file errors, reports them in the summary."""
    dest = pathlib.Path(dest)
    mirror = pathlib.Path(mirror) if mirror is not None else None
    all_entries = read_manifest(manifest)
    entries = select_entries(all_entries, only)
    if not entries:
        raise ValueError(f"--only {list(only)} matches no manifest entry in {manifest}")
    summary = FetchSummary()
    for entry in entries:
        if is_verified(dest / entry.local_path, entry):
            summary.skipped.append(entry.local_path)
            continue
        try:
            _fetch_one(entry, dest, mirror, base_url, retries, backoff, timeout, progress)
            summary.ok.append(entry.local_path)
        except (FetchError, OSError) as e:
            existing = dest / entry.local_path
            kept = f" (existing non-matching {existing} left untouched)" if existing.exists() else ""
            summary.failed[entry.local_path] = f"{e}{kept}"
            log.error("FAILED %s", summary.failed[entry.local_path])
    _derive(dest, summary, all_entries)
    summary.notes.append(f"{SCGPT_VOCAB} has no GitHub source: it comes with the scGPT checkpoint download; "
                         f"place it at {dest / SCGPT_VOCAB} yourself"
                         + (" (present)" if (dest / SCGPT_VOCAB).is_file() else " (currently missing)"))
    return summary


__all__ = [
    "DEFAULT_BASE_URL", "DEFAULT_MANIFEST", "FetchError", "FetchSummary", "ManifestEntry", "copy_entry",
    "download_entry", "fetch_all", "git_blob_sha1", "git_blob_sha1_bytes", "is_verified", "read_manifest",
    "select_entries", "upstream_url", "verification_error", "write_derived_cells",
]
