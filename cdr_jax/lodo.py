"""Leave-one-drug-out: every fold trained side by side in one vmapped sweep.

F fold models are stacked along a leading fold axis and trained by `jax.vmap` of the single-model
`train.train_step`. All folds read one shared stream of batches over all pairs; fold f gives weight 0
to its held-out drug's pairs and to its validation drugs' pairs, and keeps those drugs out of its
BatchNorm statistics. Each fold selects its best epoch on its own validation drugs and stops on its
own patience (a stopped fold stops changing). Folds run in chunks of `folds_per_chunk` so memory stays
bounded; each finished chunk is written atomically, so an interrupted sweep resumes at the next chunk.
"""

import dataclasses
import functools
import json
import logging
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cdr_jax import data
from cdr_jax import io
from cdr_jax import metrics
from cdr_jax import outputs
from cdr_jax import sharding
from cdr_jax import splits
from cdr_jax import train
from cdr_jax.data import Dataset


def parse_drugs(spec: str, ds: Dataset) -> list[int]:
  """Drug indices from 'all', 'random:<n>:<seed>', or comma-separated CIDs / names."""
  if spec == 'all':
    return list(range(len(ds.drug_ids)))
  if spec.startswith('random:'):
    _, n, seed = spec.split(':')
    chosen = np.random.default_rng(int(seed)).choice(len(ds.drug_ids), int(n), replace=False)
    return sorted(int(i) for i in chosen)
  out = []
  for token in filter(None, (t.strip() for t in spec.split(','))):
    if token in ds.drug_ids:
      out.append(ds.drug_ids.index(token))
    elif token in ds.drug_names:
      out.append(ds.drug_names.index(token))
    else:
      raise ValueError(f'unknown drug {token!r} in lodo drugs: give PubChem CIDs or names of the '
                       f'{len(ds.drug_ids)} drugs, "all", or "random:<n>:<seed>"')
  return out


@dataclasses.dataclass(frozen=True)
class Fold:
  """One leave-one-drug-out fold: its held-out drug, validation drugs and pair indices."""
  drug: int
  val_drugs: np.ndarray
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray


def make_fold(ds: Dataset, drug: int, val_fraction: float, seed: int) -> Fold:
  """The fold of `drug`; its validation drugs depend only on (seed, drug), not on the chunk."""
  others = np.setdiff1d(np.arange(len(ds.drug_ids)), [drug])
  n_val = max(1, int(round(val_fraction * len(others))))
  val_drugs = np.sort(np.random.default_rng([seed, drug]).choice(others, n_val, replace=False))
  is_val = np.isin(ds.pair_drug, val_drugs)
  is_test = ds.pair_drug == drug
  return Fold(drug, val_drugs, np.flatnonzero(~is_val & ~is_test), np.flatnonzero(is_val),
              np.flatnonzero(is_test))


