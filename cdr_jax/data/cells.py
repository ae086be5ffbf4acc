"""Cell-line representations: omics, foundation-model embeddings, and controls.

`config.cell_repr` names one representation or several joined by '+', concatenated column-wise:
  expression, methylation, multiomics (= expression+methylation), onehot (cell identity), random
  (Gaussian features), or any name in `config.embeddings` (a `.npy` with `<name>.cells.txt` row ids).
`config.shuffle_cells` is the "shuffled" control: the rows of the final matrix are permuted across cell
lines by `config.repr_seed`, so each line gets another line's features.
Standardisation (`standardize`) is fitted on training cell lines only, by the training code;
`zscore_lines` (z-scoring each line across its features) needs no fit.
"""

import logging
import pathlib

import ml_collections
import numpy as np

from cdr_jax.data import events
from cdr_jax.data import fetch
from cdr_jax.data import io
from cdr_jax.data import layout
from cdr_jax.errors import DataError

EXPRESSION_FILE, METHYLATION_FILE = layout.EXPRESSION_FILE, layout.METHYLATION_FILE
_SOURCES = {'expression': EXPRESSION_FILE, 'methylation': METHYLATION_FILE,
            'mutation': layout.EVENTS_FILE, 'cna': layout.EVENTS_FILE}
BUILTIN = ('expression', 'methylation', 'multiomics', 'mutation', 'cna', 'onehot', 'random')


def omics_cell_ids(root: pathlib.Path) -> list[str]:
  """The 561 omics cell lines (row ids of the expression csv, in file order): docs/DEEPCDR.md §2's set."""
  head, body = io.read_table(root / EXPRESSION_FILE, 'expression: DepMap_ID x gene symbols',
                             header=['DepMap_ID'])
  ids = [r[0].strip() for r in body]
  io.check_unique(ids, root / EXPRESSION_FILE, 'cell id')
  return ids


def load_expression(root: pathlib.Path) -> tuple[list[str], np.ndarray, dict]:
  """The data root's expression, gaps handled as `read_expression` does."""
  return read_expression(root / EXPRESSION_FILE)


def read_expression(path: io.PathLike) -> tuple[list[str], np.ndarray, dict]:
  """Expression with gaps handled: all-missing lines dropped, missing genes imputed by gene mean."""
  ids, genes, x = io.read_matrix_csv(path, 'expression: DepMap_ID x gene symbols', 'DepMap_ID')
  missing = np.isnan(x)
  empty = missing.all(axis=1)
  x, missing, kept = x[~empty], missing[~empty], [i for i, e in zip(ids, empty) if not e]
  if missing.all(axis=0).any():
    gene = genes[int(np.argmax(missing.all(axis=0)))]
    raise DataError(f'{path}: gene {gene!r} is missing for every cell line; cannot impute it')
  gene_mean = np.nanmean(x, axis=0)
  x = np.where(missing, gene_mean[None, :], x)
  info = {'expression_lines_dropped_all_missing': int(empty.sum()),
          'expression_values_imputed': int(missing.sum()),
          'expression_lines_imputed': int(missing.any(axis=1).sum()),
          'expression_genes_imputed': int(missing.any(axis=0).sum())}
  logging.info('expression: dropped %d all-missing lines; imputed %d values (%d lines, %d genes) '
               'by gene mean', *info.values())
  return kept, x.astype(np.float32), info


def load_methylation(root: pathlib.Path) -> tuple[list[str], np.ndarray, dict]:
  """Methylation (complete upstream: any missing value is an error)."""
  fetch.ensure(root, [METHYLATION_FILE])
  ids, _, x = io.read_matrix_csv(root / METHYLATION_FILE, 'methylation: cell id x features', '',
                                 allow_na=False)
  return ids, x, {}


def builtin_control(name: str, config: ml_collections.ConfigDict, cell_ids: list[str]) -> np.ndarray:
  """Control features: 'onehot' (cell identity) or 'random' (seeded Gaussian, random_dim columns)."""
  if name == 'onehot':
    return np.eye(len(cell_ids), dtype=np.float32)
  rng = np.random.default_rng(config.repr_seed)
  return rng.standard_normal((len(cell_ids), config.random_dim), np.float32)


