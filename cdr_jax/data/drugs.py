"""Drug representations beyond the graph: GDSC annotations, Morgan bits, RDKit descriptors.

Every feature function takes the drug ids (PubChem CIDs) in the dataset's order and returns a
[D, F] matrix with one row per id, plus column names where the columns mean something. Controls
(`shuffled`, `onehot`) tell whether a representation carries more than drug identity.
"""

import dataclasses
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from rdkit import Chem
from rdkit import RDLogger
from rdkit.Chem import Descriptors
from rdkit.Chem import rdFingerprintGenerator

# The only imports from the rest of cdr_jax.
from cdr_jax.data import io
from cdr_jax.data.layout import DRUG_LIST_FILE
from cdr_jax.errors import DataError

RDLogger.DisableLog('rdApp.*')  # RDKit prints parse errors to stderr; we raise our own.

_HEADER = ['drug_id', 'Name', 'Synonyms', 'Targets', 'Target pathway', 'PubCHEM']
_GDSC_ID, _NAME, _TARGETS, _PATHWAY, _CID = 0, 1, 3, 4, 5
UNCLASSIFIED = 'Unclassified'
# Entries of `Targets` that name no target: two drugs sharing them share nothing biological.
PLACEHOLDER_TARGETS = frozenset({'NOT DEFINED', 'OTHERS'})
PATHWAY_PREFIX, TARGET_PREFIX = 'pathway:', 'target:'


@dataclasses.dataclass(frozen=True)
class PathwayDisagreement:
  """One CID whose GDSC ids give different target pathways, and the pathway kept."""
  cid: str
  pathway_by_gdsc_id: dict[str, str]
  chosen: str


@dataclasses.dataclass(frozen=True)
class DrugAnnotations:
  """GDSC annotations per PubChem CID, several GDSC ids merged into one CID."""
  path: pathlib.Path                     # the drug list they were read from (named in errors)
  pathway: dict[str, str]                # CID -> target pathway
  targets: dict[str, tuple[str, ...]]    # CID -> sorted upper-case targets (may be empty)
  gdsc_ids: dict[str, tuple[str, ...]]   # CID -> the GDSC ids listing it, in file order
  name: dict[str, str]                   # CID -> name of its first GDSC row
  disagreements: tuple[PathwayDisagreement, ...]


def normalise_targets(text: str) -> set[str]:
  """'AKT1, akt2,' -> {'AKT1', 'AKT2'}: split on ',', strip, upper-case, drop placeholders."""
  parts = {t.strip().upper() for t in text.split(',')}
  return {t for t in parts if t and t not in PLACEHOLDER_TARGETS}


def choose_pathway(pathway_by_gdsc_id: Mapping[str, str]) -> str:
  """The pathway kept for a CID: a classified one beats 'Unclassified'; then the lowest GDSC id's.

  The lowest GDSC id is the drug's earliest screen, the one GDSC annotated first.
  """
  ids = sorted(pathway_by_gdsc_id, key=lambda g: (pathway_by_gdsc_id[g] == UNCLASSIFIED, int(g)))
  return pathway_by_gdsc_id[ids[0]]


def read_annotations(path: io.PathLike) -> DrugAnnotations:
  """Reads `Targets` and `Target pathway` of the GDSC drug list, merged per PubChem CID.

  Rows whose PubCHEM field is not a number ('none', 'several', '') have no CID and are skipped.
  A CID listed under several GDSC ids gets the union of their targets and one pathway
  (`choose_pathway`); CIDs whose rows disagree on pathway are returned in `disagreements`.
  """
  path = pathlib.Path(path)
  _, body = io.read_table(path, 'the GDSC drug list', header=_HEADER)
  rows_by_cid: dict[str, list[list[str]]] = {}
  for line, row in enumerate(body, start=2):
    cid, gdsc_id = row[_CID].strip(), row[_GDSC_ID].strip()
    if not gdsc_id.isdigit():
      raise DataError(f'{path} line {line}: GDSC drug id {gdsc_id!r} is not a number')
    if not row[_PATHWAY].strip():
      raise DataError(f'{path} line {line}: GDSC id {gdsc_id} has an empty Target pathway')
    if cid.isdigit():
      rows_by_cid.setdefault(cid, []).append(row)
  pathway, targets, gdsc_ids, name, disagreements = {}, {}, {}, {}, []
  for cid, rows in rows_by_cid.items():
    by_id = {r[_GDSC_ID].strip(): r[_PATHWAY].strip() for r in rows}
    pathway[cid] = choose_pathway(by_id)
    if len(set(by_id.values())) > 1:
      disagreements.append(PathwayDisagreement(cid, by_id, pathway[cid]))
    targets[cid] = tuple(sorted(set().union(*(normalise_targets(r[_TARGETS]) for r in rows))))
    gdsc_ids[cid] = tuple(by_id)
    name[cid] = rows[0][_NAME].strip()
  return DrugAnnotations(path, pathway, targets, gdsc_ids, name, tuple(disagreements))


def _check_annotated(ann: DrugAnnotations, drug_ids: Sequence[str]) -> None:
  """Raises naming the first drug id with no row in the drug list, and the file."""
  for d in drug_ids:
    if d not in ann.pathway:
      raise DataError(f'{ann.path}: no row with PubCHEM {d!r}: expected an annotation for '
                      'every drug')


