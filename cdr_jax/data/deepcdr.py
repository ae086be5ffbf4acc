"""The entity-indexed dataset: each drug graph once, each cell line's features once, pairs as indices.

`load_dataset(config.data)` reads a data root laid out like DeepCDR's `data/` folder (plus
`scfoundation/`, `scgpt/`) or builds the synthetic dataset, and returns a `Dataset`. Instances follow
docs/DEEPCDR.md §2 exactly; nothing per pair is copied (the paper's 90,000-instance cap came from copies).
"""

import dataclasses
import logging
import pathlib
import re
from collections.abc import Sequence

import ml_collections
import numpy as np

from cdr_jax.data import cells as cells_lib
from cdr_jax.data import chem
from cdr_jax.data import drugs as drug_lib
from cdr_jax.data import events as events_lib
from cdr_jax.data import fetch
from cdr_jax.data import io
from cdr_jax.data.dataset import Dataset, resolve_data_root
from cdr_jax.data.layout import (ANNOTATION_FILE, COSMIC_FILE, DRUG_LIST_FILE, IC50_FILE,
                                 SMILES_FILE, THRESHOLD_FILE)
from cdr_jax.data.splits import LEGACY_TYPES
from cdr_jax.errors import DataError
UNKNOWN_TYPE = 'NA'


@dataclasses.dataclass
class RawDrugs:
  """Drug facts: GDSC id -> CID, CID -> SMILES (file order), GDSC id -> names, name -> threshold."""
  gdsc_to_cid: dict[str, str]
  gdsc_name: dict[str, str]
  cid_smiles: dict[str, str]
  thresholds: dict[str, float]                                # keyed by `_norm_name`
  gdsc_synonyms: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def threshold(self, gdsc_id: str) -> float:
    """The drug's ln IC50 threshold, matched by name or synonym; nan if it has none."""
    for name in [self.gdsc_name[gdsc_id]] + self.gdsc_synonyms.get(gdsc_id, []):
      if _norm_name(name) in self.thresholds:
        return self.thresholds[_norm_name(name)]
    return float('nan')


def _norm_name(name: str) -> str:
  """Drug names compare case- and punctuation-blind ('AZD-0530' == 'AZD 0530')."""
  return re.sub(r'[^a-z0-9]', '', name.lower())


def read_drugs(root: pathlib.Path) -> RawDrugs:
  """Reads the GDSC drug list, the CID SMILES file and the per-drug thresholds."""
  path = root / DRUG_LIST_FILE
  _, body = io.read_table(path, 'the GDSC drug list', header=['drug_id', 'Name'])
  gdsc_to_cid, names, synonyms = {}, {}, {}
  for row in body:
    gdsc_id, cid = row[0].strip(), row[5].strip()
    names[gdsc_id] = row[1].strip()
    synonyms[gdsc_id] = [s.strip() for s in row[2].split(',') if s.strip()]
    if cid.isdigit():  # 'none', 'several' or '' mean: no PubChem CID.
      gdsc_to_cid[gdsc_id] = cid
  return RawDrugs(gdsc_to_cid, names, read_smiles(root / SMILES_FILE),
                  read_thresholds(root / THRESHOLD_FILE), synonyms)


def read_smiles(path: pathlib.Path) -> dict[str, str]:
  """Reads `<CID>\\t<SMILES>` lines, in file order."""
  path = io.require_file(path, '<PubChem CID>\\t<SMILES> lines')
  out = {}
  for i, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
    if not line.strip():
      continue
    parts = line.strip().split('\t')
    if len(parts) != 2 or not parts[0].isdigit():
      raise DataError(f'{path} line {i}: expected <PubChem CID>\\t<SMILES>, got {line[:80]!r}')
    if parts[0] in out:
      raise DataError(f'{path} line {i}: duplicate CID {parts[0]}')
    out[parts[0]] = parts[1]
  return out


def read_thresholds(path: pathlib.Path) -> dict[str, float]:
  """Reads IC50_thred.txt (line 1 drug names, line 2 ln IC50 thresholds), keyed by `_norm_name`.

  A name like 'Zibotentan, ZD4054' is keyed under each of its comma-separated parts.
  """
  path = io.require_file(path, 'drug names (line 1) and ln IC50 thresholds (line 2)')
  lines = [l for l in path.read_text(encoding='utf-8').splitlines() if l.strip()]
  if len(lines) != 2:
    raise DataError(f'{path}: expected 2 lines (names, thresholds), got {len(lines)}')
  names, values = lines[0].split('\t'), lines[1].split('\t')
  if len(names) != len(values):
    raise DataError(f'{path}: {len(names)} names but {len(values)} thresholds')
  out = {}
  for name, value in zip(names, values):
    for part in name.split(','):
      out[_norm_name(part)] = io.parse_float(value, path, name, 'threshold', False)
  return out


