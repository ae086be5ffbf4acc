"""Tests for cdr_jax.fetch against a loopback HTTP server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import collections
import hashlib
import http.server
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so `pytest tests/test_fetch.py` works without an installed package
    sys.path.insert(0, str(REPO_ROOT))

from cdr_jax.data import fetch  # noqa: E402
REPO = "someone/Data Repo"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
EXPR_CSV = b"DepMap_ID,G1,G2\nACH-000002,1.0,2.0\nACH-000001,NaN,3.5\n"
FILES = {  # local_path -> (upstream_path, content)
    "deepcdr/a.txt": ("data/a.txt", b"alpha\n"),
    "deepcdr/GDSC/list Mon 09_00.csv": ("data/GDSC/list Mon 09_00.csv", b"id,name\n1,x\n"),
    fetch.EXPRESSION_CSV: ("data/CCLE/expr.csv", EXPR_CSV),
}


def blob_sha1(data: bytes) -> str:
    """Independent reference implementation of git's blob hash."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\x00" + data).hexdigest()


class Server:
    """Loopback HTTP server serving <repository>/<commit>/<upstream_path> from a directory."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.hits: collections.Counter[str] = collections.Counter()
        self.fail_first: set[str] = set()  # upstream paths answered with 500 on the first request
        self.stall_first: set[str] = set()  # upstream paths that stall (sleep) on the first request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                rel = urllib.parse.unquote(self.path.lstrip("/"))
                upstream = rel.split("/", 3)[-1]
                server.hits[upstream] += 1
                first = server.hits[upstream] == 1
                if first and upstream in server.fail_first:
                    self.send_error(500)
                    return
                if first and upstream in server.stall_first:
                    time.sleep(0.6)
                path = server.root / rel
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def put(self, upstream_path: str, content: bytes) -> None:
        """Serve `content` at the upstream path."""
        path = self.root / REPO / COMMIT / upstream_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "srv")
    for upstream, content in FILES.values():
        srv.put(upstream, content)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def write_manifest(path: pathlib.Path, files=FILES, sizes: bool = True) -> pathlib.Path:
    """Write a small manifest in the shipped format (comment line, header, rows)."""
    lines = ["# test manifest", "\t".join(fetch.MANIFEST_COLUMNS)]
    for local, (upstream, content) in files.items():
        size = str(len(content)) if sizes else "-"
        lines.append("\t".join([local, REPO, COMMIT, upstream, blob_sha1(content), size]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path / "manifest.tsv")


def run(dest, manifest, server=None, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5.0)
    base_url = server.base_url if server else "http://127.0.0.1:9"
    return fetch.fetch_all(dest, manifest=manifest, base_url=base_url, progress=False, **kw)


def leftovers(root: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_blob_sha1_matches_git_definition(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"hello\n")
    assert fetch.git_blob_sha1(p) == fetch.git_blob_sha1_bytes(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_url_is_quoted():
    entry = fetch.ManifestEntry("x", "o/r", "c" * 40, "data/GDSC/1.Drug_listMon Jun 24.csv", "0" * 40, None)
    assert fetch.upstream_url(entry, "http://h/") == f"http://h/o/r/{'c' * 40}/data/GDSC/1.Drug_listMon%20Jun%2024.csv"


def test_download_verify_atomic(tmp_path, server, manifest, monkeypatch):
    replaced, synced = [], []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((pathlib.Path(a), pathlib.Path(b))), real_replace(a, b))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    dest = tmp_path / "dest"
    summary = run(dest, manifest, server)
    assert summary.failed == {} and sorted(summary.ok) == sorted(FILES)
    for local, (_, content) in FILES.items():
        assert (dest / local).read_bytes() == content
    targets = {b for _, b in replaced}
    assert {dest / local for local in FILES} <= targets
    assert all(a.parent == b.parent and a != b for a, b in replaced), "temp file must be in the target's directory"
    assert len(synced) >= len(FILES)
    assert leftovers(dest) == []
    assert json.loads(summary.to_json())["ok"] == len(FILES)


def test_corrupted_file_rejected_and_not_kept(tmp_path, server, manifest):
    server.put("data/a.txt", b"alphA\n")  # same size, different content
    dest = tmp_path / "dest"
    summary = run(dest, manifest, server)
    assert list(summary.failed) == ["deepcdr/a.txt"]
    assert blob_sha1(b"alpha\n") in summary.failed["deepcdr/a.txt"]
    assert not (dest / "deepcdr/a.txt").exists()
    assert leftovers(dest) == []
    assert len(summary.ok) == len(FILES) - 1  # the rest was still tried
    assert server.hits["data/a.txt"] == 1  # a pinned blob that mismatches is not retried


def test_lfs_pointer_is_not_data(tmp_path, server):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 123\n"
    server.put("data/big.csv", pointer)
    m = write_manifest(tmp_path / "m.tsv", {"deepcdr/big.csv": ("data/big.csv", pointer)})
    summary = run(tmp_path / "dest", m, server)
    assert "LFS" in summary.failed["deepcdr/big.csv"]
    assert not (tmp_path / "dest/deepcdr/big.csv").exists()


def test_transient_500_is_retried(tmp_path, server, manifest):
    server.fail_first.add("data/a.txt")
    summary = run(tmp_path / "dest", manifest, server)
    assert summary.failed == {}
    assert server.hits["data/a.txt"] == 2
    assert (tmp_path / "dest/deepcdr/a.txt").read_bytes() == b"alpha\n"


def test_transient_500_without_retries_fails(tmp_path, server, manifest):
    server.fail_first.add("data/a.txt")
    summary = run(tmp_path / "dest", manifest, server, retries=0)
    assert "HTTP 500" in summary.failed["deepcdr/a.txt"]


def test_timeout_is_retried(tmp_path, server, manifest):
    server.stall_first.add("data/a.txt")
    summary = run(tmp_path / "dest", manifest, server, timeout=0.2)
    assert summary.failed == {} and server.hits["data/a.txt"] == 2


def test_404_is_not_retried(tmp_path, server):
    m = write_manifest(tmp_path / "m.tsv", {"deepcdr/gone.txt": ("data/gone.txt", b"x")})
    summary = run(tmp_path / "dest", m, server)
    assert "HTTP 404" in summary.failed["deepcdr/gone.txt"] and server.hits["data/gone.txt"] == 1


def test_verified_file_is_skipped(tmp_path, server, manifest):
    dest = tmp_path / "dest"
    (dest / "deepcdr").mkdir(parents=True)
    (dest / "deepcdr/a.txt").write_bytes(b"alpha\n")
    summary = run(dest, manifest, server)
    assert summary.skipped == ["deepcdr/a.txt"]
    assert server.hits["data/a.txt"] == 0
    again = run(dest, manifest, server)
    assert sorted(again.skipped) == sorted(FILES) and again.ok == []


def test_unverified_existing_file_is_replaced(tmp_path, server, manifest):
    dest = tmp_path / "dest"
    (dest / "deepcdr").mkdir(parents=True)
    (dest / "deepcdr/a.txt").write_bytes(b"stale\n")
    summary = run(dest, manifest, server)
    assert "deepcdr/a.txt" in summary.ok
    assert (dest / "deepcdr/a.txt").read_bytes() == b"alpha\n"


def test_only_selects_by_glob_or_prefix(tmp_path, server, manifest):
    summary = run(tmp_path / "dest", manifest, server, only=["deepcdr/GDSC/"])
    assert summary.ok == ["deepcdr/GDSC/list Mon 09_00.csv"]
    summary = run(tmp_path / "dest2", manifest, server, only=["*.txt"])
    assert summary.ok == ["deepcdr/a.txt"]
    with pytest.raises(ValueError, match="matches no manifest entry"):
        run(tmp_path / "dest3", manifest, server, only=["nothing/"])


def test_mirror_copy(tmp_path, manifest):
    mirror = tmp_path / "mirror"
    for local, (_, content) in FILES.items():
        (mirror / local).parent.mkdir(parents=True, exist_ok=True)
        (mirror / local).write_bytes(content)
    (mirror / "deepcdr/a.txt").write_bytes(b"tampered\n")
    dest = tmp_path / "dest"
    summary = run(dest, manifest, mirror=mirror)
    assert list(summary.failed) == ["deepcdr/a.txt"]
    assert not (dest / "deepcdr/a.txt").exists()
    for local in set(FILES) - {"deepcdr/a.txt"}:
        assert (dest / local).read_bytes() == FILES[local][1]
    (mirror / "deepcdr/GDSC/list Mon 09_00.csv").unlink()
    summary = run(tmp_path / "dest2", manifest, mirror=mirror)
    assert "not found in mirror" in summary.failed["deepcdr/GDSC/list Mon 09_00.csv"]


def test_derived_cells_written(tmp_path, server, manifest):
    dest = tmp_path / "dest"
    summary = run(dest, manifest, server)
    assert summary.derived == [fetch.DERIVED_CELLS]
    assert (dest / fetch.DERIVED_CELLS).read_text() == "ACH-000002\nACH-000001\n"
    assert any("vocab.json" in n and "scGPT checkpoint" in n for n in summary.notes)


def test_derived_cells_absent_without_csv(tmp_path, server, manifest):
    summary = run(tmp_path / "dest", manifest, server, only=["deepcdr/a.txt"])
    assert summary.derived == [] and not (tmp_path / "dest" / fetch.DERIVED_CELLS).exists()


def test_manifest_errors_name_file_and_expectation(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("\t".join(fetch.MANIFEST_COLUMNS) + "\nx\to/r\tc\tp\tnothex\t-\n")
    with pytest.raises(ValueError, match=r"bad\.tsv row 1: git_blob_sha1 must be 40 hex"):
        fetch.read_manifest(bad)


def test_launch_script_reports_failure(tmp_path, server):
    files = dict(FILES)
    files["deepcdr/a.txt"] = ("data/a.txt", b"not what is served\n")
    m = write_manifest(tmp_path / "m.tsv", files)
    proc = subprocess.run(
        [sys.executable, "launch/fetch_data.py", f"--dest={tmp_path / 'dest'}", f"--manifest={m}",
         f"--base_url={server.base_url}", "--retries=0", "--noprogress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 1 and summary["ok"] == len(FILES) - 1
    assert "deepcdr/a.txt" in summary["failures"]
    assert "FAILED: deepcdr/a.txt" in proc.stderr and "vocab.json" in proc.stderr


def test_shipped_manifest_parses():
    entries = fetch.read_manifest()
    assert fetch.EXPRESSION_CSV in {e.local_path for e in entries}
    assert all(e.repository and len(e.commit) == 40 for e in entries)


def _reassembled(data_dir: pathlib.Path) -> set[str]:
    """Local paths PROVENANCE.md marks as REASSEMBLED (falls back to the expression csv)."""
    prov = data_dir / "PROVENANCE.md"
    if not prov.is_file():
        return {fetch.EXPRESSION_CSV}
    return set(re.findall(r"^\|\s*([^|]+?)\s*\|\s*REASSEMBLED", prov.read_text(), flags=re.M))


def test_shipped_manifest_against_data_dir():
    data_dir = os.environ.get("CDR_DATA_DIR")
    if not data_dir:
        pytest.skip("CDR_DATA_DIR is not set; set it to a data root to check local files against the manifest")
    root = pathlib.Path(data_dir)
    reassembled = _reassembled(root)
    assert reassembled, f"{root}/PROVENANCE.md lists no REASSEMBLED file; expected the expression csv"
    checked = 0
    for entry in fetch.read_manifest():
        path = root / entry.local_path
        if not path.is_file():
            continue
        checked += 1
        if entry.local_path in reassembled:
            assert not fetch.is_verified(path, entry), f"{entry.local_path} is documented as reassembled yet matches"
        else:
            assert fetch.verification_error(path, entry) is None, fetch.verification_error(path, entry)
    assert checked, f"no manifest file found under {root}"


def test_unverifiable_local_csv_is_kept_and_flagged(tmp_path, server, manifest):
    """A local expression csv that differs from upstream (e.g. reassembled) survives a failed fetch, and is flagged."""
    server.put("data/CCLE/expr.csv", b"corrupt")
    dest = tmp_path / "dest"
    local_csv = dest / fetch.EXPRESSION_CSV
    local_csv.parent.mkdir(parents=True)
    local_csv.write_bytes(b"DepMap_ID,G1\nACH-000009,1\n")
    summary = run(dest, manifest, server)
    assert "left untouched" in summary.failed[fetch.EXPRESSION_CSV]
    assert local_csv.read_bytes() == b"DepMap_ID,G1\nACH-000009,1\n"
    assert (dest / fetch.DERIVED_CELLS).read_text() == "ACH-000009\n"
    assert any("does NOT match upstream" in n for n in summary.notes)
