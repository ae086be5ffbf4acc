"""Fetching pinned data files with pooch, from a loopback HTTP server (no network but 127.0.0.1)."""

import collections
import hashlib
import http.server
import json
import os
import pathlib
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from cdr_jax import data
from cdr_jax.data import cells
from cdr_jax.data import deepcdr
from cdr_jax.data import fetch
from cdr_jax.errors import DataError
from tests.conftest import TINY_CELLS, data_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REPO = 'someone/Data Repo'
COMMIT = '0123456789abcdef0123456789abcdef01234567'
EXPR_CSV = b'DepMap_ID,G1,G2\nACH-000002,1.0,2.0\nACH-000001,NaN,3.5\n'
FILES = {  # local_path -> (upstream_path, content)
    'deepcdr/a.txt': ('data/a.txt', b'alpha\n'),
    'deepcdr/GDSC/list Mon 09_00.csv': ('data/GDSC/list Mon 09_00.csv', b'id,name\n1,x\n'),
    fetch.EXPRESSION_CSV: ('data/CCLE/expr.csv', EXPR_CSV),
}
DEAD_URL = 'http://127.0.0.1:9'  # the discard port: nothing listens, so the connection is refused


def blob_sha1(content: bytes) -> str:
  """Git's blob hash, written independently of fetch.py."""
  return hashlib.sha1(b'blob ' + str(len(content)).encode() + b'\x00' + content).hexdigest()