def read_annotations(root: pathlib.Path) -> dict[str, str]:
  """The data root's cell line annotations (see `read_annotation_file`)."""
  return read_annotation_file(root / ANNOTATION_FILE)


def read_annotation_file(path: io.PathLike) -> dict[str, str]:
  """DepMap id -> TCGA label (last column; '' -> 'NA'). Rows without a DepMap id are ignored."""
  head, body = io.read_table(path, 'CCLE cell line annotations', header=['CCLE_ID', 'depMapID'],
                             delimiter='\t')
  out = {}
  for row in body:
    ach = row[1].strip()
    if not ach or ach == 'NA':
      continue
    if ach in out:
      raise DataError(f'{path}: duplicate depMapID {ach!r}')
    out[ach] = row[-1].strip() or UNKNOWN_TYPE
  return out


DOUBLING_COLUMN = 'Doubling.Time.Calculated.hrs'


def read_doubling_times(path: io.PathLike,
                        cell_ids: Sequence[str]) -> tuple[np.ndarray | None, dict]:
  """[C] log2 of each line's doubling time in hours, CCLE's calculated one (`DOUBLING_COLUMN` of
  the annotation file; nan where 'NA' or blank), and counts; (None, {}) for a file without the
  column (a hand-made root). A line annotation measured without drugs (CCLE growth curves):
  label-free."""
  head, body = io.read_table(path, 'CCLE cell line annotations', header=['CCLE_ID', 'depMapID'],
                             delimiter='\t')
  if DOUBLING_COLUMN not in head:
    logging.warning('%s has no column %s: kernel ridge runs without the doubling-time kernel',
                    path, DOUBLING_COLUMN)
    return None, {}
  at = head.index(DOUBLING_COLUMN)
  hours = {}
  for row in body:
    ach, text = row[1].strip(), row[at].strip()
    if not ach or ach == 'NA' or text in ('', 'NA'):
      continue
    try:
      value = float(text)
    except ValueError:
      value = float('nan')
    if not value > 0:
      raise DataError(f'{path}: line {ach}: {DOUBLING_COLUMN} {text!r}, expected hours > 0 or NA')
    hours[ach] = value
  out = np.array([np.log2(hours[c]) if c in hours else np.nan for c in cell_ids], np.float64)
  info = {'doubling_lines': int(np.isfinite(out).sum()),
          'doubling_lines_without': int((~np.isfinite(out)).sum())}
  logging.info('doubling time (%s): %d of %d lines', DOUBLING_COLUMN, info['doubling_lines'],
               len(cell_ids))
  return out, info


@dataclasses.dataclass
class Instances:
  """Raw instances in docs/DEEPCDR.md §2 order (before any cell representation filtering)."""
  cell: list[str]
  cid: list[str]
  y: np.ndarray
  gdsc_id: list[str]


def read_instances(root: pathlib.Path, drugs: RawDrugs, omics_cells: set[str],
                   annotated: set[str]) -> Instances:
  """Instances by docs/DEEPCDR.md §2: IC50 rows in file order, then cell columns in file order."""
  path = root / IC50_FILE
  row_ids, columns, values = io.read_matrix_csv(path, 'ln IC50: rows GDSC:<id>, columns DepMap ids')
  cell, cid, ys, gdsc = [], [], [], []
  for r, row_id in enumerate(row_ids):
    if not row_id.startswith('GDSC:'):
      raise DataError(f'{path}: row id {row_id!r} is not of the form GDSC:<drug id>')
    drug = drugs.gdsc_to_cid.get(row_id[5:])
    if drug is None or drug not in drugs.cid_smiles:
      continue
    for c, ach in enumerate(columns):
      if np.isnan(values[r, c]) or ach not in omics_cells or ach not in annotated:
        continue
      cell.append(ach), cid.append(drug), ys.append(values[r, c]), gdsc.append(row_id[5:])
  return Instances(cell, cid, np.asarray(ys, np.float32), gdsc)


def load_deepcdr(config: ml_collections.ConfigDict) -> Dataset:
  """Builds the entity-indexed dataset from a DeepCDR-layout data root."""
  root = resolve_data_root(config.root)
  fetch.ensure(root, [DRUG_LIST_FILE, SMILES_FILE, THRESHOLD_FILE, ANNOTATION_FILE, IC50_FILE,
                      cells_lib.EXPRESSION_FILE])  # missing files are fetched on first use
  drugs = read_drugs(root)
  annotations = read_annotations(root)
  universe = cells_lib.omics_cell_ids(root)
  instances = read_instances(root, drugs, set(universe), set(annotations))
  features, cell_ids, info = cells_lib.build_cell_features(config, root, universe)
  ds = assemble(instances, drugs, annotations, cell_ids, features, info)
  return drug_lib.with_features(with_line_annotations(ds, root), config, root)


