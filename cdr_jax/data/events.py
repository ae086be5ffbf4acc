"""GDSC binary event matrix (mutations, copy-number segments, MSI) as cell representations.

The matrix (gdsctools' `genomic_features_v17`) keys its rows by COSMIC id; this project's cell lines
are DepMap `ACH-` ids. `map_to_depmap` joins the two by name, explicitly and never by guess:
COSMIC id -> GDSC `SAMPLE_NAME` (cosmic_info) -> the CCLE annotation rows whose `Name` is exactly that
name, else those whose `Name` or `CCLE_ID` prefix agrees after normalising (upper case, letters and digits
only) -> `depMapID`. A name with several candidate ids, or an id claimed by several COSMIC ids, is
ambiguous: reported and left out.

Representations: 'mutation' (the `<GENE>_mut` flags plus MSI, a mutational phenotype) and 'cna' (the
recurrent `gain_cna*` / `loss_cna*` segments), so 'mutation+cna' is the whole matrix.
"""

import collections
import csv
import dataclasses
import gzip
import logging
import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from cdr_jax.data.layout import ANNOTATION_FILE, COSMIC_FILE, EVENTS_FILE
from cdr_jax.errors import DataError

KINDS = {'mutation': ('mutation', 'msi'), 'cna': ('cna',)}  # representation -> column groups
_ID, _TISSUE, _MSI = 'COSMIC_ID', 'TISSUE_FACTOR', 'MSI_FACTOR'
_MISSING = ('', 'NA', 'NaN', 'nan')


@dataclasses.dataclass(frozen=True)
class Events:
  """The event matrix: one row per COSMIC id, one 0/1 column per event (nan where left blank)."""
  cosmic_ids: list[str]
  columns: list[str]
  values: np.ndarray  # [lines, events] float32
  tissue: list[str]  # TISSUE_FACTOR per row: a label, not an event, so not among the columns

  def group(self, name: str) -> np.ndarray:
    """Indices of the columns of one group: 'mutation', 'cna' or 'msi'."""
    return np.array([j for j, c in enumerate(self.columns) if column_group(c) == name], dtype=int)


class Match(NamedTuple):
  """How one COSMIC line fared in the name mapping."""
  cosmic_id: str
  name: str  # GDSC SAMPLE_NAME; '' when cosmic_info has no row for the id
  depmap_ids: tuple[str, ...]  # the mapped id, the competing candidates, or () when none
  rule: str  # mapped: 'exact' / 'normalised'; else 'no name', 'no match', 'several ids', 'id shared'


@dataclasses.dataclass(frozen=True)
class MappingReport:
  """Every line of the event matrix, in row order, as mapped, unmapped or ambiguous."""
  mapped: list[Match]
  unmapped: list[Match]
  ambiguous: list[Match]

  def summary(self) -> str:
    """One line for the log: counts, the unmapped names and the ambiguous ones with candidates."""
    ambiguous = [f'{m.name} ({m.rule}: {"/".join(m.depmap_ids)})' for m in self.ambiguous]
    return (f'{len(self.mapped)} mapped; {len(self.unmapped)} unmapped: '
            f'{", ".join(sorted(m.name or m.cosmic_id for m in self.unmapped))}; '
            f'{len(self.ambiguous)} ambiguous: {", ".join(sorted(ambiguous))}')


def column_group(column: str) -> str | None:
  """'mutation', 'cna', 'msi', or None for a column that is not an event."""
  if column.endswith('_mut'):
    return 'mutation'
  if column.startswith(('gain_cna', 'loss_cna')):
    return 'cna'
  return 'msi' if column == _MSI else None


def event_genes(column: str) -> tuple[str, ...]:
  """Genes an event names: 'BRAF_mut' -> ('BRAF',); 'gain_cnaPANCAN59_(CCND1,CTTN)' -> both; MSI -> ()."""
  if column.endswith('_mut'):
    return (column[:-len('_mut')],)
  if '(' in column and column.endswith(')'):
    return tuple(g for g in column[column.index('(') + 1:-1].split(',') if g)
  return ()