class Server:
  """Loopback HTTP server of <repository>/<commit>/<upstream_path>, counting requests per path."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self.hits = collections.Counter()
    self.fail_first, self.stall_first = set(), set()  # upstream paths: 500 / slow on the first GET
    outer = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        rel = urllib.parse.unquote(self.path.lstrip('/'))
        upstream = rel.split('/', 3)[-1]
        outer.hits[upstream] += 1
        first = outer.hits[upstream] == 1
        if first and upstream in outer.fail_first:
          return self.send_error(500)
        if first and upstream in outer.stall_first:
          time.sleep(0.6)
        path = outer.root / rel
        if not path.is_file():
          return self.send_error(404)
        content = path.read_bytes()
        self.send_response(200)
        self.send_header('Content-Length', str(len(content)))
        self.end_headers()
        self.wfile.write(content)

      def log_message(self, *args):
        del args

    self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.base_url = f'http://127.0.0.1:{self.httpd.server_address[1]}'

  def put(self, upstream_path: str, content: bytes) -> None:
    path = self.root / REPO / COMMIT / upstream_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.fixture
def server(tmp_path):
  srv = Server(tmp_path / 'srv')
  for upstream, content in FILES.values():
    srv.put(upstream, content)
  thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={'poll_interval': 0.02},
                            daemon=True)
  thread.start()
  yield srv
  srv.httpd.shutdown()
  srv.httpd.server_close()


def write_manifest(path: pathlib.Path, files=None) -> pathlib.Path:
  """A manifest in the shipped format (comment, header, rows) for `files` (default FILES)."""
  lines = ['# test manifest', '\t'.join(fetch.COLUMNS)]
  for local, (upstream, content) in (files or FILES).items():
    lines.append('\t'.join([local, REPO, COMMIT, upstream, blob_sha1(content), str(len(content))]))
  path.write_text('\n'.join(lines) + '\n')
  return path


@pytest.fixture
def manifest(tmp_path):
  return write_manifest(tmp_path / 'manifest.tsv')


def run(dest, manifest, server=None, **kw):
  kw.setdefault('retries', 1)
  kw.setdefault('timeout', 5.0)
  return fetch.fetch_all(dest, manifest, base_url=server.base_url if server else DEAD_URL,
                         progress=False, **kw)


def strays(root: pathlib.Path) -> list[pathlib.Path]:
  """Anything left besides the data files: pooch temp files, staging folders."""
  return [p for p in root.rglob('*') if p.name.startswith(('tmp', '.fetch-'))]


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def test_blob_sha1_is_gits(tmp_path):
  (tmp_path / 'f').write_bytes(b'hello\n')
  # As `git hash-object f` prints.
  assert fetch.git_blob_sha1(tmp_path / 'f') == 'ce013625030ba8dba906f756967f9e9ca394464a'


def test_url_is_quoted():
  entry = fetch.Entry('x', 'o/r', 'c' * 40, 'data/GDSC/1.Drug_listMon Jun 24.csv', '0' * 40, None)
  assert entry.url('http://h/') == (
      f'http://h/o/r/{"c" * 40}/data/GDSC/1.Drug_listMon%20Jun%2024.csv')


def test_download_verified_and_moved_into_place(tmp_path, server, manifest, monkeypatch):
  replaced = []
  real_replace = os.replace
  monkeypatch.setattr(os, 'replace', lambda a, b: (replaced.append((str(a), str(b))),
                                                   real_replace(a, b))[1])
  dest = tmp_path / 'dest'
  summary = run(dest, manifest, server)
  assert summary.failed == {} and sorted(summary.ok) == sorted(FILES)
  for local, (_, content) in FILES.items():
    assert (dest / local).read_bytes() == content
    assert stat.S_IMODE((dest / local).stat().st_mode) == 0o666 & ~_umask()  # not tempfile's 0600
  # Each file (and the derived one) arrives by one rename from inside dest, never written in place.
  targets = {str(dest / local): local for local in [*FILES, fetch.DERIVED_CELLS]}
  assert sorted(b for _, b in replaced) == sorted(targets)
  assert all(a.startswith(str(dest / '.fetch-') if targets[b] in FILES else f'{b}.'.replace(
      pathlib.Path(b).name, '.' + pathlib.Path(b).name)) for a, b in replaced)
  assert strays(dest) == []
  assert json.loads(summary.to_json())['ok'] == 3


def test_corrupt_download_is_rejected_named_and_not_retried(tmp_path, server, manifest):
  server.put('data/a.txt', b'alphA\n')  # same size, other content
  dest = tmp_path / 'dest'
  summary = run(dest, manifest, server)
  assert list(summary.failed) == ['deepcdr/a.txt']
  assert f'expected {blob_sha1(FILES["deepcdr/a.txt"][1])}' in summary.failed['deepcdr/a.txt']
  assert not (dest / 'deepcdr/a.txt').exists() and strays(dest) == []
  assert len(summary.ok) == 2  # the other files were still fetched
  assert server.hits['data/a.txt'] == 1  # a pinned blob that mismatches will mismatch again


def test_lfs_pointer_is_not_data(tmp_path, server):
  pointer = b'version https://git-lfs.github.com/spec/v1\noid sha256:' + b'0' * 64 + b'\nsize 123\n'
  server.put('data/big.csv', pointer)
  m = write_manifest(tmp_path / 'm.tsv', {'deepcdr/big.csv': ('data/big.csv', pointer)})
  summary = run(tmp_path / 'dest', m, server)
  assert 'Git LFS pointer' in summary.failed['deepcdr/big.csv']
  assert not (tmp_path / 'dest/deepcdr/big.csv').exists()


def test_server_error_is_retried(tmp_path, server, manifest):
  server.fail_first.add('data/a.txt')
  summary = run(tmp_path / 'dest', manifest, server)
  assert summary.failed == {} and server.hits['data/a.txt'] == 2
  assert (tmp_path / 'dest/deepcdr/a.txt').read_bytes() == b'alpha\n'


def test_server_error_without_retries_fails(tmp_path, server, manifest):
  server.fail_first.add('data/a.txt')
  summary = run(tmp_path / 'dest', manifest, server, retries=0)
  assert '500 Server Error' in summary.failed['deepcdr/a.txt'] and server.hits['data/a.txt'] == 1


def test_timeout_is_retried(tmp_path, server, manifest):
  server.stall_first.add('data/a.txt')
  summary = run(tmp_path / 'dest', manifest, server, timeout=0.2)
  assert summary.failed == {} and server.hits['data/a.txt'] == 2


def test_404_is_not_retried(tmp_path, server):
  m = write_manifest(tmp_path / 'm.tsv', {'deepcdr/gone.txt': ('data/gone.txt', b'x')})
  summary = run(tmp_path / 'dest', m, server, retries=3)
  assert 'HTTP 404' in summary.failed['deepcdr/gone.txt'] and server.hits['data/gone.txt'] == 1


def test_verified_file_is_skipped(tmp_path, server, manifest):
  dest = tmp_path / 'dest'
  (dest / 'deepcdr').mkdir(parents=True)
  (dest / 'deepcdr/a.txt').write_bytes(b'alpha\n')
  assert run(dest, manifest, server).skipped == ['deepcdr/a.txt']
  assert server.hits['data/a.txt'] == 0
  again = run(dest, manifest, server)
  assert sorted(again.skipped) == sorted(FILES) and again.ok == []
  assert sum(server.hits.values()) == 2


def test_unverified_existing_file_is_replaced(tmp_path, server, manifest):
  dest = tmp_path / 'dest'
  (dest / 'deepcdr').mkdir(parents=True)
  (dest / 'deepcdr/a.txt').write_bytes(b'stale\n')
  assert 'deepcdr/a.txt' in run(dest, manifest, server).ok
  assert (dest / 'deepcdr/a.txt').read_bytes() == b'alpha\n'


def test_unverifiable_local_csv_is_kept_and_flagged(tmp_path, server, manifest):
  """A local expression csv unlike upstream's (reassembled) survives a failed fetch, flagged."""
  server.put('data/CCLE/expr.csv', b'corrupt')
  dest = tmp_path / 'dest'
  local_csv = dest / fetch.EXPRESSION_CSV
  local_csv.parent.mkdir(parents=True)
  local_csv.write_bytes(b'DepMap_ID,G1\nACH-000009,1\n')
  summary = run(dest, manifest, server)
  assert 'left untouched' in summary.failed[fetch.EXPRESSION_CSV]
  assert local_csv.read_bytes() == b'DepMap_ID,G1\nACH-000009,1\n'
  assert (dest / fetch.DERIVED_CELLS).read_text() == 'ACH-000009\n'
  assert any('does NOT match upstream' in n for n in summary.notes)