def with_line_annotations(ds: Dataset, root: pathlib.Path) -> Dataset:
  """`ds` with the label-free line annotations kernel ridge may use beside the cancer type
  (`Dataset.line_annotations`): each line's log2 doubling time from the CCLE annotation file, and
  its GDSC screening medium (`events.screen_media`; fetched on first use as the other files are).
  A root without the GDSC line table (offline, or a hand-made root) loads without the medium, with
  a warning; a table that is there but malformed is an error, as any other input file's.
  """
  found, info = {}, dict(ds.info)
  doubling, counts = read_doubling_times(root / ANNOTATION_FILE, ds.cell_ids)
  if doubling is not None:
    found['doubling'] = doubling
    info.update(counts)
  try:   # a manifest that does not list the table leaves it absent without an error
    fetch.ensure(root, [COSMIC_FILE])
    why = None if (root / COSMIC_FILE).is_file() else f'missing file {root / COSMIC_FILE}'
  except DataError as e:
    why = str(e)
  if why:
    logging.warning('no screening medium per line (%s): kernel ridge runs without the '
                    'same-medium kernel; `python launch/fetch_data.py` fetches the file', why)
  else:
    found['medium'], _, counts = events_lib.screen_media(root, ds.cell_ids)
    info.update(counts)
  return dataclasses.replace(ds, line_annotations=found, info=info)


def assemble(instances: Instances, drugs: RawDrugs, annotations: dict[str, str],
             cell_ids: Sequence[str], features: np.ndarray, info: dict) -> Dataset:
  """Keeps instances whose cell has features; indexes cells, drugs, types; featurises drugs."""
  cell_index = {c: i for i, c in enumerate(cell_ids)}
  keep = np.array([c in cell_index for c in instances.cell], bool)
  legacy_dropped = sum(annotations[c] in LEGACY_TYPES for c, k in zip(instances.cell, keep) if not k)
  info = dict(info)
  blocks = tuple(info.pop('blocks'))
  info.update(instances_dropped_no_features=int((~keep).sum()),
              legacy_instances_dropped=int(legacy_dropped),
              drugs_without_threshold=sorted({drugs.gdsc_name[g] for g in instances.gdsc_id
                                              if np.isnan(drugs.threshold(g))}))
  if (~keep).any():
    logging.warning('dropped %d instances whose cell line has no features', int((~keep).sum()))
  used_cids = {c for c, k in zip(instances.cid, keep) if k}
  drug_ids = [cid for cid in drugs.cid_smiles if cid in used_cids]  # SMILES file order.
  drug_index = {d: i for i, d in enumerate(drug_ids)}
  cid_name = {}
  for gdsc_id, cid in drugs.gdsc_to_cid.items():
    cid_name.setdefault(cid, drugs.gdsc_name[gdsc_id])
  types = sorted({annotations[c] for c in cell_ids})
  kept = np.flatnonzero(keep)
  pair_cell = np.array([cell_index[instances.cell[i]] for i in kept], np.int32)
  pair_drug = np.array([drug_index[instances.cid[i]] for i in kept], np.int32)
  pair_y = instances.y[kept]
  gdsc = [instances.gdsc_id[i] for i in kept]
  pair_label = _labels(drugs, gdsc, pair_y)
  screen_ids, pair_screen = np.unique(np.array(gdsc, dtype=str), return_inverse=True)
  graphs = [chem.smiles_to_graph(drugs.cid_smiles[d], d) for d in drug_ids]
  return Dataset(
      cell_ids=tuple(cell_ids), cell_features=features,
      cell_type=np.array([types.index(annotations[c]) for c in cell_ids], np.int32),
      cancer_types=tuple(types), drug_ids=tuple(drug_ids),
      drug_names=tuple(cid_name[d] for d in drug_ids),
      drug_graphs=chem.batch_drug_graphs(graphs), pair_cell=pair_cell, pair_drug=pair_drug,
      pair_y=pair_y, pair_label=pair_label, info=info, feature_blocks=blocks,
      drug_smiles=tuple(drugs.cid_smiles[d] for d in drug_ids),
      pair_screen=pair_screen.astype(np.int32), screen_ids=tuple(screen_ids.tolist()))


def _labels(drugs: RawDrugs, gdsc_ids: list[str], y: np.ndarray) -> np.ndarray:
  """Sensitive (1) when ln IC50 is below the drug's threshold, resistant (0); -1 if no threshold."""
  thr = np.array([drugs.threshold(g) for g in gdsc_ids], np.float32)
  label = np.where(y < thr, 1, 0).astype(np.int8)
  label[np.isnan(thr)] = -1
  return label
