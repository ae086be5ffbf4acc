"""The one training loop: F stacked models (F = 1 for a single run), epochs, selection, resume.

`fit` runs epochs of a shared stream of batches through the stacked step. After each epoch every
model is scored on its own validation pairs; a model that improved becomes its best state, a model
that has not improved for `patience` epochs stops (its state no longer changes) and the loop ends
when all have stopped or `num_epochs` is reached. The states, best states and progress are
checkpointed after an epoch once `checkpoint_every_s` seconds have passed since the last save (0:
every epoch) and always when the loop stops, so a killed run resumes at its last saved epoch and
ends as an uninterrupted run would.
"""

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from cdr_jax.train import checkpoint as checkpoint_lib
from cdr_jax.train import sharding
from cdr_jax.train import step as step_lib
from cdr_jax.train.state import TrainState, num_models

FLUSH_EVERY = 50  # steps between host reads of the losses (keeps the device queue full)


class NonFiniteLossError(FloatingPointError):
  """The training loss became nan or inf."""


@dataclasses.dataclass
class Progress:
  """Where the loop stands (JSON in every checkpoint): per model, its best and its history."""
  epoch: int
  best_score: list            # per model; None before its first epoch
  best_epoch: list
  bad_epochs: list
  active: list
  history: list               # per model: one row per epoch it trained
  done: bool = False

  @classmethod
  def start(cls, n: int) -> 'Progress':
    return cls(0, [None] * n, [-1] * n, [0] * n, [True] * n, [[] for _ in range(n)])


