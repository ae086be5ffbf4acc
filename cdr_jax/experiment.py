"""One training run: train on a split with the one loop (F = 1), select on validation, evaluate.

`train_and_evaluate(config, workdir)` trains with early stopping on the validation split, keeps the
latest and best checkpoints (resuming from the latest), with `train.refit` trains the network again
on training + validation pairs for the chosen number of epochs (`refit`), with `train.ensemble`
averages several such networks (`train_ensemble`), then evaluates on test beside the baselines, the
tuned classical predictors and the stack, and writes every output (see `cdr_jax.runs`).
"""

from collections.abc import Sequence
import copy
import dataclasses
import logging
import pathlib

import jax
import ml_collections
import numpy as np
import threadpoolctl

from cdr_jax import data as data_lib
from cdr_jax import runs
from cdr_jax.data import cells
from cdr_jax.data import dataset as dataset_lib
from cdr_jax.data import drugs
from cdr_jax.data import splits
from cdr_jax.data.dataset import Dataset
from cdr_jax.errors import DataError
from cdr_jax.eval import baselines
from cdr_jax.eval import classical
from cdr_jax.eval import evaluate
from cdr_jax.eval import lodo_kernel
from cdr_jax.eval import metrics
from cdr_jax.model import models
from cdr_jax.train import checkpoint
from cdr_jax.train import engine as engine_lib
from cdr_jax.train import loop
from cdr_jax.train import sharding
from cdr_jax.train import warm_start
from cdr_jax.train.state import DeviceData, TrainState, device_data, param_count


REFIT_CHECKPOINTS = 'checkpoints_refit'   # the refit network (`refit`), under the run's workdir


@dataclasses.dataclass(frozen=True)
class Setup:
  """A split made ready for training F models: the engine and the data on device."""
  ds: Dataset                 # whose per-drug scores selection reads (same pairs as the data's)
  engine: engine_lib.Engine
  data: DeviceData            # on device
  host: DeviceData            # the same, on the host (per-model target statistics)
  pool: np.ndarray            # the pairs the batches are drawn from (every model's training pairs)
  config: ml_collections.ConfigDict

  def init(self) -> TrainState:
    return self.engine.init(self.data, self.config.train.seed, len(self.host.y_mean))

  def stream(self, epoch: int) -> list[dict]:
    cfg = self.config.train
    return [self.engine.put_batch(b)
            for b in loop.epoch_batches(self.pool, self.batch_size, cfg.seed, epoch)]

  @property
  def batch_size(self) -> int:
    return batch_size(self.config, self.pool)

  def step(self, rng: jax.Array):
    """The loop's step: (states, active, batch) -> (states, metrics), with this run's key."""
    return lambda states, active, batch: self.engine.step(states, self.data, active, batch, rng)

  def predict(self, states: TrainState, pair_lists: list[np.ndarray]) -> list[np.ndarray]:
    """Per model, predictions on the natural scale (ln IC50, or probability) for its pairs."""
    outs = self.engine.predict(states, self.data, pair_lists, self.config.eval.batch_size)
    return [engine_lib.natural_scale(o, self.config.model.task, float(self.host.y_mean[i]),
                                     float(self.host.y_std[i])) for i, o in enumerate(outs)]

  def selector(self, pair_lists: list[np.ndarray], select_lists: list[np.ndarray] | None = None,
               start: TrainState | None = None):
    """The loop's `select`: per model, metrics on its `pair_lists` (validation) and the score of
    `train.select_metric` on `select_lists` (default: the same pairs).

    With `train.select_margin='se'` and the models' `start` (their untrained warm-started states,
    which compete in selection): a model's score is its mean per-drug PCC minus the standard error
    of its per-drug gain over the start (`metrics.gain_lower_bound`), so a trained epoch replaces
    the start only where its gain survives one standard error over the validation drugs. Without
    a start the margin has nothing to measure against and the score is the plain metric.
    """
    task, metric = self.config.model.task, self.config.train.select_metric
    margin = self.config.train.get('select_margin', 'none')
    if margin not in ('none', 'se'):
      raise ValueError(f"train.select_margin must be 'none' or 'se', got {margin!r}")
    if margin == 'se' and metric != 'per_drug_pcc':
      raise ValueError("train.select_margin='se' measures the gain per drug: it needs "
                       f"train.select_metric='per_drug_pcc', got {metric!r}")
    lists = pair_lists if select_lists is None else select_lists
    per_drug = lambda preds: [metrics.group_pccs(p, self.ds.pair_y[q], self.ds.pair_drug[q])
                              for p, q in zip(preds, lists)]
    reference = (per_drug(self.predict(start, lists)) if margin == 'se' and start is not None
                 else None)

    def select(states):
      preds = self.predict(states, pair_lists)
      val = [evaluate.selection_metrics(p, pairs, self.ds, task)
             for p, pairs in zip(preds, pair_lists)]
      chosen, chosen_preds = val, preds
      if select_lists is not None:
        chosen_preds = self.predict(states, select_lists)
        chosen = [evaluate.selection_metrics(p, pairs, self.ds, task)
                  for p, pairs in zip(chosen_preds, select_lists)]
      scores = np.array([evaluate.selection_score(m, metric) for m in chosen])
      if reference is not None:  # the start's score plus the gain's lower bound
        with np.errstate(invalid='ignore'):
          scores = np.array([np.nanmean(r) + metrics.gain_lower_bound(g, r) if np.isfinite(r).any()
                             else -np.inf for g, r in zip(per_drug(chosen_preds), reference)])
      return scores, val
    return select