def test_only_selects_by_glob_or_prefix(tmp_path, server, manifest):
  assert run(tmp_path / 'd1', manifest, server, only=['deepcdr/GDSC/']).ok == [
      'deepcdr/GDSC/list Mon 09_00.csv']
  assert run(tmp_path / 'd2', manifest, server, only=['*.txt']).ok == ['deepcdr/a.txt']
  with pytest.raises(ValueError, match='matches no entry'):
    run(tmp_path / 'd3', manifest, server, only=['nothing/'])


def test_mirror_copy_is_verified(tmp_path, manifest):
  mirror = tmp_path / 'mirror'
  for local, (_, content) in FILES.items():
    (mirror / local).parent.mkdir(parents=True, exist_ok=True)
    (mirror / local).write_bytes(content)
  (mirror / 'deepcdr/a.txt').write_bytes(b'tampered\n')
  dest = tmp_path / 'dest'
  summary = run(dest, manifest, mirror=mirror)  # the base URL is dead: nothing goes over HTTP
  assert list(summary.failed) == ['deepcdr/a.txt'] and 'size 9 bytes, expected 6' in (
      summary.failed['deepcdr/a.txt'])
  assert not (dest / 'deepcdr/a.txt').exists()
  for local in set(FILES) - {'deepcdr/a.txt'}:
    assert (dest / local).read_bytes() == FILES[local][1]
  (mirror / 'deepcdr/GDSC/list Mon 09_00.csv').unlink()
  summary = run(tmp_path / 'dest2', manifest, mirror=mirror)
  assert 'not found in mirror' in summary.failed['deepcdr/GDSC/list Mon 09_00.csv']


def test_derived_cells_written(tmp_path, server, manifest):
  dest = tmp_path / 'dest'
  summary = run(dest, manifest, server)
  assert summary.derived == [fetch.DERIVED_CELLS]
  assert (dest / fetch.DERIVED_CELLS).read_text() == 'ACH-000002\nACH-000001\n'
  assert any('vocab.json' in n and 'scGPT checkpoint' in n for n in summary.notes)


def test_derived_cells_absent_without_csv(tmp_path, server, manifest):
  summary = run(tmp_path / 'dest', manifest, server, only=['deepcdr/a.txt'])
  assert summary.derived == [] and not (tmp_path / 'dest' / fetch.DERIVED_CELLS).exists()


def test_manifest_errors_name_file_and_expectation(tmp_path):
  bad = tmp_path / 'bad.tsv'
  bad.write_text('\t'.join(fetch.COLUMNS) + '\nx\to/r\tc\tp\tnothex\t-\n')
  with pytest.raises(DataError, match=r'bad\.tsv row 1: git_blob_sha1 must be 40 hex'):
    fetch.read_manifest(bad)
  bad.write_text('local_path\trepo\n')
  with pytest.raises(DataError, match=r"bad\.tsv: manifest header is \['local_path', 'repo'\]"):
    fetch.read_manifest(bad)


