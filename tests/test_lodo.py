"""Leave-one-drug-out sweep: fold equivalence inside and outside the sweep, leakage, outputs, resume."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax import lodo
from cdr_jax.data import drugs
from cdr_jax.eval import baselines
from cdr_jax.eval import lodo_kernel
from cdr_jax.train import warm_start
from configs import test as test_config
from tests.conftest import read_csv


def config(arg='lodo'):
  c = test_config.get_config(arg).unlock()
  c.train.num_epochs = 3
  c.train.patience = 3
  return c


@pytest.fixture(scope='module')
def prepared():
  c = config()
  return c, data.load_dataset(c.data), None


def test_fold_has_no_leakage(prepared):
  _, ds, _ = prepared
  f = lodo.make_fold(ds, 3, 0.2, seed=0)
  assert set(ds.pair_drug[f.test].tolist()) == {3}
  assert 3 not in set(ds.pair_drug[f.train].tolist()) | set(ds.pair_drug[f.val].tolist())
  assert not set(ds.pair_drug[f.val].tolist()) & set(ds.pair_drug[f.train].tolist())
  assert len(f.train) + len(f.val) + len(f.test) == ds.num_pairs
  # Validation drugs depend on (seed, drug) only: the same in any chunk.
  np.testing.assert_array_equal(lodo.make_fold(ds, 3, 0.2, seed=0).val_drugs, f.val_drugs)


@pytest.mark.parametrize('fold_map', ['loop', 'vmap'])
def test_fold_in_sweep_matches_fold_alone(prepared, fold_map):
  """A fold trained inside a chunk of 3 (a loop over the folds inside the step, or vmapped) equals
  the same fold trained alone, which runs the plain single-model step: the path of every single
  training run."""
  c, ds, _ = prepared
  c = c.copy_and_resolve_references()
  c.lodo.fold_map = fold_map
  folds = [lodo.make_fold(ds, d, c.lodo.val_fraction, 0) for d in (1, 4, 7)]
  together = lodo.run_chunk(ds, c, folds)
  alone = lodo.run_chunk(ds, c, folds[1:2])
  a, b = together[1], alone[0]
  assert a['drug_id'] == b['drug_id'] == ds.drug_ids[4]
  assert a['best_epoch'] == b['best_epoch']
  # Batched (vmapped) and single matmuls round differently, and Adam's normalisation turns those
  # last-bit gradient differences into small parameter differences: equal within float tolerance.
  np.testing.assert_allclose(a['predictions'], b['predictions'], rtol=5e-3, atol=5e-3)
  assert a['pcc'] == pytest.approx(b['pcc'], abs=5e-3)
  for ca, cb in zip(a['curve'], b['curve']):
    assert ca['train_loss'] == pytest.approx(cb['train_loss'], rel=1e-3)


def test_sweep_outputs_and_resume(tmp_path):
  c = config()
  c.lodo.folds_per_chunk = 2
  summary = lodo.run_sweep(c, tmp_path, drugs='random:3:0')
  assert summary['folds'] == 3 and 'per_drug_pcc_mean' in summary
  assert len(list((tmp_path / 'chunks').iterdir())) == 2
  lines = (tmp_path / 'lodo_per_drug.csv').read_text().splitlines()
  assert lines[0].startswith('drug_id,drug_name,n,best_epoch,val_score,pcc,spearman,rmse,'
                             'naive_pcc,gain') and len(lines) == 4
  assert (tmp_path / 'lodo_curves.csv').read_text().startswith('drug_id,epoch,train_loss')
  saved = json.loads((tmp_path / 'lodo_summary.json').read_text())
  # Resume: finished chunks are read, not retrained (a second call changes nothing).
  first_chunk = sorted((tmp_path / 'chunks').iterdir())[0]
  stamp = first_chunk.stat().st_mtime_ns
  assert lodo.run_sweep(c, tmp_path, drugs='random:3:0') == saved
  assert first_chunk.stat().st_mtime_ns == stamp


def test_parse_drugs(prepared):
  _, ds, _ = prepared
  assert lodo.parse_drugs('all', ds) == list(range(len(ds.drug_ids)))
  assert lodo.parse_drugs(f'{ds.drug_ids[2]},{ds.drug_names[5]}', ds) == [2, 5]
  picked = lodo.parse_drugs('random:4:1', ds)
  assert len(set(picked)) == 4 and picked == lodo.parse_drugs('random:4:1', ds)
  with pytest.raises(ValueError, match="unknown drug 'aspirin'"):
    lodo.parse_drugs('aspirin', ds)


def test_fold_apart_drops_the_batch_mates_everywhere(prepared):
  """lodo.apart: the drugs screened within `apart` ids of the held-out drug leave the fold (not
  trained, not validated, not scored); with 0 the fold is the plain one."""
  _, ds, _ = prepared
  f = lodo.make_fold(ds, 5, 0.2, 0, apart=2.0)   # synthetic drug i is GDSC id i + 1
  assert list(f.excluded) == [3, 4, 6, 7] == list(lodo_kernel.batch_mates(ds, 5, 2.0))
  used = np.r_[f.train, f.val, f.test]
  assert not np.isin(ds.pair_drug[used], f.excluded).any()
  assert not np.isin(f.val_drugs, f.excluded).any() and 5 not in f.val_drugs
  assert len(used) + np.isin(ds.pair_drug, f.excluded).sum() == ds.num_pairs
  plain = lodo.make_fold(ds, 5, 0.2, 0)
  assert not len(plain.excluded) and set(f.train) < set(plain.train)


def test_sweep_apart_reports_its_dropped_batch_mates(tmp_path):
  c = config()
  c.train.num_epochs = 1
  plain = lodo.run_sweep(c, tmp_path / 'plain', drugs='random:2:0')
  c.lodo.apart = 2.0
  apart = lodo.run_sweep(c, tmp_path / 'apart', drugs='random:2:0')
  assert apart['apart'] == 2.0 and apart['classical_kernel']['apart'] == 2.0
  assert 'apart' not in plain and 'apart' not in plain['classical_kernel']
  rows = read_csv(tmp_path / 'apart' / 'lodo_per_drug.csv')
  assert [int(r['batch_mates_dropped']) for r in rows] == [4, 4]   # none at the ends of 1..12
  assert apart['batch_mates_dropped_mean'] == 4.0
  assert apart['classical_kernel']['lambda_chosen'] == 'per fold, without its batch-mates'
  for key in ('classical_kernel_pcc_mean', 'naive_cell_mean_pcc_mean',
              'classical_kernel_batch_pcc_mean'):
    assert apart[key] != pytest.approx(plain[key], abs=1e-6)
  names = lambda d: {p.name[10:] for p in (tmp_path / d / 'chunks').iterdir()}
  assert not names('plain') & names('apart')     # never each other's chunks
  c.lodo.apart = 60.0   # the variant's: every synthetic drug is a batch-mate
  with pytest.raises(ValueError, match='lodo.apart=60 leaves the fold of drug .* 0 other drugs'):
    lodo.run_sweep(c, tmp_path / 'far', drugs='random:2:0')
  assert config('lodo,apart').lodo.apart == 60.0
  with pytest.raises(ValueError, match='lodo.apart .* for the sweep, launch/lodo.py'):
    experiment.train_and_evaluate(config('lodo,apart'), tmp_path / 'single')


def test_a_fold_apart_reads_no_label_of_its_batch_mates(prepared, monkeypatch):
  """Scrambling the batch-mates' labels changes nothing a fold apart reports: the network (its
  kernel-ridge start, training, selection), the naive mean, the kernel baseline and the stack."""
  c, ds, _ = prepared
  c = c.copy_and_resolve_references()
  c.model.line_init, c.lodo.apart, c.lodo.refit = 'kernel_ridge', 2.0, True
  kernel = warm_start.drug_kernel(ds, c)
  screens = warm_start.kernel_screens(ds, c.data)
  folds = [lodo.make_fold(ds, d, c.lodo.val_fraction, 0, 2.0) for d in (2, 8)]
  rows = []
  for f in folds:   # one fold at a time: a fold's batch-mates train the other fold
    mates = np.isin(ds.pair_drug, f.excluded)
    noise = np.random.default_rng(f.drug).normal(0, 5, ds.num_pairs)
    scrambled = dataclasses.replace(
        ds, pair_y=np.where(mates, noise, ds.pair_y).astype(ds.pair_y.dtype))
    (a,), (b,) = (lodo.run_chunk(d, c, [f], drug_kernel=kernel) for d in (ds, scrambled))
    np.testing.assert_allclose(a['predictions'], b['predictions'], rtol=1e-6, atol=1e-6)
    assert a['naive_pcc'] == pytest.approx(b['naive_pcc'], abs=1e-9)
    assert a['batch_mates_dropped'] == 4
    for key in ('best_epoch', 'val_score', 'pcc_before_refit'):
      assert a[key] == pytest.approx(b[key], abs=1e-6)
    np.testing.assert_allclose(a['val_predictions'], b['val_predictions'], rtol=1e-6, atol=1e-6)
    base, other = (lodo.apart_predictions(d, [f], kernel, screens) for d in (ds, scrambled))
    np.testing.assert_allclose(base, other, equal_nan=True)
    # ... and the same fold without `apart` does read them.
    plain = [lodo.make_fold(ds, f.drug, c.lodo.val_fraction, 0)]
    assert not np.allclose(lodo.apart_predictions(ds, plain, kernel, screens),
                           lodo.apart_predictions(scrambled, plain, kernel, screens),
                           equal_nan=True)
    rows.append(a)
  # The stack scores the validation drugs with the held-out drug and its batch-mates removed.
  seen, original = [], lodo_kernel.without_drug
  def recording(ds_, kernel_, excluded, *args):
    seen.append(set(np.atleast_1d(excluded).tolist()))
    return original(ds_, kernel_, excluded, *args)
  monkeypatch.setattr(lodo.lodo_kernel, 'without_drug', recording)
  for f, r in zip(folds, rows):
    lodo._stack_weight(ds, f, np.asarray(r['val_predictions']), kernel, screens)
    assert seen.pop() == {f.drug, *f.excluded.tolist()}
  monkeypatch.undo()


def test_naive_cell_mean_excludes_held_out_drug(prepared):
  _, ds, _ = prepared
  f = lodo.make_fold(ds, 0, 0.2, 0)
  pred = baselines.naive_cell_mean(ds, 0, f.test)
  c = ds.pair_cell[f.test[0]]
  others = (ds.pair_cell == c) & (ds.pair_drug != 0)
  assert pred[0] == pytest.approx(ds.pair_y[others].mean(), rel=1e-5)


@pytest.mark.parametrize('variant', ['lodo,classification', 'lodo,deepcdr', 'lodo,onehot',
                                     'lodo,drugs=graph+morgan+descriptors,screening_batch',
                                     'lodo,drugs=morgan+onehot,shuffled_drugs'])
def test_sweep_runs_for_other_models_tasks_and_representations(variant, tmp_path):
  c = config(variant)
  c.train.num_epochs = 1
  summary = lodo.run_sweep(c, tmp_path, drugs='random:2:0')
  assert summary['folds'] == 2
  key = 'auroc_mean' if 'classification' in variant else 'per_drug_pcc_mean'
  assert key in summary
  # The kernel baseline (and so the stack and every fold's start) adds the screening order only
  # when asked.
  weights = summary['classical_kernel']['kernels']
  assert ('screening_batch' in weights) == ('screening_batch' in variant)
  # Every sweep reports the kernel with the screening batch beside its own (the same column when
  # the sweep uses it).
  rows = read_csv(tmp_path / 'lodo_per_drug.csv')
  kernel, batch = ([float(r[c]) for r in rows] for c in ('kernel_pcc', 'kernel_batch_pcc'))
  assert np.array_equal(batch, kernel, equal_nan=True) == ('screening_batch' in variant)
  assert summary['classical_kernel_batch_pcc_mean'] == pytest.approx(np.mean(batch))


def test_sweep_warm_started_from_kernel_ridge(tmp_path):
  """model.line_init='kernel_ridge': every fold trains from its own kernel ridge over drugs (the
  lambda it chose is a column) and its untrained state competes in selection (epoch -1)."""
  c = config()
  c.model.line_init = 'kernel_ridge'
  c.train.num_epochs = 2
  summary = lodo.run_sweep(c, tmp_path, drugs='random:5:0')
  assert summary['folds'] == 5 and summary['line_init'] == 'kernel_ridge'
  rows = read_csv(tmp_path / 'lodo_per_drug.csv')
  assert all(float(r['line_l2']) in warm_start.lodo_kernel.LAMBDAS for r in rows)
  assert all(int(r['best_epoch']) >= -1 for r in rows)
  # lodo.refit (the default): the reported PCC is the refit's, the selected network's beside it.
  assert summary['refit'] and 'per_drug_pcc_before_refit_mean' in summary
  assert all(np.isfinite(float(r['pcc_before_refit'])) for r in rows)


def test_refit_trains_each_fold_its_own_epochs_on_training_and_validation_drugs(prepared):
  """A fold refit for 0 epochs predicts exactly kernel ridge over its training + validation drugs
  (its start fitted again on them); one refit for 2 epochs moves away from its start."""
  c, ds, _ = prepared
  c = c.copy_and_resolve_references()
  c.model.line_init = 'kernel_ridge'
  folds = [lodo.make_fold(ds, d, c.lodo.val_fraction, 0) for d in (1, 4)]
  kernel = warm_start.drug_kernel(ds, c)
  net_kernel = warm_start.network_kernel(kernel, c.data)
  preds = lodo._refit_chunk(ds, c, folds, [0, 2], kernel, [10.0, 10.0], None)
  starts = []
  for f in folds:
    both = np.concatenate([f.train, f.val])
    fit = warm_start.lodo_kernel.fit_drugs(ds.pair_cell[both], ds.pair_drug[both],
                                           ds.pair_y[both], len(ds.cell_ids), net_kernel)
    assert set(fit.drugs) == set(np.unique(ds.pair_drug[both]))   # validation drugs included
    starts.append(fit.profiles(net_kernel, [f.drug])[0][ds.pair_cell[f.test]])
  np.testing.assert_allclose(preds[0], starts[0], rtol=1e-4, atol=1e-4)
  assert np.abs(preds[1] - starts[1]).max() > 1e-3


def test_sweep_with_every_drug_representation_on_a_data_root(tiny_root, tmp_path):
  """Annotations, Morgan, descriptors, ChemNet (a file in the sidecar's format) and binding panels
  (files in the fetched formats) beside the graph; the classical kernel baseline (with annotation
  and binding kernels) is a column of lodo_per_drug.csv."""
  from tests.conftest import data_config  # pylint: disable=g-import-not-at-top
  from tests.conftest import write_tiny_panels  # pylint: disable=g-import-not-at-top
  ds = data.load_dataset(data_config(write_tiny_panels(tiny_root), 'expression'))
  (tiny_root / 'drugs').mkdir()
  np.save(tiny_root / 'drugs/chemnet.npy',
          np.random.default_rng(0).normal(size=(len(ds.drug_ids), 8)).astype(np.float32))
  (tiny_root / 'drugs/chemnet.cells.txt').write_text('\n'.join(ds.drug_ids) + '\n')
  c = config()
  c.data = data_config(tiny_root, 'expression')
  c.data.drug_repr = 'graph+annotations+morgan+descriptors+chemnet+binding'
  c.train.num_epochs, c.train.batch_size, c.lodo.val_fraction = 1, 8, 0.3
  summary = lodo.run_sweep(c, tmp_path, drugs='all')
  assert summary['folds'] == len(ds.drug_ids) and summary['drug_repr'] == c.data.drug_repr
  assert set(summary['classical_kernel']['kernels']) == {'pathway', 'target', 'morgan',
                                                         'descriptors', 'binding'}
  assert summary['classical_kernel']['binding_panels']['kiba'] == {
      'drugs_in_panel': 2, 'targets': 2, 'drug_ids': ['2244', '2519']}
  # The kernel column is the baseline with the panels' kernel, not without it.
  screens = warm_start.kernel_screens(ds, c.data)
  kernel_pcc = lambda **kw: np.nanmean(lodo_kernel.per_drug_pcc(
      lodo_kernel.held_out_drug_predictions(ds, tiny_root, screens, **kw)[0], ds.pair_y,
      ds.pair_drug, len(ds.drug_ids)))
  assert summary['classical_kernel_pcc_mean'] == pytest.approx(kernel_pcc(binding=True))
  assert abs(summary['classical_kernel_pcc_mean'] - kernel_pcc()) > 1e-4
  rows = read_csv(tmp_path / 'lodo_per_drug.csv')
  assert 'kernel_pcc' in rows[0]
  assert all(float(r['stack_weight']) in lodo.STACK_WEIGHTS for r in rows)
  assert summary['stack_folds'] == len(rows)
  pathway = drugs.read_drug_list_annotations(tiny_root).pathway
  assert [r['pathway'] for r in rows] == [pathway[r['drug_id']] for r in rows]


def test_killed_sweep_resumes_inside_its_chunk(tmp_path):
  """SIGKILL after an epoch of the (only) chunk has been checkpointed: the same command resumes at
  that epoch, not at the chunk's start, and ends as an uninterrupted sweep does."""
  import os  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  args = [sys.executable, 'launch/lodo.py', '--config=configs/test.py:lodo', '--drugs=random:3:0',
          '--config.train.num_epochs=4', '--config.train.patience=4']
  run = lambda workdir, **kw: subprocess.Popen([*args, f'--workdir={workdir}'], env=dict(os.environ),
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True, **kw)
  ref = run(tmp_path / 'ref')
  assert ref.wait(600) == 0, ref.stderr.read()[-3000:]
  proc = run(tmp_path / 'killed')
  latest = tmp_path / 'killed' / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    steps = [int(p.name) for p in latest.glob('chunk_*/latest/*') if p.name.isdigit()]
    if steps and max(steps) >= 1:   # epoch 1 of the chunk is on disk
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / 'killed/lodo_per_drug.csv').exists(), 'finished before it was killed'
  again = run(tmp_path / 'killed')
  _, err = again.communicate(timeout=600)
  assert again.returncode == 0, err[-3000:]
  assert 'resumed at epoch' in err and 'resumed at epoch 0' not in err
  assert ((tmp_path / 'killed/lodo_per_drug.csv').read_text()
          == (tmp_path / 'ref/lodo_per_drug.csv').read_text())


