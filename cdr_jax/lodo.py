"""Leave-one-drug-out: every fold trained side by side in one sweep.

F fold models are stacked along a leading model axis and trained by the one loop (`train.loop.fit`)
with the single-model step (`train.step.train_step`) lifted to the F models in one program
(`train.step.over_models`: vmapped on an accelerator; on CPU a loop over the folds inside the step,
`lodo.fold_map`). All folds read one shared stream of batches over all pairs; fold f gives weight 0
to its held-out drug's pairs and to its validation drugs' pairs, and keeps those drugs out of its
BatchNorm statistics. Each fold selects its best epoch on its own validation drugs and stops on its
own patience (a stopped fold stops changing). Folds run in chunks of `folds_per_chunk` so memory stays
bounded; each chunk checkpoints every epoch and its results are written atomically when it ends, so
a killed sweep resumes at the last finished epoch of its unfinished chunk.
"""

import dataclasses
import hashlib
import json
import logging
import pathlib
import shutil
import time

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax import runs
from cdr_jax.data import dataset
from cdr_jax.data import drugs as drug_lib
from cdr_jax.data import io
from cdr_jax.data.dataset import Dataset
from cdr_jax.eval import baselines
from cdr_jax.eval import classical
from cdr_jax.eval import lodo_kernel
from cdr_jax.eval import metrics
from cdr_jax.train import checkpoint
from cdr_jax.train import loop
from cdr_jax.train import sharding
from cdr_jax.train import warm_start



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
  """One leave-one-drug-out fold: its held-out drug, validation drugs and pair indices, and the
  drugs it drops altogether (its screening batch-mates with `lodo.apart`; none otherwise)."""
  drug: int
  val_drugs: np.ndarray
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  excluded: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


def make_fold(ds: Dataset, drug: int, val_fraction: float, seed: int, apart: float = 0.0) -> Fold:
  """The fold of `drug`; its validation drugs depend only on (seed, drug, apart), not on the
  chunk. `apart` > 0 (`lodo.apart`): the drugs GDSC screened within `apart` ids of the held-out
  drug (`lodo_kernel.batch_mates`) leave the fold: neither trained on, validated on, nor read by
  its naive mean, kernel baseline or stack."""
  excluded = (lodo_kernel.batch_mates(ds, drug, apart) if apart > 0
              else np.zeros(0, np.int64))
  others = np.setdiff1d(np.arange(len(ds.drug_ids)), np.r_[drug, excluded])
  if len(others) < 3:   # validation drugs and two training drugs (kernel ridge's leave-one-out)
    raise ValueError(f'lodo.apart={apart:g} leaves the fold of drug {ds.drug_ids[drug]} '
                     f'{len(others)} other drugs ({len(excluded)} screened within {apart:g} ids '
                     f'of it are dropped); it needs at least 3: lower lodo.apart')
  n_val = max(1, int(round(val_fraction * len(others))))
  val_drugs = np.sort(np.random.default_rng([seed, drug]).choice(others, n_val, replace=False))
  is_val = np.isin(ds.pair_drug, val_drugs)
  is_test = ds.pair_drug == drug
  is_out = np.isin(ds.pair_drug, excluded)
  return Fold(drug, val_drugs, np.flatnonzero(~is_val & ~is_test & ~is_out),
              np.flatnonzero(is_val), np.flatnonzero(is_test), excluded)


