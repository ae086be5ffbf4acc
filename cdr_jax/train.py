"""Training: a pure jitted step on an entity-indexed dataset that lives on device, sharded batches.

`train_and_evaluate(config, workdir)` trains with early stopping on the validation split, keeps the
latest and best checkpoints (resuming from the latest), then evaluates the best model on test beside
the naive baselines and writes every output (see `cdr_jax.outputs`).
"""

import dataclasses
import functools
import logging
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import jraph
import ml_collections
import numpy as np
import optax

from cdr_jax import cells as cells_lib
from cdr_jax import checkpoint
from cdr_jax import data
from cdr_jax import metrics
from cdr_jax import models
from cdr_jax import outputs
from cdr_jax import sharding
from cdr_jax import splits
from cdr_jax.data import Dataset


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (the per-model unit that LODO stacks and vmaps)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


@dataclasses.dataclass
class Prepared:
  """A dataset and split made ready for training: standardised features, targets, model."""
  ds: Dataset
  split: splits.Split
  model: Any
  tx: optax.GradientTransformation
  static: dict          # host arrays placed on device once: graphs, cells, pair arrays, masks
  y_mean: float
  y_std: float


class NonFiniteLossError(FloatingPointError):
  """The training loss became nan or inf."""


def create_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int,
                     num_epochs: int) -> optax.GradientTransformation:
  """Adam / AdamW / SGD with an optional schedule, weight decay and gradient clipping."""
  lr, total = config.learning_rate, max(1, steps_per_epoch * num_epochs)
  warmup = int(config.warmup_epochs * steps_per_epoch)
  if config.schedule == 'constant':
    schedule = optax.constant_schedule(lr) if not warmup else optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  elif config.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), total)
  else:
    raise ValueError(f'unknown schedule {config.schedule!r}; choose constant or cosine')
  if config.name == 'adam' and not config.weight_decay:
    opt = optax.adam(schedule)
  elif config.name in ('adam', 'adamw'):  # Adam with weight decay is AdamW (decoupled).
    opt = optax.adamw(schedule, weight_decay=config.weight_decay)
  elif config.name == 'sgd':
    opt = optax.sgd(schedule, momentum=0.9)
  else:
    raise ValueError(f'unknown optimizer {config.name!r}; choose one of: adam, adamw, sgd')
  return optax.chain(optax.clip_by_global_norm(config.grad_clip), opt) if config.grad_clip else opt


def make_static(ds: Dataset, features: np.ndarray, train: np.ndarray,
                y_stats: tuple[float, float] | None = None) -> dict:
  """Entity and pair arrays for the device.

  `*_active` mark entities seen in training pairs (only they enter BatchNorm statistics);
  `y_mean` / `y_std` standardise ln IC50 with training-pair statistics.
  """
  g = ds.drug_graphs
  y_mean, y_std = y_stats or (ds.pair_y[train].mean(), ds.pair_y[train].std())
  return {
      'graphs': jraph.GraphsTuple(nodes=g.nodes, edges=None, senders=g.senders,
                                  receivers=g.receivers, globals=None, n_node=g.n_node,
                                  n_edge=g.n_edge),
      'cell_x': features, 'pair_cell': ds.pair_cell, 'pair_drug': ds.pair_drug,
      'pair_y': ds.pair_y, 'pair_label': ds.pair_label.astype(np.float32),
      'y_mean': np.float32(y_mean), 'y_std': np.float32(y_std),
      'cell_active': np.isin(np.arange(len(ds.cell_ids)), ds.pair_cell[train]),
      'drug_active': np.isin(np.arange(len(ds.drug_ids)), ds.pair_drug[train]),
  }


