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
from cdr_jax.data import binding
from cdr_jax.data import io
from cdr_jax.data.dataset import Dataset
from cdr_jax.data.dataset import resolve_data_root
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


# ---------------------------------------------------------------------------------------------
# Drug representations selected by config (`data.drug_repr`, parts joined by '+').

GRAPH = 'graph'   # the molecular graph (the GCN reads `Dataset.drug_graphs`, not a vector)
VECTOR_PARTS = ('annotations', 'morgan', 'descriptors', 'chemnet', 'binding', 'onehot')


def uses_binding(config) -> bool:
  """Whether `config.drug_repr` (a data config) has the `binding` part: then the unseen-drug
  kernel (baseline, start, stack) adds the binding panels' kernel too
  (`lodo_kernel.weighted_kernel`)."""
  return 'binding' in parse_repr(config.drug_repr)


def parse_repr(drug_repr: str) -> list[str]:
  """The parts of `data.drug_repr` ('graph+annotations+morgan'); unknown parts raise."""
  parts = [p.strip() for p in drug_repr.split('+') if p.strip()]
  unknown = [p for p in parts if p not in (GRAPH, *VECTOR_PARTS)]
  if unknown or not parts or len(set(parts)) != len(parts):
    raise ValueError(f'data.drug_repr={drug_repr!r}: give distinct parts joined by "+" from '
                     f'{", ".join((GRAPH, *VECTOR_PARTS))}')
  return parts


def _part(name: str, config, root: pathlib.Path | None, drug_ids: Sequence[str],
          smiles: Mapping[str, str], source: str) -> tuple[np.ndarray, list[str], dict]:
  """One vector part: (raw [D, k] matrix, column names, info)."""
  if name == 'annotations':
    if root is None:
      raise DataError('drug annotations need the GDSC drug list of a data root (real data)')
    ann = read_drug_list_annotations(root)
    x, columns = annotation_features(ann, drug_ids)
    disagree = [{'cid': d.cid, 'chosen': d.chosen, 'pathways': d.pathway_by_gdsc_id}
                for d in ann.disagreements]
    return x, columns, {'pathway_disagreements': disagree}
  if name == 'morgan':
    x = morgan_features(smiles, drug_ids, source=source)
    return x, [f'morgan:{i}' for i in range(x.shape[1])], {}
  if name == 'descriptors':
    return descriptor_features(smiles, drug_ids, source=source)[0], descriptor_names(), {}
  if name == 'chemnet':
    if root is None:
      raise DataError('chemnet drug embeddings are read from a data root (real data)')
    path = root / config.drug_embeddings['chemnet']
    ids, emb = io.read_embedding(path)
    row = {d: i for i, d in enumerate(ids)}
    missing = [d for d in drug_ids if d not in row]
    if missing:
      raise DataError(f'{path}: no embedding for drug {missing[0]!r} ({len(missing)} drugs '
                      'missing); make it with: python -m embed_torch chemnet --smiles '
                      f'<CID\\tSMILES file> --out {path}')
    x = emb[[row[d] for d in drug_ids]]
    return x, [f'chemnet:{i}' for i in range(x.shape[1])], {}
  if name == 'binding':
    info = binding.drug_binding(root, drug_ids, smiles)
    x, columns = binding.binding_features(info)
    return x, columns, {'binding_panels': info.summary()}
  return onehot(drug_ids), [f'onehot:{d}' for d in drug_ids], {}


def build_drug_features(config, root: pathlib.Path | None, drug_ids: Sequence[str],
                        smiles: Mapping[str, str],
                        source: str = 'SMILES') -> tuple[np.ndarray, tuple[str, ...], dict]:
  """The raw [D, K] vector features of `config.drug_repr` (K = 0 for the graph alone), their
  column names and info. `config.shuffle_drugs` permutes the rows across drugs (the control)."""
  parts = parse_repr(config.drug_repr)
  blocks, columns, info = [], [], {'drug_repr': config.drug_repr,
                                   'drugs_shuffled': bool(config.shuffle_drugs)}
  for name in parts:
    if name != GRAPH:
      x, cols, extra = _part(name, config, root, drug_ids, smiles, source)
      blocks.append(np.asarray(x, np.float64))
      columns += cols
      info.update(extra)
  raw = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(drug_ids), 0))
  if config.shuffle_drugs:
    if not blocks:
      raise ValueError('data.shuffle_drugs permutes vector drug features: add one to '
                       'data.drug_repr (e.g. graph+morgan)')
    raw = shuffled(raw, config.repr_seed)
  info['drug_feature_dim'] = raw.shape[1]
  return raw.astype(np.float32), tuple(columns), info