def normalise_name(name: str) -> str:
  """Upper case, letters and digits only: 'NCI-H460', 'nci_h460' and 'NCIH460' agree."""
  return ''.join(ch for ch in name.upper() if ch.isalnum())


def _read_rows(path: pathlib.Path, what: str, delimiter: str = ',') -> list[list[str]]:
  """Non-empty rows of a csv (gzipped if the name ends in .gz); the header first."""
  if not path.is_file():
    raise DataError(f'missing file {path}: expected {what}')
  opener = gzip.open if path.suffix == '.gz' else open
  with opener(path, 'rt', newline='', encoding='utf-8') as f:
    rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
  if not rows:
    raise DataError(f'{path} is empty: expected {what}')
  for i, row in enumerate(rows[1:], start=2):
    if len(row) != len(rows[0]):
      raise DataError(f'{path} line {i}: {len(row)} fields, expected {len(rows[0])} like the header')
  return rows


def _column(path: pathlib.Path, head: list[str], name: str) -> int:
  """Index of column `name` in the header of `path`."""
  if name not in head:
    raise DataError(f'{path}: no column {name!r} in the header (has {head[:6]}...)')
  return head.index(name)


def _event_value(text: str, path: pathlib.Path, cosmic_id: str, column: str) -> float:
  """0 or 1; nan for a blank."""
  text = text.strip()
  if text in ('0', '1'):
    return float(text)
  if text in _MISSING:
    return float('nan')
  raise DataError(f'{path}: COSMIC id {cosmic_id}, column {column!r}: value {text!r}, expected 0 or 1')


def read_events(root: pathlib.Path) -> Events:
  """Reads the event matrix under `root`; every column but COSMIC_ID and TISSUE_FACTOR is an event."""
  path = pathlib.Path(root) / EVENTS_FILE
  rows = _read_rows(path, 'GDSC binary event matrix: COSMIC_ID, TISSUE_FACTOR, events')
  head = [h.strip() for h in rows[0]]
  if head[0] != _ID:
    raise DataError(f'{path}: first column is {head[0]!r}, expected {_ID!r}')
  tissue_at = head.index(_TISSUE) if _TISSUE in head else None
  cols = [j for j in range(1, len(head)) if j != tissue_at]
  for j in cols:
    if column_group(head[j]) is None:
      raise DataError(f'{path}: column {head[j]!r} is not an event (expected <GENE>_mut, '
                      f'gain_cna*/loss_cna* or {_MSI})')
  ids = [r[0].strip() for r in rows[1:]]
  seen = collections.Counter(ids)
  if '' in seen or max(seen.values(), default=1) > 1:
    bad = '' if '' in seen else seen.most_common(1)[0][0]
    raise DataError(f'{path}: COSMIC id {bad!r} is empty or repeated; expected one row per line')
  values = np.array([[_event_value(r[j], path, cid, head[j]) for j in cols]
                     for cid, r in zip(ids, rows[1:])], dtype=np.float32).reshape(len(ids), len(cols))
  tissue = [r[tissue_at].strip() if tissue_at is not None else '' for r in rows[1:]]
  return Events(ids, [head[j] for j in cols], values, tissue)


def _sample_names(root: pathlib.Path) -> dict[str, str]:
  """COSMIC id -> GDSC sample name, from cosmic_info."""
  path = pathlib.Path(root) / COSMIC_FILE
  rows = _read_rows(path, 'GDSC cell lines: SAMPLE_NAME, COSMIC_ID, ...')
  at_name, at_id = _column(path, rows[0], 'SAMPLE_NAME'), _column(path, rows[0], _ID)
  names = {}
  for i, row in enumerate(rows[1:], start=2):
    cid, name = row[at_id].strip(), row[at_name].strip()
    if names.get(cid, name) != name:
      raise DataError(f'{path} line {i}: COSMIC id {cid} is named {name!r} and {names[cid]!r}')
    names[cid] = name
  return names