def prepare(config: ml_collections.ConfigDict, ds: Dataset | None = None,
            split: splits.Split | None = None) -> Prepared:
  """Loads data and split (unless given), standardises on training cells, builds model and optimizer."""
  ds = ds if ds is not None else data.load_dataset(config.data)
  split = split if split is not None else splits.make_split(ds, config.split)
  train_cells = np.unique(ds.pair_cell[split.train])
  features = (cells_lib.standardize(ds.cell_features, train_cells) if config.data.standardize
              else ds.cell_features)
  if config.model.task not in ('regression', 'classification'):
    raise ValueError(f'unknown task {config.model.task!r}; choose regression or classification')
  model = models.create_model(config.model, len(ds.cell_ids), len(ds.drug_ids),
                              ds.info.get('blocks', [features.shape[1]]))
  steps = -(-len(split.train) // config.train.batch_size)
  tx = create_optimizer(config.optimizer, steps, config.train.num_epochs)
  static = make_static(ds, features, split.train)
  return Prepared(ds, split, model, tx, static, float(static['y_mean']), float(static['y_std']))


def init_state(prep: Prepared, seed: int) -> TrainState:
  """Initial parameters (from `seed`) and optimizer state."""
  return _jitted_init(prep.model, prep.tx)(prep.static['graphs'], prep.static['cell_x'],
                                           jax.random.key(seed))


@functools.lru_cache(maxsize=8)
def _jitted_init(model, tx):
  """Compiled initialisation (op-by-op init costs seconds; every LODO chunk and run needs one)."""
  @jax.jit
  def init(graphs, cell_x, key):
    idx = jnp.zeros((2,), jnp.int32)
    variables = model.init({'params': key, 'dropout': key}, graphs, cell_x, idx, idx,
                           jnp.ones((2,), bool), train=False)
    params = variables['params']
    return TrainState(jnp.zeros((), jnp.int32), params, variables.get('batch_stats', {}),
                      tx.init(params))
  return init


def pair_loss(out: jax.Array, static: dict, idx: jax.Array, task: str):
  """(per-pair loss, per-pair validity): squared error on standardised ln IC50, or BCE on logits
  against the sensitive/resistant label (pairs without a label are not valid)."""
  if task == 'regression':
    target = (static['pair_y'][idx] - static['y_mean']) / static['y_std']
    return jnp.square(out - target), jnp.ones_like(out)
  label = static['pair_label'][idx]
  loss = optax.sigmoid_binary_cross_entropy(out, jnp.maximum(label, 0.0))
  return loss, (label >= 0).astype(out.dtype)


def train_step(state: TrainState, static: dict, batch: dict, rng: jax.Array, *, model, tx,
               task: str, l2: tuple[tuple[str, float], ...] = ()) -> tuple[TrainState, dict]:
  """One optimisation step on a batch of pair indices with per-pair weights (0 = ignore).

  `rng` is the run's key; this step's dropout key is `rng` folded with the step count.
  """
  return keyed_step(state, static, batch, jax.random.fold_in(rng, state.step), model=model, tx=tx,
                    task=task, l2=l2)


def keyed_step(state: TrainState, static: dict, batch: dict, rng: jax.Array, *, model, tx,
               task: str, l2: tuple[tuple[str, float], ...] = ()) -> tuple[TrainState, dict]:
  """`train_step` with this step's dropout key given (the LODO sweep shares it across folds, so
  the dropout masks are drawn once per step, not once per fold).

  `l2`: (parameter module, per-step coefficient) pairs; each adds coefficient * the squared norm
  of that module's parameters, e.g. the hybrid's identity codes as matrix factorisation's L2 does
  (see `l2_per_step`).
  """
  cell_idx = static['pair_cell'][batch['idx']]
  drug_idx = static['pair_drug'][batch['idx']]
  weight = batch['weight']

  def loss_fn(params):
    out, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, static['graphs'], static['cell_x'],
        cell_idx, drug_idx, weight > 0, train=True, rngs={'dropout': rng}, mutable=['batch_stats'],
        cell_active=static['cell_active'], drug_active=static['drug_active'])
    loss, valid = pair_loss(out, static, batch['idx'], task)
    w = weight * valid
    loss = (loss * w).sum() / jnp.maximum(w.sum(), 1.0)
    for name, coef in l2:
      loss += coef * sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(params[name]))
    return loss, updates['batch_stats']

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new = TrainState(state.step + 1, params, batch_stats, opt_state)
  return new, {'loss': loss, 'weight': weight.sum()}