def annotation_features(ann: DrugAnnotations,
                        drug_ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
  """[D, P + T] float32: pathway one-hot, then target multi-hot (over those of `drug_ids`).

  Columns are named 'pathway:<pathway>' and 'target:<TARGET>', each group sorted. Only the given
  drugs' pathways and targets become columns, so a training set's matrix has no empty column.
  """
  _check_annotated(ann, drug_ids)
  pathways = sorted({ann.pathway[d] for d in drug_ids})
  targets = sorted({t for d in drug_ids for t in ann.targets[d]})
  columns = [PATHWAY_PREFIX + p for p in pathways] + [TARGET_PREFIX + t for t in targets]
  index = {c: i for i, c in enumerate(columns)}
  out = np.zeros((len(drug_ids), len(columns)), np.float32)
  for row, d in enumerate(drug_ids):
    out[row, index[PATHWAY_PREFIX + ann.pathway[d]]] = 1.0
    for t in ann.targets[d]:
      out[row, index[TARGET_PREFIX + t]] = 1.0
  return out, columns


def _molecules(smiles_by_id: Mapping[str, str], drug_ids: Sequence[str],
               source: io.PathLike) -> list[Chem.Mol]:
  """Parses each drug's SMILES; a missing id or an unparsable SMILES names the id and `source`."""
  mols = []
  for d in drug_ids:
    if d not in smiles_by_id:
      raise DataError(f'{source}: no SMILES for drug {d!r}')
    smiles = smiles_by_id[d]
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
      raise DataError(f'{source}: invalid SMILES for drug {d!r}: {smiles!r} '
                      '(RDKit could not parse it)')
    mols.append(mol)
  return mols


def morgan_features(smiles_by_id: Mapping[str, str], drug_ids: Sequence[str], radius: int = 2,
                    bits: int = 2048, source: io.PathLike = '<smiles>') -> np.ndarray:
  """[D, bits] float32 0/1 Morgan (ECFP-like) fingerprints; `source` names the SMILES file."""
  generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
  mols = _molecules(smiles_by_id, drug_ids, source)
  out = np.zeros((len(drug_ids), bits), np.float32)
  for row, mol in enumerate(mols):
    out[row] = generator.GetFingerprintAsNumPy(mol) > 0
  return out


def descriptor_names() -> list[str]:
  """The RDKit 2D descriptors computed by `descriptor_features`, in column order."""
  return [name for name, _ in Descriptors.descList]


def descriptor_features(smiles_by_id: Mapping[str, str], drug_ids: Sequence[str],
                        source: io.PathLike = '<smiles>') -> tuple[np.ndarray, list[str]]:
  """[D, ~217] float64 raw RDKit 2D descriptors (nan where RDKit has none) and their names.

  Raw values span many orders of magnitude and some are nan (e.g. BCUT2D on a platinum complex);
  standardise with `standardize` on the training drugs before use.
  """
  names = descriptor_names()
  mols = _molecules(smiles_by_id, drug_ids, source)
  out = np.full((len(drug_ids), len(names)), np.nan)
  for row, mol in enumerate(mols):
    values = Descriptors.CalcMolDescriptors(mol, missingVal=math.nan)
    out[row] = [values[n] for n in names]
  return out, names


@dataclasses.dataclass(frozen=True)
class Standardized:
  """Features standardised on training rows, and what was done to non-finite values."""
  features: np.ndarray     # [D, F] float32; 0 wherever the raw value was non-finite
  mean: np.ndarray         # [F] over the training rows' finite values
  scale: np.ndarray        # [F] standard deviation of the same (1 where it is 0 or undefined)
  num_nonfinite: int       # raw values that were nan or +-inf (all rows), set to the training mean
  nonfinite_columns: dict[str, int]  # column -> its count of non-finite raw values
  constant_columns: list[str]        # columns constant on the training rows (all 0 after)


def standardize(raw: np.ndarray, train_rows: Sequence[int] | np.ndarray, columns: Sequence[str],
                clip: float = 10.0) -> Standardized:
  """Z-scores each column with the mean and std of the TRAINING rows only; clips to +-`clip`.

  Non-finite raw values count as missing: they are left out of the statistics and become 0 (the
  training mean). Columns with no spread on the training rows become 0. The clip keeps one extreme
  held-out drug (e.g. Ipc spans 1e0..1e30) from dominating distances.
  """
  raw = np.asarray(raw, np.float64)
  train = raw[np.asarray(train_rows, np.int64)]
  finite = np.isfinite(train)
  count = finite.sum(0)
  mean = np.where(finite, train, 0.0).sum(0) / np.maximum(count, 1)
  var = np.where(finite, (train - mean) ** 2, 0.0).sum(0) / np.maximum(count, 1)
  scale = np.sqrt(var)
  constant = ~(scale > 1e-12 * np.maximum(np.abs(mean), 1.0))  # also catches columns with no value
  scale = np.where(constant, 1.0, scale)
  z = np.where(np.isfinite(raw), (raw - mean) / scale, 0.0)
  z[:, constant] = 0.0
  bad = (~np.isfinite(raw)).sum(0)
  return Standardized(
      features=np.clip(z, -clip, clip).astype(np.float32), mean=mean, scale=scale,
      num_nonfinite=int(bad.sum()),
      nonfinite_columns={c: int(n) for c, n in zip(columns, bad) if n},
      constant_columns=[c for c, k in zip(columns, constant) if k])


def shuffled(matrix: np.ndarray, seed: int) -> np.ndarray:
  """The control: the same rows permuted across drugs (each drug gets another drug's features)."""
  matrix = np.asarray(matrix)
  return matrix[np.random.default_rng(seed).permutation(len(matrix))]


def onehot(drug_ids: Sequence[str]) -> np.ndarray:
  """The identity control: [D, D] float32, drug i is column i (no information across drugs)."""
  return np.eye(len(drug_ids), dtype=np.float32)


def read_drug_list_annotations(root: io.PathLike) -> DrugAnnotations:
  """`read_annotations` of the drug list under a DeepCDR-layout data root."""
  return read_annotations(pathlib.Path(root) / DRUG_LIST_FILE)