def _annotation_index(root: pathlib.Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
  """(exact `Name` -> ACH ids, normalised `Name` or `CCLE_ID` prefix -> ACH ids)."""
  path = pathlib.Path(root) / ANNOTATION_FILE
  rows = _read_rows(path, 'CCLE annotation: CCLE_ID, depMapID, Name, ...', delimiter='\t')
  at = [_column(path, rows[0], c) for c in ('CCLE_ID', 'depMapID', 'Name')]
  exact, normalised = collections.defaultdict(set), collections.defaultdict(set)
  for i, row in enumerate(rows[1:], start=2):
    ccle_id, ach, name = (row[j].strip() for j in at)
    if ach in _MISSING:
      continue  # a CCLE line without a DepMap id cannot be a target
    if not ach.startswith('ACH-'):
      raise DataError(f'{path} line {i}: depMapID {ach!r}, expected ACH-<digits> or NA')
    if name not in _MISSING:
      exact[name].add(ach)
    # CCLE_ID is '<NAME>_<TISSUE>' with the name already stripped of punctuation.
    keys = {normalise_name(k) for k in (name, ccle_id.split('_', 1)[0]) if k not in _MISSING}
    for key in keys - {''}:
      normalised[key].add(ach)
  return exact, normalised


def _match(cosmic_id: str, name: str | None, exact, normalised) -> Match:
  """The candidates for one line: those whose `Name` is exactly `name`, else the normalised match."""
  if not name:
    return Match(cosmic_id, '', (), 'no name')
  hit = exact.get(name)
  found = tuple(sorted(hit or normalised.get(normalise_name(name), ())))
  if len(found) == 1:
    return Match(cosmic_id, name, found, 'exact' if hit else 'normalised')
  return Match(cosmic_id, name, found, 'several ids' if found else 'no match')


def map_to_depmap(events: Events, root: pathlib.Path) -> tuple[dict[str, str], MappingReport]:
  """COSMIC id -> ACH id for the lines that map unambiguously, and the report on every line."""
  return map_cosmic_ids(events.cosmic_ids, root)


def map_cosmic_ids(cosmic_ids: Sequence[str],
                   root: pathlib.Path) -> tuple[dict[str, str], MappingReport]:
  """`map_to_depmap` for any list of COSMIC ids (e.g. every line of cosmic_info)."""
  names = _sample_names(root)
  exact, normalised = _annotation_index(root)
  matches = [_match(c, names.get(c), exact, normalised) for c in cosmic_ids]
  claims = collections.Counter(m.depmap_ids[0] for m in matches if len(m.depmap_ids) == 1)
  mapped, unmapped, ambiguous = [], [], []
  for m in matches:
    if len(m.depmap_ids) == 1 and claims[m.depmap_ids[0]] > 1:
      ambiguous.append(m._replace(rule='id shared'))  # two GDSC lines, one DepMap line
    elif len(m.depmap_ids) == 1:
      mapped.append(m)
    else:
      (ambiguous if m.depmap_ids else unmapped).append(m)
  report = MappingReport(mapped, unmapped, ambiguous)
  return {m.cosmic_id: m.depmap_ids[0] for m in mapped}, report


def _impute(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, int]:
  """Like expression: lines with no value dropped (mask), other gaps filled by the column mean."""
  missing = np.isnan(x)
  empty = missing.all(axis=1)
  x, missing = x[~empty], missing[~empty]
  if len(x) and missing.all(axis=0).any():
    raise DataError(f'{EVENTS_FILE}: a {kind} event is blank for every cell line; cannot impute it')
  if missing.any():
    x = np.where(missing, np.nanmean(x, axis=0)[None, :], x)
  return x, ~empty, int(missing.sum())


def event_features(kind: str, root: pathlib.Path,
                   cell_ids: list[str]) -> tuple[list[str], np.ndarray, dict]:
  """(ids, [lines, events] matrix, counts) of representation `kind` for those `cell_ids` it covers.

  Lines without an events row (unmapped, ambiguous or not in GDSC) are dropped and counted; events
  constant over the remaining lines carry nothing and are dropped and counted.
  """
  if kind not in KINDS:
    raise ValueError(f'unknown event representation {kind!r}; choose from {sorted(KINDS)}')
  events = read_events(root)
  mapping, report = map_to_depmap(events, root)
  row_of = {mapping[c]: i for i, c in enumerate(events.cosmic_ids) if c in mapping}
  present = [c for c in cell_ids if c in row_of]
  cols = np.concatenate([events.group(g) for g in KINDS[kind]])
  x, kept, imputed = _impute(events.values[np.ix_([row_of[c] for c in present], cols)], kind)
  present = [c for c, k in zip(present, kept) if k]
  if not present:
    raise DataError(f'{root / EVENTS_FILE}: none of the {len(cell_ids)} cell lines has {kind} events')
  varies = (x != x[:1]).any(axis=0)
  if not varies.any():
    raise DataError(f'{root / EVENTS_FILE}: no {kind} event varies over the {len(present)} lines')
  candidates, covered = {a for m in report.ambiguous for a in m.depmap_ids}, set(present)
  dropped = [c for c in cell_ids if c not in covered]
  info = {f'{kind}_lines_dropped_no_events': len(dropped),
          f'{kind}_lines_dropped_ambiguous': sum(c in candidates for c in dropped),
          f'{kind}_values_imputed': imputed,
          f'{kind}_events_dropped_constant': int((~varies).sum()),
          f'{kind}_dim': int(varies.sum())}
  logging.info('%s: GDSC names %s', kind, report.summary())
  logging.info('%s: dropped %d lines without events (%s), %d constant events; imputed %d values',
               kind, len(dropped), ', '.join(dropped), info[f'{kind}_events_dropped_constant'],
               imputed)
  return present, x[:, varies].astype(np.float32), info


SCREEN_MEDIUM = 'SCREEN_MEDIUM'


def screen_media(root: pathlib.Path,
                 cell_ids: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...], dict]:
  """Each line's GDSC screening medium (cosmic_info `SCREEN_MEDIUM`: 'R' RPMI, 'D/F12', ...).

  A label-free annotation of how GDSC grew the line for its screen; lines screened in one medium
  share a shift of their measured ln IC50, so kernel ridge may add a same-medium kernel
  (`classical.ANNOTATION_WEIGHTS`). `line_table_groups` of that column.
  """
  return line_table_groups(root, cell_ids, SCREEN_MEDIUM, 'medium')


