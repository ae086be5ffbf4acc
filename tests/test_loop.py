"""The one loop on a toy step: per-model selection, patience, resume, non-finite losses."""

import jax.numpy as jnp
import numpy as np
import pytest

from cdr_jax.train import checkpoint
from cdr_jax.train import loop
from cdr_jax.train.state import TrainState

# Validation scores per epoch (rows) and model (columns): model 0 peaks at epoch 1 and stops after
# patience 2 (epochs 2 and 3 are worse); model 1 keeps improving; model 2 is nan at epoch 0.
SCORES = np.array([[0.1, 0.1, np.nan], [0.5, 0.2, 0.3], [0.4, 0.3, 0.2], [0.3, 0.4, 0.1],
                   [0.9, 0.5, 0.0], [0.9, 0.6, 0.0]])


def toy_states(n=3):
  return TrainState(jnp.zeros(n, jnp.int32), {'w': jnp.zeros(n)}, {}, {})


def toy_step(states, active, batch):
  """Adds the batch value to the weights of active models; loss = the batch value."""
  grow = jnp.where(active, batch, 0.0)
  new = states.replace(step=states.step + active, params={'w': states.params['w'] + grow})
  return new, {'loss': jnp.full(active.shape, batch), 'weight': jnp.ones(active.shape),
               'step': jnp.max(new.step)}


def toy_select(states):
  epoch = int(np.max(np.asarray(states.step))) // 2 - 1   # two steps per epoch
  return SCORES[epoch], [{'score': float(s)} for s in SCORES[epoch]]


def stream(epoch):
  return [jnp.float32(1.0), jnp.float32(1.0)]


def test_each_model_keeps_its_best_and_stops_on_its_patience():
  schedule = loop.Schedule(num_epochs=6, patience=2)
  best, progress = loop.fit(toy_step, toy_states(), stream, toy_select, None, schedule)
  assert progress.done and progress.epoch == 6
  assert progress.best_epoch == [1, 5, 1]   # nan at epoch 0 is the best only until a number
  assert progress.active == [False, True, False]
  assert [len(h) for h in progress.history] == [4, 6, 4]
  # Weights grow by 2 per epoch trained: the best state of model 0 is the one after epoch 1.
  np.testing.assert_array_equal(np.asarray(best.params['w']), [4.0, 12.0, 4.0])
  row = progress.history[0][1]
  assert row == {'epoch': 1, 'step': 4, 'train_loss': 1.0, 'val_score': 0.5,
                 'seconds': row['seconds']}


def test_resumed_run_ends_as_uninterrupted(tmp_path):
  full_best, full = loop.fit(toy_step, toy_states(), stream, toy_select, None,
                             loop.Schedule(num_epochs=6, patience=2))
  for budget in (2, 3, 0):  # two interrupted invocations, then one to the end
    ckpts = checkpoint.Checkpoints(tmp_path)
    best, progress = loop.fit(toy_step, toy_states(), stream, toy_select, ckpts,
                              loop.Schedule(num_epochs=6, patience=2, max_epochs_this_run=budget))
    ckpts.close()
    assert progress.done == (budget == 0)
  assert progress.best_epoch == full.best_epoch and progress.active == full.active
  np.testing.assert_array_equal(np.asarray(best.params['w']), np.asarray(full_best.params['w']))
  assert [[r['epoch'] for r in h] for h in progress.history] == [
      [r['epoch'] for r in h] for h in full.history]


def test_non_finite_loss_names_step_and_model():
  def bad_step(states, active, batch):
    new, m = toy_step(states, active, batch)
    loss = jnp.where(jnp.arange(3) == 1, jnp.where(new.step == 3, jnp.inf, 1.0), 1.0)
    return new, {**m, 'loss': loss}
  with pytest.raises(loop.NonFiniteLossError, match=r'at step 3 \(epoch 1\) of model drug-b'):
    loop.fit(bad_step, toy_states(), stream, toy_select, None, loop.Schedule(6, 2),
             names=['drug-a', 'drug-b', 'drug-c'])


def test_stopped_model_with_non_finite_loss_is_ignored():
  """A stopped model's loss is not checked (its state no longer changes)."""
  def step(states, active, batch):
    new, m = toy_step(states, active, batch)
    return new, {**m, 'loss': jnp.where(active, 1.0, jnp.nan)}
  _, progress = loop.fit(step, toy_states(), stream, toy_select, None, loop.Schedule(6, 2))
  assert progress.done


class CountingCheckpoints:
  """Records which (kind, epoch) the loop saves, and restores nothing."""

  def __init__(self):
    self.saved = []

  def save(self, which, step, state, meta):
    self.saved.append((which, step))

  def restore(self, which, like):
    return None


