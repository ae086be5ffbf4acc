"""Kernel ridge on unseen cell lines: which kernel validates? (JSON out, seconds per fold)

For each leave_cell_out fold, per-drug PCC on the test pairs of multi-output kernel ridge
(`classical.kernel_ridge`: width, weights and lambda chosen by inner CV over the training lines,
never on test) with the kernel
  rbf                    RBF on the standardised cell features (the kernel before session 10);
  rbf+type               + weight x same cancer type (session 10);
  rbf+type+medium        + weight x same GDSC screening medium (session 11);
  rbf+type+medium+doubling   + weight x the product of the lines' standardised log2 doubling
                         times (CCLE): session 11's (`splits.line_annotations`, weights from
                         `classical.ANNOTATION_WEIGHTS`, chosen one after another);
  spectrum               the same kernel, then one lambda per drug-space component of the
                         training responses (`classical.SPECTRUM_GAMMAS`; lambda and gamma by the
                         same inner CV): kernel ridge's default in session 12;
  default                + weight x a fine RBF (`classical.FINE_WIDTH_REL`, weight by the same
                         inner CV) before the spectrum stage: kernel ridge's default since
                         session 13;
  default, lines z-scored    on the features with each line z-scored across them
                         (`cells.zscore_lines`, session 16);
  default, line z-score by inner CV   whichever of the two kernel ridge's inner CV scores higher
                         (what `data.line_zscore=-1`, the unseen-lines runs' setting, does);
  default+<annotation>   + weight x same value of another GDSC line annotation (growth
                         properties; GDSC's finer tissue label), weight from 0-0.4;
  default+<omics>        + weight x a linear kernel on another omics block (z-scored on training
                         lines; lines without it add nothing), for methylation and mutation+cna;
  default, relevance-weighted genes   on features scaled by sqrt of each gene's relevance: the
                         norm over drugs of its covariance with the drug-centred responses of the
                         training lines (labels of training lines only).
(The rows before `default` turn the fine RBF off.) The last two are explorations, not predictors the runs fit; the last is the best of several forms
tried on the same test folds (gene weightings and top-k selections), so its figure is optimistic.
(Session 10's exploration of one lambda per fixed block of components, the best of four blockings
on these test folds, 0.4537 then, is what the spectrum stage now does with its form chosen by inner
CV.)

  CDR_DATA_DIR=../shared/data python bench/lco_kernels.py [--config=configs/baseline.py]
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags
import numpy as np

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax.data import cells
from cdr_jax.data import dataset
from cdr_jax.data import events
from cdr_jax.data import splits
from cdr_jax.eval import classical as cl

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/baseline.py', 'Cell representation.')
_FOLDS = flags.DEFINE_list('folds', ['0', '1', '2', '3', '4'], 'leave_cell_out folds to score.')
_OMICS = flags.DEFINE_list('omics', ['methylation', 'mutation+cna'], 'Extra kernels to try.')
OMICS_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2)
ANNOTATION_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.4)
# What kernel ridge's inner CV chose, as each fold reports it (lco_inner_seeds.py too).
CHOICES = ('width_rel', *(f'{n}_weight' for n in cl.KERNEL_WEIGHTS), 'lambda_rel',
           'spectrum_lambda_rel', 'spectrum_gamma')
ANNOTATIONS = {'growth': 'GROWTH_PROPERTIES', 'gdsc_tissue': 'GDSC2'}   # cosmic_info columns


def omics_block(config, rep: str, cell_ids: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
  """Another representation's raw features aligned to `cell_ids` (rows) and which lines have it."""
  other = config.data.copy_and_resolve_references()
  other.cell_repr = rep
  ds = data.load_dataset(other)
  index = {c: i for i, c in enumerate(ds.cell_ids)}
  rows = np.array([index.get(c, -1) for c in cell_ids])
  x = np.zeros((len(cell_ids), ds.cell_features.shape[1]))
  x[rows >= 0] = ds.cell_features[rows[rows >= 0]]
  return x, rows >= 0


def linear_kernel(x: np.ndarray, has: np.ndarray, lines: np.ndarray) -> np.ndarray:
  fit = lines[has[lines]]
  z = np.where(has[:, None], (x - x[fit].mean(0)) / (x[fit].std(0) + 1e-6), 0.0)
  return z @ z.T / z.shape[1]


def fold_data(ds, config, fold: int):
  """leave_cell_out fold `fold`: training lines, features standardised on them, training pairs,
  and score(scores [n_cells, n_drugs]) -> mean per-drug PCC on the fold's test pairs."""
  config.split.fold = fold
  split = splits.make_split(ds, config.split)
  lines = np.unique(ds.pair_cell[split.train])
  x = np.asarray(experiment.standardized_features(
      ds, lines, np.unique(ds.pair_drug[split.train]), config)[0], np.float64)
  train = cl.Pairs(ds.pair_cell[split.train], ds.pair_drug[split.train],
                   ds.pair_y[split.train].astype(np.float64))
  te = split.test
  score = lambda s: cl.mean_drug_pcc(s[ds.pair_cell[te], ds.pair_drug[te]], ds.pair_y[te],
                                     ds.pair_drug[te])
  return lines, x, train, score