def setup(config: ml_collections.ConfigDict, ds: Dataset, train_sets: list[np.ndarray],
          pool: np.ndarray, drug_kernel: np.ndarray | None = None,
          line_l2: Sequence[float] | None = None) -> Setup:
  """Standardises features on the pool's cell lines, builds the engine and the device data.

  With the per-line linear term (`models.has_line_linear`): its drug kernel map from `drug_kernel`
  (default: `warm_start.drug_kernel`), and its lambda per model `line_l2` (default:
  `model.line_linear` for every model).
  """
  engine = engine_lib.create_engine(config, ds, batch_size(config, pool), len(pool),
                                    len(train_sets))
  cell_x, drug_x = network_features(ds, np.unique(ds.pair_cell[pool]),
                                    np.unique(ds.pair_drug[pool]), config)
  kmap, lam = None, 0.0
  if models.has_line_linear(config.model):
    kernel = warm_start.drug_kernel(ds, config) if drug_kernel is None else drug_kernel
    kmap = lodo_kernel.kernel_map(warm_start.network_kernel(kernel, config.data))
    lam = config.model.line_linear if line_l2 is None else np.asarray(line_l2, np.float32)
  host = device_data(ds, cell_x, drug_x, train_sets, kmap, lam)
  return Setup(ds, engine, engine.put_data(host), host, np.asarray(pool), config)