def test_launch_script_reports_failure(tmp_path, server):
  files = dict(FILES)
  files['deepcdr/a.txt'] = ('data/a.txt', b'not what is served\n')
  m = write_manifest(tmp_path / 'm.tsv', files)
  proc = subprocess.run(
      [sys.executable, 'launch/fetch_data.py', f'--dest={tmp_path / "dest"}', f'--manifest={m}',
       f'--base_url={server.base_url}', '--retries=0', '--noprogress'],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
  assert proc.returncode == 1, proc.stderr
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary['failed'] == 1 and summary['ok'] == 2 and 'deepcdr/a.txt' in summary['failures']
  assert 'FAILED: deepcdr/a.txt' in proc.stderr and 'vocab.json' in proc.stderr


def test_shipped_manifest_parses():
  entries = fetch.read_manifest()
  assert {fetch.EXPRESSION_CSV, 'scfoundation/50M-0.1B-res_embedding.npy'} <= {
      e.local_path for e in entries}
  assert all(e.repository.count('/') == 1 and len(e.commit) == 40 for e in entries)


def _reassembled(root: pathlib.Path) -> set[str]:
  """Local paths PROVENANCE.md marks as REASSEMBLED."""
  return set(re.findall(r'^\|\s*([^|]+?)\s*\|\s*REASSEMBLED', (root / 'PROVENANCE.md').read_text(),
                        flags=re.M))


def test_shipped_manifest_against_data_root(data_root):
  reassembled = _reassembled(data_root)
  assert reassembled == {fetch.EXPRESSION_CSV}
  absent = set()
  for entry in fetch.read_manifest():
    if not (data_root / entry.local_path).is_file():
      absent.add(entry.local_path)
      continue
    error = fetch.verification_error(data_root / entry.local_path, entry)
    if entry.local_path in reassembled:
      assert error and 'git blob SHA-1' in error, f'{entry.local_path} is reassembled yet matches'
    else:
      assert error is None, error
  # All but the mutation and copy-number csvs, which the data root lacks, and the binding panels,
  # which ../shared/data lacks (a root that has them has them verified above).
  assert {p for p in absent if not p.startswith('binding/')} == {
      'deepcdr/CCLE/genomic_mutation_34673_demap_features.csv',
      'deepcdr/CCLE/genomic_copynumber_561celllines_710genes_demap_features.csv'}


# ------------------------------------------------------------- ensure: fetch on first use


@pytest.fixture
def online(monkeypatch, manifest):
  """Lets `ensure` fetch (conftest turns it off) and points it at the test manifest."""
  monkeypatch.delenv(fetch.OFFLINE_ENV)
  monkeypatch.setattr(fetch, 'MANIFEST', manifest)


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob('*'))}


def test_ensure_fetches_missing_file_on_first_use(tmp_path, server, online, capfd):
  del online
  root = tmp_path / 'root'
  (root / 'deepcdr').mkdir(parents=True)
  (root / 'deepcdr/a.txt').write_bytes(b'present, not checked\n')
  fetch.ensure(root, ['deepcdr/a.txt', root / 'deepcdr/GDSC/list Mon 09_00.csv', 'not/in/manifest'],
               base_url=server.base_url)
  assert (root / 'deepcdr/GDSC/list Mon 09_00.csv').read_bytes() == b'id,name\n1,x\n'
  assert server.hits == {'data/GDSC/list Mon 09_00.csv': 1}  # the present file was not fetched
  assert (root / 'deepcdr/a.txt').read_bytes() == b'present, not checked\n'
  assert re.search(r'100%\|.*\| 12\.0/12\.0 ', capfd.readouterr().err)  # tqdm's bar, 12 bytes
  assert strays(root) == []


def test_ensure_rejects_a_mismatching_download(tmp_path, server, online):
  del online
  server.put('data/a.txt', b'alphA\n')
  root = tmp_path / 'root'
  with pytest.raises(DataError) as e:
    fetch.ensure(root, ['deepcdr/a.txt'], base_url=server.base_url, progress=False)
  assert f'missing file {root}/deepcdr/a.txt' in str(e.value)
  assert 'git blob SHA-1' in str(e.value) and not (root / 'deepcdr/a.txt').exists()


