"""Measured drug-target binding panels: which kinases a drug binds, as a label-free description.

What a drug does to cells starts with what it binds. Two public kinase panels are read from
`<root>/binding/` (`launch/fetch_data.py --only binding/` fetches DeepDTA's pinned copies):
  davis: Davis et al. 2011 (Nat Biotechnol 29:1046), the Kd (nM) of 68 kinase inhibitors against
    442 kinase constructs, every pair measured (10,000 nM: no binding at the top concentration);
  kiba: Tang et al. 2014 (J Chem Inf Model 54:735), KIBA scores (Ki, Kd and IC50 combined; the
    transformed scale, higher = tighter) of 2,111 compounds against 229 kinases, most pairs not
    measured (nan).
A drug "binds" a kinase at Kd <= 100 nM (pKd >= 7) in davis and a KIBA score >= 12.1 in kiba: the
thresholds those panels' literature uses for an interaction (DeepDTA's and SimBoost's), fixed
before any measurement here. A dataset drug is matched to a panel compound by the first block of
the InChIKey of its largest fragment (connectivity only): salts, charges and stereo forms of one
molecule match (where several panel compounds share a skeleton, the first in the file is used).
Of the 223 GDSC drugs, 36 are in davis and 29 in kiba (5 in both); 3 of those 60 bind no kinase at
the thresholds and so are described as binding nothing. A kiba pair that was not measured counts
as not binding: that keeps a drug's bound kinases one set and their Tanimoto kernel PSD, at the
cost of reading "not measured" as "does not bind" (kiba measured each of its GDSC drugs on 11 to
166 of the 229 kinases).
"""

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from rdkit import Chem
from rdkit import RDLogger
from rdkit.Chem.MolStandardize import rdMolStandardize

from cdr_jax.data import io
from cdr_jax.data.layout import BINDING_DIR as ROOT
from cdr_jax.errors import DataError

RDLogger.DisableLog('rdApp.*')  # RDKit prints parse errors to stderr; `match` raises its own.


@dataclasses.dataclass(frozen=True)
class PanelSpec:
  """Where one panel lives under the data root and how its values read."""
  name: str
  values: str        # [L, T] whitespace-separated matrix, rows in `ligands` order
  ligands: str       # JSON object: compound id -> SMILES (file order = row order)
  targets: str       # JSON object: target name -> sequence (file order = column order)
  kd_nm: bool        # values are Kd in nM (pKd = 9 - log10 Kd); else scores, higher = tighter
  threshold: float   # binds at pKd / score >= threshold

  def files(self) -> tuple[str, str, str]:
    """The panel's three files, relative to the data root."""
    return self.values, self.ligands, self.targets


PANELS = (
    PanelSpec('davis', f'{ROOT}/davis/drug-target_interaction_affinities_Kd__Davis_et_al.2011v1.txt',
              f'{ROOT}/davis/ligands_can.txt', f'{ROOT}/davis/proteins.txt', True, 7.0),
    PanelSpec('kiba', f'{ROOT}/kiba/kiba_binding_affinity_v2.txt', f'{ROOT}/kiba/ligands_can.txt',
              f'{ROOT}/kiba/proteins.txt', False, 12.1),
)
FETCH_HINT = f'fetch the panels with: python launch/fetch_data.py --dest <root> --only {ROOT}/'


@dataclasses.dataclass(frozen=True)
class Panel:
  """One panel: its compounds (ids, SMILES), targets and [L, T] affinities (pKd or score; nan =
  not measured)."""
  spec: PanelSpec
  compound_ids: tuple[str, ...]
  smiles: tuple[str, ...]
  targets: tuple[str, ...]
  affinity: np.ndarray

  def binds(self) -> np.ndarray:
    """[L, T] bool: measured and at or above the panel's threshold."""
    with np.errstate(invalid='ignore'):
      return np.nan_to_num(self.affinity, nan=-np.inf) >= self.spec.threshold


def _ordered_json(path: pathlib.Path, what: str) -> dict[str, str]:
  """A JSON object of strings in file order (the panel's row or column order); clear errors."""
  try:
    obj = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, UnicodeError, json.JSONDecodeError) as e:
    raise DataError(f'{path}: cannot read {what} (a JSON object expected): {e}') from e
  if not isinstance(obj, dict) or not obj:
    raise DataError(f'{path}: expected a non-empty JSON object of {what}')
  return {str(k): str(v) for k, v in obj.items()}


