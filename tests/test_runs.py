"""The run-directory format: real tiny runs read back, writers checked byte for byte, and every
missing or malformed file or column named in the error."""

import csv
import json
import pathlib
import re
import shutil

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import runs
from cdr_jax.data import splits
from cdr_jax.errors import DataError
from cdr_jax.eval import metrics
from configs import test as test_config
from tests.conftest import RUN_EPOCHS
from tests.conftest import copy_run
from tests.conftest import hand_dataset
from tests.conftest import read_csv


@pytest.fixture(scope='module')
def trained(tiny_runs) -> pathlib.Path:
  return tiny_runs.train('expr_s0')


@pytest.fixture(scope='module')
def sweep(tiny_runs) -> pathlib.Path:
  return tiny_runs.sweep()


def drop_column(path: pathlib.Path, column: str) -> None:
  rows = read_csv(path)
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, [k for k in rows[0] if k != column], extrasaction='ignore',
                            lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)


def test_load_run_reads_a_training_run(trained):
  run = runs.load_run(trained)
  assert run.path == trained and run.lodo is None
  assert run.metrics == json.loads((trained / 'metrics.json').read_text())
  assert run.metrics['task'] == 'regression'
  assert {'model', 'global_mean', 'drug_mean', 'cell_mean', 'additive', 'type_drug_mean',
          'matrix_factorization', 'ridge_per_drug', 'tuned_blend', 'stack'} <= set(run.metrics['test'])
  # config.json flattened to 'section.key'.
  assert run.config['data.source'] == 'synthetic' and run.config['split.name'] == 'random'
  assert run.config['train.num_epochs'] == RUN_EPOCHS
  assert run.config['model.gcn_units'] == [16, 16]


def test_load_run_reads_a_sweep(sweep):
  run = runs.load_run(sweep)
  assert run.metrics is None
  assert run.lodo == read_csv(sweep / 'lodo_per_drug.csv') and len(run.lodo) == 3
  assert run.config['split.name'] == 'leave_drug_out'
  assert runs.history(run) is None  # a sweep keeps its curves in lodo_curves.csv


def test_predictions_match_the_dataset_and_the_metrics(trained):
  run = runs.load_run(trained)
  cols = runs.predictions(run)
  assert len(cols['predicted']) == run.metrics['split']['test']
  assert cols['cell_id'].dtype.kind == 'U' and cols['observed'].dtype == np.float64
  # The observed values are the dataset's ln IC50 of those (cell, drug) pairs.
  ds = data.load_dataset(runs.read_config(trained).data)
  y = {(ds.cell_ids[c], ds.drug_ids[d]): v
       for c, d, v in zip(ds.pair_cell, ds.pair_drug, ds.pair_y)}
  expected = [y[c, d] for c, d in zip(cols['cell_id'], cols['drug_id'])]
  np.testing.assert_allclose(cols['observed'], expected, rtol=1e-5)
  types = {c: ds.cancer_types[t] for c, t in zip(ds.cell_ids, ds.cell_type)}
  assert list(cols['cancer_type']) == [types[c] for c in cols['cell_id']]
  # Scoring the written predictions again gives metrics.json's (to the CSV's 6 digits).
  model = run.metrics['test']['model']
  assert metrics.pcc(cols['predicted'], cols['observed']) == pytest.approx(model['pcc'], abs=1e-5)
  assert metrics.rmse(cols['predicted'], cols['observed']) == pytest.approx(model['rmse'], rel=1e-5)


def test_history_has_every_epoch_and_the_best_one(trained):
  run = runs.load_run(trained)
  h = runs.history(run)
  np.testing.assert_array_equal(h['epoch'], np.arange(RUN_EPOCHS))
  written = [float(r['val_pcc']) for r in read_csv(trained / 'history.csv')]
  np.testing.assert_array_equal(h['val_pcc'], written)
  # The run selects on validation PCC: its best epoch is the first with the highest.
  assert run.metrics['selection']['best_epoch'] == int(np.argmax(h['val_pcc']))