def main(argv):
  del argv
  config = _CONFIG.value
  config.split.name = 'leave_cell_out'
  ds = data.load_dataset(config.data)
  n_cells, n_drugs = len(ds.cell_ids), len(ds.drug_ids)
  annotations = splits.line_annotations(ds, config.split.name)
  root = dataset.resolve_data_root(config.data.root)
  others = {n: cl.group_kernel(events.line_table_groups(root, ds.cell_ids, col, n)[0], n_cells)
            for n, col in ANNOTATIONS.items()}
  blocks = {rep: omics_block(config, rep, ds.cell_ids) for rep in _OMICS.value}
  no_fine = {'fine': (0.0,)}
  folds = []
  for f in map(int, _FOLDS.value):
    lines, x, train, score = fold_data(ds, config, f)
    fit_kernels = lambda name, kernels: cl._fit_kernels(  # pylint: disable=protected-access
        name, kernels, train, n_cells, n_drugs, cl.LAMBDAS, cl.INNER_FOLDS, config.train.seed,
        (cl.LAMBDAS, cl.SPECTRUM_GAMMAS))
    row, chosen = {}, {}
    for name, kinds in (('rbf', ()), ('rbf+type', ('type',)),
                        ('rbf+type+medium', ('type', 'medium')),
                        ('rbf+type+medium+doubling', ('type', 'medium', 'doubling'))):
      fit = cl.kernel_ridge(x, train, n_drugs, config.train.seed,
                            annotations={k: annotations[k] for k in kinds}, spectrum=None,
                            annotation_weights=no_fine)
      row[name] = score(fit.scores)
    row['spectrum'] = score(cl.kernel_ridge(x, train, n_drugs, config.train.seed,
                                            annotations=annotations,
                                            annotation_weights=no_fine).scores)
    default = cl.kernel_ridge(x, train, n_drugs, config.train.seed, annotations=annotations)
    row['default'] = score(default.scores)
    chosen.update({k: default.params[k] for k in CHOICES})
    zscored = cl.kernel_ridge(cells.zscore_lines(x), train, n_drugs, config.train.seed,
                              annotations=annotations)
    row['default, lines z-scored'] = score(zscored.scores)
    chosen['line_zscore'] = int(cl.cv_score_of(zscored.params) > cl.cv_score_of(default.params))
    row['default, line z-score by inner CV'] = score((zscored if chosen['line_zscore']
                                                      else default).scores)
    d2 = cl._sq_dists(x)  # pylint: disable=protected-access
    kern = dict(cl.annotation_kernels(annotations, n_cells, lines),
                fine=cl._fine_rbf(d2, default.params['median_distance']))  # pylint: disable=protected-access
    base = cl._rbf_plus(d2, default.params['width'], kern,  # pylint: disable=protected-access
                        cl.annotation_weights_of(default.params))
    extras = {**others, **{rep: linear_kernel(raw, has, lines) for rep, (raw, has) in blocks.items()}}
    for name, extra in extras.items():
      grid = ANNOTATION_WEIGHTS if name in others else OMICS_WEIGHTS
      fit = fit_kernels(name, [({'weight': w}, base + w * extra) for w in grid])
      row[f'default+{name}'] = score(fit.scores)
      chosen[f'{name}_weight'] = fit.params['weight']
    ymat, mask = cl.response_matrix(train, n_cells, n_drugs)
    centred = np.where(mask, ymat - np.nanmean(np.where(mask, ymat, np.nan), 0), 0.0)[lines]
    xc = x[lines] - x[lines].mean(0)
    relevance = np.linalg.norm(xc.T @ centred, axis=1) / np.linalg.norm(xc, axis=0)
    weighted = cl.kernel_ridge(x * np.sqrt(relevance / relevance.max()), train, n_drugs,
                               config.train.seed, annotations=annotations)
    row['default, relevance-weighted genes'] = score(weighted.scores)
    row['chosen'] = chosen
    folds.append(row)
    print(json.dumps({'fold': f, **row}), file=sys.stderr, flush=True)
  names = [k for k in folds[0] if k != 'chosen']
  print(json.dumps({'cell_repr': config.data.cell_repr, 'folds': folds, 'summary': {
      k: {'mean': float(np.mean([r[k] for r in folds])),
          'sd': float(np.std([r[k] for r in folds], ddof=1)) if len(folds) > 1 else 0.0}
      for k in names}}, indent=1))


if __name__ == '__main__':
  app.run(main)