def fold_mesh(num_folds: int):
  """A ('fold', 'data') mesh: folds spread over as many devices as divide them, data over the rest."""
  n = jax.device_count()
  f = math.gcd(n, num_folds)
  return sharding.make_mesh(('fold', 'data'), (f, n // f))


FOLD_STATIC = ('drug_active', 'cell_active', 'y_mean', 'y_std')  # per-fold entries of `static`


class Sweep:
  """Jitted, vmapped step / selection / prediction functions for one chunk of folds."""

  def __init__(self, prep: train.Prepared, config: ml_collections.ConfigDict, folds: list[Fold]):
    self.prep, self.config, self.folds = prep, config, folds
    self.mesh = fold_mesh(len(folds))
    self.rep = sharding.replicated(self.mesh)
    self.by_fold = sharding.sharded(self.mesh, 'fold')
    self.by_data = sharding.sharded(self.mesh, 'data')
    if config.train.batch_size % self.mesh.shape['data']:
      raise ValueError(f'train.batch_size={config.train.batch_size} must be a multiple of the '
                       f'{self.mesh.shape["data"]} devices on the data axis')
    shared = {k: v for k, v in prep.static.items() if k not in FOLD_STATIC}
    self.shared = sharding.put(shared, self.rep)
    self.per_fold = sharding.put(self._fold_static(), self.by_fold)
    mask = np.zeros((len(folds), prep.ds.num_pairs), np.uint8)
    for i, f in enumerate(folds):
      mask[i, f.train] = 1
    self.train_mask = sharding.put(mask, sharding.sharded(self.mesh, 'fold', None))
    l2 = train.l2_per_step(config, int(round(np.mean([len(f.train) for f in folds]))))
    self.step, self.encode, self.fuse = _jitted(prep.model, prep.tx, config.model.task, l2)

  def _fold_static(self) -> dict:
    ds = self.prep.ds
    y_train = [ds.pair_y[f.train] for f in self.folds]
    return {'drug_active': np.stack([np.isin(np.arange(len(ds.drug_ids)), ds.pair_drug[f.train])
                                     for f in self.folds]),
            'cell_active': np.stack([np.isin(np.arange(len(ds.cell_ids)), ds.pair_cell[f.train])
                                     for f in self.folds]),
            'y_mean': np.array([y.mean() for y in y_train], np.float32),
            'y_std': np.array([y.std() for y in y_train], np.float32)}

  def static(self) -> dict:
    return {**self.shared, **self.per_fold}

  def init(self) -> train.TrainState:
    """Every fold starts from the same initial parameters (those of `train.seed`)."""
    one = train.init_state(self.prep, self.config.train.seed)
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(self.folds),) + x.shape), one)
    return jax.device_put(stacked, self.by_fold)

  def predict(self, states, pair_lists: list[np.ndarray]) -> list[np.ndarray]:
    """Per fold, predictions (natural scale) for its own list of pairs."""
    codes = self.encode(states, self.static())
    n = max(1, max(len(p) for p in pair_lists))
    n = sharding.round_to_devices(n, self.mesh)
    idx = np.zeros((len(pair_lists), n), np.int32)
    for i, p in enumerate(pair_lists):
      idx[i, :len(p)] = p
    out = np.asarray(jax.device_get(self.fuse(states, codes, self.static(),
                                              sharding.put(idx, sharding.sharded(
                                                  self.mesh, 'fold', 'data')))))
    fs = jax.device_get(self.per_fold)
    result = []
    for i, p in enumerate(pair_lists):
      o = out[i, :len(p)]
      if self.config.model.task == 'regression':
        result.append(o * fs['y_std'][i] + fs['y_mean'][i])
      else:
        result.append(1.0 / (1.0 + np.exp(-o)))
    return result


@functools.lru_cache(maxsize=8)
def _jitted(model, tx, task: str, l2: tuple[tuple[str, float], ...]):
  """(step, encode, fuse), jitted once per model: chunks of equal size reuse the compilation."""
  step = jax.jit(functools.partial(_chunk_step, model=model, tx=tx, task=task, l2=l2),
                 donate_argnums=(0,))
  encode = jax.jit(jax.vmap(functools.partial(train.encode, model=model),
                            in_axes=(0, _static_axes())))
  fuse = jax.jit(jax.vmap(functools.partial(train.predict_batch, model=model),
                          in_axes=(0, 0, _static_axes(), 0)))
  return step, encode, fuse


def _static_axes():
  """vmap axes of `static`: the per-fold entries have a leading fold axis, the rest are shared."""
  return {k: (0 if k in FOLD_STATIC else None)
          for k in ('graphs', 'cell_x', 'pair_cell', 'pair_drug', 'pair_y', 'pair_label',
                    *FOLD_STATIC)}


def _chunk_step(states, static, train_mask, active, batch, rng, *, model, tx, task, l2):
  """The single-model train step, vmapped over folds; stopped folds keep their state.

  Every active fold is at the same step, so the step's dropout key (`rng` folded with the step, as
  in `train.train_step`) is one key shared by all folds: the masks are drawn once, not per fold.
  """
  weight = train_mask[:, batch['idx']].astype(jnp.float32) * batch['weight'][None, :]
  key = jax.random.fold_in(rng, jnp.max(states.step))
  step = functools.partial(train.keyed_step, model=model, tx=tx, task=task, l2=l2)
  new, m = jax.vmap(step, in_axes=(0, _static_axes(), {'idx': None, 'weight': 0}, None))(
      states, static, {'idx': batch['idx'], 'weight': weight}, key)
  return _per_fold_where(active, new, states), m


def _per_fold_where(mask, new, old):
  """Per fold (leading axis of every leaf): `new` where `mask`, else `old`."""
  pick = lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(pick, new, old)


