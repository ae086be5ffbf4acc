"""Train / validation / test splits of the pairs, deterministic given a seed.

Every split returns pair-index arrays; held-out entities (a drug, cell lines, a cancer type) never
appear in train or validation. `legacy` recomputes the exact published DeepCDR / scFoundation split.
"""

import dataclasses
import logging
import math
import random

import ml_collections
import numpy as np

from cdr_jax.data import Dataset

# docs/DEEPCDR.md §5: the 25 TCGA labels of the published split, in the order they are sampled.
LEGACY_TYPES = ('ALL', 'BLCA', 'BRCA', 'CESC', 'DLBC', 'LIHC', 'LUAD', 'ESCA', 'GBM', 'HNSC', 'KIRC',
                'LAML', 'LCML', 'LGG', 'LUSC', 'MESO', 'MM', 'NB', 'OV', 'PAAD', 'SCLC', 'SKCM',
                'STAD', 'THCA', 'COAD/READ')
NAMES = ('legacy', 'random', 'leave_drug_out', 'leave_cell_out', 'leave_cancer_type_out')


@dataclasses.dataclass(frozen=True)
class Split:
  """Pair indices of each part; `test` is in the split's defined order."""
  name: str
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  description: str = ''

  def sizes(self) -> dict[str, int]:
    return {'train': len(self.train), 'val': len(self.val), 'test': len(self.test)}


def py2_sample(rng: random.Random, population: list, k: int) -> list:
  """Python 2.7's `random.sample`, which the published split used (Python 3's differs).

  Both branches consume `rng.random()` exactly as Python 2 did (docs/DEEPCDR.md §5).
  """
  n = len(population)
  if not 0 <= k <= n:
    raise ValueError(f'sample larger than population: k={k}, n={n}')
  setsize = 21
  if k > 5:
    setsize += 4 ** math.ceil(math.log(3 * k, 4))
  result = []
  if n <= setsize:
    pool = list(population)
    for i in range(k):
      j = int(rng.random() * (n - i))
      result.append(pool[j])
      pool[j] = pool[n - i - 1]
  else:
    selected = set()
    for _ in range(k):
      j = int(rng.random() * n)
      while j in selected:
        j = int(rng.random() * n)
      selected.add(j)
      result.append(population[j])
  return result


