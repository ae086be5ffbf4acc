"""The single-model training step (the unit that is tested) and its lift to F stacked models.

`train_step` trains one model on a batch of pair indices shared by all models; the model's own
weights are the batch weights times its `train_mask`. `over_models` lifts it (and `encode`, `fuse`)
to F stacked models in one program: `jax.vmap` over the leading model axis, or a loop over the
models inside the program, or, for F = 1, the plain function on the one model (bit-identical to a
single-model run, without batching overhead).

The loop is for CPUs (`lodo.fold_map`): XLA hoists the work every model shares (the dropout masks'
random bits, the batch's gathers, the graph's normalisation) out of the loop and runs it once,
while each model's activations stay in cache; vmapped, the K models' activations leave the cache
and their batched reductions, gathers and scatters run slower than K plain ones (README,
"Benchmarks"). The training step's loop visits only the models still training.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from cdr_jax.train.state import DeviceData, MODEL_AXES, TrainState


def pair_loss(out: jax.Array, data: DeviceData, idx: jax.Array, task: str):
  """(per-pair loss, per-pair validity): squared error on standardised ln IC50, or BCE on logits
  against the sensitive/resistant label (pairs without a label are not valid)."""
  if task == 'regression':
    target = (data.pair_y[idx] - data.y_mean) / data.y_std
    return jnp.square(out - target), jnp.ones_like(out)
  label = data.pair_label[idx]
  loss = optax.sigmoid_binary_cross_entropy(out, jnp.maximum(label, 0.0))
  return loss, (label >= 0).astype(out.dtype)


def train_step(state: TrainState, data: DeviceData, batch: dict, rng: jax.Array, *, model, tx,
               task: str, l2: tuple[tuple[str, float], ...] = ()) -> tuple[TrainState, dict]:
  """One optimisation step of one model (`data`: its single-model view).

  `batch`: pair indices `idx` and padding weights `weight` (0 = padding); `rng`: this step's dropout
  key. `l2`: (parameter module, lambda) pairs, each adding lambda / n * the squared norm of that
  module's parameters other than an `intercept` (see `optimizer.l2_penalties`); the per-line linear
  term's lambda is the model's own, `data.line_l2`.
  """
  idx = batch['idx']
  weight = batch['weight'] * data.train_mask[idx].astype(jnp.float32)
  cell_idx, drug_idx = data.pair_cell[idx], data.pair_drug[idx]

  def loss_fn(params):
    out, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, data.graphs, data.cell_x, cell_idx,
        drug_idx, weight > 0, train=True, rngs={'dropout': rng}, mutable=['batch_stats'],
        cell_active=data.cell_active, drug_active=data.drug_active, drug_x=data.drug_x,
        drug_k=data.drug_k)
    loss, valid = pair_loss(out, data, idx, task)
    w = weight * valid
    loss = (loss * w).sum() / jnp.maximum(w.sum(), 1.0)
    line = (('line_linear_term', data.line_l2),) if 'line_linear_term' in params else ()
    for name, lam in l2 + line:  # intercepts are not penalised (as in ridge)
      penalised = {k: v for k, v in params[name].items() if k != 'intercept'}
      loss += lam * data.l2_scale * sum(jnp.sum(jnp.square(x))
                                        for x in jax.tree.leaves(penalised))
    return loss, updates['batch_stats']

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new = TrainState(state.step + 1, params, batch_stats, opt_state)
  return new, {'loss': loss, 'weight': weight.sum()}


def encode(state: TrainState, data: DeviceData, *, model):
  """Inference codes of every drug and cell line (computed once per evaluation)."""
  return model.apply({'params': state.params, 'batch_stats': state.batch_stats}, data.graphs,
                     data.cell_x, train=False, drug_x=data.drug_x, drug_k=data.drug_k,
                     method='encode')


def fuse(state: TrainState, codes, data: DeviceData, idx: jax.Array, *, model) -> jax.Array:
  """Model outputs (standardised ln IC50 or logits) for a batch of pair indices."""
  return model.apply({'params': state.params, 'batch_stats': state.batch_stats}, codes,
                     data.pair_cell[idx], data.pair_drug[idx], jnp.ones(idx.shape, bool),
                     train=False, method='fuse')


def _parts(in_axes: tuple, args: tuple) -> tuple[list, list]:
  """(per-model parts, shared parts) of `args` by `in_axes`; each holds None where the other holds
  the value."""
  part = lambda per: [jax.tree.map(lambda ax, x: x if (ax is None) != per else None, axes, arg,
                                   is_leaf=_is_none) for axes, arg in zip(in_axes, args)]
  return part(True), part(False)


def _merge(in_axes: tuple, per_model: list, shared: list) -> list:
  return [jax.tree.map(lambda ax, a, b: b if ax is None else a, axes, pa, sa, is_leaf=_is_none)
          for axes, pa, sa in zip(in_axes, per_model, shared)]


def _is_none(a) -> bool:
  return a is None


def _by_blocks(fn, args: tuple, groups: int):
  """`fn(*args)` on the whole model axis, or with `groups` > 1 vmapped over that many contiguous
  blocks of it (one per device of the mesh's model axis: each device runs its own block)."""
  if groups == 1:
    return fn(*args)
  blocks = jax.tree.map(lambda x: x.reshape((groups, -1) + x.shape[1:]), args)
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), jax.vmap(fn)(*blocks))