def l2_per_step(config: ml_collections.ConfigDict,
                num_train: int) -> tuple[tuple[str, float], ...]:
  """The model's L2 penalties as (parameter module, per-step coefficient) pairs for `keyed_step`.

  `model.id_l2` (identity codes) and `model.drug_linear` (the per-drug linear term) are lambdas of
  a penalty lambda * ||w||^2 on the sum of squared (standardised) errors over the `num_train`
  training pairs, as in matrix factorisation and ridge; spread over the mean loss of each step,
  that is lambda / num_train. For the per-drug linear term this is, drug by drug, ridge's objective.
  """
  m = config.model
  if m.id_l2 and not m.id_embed_dim:
    raise ValueError('model.id_l2 > 0 needs identity codes (model.id_embed_dim > 0)')
  if m.drug_linear < 0:
    raise ValueError(f'model.drug_linear must be >= 0 (0: off), got {m.drug_linear}')
  n = max(num_train, 1)
  return tuple((name, float(lam) / n) for name, lam in (('ids', m.id_l2),
                                                        ('drug_linear_term', m.drug_linear)) if lam)


def encode(state: TrainState, static: dict, *, model):
  """Inference codes of every drug and cell line (computed once per evaluation)."""
  return model.apply({'params': state.params, 'batch_stats': state.batch_stats}, static['graphs'],
                     static['cell_x'], train=False, method='encode')


def predict_batch(state: TrainState, codes, static: dict, idx: jax.Array, *, model) -> jax.Array:
  """Model outputs (standardised ln IC50 or logits) for a batch of pair indices."""
  return model.apply({'params': state.params, 'batch_stats': state.batch_stats}, codes,
                     static['pair_cell'][idx], static['pair_drug'][idx],
                     jnp.ones(idx.shape, bool), train=False, method='fuse')