def test_group_rows_agree_with_the_predictions(trained):
  run = runs.load_run(trained)
  cols = runs.predictions(run)
  rows = runs.group_rows(run, 'drug', 'per_drug.csv')
  assert sum(int(r['n']) for r in rows) == len(cols['predicted'])
  for r in rows:
    m = cols['drug_id'] == r['drug']
    assert int(r['n']) == m.sum() and r['drug_name'] == f"drug-{r['drug']}"
    pcc = runs.to_float(r['model_pcc'])
    if m.sum() < metrics.MIN_GROUP_PAIRS:
      assert np.isnan(pcc)
    else:
      assert pcc == pytest.approx(metrics.pcc(cols['predicted'][m], cols['observed'][m]),
                                  abs=1e-4, nan_ok=True)
  types = runs.group_rows(run, 'type', 'per_type.csv')
  assert sorted(r['type'] for r in types) == sorted(set(cols['cancer_type']))


def test_read_config_round_trip(trained, tmp_path):
  cfg = test_config.get_config('lodo,shuffled')
  runs.write_config(tmp_path, cfg)
  back = runs.read_config(tmp_path)
  assert back.to_json() == cfg.to_json()
  assert back.model.gcn_units == [16, 16]  # JSON has no tuples
  assert back.data.shuffle_cells is True and back.split.name == 'leave_drug_out'
  expected = test_config.get_config()
  expected.train.num_epochs = RUN_EPOCHS
  # With the settings the warm start chose (identity codes sized and penalised as the tuned MF).
  chosen = json.loads((trained / 'metrics.json').read_text())['warm_start']
  expected.model.id_embed_dim, expected.model.id_l2 = chosen['id_embed_dim'], chosen['id_l2']
  assert runs.read_config(trained).to_json() == expected.to_json()
  missing = tmp_path / 'nowhere/config.json'
  with pytest.raises(DataError, match=re.escape(f'missing file {missing}')):
    runs.read_config(tmp_path / 'nowhere')


def test_missing_run_files_name_the_file(trained, sweep, tmp_path):
  with pytest.raises(DataError, match=re.escape(f'run directory {tmp_path / "nowhere"} does not')):
    runs.load_run(tmp_path / 'nowhere')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataError, match=re.escape(f"missing file {tmp_path / 'empty/metrics.json'}")):
    runs.load_run(tmp_path / 'empty')
  run = copy_run(trained, tmp_path)
  (run / 'config.json').unlink()
  with pytest.raises(DataError, match=re.escape(f"missing file {run / 'config.json'}")):
    runs.load_run(run)
  shutil.copy(trained / 'config.json', run / 'config.json')
  (run / 'predictions.csv').unlink()
  loaded = runs.load_run(run)
  with pytest.raises(DataError, match=re.escape(f"missing file {run / 'predictions.csv'}: "
                                                'expected test predictions')):
    runs.predictions(loaded)
  (run / 'history.csv').unlink()
  assert runs.history(loaded) is None  # history.csv is optional: None, not an error
  # A sweep's config.json is optional: its label falls back to the directory name.
  lodo = copy_run(sweep, tmp_path)
  (lodo / 'config.json').unlink()
  assert runs.load_run(lodo).config == {}


@pytest.mark.parametrize('file, edit, message', [
    ('metrics.json', lambda t: t[:-5], 'not valid JSON'),
    ('metrics.json', lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != 'task'}),
     'no task; expected the metrics.json'),
    ('metrics.json', lambda t: json.dumps({'task': 'regression'}), 'no test;'),
    ('config.json', lambda t: t.replace('"task"', '"objective"'), 'no model.task; expected a'),
    ('config.json', lambda t: t.replace('"shuffle_cells"', '"shuffle"'), 'no data.shuffle_cells'),
])
def test_malformed_json_names_the_file(trained, tmp_path, file, edit, message):
  run = copy_run(trained, tmp_path)
  (run / file).write_text(edit((run / file).read_text()))
  with pytest.raises(DataError, match=re.escape(f'{run / file}: {message}')):
    runs.load_run(run)


@pytest.mark.parametrize('file, column, read', [
    ('predictions.csv', 'observed', runs.predictions),
    ('predictions.csv', 'cell_id', runs.predictions),
    ('history.csv', 'val_pcc', runs.history),
    ('per_cell.csv', 'model_pcc', lambda r: runs.group_rows(r, 'cell', 'per_cell.csv')),
    ('per_drug.csv', 'drug_name', lambda r: runs.group_rows(r, 'drug', 'per_drug.csv')),
])
def test_missing_column_names_the_file_and_column(trained, tmp_path, file, column, read):
  run = copy_run(trained, tmp_path)
  drop_column(run / file, column)
  with pytest.raises(DataError, match=re.escape(f'{run / file}: no column {column}; expected')):
    read(runs.load_run(run))


