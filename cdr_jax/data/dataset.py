"""The entity-indexed dataset: each drug graph once, each cell line's features once, pairs as indices.

Nothing per pair is copied: a pair is a (cell index, drug index, ln IC50, label) row, so the whole
107,446-pair dataset takes a few MB (the original DeepCDR's per-pair copies took 6.9 GB and forced
its 90,000-instance cap).
"""

import dataclasses
import os
import pathlib

import jraph
import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Drugs, cell lines and (cell, drug) pairs; pairs hold only indices and labels."""
  cell_ids: tuple[str, ...]          # [C] DepMap ids
  cell_features: np.ndarray          # [C, F] float32, one row per cell line
  cell_type: np.ndarray              # [C] int32 index into `cancer_types`
  cancer_types: tuple[str, ...]      # TCGA labels ('NA' for unlabelled lines)
  drug_ids: tuple[str, ...]          # [D] PubChem CIDs
  drug_names: tuple[str, ...]        # [D]
  drug_graphs: jraph.GraphsTuple     # D drug graphs + 1 padding graph, fixed budgets
  pair_cell: np.ndarray              # [P] int32
  pair_drug: np.ndarray              # [P] int32
  pair_y: np.ndarray                 # [P] float32 ln IC50
  pair_label: np.ndarray             # [P] int8: 1 sensitive, 0 resistant, -1 no threshold
  info: dict = dataclasses.field(default_factory=dict)
  # Widths of the cell feature blocks (one per omics source, in column order); () = one block.
  feature_blocks: tuple[int, ...] = ()
  drug_smiles: tuple[str, ...] = ()       # [D]
  # [D, K] raw vector features of the drugs (data.drug_repr beyond the graph; K = 0 for none).
  drug_features: np.ndarray | None = None
  drug_feature_names: tuple[str, ...] = ()  # counts: dropped/imputed, representation
  # Label-free line annotations beside the cancer type, by name: [C] int64 groups (-1: none) or
  # [C] float values (nan: none); e.g. 'medium' (GDSC screening medium) and 'doubling' (log2
  # hours). Kernel ridge may add a kernel on each (splits.line_annotations).
  line_annotations: dict = dataclasses.field(default_factory=dict)
  # The screen each pair was measured in: [P] int32 index into `screen_ids` (GDSC drug ids), or
  # None where the source does not record one. GDSC screened some drugs (one PubChem CID) under
  # two drug ids whose ln IC50s on the same lines differ by up to 2.5 (`drug_columns`).
  pair_screen: np.ndarray | None = None
  screen_ids: tuple[str, ...] = ()

  @property
  def pair_type(self) -> np.ndarray:
    """[P] cancer-type index of each pair (a gather, not a stored copy)."""
    return self.cell_type[self.pair_cell]

  @property
  def cell_blocks(self) -> tuple[int, ...]:
    """Widths of the cell feature blocks (DeepCDR gives each its own branch)."""
    return self.feature_blocks or (self.cell_features.shape[1],)

  @property
  def drug_x(self) -> np.ndarray:
    """[D, K] raw vector features of the drugs ([D, 0] when the graph is the only representation)."""
    if self.drug_features is None:
      return np.zeros((len(self.drug_ids), 0), np.float32)
    return self.drug_features

  def drug_columns(self) -> tuple[np.ndarray, int, np.ndarray]:
    """The identity axis of a drug as measured: each pair's screen, the number of screens and
    each screen's drug ([P], S, [S]); each pair's drug, D and arange(D) where no screen is recorded."""
    if self.pair_screen is None:
      return self.pair_drug, len(self.drug_ids), np.arange(len(self.drug_ids))
    screen_drug = np.full(len(self.screen_ids), -1, np.int64)
    screen_drug[self.pair_screen] = self.pair_drug
    return self.pair_screen, len(self.screen_ids), screen_drug

  @property
  def num_pairs(self) -> int:
    return len(self.pair_y)

  def nbytes(self) -> int:
    """Bytes held by all arrays of the dataset."""
    arrays = [self.cell_features, self.cell_type, self.pair_cell, self.pair_drug, self.pair_y,
              self.pair_label, *[x for x in self.drug_graphs if x is not None]]
    if self.pair_screen is not None:
      arrays.append(self.pair_screen)
    return int(sum(np.asarray(a).nbytes for a in arrays))


SCREEN_SEPARATOR = '@'   # a drug screened under several GDSC ids: '<CID>@<GDSC id>' per screen


def screens_as_drugs(ds: Dataset) -> Dataset:
  """`ds` with each screen a drug of its own (same pairs, in the same order): drug i is screen i
  (`Dataset.drug_columns`), with its drug's graph, SMILES and vector features; its id is the
  drug's CID where the drug has one screen and '<CID>@<GDSC id>' where it has several."""
  from cdr_jax.data import chem  # pylint: disable=g-import-not-at-top
  column, n, screen_drug = ds.drug_columns()
  if ds.pair_screen is None or (screen_drug < 0).any():
    raise ValueError('screens_as_drugs needs every screen measured: a pair_screen per pair')
  several = np.bincount(screen_drug, minlength=len(ds.drug_ids))[screen_drug] > 1
  ids = tuple(f'{ds.drug_ids[d]}{SCREEN_SEPARATOR}{ds.screen_ids[s]}' if several[s]
              else ds.drug_ids[d] for s, d in enumerate(screen_drug))
  names = tuple(f'{ds.drug_names[d]} (GDSC {ds.screen_ids[s]})' if several[s]
                else ds.drug_names[d] for s, d in enumerate(screen_drug))
  graphs = ds.drug_graphs
  if graphs is not None:
    graphs = chem.batch_drug_graphs([chem.graph_at(graphs, int(d)) for d in screen_drug])
  pick = lambda seq: tuple(seq[d] for d in screen_drug) if len(seq) else seq
  return dataclasses.replace(
      ds, drug_ids=ids, drug_names=names, drug_graphs=graphs, drug_smiles=pick(ds.drug_smiles),
      drug_features=None if ds.drug_features is None else ds.drug_features[screen_drug],
      pair_drug=column.astype(np.int32), pair_screen=None, screen_ids=(),
      info=dict(ds.info, screens_as_drugs=int(n)))


def resolve_data_root(root: str) -> pathlib.Path:
  """The data root: `root` if given, else $CDR_DATA_DIR, else ./data."""
  return pathlib.Path(root or os.environ.get('CDR_DATA_DIR') or 'data').expanduser()