def with_features(ds: Dataset, config, root: pathlib.Path | None) -> Dataset:
  """`ds` with the vector drug features of `config.drug_repr` (from its drugs' SMILES)."""
  smiles = dict(zip(ds.drug_ids, ds.drug_smiles))
  x, names, info = build_drug_features(config, root, ds.drug_ids, smiles)
  return dataclasses.replace(ds, drug_features=x, drug_feature_names=names,
                             info={**ds.info, **info})


def new_drug_features(config, columns: Sequence[str], smiles: Mapping[str, str],
                      annotations: Mapping[str, tuple[str, Sequence[str]]] | None = None
                      ) -> tuple[np.ndarray, list[str]]:
  """Raw vector features of new drugs (ids = `smiles` keys) in a trained run's `columns`.

  `annotations`: id -> (pathway, targets). A new drug without them gets zero annotation columns
  (its prediction then uses structure only: returned as a note); targets and pathways the
  training drugs never had have no column and are named in a note. Binding profiles are matched
  in the data root's panels by structure (a drug in none is a note). ChemNet needs the sidecar.
  """
  ids, notes = list(smiles), []
  parts = parse_repr(config.drug_repr)
  for name in parts:
    if name == 'chemnet':
      raise DataError('new drugs with a chemnet representation need ChemNet embeddings: add them '
                      'with python -m embed_torch chemnet and retrain, or use a run without chemnet')
  annotations = annotations or {}
  index = {c: i for i, c in enumerate(columns)}
  out = np.zeros((len(ids), len(columns)), np.float32)
  for name in parts:
    if name == 'morgan':
      cols = [index[f'morgan:{i}'] for i in range(config_bits(columns))]
      out[:, cols] = morgan_features(smiles, ids, bits=len(cols), source='--smiles')
    elif name == 'descriptors':
      out[:, [index[c] for c in descriptor_names()]] = descriptor_features(
          smiles, ids, source='--smiles')[0]
  if 'binding' in parts:   # a new drug in a panel is matched by structure, as the run's drugs
    root = resolve_data_root(config.root)
    info = binding.drug_binding(root, ids, smiles)
    x, cols = binding.binding_features(info)
    trained = [c for c in columns if c.startswith('binding:')]
    if sorted(cols) != sorted(trained):
      differ = sorted(set(cols) ^ set(trained))
      raise DataError(f'{root / binding.ROOT}: its binding panels differ from those the run was '
                      f'trained on (e.g. column {differ[0]!r} is in one and not the other); '
                      'point data.root or CDR_DATA_DIR at the run\'s data root, or refetch with '
                      f'python launch/fetch_data.py --dest {root} --only {binding.ROOT}/')
    out[:, [index[c] for c in cols]] = x
    for d, m in zip(ids, info.in_any_panel()):
      if not m:
        notes.append(f'{d}: in no binding panel: the prediction uses no binding profile')
  if 'annotations' in parts:
    for row, d in enumerate(ids):
      if d not in annotations:
        notes.append(f'{d}: no annotations given: the prediction uses structure only')
        continue
      pathway, targets = annotations[d]
      wanted = [PATHWAY_PREFIX + pathway] + [TARGET_PREFIX + t for t in
                                             normalise_targets(','.join(targets))]
      unknown = [w for w in wanted if w not in index]
      if unknown:
        notes.append(f'{d}: not among the training drugs\' annotations, ignored: '
                     f'{", ".join(unknown)}')
      for w in wanted:
        if w in index:
          out[row, index[w]] = 1.0
  return out, notes


def config_bits(columns: Sequence[str]) -> int:
  """Number of Morgan bits among a run's drug feature columns."""
  return sum(c.startswith('morgan:') for c in columns)
