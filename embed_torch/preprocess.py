"""Explicit handling of gaps, gene-list alignment and per-cell normalisation of expression input.

Every step returns what it did (counts, dropped ids) so the json metadata can report it: real
data has gaps and nothing here changes the data silently.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from embed_torch import InputDataError
from embed_torch.io import Expression

NORMALISATIONS = ('none', 'cpm_log10', 'rowsum1e4_log1p')
FILL_NAN = ('zero', 'gene_mean')
_MAX_IDS_IN_MESSAGE = 5


def _some(names: Sequence[str]) -> str:
  """A short list of names for an error message."""
  shown = ', '.join(repr(n) for n in names[:_MAX_IDS_IN_MESSAGE])
  return shown + (f', ... ({len(names)} in all)' if len(names) > _MAX_IDS_IN_MESSAGE else '')


def handle_nan(expr: Expression, drop_nan_rows: bool,
               fill_nan: Optional[str]) -> tuple[Expression, dict[str, Any]]:
  """Refuse, drop or fill NaN as asked.

  Args:
    expr: the input matrix.
    drop_nan_rows: drop rows that are entirely NaN (otherwise they are an error).
    fill_nan: None (partial NaN is an error), 'zero' or 'gene_mean' (mean over the cells where
      the gene is known, after dropping all-NaN rows).

  Returns:
    The cleaned matrix and a report for the metadata.
  """
  if fill_nan is not None and fill_nan not in FILL_NAN:
    raise ValueError(f'fill_nan must be one of {FILL_NAN} or None, got {fill_nan!r}')
  _check_finite_and_nonnegative(expr)
  nan = np.isnan(expr.values)
  all_nan = nan.all(axis=1)
  dropped = [c for c, bad in zip(expr.cells, all_nan) if bad]
  if dropped and not drop_nan_rows:
    raise InputDataError(
        f'{expr.source}: {len(dropped)} cell(s) have no known value (entirely NaN): '
        f'{_some(dropped)}; '
        'pass --drop_nan_rows to drop them')
  keep = ~all_nan
  values = expr.values[keep]
  cells = [c for c, k in zip(expr.cells, keep) if k]
  if not cells:
    raise InputDataError(f'{expr.source}: every cell is entirely NaN')
  values, n_filled = _fill_partial_nan(values, cells, expr, fill_nan)
  report = {
      'all_nan_rows_dropped': len(dropped),
      'dropped_cells': dropped,
      'fill_nan': fill_nan,
      'nan_values_filled': n_filled,
  }
  return dataclasses.replace(expr, values=values, cells=cells), report


def _fill_partial_nan(values: np.ndarray, cells: list[str], expr: Expression,
                      fill_nan: Optional[str]) -> tuple[np.ndarray, int]:
  """Fill remaining NaN per `fill_nan`, or raise naming the first cell and gene with one."""
  nan = np.isnan(values)
  n_nan = int(nan.sum())
  if n_nan == 0:
    return values, 0
  if fill_nan is None:
    i, j = map(int, np.argwhere(nan)[0])
    raise InputDataError(
        f'{expr.source}: {n_nan} NaN value(s) in {int(nan.any(axis=1).sum())} cell(s), '
        f'first at cell '
        f'{cells[i]!r}, gene {expr.genes[j]!r}; pass --fill_nan zero|gene_mean (or --drop_nan_rows '
        'for rows that are entirely NaN)')
  values = values.copy()
  if fill_nan == 'zero':
    values[nan] = 0.0
    return values, n_nan
  unknown_everywhere = nan.all(axis=0)
  if unknown_everywhere.any():
    genes = [g for g, bad in zip(expr.genes, unknown_everywhere) if bad]
    raise InputDataError(
        f'{expr.source}: gene(s) {_some(genes)} are NaN in every cell, so --fill_nan gene_mean has '
        'no mean to use; use --fill_nan zero')
  means = np.nanmean(values, axis=0)
  values[nan] = np.take(means, np.nonzero(nan)[1])
  return values, n_nan


def _check_finite_and_nonnegative(expr: Expression) -> None:
  """Expression is counts, TPM or log(1 + x): infinities and negative values are errors."""
  values = expr.values
  for what, bad in (('infinite', np.isinf(values)), ('negative', values < 0)):
    if bad.any():
      i, j = map(int, np.argwhere(bad)[0])
      raise InputDataError(
          f'{expr.source}: {int(bad.sum())} {what} value(s), first {float(values[i, j]):g} at cell '
          f'{expr.cells[i]!r}, gene {expr.genes[j]!r}; expected non-negative expression')


def align_genes(expr: Expression, gene_list: Sequence[str]) -> tuple[Expression, dict[str, Any]]:
  """Reorder columns to `gene_list` by symbol; listed genes absent from the input are zero-filled.

  Input genes not in the list are dropped. Returns the aligned matrix and counts for metadata.
  """
  index = {g: j for j, g in enumerate(expr.genes)}
  matched = [g for g in gene_list if g in index]
  if not matched:
    raise InputDataError(
        f'{expr.source}: none of its {len(expr.genes)} gene symbols is in the gene list '
        f'({len(gene_list)} genes, e.g. {_some(list(gene_list))})')
  values = np.zeros((len(expr.cells), len(gene_list)), dtype=np.float64)
  for k, g in enumerate(gene_list):
    j = index.get(g)
    if j is not None:
      values[:, k] = expr.values[:, j]
  listed = set(gene_list)
  report = {
      'gene_list_size': len(gene_list),
      'input_genes': len(expr.genes),
      'input_genes_matched': len(matched),
      'input_genes_not_in_list': [g for g in expr.genes if g not in listed],
      'listed_genes_zero_filled': len(gene_list) - len(matched),
  }
  return dataclasses.replace(expr, values=values, genes=list(gene_list)), report


def row_totals(expr: Expression) -> np.ndarray:
  """Per-cell sums; a cell with nothing expressed is an error (it cannot be normalised)."""
  totals = expr.values.sum(axis=1)
  check_totals(totals, expr)
  return totals


def check_totals(totals: np.ndarray, expr: Expression) -> None:
  """Raise naming the cells whose total is not positive."""
  empty = [c for c, t in zip(expr.cells, totals) if not t > 0]
  if empty:
    raise InputDataError(
        f'{expr.source}: cell(s) with no expressed gene (row sum 0): {_some(empty)}')


def normalise(expr: Expression, method: str) -> Expression:
  """Per-cell normalisation.

  'cpm_log10': log10(x / rowsum * 1e6 + 1) (the seed paper); 'rowsum1e4_log1p':
  log1p(x / rowsum * 1e4) (scFoundation); 'none': unchanged. Zeros stay zero under all three.
  """
  if method not in NORMALISATIONS:
    raise ValueError(f'normalisation must be one of {NORMALISATIONS}, got {method!r}')
  if method == 'none':
    return expr
  totals = row_totals(expr)[:, None]
  if method == 'cpm_log10':
    values = np.log10(expr.values / totals * 1e6 + 1.0)
  else:
    values = np.log1p(expr.values / totals * 1e4)
  return dataclasses.replace(expr, values=values)


def prepare(
    expr: Expression,
    drop_nan_rows: bool,
    fill_nan: Optional[str],
    gene_list: Optional[Sequence[str]],
    normalisation: str,
) -> tuple[Expression, np.ndarray, dict[str, Any]]:
  """NaN handling, then optional alignment to a gene list, then normalisation.

  Returns:
    The normalised matrix, each cell's total before normalisation (after alignment), and a
    report for the metadata.
  """
  expr, nan_report = handle_nan(expr, drop_nan_rows, fill_nan)
  report: dict[str, Any] = {'nan': nan_report, 'normalisation': normalisation}
  if gene_list is not None:
    expr, report['gene_list_alignment'] = align_genes(expr, gene_list)
  totals = expr.values.sum(axis=1)
  report['row_totals_before_normalisation'] = _summary(totals)
  return normalise(expr, normalisation), totals, report


def _summary(x: np.ndarray) -> dict[str, float]:
  """Min / median / max of a vector, for the metadata."""
  return {'min': float(np.min(x)), 'median': float(np.median(x)), 'max': float(np.max(x))}