def test_lodo_table_columns_are_checked_even_without_rows(sweep, tmp_path):
  run = copy_run(sweep, tmp_path)
  drop_column(run / 'lodo_per_drug.csv', 'gain')
  with pytest.raises(DataError, match=re.escape(f"{run / 'lodo_per_drug.csv'}: no column gain")):
    runs.load_run(run)
  (run / 'lodo_per_drug.csv').write_text('drug_id,drug_name,n,pcc\n')  # a header, no rows
  with pytest.raises(DataError, match='lodo_per_drug.csv: no column naive_pcc, gain'):
    runs.load_run(run)


def test_short_csv_row_names_the_line(trained, tmp_path):
  run = copy_run(trained, tmp_path)
  lines = (run / 'predictions.csv').read_text().splitlines()
  lines[2] = 'SYN-0000,1'
  (run / 'predictions.csv').write_text('\n'.join(lines) + '\n')
  with pytest.raises(DataError, match=re.escape(f"{run / 'predictions.csv'} line 3: 2 fields")):
    runs.predictions(runs.load_run(run))


def test_write_csv_formats_floats(tmp_path):
  rows = [{'a': 0.123456789, 'b': 1, 'c': 'x', 'd': 1e-7, 'e': float('nan')},
          {'a': np.float64(2.0), 'b': 2, 'c': 'y', 'd': 123456789.0, 'e': 0.5, 'extra': 9}]
  # Floats (np.float64 is one) to 6 significant digits; ints and strings as they are; the
  # columns are the first row's keys, and keys beyond them are left out.
  runs.write_csv(tmp_path / 'a.csv', rows)
  assert (tmp_path / 'a.csv').read_text() == ('a,b,c,d,e\n0.123457,1,x,1e-07,nan\n'
                                              '2,2,y,1.23457e+08,0.5\n')
  runs.write_csv(tmp_path / 'b.csv', rows, ('c', 'a', 'z'))  # a missing field stays empty
  assert (tmp_path / 'b.csv').read_text() == 'c,a,z\nx,0.123457,\ny,2,\n'
  runs.write_csv(tmp_path / 'c.csv', [], ('a', 'b'))
  assert (tmp_path / 'c.csv').read_text() == 'a,b\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['a.csv', 'b.csv', 'c.csv']  # no temp files


def test_write_lodo_files(tmp_path):
  # pair: 0 (c0,d0,10)  1 (c0,d1,1)  2 (c0,d2,3)  3 (c1,d0,20)  4 (c1,d1,5)  5 (c2,d0,30)
  ds = hand_dataset([0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 1, 0], [10, 1, 3, 20, 5, 30])
  curve = [{'epoch': 0, 'train_loss': 1.5, 'val_score': 0.1},
           {'epoch': 1, 'train_loss': 1.25, 'val_score': 0.2}]
  rows = [{'drug_id': 'D0', 'drug_name': 'drug 0', 'n': 3, 'pcc': 0.5, 'naive_pcc': 0.25,
           'gain': 0.25, 'curve': curve, 'predictions': [11.0, 21.0, 31.0]},
          {'drug_id': 'D1', 'drug_name': 'drug 1', 'n': 2, 'pcc': float('nan'),
           'naive_pcc': -1.0, 'gain': float('nan'), 'curve': curve[:1], 'predictions': [2.0, 6.0]}]
  summary = {'folds': 2, 'per_drug_pcc_mean': 0.5}
  runs.write_lodo(tmp_path, ds, rows, summary)
  assert (tmp_path / 'lodo_per_drug.csv').read_text() == (
      'drug_id,drug_name,n,pcc,naive_pcc,gain\nD0,drug 0,3,0.5,0.25,0.25\n'
      'D1,drug 1,2,nan,-1,nan\n')
  assert (tmp_path / 'lodo_curves.csv').read_text() == (
      'drug_id,epoch,train_loss,val_score\nD0,0,1.5,0.1\nD0,1,1.25,0.2\nD1,0,1.5,0.1\n')
  # Each fold's predictions belong to its held-out drug's pairs, in pair order.
  assert (tmp_path / 'lodo_predictions.csv').read_text() == (
      'drug_id,cell_id,observed,predicted\nD0,C0,10,11\nD0,C1,20,21\nD0,C2,30,31\n'
      'D1,C0,1,2\nD1,C1,5,6\n')
  assert json.loads((tmp_path / 'lodo_summary.json').read_text()) == summary
  run = runs.load_run(tmp_path)  # no config.json: a sweep is still readable
  assert [r['drug_id'] for r in run.lodo] == ['D0', 'D1'] and run.lodo[1]['gain'] == 'nan'


def test_real_sweep_files_agree(sweep):
  table = read_csv(sweep / 'lodo_per_drug.csv')
  preds = read_csv(sweep / 'lodo_predictions.csv')
  curves = read_csv(sweep / 'lodo_curves.csv')
  for row in table:
    mine = [p for p in preds if p['drug_id'] == row['drug_id']]
    assert len(mine) == int(row['n'])
    pred = np.array([float(p['predicted']) for p in mine])
    obs = np.array([float(p['observed']) for p in mine])
    assert metrics.pcc(pred, obs) == pytest.approx(float(row['pcc']), abs=1e-4)
    assert float(row['gain']) == pytest.approx(float(row['pcc']) - float(row['naive_pcc']),
                                               abs=1e-5)
    epochs = [int(c['epoch']) for c in curves if c['drug_id'] == row['drug_id']]
    # best epoch -1: the fold's warm start (kernel ridge over drugs) validated best
    assert epochs == list(range(len(epochs))) and int(row['best_epoch']) in [-1] + epochs


def test_classical_markdown_says_what_was_chosen_refit_and_why_not():
  md = runs.classical_markdown({
      'matrix_factorization': {'applies': True, 'params': {'rank': 80, 'l2': 14.142, 'val': {}},
                               'refit': {'pairs': 89585}},
      'ridge_per_drug': {'applies': True, 'params': {'lambda_rel': 0.5, 'cv_score': 0.4,
                                                     'spectrum_cv_score': None}},
      'kernel_ridge': {'applies': False, 'why': 'no cell features given'},
      'stack': {'weights': {'model': 0.0, 'tuned_blend': 1.0}}})
  assert '| tuned_matrix_factorization | yes | rank 80, l2 14.14; refit with these on 89,585' in md
  assert '| tuned_ridge_per_drug | yes | lambda_rel 0.5 |' in md
  assert '| tuned_kernel_ridge | no | no cell features given |' in md
  assert 'tuned_blend 1.00' in md and 'model 0.00' not in md


def test_short_table_lists_model_stack_then_the_strongest_in_aligned_columns():
  entry = lambda p: {'pcc': 0.9, 'spearman': 0.8, 'rmse': 1.0, 'per_drug_pcc': {'mean': p}}
  test = {'model': entry(0.70), 'stack': entry(0.75), 'tuned_user_knn_after_item_knn': entry(0.74),
          'tuned_item_knn': entry(0.73), 'cell_mean': entry(0.50), 'tuned_blend': entry(0.75),
          'drug_mean': entry(float('nan'))}
  lines = runs.short_table({'test': test}, strongest=3).split('\n')
  assert [ln.split()[0] for ln in lines[1:]] == ['model', 'stack', 'tuned_blend',
                                                 'tuned_user_knn_after_item_knn', 'tuned_item_knn']
  assert len({len(ln) for ln in lines}) == 1   # every row as wide as the header: columns align


def test_unmeasured_test_pairs_are_scored_apart_by_hand():
  """Pairs 6 and 7 repeat (line 0, drug 0) and (line 1, drug 1) measured in training; the scores
  on the other test pairs are those of the predictions there, and summary.md says how many."""
  cell = [0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 2, 3, 0, 1]
  drug = [0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 2, 2]
  y = np.arange(14.0) % 5
  ds = hand_dataset(cell, drug, y)
  fitted_on, test = np.arange(6), np.arange(6, 14)
  measured = splits.measured_before(ds, fitted_on, test)
  np.testing.assert_array_equal(measured, [True, True, False, False, False, False, False, False])
  pred = np.array([9.0, -9.0, 1.0, 2.0, 4.0, 3.0, 0.5, 0.7])
  entry = runs.unmeasured_scores({'model': pred}, ds, test, measured)
  assert (entry['pairs'], entry['measured_in_training']) == (6, 2)
  keep = ~measured
  assert entry['test']['model']['pcc'] == pytest.approx(np.corrcoef(pred[keep], y[test][keep])[0, 1])
  md = runs.unmeasured_markdown(entry)
  assert '(6; 2 others repeat a training measurement)' in md and '| model |' in md
  assert runs.unmeasured_markdown(None) == ''
