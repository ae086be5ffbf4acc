"""Safe, strict readers for the DeepCDR data files and for embedding files.

Every reader checks headers, ids and values, and raises `DataError` naming the file, the row or id and
what was expected. Arrays are read with `allow_pickle=False`.
"""

import csv
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator

import numpy as np

from cdr_jax.errors import DataError

PathLike = str | os.PathLike
_UMASK = os.umask(0)
os.umask(_UMASK)


def require_file(path: PathLike, what: str) -> pathlib.Path:
  """Returns `path` as a Path, or raises naming the missing file and what it should hold."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f'missing file {path}: expected {what}')
  return path


def _rows(path: pathlib.Path, delimiter: str) -> Iterator[list[str]]:
  with open(path, newline='', encoding='utf-8') as f:
    yield from csv.reader(f, delimiter=delimiter)


def read_table(path: PathLike, what: str, header: list[str] | None = None,
               delimiter: str = ',') -> tuple[list[str], list[list[str]]]:
  """Reads a delimited text file; checks that its header starts with `header` if given."""
  path = require_file(path, what)
  rows = [r for r in _rows(path, delimiter) if r]
  if not rows:
    raise DataError(f'{path} is empty: expected {what}')
  head, body = rows[0], rows[1:]
  if header is not None and [h.strip() for h in head[:len(header)]] != header:
    raise DataError(f'{path}: wrong header {head[:len(header)]}, expected {header} ({what})')
  for i, row in enumerate(body, start=2):
    if len(row) != len(head):
      raise DataError(f'{path} line {i}: {len(row)} fields, expected {len(head)} like the header')
  return head, body


def parse_float(text: str, path: PathLike, row_id: str, column: str, allow_na: bool) -> float:
  """Parses one value; 'NA'/'NaN'/'' become nan when `allow_na`, anything else non-numeric raises."""
  text = text.strip()
  if text in ('NA', 'NaN', 'nan', ''):
    if allow_na:
      return float('nan')
    raise DataError(f'{path}: missing value for row {row_id!r}, column {column!r}')
  try:
    return float(text)
  except ValueError:
    raise DataError(f'{path}: non-numeric value {text!r} for row {row_id!r}, column {column!r}') from None


def check_unique(ids: list[str], path: PathLike, what: str) -> None:
  """Raises on the first duplicated id."""
  seen = set()
  for i in ids:
    if i in seen:
      raise DataError(f'{path}: duplicate {what} {i!r}')
    seen.add(i)


def read_matrix_csv(path: PathLike, what: str, id_column: str | None = None,
                    allow_na: bool = True) -> tuple[list[str], list[str], np.ndarray]:
  """Reads an ids x columns numeric csv (first column = row ids). Returns (row ids, columns, float32)."""
  head, body = read_table(path, what, header=None if id_column is None else [id_column])
  ids = [r[0].strip() for r in body]
  check_unique(ids, path, 'row id')
  columns = [c.strip() for c in head[1:]]
  check_unique(columns, path, 'column')
  values = np.empty((len(body), len(columns)), np.float32)
  for i, row in enumerate(body):
    try:
      values[i] = [float(v) if v not in ('NA', '') else np.nan for v in row[1:]]
    except ValueError:  # Slow path only to name the offending value.
      for col, v in zip(columns, row[1:]):
        parse_float(v, path, ids[i], col, allow_na)
    if not allow_na and np.isnan(values[i]).any():
      col = columns[int(np.argmax(np.isnan(values[i])))]
      raise DataError(f'{path}: missing value for row {ids[i]!r}, column {col!r}')
  return ids, columns, values


def read_ids(path: PathLike, what: str) -> list[str]:
  """Reads one id per line (blank lines ignored); ids must be unique."""
  path = require_file(path, what)
  ids = [line.strip() for line in path.read_text(encoding='utf-8').splitlines() if line.strip()]
  check_unique(ids, path, 'id')
  return ids


def read_embedding(npy_path: PathLike) -> tuple[list[str], np.ndarray]:
  """Reads an embedding `<name>.npy` (cells x d) and its row ids `<name>.cells.txt`."""
  npy_path = require_file(npy_path, 'a cells x d float embedding (.npy)')
  ids_path = npy_path.with_suffix('.cells.txt')
  ids = read_ids(ids_path, f'the row ids of {npy_path.name}, one cell id per line')
  try:
    matrix = np.load(npy_path, allow_pickle=False)
  except ValueError as e:
    raise DataError(f'{npy_path}: not a plain numeric .npy array ({e})') from None
  if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
    raise DataError(f'{npy_path}: expected a 2-D numeric array, got shape {matrix.shape} {matrix.dtype}')
  if matrix.shape[0] != len(ids):
    raise DataError(f'{npy_path}: {matrix.shape[0]} rows but {ids_path} lists {len(ids)} ids')
  if not np.isfinite(matrix).all():
    row = int(np.argwhere(~np.isfinite(matrix))[0, 0])
    raise DataError(f'{npy_path}: non-finite value in row {row} (cell {ids[row]!r})')
  return ids, matrix.astype(np.float32)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically: a temp file in the same directory, fsync, then rename."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files 0600; outputs are meant to be shared
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def atomic_write_text(path: PathLike, text: str) -> None:
  """Writes text atomically (see `atomic_write_bytes`)."""
  atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: PathLike, obj) -> None:
  """Writes JSON atomically, indented, keys in insertion order."""
  atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + '\n')


def _json_default(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f'not JSON serialisable: {type(x)}')