def _carve(idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits `idx` into (rest, carved) with a seeded random `fraction` carved out."""
  perm = np.random.default_rng(seed).permutation(len(idx))
  n = int(round(fraction * len(idx)))
  return np.sort(idx[perm[n:]]), np.sort(idx[perm[:n]])


def legacy(ds: Dataset, cfg: ml_collections.ConfigDict) -> Split:
  """docs/DEEPCDR.md §5: per TCGA label, Python 2 `random.sample` after `random.seed(0)`; val from train."""
  if ds.info.get('legacy_instances_dropped'):
    logging.warning('%d instances of the 25 legacy labels lack features: this is not the published '
                    'split', ds.info['legacy_instances_dropped'])
  rng = random.Random(0)
  pair_type = ds.pair_type
  train, test = [], []
  for label in LEGACY_TYPES:
    members = (np.flatnonzero(pair_type == ds.cancer_types.index(label))
               if label in ds.cancer_types else np.zeros(0, np.int64))
    chosen = py2_sample(rng, members.tolist(), int(0.95 * len(members)))
    train += chosen
    chosen_set = set(chosen)
    test += [i for i in members.tolist() if i not in chosen_set]
  train, val = _carve(np.array(train, np.int64), cfg.val_fraction, cfg.seed)
  return Split('legacy', train, val, np.array(test, np.int64),
               'published DeepCDR split (25 TCGA labels); validation carved from its train part')


def random_pairs(ds: Dataset, cfg: ml_collections.ConfigDict) -> Split:
  """Pair-level random split, optionally stratified by cancer type."""
  groups = ds.pair_type if cfg.stratify else np.zeros(ds.num_pairs, np.int32)
  train, val, test = [], [], []
  for g in np.unique(groups):
    members = np.flatnonzero(groups == g)
    rest, te = _carve(members, cfg.test_fraction, cfg.seed + int(g))
    tr, va = _carve(rest, cfg.val_fraction / (1 - cfg.test_fraction), cfg.seed + 7919 + int(g))
    train.append(tr), val.append(va), test.append(te)
  return Split('random', *(np.sort(np.concatenate(x)) for x in (train, val, test)),
               'pair-level random' + (' stratified by cancer type' if cfg.stratify else ''))


def _entity_split(name: str, pair_entity: np.ndarray, held_out: np.ndarray, candidates: np.ndarray,
                  cfg: ml_collections.ConfigDict, description: str) -> Split:
  """Test = pairs of `held_out` entities; val = pairs of a seeded fraction of the other entities."""
  others = np.setdiff1d(candidates, held_out)
  _, val_entities = _carve(others, cfg.val_fraction, cfg.seed)
  test = np.flatnonzero(np.isin(pair_entity, held_out))
  val = np.flatnonzero(np.isin(pair_entity, val_entities))
  train = np.flatnonzero(~np.isin(pair_entity, np.concatenate([held_out, val_entities])))
  return Split(name, train, val, test, description)


def _check_fold(fold: int, n: int, what: str) -> None:
  if not 0 <= fold < n:
    raise ValueError(f'split.fold={fold} out of range: there are {n} {what} folds (0..{n - 1})')


def leave_drug_out(ds: Dataset, cfg: ml_collections.ConfigDict) -> Split:
  """Fold f holds out drug f; validation holds out other whole drugs."""
  _check_fold(cfg.fold, len(ds.drug_ids), 'leave_drug_out')
  drugs = np.arange(len(ds.drug_ids))
  return _entity_split('leave_drug_out', ds.pair_drug, drugs[[cfg.fold]], drugs, cfg,
                       f'held-out drug {ds.drug_ids[cfg.fold]} ({ds.drug_names[cfg.fold]})')


def cell_folds(num_cells: int, num_folds: int, seed: int) -> list[np.ndarray]:
  """Cell lines in `num_folds` seeded random folds of near-equal size."""
  perm = np.random.default_rng(seed).permutation(num_cells)
  return [np.sort(f) for f in np.array_split(perm, num_folds)]


def leave_cell_out(ds: Dataset, cfg: ml_collections.ConfigDict) -> Split:
  """Fold f of `num_folds` random folds of cell lines is held out; validation holds out other lines."""
  _check_fold(cfg.fold, cfg.num_folds, 'leave_cell_out')
  held = cell_folds(len(ds.cell_ids), cfg.num_folds, cfg.seed)[cfg.fold]
  return _entity_split('leave_cell_out', ds.pair_cell, held, np.arange(len(ds.cell_ids)), cfg,
                       f'cell-line fold {cfg.fold} of {cfg.num_folds} ({len(held)} lines)')


def leave_cancer_type_out(ds: Dataset, cfg: ml_collections.ConfigDict) -> Split:
  """Fold f holds out every cell line of cancer type f; validation holds out other lines."""
  _check_fold(cfg.fold, len(ds.cancer_types), 'leave_cancer_type_out')
  held = np.flatnonzero(ds.cell_type == cfg.fold)
  return _entity_split('leave_cancer_type_out', ds.pair_cell, held, np.arange(len(ds.cell_ids)),
                       cfg, f'held-out cancer type {ds.cancer_types[cfg.fold]}')


_SPLITS = {'legacy': legacy, 'random': random_pairs, 'leave_drug_out': leave_drug_out,
           'leave_cell_out': leave_cell_out, 'leave_cancer_type_out': leave_cancer_type_out}


def make_split(ds: Dataset, cfg: ml_collections.ConfigDict) -> Split:
  """The split named by `cfg.name` (see `NAMES`)."""
  if cfg.name not in _SPLITS:
    raise ValueError(f'unknown split {cfg.name!r}; choose one of: {", ".join(NAMES)}')
  return _SPLITS[cfg.name](ds, cfg)


def measured_before(ds: Dataset, fitted_on: np.ndarray, pairs: np.ndarray) -> np.ndarray:
  """Which of `pairs` repeat a (line, drug) measured among the pairs `fitted_on`.

  GDSC screened some drugs under several ids that share one PubChem CID (one drug here), so a line
  and drug can have two measurements; a pair-level split (legacy, random) may put one in training
  and the other in test, where recalling the first predicts the second.
  """
  key = ds.pair_cell.astype(np.int64) * len(ds.drug_ids) + ds.pair_drug
  return np.isin(key[pairs], key[fitted_on])


def type_groups(ds: Dataset, name: str) -> np.ndarray | None:
  """Each line's cancer type as a group index for kernel ridge's same-type kernel (-1: 'NA'), or
  None for `leave_cancer_type_out`: there every held-out line's type has no training lines, so the
  kernel says nothing about them while inner CV over the training lines would weight it."""
  if name == 'leave_cancer_type_out':
    return None
  unlabelled = ds.cancer_types.index('NA') if 'NA' in ds.cancer_types else -1
  return np.where(ds.cell_type == unlabelled, -1, ds.cell_type).astype(np.int64)


def line_annotations(ds: Dataset, name: str) -> dict[str, np.ndarray]:
  """The line annotations kernel ridge may add a kernel on (`classical.ANNOTATION_WEIGHTS`): 'type'
  (`type_groups`; not for `leave_cancer_type_out`) and the dataset's others
  (`Dataset.line_annotations`: the screening medium, shared by held-out and training lines in every
  split, and the doubling time)."""
  types = type_groups(ds, name)
  return {**({} if types is None else {'type': types}), **ds.line_annotations}