def run_chunk(prep: train.Prepared, config: ml_collections.ConfigDict, folds: list[Fold]) -> list:
  """Trains one chunk of folds side by side; returns a result row (with its curve) per fold."""
  sweep = Sweep(prep, config, folds)
  cfg = config.train
  states = sweep.init()
  best = jax.tree.map(jnp.copy, states)
  select = jax.jit(_per_fold_where)  # the best state per fold: new where it improved
  n = len(folds)
  best_score, best_epoch = np.full(n, -np.inf), np.zeros(n, int)
  bad, active = np.zeros(n, int), np.ones(n, bool)
  curves = [[] for _ in folds]
  rng = jax.device_put(jax.random.key(cfg.seed + 1), sweep.rep)
  all_pairs = np.arange(prep.ds.num_pairs)
  for epoch in range(cfg.num_epochs):
    t0, losses = time.time(), []
    for batch in train.epoch_batches(all_pairs, cfg.batch_size, cfg.seed, epoch):
      states, m = sweep.step(states, sweep.static(), sweep.train_mask,
                             jax.device_put(active, sweep.by_fold),
                             sharding.put(batch, sweep.by_data), rng)
      losses.append(m)
    losses = jax.device_get(losses)
    loss = np.sum([l['loss'] * l['weight'] for l in losses], 0) / np.maximum(
        np.sum([l['weight'] for l in losses], 0), 1)
    if not np.isfinite(loss[active]).all():
      raise train.NonFiniteLossError(f'non-finite loss in epoch {epoch} of folds '
                                     f'{[prep.ds.drug_ids[f.drug] for f in folds]}')
    val_pred = sweep.predict(states, [f.val for f in folds])
    scores = np.array([_fold_score(p, f.val, prep.ds, config) for p, f in zip(val_pred, folds)])
    improved = active & (scores > best_score)
    best = select(jax.device_put(improved, sweep.by_fold), states, best)
    best_score[improved], best_epoch[improved] = scores[improved], epoch
    bad = np.where(improved, 0, bad + active)
    for i in range(n):
      if active[i]:
        curves[i].append({'epoch': epoch, 'train_loss': float(loss[i]), 'val_score': scores[i]})
    active &= bad < cfg.patience
    logging.info('lodo epoch %d: %d/%d folds active, mean val %s %.4f (%.1fs)', epoch,
                 active.sum(), n, cfg.select_metric, np.nanmean(scores), time.time() - t0)
    if not active.any():
      break
  test_pred = sweep.predict(best, [f.test for f in folds])
  return [_fold_row(prep.ds, f, p, best_epoch[i], best_score[i], curves[i], config)
          for i, (f, p) in enumerate(zip(folds, test_pred))]


def _fold_score(pred, pairs, ds: Dataset, config) -> float:
  """The fold's selection score on its validation drugs (`train.select_metric`; the lodo variant
  selects on per_drug_pcc, the quantity a held-out drug is scored on)."""
  m = train.selection_metrics(pred, pairs, ds, config.model.task)
  return train.selection_score(m, config.train.select_metric)


def naive_cell_mean(ds: Dataset, fold: Fold) -> np.ndarray:
  """The naive predictor for the held-out drug: each cell line's mean ln IC50 over other drugs."""
  rest = np.flatnonzero(ds.pair_drug != fold.drug)
  n_cells = len(ds.cell_ids)
  total = np.bincount(ds.pair_cell[rest], ds.pair_y[rest], n_cells)
  count = np.bincount(ds.pair_cell[rest], minlength=n_cells)
  means = np.where(count > 0, total / np.maximum(count, 1), ds.pair_y[rest].mean())
  return means[ds.pair_cell[fold.test]]


def _fold_row(ds, fold, pred, best_epoch, best_score, curve, config) -> dict:
  obs = ds.pair_y[fold.test]
  naive = metrics.pcc(naive_cell_mean(ds, fold), obs)
  row = {'drug_id': ds.drug_ids[fold.drug], 'drug_name': ds.drug_names[fold.drug],
         'n': int(len(fold.test)), 'best_epoch': int(best_epoch), 'val_score': float(best_score)}
  if config.model.task == 'regression':
    m = metrics.regression(pred, obs)
    row.update(pcc=m['pcc'], spearman=m['spearman'], rmse=m['rmse'], naive_pcc=naive,
               gain=m['pcc'] - naive)
  else:
    row.update(metrics.classification(pred, ds.pair_label[fold.test]))
  row['curve'] = curve
  row['predictions'] = [float(x) for x in pred]
  return row