def read_panel(root: io.PathLike, spec: PanelSpec) -> Panel:
  """Reads and checks one panel under `root`; a missing file or a wrong shape is a clear error."""
  root = pathlib.Path(root)
  missing = [f for f in spec.files() if not (root / f).is_file()]
  if missing:
    raise DataError(f'{root / missing[0]}: binding panel {spec.name!r} not found; {FETCH_HINT}')
  ligands = _ordered_json(root / spec.ligands, 'compound id -> SMILES')
  targets = _ordered_json(root / spec.targets, 'target -> sequence')
  path = root / spec.values
  try:
    values = np.loadtxt(path, dtype=np.float64, ndmin=2)
  except ValueError as e:
    raise DataError(f'{path}: not a numeric matrix (nan for a pair not measured): {e}') from e
  if values.shape != (len(ligands), len(targets)):
    raise DataError(f'{path}: expected {len(ligands)} x {len(targets)} values (one row per '
                    f'compound of {spec.ligands}, one column per target of {spec.targets}), '
                    f'got {values.shape[0]} x {values.shape[1]}')
  if spec.kd_nm:
    bad = np.isfinite(values) & (values <= 0)
    if bad.any():
      r, c = np.argwhere(bad)[0]
      raise DataError(f'{path}: Kd must be positive (nM), got {values[r, c]} for compound '
                      f'{list(ligands)[r]!r} and target {list(targets)[c]!r}')
    values = 9.0 - np.log10(values)
  return Panel(spec, tuple(ligands), tuple(ligands.values()), tuple(targets), values)


def skeleton(smiles: str) -> str | None:
  """The connectivity block of the InChIKey of the largest fragment; None if RDKit cannot parse."""
  mol = Chem.MolFromSmiles(smiles) if smiles else None
  if mol is None or not mol.GetNumAtoms():
    return None
  return Chem.MolToInchiKey(rdMolStandardize.FragmentParent(mol)).split('-')[0]


def match(panel: Panel, drug_ids: Sequence[str], smiles_by_id: Mapping[str, str]) -> np.ndarray:
  """[D] each drug's row in `panel` (-1: not in it), by `skeleton`. A drug whose SMILES RDKit
  cannot parse is a clear error; panel compounds it cannot parse match nothing."""
  rows: dict[str, int] = {}
  for i, s in enumerate(panel.smiles):
    key = skeleton(s)
    if key is not None:
      rows.setdefault(key, i)   # the first of several forms of one molecule
  out = np.full(len(drug_ids), -1)
  for j, d in enumerate(drug_ids):
    key = skeleton(smiles_by_id.get(d, ''))
    if key is None:
      raise DataError(f'drug {d!r}: no parsable SMILES to match against binding panel '
                      f'{panel.spec.name!r}: {smiles_by_id.get(d)!r}')
    out[j] = rows.get(key, -1)
  return out


@dataclasses.dataclass(frozen=True)
class DrugBinding:
  """Per panel, what each dataset drug binds: `binds[name]` [D, T] bool (all False for a drug not
  in the panel), `measured[name]` [D] bool (in the panel), `targets[name]` the T target names;
  `drug_ids` the D drugs."""
  binds: dict[str, np.ndarray]
  measured: dict[str, np.ndarray]
  targets: dict[str, tuple[str, ...]]

  drug_ids: tuple[str, ...] = ()

  def in_any_panel(self) -> np.ndarray:
    """[D] bool: the drug is in at least one panel."""
    return np.any(np.stack(list(self.measured.values())), axis=0)

  def summary(self) -> dict:
    """Per panel: how many of the drugs it describes, which (ids), and its number of targets."""
    return {name: {'drugs_in_panel': int(m.sum()), 'targets': len(self.targets[name]),
                   'drug_ids': [d for d, i in zip(self.drug_ids, m) if i]}
            for name, m in self.measured.items()}


def drug_binding(root: io.PathLike | None, drug_ids: Sequence[str],
                 smiles_by_id: Mapping[str, str]) -> DrugBinding:
  """Every panel (`PANELS`) read under `root` and matched to `drug_ids`; no root (synthetic data)
  is a clear error."""
  if root is None:
    raise DataError(f'binding panels are read from a data root (real data): {FETCH_HINT}')
  binds, measured, targets = {}, {}, {}
  for spec in PANELS:
    panel = read_panel(root, spec)
    rows = match(panel, drug_ids, smiles_by_id)
    table = panel.binds()
    binds[spec.name] = np.where((rows >= 0)[:, None], table[np.maximum(rows, 0)], False)
    measured[spec.name] = rows >= 0
    targets[spec.name] = panel.targets
  return DrugBinding(binds, measured, targets, tuple(drug_ids))


def binding_features(info: DrugBinding) -> tuple[np.ndarray, list[str]]:
  """[D, F] the `binding` drug representation: per panel, whether the drug is in it and which
  targets it binds (0 for a drug not in it), and the column names."""
  blocks, columns = [], []
  for name, b in info.binds.items():
    blocks += [info.measured[name][:, None], b]
    columns += [f'binding:{name}:in_panel'] + [f'binding:{name}:{t}' for t in info.targets[name]]
  return np.concatenate(blocks, axis=1).astype(np.float64), columns

