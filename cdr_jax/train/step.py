"""The single-model training step (the unit that is tested) and its lift to F stacked models.

`train_step` trains one model on a batch of pair indices shared by all models; the model's own
weights are the batch weights times its `train_mask`. `over_models` lifts it (and `encode`, `fuse`)
to F stacked models in one program: `jax.vmap` over the leading model axis, or a loop over the
models inside the program (`jax.lax.map`, `width` of them vmapped per iteration), or, for F = 1, the
plain function on the one model (bit-identical to a single-model run, without batching overhead).

The loop is for CPUs (`lodo.vmap_width`): the work every model shares (the batch's gathers, the
dropout masks, the graph's normalisation) is computed once, outside the loop, while each model's
activations stay in cache; vmapped, the K models' activations leave the cache and each batched
gather or scatter costs more than K plain ones (README, "Benchmarks").
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


def over_models(fn, in_axes: tuple, single: bool, width: int = 0, groups: int = 1):
  """`fn` on stacked models (leading model axis 0 of the arguments `in_axes` marks; None = shared,
  prefix trees allowed).

  single: `fn` on model 0, the model axis added back to its outputs. Otherwise, width 0: `jax.vmap`
  over the model axis; width w > 0: a loop over the models (`jax.lax.map`), w models vmapped per
  iteration. `groups` > 1 (the devices of the mesh's model axis) splits the models into that many
  contiguous blocks, vmapped over the blocks (each device runs its own block's loop).
  """
  is_none = lambda a: a is None
  if single:
    def call(*args):
      first = [jax.tree.map(lambda ax, x: x if ax is None else jax.tree.map(lambda a: a[0], x),
                            axes, arg, is_leaf=is_none)
               for axes, arg in zip(in_axes, args)]
      return jax.tree.map(lambda x: x[None], fn(*first))
    return call
  if not width:
    return jax.vmap(fn, in_axes=in_axes)

  def looped(*args):
    part = lambda per: [jax.tree.map(lambda ax, x: x if (ax is None) != per else None, axes, arg,
                                     is_leaf=is_none) for axes, arg in zip(in_axes, args)]
    per_model, shared = part(True), part(False)
    one = lambda p: fn(*[jax.tree.map(lambda ax, a, b: b if ax is None else a, axes, pa, sa,
                                      is_leaf=is_none)
                         for axes, pa, sa in zip(in_axes, p, shared)])
    loop = lambda p: jax.lax.map(one, p, batch_size=width if width > 1 else None)
    if groups == 1:
      return loop(per_model)
    blocks = jax.tree.map(lambda x: x.reshape((groups, -1) + x.shape[1:]), per_model)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), jax.vmap(loop)(blocks))
  return looped


def stacked_step(states: TrainState, data: DeviceData, active: jax.Array, batch: dict,
                 rng: jax.Array, *, model, tx, task: str, l2, single: bool, width: int = 0,
                 groups: int = 1):
  """`train_step` on F stacked models (`over_models`); models not `active` (stopped early) keep
  their state, and their metrics are loss nan, weight 0.

  Every active model is at the same step, so this step's dropout key (`rng` folded with the step)
  is one key shared by all models: the masks are drawn once, not once per model. A stopped model's
  step is computed and discarded, not skipped: in the loop (`width` > 0) a `lax.cond` around the
  step would keep XLA from hoisting the models' shared work out of the loop, which costs more
  (43 against 61 ms per fold and step at K = 8, `bench/lodo_step.py`) than stopped folds do.
  """
  key = jax.random.fold_in(rng, jnp.max(states.step))
  step = functools.partial(train_step, model=model, tx=tx, task=task, l2=l2)
  new, metrics = over_models(step, (0, MODEL_AXES, None, None), single, width, groups)(
      states, data, batch, key)
  metrics['step'] = jnp.max(states.step) + 1   # the step just taken by every active model
  if single:  # a single model is never stepped once stopped
    return new, metrics
  metrics['loss'] = jnp.where(active, metrics['loss'], jnp.nan)
  metrics['weight'] = jnp.where(active, metrics['weight'], 0.0)
  return per_model_where(active, new, states), metrics


def per_model_where(mask: jax.Array, new, old):
  """Per model (leading axis of every leaf): `new` where `mask`, else `old`."""
  pick = lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(pick, new, old)