def _embedding(name: str, config: ml_collections.ConfigDict, root: pathlib.Path):
  path = root / config.embeddings[name]
  fetch.ensure(root, [path, path.with_suffix('.cells.txt')])  # scfoundation's are in the manifest
  if not path.is_file():
    model_args = {'scgpt': '--checkpoint_dir <scGPT_human checkpoint dir>',
                  'scfoundation': '--repo_dir <scFoundation clone> --checkpoint <models.ckpt>'}
    raise DataError(
        f'missing embedding file {path} for cell_repr {name!r}. A foundation-model embedding is made '
        f'by the sidecar (CDR_WITH_TORCH=1 bash run.sh ...): python -m embed_torch {name} '
        f'{model_args.get(name, "<model args>")} --expression {root / EXPRESSION_FILE} '
        f'--out {path} --drop_nan_rows --fill_nan zero (see embed_torch/README.md)')
  ids, x = io.read_embedding(path)
  return ids, x, {f'{name}_dim': int(x.shape[1])}


def _part(name: str, config, root: pathlib.Path, universe: list[str]):
  """(ids, matrix, info) of one named representation."""
  if name == 'expression':
    return load_expression(root)
  if name == 'methylation':
    return load_methylation(root)
  if name in events.KINDS:  # GDSC mutation / copy-number events, mapped to DepMap ids by name
    fetch.ensure(root, [layout.EVENTS_FILE, layout.COSMIC_FILE])
    return events.event_features(name, root, universe)
  if name in ('onehot', 'random'):
    return list(universe), builtin_control(name, config, universe), {}
  if name in config.embeddings:
    return _embedding(name, config, root)
  raise ValueError(f'unknown cell representation {name!r}; choose from '
                   f'{sorted(BUILTIN + tuple(config.embeddings))} (join several with "+")')


def parse_repr(cell_repr: str) -> list[str]:
  """'multiomics+scgpt' -> ['expression', 'methylation', 'scgpt']."""
  names = []
  for part in cell_repr.split('+'):
    names += ['expression', 'methylation'] if part == 'multiomics' else [part.strip()]
  if not all(names):
    raise ValueError(f'empty part in cell_repr {cell_repr!r}')
  return names


def combine(parts, universe: list[str], sources: list[str]) -> tuple[np.ndarray, list[str], dict]:
  """Concatenates parts over the cell lines all of them cover, in `universe` order.

  A part naming a cell line outside `universe` (the omics lines) is an error, not a silent drop.
  """
  covered, known = set(universe), set(universe)
  for (ids, _, _), source in zip(parts, sources):
    unknown = [c for c in ids if c not in known]
    if unknown:
      raise DataError(f'{source}: unknown cell id {unknown[0]!r} ({len(unknown)} ids are not among '
                      f'the {len(universe)} omics cell lines)')
    covered &= set(ids)
  cell_ids = [c for c in universe if c in covered]
  blocks, info = [], {}
  for ids, x, part_info in parts:
    row = {c: i for i, c in enumerate(ids)}
    blocks.append(x[[row[c] for c in cell_ids]])
    info.update(part_info)
  info['cell_lines_without_features'] = len(universe) - len(cell_ids)
  info['blocks'] = [int(b.shape[1]) for b in blocks]  # one model branch per block (DeepCDR)
  return np.concatenate(blocks, axis=1), cell_ids, info


def build_cell_features(config: ml_collections.ConfigDict, root: pathlib.Path,
                        universe: list[str]) -> tuple[np.ndarray, list[str], dict]:
  """The [C, F] feature matrix named by `config.cell_repr`, its row ids, and counts for the log."""
  names = parse_repr(config.cell_repr)
  parts = [_part(n, config, root, universe) for n in names]
  sources = [str(root / _SOURCES[n]) if n in _SOURCES else
             str(root / config.embeddings[n]) if n in config.embeddings else n for n in names]
  features, cell_ids, info = combine(parts, universe, sources)
  if config.shuffle_cells:
    features = features[np.random.default_rng(config.repr_seed).permutation(len(cell_ids))]
  info.update(cell_repr=config.cell_repr, shuffled=bool(config.shuffle_cells),
              feature_dim=int(features.shape[1]))
  if info['cell_lines_without_features']:
    logging.warning('%d of %d cell lines have no %s features and are dropped',
                    info['cell_lines_without_features'], len(universe), config.cell_repr)
  return features, cell_ids, info


def standardize(features: np.ndarray, fit_rows: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """Z-scores columns with mean and sd fitted on `fit_rows` only (training cell lines)."""
  fit = features[fit_rows]
  mean, sd = fit.mean(axis=0), fit.std(axis=0)
  return ((features - mean) / np.where(sd > eps, sd, 1.0)).astype(np.float32)


def zscore_lines(features: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """Each row (cell line) centred and scaled across its own features: what is left is the line's
  profile, not its overall level or spread. Label-free and fitted on nothing (each line alone).
  A row that does not vary is centred only."""
  x = np.asarray(features, np.float64)
  sd = x.std(axis=1, keepdims=True)
  return ((x - x.mean(axis=1, keepdims=True)) / np.where(sd > eps, sd, 1.0)).astype(np.float32)