def epoch_batches(pool: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[dict]:
  """Shuffled fixed-size batches of the pair indices in `pool`; the last is padded with weight 0."""
  perm = np.random.default_rng([seed, epoch]).permutation(pool)
  n = -(-len(perm) // batch_size) * batch_size
  idx = np.zeros(n, np.int32)
  idx[:len(perm)] = perm
  weight = np.zeros(n, np.float32)
  weight[:len(perm)] = 1.0
  return [{'idx': idx[i:i + batch_size], 'weight': weight[i:i + batch_size]}
          for i in range(0, n, batch_size)]


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How long to train: the `train` section of a config."""
  num_epochs: int
  patience: int
  max_epochs_this_run: int = 0   # > 0: stop (resumably) after this many epochs in one invocation
  progress: bool = False         # a tqdm bar per epoch
  checkpoint_every_s: float = 0.0  # > 0: save at most this often (and when stopping); 0: every epoch
  # Without selection (a refit): per model, how many epochs it trains (0: it keeps its start);
  # empty: every model trains `num_epochs`.
  epochs_per_model: tuple[int, ...] = ()

  @classmethod
  def from_config(cls, cfg) -> 'Schedule':
    return cls(cfg.num_epochs, cfg.patience, cfg.max_epochs_this_run, cfg.progress,
               cfg.checkpoint_every_s)


def fit(step: Callable, states: TrainState, stream: Callable[[int], list],
        select: Callable[[TrainState], tuple[np.ndarray, list[dict]]] | None,
        checkpoints: checkpoint_lib.Checkpoints | None, schedule: Schedule,
        names: Sequence[str] | None = None,
        on_epoch: Callable[[Progress], None] | None = None,
        score_start: bool = False) -> tuple[TrainState, Progress]:
  """Trains F stacked models until they stop; returns (best states, progress).

  Args:
    step: (states, active [F] bool, batch) -> (states, {'loss': [F], 'weight': [F], 'step': the
      step number just taken}), the metrics readable by every process.
    states: the initial states (overwritten by the latest checkpoint when there is one).
    stream: epoch -> that epoch's batches (already placed on device).
    select: states -> (score per model, higher is better; validation metrics per model). None:
      no selection (a refit trains a number of epochs chosen before): every epoch is the best so
      far, so the states returned are the last.
    checkpoints: where `latest` and `best` are kept (None: no checkpointing).
    schedule: epochs, patience, an optional per-invocation epoch budget.
    names: a name per model for error messages (default: its index).
    on_epoch: called with the progress after every epoch (history files, TensorBoard).
    score_start: score the initial states too (a warm start, train/warm_start.py): they are the
      best so far (best epoch -1) until an epoch beats them, so selection never ends below them.
  """
  n = num_models(states)
  names = list(names) if names is not None else [str(i) for i in range(n)]
  progress, best = Progress.start(n), jax.tree.map(lambda x: x.copy(), states)
  restored = checkpoints.restore('latest', states) if checkpoints else None
  if restored is not None:
    states, meta = restored
    progress = Progress(**meta)
    best = checkpoints.restore('best', states)[0]
    logging.info('resumed at epoch %d', progress.epoch)
  where = jax.jit(step_lib.per_model_where)
  epochs_run, last_save, best_unsaved = 0, time.time(), False
  selecting = select is not None
  if not selecting:
    select = lambda _: (np.full(n, float(progress.epoch)), [{}] * n)   # the latest wins
  if schedule.epochs_per_model:
    if selecting or len(schedule.epochs_per_model) != n:
      raise ValueError(f'epochs_per_model is for runs without selection, one per model ({n}); '
                       f'got {len(schedule.epochs_per_model)} with selection {selecting}')
    if restored is None:
      progress.active = [b > 0 for b in schedule.epochs_per_model]
      progress.done = not any(progress.active)
  elif selecting and restored is None and score_start:
    scores, _ = select(states)
    progress.best_score = [-np.inf if np.isnan(x) else float(x) for x in scores]
    progress.best_epoch, best_unsaved = [-1] * n, True
    logging.info('before training: mean validation score %.4f', float(np.nanmean(scores)))
  while not progress.done:
    epoch, t0 = progress.epoch, time.time()
    states, loss, last_step = _run_epoch(step, states, stream(epoch), np.array(progress.active),
                                         epoch, names, schedule.progress)
    scores, val = select(states)
    improved = _record(progress, epoch, scores, val, loss, last_step, time.time() - t0,
                       schedule.patience)
    if schedule.epochs_per_model:   # a model stops once it has trained its own number of epochs
      progress.active = [a and epoch + 1 < b
                         for a, b in zip(progress.active, schedule.epochs_per_model)]
    if improved.any():
      best = where(sharding.put(improved, _sharding(states)), states, best)
    progress.epoch = epoch + 1
    progress.done = not any(progress.active) or progress.epoch >= schedule.num_epochs
    epochs_run += 1
    stopping = progress.done or epochs_run == schedule.max_epochs_this_run
    best_unsaved |= bool(improved.any())
    # A save costs about as much as a small model's epoch: save on a clock, not every epoch.
    if checkpoints and (stopping or time.time() - last_save >= schedule.checkpoint_every_s):
      if best_unsaved:
        checkpoints.save('best', epoch, best, {'epoch': epoch})
      checkpoints.save('latest', epoch, states, dataclasses.asdict(progress))
      last_save, best_unsaved = time.time(), False
    if on_epoch:
      on_epoch(progress)
    valid = (f'mean validation score {np.nanmean(np.where(np.isfinite(scores), scores, np.nan)):.4f}'
             if selecting else f'epoch {epoch + 1} of {schedule.num_epochs}, no selection')
    logging.info('epoch %d: %d/%d models active, loss %.4f, %s (%.1fs)', epoch,
                 sum(progress.active), n, float(np.nanmean(loss)), valid, time.time() - t0)
    if epochs_run == schedule.max_epochs_this_run:
      break
  return best, progress


def _sharding(states: TrainState):
  return jax.tree.leaves(states)[0].sharding


def _record(progress: Progress, epoch: int, scores: np.ndarray, val: list[dict],
            loss: np.ndarray, step: int, seconds: float, patience: int) -> np.ndarray:
  """Updates history, best scores, patience and activity; returns which models improved."""
  improved = np.zeros(len(scores), bool)
  for i, score in enumerate(scores):
    if not progress.active[i]:
      continue
    score = -np.inf if np.isnan(score) else float(score)  # nan never wins
    progress.history[i].append({'epoch': epoch, 'step': step, 'train_loss': float(loss[i]),
                                **{f'val_{k}': v for k, v in val[i].items()},
                                'val_score': float(score), 'seconds': seconds})
    best = progress.best_score[i]
    if best is None or score > best:  # the first epoch is the best so far, whatever its score
      improved[i] = True
      progress.best_score[i], progress.best_epoch[i], progress.bad_epochs[i] = float(score), epoch, 0
    else:
      progress.bad_epochs[i] += 1
    progress.active[i] = progress.bad_epochs[i] < patience
  return improved


def _run_epoch(step, states, batches, active, epoch: int, names, show: bool):
  """One pass over the batches; raises on a non-finite loss of an active model, with its step."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm(total=len(batches), desc=f'epoch {epoch}', leave=False,
             disable=not show or not sharding.is_writer())
  active_dev = sharding.put(active, _sharding(states))
  pending, total, weight, last_step = [], 0.0, 0.0, 0
  for i, batch in enumerate(batches):
    states, m = step(states, active_dev, batch)
    pending.append(m)
    if len(pending) == FLUSH_EVERY or i == len(batches) - 1:
      for mk in jax.device_get(pending):
        bad = active & ~np.isfinite(mk['loss'])
        if bad.any():
          raise NonFiniteLossError(
              f'non-finite training loss {mk["loss"][bad][0]} at step {mk["step"]} (epoch {epoch}) '
              f'of model {", ".join(names[j] for j in np.flatnonzero(bad))}')
        total += mk['loss'].astype(np.float64) * mk['weight']
        weight += mk['weight'].astype(np.float64)
        last_step = int(mk['step'])
      bar.update(len(pending))
      bar.set_postfix(loss=f'{np.mean(total / np.maximum(weight, 1.0)):.4f}')
      pending = []
  bar.close()
  return states, total / np.maximum(weight, 1.0), last_step