@pytest.mark.parametrize('every, budget, expected', [
    # model 1 improves every epoch, so every epoch has a new best
    (0.0, 0, [(kind, e) for e in range(6) for kind in ('best', 'latest')]),
    (3600.0, 0, [('best', 5), ('latest', 5)]),     # on the clock: only when the loop ends
    (3600.0, 3, [('best', 2), ('latest', 2)]),     # or when this invocation's budget is spent
])
def test_checkpoints_saved_on_the_clock_and_when_stopping(every, budget, expected):
  ckpts = CountingCheckpoints()
  loop.fit(toy_step, toy_states(), stream, toy_select, ckpts,
           loop.Schedule(num_epochs=6, patience=2, max_epochs_this_run=budget,
                         checkpoint_every_s=every))
  assert ckpts.saved == expected


def test_scored_start_stays_best_until_beaten():
  """With score_start the initial states (scores 0.45, 0.55, 0.25 here) compete: model 0 is beaten
  at epoch 4 (0.9), model 1 never within its patience (0.1-0.5 < 0.55), model 2 by epoch 1 (0.3)."""
  start = np.array([0.45, 0.55, 0.25])

  def select(states):
    if int(np.max(np.asarray(states.step))) == 0:
      return start, [{'score': float(s)} for s in start]
    return toy_select(states)

  best, progress = loop.fit(toy_step, toy_states(), stream, select, None,
                            loop.Schedule(num_epochs=6, patience=4), score_start=True)
  assert progress.best_epoch == [4, -1, 1]
  assert progress.best_score[1] == 0.55 and len(progress.history[1]) == 4  # no row for the start
  np.testing.assert_array_equal(np.asarray(best.params['w']), [10.0, 0.0, 4.0])
  _, plain = loop.fit(toy_step, toy_states(), stream, select, None,
                      loop.Schedule(num_epochs=6, patience=4))
  assert plain.best_epoch[1] == 5   # without it: the best epoch, below the start


def test_without_selection_the_last_epoch_is_kept(tmp_path):
  """select=None (a refit): every model trains every epoch and the states returned are the last,
  also when the run is resumed from its checkpoints."""
  best, progress = loop.fit(toy_step, toy_states(), stream, None, None,
                            loop.Schedule(num_epochs=4, patience=1))
  assert progress.done and progress.active == [True] * 3 and progress.best_epoch == [3] * 3
  np.testing.assert_array_equal(np.asarray(best.params['w']), [8.0] * 3)
  for budget in (3, 0):
    ckpts = checkpoint.Checkpoints(tmp_path)
    best, progress = loop.fit(toy_step, toy_states(), stream, None, ckpts,
                              loop.Schedule(num_epochs=4, patience=1, max_epochs_this_run=budget))
    ckpts.close()
  np.testing.assert_array_equal(np.asarray(best.params['w']), [8.0] * 3)


def test_epochs_per_model_without_selection(tmp_path):
  """A refit's per-model epoch counts (0, 3, 1): model 0 keeps its start, model 2 stops after one
  epoch; resumed from checkpoints it ends the same. With selection, or one count per model
  missing, it is refused; all zero trains nothing."""
  schedule = loop.Schedule(num_epochs=3, patience=1, epochs_per_model=(0, 3, 1))
  best, progress = loop.fit(toy_step, toy_states(), stream, None, None, schedule)
  np.testing.assert_array_equal(np.asarray(best.params['w']), [0.0, 6.0, 2.0])
  assert progress.done and [len(h) for h in progress.history] == [0, 3, 1]
  for budget in (2, 0):
    ckpts = checkpoint.Checkpoints(tmp_path)
    best, progress = loop.fit(toy_step, toy_states(), stream, None, ckpts,
                              loop.Schedule(num_epochs=3, patience=1, max_epochs_this_run=budget,
                                            epochs_per_model=(0, 3, 1)))
    ckpts.close()
    assert progress.done == (budget == 0)
  np.testing.assert_array_equal(np.asarray(best.params['w']), [0.0, 6.0, 2.0])
  none, progress = loop.fit(toy_step, toy_states(), stream, None, None,
                            loop.Schedule(num_epochs=1, patience=1, epochs_per_model=(0, 0, 0)))
  assert progress.done and progress.epoch == 0
  np.testing.assert_array_equal(np.asarray(none.params['w']), [0.0] * 3)
  with pytest.raises(ValueError, match='without selection'):
    loop.fit(toy_step, toy_states(), stream, toy_select, None, schedule)
  with pytest.raises(ValueError, match='one per model'):
    loop.fit(toy_step, toy_states(), stream, None, None,
             loop.Schedule(num_epochs=3, patience=1, epochs_per_model=(1, 1)))
