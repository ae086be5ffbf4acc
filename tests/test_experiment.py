"""One training run end to end on the tiny synthetic config: outputs, resume after kill,
determinism, 1 and 8 devices, leaky selection, classification, predictions from the checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax.data import splits
from configs import test as test_config

EPOCHS = 4


def config(arg=None, **train_overrides):
  c = test_config.get_config(arg)
  c.train.num_epochs = EPOCHS
  c.train.patience = EPOCHS
  c.train.update(train_overrides)
  return c


def model_metrics(workdir):
  return json.loads((workdir / 'metrics.json').read_text())['test']['model']


def launch(workdir, *extra, devices=None, wait=True):
  env = dict(os.environ)
  if devices:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  cmd = [sys.executable, 'launch/train.py', '--config=configs/test.py', f'--workdir={workdir}',
         f'--config.train.num_epochs={EPOCHS}', f'--config.train.patience={EPOCHS}', *extra]
  if not wait:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  out = subprocess.run(cmd, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted in-process run (whatever device count this test process has)."""
  workdir = tmp_path_factory.mktemp('reference')
  summary = experiment.train_and_evaluate(config(), workdir)
  return workdir, summary


def test_outputs_beside_baselines(reference):
  workdir, summary = reference
  for name in ('config.json', 'history.csv', 'metrics.json', 'predictions.csv', 'per_drug.csv',
               'per_cell.csv', 'per_type.csv', 'summary.md'):
    assert (workdir / name).is_file(), name
  assert list((workdir / 'tb').iterdir()), 'no TensorBoard event file'
  assert (workdir / 'checkpoints/latest').is_dir() and (workdir / 'checkpoints/best').is_dir()
  test = summary['test']
  tuned = {f'tuned_{k}' for k in ('additive', 'matrix_factorization', 'item_knn', 'user_knn',
                                  'item_knn_additive', 'user_knn_additive',
                                  'user_knn_after_item_knn', 'item_knn_after_cascade',
                                  'ridge_per_drug',
                                  'kernel_ridge', 'blend', 'drug_blend')}
  assert set(test) == {'model', 'global_mean', 'drug_mean', 'cell_mean', 'additive',
                       'type_drug_mean', 'matrix_factorization', 'ridge_per_drug', 'stack',
                       *tuned}
  assert set(summary['classical']) == {k[6:] for k in tuned} | {'stack'}
  assert summary['classical']['stack']['weights'].keys() >= {'model', 'matrix_factorization'}
  for m in test.values():
    assert {'pcc', 'spearman', 'rmse', 'r2', 'per_drug_pcc', 'per_cell_pcc', 'per_type_pcc'} <= set(m)
  assert summary['selection'] == {'select_on': 'val', 'metric': 'pcc', 'leaky': False,
                                  'best_epoch': summary['selection']['best_epoch'],
                                  'epochs_trained': EPOCHS}
  history = (workdir / 'history.csv').read_text().splitlines()
  assert history[0].startswith('epoch,step,train_loss,val_pcc') and len(history) == EPOCHS + 1
  rows = (workdir / 'predictions.csv').read_text().splitlines()
  assert rows[0] == 'cell_id,drug_id,cancer_type,observed,predicted,screen'
  assert len(rows) - 1 == summary['split']['test']
  assert '| matrix_factorization |' in (workdir / 'summary.md').read_text()


def test_deterministic_given_seed(reference, tmp_path):
  experiment.train_and_evaluate(config(), tmp_path)
  assert model_metrics(tmp_path) == model_metrics(reference[0])


def test_resume_after_interruption_matches_uninterrupted(reference, tmp_path):
  first = experiment.train_and_evaluate(config(max_epochs_this_run=1), tmp_path)
  assert first == {'interrupted': True, 'epoch': 1}
  second = experiment.train_and_evaluate(config(max_epochs_this_run=2), tmp_path)
  assert second == {'interrupted': True, 'epoch': 3}
  experiment.train_and_evaluate(config(), tmp_path)
  assert model_metrics(tmp_path) == model_metrics(reference[0])
  assert len((tmp_path / 'history.csv').read_text().splitlines()) == EPOCHS + 1


def test_killed_run_resumes_with_same_command(reference, tmp_path):
  proc = launch(tmp_path, wait=False)
  history = tmp_path / 'history.csv'
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    if history.exists() and len(history.read_text().splitlines()) >= 2:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / 'metrics.json').exists(), 'run finished before it could be killed'
  launch(tmp_path)
  got, ref = model_metrics(tmp_path), model_metrics(reference[0])
  for k in ('pcc', 'spearman', 'rmse'):
    assert got[k] == pytest.approx(ref[k], abs=1e-5)


def test_one_and_eight_devices_agree(reference, tmp_path):
  other = 8 if jax.device_count() == 1 else 1
  launch(tmp_path, devices=other)
  got, ref = model_metrics(tmp_path), model_metrics(reference[0])
  for k in ('pcc', 'spearman', 'rmse', 'r2'):
    assert got[k] == pytest.approx(ref[k], abs=2e-3), k


def test_selection_on_test_is_reported_leaky(tmp_path):
  summary = experiment.train_and_evaluate(config(select_on='test', num_epochs=2), tmp_path)
  assert summary['selection']['leaky'] is True
  assert 'Leaky' in (tmp_path / 'summary.md').read_text()


def test_classification_task(tmp_path):
  summary = experiment.train_and_evaluate(config('classification', num_epochs=2), tmp_path)
  model = summary['test']['model']
  assert 0.0 <= model['auroc'] <= 1.0 and 0.0 <= model['auprc'] <= 1.0
  assert 'additive' in summary['test']
  assert 'label' in (tmp_path / 'predictions.csv').read_text().splitlines()[0]


def test_predict_from_checkpoint(reference, tmp_path):
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  from cdr_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  workdir, _ = reference
  first = (workdir / 'predictions.csv').read_text().splitlines()[1].split(',')
  rows = predict.predict(workdir, [(first[0], first[1])],
                         new_drugs=[('aspirin', 'CC(=O)Oc1ccccc1C(=O)O')])
  assert rows[0]['predicted'] == pytest.approx(float(first[4]), abs=1e-4)
  new = [r for r in rows if r['drug_id'] == 'aspirin']
  assert len(new) == config().data.num_cells and np.isfinite([r['predicted'] for r in new]).all()
  with pytest.raises(DataError, match="unknown cell id 'ACH-000000'"):
    predict.predict(workdir, [('ACH-000000', first[1])])
  with pytest.raises(DataError, match='invalid SMILES for drug bad'):
    predict.predict(workdir, [], new_drugs=[('bad', 'C1CC')])


def test_drug_linear_trains_and_predicts_new_drugs(tmp_path):
  """The per-drug linear term learns (non-zero weights after training) and a new drug, which has
  no column of its own, gets a zero one: the prediction without the term."""
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  c = config(num_epochs=2)
  c.model.drug_linear = 10.0
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  run = experiment.setup(c, ds, [split.train], split.train)
  states, step = run.init(), run.step(jax.random.key(0))
  for batch in run.stream(0):
    states, _ = step(states, np.ones(1, bool), batch)
  w = np.asarray(states.params['drug_linear_term']['kernel'])
  assert np.abs(w).max() > 0  # it starts at zero
  summary = experiment.train_and_evaluate(c, tmp_path)
  assert np.isfinite(summary['test']['model']['pcc'])
  rows = predict.predict(tmp_path, [], new_drugs=[('aspirin', 'CC(=O)Oc1ccccc1C(=O)O')])
  assert len(rows) == c.data.num_cells and np.isfinite([r['predicted'] for r in rows]).all()
  params = predict._pad_per_drug_params(  # pylint: disable=protected-access
      {'drug_linear_term': {'kernel': np.ones((3, 2), np.float32),
                            'intercept': np.ones(2, np.float32)}}, 2)
  np.testing.assert_array_equal(params['drug_linear_term']['kernel'][:, 2:], 0.0)
  np.testing.assert_array_equal(params['drug_linear_term']['intercept'], [1, 1, 0, 0])


def test_full_batch_takes_one_step_per_epoch(tmp_path):
  c = config(num_epochs=2, batch_size=0)
  c.optimizer.lr_scaling, c.optimizer.warmup_epochs = 'sqrt', 1.0
  summary = experiment.train_and_evaluate(c, tmp_path)
  steps = [int(line.split(',')[1]) for line in
           (tmp_path / 'history.csv').read_text().splitlines()[1:]]
  assert steps == [1, 2] and np.isfinite(summary['test']['model']['pcc'])
