"""Reading expression matrices (DeepCDR-style CSV or AnnData .h5ad) and writing embedding files.

No torch here: the output format is plain numpy + text + json, and `read_embedding` shows how a
consumer (cdr_jax) reads it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from embed_torch import InputDataError

OUTPUT_SUFFIX = '.npy'
METADATA_FORMAT = 'cdr-jax cell embedding v1'


@dataclasses.dataclass
class Expression:
  """A cells x genes matrix with its row ids and gene symbols (NaN = unknown)."""

  values: np.ndarray  # float64, (n_cells, n_genes)
  cells: list[str]
  genes: list[str]
  source: str  # the file it came from, for error messages and metadata


def read_expression(path: str | os.PathLike, gene_column: Optional[str] = None) -> Expression:
  """Read a CSV (first column = cell id, header = gene symbols) or an .h5ad file.

  Args:
    path: the file; `.h5ad` is read with anndata, anything else as CSV.
    gene_column: h5ad only: the `var` column holding gene symbols (default: var_names).

  Returns:
    The validated matrix: unique cell ids, unique gene symbols, numeric values, NaN kept.
  """
  path = Path(path)
  if not path.is_file():
    raise InputDataError(f'{path}: expression file not found')
  if path.suffix == '.h5ad':
    expr = _read_h5ad(path, gene_column)
  else:
    if gene_column is not None:
      raise InputDataError(f'{path}: --gene_column applies to .h5ad input only')
    expr = _read_csv(path)
  _check_ids(expr)
  return expr


def _read_csv(path: Path) -> Expression:
  """CSV reader that sees duplicate gene symbols before pandas renames them (`X.1`)."""
  with path.open(newline='') as f:
    header = next(csv.reader(f), None)
  if not header or len(header) < 2:
    raise InputDataError(f"{path}: expected a header row 'cell_id,<gene>,<gene>,...'")
  genes = [g.strip() for g in header[1:]]
  _check_unique(genes, path, 'gene symbol', 'column')
  # Read everything as text so a stray word is reported by cell and gene, not coerced.
  frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
  if frame.shape[1] != len(genes):
    raise InputDataError(
        f'{path}: header has {len(genes)} genes but rows have {frame.shape[1]} values')
  cells = [str(c).strip() for c in frame.index]
  values = _parse_numbers(frame.to_numpy(), cells, genes, path)
  return Expression(values=values, cells=cells, genes=genes, source=str(path))


_NAN_WORDS = {'', 'nan', 'na', 'n/a', 'null', 'none'}


def _parse_numbers(text: np.ndarray, cells: list[str], genes: list[str], path: Path) -> np.ndarray:
  """Turn a table of strings into float64; blanks and NaN/NA spellings become NaN."""
  values = np.empty(text.shape, dtype=np.float64)
  for i, row in enumerate(text):
    for j, cell_text in enumerate(row):
      token = cell_text.strip()
      if token.lower() in _NAN_WORDS:
        values[i, j] = np.nan
        continue
      try:
        values[i, j] = float(token)
      except ValueError:
        raise InputDataError(
            f'{path}: non-numeric value {token!r} for cell {cells[i]!r}, gene {genes[j]!r} '
            f'(row {i + 2}); expected a number, or NaN/blank for unknown') from None
  return values


def _read_h5ad(path: Path, gene_column: Optional[str]) -> Expression:
  """Read an AnnData file; X may be dense or sparse."""
  import anndata  # Only h5ad input needs it; keeps the CSV path light.

  adata = anndata.read_h5ad(path)
  if gene_column is None:
    genes = [str(g) for g in adata.var_names]
  elif gene_column not in adata.var.columns:
    raise InputDataError(
        f'{path}: var has no column {gene_column!r}; columns: {sorted(map(str, adata.var.columns))}'
    )
  else:
    genes = [str(g) for g in adata.var[gene_column]]
  matrix = adata.X.toarray() if hasattr(adata.X, 'toarray') else np.asarray(adata.X)
  if not np.issubdtype(matrix.dtype, np.number):
    raise InputDataError(f'{path}: X has non-numeric dtype {matrix.dtype}')
  _check_unique(genes, path, 'gene symbol', 'var entry')
  cells = [str(c) for c in adata.obs_names]
  return Expression(values=matrix.astype(np.float64), cells=cells, genes=genes, source=str(path))


def _check_ids(expr: Expression) -> None:
  """Cell ids and gene symbols must be non-empty and unique."""
  _check_unique(expr.cells, Path(expr.source), 'cell id', 'row')
  if expr.values.shape != (len(expr.cells), len(expr.genes)):
    raise InputDataError(f'{expr.source}: matrix shape {expr.values.shape} does not match ids')
  if not expr.cells:
    raise InputDataError(f'{expr.source}: no cells (rows) in the file')


def _check_unique(names: Sequence[str], path: Path, what: str, where: str) -> None:
  """Raise naming the first empty or repeated name and both of its positions."""
  seen: dict[str, int] = {}
  for i, name in enumerate(names):
    if not name:
      raise InputDataError(f'{path}: empty {what} at {where} {i + 1}')
    if name in seen:
      raise InputDataError(
          f'{path}: duplicate {what} {name!r} at {where}s {seen[name] + 1} and {i + 1}')
    seen[name] = i


def read_gene_list(path: str | os.PathLike) -> list[str]:
  """Gene symbols from a tab-separated file with a `gene_name` column (scFoundation's format)."""
  path = Path(path)
  if not path.is_file():
    raise InputDataError(f'{path}: gene list file not found')
  frame = pd.read_csv(path, sep='\t', dtype=str, keep_default_na=False)
  if 'gene_name' not in frame.columns:
    raise InputDataError(f"{path}: expected a tab-separated file with a 'gene_name' column")
  genes = [g.strip() for g in frame['gene_name']]
  _check_unique(genes, path, 'gene symbol', 'row')
  return genes


def sha256_file(path: str | os.PathLike) -> str:
  """Hex sha256 of a file, read in chunks (checkpoints are hundreds of MB)."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
  """The three files written for `--out PATH.npy`: npy, cells.txt, json."""
  out = Path(out)
  if out.suffix != OUTPUT_SUFFIX:
    raise InputDataError(
        f'{out}: --out must end in {OUTPUT_SUFFIX} (the .cells.txt/.json go beside it)')
  stem = out.with_suffix('')
  return {'npy': out, 'cells': Path(f'{stem}.cells.txt'), 'json': Path(f'{stem}.json')}


def write_outputs(out: str | os.PathLike, embeddings: np.ndarray, cells: Sequence[str],
                  metadata: dict[str, Any]) -> dict[str, Path]:
  """Write the npy, cells.txt and json atomically (temp file in the same directory + os.replace).

  All three temp files are complete before the first rename, so a crash leaves either the old
  set or (at worst, between renames) a mix of complete files, never a truncated one.
  """
  paths = output_paths(out)
  if embeddings.ndim != 2 or embeddings.shape[0] != len(cells):
    raise ValueError(f'embeddings {embeddings.shape} do not match {len(cells)} cell ids')
  paths['npy'].parent.mkdir(parents=True, exist_ok=True)
  array = np.ascontiguousarray(embeddings, dtype=np.float32)
  writers: dict[str, Callable[[Any], None]] = {
      'npy': lambda f: np.save(f, array, allow_pickle=False),
      'cells': lambda f: f.write(''.join(f'{c}\n' for c in cells).encode()),
      'json': lambda f: f.write((json.dumps(metadata, indent=2, sort_keys=True) + '\n').encode()),
  }
  temps = {key: _write_temp(paths[key], write) for key, write in writers.items()}
  for key, temp in temps.items():
    os.replace(temp, paths[key])
  return paths


def _write_temp(final: Path, write: Callable[[Any], None]) -> Path:
  """Write to a hidden temp file beside `final`, fsync it, return its path."""
  fd, name = tempfile.mkstemp(prefix=f'.{final.name}.', suffix='.tmp', dir=final.parent)
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:
    os.unlink(name)
    raise
  return Path(name)


def read_embedding(out: str | os.PathLike) -> tuple[np.ndarray, list[str], dict[str, Any]]:
  """Read back (embeddings, cell ids, metadata) written by `write_outputs`; numpy only."""
  paths = output_paths(out)
  embeddings = np.load(paths['npy'], allow_pickle=False)
  cells = paths['cells'].read_text().splitlines()
  metadata = json.loads(paths['json'].read_text())
  return embeddings, cells, metadata


def package_versions(names: Sequence[str]) -> dict[str, Optional[str]]:
  """Installed versions of `names` (None when absent), plus Python's."""
  versions: dict[str, Optional[str]] = {'python': platform.python_version()}
  for name in names:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions
