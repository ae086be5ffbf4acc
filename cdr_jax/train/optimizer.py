"""The optimizer and the model's L2 penalties, built from the config (once per configuration)."""

import functools

import ml_collections
import optax


def create_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int,
                     batch_size: int) -> optax.GradientTransformation:
  """Adam / AdamW / SGD with an optional schedule, weight decay and gradient clipping.

  The learning rate is `learning_rate` at `base_batch_size` pairs per step, scaled to `batch_size`
  by `lr_scaling` ('none', 'sqrt' or 'linear'; Adam usually wants 'sqrt'). The same configuration
  returns the same object, so the jitted functions keyed on it are reused (every split and every
  LODO chunk of a run shares one compilation).
  """
  if config.schedule == 'constant':  # the schedule does not depend on the run's length
    num_epochs = 0
    if not config.warmup_epochs:
      steps_per_epoch = 0  # nor on the epoch's length: one object for all splits
  return _optimizer(tuple(sorted(config.to_dict().items())), steps_per_epoch, num_epochs,
                    learning_rate(config, batch_size))


def learning_rate(config: ml_collections.ConfigDict, batch_size: int) -> float:
  """The peak learning rate at `batch_size` pairs per step (see `create_optimizer`)."""
  ratio = batch_size / config.base_batch_size
  scale = {'none': 1.0, 'sqrt': ratio ** 0.5, 'linear': ratio}
  if config.lr_scaling not in scale:
    raise ValueError(f'unknown optimizer.lr_scaling {config.lr_scaling!r}; choose none, sqrt or '
                     'linear')
  return float(config.learning_rate * scale[config.lr_scaling])


@functools.lru_cache(maxsize=16)
def _optimizer(items: tuple, steps_per_epoch: int, num_epochs: int,
               lr: float) -> optax.GradientTransformation:
  config = ml_collections.ConfigDict(dict(items))
  total = max(1, steps_per_epoch * num_epochs)
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


def l2_penalties(model_config: ml_collections.ConfigDict) -> tuple[tuple[str, float], ...]:
  """The model's L2 penalties as (parameter module, lambda) pairs.

  `model.id_l2` (identity codes) and `model.drug_linear` (the per-drug linear term) are lambdas of
  a penalty lambda * ||w||^2 on the sum of squared (standardised) errors over a model's training
  pairs, as in matrix factorisation and ridge. The step spreads it over its mean loss as lambda / n
  (n: that model's training pairs, `DeviceData.l2_scale`); for the per-drug linear term this is,
  drug by drug, ridge's objective. The per-line linear term's lambda (`model.line_linear`) is per
  model, `DeviceData.line_l2` (each LODO fold chooses its own).
  """
  m = model_config
  if m.id_l2 and not m.id_embed_dim:
    raise ValueError('model.id_l2 > 0 needs identity codes (model.id_embed_dim > 0)')
  if m.drug_linear < 0:
    raise ValueError(f'model.drug_linear must be >= 0 (0: off), got {m.drug_linear}')
  if m.get('line_linear', 0.0) < 0:
    raise ValueError(f'model.line_linear must be >= 0 (0: off), got {m.line_linear}')
  return tuple((name, float(lam)) for name, lam in (('ids', m.id_l2),
                                                    ('drug_linear_term', m.drug_linear)) if lam)