def line_table_groups(root: pathlib.Path, cell_ids: Sequence[str], column: str,
                      name: str) -> tuple[np.ndarray, tuple[str, ...], dict]:
  """Each line's value of a categorical cosmic_info column (SCREEN_MEDIUM, GROWTH_PROPERTIES, GDSC2
  tissue, ...), lines joined by name as the event matrix's are (`map_cosmic_ids`, over every line
  of the table).

  Returns:
    [C] int64 index into the sorted values (-1: the line does not map, or its value is blank), the
    values, and counts (keys prefixed with `name`) for the log and `Dataset.info`.
  """
  path = pathlib.Path(root) / COSMIC_FILE
  rows = _read_rows(path, f'GDSC cell lines: SAMPLE_NAME, COSMIC_ID, {column}, ...')
  at_id, at_value = _column(path, rows[0], _ID), _column(path, rows[0], column)
  value_of = {r[at_id].strip(): r[at_value].strip() for r in rows[1:]}
  mapping, report = map_cosmic_ids(list(value_of), root)
  by_line = {ach: value_of[cid] for cid, ach in mapping.items() if value_of[cid] not in _MISSING}
  values = tuple(sorted({by_line[c] for c in cell_ids if c in by_line}))
  index = np.array([values.index(by_line[c]) if c in by_line else -1 for c in cell_ids], np.int64)
  info = {f'{name}_lines': int((index >= 0).sum()),
          f'{name}_lines_without': int((index < 0).sum()),
          f'{name}_values': {v: int((index == i).sum()) for i, v in enumerate(values)}}
  logging.info('%s (%s): %d of %d lines (%s); GDSC names %s', name, column,
               info[f'{name}_lines'], len(cell_ids),
               ', '.join(f'{v} {n}' for v, n in info[f'{name}_values'].items()), report.summary())
  return index, values, info
