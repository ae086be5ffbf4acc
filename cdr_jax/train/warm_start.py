"""Settings and starting weights from the tuned classical predictors, chosen before training.

Two warm starts, each making the untrained network predict exactly what a tuned classical
predictor does (its other terms are silenced by a zero output layer); training then fits what the
rest of the network adds, and selection on validation keeps the epoch that validates best:

- `model.id_init='mf'` (seen lines and drugs): the hybrid's identity codes (`IdentityCodes`, a
  biased matrix factorisation inside the model) start from `classical.select_matrix_factorization`
  (rank and L2 chosen on the validation pairs, ALS from the run's seed), sized with its rank and
  penalised with its L2 (unless `model.id_l2` is set). Trained from random codes by Adam the codes
  stay below the same factorisation fitted by ALS to convergence (README, Results: the summary).
- `model.linear_init='ridge'` (unseen lines): the per-drug linear term (`EntityLinear`) is turned on
  and starts from per-drug ridge on the features it sees (lambda by inner CV over training lines,
  then one lambda per drug-space component of the responses, `classical.ridge_per_drug` with its
  spectrum stage), with the first lambda as its L2 (unless `model.drug_linear` is set). On the RBF
  kernel map of the cell features (`data.cell_kernel='rbf'`) that ridge is exactly the kernel ridge
  baseline (`classical.kernel_map`).

- `model.line_init='kernel_ridge'` (unseen drugs): the per-line linear term (`EntityLinear`) on the
  kernel map of the leave-one-drug-out baseline's drug kernel (`eval/lodo_kernel.py`) is turned on
  and starts from kernel ridge over the training drugs' z-scored profiles (`lodo_kernel.fit_drugs`,
  one profile column per GDSC screen with `data.screens`: `kernel_screens`; lambda by
  leave-one-out over those drugs), with that lambda as its L2 (unless
  `model.line_linear` is set): the network starts as the baseline, fitted on its training drugs.
  In the sweep (`cdr_jax.lodo`) every fold gets its own fit and its own lambda.

And settings: `data.cell_kernel='rbf'` with `data.rbf_width=0` and `data.type_weight=-1`,
`data.medium_weight=-1`, `data.doubling_weight=-1`, `data.fine_weight=-1` take the width and the
weights of the line annotation kernels (same cancer type, same screening medium, doubling time)
and of the fine RBF that kernel ridge chooses by inner CV over the training lines; and
`data.line_zscore=-1`: whether each line is z-scored across its features
(`cells.zscore_lines`), chosen by the same kernel ridge's inner CV score with and without it.

Only training and validation pairs are read. The run's classical predictors reuse the factorisation.

Scale: the network predicts z = (y - mean) / std. A factorisation y = mu + b + a + u.v is, on that
scale, (mu - mean) / std + b / std + a / std + (u / sqrt(std)).(v / sqrt(std)); ALS's penalty
l2 * |u|^2 on the summed squared error of y is, divided by std^2, (l2 / std) * |u / sqrt(std)|^2
on the summed squared error of z: the codes' L2 is l2 / std. The biases (b / std on that scale)
would keep l2 itself; `model.id_l2` is one lambda for the whole module, so they get l2 / std too,
std (about 2.7) times weaker than in ALS: with hundreds of pairs per line and per drug, a shrinkage
of l2 = 10 on a bias barely differs from l2 / std. A linear term y = b + x.w is
z = (b - mean) / std + x.(w / std) and keeps ridge's lambda.
"""

import copy
import dataclasses
import logging
import time

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from cdr_jax.data import cells
from cdr_jax.data import dataset
from cdr_jax.data import drugs as drug_lib
from cdr_jax.data import splits
from cdr_jax.data.dataset import Dataset
from cdr_jax.eval import classical
from cdr_jax.eval import lodo_kernel
from cdr_jax.train import sharding