def batch_size(config: ml_collections.ConfigDict, pool: np.ndarray) -> int:
  """Pairs per step: `train.batch_size`, or (0) the whole pool rounded up to the data devices."""
  if config.train.batch_size:
    return config.train.batch_size
  return -(-len(pool) // jax.device_count()) * jax.device_count()


def standardized_features(ds: Dataset, fit_cells: np.ndarray, fit_drugs: np.ndarray,
                          config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """Cell and vector drug features z-scored with the statistics of the training cell lines and
  drugs (rows `fit_cells` / `fit_drugs`; label-free). With `data.standardize` off, cells stay raw.
  With `data.line_zscore` 1 each line is then z-scored across its features (`cells.zscore_lines`);
  -1 (kernel ridge's choice, made by `warm_start.configure`) is not applied here: the chosen config
  has 0 or 1 in its place."""
  cell_x = ds.cell_features
  if config.data.standardize:
    cell_x = cells.standardize(ds.cell_features, fit_cells)
  if config.data.get('line_zscore', 0) > 0:   # .get: runs written before the field
    cell_x = cells.zscore_lines(cell_x)
  drug_x = drugs.standardize(ds.drug_x, fit_drugs, ds.drug_feature_names)
  return cell_x, drug_x.features


def network_features(ds: Dataset, fit_cells: np.ndarray, fit_drugs: np.ndarray,
                     config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """The features the network sees: `standardized_features`, the cells' through the RBF kernel
  map when `data.cell_kernel='rbf'` (`warm_start.cell_inputs`, fitted on the lines `fit_cells`)."""
  cell_x, drug_x = standardized_features(ds, fit_cells, fit_drugs, config)
  annotations = splits.line_annotations(ds, config.split.name)
  return warm_start.cell_inputs(cell_x, fit_cells, config.data, annotations), drug_x


def prepare(config: ml_collections.ConfigDict, ds: Dataset, split: splits.Split,
            refit_of: warm_start.Chosen | None = None
            ) -> tuple[warm_start.Chosen, Setup, TrainState]:
  """A single run made ready: settings chosen on training / validation pairs and the warm start
  (`warm_start.configure`), the run set up with them, its initial (warm-started) state. With
  `refit_of` (what the run chose): the same for its refit on training + validation pairs, the
  warm start fitted again on them with those choices (`warm_start.refit`). The network trains on
  `network_dataset` (screens as drugs where they are identities); its selection scores per drug
  of `ds`."""
  scored, ds = ds, network_dataset(ds, split, config)
  pairs = split.train if refit_of is None else np.concatenate([split.train, split.val])
  lines, seen = np.unique(ds.pair_cell[pairs]), np.unique(ds.pair_drug[pairs])
  x_std = standardized_features(ds, lines, seen, config)[0]
  # The drug kernel (RDKit fingerprints and descriptors) once, for the warm start and the network.
  kernel = warm_start.drug_kernel(ds, config) if models.has_line_linear(config.model) else None
  with threadpoolctl.threadpool_limits(1):  # as fit_classical: BLAS threads only thrash
    chosen = (warm_start.configure(config, ds, split, x_std, kernel) if refit_of is None
              else warm_start.refit(refit_of, ds, pairs, x_std, kernel))
  run = dataclasses.replace(setup(chosen.config, ds, [pairs], pairs, kernel), ds=scored)
  states = run.init()
  if chosen.warm:
    states = warm_start.apply(states, chosen.warm, run.host.cell_x, lines, run.host.y_mean,
                              run.host.y_std, run.host.drug_k)
  return chosen, run, states


def check_resumable(workdir: pathlib.Path, settings: dict) -> None:
  """A run resuming from its checkpoints must choose what it chose before (the checkpoint's shapes
  depend on it, e.g. the codes' rank); DataError naming the setting otherwise."""
  if not (workdir / 'checkpoints' / 'latest').exists() or not (workdir / runs.CONFIG_FILE).exists():
    return
  before = runs.read_config(workdir)
  for key, value in settings.items():
    section, field = key.split('.')
    was = before[section].get(field) if section in before else None
    if was is None or not np.isclose(was, value, rtol=1e-9, atol=0.0):
      raise DataError(f'{workdir / runs.CONFIG_FILE}: this run chose {key}={value} on its '
                      f'training / validation pairs, but its checkpoints were made with {was}; '
                      'resume with the same data and code, or start a fresh workdir')


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained network's predictions (natural scale) and what it chose (`train_network`)."""
  test: np.ndarray                 # the reported network's (the refit's, with train.refit)
  val: np.ndarray                  # the selected network's: the stack's weights are fitted on them
  before_refit: np.ndarray | None  # the selected network's test predictions, when it was refit
  chosen: warm_start.Chosen
  extra: dict                      # selection, parameters, chosen, warm_start, refit


def train_network(config: ml_collections.ConfigDict, ds: Dataset, split: splits.Split,
                  workdir: pathlib.Path) -> Trained | dict:
  """Trains one network (resuming from the latest checkpoint), selects its epoch on validation
  and, with `train.refit`, trains it again on training + validation pairs. Writes config.json,
  history and checkpoints to `workdir`; returns {'interrupted': ...} when stopped early."""
  writer = sharding.is_writer()  # every process trains; process 0 writes the run's files
  cfg = config.train
  chosen, run, states = prepare(config, ds, split)
  config, warm = chosen.config, chosen.warm   # the written config has what was chosen
  check_resumable(workdir, chosen.settings)
  if writer:
    workdir.mkdir(parents=True, exist_ok=True)
    runs.write_config(workdir, config)
  logging.info('devices: %s; mesh %s', jax.devices(), dict(run.engine.mesh.shape))
  logging.info('dataset: %d pairs, %d cells, %d drugs, %.1f MB; split %s %s', ds.num_pairs,
               len(ds.cell_ids), len(ds.drug_ids), ds.nbytes() / 1e6, split.name, split.sizes())
  logging.info('parameters: %d', param_count(jax.tree.map(lambda x: x[0], states.params)))
  ckpts = checkpoint.Checkpoints(workdir / 'checkpoints')
  rng = run.engine.key(cfg.seed + 1)
  tb = runs.TensorBoard(workdir / 'tb') if writer else None

  def on_epoch(progress: loop.Progress) -> None:
    if not writer:
      return
    runs.write_history(workdir, progress.history[0])
    row = progress.history[0][-1]
    tb.scalars(row['epoch'], {'train/loss': row['train_loss'],
                              **{f'val/{k[4:]}': v for k, v in row.items()
                                 if k.startswith('val_') and k != 'val_score'}})

  scored_start = warm is not None and cfg.get('score_start', True)
  select = run.selector([split.val], [split.test] if cfg.select_on == 'test' else None,
                        start=states if scored_start else None)
  best, progress = loop.fit(run.step(rng), states, run.stream, select, ckpts,
                            loop.Schedule.from_config(cfg), on_epoch=on_epoch,
                            score_start=scored_start)
  if tb:
    tb.close()
  ckpts.close()
  if not progress.done:
    return {'interrupted': True, 'epoch': progress.epoch}
  pred, val_pred = (run.predict(best, [pairs])[0] for pairs in (split.test, split.val))
  extra = {'selection': {'select_on': cfg.select_on, 'metric': cfg.select_metric,
                         'leaky': cfg.select_on == 'test', 'best_epoch': progress.best_epoch[0],
                         'epochs_trained': progress.epoch},
           'parameters': param_count(jax.tree.map(lambda x: x[0], best.params)),
           'chosen': chosen.settings}   # config fields set from training / validation pairs
  if warm:
    extra['warm_start'] = warm.info()
  before_refit = None
  if refits(config, split):
    again = refit(chosen, ds, split, progress.best_epoch[0] + 1, workdir)
    if again is None:
      return {'interrupted': True, 'epoch': progress.epoch, 'phase': 'refit'}
    before_refit, (refit_run, refit_states, extra['refit']) = pred, again
    pred = refit_run.predict(refit_states, [split.test])[0]
  return Trained(pred, val_pred, before_refit, chosen, extra)


MEMBERS = 'members'   # an ensemble's member runs: workdir/members/<k>/


def member_config(config: ml_collections.ConfigDict, k: int) -> ml_collections.ConfigDict:
  """Ensemble member k: the run's config with training seed `train.seed + k` (its initial
  weights, dropout and batch order; the split and its validation part stay the run's)."""
  member = copy.deepcopy(config)
  member.train.seed, member.train.ensemble = config.train.seed + k, 1
  return member


def train_ensemble(config: ml_collections.ConfigDict, ds: Dataset, split: splits.Split,
                   workdir: pathlib.Path) -> Trained | dict:
  """`train.ensemble` networks (`member_config`), each a full run under workdir/members/<k>/
  (resumable, its own choices and refit), trained one after the other; their predictions are
  averaged. With one member: `train_network` in `workdir` itself."""
  n = int(config.train.get('ensemble', 1))
  if n < 1:
    raise ValueError(f'train.ensemble must be >= 1 (networks to average), got {n}')
  if n == 1:
    return train_network(config, ds, split, workdir)
  members = []
  for k in range(n):
    logging.info('ensemble member %d of %d (train.seed %d)', k + 1, n, config.train.seed + k)
    out = train_network(member_config(config, k), ds, split, workdir / MEMBERS / str(k))
    if isinstance(out, dict):
      return {**out, 'member': k}
    if sharding.is_writer():
      runs.write_predictions(workdir / MEMBERS / str(k), ds, split.test, out.test,
                             config.model.task)
    members.append(out)
  mean = lambda xs: np.mean(xs, axis=0)
  before = [m.before_refit for m in members]
  task = config.model.task
  first = members[0]
  extra = dict(first.extra, ensemble={
      'members': n, 'seeds': [config.train.seed + k for k in range(n)],
      'best_epochs': [m.extra['selection']['best_epoch'] for m in members],
      'member_test': [evaluate.evaluate(m.test, ds, split.test, task) for m in members]})
  return Trained(mean([m.test for m in members]), mean([m.val for m in members]),
                 None if before[0] is None else mean(before), first.chosen, extra)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains (resuming from the latest checkpoints), selects on validation, evaluates on test."""
  workdir = pathlib.Path(workdir)
  if config.train.select_on not in ('val', 'test'):
    raise ValueError(f'unknown train.select_on {config.train.select_on!r}; choose val (or test: '
                     'leaky)')
  if config.get('lodo') and config.lodo.get('apart', 0.0) > 0:
    raise ValueError('lodo.apart (the apart variant) drops each LODO fold\'s batch-mates: it is '
                     'for the sweep, launch/lodo.py; a single run would ignore it')
  ds = data_lib.load_dataset(config.data)
  split = splits.make_split(ds, config.split)
  net = train_ensemble(config, ds, split, workdir)
  if isinstance(net, dict):
    return net
  ensemble = int(config.train.get('ensemble', 1))
  config = net.chosen.config   # (a member's choices; the ensemble's size stays the run's)
  if ensemble > 1:
    config = copy.deepcopy(config)   # member 0's: the run's seed
    config.train.ensemble = ensemble
    if sharding.is_writer():
      runs.write_config(workdir, config)
  extra = {'split': {'name': split.name, 'description': split.description, **split.sizes()},
           'dataset': dict(ds.info), 'devices': jax.device_count(), **net.extra}
  preds = {'model': net.test}
  if net.before_refit is not None:
    preds['model_before_refit'] = net.before_refit
  preds.update(baseline_predictions(ds, split.train, split.test, config))
  warm = net.chosen.warm
  prefit = {'matrix_factorization': warm.fit} if warm and warm.kind == 'mf' else None
  # The classical predictors see the standardised features (whatever map the network sees).
  x = standardized_features(ds, np.unique(ds.pair_cell[split.train]),
                            np.unique(ds.pair_drug[split.train]), config)[0]
  tuned, extra['classical'] = classical_predictions(ds, split, x, config, net.val, net.test,
                                                    prefit)
  if extra['classical']:
    extra['drug_axis'] = drug_axis(ds, split, config)[2]
  preds.update(tuned)
  measured = splits.measured_before(ds, np.concatenate([split.train, split.val]), split.test)
  if measured.any() and config.model.task == 'regression':
    extra['test_unmeasured'] = runs.unmeasured_scores(preds, ds, split.test, measured)
  return runs.write_results(workdir, ds, split.test, preds, config, extra,
                            write=sharding.is_writer())


def refit(chosen: warm_start.Chosen, ds: Dataset, split: splits.Split, epochs: int,
          workdir: pathlib.Path) -> tuple[Setup, TrainState, dict] | None:
  """The network trained again on the training and validation pairs together for `epochs`
  epochs (the selected epoch + 1, chosen on validation), from its warm start refit on those pairs
  with the choices it made (`warm_start.refit`); nothing is selected, the last epoch is kept.
  Resumable (`checkpoints_refit/`); None when `train.max_epochs_this_run` stops it first.

  As `eval.classical_refit` does for the classical predictors: every choice is made on
  validation first, then the validation labels join the fit.
  """
  cfg = chosen.config.train
  again, run, states = prepare(chosen.config, ds, split, refit_of=chosen)
  info = {'pairs': len(run.pool), 'epochs': epochs,
          'warm_start': again.warm.info() if again.warm else None}
  ckpts = checkpoint.Checkpoints(pathlib.Path(workdir) / REFIT_CHECKPOINTS)
  done = True
  if epochs <= 0:   # the warm start validated best: the refit is the refit warm start
    if ckpts.restore('best', states) is None:   # (a resumed run saved it already)
      ckpts.save('best', 0, states, {'epoch': -1})
  else:
    schedule = dataclasses.replace(loop.Schedule.from_config(cfg), num_epochs=epochs,
                                   patience=epochs + 1)
    states, progress = loop.fit(run.step(run.engine.key(cfg.seed + 1)), states, run.stream, None,
                                ckpts, schedule)
    done = progress.done
  ckpts.close()
  return (run, states, info) if done else None


def refits(config: ml_collections.ConfigDict, split: splits.Split) -> bool:
  """Whether the run refits its network (`train.refit`, selected on validation pairs it has)."""
  return (config.train.get('refit', False) and config.train.select_on == 'val'
          and len(split.val) > 0)


def refit_pool(config: ml_collections.ConfigDict, split: splits.Split) -> np.ndarray:
  """The pairs the reported network was trained on: training + validation pairs for a refit run
  (`refits`), else the training pairs."""
  return np.concatenate([split.train, split.val]) if refits(config, split) else split.train


def classical_predictions(ds: Dataset, split: splits.Split, cell_x: np.ndarray,
                          config: ml_collections.ConfigDict, model_val: np.ndarray,
                          model_test: np.ndarray, prefit: dict | None = None
                          ) -> tuple[dict[str, np.ndarray], dict]:
  """The tuned classical predictors that apply to the split (eval/classical.py) and the `stack`:
  the network and those predictors blended with weights fitted on the validation pairs.

  Every hyperparameter and weight is chosen on training and validation pairs; test labels are
  never read. `prefit`: predictors already fitted on this split (see `classical.fit_classical`).
  With `eval.classical_refit` the predictors' test predictions come from their refit on training +
  validation pairs; the stack's weights are fitted on the validation predictions of the fits that
  made the choices (a refit has seen those labels).
  Returns test predictions ('tuned_<name>', 'stack') and what each chose.
  """
  if not config.eval.classical or config.model.task != 'regression':
    return {}, {}
  val_preds = {}
  preds, info = fit_classical(ds, split, cell_x, config, split.test, prefit, val_preds)
  parts = {'model': np.concatenate([model_val, model_test]),
           **{k: np.concatenate([val_preds[k], v]) for k, v in preds.items() if k != 'blend'}}
  with threadpoolctl.threadpool_limits(1):
    stacked, info['stack'] = classical.stack(parts, ds.pair_cell, ds.pair_drug, ds.pair_y,
                                             split.val, split.test, len(ds.cell_ids),
                                             len(ds.drug_ids))
  out = {f'tuned_{k}': v.astype(np.float32) for k, v in preds.items()}
  out['stack'] = stacked.astype(np.float32)
  return out, info


def drug_axis(ds: Dataset, split: splits.Split,
              config: ml_collections.ConfigDict) -> tuple[np.ndarray, int, dict]:
  """The drug identities the models learn per drug (the classical predictors' columns, the
  network's drugs): [P] each pair's, their number, and what was chosen and why.

  With `data.screens`, each GDSC screen (drug id) is an identity of its own: GDSC screened 15
  drugs (one PubChem CID each) under two ids whose ln IC50s on the same lines differ by up to 2.5
  on average and correlate 0.23-0.83, and one identity per drug averages the two assays (README,
  session 20). Scores stay per drug. The identities are the drugs where no screen is recorded,
  every drug has one screen, or a validation or test pair's screen has no training pair (a
  held-out drug's: unseen drugs keep one identity per drug).
  """
  column, n_columns, screen_drug = ds.drug_columns()
  about = {'columns': 'drug', 'drugs': len(ds.drug_ids), 'screens': n_columns,
           'drugs_with_several_screens': int(np.sum(np.bincount(screen_drug[screen_drug >= 0])
                                                    > 1)) if len(screen_drug) else 0}
  evaluated = np.concatenate([split.val, split.test])
  why = None
  if not config.data.get('screens', False):   # runs written before the field: one per drug
    why = 'data.screens is off'
  elif ds.pair_screen is None or not about['drugs_with_several_screens']:
    why = 'no drug has more than one screen'
  elif not np.isin(column[evaluated], column[split.train]).all():
    why = 'a validation or test pair\'s screen has no training pair'
  if why:
    return ds.pair_drug, len(ds.drug_ids), dict(about, why=why)
  return column, n_columns, dict(about, columns='screen')


def network_dataset(ds: Dataset, split: splits.Split, config: ml_collections.ConfigDict
                    ) -> Dataset:
  """The dataset the network trains on (and `predict` rebuilds): with screens as identities
  (`drug_axis`), each screen a drug of its own (`dataset.screens_as_drugs`: the network's
  per-drug codes and terms are per screen); else `ds`."""
  if drug_axis(ds, split, config)[2]['columns'] == 'screen':
    return dataset_lib.screens_as_drugs(ds)
  return ds


def fit_classical(ds: Dataset, split: splits.Split, cell_x: np.ndarray,
                  config: ml_collections.ConfigDict, pairs: np.ndarray,
                  prefit: dict | None = None,
                  val_predictions: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
  """`classical.fit_classical` on the split's training and validation pairs, predicting `pairs`
  (`cell_x`: the standardised cell features; the run's seed; refit on both when
  `eval.classical_refit`; kernel ridge's line annotation kernels: `splits.line_annotations`;
  the drug identities `drug_axis`; `prefit` predictors were fitted on the same identities, by
  the network's warm start on `network_dataset`)."""
  column, n_columns, _ = drug_axis(ds, split, config)
  with threadpoolctl.threadpool_limits(1):  # many small products: BLAS threads only thrash
    return classical.fit_classical(
        split.name, ds.pair_cell, column, ds.pair_y, split.train, split.val, pairs,
        len(ds.cell_ids), n_columns, x=np.asarray(cell_x, np.float64),
        seed=config.train.seed, refit=config.eval.classical_refit, prefit=prefit,
        val_predictions=val_predictions,
        annotations=splits.line_annotations(ds, split.name))


def baseline_predictions(ds: Dataset, train: np.ndarray, test: np.ndarray,
                         config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Every baseline's test predictions, fitted on the training pairs (labels for classification)."""
  if not config.eval.baselines:
    return {}
  if config.model.task == 'regression':
    return baselines.predict_all(ds, train, test, config.eval)
  fit = train[ds.pair_label[train] >= 0]
  return baselines.predict_all(ds, fit, test, config.eval, ds.pair_label.astype(np.float32))