def test_ensure_offline_names_files_and_command(tmp_path, online):
  del online
  root = tmp_path / 'root'
  with pytest.raises(DataError) as e:
    fetch.ensure(root, ['deepcdr/a.txt', fetch.EXPRESSION_CSV], base_url=DEAD_URL, retries=0,
                 progress=False)
  message = str(e.value)
  assert message.startswith(f'missing file {root}/deepcdr/a.txt, {root}/{fetch.EXPRESSION_CSV}: ')
  assert 'Connection refused' in message
  assert message.endswith(f'fetch the data with: python launch/fetch_data.py --dest {root}')


def test_ensure_with_offline_env_does_not_connect(tmp_path, server, online, monkeypatch):
  del online
  monkeypatch.setenv(fetch.OFFLINE_ENV, '1')
  with pytest.raises(DataError, match=r'deepcdr/a\.txt: fetching failed \(\$CDR_OFFLINE is set\); '
                     r'fetch the data with: python launch/fetch_data.py --dest'):
    fetch.ensure(tmp_path, ['deepcdr/a.txt'], base_url=server.base_url)
  assert sum(server.hits.values()) == 0


def test_ensure_derives_cells_list_fetching_its_csv(tmp_path, server, online):
  del online
  root = tmp_path / 'root'
  fetch.ensure(root, [fetch.DERIVED_CELLS], base_url=server.base_url, progress=False)
  assert (root / fetch.EXPRESSION_CSV).read_bytes() == EXPR_CSV
  assert (root / fetch.DERIVED_CELLS).read_text() == 'ACH-000002\nACH-000001\n'
  (root / fetch.DERIVED_CELLS).unlink()
  fetch.ensure(root, [fetch.DERIVED_CELLS], base_url=DEAD_URL, progress=False)  # csv is there
  assert (root / fetch.DERIVED_CELLS).read_text() == 'ACH-000002\nACH-000001\n'
  assert server.hits == {'data/CCLE/expr.csv': 1}


def test_ensure_present_files_touch_nothing(data_root, monkeypatch):
  """The CI's read-only data root: every needed file is there, so nothing is fetched or written."""
  monkeypatch.delenv(fetch.OFFLINE_ENV)
  monkeypatch.setattr(fetch.pooch, 'create', lambda *a, **k: pytest.fail('pooch was used'))
  monkeypatch.setattr(fetch, 'read_manifest', lambda *a: pytest.fail('the manifest was read'))
  before = _snapshot(data_root)
  paths = [deepcdr.DRUG_LIST_FILE, deepcdr.SMILES_FILE, deepcdr.THRESHOLD_FILE,
           deepcdr.ANNOTATION_FILE, deepcdr.IC50_FILE, cells.EXPRESSION_FILE,
           cells.METHYLATION_FILE, 'scfoundation/50M-0.1B-res_embedding.npy', fetch.DERIVED_CELLS]
  fetch.ensure(data_root, paths, base_url=DEAD_URL)
  ds = data.load_dataset(data_config(data_root, 'scfoundation+methylation'))
  assert ds.cell_features.shape == (561, 768 + 808)
  assert _snapshot(data_root) == before


def test_load_deepcdr_fetches_missing_files(tiny_root, tmp_path, monkeypatch):
  """A tiny root missing three files loads as if complete: they are fetched on first use."""
  srv = Server(tmp_path / 'srv')
  gone = [deepcdr.IC50_FILE, 'scfoundation/50M-0.1B-res_embedding.npy', fetch.DERIVED_CELLS]
  files = {p: (f'up/{p}', (tiny_root / p).read_bytes()) for p in gone[:2] + [deepcdr.SMILES_FILE]}
  for upstream, content in files.values():
    srv.put(upstream, content)
  expected = {p: (tiny_root / p).read_bytes() for p in gone}
  for p in gone:
    (tiny_root / p).unlink()
  thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={'poll_interval': 0.02},
                            daemon=True)
  thread.start()
  try:
    monkeypatch.delenv(fetch.OFFLINE_ENV)
    monkeypatch.setattr(fetch, 'MANIFEST', write_manifest(tmp_path / 'm.tsv', files))
    monkeypatch.setattr(fetch, 'BASE_URL', srv.base_url)
    ds = data.load_dataset(data_config(tiny_root, 'scfoundation'))
  finally:
    srv.httpd.shutdown()
    srv.httpd.server_close()
  assert (ds.num_pairs, ds.cell_ids) == (20, tuple(TINY_CELLS))  # as test_deepcdr's complete root
  assert {p: (tiny_root / p).read_bytes() for p in gone} == expected
  assert srv.hits == {f'up/{p}': 1 for p in gone[:2]}  # the present SMILES file was not fetched