def run_chunk(ds: Dataset, config: ml_collections.ConfigDict, folds: list[Fold],
              checkpoint_dir: pathlib.Path | None = None,
              drug_kernel: np.ndarray | None = None) -> list[dict]:
  """Trains one chunk of folds side by side with the one loop; a result row per fold.

  With `checkpoint_dir`, the chunk checkpoints every epoch and a killed chunk resumes at its last
  finished epoch. With `model.line_init='kernel_ridge'` each fold starts as kernel ridge over its
  own training drugs on `drug_kernel` (default `warm_start.drug_kernel`), with its own lambda.
  """
  cfg = config.train
  if warm_start.check(config) == 'line' and drug_kernel is None:
    drug_kernel = warm_start.drug_kernel(ds, config)
  run, states, line_l2, started = _started_run(ds, config, [f.train for f in folds], drug_kernel)
  rng = run.engine.key(cfg.seed + 1)
  ckpts = checkpoint.Checkpoints(checkpoint_dir) if checkpoint_dir else None
  schedule = loop.Schedule(cfg.num_epochs, cfg.patience, 0, False, cfg.checkpoint_every_s)
  scored_start = started and cfg.get('score_start', True)
  select = run.selector([f.val for f in folds], start=states if scored_start else None)
  best, progress = loop.fit(run.step(rng), states, run.stream, select, ckpts, schedule,
                            names=[ds.drug_ids[f.drug] for f in folds], score_start=scored_start)
  if ckpts:
    ckpts.close()
  test_pred = run.predict(best, [f.test for f in folds])
  val_pred = run.predict(best, [f.val for f in folds])
  before = None
  if config.lodo.get('refit', False):
    before = test_pred
    epochs = [int(e) + 1 for e in progress.best_epoch]
    test_pred = _refit_chunk(ds, config, folds, epochs, drug_kernel, line_l2,
                             checkpoint_dir / 'refit' if checkpoint_dir else None)
  rows = [_fold_row(ds, f, p, v, progress.best_epoch[i], progress.best_score[i],
                    progress.history[i], config)
          for i, (f, p, v) in enumerate(zip(folds, test_pred, val_pred))]
  for i in range(len(folds) if started else 0):  # the lambda of each fold's per-line term
    rows[i]['line_l2'] = float(run.host.line_l2[i])
  if before is not None:
    for f, row, p in zip(folds, rows, before):
      row['pcc_before_refit'] = metrics.pcc(p, ds.pair_y[f.test])
  return rows


def _started_run(ds: Dataset, config: ml_collections.ConfigDict, train_sets: list[np.ndarray],
                 drug_kernel: np.ndarray | None, line_l2: list[float] | None = None):
  """A chunk's run set up with one training set per fold, and its initial states. With
  `model.line_init='kernel_ridge'` each fold starts as kernel ridge over the drugs of its training
  set on `drug_kernel`, its per-line term's lambda `line_l2` (None: each fold's ridge's own,
  unless `model.line_linear` fixes it). Returns (run, states, line_l2, whether they started so).
  """
  ridges = []
  if warm_start.check(config) == 'line':
    kernel = warm_start.network_kernel(drug_kernel, config.data)
    ridges = [warm_start.fit_line(ds, t, kernel, config.data) for t in train_sets]
    if line_l2 is None and not config.model.line_linear:
      line_l2 = [r.lam for r in ridges]
  # Every fold draws its batches from all pairs (its weights mask out its held-out and validation
  # drugs), so all folds share one stream, one dropout key per step and one standardisation.
  run = experiment.setup(config, ds, train_sets, np.arange(ds.num_pairs), drug_kernel, line_l2)
  states = run.init()
  if ridges:
    states = warm_start.start_from(
        states, 'line', [warm_start.line_params(r, run.host.drug_k, m, s)
                         for r, m, s in zip(ridges, run.host.y_mean, run.host.y_std)],
        lodo_kernel.DrugRidge.name)
  return run, states, line_l2, bool(ridges)


def _refit_chunk(ds: Dataset, config: ml_collections.ConfigDict, folds: list[Fold],
                 epochs: list[int], drug_kernel: np.ndarray | None,
                 line_l2: list[float] | None,
                 checkpoint_dir: pathlib.Path | None) -> list[np.ndarray]:
  """`lodo.refit`: each fold's network trained again on its training + validation drugs for the
  number of epochs its validation chose (0: the start), from the start fitted again on them
  (kernel ridge over those drugs, the per-line term's lambda kept: no choice is revisited);
  returns each fold's test predictions. As `train.refit` does for a single run."""
  both = [np.concatenate([f.train, f.val]) for f in folds]
  run, states, _, _ = _started_run(ds, config, both, drug_kernel, line_l2)
  ckpts = checkpoint.Checkpoints(checkpoint_dir) if checkpoint_dir else None
  schedule = loop.Schedule(max(max(epochs), 1), 1, 0, False, config.train.checkpoint_every_s,
                           epochs_per_model=tuple(epochs))
  best, _ = loop.fit(run.step(run.engine.key(config.train.seed + 1)), states, run.stream, None,
                     ckpts, schedule, names=[ds.drug_ids[f.drug] for f in folds])
  if ckpts:
    ckpts.close()
  logging.info('refit on training + validation drugs: %s epochs per fold', epochs)
  return run.predict(best, [f.test for f in folds])


def _fold_row(ds, fold, pred, val_pred, best_epoch, best_score, curve, config) -> dict:
  obs = ds.pair_y[fold.test]
  naive = metrics.pcc(baselines.naive_cell_mean(ds, fold.drug, fold.test, fold.excluded), obs)
  row = {'drug_id': ds.drug_ids[fold.drug], 'drug_name': ds.drug_names[fold.drug],
         'n': int(len(fold.test)), 'best_epoch': int(best_epoch), 'val_score': float(best_score)}
  if config.lodo.get('apart', 0.0) > 0:
    row['batch_mates_dropped'] = int(len(fold.excluded))
  if config.model.task == 'regression':
    m = metrics.regression(pred, obs)
    row.update(pcc=m['pcc'], spearman=m['spearman'], rmse=m['rmse'], naive_pcc=naive,
               gain=m['pcc'] - naive)
  else:
    row.update(metrics.classification(pred, ds.pair_label[fold.test]))
  row['curve'] = [{k: c[k] for k in runs.LODO_CURVE_FIELDS[1:]} for c in curve]
  row['predictions'] = [float(x) for x in pred]
  row['val_predictions'] = [float(x) for x in val_pred]   # for the stack (`_with_classical`)
  return row


def run_sweep(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
              drugs: str | None = None) -> dict:
  """All (or the chosen) leave-one-drug-out folds, chunk by chunk, resuming finished chunks."""
  workdir = pathlib.Path(workdir)
  warm = warm_start.check(config)
  if warm in ('mf', 'ridge'):  # seen-pairs / unseen-lines warm starts are per run (train.py)
    field = {'mf': "model.id_init='mf'", 'ridge': "model.linear_init='ridge'"}[warm]
    fix = {'mf': 'id_init=random', 'ridge': 'linear_init=zero'}[warm]
    raise ValueError(f'{field} starts a single run from a classical predictor of seen drugs; a '
                     f'held-out drug has none: set --config.model.{fix} (the :lodo variant sets '
                     "id_init=random; its folds start from kernel ridge over drugs, "
                     "model.line_init='kernel_ridge')")
  writer = sharding.is_writer()
  if writer:
    (workdir / 'chunks').mkdir(parents=True, exist_ok=True)
    runs.write_config(workdir, config)
  ds = data.load_dataset(config.data)
  chosen = parse_drugs(drugs or config.lodo.drugs, ds)
  apart = config.lodo.get('apart', 0.0)
  folds = [make_fold(ds, d, config.lodo.val_fraction, config.split.seed, apart) for d in chosen]
  root = dataset.resolve_data_root(config.data.root) if config.data.source == 'deepcdr' else None
  screens = warm_start.kernel_screens(ds, config.data)
  screening_batch = config.data.get('screening_batch', False)
  binding = drug_lib.uses_binding(config.data)
  kernel, kernel_info, kernel_matrix = classical_kernel(ds, folds, root, screens, apart,
                                                        screening_batch, binding)
  if binding:   # which drugs the panels describe (the rest get a zero binding kernel row)
    kernel_info['binding_panels'] = ds.info['binding_panels']
  # Beside it, the kernel with the screening batch (the sweep's own when it uses it): what the
  # GDSC screening order adds, in every sweep whose data record it (README, session 24).
  batch = None
  if lodo_kernel.has_screening_order(ds):
    batch = (kernel if screening_batch else
             classical_kernel(ds, folds, root, screens, apart, True, binding)[0])
  pathway = drug_lib.read_drug_list_annotations(root).pathway if root else {}
  size = folds_per_chunk(config)
  rows = []
  with_classical = lambda r, f: _with_classical(r, ds, f, kernel, kernel_matrix, pathway, screens,
                                                batch)
  for k in range(0, len(folds), size):
    chunk = folds[k:k + size]
    name = f'chunk_{k // size:03d}_{_chunk_key(ds, chunk, apart)}'
    path = workdir / 'chunks' / f'{name}.json'
    if path.exists():
      rows += [with_classical(r, f) for r, f in zip(json.loads(path.read_text()), chunk)]
      logging.info('chunk %d: already done, %d folds read', k // size, len(chunk))
      continue
    t0 = time.time()
    ckpt_dir = workdir / 'checkpoints' / name
    chunk_rows = run_chunk(ds, config, chunk, ckpt_dir, kernel_matrix)
    if writer:
      io.atomic_write_json(path, chunk_rows)
      shutil.rmtree(ckpt_dir, ignore_errors=True)  # the chunk's results are written: not needed
    multihost_utils.sync_global_devices(name)  # every process sees the chunk done
    rows += [with_classical(r, f) for r, f in zip(chunk_rows, chunk)]
    logging.info('chunk %d: %d folds in %.1fs', k // size, len(chunk), time.time() - t0)
  return write_outputs(workdir, ds, rows, config, kernel_info)


def classical_kernel(ds: Dataset, folds: list[Fold], root, screens: np.ndarray | None,
                     apart: float, screening_batch: bool, binding: bool
                     ) -> tuple[np.ndarray, dict, np.ndarray]:
  """The sweep's kernel baseline (`lodo_kernel.held_out_drug_predictions`: [P] each pair's
  prediction by its drug's fold, what it used, the [D, D] kernel); with `apart`, each fold's
  held-out drug fitted without its batch-mates instead (`apart_predictions`), and the plain
  folds' fit, which nothing would read, is never made."""
  if apart <= 0:
    return lodo_kernel.held_out_drug_predictions(ds, root, screens,
                                                 screening_batch=screening_batch, binding=binding)
  matrix, weights = lodo_kernel.weighted_kernel(ds, root, screening_batch, binding)
  info = lodo_kernel.baseline_info(weights, screens, screening_batch,
                                   'per fold, without its batch-mates')
  info['apart'] = float(apart)
  return apart_predictions(ds, folds, matrix, screens), info, matrix


def apart_predictions(ds: Dataset, folds: list[Fold], kernel_matrix: np.ndarray,
                      screens: np.ndarray | None) -> np.ndarray:
  """[P] the kernel baseline of each fold's held-out drug fitted without the drugs the fold drops
  (`Fold.excluded`: its batch-mates with `lodo.apart`), on its test pairs; nan elsewhere."""
  out = np.full(ds.num_pairs, np.nan)
  for f in folds:
    out[f.test] = lodo_kernel.without_drug(ds, kernel_matrix, f.excluded, [f.drug], f.test,
                                           screens)
  return out


def folds_per_chunk(config: ml_collections.ConfigDict) -> int:
  """`config.lodo.folds_per_chunk`, or for 0 the platform's choice: 8 on CPU, where the step loops
  over a chunk's folds still training (`lodo.fold_map`): 8 folds took 1.55x less time than one
  after another with early stopping, and 32 gained nothing over 8 (`bench/lodo_throughput.py`);
  32 on an accelerator, where one small fold leaves it idle."""
  size = config.lodo.folds_per_chunk
  if size < 0:
    raise ValueError(f'lodo.folds_per_chunk must be >= 0 (0 = by platform), got {size}')
  return size or (8 if jax.default_backend() == 'cpu' else 32)


# Candidate weights of the network in the stack (1 - w goes to the kernel baseline).
STACK_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def _with_classical(row: dict, ds: Dataset, fold: Fold, kernel: np.ndarray,
                    kernel_matrix: np.ndarray, pathway: dict[str, str],
                    screens: np.ndarray | None = None, batch: np.ndarray | None = None) -> dict:
  """A fold's row with the classical kernel baseline's PCC on its held-out drug (and, given
  `batch`, the kernel's with the screening batch), the stack's (network and kernel baseline
  blended, `_stack_weight`) and the drug's GDSC target pathway ('' without a drug list)."""
  obs = ds.pair_y[fold.test]
  out = {k: v for k, v in row.items() if k not in ('curve', 'predictions', 'val_predictions')}
  out.update(kernel_pcc=metrics.pcc(kernel[fold.test], obs))
  if batch is not None:
    out.update(kernel_batch_pcc=metrics.pcc(batch[fold.test], obs))
  if 'pcc' in row:   # regression
    w = _stack_weight(ds, fold, np.asarray(row.get('val_predictions', [])), kernel_matrix,
                      screens)
    stack = w * np.asarray(row['predictions']) + (1 - w) * kernel[fold.test]
    out.update(stack_pcc=metrics.pcc(stack, obs) if np.isfinite(w) else float('nan'),
               stack_weight=w)
  out.update(pathway=pathway.get(row['drug_id'], ''), curve=row['curve'],
             predictions=row['predictions'])
  return out


def _stack_weight(ds: Dataset, fold: Fold, val_pred: np.ndarray, kernel_matrix,
                  screens: np.ndarray | None = None) -> float:
  """The network's weight in the stack: the `STACK_WEIGHTS` entry with the best mean per-drug PCC
  on the fold's validation drugs, the kernel baseline scoring each of them without its labels nor
  the held-out drug's (nan for rows of sweeps older than the validation predictions)."""
  if len(val_pred) != len(fold.val):
    return float('nan')
  val_kernel = lodo_kernel.without_drug(ds, kernel_matrix, np.r_[fold.drug, fold.excluded],
                                        fold.val_drugs, fold.val, screens)
  obs, drug = ds.pair_y[fold.val], ds.pair_drug[fold.val]
  scores = [classical.mean_drug_pcc(w * val_pred + (1 - w) * val_kernel, obs, drug)
            for w in STACK_WEIGHTS]
  return float(STACK_WEIGHTS[int(np.nanargmax(scores))])


def _chunk_key(ds: Dataset, chunk: list[Fold], apart: float = 0.0) -> str:
  """Names a chunk by its drugs (and `lodo.apart`), so a different --drugs selection or a
  different set of dropped batch-mates never reuses it."""
  key = ','.join(ds.drug_ids[f.drug] for f in chunk) + (f'|apart={apart:g}' if apart > 0 else '')
  return hashlib.sha1(key.encode()).hexdigest()[:10]


def summarize(rows: list[dict]) -> dict:
  """Mean / median per-drug PCC, the naive predictor's, and how many drugs beat it."""
  pcc = np.array([r['pcc'] for r in rows], float)
  naive = np.array([r['naive_pcc'] for r in rows], float)
  stack = np.array([r['stack_pcc'] for r in rows], float)
  ok = np.isfinite(pcc) & np.isfinite(naive)
  return {'folds': len(rows), 'per_drug_pcc_mean': float(np.nanmean(pcc)),
          'stack_pcc_mean': float(np.nanmean(stack)) if np.isfinite(stack).any() else None,
          'stack_folds': int(np.isfinite(stack).sum()),
          'per_drug_pcc_median': float(np.nanmedian(pcc)),
          'naive_cell_mean_pcc_mean': float(np.nanmean(naive)),
          'naive_cell_mean_pcc_median': float(np.nanmedian(naive)),
          'drugs_beating_naive': int((pcc[ok] > naive[ok]).sum()), 'drugs_compared': int(ok.sum())}


def write_outputs(workdir: pathlib.Path, ds: Dataset, rows: list[dict], config,
                  kernel_info: dict) -> dict:
  """The sweep's files (see `runs.write_lodo`) with its summary; returns the summary."""
  summary = summarize(rows) if config.model.task == 'regression' else {
      'folds': len(rows), 'auroc_mean': float(np.nanmean([r['auroc'] for r in rows]))}
  summary.update(classical_kernel=kernel_info,
                 classical_kernel_pcc_mean=float(np.nanmean([r['kernel_pcc'] for r in rows])))
  if rows and all('kernel_batch_pcc' in r for r in rows):
    summary.update(classical_kernel_batch_pcc_mean=float(
        np.nanmean([r['kernel_batch_pcc'] for r in rows])),
                   screening_batch=bool(config.data.get('screening_batch', False)))
  apart = config.lodo.get('apart', 0.0)
  if apart > 0:
    summary.update(apart=float(apart), batch_mates_dropped_mean=float(
        np.mean([r['batch_mates_dropped'] for r in rows])) if rows else 0.0)
  summary.update(line_init=config.model.get('line_init', 'zero'),
                 refit=bool(config.lodo.get('refit', False)))
  before = [r['pcc_before_refit'] for r in rows if 'pcc_before_refit' in r]
  if before:
    summary.update(per_drug_pcc_before_refit_mean=float(np.nanmean(before)))
  summary.update(cell_repr=config.data.cell_repr, drug_repr=config.data.drug_repr,
                 shuffled_drugs=bool(config.data.shuffle_drugs), model=config.model.name,
                 shuffled=bool(config.data.shuffle_cells), select_metric=config.train.select_metric,
                 select_margin=config.train.get('select_margin', 'none'))
  if sharding.is_writer():
    runs.write_lodo(workdir, ds, rows, summary)
  return summary