def epoch_batches(train: np.ndarray, batch_size: int, seed: int, epoch: int):
  """Shuffled fixed-size batches of pair indices; the last is padded with weight-0 entries."""
  perm = np.random.default_rng([seed, epoch]).permutation(train)
  n = -(-len(perm) // batch_size) * batch_size
  idx = np.zeros(n, np.int32)
  idx[:len(perm)] = perm
  weight = np.zeros(n, np.float32)
  weight[:len(perm)] = 1.0
  return [{'idx': idx[i:i + batch_size], 'weight': weight[i:i + batch_size]}
          for i in range(0, n, batch_size)]


class Trainer:
  """Jitted, sharded step and prediction functions for one prepared dataset."""

  def __init__(self, prep: Prepared, config: ml_collections.ConfigDict, mesh):
    self.prep, self.config, self.mesh = prep, config, mesh
    self.rep, self.data_sh = sharding.replicated(mesh), sharding.sharded(mesh, 'data')
    if config.train.batch_size % mesh.shape['data']:
      raise ValueError(f'train.batch_size={config.train.batch_size} must be a multiple of the '
                       f'{mesh.shape["data"]} devices on the data axis')
    self.static = sharding.put(prep.static, self.rep)
    model, task = prep.model, config.model.task
    n_nodes = prep.static['graphs'].nodes.shape[0]
    if mesh.shape['data'] > 1 and n_nodes % mesh.shape['data'] == 0:
      # Split the drug GCN's atoms over the devices (each drug encoded once per step in total).
      model = model.clone(node_sharding=sharding.sharded(mesh, 'data', None))
    step = functools.partial(train_step, model=model, tx=prep.tx, task=task,
                             l2=l2_per_step(config, len(prep.split.train)))
    self.step = jax.jit(step, in_shardings=(self.rep, self.rep, self.data_sh, self.rep),
                        out_shardings=(self.rep, self.rep), donate_argnums=(0,))
    self.encode = jax.jit(functools.partial(encode, model=model), out_shardings=self.rep)
    self.predict_batch = jax.jit(functools.partial(predict_batch, model=model),
                                 in_shardings=(self.rep, self.rep, self.rep, self.data_sh),
                                 out_shardings=self.data_sh)

  def predict(self, state: TrainState, pairs: np.ndarray) -> np.ndarray:
    """Predictions for `pairs` on the natural scale (ln IC50, or sensitivity probability)."""
    codes = self.encode(state, self.static)
    bs = sharding.round_to_devices(self.config.eval.batch_size, self.mesh)
    n = -(-len(pairs) // bs) * bs
    idx = np.zeros(n, np.int32)
    idx[:len(pairs)] = pairs
    outs = [self.predict_batch(state, codes, self.static, sharding.put(idx[i:i + bs], self.data_sh))
            for i in range(0, n, bs)]
    out = np.concatenate([np.asarray(jax.device_get(o)) for o in outs])[:len(pairs)]
    if self.config.model.task == 'regression':
      return out * self.prep.y_std + self.prep.y_mean
    return 1.0 / (1.0 + np.exp(-out))


def run_epoch(trainer: Trainer, state: TrainState, rng, epoch: int, bar=None):
  """One pass over the shuffled training pairs; raises on a non-finite loss with its step."""
  cfg = trainer.config.train
  batches = epoch_batches(trainer.prep.split.train, cfg.batch_size, cfg.seed, epoch)
  pending, total, weight = [], 0.0, 0.0
  for i, batch in enumerate(batches):
    state, m = trainer.step(state, trainer.static, sharding.put(batch, trainer.data_sh), rng)
    pending.append(m)
    if len(pending) == 50 or i == len(batches) - 1:
      first = int(jax.device_get(state.step)) - len(pending) + 1
      for k, mk in enumerate(jax.device_get(pending)):
        if not np.isfinite(mk['loss']):
          raise NonFiniteLossError(f'non-finite training loss {mk["loss"]} at step {first + k} '
                                   f'(epoch {epoch})')
        total += float(mk['loss']) * float(mk['weight'])
        weight += float(mk['weight'])
      if bar is not None:
        bar.update(len(pending))
        bar.set_postfix(loss=f'{total / max(weight, 1):.4f}')
      pending = []
  return state, total / max(weight, 1.0)


def selection_metrics(pred: np.ndarray, pairs: np.ndarray, ds: Dataset, task: str) -> dict:
  """PCC / Spearman / RMSE / mean per-drug PCC (regression) or AUROC (classification) of `pred`
  (natural scale) on `pairs`: what `train.select_metric` chooses from, here and in the LODO sweep."""
  if task == 'regression':
    m = metrics.regression(pred, ds.pair_y[pairs])
    return {'pcc': m['pcc'], 'spearman': m['spearman'], 'rmse': m['rmse'],
            'per_drug_pcc': metrics.mean_group_pcc(pred, ds.pair_y[pairs], ds.pair_drug[pairs])}
  return {'auroc': metrics.classification(pred, ds.pair_label[pairs])['auroc']}


def validation_metrics(trainer: Trainer, state: TrainState, pairs: np.ndarray) -> dict:
  """`selection_metrics` of the model's predictions on `pairs`."""
  return selection_metrics(trainer.predict(state, pairs), pairs, trainer.prep.ds,
                           trainer.config.model.task)


def selection_score(m: dict, metric: str) -> float:
  """Selection score, higher is better (RMSE is negated); nan scores never win."""
  if metric not in m:
    raise ValueError(f'unknown train.select_metric {metric!r}; for this task choose one of '
                     f'{", ".join(m)}')
  value = -m['rmse'] if metric == 'rmse' else m[metric]
  return value if np.isfinite(value) else -np.inf


def param_count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains (resuming from the latest checkpoint), selects on validation, evaluates on test."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  outputs.write_config(workdir, config)
  mesh = sharding.make_mesh()
  prep = prepare(config)
  trainer = Trainer(prep, config, mesh)
  logging.info('devices: %s; mesh %s', jax.devices(), dict(mesh.shape))
  logging.info('dataset: %d pairs, %d cells, %d drugs, %.1f MB; split %s %s', prep.ds.num_pairs,
               len(prep.ds.cell_ids), len(prep.ds.drug_ids), prep.ds.nbytes() / 1e6,
               prep.split.name, prep.split.sizes())
  state = jax.device_put(init_state(prep, config.train.seed), trainer.rep)
  logging.info('parameters: %d', param_count(state.params))
  ckpts = checkpoint.Checkpoints(workdir / 'checkpoints')
  restored = ckpts.restore('latest', state)
  meta = {'epoch': 0, 'best_score': None, 'best_epoch': -1, 'bad_epochs': 0, 'history': [],
          'done': False}
  if restored is not None:
    state, meta = restored
    logging.info('resumed from epoch %d (step %d)', meta['epoch'], int(state.step))
  meta = _train_loop(trainer, ckpts, state, meta, workdir)
  if not meta['done']:
    ckpts.close()
    return {'interrupted': True, 'epoch': meta['epoch']}
  best, _ = ckpts.restore('best', state)
  ckpts.close()
  pred = trainer.predict(best, prep.split.test)
  leaky = config.train.select_on == 'test'
  extra = {'split': {'name': prep.split.name, 'description': prep.split.description,
                     **prep.split.sizes()},
           'selection': {'select_on': config.train.select_on, 'metric': config.train.select_metric,
                         'leaky': leaky, 'best_epoch': meta['best_epoch'],
                         'epochs_trained': meta['epoch']},
           'dataset': {k: v for k, v in prep.ds.info.items()},
           'parameters': param_count(best.params), 'devices': jax.device_count()}
  return outputs.final_report(workdir, prep.ds, prep.split.train, prep.split.test, pred, config,
                              extra)


def _train_loop(trainer: Trainer, ckpts, state: TrainState, meta: dict, workdir: pathlib.Path):
  """Epochs until patience or num_epochs runs out; saves latest/best and history every epoch."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  cfg, split = trainer.config.train, trainer.prep.split
  select_pairs = split.val if cfg.select_on == 'val' else split.test
  if cfg.select_on not in ('val', 'test'):
    raise ValueError(f'unknown train.select_on {cfg.select_on!r}; choose val (or test: leaky)')
  rng = jax.device_put(jax.random.key(cfg.seed + 1), trainer.rep)
  tb = outputs.TensorBoard(workdir / 'tb')
  steps = len(epoch_batches(split.train, cfg.batch_size, cfg.seed, 0))
  epochs_run = 0
  while not meta['done']:
    epoch, t0 = meta['epoch'], time.time()
    bar = tqdm(total=steps, desc=f'epoch {epoch}', disable=not cfg.progress, leave=False)
    state, loss = run_epoch(trainer, state, rng, epoch, bar)
    bar.close()
    val = validation_metrics(trainer, state, split.val)
    chosen = val if cfg.select_on == 'val' else validation_metrics(trainer, state, select_pairs)
    score = selection_score(chosen, cfg.select_metric)
    row = {'epoch': epoch, 'step': int(state.step), 'train_loss': loss,
           **{f'val_{k}': v for k, v in val.items()}, 'seconds': time.time() - t0}
    meta['history'].append(row)
    if meta['best_score'] is None or score > meta['best_score']:
      meta.update(best_score=score, best_epoch=epoch, bad_epochs=0)
      ckpts.save('best', epoch, state, {'epoch': epoch, 'score': score})
    else:
      meta['bad_epochs'] += 1
    meta['epoch'] = epoch + 1
    meta['done'] = meta['bad_epochs'] >= cfg.patience or meta['epoch'] >= cfg.num_epochs
    ckpts.save('latest', epoch, state, meta)
    outputs.write_csv(workdir / 'history.csv', meta['history'], outputs.HISTORY_FIELDS)
    tb.scalars(epoch, {'train/loss': loss, **{f'val/{k}': v for k, v in val.items()}})
    logging.info('epoch %d: loss %.4f, val %s (%.1fs)', epoch, loss,
                 {k: round(v, 4) for k, v in val.items()}, row['seconds'])
    epochs_run += 1
    if cfg.max_epochs_this_run and epochs_run >= cfg.max_epochs_this_run and not meta['done']:
      break
  tb.close()
  return meta