def over_models(fn, in_axes: tuple, single: bool, loop: bool = False, groups: int = 1):
  """`fn` on stacked models (leading model axis 0 of the arguments `in_axes` marks; None = shared,
  prefix trees allowed).

  single: `fn` on model 0, the model axis added back to its outputs. Otherwise `jax.vmap` over the
  model axis, or with `loop` a loop over the models inside the program (`jax.lax.map`; `groups`:
  see `_by_blocks`).
  """
  if single:
    def call(*args):
      first = [jax.tree.map(lambda ax, x: x if ax is None else jax.tree.map(lambda a: a[0], x),
                            axes, arg, is_leaf=_is_none)
               for axes, arg in zip(in_axes, args)]
      return jax.tree.map(lambda x: x[None], fn(*first))
    return call
  if not loop:
    return jax.vmap(fn, in_axes=in_axes)

  def looped(*args):
    per_model, shared = _parts(in_axes, args)
    one = lambda per: fn(*_merge(in_axes, per, shared))
    return _by_blocks(lambda *per: jax.lax.map(one, per), tuple(per_model), groups)
  return looped


def _step_active_models(step, states: TrainState, data: DeviceData, active: jax.Array,
                        batch: dict, key: jax.Array, groups: int):
  """`step` on the active models only: a loop whose trip count is their number. Its body has no
  branch, so XLA still hoists the work every model shares out of it (a `lax.cond` around the step
  in a loop over all models kept it from doing so: 61 against 43 ms per fold and step at K = 8)."""
  (per_data,), (shared_data,) = _parts((MODEL_AXES,), (data,))

  def block(states, per_data, on):
    order = jnp.argsort(jnp.logical_not(on))   # the active models first
    block_data = _merge((MODEL_AXES,), [per_data], [shared_data])[0]

    def body(i, carry):
      states, loss, weight = carry
      j = order[i]
      take = lambda x: jax.lax.dynamic_index_in_dim(x, j, keepdims=False)
      new, m = step(jax.tree.map(take, states), block_data.model(j), batch, key)
      put = lambda x, y: jax.lax.dynamic_update_index_in_dim(x, y, j, 0)
      return jax.tree.map(put, states, new), put(loss, m['loss']), put(weight, m['weight'])

    init = (states, jnp.full(on.shape, jnp.nan, jnp.float32), jnp.zeros(on.shape, jnp.float32))
    return jax.lax.fori_loop(0, jnp.sum(on), body, init)

  new, loss, weight = _by_blocks(block, (states, per_data, active), groups)
  return new, {'loss': loss, 'weight': weight}


def stacked_step(states: TrainState, data: DeviceData, active: jax.Array, batch: dict,
                 rng: jax.Array, *, model, tx, task: str, l2, single: bool, loop: bool = False,
                 groups: int = 1):
  """`train_step` on F stacked models; models not `active` (stopped early) keep their state, and
  their metrics are loss nan, weight 0. Vmapped, a stopped model's step is computed and discarded;
  in a loop (`loop`, the CPU default) only the active models are stepped.

  Every active model is at the same step, so this step's dropout key (`rng` folded with the step)
  is one key shared by all models: the masks are drawn once, not once per model.
  """
  key = jax.random.fold_in(rng, jnp.max(states.step))
  step = functools.partial(train_step, model=model, tx=tx, task=task, l2=l2)
  if single:  # a single model is never stepped once stopped
    new, metrics = over_models(step, (0, MODEL_AXES, None, None), True)(states, data, batch, key)
  elif loop:
    new, metrics = _step_active_models(step, states, data, active, batch, key, groups)
  else:
    new, metrics = jax.vmap(step, in_axes=(0, MODEL_AXES, None, None))(states, data, batch, key)
    metrics = {'loss': jnp.where(active, metrics['loss'], jnp.nan),
               'weight': jnp.where(active, metrics['weight'], 0.0)}
    new = per_model_where(active, new, states)
  metrics['step'] = jnp.max(states.step) + 1   # the step just taken by every active model
  return new, metrics


def per_model_where(mask: jax.Array, new, old):
  """Per model (leading axis of every leaf): `new` where `mask`, else `old`."""
  pick = lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(pick, new, old)