def test_folds_per_chunk_by_platform():
  c = config()
  c.lodo.folds_per_chunk = 0
  assert lodo.folds_per_chunk(c) == (8 if jax.default_backend() == 'cpu' else 32)
  c.lodo.folds_per_chunk = 5
  assert lodo.folds_per_chunk(c) == 5
  c.lodo.folds_per_chunk = -1
  with pytest.raises(ValueError, match='folds_per_chunk'):
    lodo.folds_per_chunk(c)


def test_stack_weight_chosen_on_validation_drugs_without_test_labels():
  """A network exact on the validation drugs gets weight 1; the held-out drug's labels (scrambled)
  change nothing; a sweep row without validation predictions gets nan."""
  from tests.conftest import hand_dataset  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  y = rng.normal(size=(30, 12)) + rng.normal(size=(30, 1)) + rng.normal(size=(1, 12))
  cell, drug = (a.ravel() for a in np.indices(y.shape))
  ds = hand_dataset(cell, drug, y.ravel())
  kernel = np.exp(-np.square(np.subtract.outer(np.arange(12.0), np.arange(12.0))) / 8)
  fold = lodo.make_fold(ds, 3, 0.3, seed=0)
  exact = ds.pair_y[fold.val]
  assert lodo._stack_weight(ds, fold, exact, kernel) == 1.0
  noisy = exact + rng.normal(0, 3.0, len(exact))
  w = lodo._stack_weight(ds, fold, noisy, kernel)
  scrambled = ds.pair_y.copy()
  scrambled[fold.test] = rng.normal(size=len(fold.test))
  other = hand_dataset(cell, drug, scrambled)
  assert lodo._stack_weight(other, fold, noisy, kernel) == w < 1.0
  assert np.isnan(lodo._stack_weight(ds, fold, np.array([]), kernel))


