"""The single-model step (the unit), its lift to stacked models, L2 penalties, one compilation."""

import jax
import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax.data import splits
from cdr_jax.train import engine as engine_lib
from cdr_jax.train import loop
from cdr_jax.train import step as step_lib
from configs import test as test_config


def make_run(c, train_sets=None):
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  train_sets = train_sets(ds, split) if train_sets else [split.train]
  return ds, split, experiment.setup(c, ds, train_sets, np.arange(ds.num_pairs))


def test_step_compiles_once_and_batches_are_sharded():
  c = test_config.get_config()
  _, split, run = make_run(c)
  states, step = run.init(), run.step(jax.random.key(0))
  compiled = run.engine.step._cache_size()  # pylint: disable=protected-access  (cached engine)
  for epoch in range(2):
    for batch in run.stream(epoch):
      states, m = step(states, np.ones(1, bool), batch)
      assert np.isfinite(np.asarray(m['loss'])).all()
  assert run.engine.step._cache_size() - compiled <= 1  # pylint: disable=protected-access
  batch = run.stream(0)[0]
  assert len(batch['idx'].sharding.device_set) == jax.device_count()
  assert int(states.step[0]) == 2 * len(run.stream(0))
  del split


@pytest.mark.parametrize('num_models,fold_map', [(3, 'vmap'), (3, 'loop'), (16, 'loop')])
def test_stacked_step_equals_the_single_model_step(num_models, fold_map):
  """The step of F stacked models (vmapped, or a loop over them inside the step; F = 16 on 8
  devices: a loop over two models on each device) equals, for each model, the plain single-model
  step with its own data view. SGD: Adam's first step is lr * sign(g), which turns float noise in
  mathematically zero gradients (biases feeding BatchNorm) into +-lr; SGD compares the gradients."""
  c = test_config.get_config()
  c.optimizer.name = 'sgd'
  c.lodo.fold_map = fold_map
  rng = np.random.default_rng(0)
  _, _, run = make_run(c, lambda ds, split: [np.sort(rng.choice(split.train, len(split.train) // 2,
                                                                 replace=False))
                                             for _ in range(num_models)])
  assert run.engine.loop == (fold_map == 'loop')
  states = run.init()
  batch = jax.device_get(run.stream(0)[0])
  key = jax.random.key(5)
  host_states, host_data = jax.device_get(states), jax.device_get(run.data)
  stacked, _ = run.engine.step(states, run.data, np.ones(num_models, bool), batch, key)  # donates
  single_step = jax.jit(lambda s, d, b, r: step_lib.train_step(
      s, d, b, r, model=run.engine.model, tx=run.engine.tx, task='regression'))
  for f in sorted({0, 1, num_models - 1}):
    one = jax.tree.map(lambda x: x[f], host_states)  # pylint: disable=cell-var-from-loop
    single, _ = single_step(one, host_data.model(f), batch, jax.random.fold_in(key, 0))
    for x, y in zip(jax.tree.leaves(stacked.params), jax.tree.leaves(single.params)):
      np.testing.assert_allclose(np.asarray(x)[f], np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('fold_map', ['vmap', 'loop'])
def test_stopped_models_keep_their_state(fold_map):
  """Vmapped or in a loop (which steps only the active models), a stopped model keeps its state;
  its metrics are loss nan and weight 0."""
  c = test_config.get_config()
  c.lodo.fold_map = fold_map
  _, split, run = make_run(c, lambda ds, split: [split.train, split.train])
  states = run.init()
  new, m = run.engine.step(jax.tree.map(lambda x: x.copy(), states), run.data,
                           np.array([True, False]), run.stream(0)[0], jax.random.key(0))
  before, after = jax.device_get(states), jax.device_get(new)
  assert int(after.step[0]) == 1 and int(after.step[1]) == 0
  loss, weight = np.asarray(m['loss']), np.asarray(m['weight'])
  assert np.isfinite(loss[0]) and weight[0] > 0 and np.isnan(loss[1]) and weight[1] == 0
  for x, y in zip(jax.tree.leaves(before.params), jax.tree.leaves(after.params)):
    np.testing.assert_array_equal(x[1], y[1])
    assert not np.array_equal(x[0], y[0])
  del split


@pytest.mark.parametrize('module', ['ids', 'drug_linear_term'])
def test_l2_penalises_exactly_the_named_parameters(module):
  """Identity codes (model.id_l2) and the per-drug linear term (model.drug_linear): the penalty is
  lambda / (the model's training pairs) * the squared norm of exactly that module, its intercept
  (the per-drug linear term's) left out, as in ridge."""
  c = test_config.get_config()
  c.model.drug_linear = 1.0
  _, split, run = make_run(c)
  one = jax.tree.map(lambda x: x[0], jax.device_get(run.init()))
  shifted = jax.tree.map(lambda x: x + 0.5, one.params[module])
  one = one.replace(params={**one.params, module: shifted})
  batch = jax.device_get(run.stream(0)[0])
  view = jax.device_get(run.data).model(0)
  loss = lambda l2: step_lib.train_step(one, view, batch, jax.random.key(0), model=run.engine.model,
                                        tx=run.engine.tx, task='regression', l2=l2)[1]['loss']
  penalty = sum(float(np.sum(np.square(x))) for k, x in shifted.items() if k != 'intercept')
  assert module == 'ids' or 'intercept' in shifted
  np.testing.assert_allclose(float(loss(((module, 4.0),))) - float(loss(())),
                             4.0 / len(split.train) * penalty, rtol=1e-4)


def test_batches_cover_the_pool_once_with_padding():
  pool = np.arange(10, 25)
  batches = loop.epoch_batches(pool, 4, seed=0, epoch=1)
  idx = np.concatenate([b['idx'] for b in batches])
  weight = np.concatenate([b['weight'] for b in batches])
  assert len(batches) == 4 and weight.sum() == 15 and weight[-1] == 0
  assert sorted(idx[weight > 0].tolist()) == pool.tolist()
  again = loop.epoch_batches(pool, 4, seed=0, epoch=1)
  assert all(np.array_equal(a['idx'], b['idx']) for a, b in zip(batches, again))
  other = loop.epoch_batches(pool, 4, seed=0, epoch=2)
  assert not all(np.array_equal(a['idx'], b['idx']) for a, b in zip(batches, other))


def test_batch_size_must_divide_devices():
  c = test_config.get_config()
  c.train.batch_size = 63
  if jax.device_count() > 1:
    with pytest.raises(ValueError, match='must be a multiple of the'):
      make_run(c)


def test_fold_map_by_platform_and_checked():
  """'auto': a loop over the models on CPU, vmap on an accelerator; an unknown value is named."""
  c = test_config.get_config()
  assert engine_lib.fold_loop(c) == (jax.default_backend() == 'cpu')
  c.lodo.fold_map = 'vmap'
  assert not engine_lib.fold_loop(c)
  c.lodo.fold_map = 'loop'
  assert engine_lib.fold_loop(c)
  c.lodo.fold_map = 'scan'
  with pytest.raises(ValueError, match="unknown lodo.fold_map 'scan'; choose one of: auto, loop"):
    engine_lib.fold_loop(c)