ID_INITS = ('random', 'mf')
LINEAR_INITS = ('zero', 'ridge')
LINE_INITS = ('zero', 'kernel_ridge')
CELL_KERNELS = ('none', 'rbf')
LINE_ZSCORES = (-1.0, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class WarmStart:
  """What the run starts from: the fitted classical predictor (`mf` or `ridge`) and its settings."""
  kind: str         # 'mf' (identity codes), 'ridge' (per-drug linear term), 'line' (per-line)
  fit: classical.Predictor | lodo_kernel.DrugRidge
  settings: dict                  # the config fields it set
  seconds: float

  def info(self) -> dict:
    return {'from': self.fit.name, **self.settings, 'seconds': self.seconds,
            'fit': {k: v for k, v in self.fit.params.items() if k not in ('val', 'cv')}}


@dataclasses.dataclass(frozen=True)
class Chosen:
  """`configure`'s result: the config to train, what was chosen in it, and the warm start."""
  config: ml_collections.ConfigDict
  settings: dict                  # 'section.field' -> value chosen on training / validation pairs
  warm: WarmStart | None


def check(config: ml_collections.ConfigDict) -> str | None:
  """The warm start `config` asks for ('mf', 'ridge', 'line' or None); ValueError for unknown or
  contradictory settings. Only the regression task has one (both fit ln IC50, not a classifier's
  logits). 'mf' applies with identity codes on (`id_embed_dim` > 0) and a split of seen lines and
  drugs (elsewhere the validation pairs have lines or drugs the factorisation cannot score, so
  nothing would choose its rank: the codes start at random)."""
  m, d = config.model, config.data
  # .get: configs written before these fields (launch/predict.py reads old runs' config.json)
  id_init, linear_init = m.get('id_init', 'random'), m.get('linear_init', 'zero')
  line_init = m.get('line_init', 'zero')
  for name, value, allowed in (('model.id_init', id_init, ID_INITS),
                               ('model.linear_init', linear_init, LINEAR_INITS),
                               ('model.line_init', line_init, LINE_INITS),
                               ('data.cell_kernel', d.get('cell_kernel', 'none'), CELL_KERNELS)):
    if value not in allowed:
      raise ValueError(f'unknown {name} {value!r}; choose one of: {", ".join(allowed)}')
  if d.get('line_zscore', 0.0) not in LINE_ZSCORES:
    raise ValueError(f'data.line_zscore is {d.line_zscore}; choose 0 (off), 1 (each line '
                     'z-scored across its features) or -1 (kernel ridge chooses by inner CV)')
  if m.task != 'regression':  # both fit ln IC50; a classifier's logits start from nothing
    return None
  mf = (id_init == 'mf' and bool(m.id_embed_dim)
        and classical.kind_of(config.split.name) == 'seen_pairs')
  kinds = [k for k, on in (('mf', mf), ('ridge', linear_init == 'ridge'),
                            ('line', line_init == 'kernel_ridge')) if on]
  if len(kinds) > 1:
    fields = {'mf': "identity codes from matrix factorisation (model.id_init='mf', seen pairs)",
              'ridge': "model.linear_init='ridge' (unseen lines)",
              'line': "model.line_init='kernel_ridge' (unseen drugs)"}
    raise ValueError(' and '.join(fields[k] for k in kinds) + ' would each start the network as a '
                     'full predictor: keep one (--config.model.id_init=random, '
                     '--config.model.linear_init=zero or --config.model.line_init=zero)')
  return kinds[0] if kinds else None


def _pairs(ds: Dataset, idx: np.ndarray) -> classical.Pairs:
  return classical.Pairs(ds.pair_cell[idx], ds.pair_drug[idx],
                         np.asarray(ds.pair_y[idx], np.float64))


def fit_mf(ds: Dataset, split: splits.Split, seed: int) -> classical.Predictor:
  """Matrix factorisation fitted on the split's training pairs, rank and L2 chosen on its
  validation pairs (the classical predictor `tuned_matrix_factorization`)."""
  if not len(split.val):
    raise ValueError("model.id_init='mf' chooses the factorisation's rank and L2 on validation "
                     'pairs, and the split has none (split.val_fraction > 0, or id_init=random)')
  return classical.select_matrix_factorization(_pairs(ds, split.train), _pairs(ds, split.val),
                                               len(ds.cell_ids), len(ds.drug_ids), seed)


def annotation_weights(data_config: ml_collections.ConfigDict) -> dict[str, float]:
  """{name: data.<name>_weight} for the kernels added to the RBF (`classical.KERNEL_WEIGHTS`: the
  line annotations and the fine RBF); 0 for a field the config lacks (runs written before it)."""
  return {n: float(data_config.get(f'{n}_weight', 0.0)) for n in classical.KERNEL_WEIGHTS}


def cell_inputs(x_std: np.ndarray, lines: np.ndarray, data_config: ml_collections.ConfigDict,
                annotations: dict[str, np.ndarray] | None = None) -> np.ndarray:
  """The cell features the network sees: the standardised ones, or with `cell_kernel='rbf'` the
  kernel map (`classical.kernel_map`, fitted on the training lines `lines`) of the RBF kernel plus
  `data.<name>_weight` x the kernel on `annotations[name]` for each line annotation given
  (`splits.line_annotations`; one not given adds nothing) plus `data.fine_weight` x the fine RBF."""
  if data_config.get('cell_kernel', 'none') != 'rbf':  # .get: runs written before the field
    return x_std
  weights = annotation_weights(data_config)
  if not data_config.rbf_width > 0 or min(weights.values()) < 0:
    raise ValueError(f'data.cell_kernel=rbf needs data.rbf_width > 0 (is {data_config.rbf_width}) '
                     f'and the annotation weights >= 0 (are {weights}) here: launch/train.py runs '
                     'choose them (0 and -1) by kernel ridge on the training lines')
  annotations = annotations or {}
  weights = {n: w for n, w in weights.items()
             if n in annotations or n not in classical.ANNOTATION_WEIGHTS}
  return classical.kernel_map(x_std, lines, data_config.rbf_width, annotations,
                              weights)[0].astype(np.float32)


def drug_kernel(ds: Dataset, config: ml_collections.ConfigDict) -> np.ndarray:
  """[D, D] the leave-one-drug-out baseline's label-free drug kernel (GDSC pathway and targets
  with a data root, Morgan and descriptors from the SMILES, the screening order with
  `data.screening_batch`, the binding panels with the `binding` drug representation;
  `lodo_kernel.weighted_kernel`)."""
  root = (dataset.resolve_data_root(config.data.root) if config.data.source == 'deepcdr'
          else None)
  return lodo_kernel.weighted_kernel(ds, root, config.data.get('screening_batch', False),
                                     drug_lib.uses_binding(config.data))[0]


def network_kernel(kernel: np.ndarray, data_config: ml_collections.ConfigDict) -> np.ndarray:
  """The drug kernel the network sees: `kernel`, or with the shuffled drug-feature control
  (`data.shuffle_drugs`) its drugs permuted as the vector drug features are (each drug gets
  another drug's row and column; `drugs.shuffled`'s permutation)."""
  if not data_config.shuffle_drugs:
    return kernel
  perm = drug_lib.shuffled(np.arange(len(kernel)), data_config.repr_seed)
  return np.asarray(kernel)[np.ix_(perm, perm)]


def kernel_screens(ds: Dataset, data_config: ml_collections.ConfigDict) -> np.ndarray | None:
  """[P] each pair's screen, so kernel ridge over drugs fits one profile column per screen, each
  z-scored on its own and a drug measured in several screens weighing more (`lodo_kernel`'s
  module docstring, `column_drugs`), where `data.screens` is on and the data records screens;
  else None (one column per drug). A drug still leaves with all its screens, and predictions
  stay per drug. Sweeps written before session 21 with `data.screens` on fitted one column per
  drug here; rerun with `--config.data.screens=False` to reproduce their kernel."""
  return ds.pair_screen if data_config.get('screens', False) else None


def fit_line(ds: Dataset, train: np.ndarray, kernel: np.ndarray,
             data_config: ml_collections.ConfigDict, **kwargs) -> lodo_kernel.DrugRidge:
  """Kernel ridge over the drugs of the training pairs `train` (`lodo_kernel.fit_drugs`, per
  screen with `data.screens`: `kernel_screens`; `kwargs` go to it)."""
  screens = kernel_screens(ds, data_config)
  return lodo_kernel.fit_drugs(ds.pair_cell[train], ds.pair_drug[train], ds.pair_y[train],
                               len(ds.cell_ids), kernel,
                               pair_screen=None if screens is None else screens[train], **kwargs)


def configure(config: ml_collections.ConfigDict, ds: Dataset, split: splits.Split,
              x_std: np.ndarray, kernel: np.ndarray | None = None) -> Chosen:
  """A copy of `config` with the settings chosen from training / validation pairs, what they are,
  and the warm start it asks for (None: none). Chosen settings differ between the seeds or folds
  of one experiment (launch/report.py groups runs without them).

  `x_std`: the cell features standardised on the split's training lines; `kernel`: the drug
  kernel (`drug_kernel`, computed here when the 'line' warm start needs it and it is not given).
  """
  kind = check(config)
  out = copy.deepcopy(config)
  seed = config.train.seed
  chosen = {}
  lines = np.unique(ds.pair_cell[split.train])
  annotations = splits.line_annotations(ds, split.name)
  weights = annotation_weights(out.data)
  line_zscore = float(out.data.get('line_zscore', 0.0))
  kernel_open = out.data.cell_kernel == 'rbf' and (not out.data.rbf_width
                                                   or min(weights.values()) < 0)
  if kernel_open or line_zscore < 0:
    grid = {'annotation_weights': {n: (w,) for n, w in weights.items() if w >= 0}}  # fixed ones
    if out.data.rbf_width:
      grid['widths'] = (out.data.rbf_width,)
    # x_std has the lines z-scored already when data.line_zscore is 1; with -1 both are tried.
    inputs = ({0.0: x_std, 1.0: cells.zscore_lines(x_std)} if line_zscore < 0
              else {line_zscore: x_std})
    fits = {z: classical.kernel_ridge(x, _pairs(ds, split.train), len(ds.drug_ids), seed,
                                      annotations=annotations, **grid)
            for z, x in inputs.items()}
    if line_zscore < 0:
      scores = {z: classical.cv_score_of(f.params) for z, f in fits.items()}
      line_zscore = max(scores, key=scores.get)   # ties: raw features (0 comes first)
      out.data.line_zscore = chosen['data.line_zscore'] = line_zscore
      x_std = inputs[line_zscore]
      logging.info('lines z-scored across their features: %s (kernel ridge inner CV: %s)',
                   bool(line_zscore), {bool(z): round(v, 5) for z, v in scores.items()})
    kr = fits[line_zscore]
    if kernel_open:
      out.data.rbf_width = chosen['data.rbf_width'] = float(kr.params['width_rel'])
      for name, w in classical.annotation_weights_of(kr.params).items():
        out.data[f'{name}_weight'] = chosen[f'data.{name}_weight'] = w
      logging.info('kernel map: RBF width %g x the median distance + line annotation kernels %s '
                   '(kernel ridge inner CV)', out.data.rbf_width,
                   classical.annotation_weights_of(kr.params))
  if kind is None:
    return Chosen(out, _agreed(chosen), None)
  start = time.perf_counter()
  if kind == 'mf':
    fit = fit_mf(ds, split, seed)
    y_std = float(np.asarray(ds.pair_y[split.train], np.float32).std())
    out.model.id_embed_dim = chosen['model.id_embed_dim'] = int(fit.params['rank'])
    if not config.model.id_l2:
      out.model.id_l2 = chosen['model.id_l2'] = float(fit.params['l2']) / y_std
    settings = {'id_embed_dim': out.model.id_embed_dim, 'id_l2': out.model.id_l2}
  elif kind == 'line':
    kernel = drug_kernel(ds, config) if kernel is None else kernel
    fit = fit_line(ds, split.train, network_kernel(kernel, config.data), config.data)
    if not config.model.line_linear:
      out.model.line_linear = chosen['model.line_linear'] = fit.lam
    settings = {'line_linear': out.model.line_linear}
  else:
    fit = classical.ridge_per_drug(np.asarray(cell_inputs(x_std, lines, out.data, annotations),
                                              np.float64),
                                   _pairs(ds, split.train), len(ds.drug_ids), seed,
                                   spectrum=(classical.LAMBDAS, classical.SPECTRUM_GAMMAS))
    if not config.model.drug_linear:
      out.model.drug_linear = chosen['model.drug_linear'] = float(fit.params['lambda'])
    settings = {'drug_linear': out.model.drug_linear}
  warm = WarmStart(kind, fit, settings, time.perf_counter() - start)
  logging.info('warm start from %s: %s (%.1f s)', fit.name, settings, warm.seconds)
  return Chosen(out, _agreed(chosen), warm)


def refit(chosen: Chosen, ds: Dataset, pairs: np.ndarray, x_std: np.ndarray,
          kernel: np.ndarray | None = None) -> Chosen:
  """`chosen` for the network's refit on `pairs` (training + validation): its warm start fitted
  again on those pairs with the hyperparameters it chose (no choice is revisited), and the L2s
  derived from them recomputed on the new pairs (`model.id_l2` is l2 / std of the labels; a
  ridge's absolute lambda scales with its kernel). `x_std`: the cell features standardised on the
  lines of `pairs`; `kernel`: the drug kernel (kind 'line'; computed here when not given)."""
  warm, out = chosen.warm, copy.deepcopy(chosen.config)
  if warm is None:
    return Chosen(out, chosen.settings, None)
  start, seed, n_drugs = time.perf_counter(), out.train.seed, len(ds.drug_ids)
  if warm.kind == 'mf':
    rank, l2 = int(warm.fit.params['rank']), float(warm.fit.params['l2'])
    fit = classical.matrix_factorization(_pairs(ds, pairs), len(ds.cell_ids), n_drugs, rank, l2,
                                         seed)
    if 'model.id_l2' in chosen.settings:
      out.model.id_l2 = l2 / float(np.asarray(ds.pair_y[pairs], np.float32).std())
  elif warm.kind == 'line':
    kernel = drug_kernel(ds, out) if kernel is None else kernel
    # One lambda per principal component: the components change with the drugs, so their
    # ridges are chosen again (leave-one-out over these drugs); the term's L2 stays the one chosen.
    per_component = warm.fit.component_lam is not None
    fit = fit_line(ds, pairs, network_kernel(kernel, out.data), out.data,
                   lambdas=None if per_component else (warm.fit.lam,),
                   per_component=per_component)
  else:
    lines = np.unique(ds.pair_cell[pairs])
    x = cell_inputs(x_std, lines, out.data, splits.line_annotations(ds, out.split.name))
    fit = classical.ridge_per_drug(np.asarray(x, np.float64), _pairs(ds, pairs), n_drugs, seed,
                                   lambdas=(warm.fit.params['lambda_rel'],),
                                   spectrum=classical.spectrum_of(warm.fit.params))
    if 'model.drug_linear' in chosen.settings:
      out.model.drug_linear = float(fit.params['lambda'])
  settings = {k: out.model[k] for k in warm.settings}
  again = WarmStart(warm.kind, fit, settings, time.perf_counter() - start)
  logging.info('refit: warm start from %s on %d pairs: %s (%.1f s)', fit.name, len(pairs),
               settings, again.seconds)
  return Chosen(out, chosen.settings, again)


def _agreed(chosen: dict) -> dict:
  """`chosen`, checked equal on every process (each fits on its own copy of the data: on hosts
  with different BLAS a near-tie could choose differently, and the shapes would disagree)."""
  if jax.process_count() > 1 and chosen:
    mine = np.array(list(chosen.values()), np.float32)
    first = np.asarray(multihost_utils.broadcast_one_to_all(mine))
    if not np.allclose(first, mine, rtol=1e-5, atol=0.0):
      raise RuntimeError(f'process {jax.process_index()} chose {dict(zip(chosen, mine))}, process '
                         f'0 chose {dict(zip(chosen, first))}: the processes disagree')
  return chosen


def code_params(mf: classical.Predictor, y_mean: float, y_std: float) -> dict[str, np.ndarray]:
  """`IdentityCodes` parameters on the standardised scale that reproduce the factorisation."""
  f = mf.factors
  if f is None:
    raise ValueError(f'predictor {mf.name!r} has no factors to start identity codes from')
  line, drug = np.asarray(f['line']), np.asarray(f['drug'])
  root = np.sqrt(y_std)
  return {'cell_vec': line[:, :-1] / root, 'drug_vec': drug[:, :-1] / root,
          'cell_bias': line[:, -1] / y_std + (f['mu'] - y_mean) / y_std,
          'drug_bias': drug[:, -1] / y_std}


def linear_params(ridge: classical.Predictor, x: np.ndarray, lines: np.ndarray, y_mean: float,
                  y_std: float) -> dict[str, np.ndarray]:
  """Per-drug `EntityLinear` parameters on the standardised scale that reproduce per-drug ridge on `x`.

  Ridge's function per drug is intercept + (x - mean over `lines`) . w with w in the span of the
  training lines' centred features: the minimum-norm least-squares solution of its fitted values
  on those lines recovers it exactly. Drugs it did not fit keep zeros.
  """
  x = np.asarray(x, np.float64)
  centre = x[lines].mean(0)
  fitted = ridge.scores[lines]
  ok = np.isfinite(fitted).all(0)
  intercept = np.where(ok, np.nan_to_num(fitted).mean(0), 0.0)
  w = np.zeros((x.shape[1], fitted.shape[1]))
  w[:, ok] = np.linalg.lstsq(x[lines] - centre, fitted[:, ok] - intercept[ok], rcond=None)[0]
  intercept = intercept - centre @ w
  return {'kernel': w / y_std, 'intercept': np.where(ok, (intercept - y_mean) / y_std, 0.0)}


def line_params(ridge: lodo_kernel.DrugRidge, kmap: np.ndarray, y_mean: float,
                y_std: float) -> dict[str, np.ndarray]:
  """Per-line `EntityLinear` parameters on the standardised scale that reproduce `ridge` on the kernel map
  `kmap` (`lodo_kernel.kernel_map` of the kernel it was fitted with): ridge's dual solution
  alpha gives the primal weights kmap[drugs]^T alpha, times its spread; the intercept is the naive
  cell-line mean."""
  kmap = np.asarray(kmap, np.float64)
  w = kmap[ridge.drugs].T @ ridge.alpha * ridge.spread
  return {'kernel': w / y_std, 'intercept': (ridge.naive - y_mean) / y_std}


def apply(states, warm: WarmStart, cell_x: np.ndarray, lines: np.ndarray, y_mean: np.ndarray,
          y_std: np.ndarray, drug_k: np.ndarray | None = None):
  """`states` (F stacked models) starting from `warm`'s predictor, with a zero output layer.

  `cell_x`: the cell features the network sees; `lines`: the training lines; `drug_k`: the drug
  kernel map it sees (kind 'line'). Each model f uses its own standardisation (y_mean[f],
  y_std[f]).
  """
  if warm.kind == 'mf':
    one = lambda m, s: code_params(warm.fit, m, s)
  elif warm.kind == 'ridge':
    one = lambda m, s: linear_params(warm.fit, cell_x, lines, m, s)
  else:
    one = lambda m, s: line_params(warm.fit, drug_k, m, s)
  return start_from(states, warm.kind, [one(float(m), float(s)) for m, s in zip(y_mean, y_std)],
                    warm.fit.name)


MODULES = {'mf': 'ids', 'ridge': 'drug_linear_term', 'line': 'line_linear_term'}


def start_from(states, kind: str, per_model: list[dict[str, np.ndarray]], source: str):
  """`states` with the warm-started module of `kind` set to `per_model[f]` for model f and a zero
  output layer (for 'line' also the identity codes' drug vectors zeroed, so that the codes add
  nothing at the start either); new leaves keep the old ones' shardings."""
  module = MODULES[kind]
  old = states.params
  if module not in old or 'out' not in old:
    raise ValueError(f'the warm start from {source} needs a model with `{module}` and an `out` '
                     'layer')
  new = {}
  for k, leaf in old[module].items():
    new[k] = np.stack([p[k] for p in per_model]).astype(leaf.dtype)
    if new[k].shape != leaf.shape:
      raise ValueError(f'{module}.{k} has shape {leaf.shape}; {source} gives {new[k].shape}')
  zeros = lambda tree: jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), tree)
  new = {module: new, 'out': zeros(old['out'])}
  if kind == 'line' and 'ids' in old:
    new['ids'] = {'drug_vec': zeros(old['ids']['drug_vec'])}
  # Only the new host leaves are placed (the old ones may span other processes' devices).
  placed = {m: {k: sharding.put(x, old[m][k].sharding) for k, x in leaves.items()}
            for m, leaves in new.items()}
  return states.replace(params=dict(old, **{m: dict(old[m], **p) for m, p in placed.items()}))
