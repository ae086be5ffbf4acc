"""Optimizer factory (cached per configuration) and the model's L2 penalties."""

import pytest

from cdr_jax.train import optimizer
from configs import test as test_config


def test_same_configuration_gives_the_same_optimizer():
  c = test_config.get_config()
  a = optimizer.create_optimizer(c.optimizer, 10, 5, 64)
  assert optimizer.create_optimizer(c.optimizer, 10, 5, 64) is a   # jitted functions reuse it
  assert optimizer.create_optimizer(c.optimizer, 11, 5, 64) is a    # a constant schedule: any split
  c.optimizer.warmup_epochs = 2.0  # warm-up: its steps depend on the epoch's length, not the run's
  w = optimizer.create_optimizer(c.optimizer, 10, 5, 64)
  assert w is not a and optimizer.create_optimizer(c.optimizer, 10, 1, 64) is w
  assert optimizer.create_optimizer(c.optimizer, 11, 5, 64) is not w
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.schedule = 'cosine'
  b = optimizer.create_optimizer(c.optimizer, 10, 5, 64)
  assert b is not a and optimizer.create_optimizer(c.optimizer, 11, 5, 64) is not b


@pytest.mark.parametrize('scaling,expected', [('none', 1e-3), ('sqrt', 4e-3), ('linear', 16e-3)])
def test_learning_rate_scales_with_the_batch(scaling, expected):
  c = test_config.get_config()
  c.optimizer.learning_rate, c.optimizer.base_batch_size = 1e-3, 2048
  c.optimizer.lr_scaling = scaling
  assert optimizer.learning_rate(c.optimizer, 32768) == pytest.approx(expected)
  c.optimizer.lr_scaling = 'cube'
  with pytest.raises(ValueError, match="unknown optimizer.lr_scaling 'cube'"):
    optimizer.learning_rate(c.optimizer, 2048)


@pytest.mark.parametrize('field,value,message', [
    ('name', 'rmsprop', "unknown optimizer 'rmsprop'; choose one of: adam, adamw, sgd"),
    ('schedule', 'linear', "unknown schedule 'linear'; choose constant or cosine")])
def test_unknown_choices_are_named(field, value, message):
  c = test_config.get_config()
  c.optimizer[field] = value
  with pytest.raises(ValueError, match=message):
    optimizer.create_optimizer(c.optimizer, 10, 5, 64)


def test_l2_penalties_are_lambdas_of_the_named_modules():
  c = test_config.get_config()
  assert not optimizer.l2_penalties(c.model)
  c.model.id_l2, c.model.drug_linear = 2.0, 1000.0
  assert optimizer.l2_penalties(c.model) == (('ids', 2.0), ('drug_linear_term', 1000.0))
  c.model.id_embed_dim = 0
  with pytest.raises(ValueError, match='id_embed_dim'):
    optimizer.l2_penalties(c.model)
  c.model.id_l2, c.model.drug_linear = 0.0, -1.0
  with pytest.raises(ValueError, match='drug_linear must be >= 0'):
    optimizer.l2_penalties(c.model)