def run_sweep(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
              drugs: str | None = None) -> dict:
  """All (or the chosen) leave-one-drug-out folds, chunk by chunk, resuming finished chunks."""
  workdir = pathlib.Path(workdir)
  (workdir / 'chunks').mkdir(parents=True, exist_ok=True)
  outputs.write_config(workdir, config)
  ds = data.load_dataset(config.data)
  chosen = parse_drugs(drugs or config.lodo.drugs, ds)
  folds = [make_fold(ds, d, config.lodo.val_fraction, config.split.seed) for d in chosen]
  # Every fold trains on nearly all pairs: standardise and build the model once, on all pairs.
  prep = train.prepare(config, ds, splits.Split('lodo', np.arange(ds.num_pairs), np.zeros(0, int),
                                                np.zeros(0, int)))
  size = config.lodo.folds_per_chunk
  rows = []
  for k in range(0, len(folds), size):
    chunk = folds[k:k + size]
    path = workdir / 'chunks' / f'chunk_{k // size:03d}_{_chunk_key(ds, chunk)}.json'
    if path.exists():
      rows += json.loads(path.read_text())
      logging.info('chunk %d: already done, %d folds read', k // size, len(chunk))
      continue
    t0 = time.time()
    chunk_rows = run_chunk(prep, config, chunk)
    io.atomic_write_json(path, chunk_rows)
    rows += chunk_rows
    logging.info('chunk %d: %d folds in %.1fs', k // size, len(chunk), time.time() - t0)
  return write_outputs(workdir, ds, rows, config)


def _chunk_key(ds: Dataset, chunk: list[Fold]) -> str:
  """Names a chunk by its drugs, so a different --drugs selection never reuses it."""
  import hashlib  # pylint: disable=g-import-not-at-top
  return hashlib.sha1(','.join(ds.drug_ids[f.drug] for f in chunk).encode()).hexdigest()[:10]


def summarize(rows: list[dict]) -> dict:
  """Mean / median per-drug PCC, the naive predictor's, and how many drugs beat it."""
  pcc = np.array([r['pcc'] for r in rows], float)
  naive = np.array([r['naive_pcc'] for r in rows], float)
  ok = np.isfinite(pcc) & np.isfinite(naive)
  return {'folds': len(rows), 'per_drug_pcc_mean': float(np.nanmean(pcc)),
          'per_drug_pcc_median': float(np.nanmedian(pcc)),
          'naive_cell_mean_pcc_mean': float(np.nanmean(naive)),
          'naive_cell_mean_pcc_median': float(np.nanmedian(naive)),
          'drugs_beating_naive': int((pcc[ok] > naive[ok]).sum()), 'drugs_compared': int(ok.sum())}


def write_outputs(workdir: pathlib.Path, ds: Dataset, rows: list[dict], config) -> dict:
  """lodo_per_drug.csv, lodo_summary.json, lodo_curves.csv and lodo_predictions.csv."""
  table = [{k: v for k, v in r.items() if k not in ('curve', 'predictions')} for r in rows]
  outputs.write_csv(workdir / 'lodo_per_drug.csv', table)
  curves = [{'drug_id': r['drug_id'], **c} for r in rows for c in r['curve']]
  outputs.write_csv(workdir / 'lodo_curves.csv', curves,
                    ('drug_id', 'epoch', 'train_loss', 'val_score'))
  preds = []
  for r in rows:
    test = np.flatnonzero(ds.pair_drug == ds.drug_ids.index(r['drug_id']))
    preds += [{'drug_id': r['drug_id'], 'cell_id': ds.cell_ids[ds.pair_cell[i]],
               'observed': float(ds.pair_y[i]), 'predicted': p}
              for i, p in zip(test, r['predictions'])]
  outputs.write_csv(workdir / 'lodo_predictions.csv', preds)
  summary = summarize(rows) if config.model.task == 'regression' else {
      'folds': len(rows), 'auroc_mean': float(np.nanmean([r['auroc'] for r in rows]))}
  summary.update(cell_repr=config.data.cell_repr, model=config.model.name,
                 shuffled=bool(config.data.shuffle_cells), select_metric=config.train.select_metric)
  io.atomic_write_json(workdir / 'lodo_summary.json', summary)
  return summary
