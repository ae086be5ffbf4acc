"""Identity codes started from the tuned matrix factorisation (`model.id_init='mf'`)."""

import dataclasses
import json

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax import lodo
from cdr_jax.data import splits
from cdr_jax.eval import classical
from cdr_jax.train import warm_start
from configs import test as test_config


def config(arg=None, **model):
  c = test_config.get_config(arg)
  c.model.id_init = 'mf'
  c.model.update(model)
  return c


@pytest.fixture(scope='module')
def prepared():
  c = config()
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  warmed, init = warm_start.configure(c, ds, split)
  return c, ds, split, warmed, init


def test_untrained_network_predicts_the_factorisation(prepared):
  """Codes from the factorisation and a zero output layer: before any step the network's
  predictions (natural scale, through the model's own predict path) are the factorisation's."""
  _, ds, split, warmed, init = prepared
  run = experiment.setup(warmed, ds, [split.train], split.train)
  states = warm_start.apply(run.init(), init.mf, run.host.y_mean, run.host.y_std)
  pairs = np.concatenate([split.val, split.test])
  got = run.predict(states, [pairs])[0]
  want = init.mf.predict(ds.pair_cell[pairs], ds.pair_drug[pairs])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # Without the warm start the same model predicts something else (the test can fail).
  cold = run.predict(run.init(), [pairs])[0]
  assert np.abs(cold - want).max() > 0.1


def test_rank_and_l2_come_from_the_factorisation(prepared):
  c, ds, split, warmed, init = prepared
  y_std = float(np.asarray(ds.pair_y[split.train], np.float32).std())
  assert warmed.model.id_embed_dim == init.mf.params['rank'] == init.id_embed_dim
  assert warmed.model.id_l2 == pytest.approx(init.mf.params['l2'] / y_std)
  assert c.model.id_embed_dim == test_config.get_config().model.id_embed_dim  # input untouched
  explicit, _ = warm_start.configure(config(id_l2=3.0), ds, split)
  assert explicit.model.id_l2 == 3.0


def test_choices_never_read_test_labels(prepared):
  _, ds, split, _, init = prepared
  y = ds.pair_y.copy()
  y[split.test] = np.random.default_rng(0).permutation(y[split.test]) + 5.0
  scrambled = dataclasses.replace(ds, pair_y=y)
  mf = warm_start.fit(scrambled, split, 0)
  assert mf.params['val'] == init.mf.params['val']
  np.testing.assert_array_equal(mf.factors['line'], init.mf.factors['line'])


def test_code_params_reproduce_scores():
  """By hand: mu 1, one line (code [2], bias 0.5), one drug (code [3], bias -1): y = 6.5;
  standardised with mean 0.5 and std 4 the codes give (6.5 - 0.5) / 4 = 1.5."""
  mf = classical.Predictor('matrix_factorization', np.array([[6.5]]), {},
                           factors={'mu': 1.0, 'line': np.array([[2.0, 0.5]]),
                                    'drug': np.array([[3.0, -1.0]])})
  p = warm_start.code_params(mf, 0.5, 4.0)
  z = p['cell_vec'] @ p['drug_vec'].T + p['cell_bias'][:, None] + p['drug_bias'][None]
  assert z.item() == pytest.approx(1.5)
  with pytest.raises(ValueError, match='no factors'):
    warm_start.code_params(dataclasses.replace(mf, factors=None), 0.0, 1.0)


def test_bad_settings_are_refused(tmp_path):
  with pytest.raises(ValueError, match="unknown model.id_init 'svd'"):
    warm_start.check(config(id_init='svd').model)
  with pytest.raises(ValueError, match='id_embed_dim=0 turns the codes off'):
    warm_start.check(config(id_embed_dim=0).model)
  with pytest.raises(ValueError, match='for single runs'):
    lodo.run_sweep(config('lodo'), tmp_path)


def test_run_reuses_the_factorisation(prepared, tmp_path):
  """End to end: the run records the warm start, its tuned_matrix_factorization is the warm
  start's fit (not refitted) and equals a fresh classical fit."""
  c, ds, split, _, init = prepared
  c.train.num_epochs = c.train.patience = 2
  summary = experiment.train_and_evaluate(c, tmp_path)
  metrics = json.loads((tmp_path / 'metrics.json').read_text())
  assert metrics['identity_init']['id_embed_dim'] == init.mf.params['rank']
  assert metrics['classical']['matrix_factorization']['prefit'] is True
  written = json.loads((tmp_path / 'config.json').read_text())
  assert written['model']['id_embed_dim'] == init.mf.params['rank']
  fresh, _ = experiment.fit_classical(ds, split, experiment.standardized_features(
      ds, np.unique(ds.pair_cell[split.train]), np.unique(ds.pair_drug[split.train]), c)[0],
      c, split.test)
  np.testing.assert_allclose(summary['test']['tuned_matrix_factorization']['pcc'],
                             _pcc(fresh['matrix_factorization'], ds.pair_y[split.test]), rtol=1e-5)


def _pcc(a, b):
  return float(np.corrcoef(a, b)[0, 1])