def test_select_margin_scores_a_trained_state_by_its_gain_over_the_start(prepared):
  """train.select_margin='se' (the lodo variant's): the start scores its mean validation per-drug
  PCC; any other state the start's score plus its per-drug gain minus one standard error, by hand
  (`metrics.gain_lower_bound`); without a start the score is the plain per-drug PCC."""
  from cdr_jax.eval import metrics  # pylint: disable=g-import-not-at-top
  c, ds, _ = prepared
  c = c.copy_and_resolve_references()
  c.model.line_init = 'kernel_ridge'
  assert c.train.select_margin == 'se' and c.train.select_metric == 'per_drug_pcc'
  folds = [lodo.make_fold(ds, d, 0.3, 0) for d in (1, 4)]
  kernel = warm_start.drug_kernel(ds, c)
  run, start, _, started = lodo._started_run(ds, c, [f.train for f in folds], kernel)
  assert started
  val = [f.val for f in folds]
  plain = run.selector(val)
  select = run.selector(val, start=start)
  per_drug = lambda states: [metrics.group_pccs(p, ds.pair_y[q], ds.pair_drug[q])
                             for p, q in zip(run.predict(states, val), val)]
  ref = per_drug(start)
  np.testing.assert_allclose(select(start)[0], [np.nanmean(r) for r in ref])
  np.testing.assert_allclose(select(start)[0], plain(start)[0])
  moved = start.replace(params=jax.tree.map(lambda x: x + 0.05 * jax.random.normal(
      jax.random.key(0), x.shape, x.dtype) if x.dtype.kind == 'f' else x, start.params))
  gains = [np.nanmean(r) + metrics.gain_lower_bound(g, r) for g, r in zip(per_drug(moved), ref)]
  np.testing.assert_allclose(select(moved)[0], gains, rtol=1e-6)
  assert not np.allclose(select(moved)[0], plain(moved)[0])
  c.train.select_metric = 'pcc'
  with pytest.raises(ValueError, match="select_metric='per_drug_pcc'"):
    lodo._started_run(ds, c, [f.train for f in folds], kernel)[0].selector(val, start=start)
  c.train.select_metric, c.train.select_margin = 'per_drug_pcc', 'sd'
  with pytest.raises(ValueError, match="'none' or 'se'"):
    lodo._started_run(ds, c, [f.train for f in folds], kernel)[0].selector(val, start=start)
