"""The cross-run report on run directories written by real tiny runs (configs/test.py): two seeds of
one experiment, its shuffled-row control, a LODO sweep and three cross-validation folds."""

import csv
import json
import pathlib
import re
import subprocess
import sys

from matplotlib import image as mpimg
import numpy as np
import pytest

from cdr_jax import report
from cdr_jax import runs as run_io
from cdr_jax.errors import DataError
from cdr_jax.eval import metrics
from tests.conftest import copy_run
from tests.conftest import read_csv

REPO = pathlib.Path(__file__).resolve().parents[1]
TUNED = tuple(f'tuned_{k}' for k in ('additive', 'matrix_factorization', 'item_knn', 'user_knn',
                                        'item_knn_additive', 'user_knn_additive',
                                        'user_knn_after_item_knn', 'item_knn_after_cascade',
                                        'ridge_per_drug', 'kernel_ridge', 'blend',
                                        'drug_blend')) + ('stack',)
BASELINES = ('global_mean', 'drug_mean', 'cell_mean', 'additive', 'type_drug_mean',
             'matrix_factorization', 'ridge_per_drug')


@pytest.fixture(scope='module')
def runs(tiny_runs) -> dict[str, pathlib.Path]:
  """Seeds 0 and 1 of one experiment (same split), its shuffled-row control, a LODO sweep."""
  return {'a0': tiny_runs.train('expr_s0'),
          'a1': tiny_runs.train('expr_s1', overrides={'train.seed': 1}),
          'b': tiny_runs.train('expr_shuffled', 'shuffled'), 'lodo': tiny_runs.sweep()}


@pytest.fixture(scope='module')
def folds(tiny_runs) -> list[pathlib.Path]:
  """Folds 0..2 of a leave_cell_out cross-validation."""
  return [tiny_runs.train(f'lco_f{f}', 'leave_cell_out', {'split.fold': f}) for f in range(3)]


def model_metrics(run: pathlib.Path) -> dict:
  return json.loads((run / 'metrics.json').read_text())['test']['model']


def assert_image(path: pathlib.Path) -> None:
  """A decodable PNG, of a reasonable size, that is not a blank canvas."""
  img = mpimg.imread(path)
  assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, img.shape
  assert img[..., :3].std() > 0.02


def figures_in(md: str) -> list[str]:
  return re.findall(r'!\[[^\]]*\]\(([^)]+)\)', md)


def line_starting(md: str, prefix: str) -> str:
  return next(line for line in md.splitlines() if line.startswith(prefix))


@pytest.fixture(scope='module')
def full_report(runs, tmp_path_factory) -> tuple[pathlib.Path, str]:
  out = tmp_path_factory.mktemp('report')
  path = report.build_report([str(runs[k]) for k in ('a0', 'a1', 'b', 'lodo')], out)
  return out, path.read_text()


def test_report_renders_every_figure(runs, full_report):
  out, md = full_report
  figs = figures_in(md)
  assert set(figs) == {'fig2_pair_pcc.png', 'fig3_best_type_drug.png', 'fig4_drug_gain_1.png',
                       'fig5_val_pcc.png'}
  for name in figs:
    assert_image(out / name)
  assert sorted(p.name for p in out.glob('*.png')) == sorted(figs)
  assert not list(out.glob('.*.tmp'))  # Atomic writes leave no temp files behind.
  assert '4 runs in 3 experiments' in md
  # A LODO sweep writes no history.csv: Figure 5 draws the three training runs and names it.
  assert f"3 runs drawn from history.csv. No validation PCC in: `{runs['lodo']}`." in md


def test_summary_table_groups_seeds_beside_baselines(runs, full_report):
  _, md = full_report
  # The two seeds form one row with mean ± sd of the model's test PCC.
  pcc = [model_metrics(runs[k])['pcc'] for k in ('a0', 'a1')]
  row = line_starting(md, '| R1 | expression · random · seed |')
  assert f'| 2 | {np.mean(pcc):.4f} ± {np.std(pcc, ddof=1):.4f} |' in row
  shuffled = model_metrics(runs['b'])
  assert (f"| R2 | expression shuffled · random · seed | 1 | {shuffled['pcc']:.4f} | "
          f"{shuffled['spearman']:.4f} | {shuffled['rmse']:.3f} |") in md
  tested = json.loads((runs['a0'] / 'metrics.json').read_text())['test']
  assert set(tested) == {'model', *BASELINES, *TUNED}
  assert '| R1 | stack: network + classical (weights on validation) | 2 |' in md
  assert '| R1 | classical: blend | 2 |' in md
  for b in BASELINES:
    assert f'| R1 | naive: {b} | 2 |' in md and f'| R2 | naive: {b} | 1 |' in md
  # The global mean is constant, so its PCC is undefined in both seeds.
  assert '| R1 | naive: global_mean | 2 | n/a |' in md
  drug_mean = tested['drug_mean']['pcc']  # The same split for both seeds: sd 0.
  assert f'| R1 | naive: drug_mean | 2 | {drug_mean:.4f} ± 0.0000 |' in md


def test_runs_table_names_each_run(runs, full_report):
  _, md = full_report
  summary = json.loads((runs['a1'] / 'metrics.json').read_text())
  m = summary['test']['model']
  assert (f"| `{runs['a1']}` | R1 | expression · random · seed | 1 | 0 | 0 | "
          f"{summary['selection']['best_epoch']} | {m['pcc']:.4f} | "
          f"{m['per_drug_pcc']['mean']:.3f} |") in md
  assert f"| `{runs['lodo']}` | R3 | expression · leave_drug_out · seed (LODO sweep) |" in md


def test_lodo_table_matches_the_sweep_summary(runs, full_report):
  _, md = full_report
  s = json.loads((runs['lodo'] / 'lodo_summary.json').read_text())
  assert s['folds'] == 3 and s['drugs_compared'] == 3
  rows = read_csv(runs['lodo'] / 'lodo_per_drug.csv')
  kernel = [float(r['kernel_pcc']) for r in rows]
  beats_kernel = sum(float(r['pcc']) > float(r['kernel_pcc']) for r in rows)
  assert (f"| `{runs['lodo']}` (expression · leave_drug_out · seed) | 3 | "
          f"{s['per_drug_pcc_mean']:.3f} | {s['per_drug_pcc_median']:.3f} | "
          f"{s['naive_cell_mean_pcc_mean']:.3f} | {np.mean(kernel):.3f} | "
          f"{s['classical_kernel_batch_pcc_mean']:.3f} | "
          f"{s['stack_pcc_mean']:.3f} (3) | {s['drugs_beating_naive']} / 3 | {beats_kernel} / 3 |"
          ) in md
  assert np.mean(kernel) == pytest.approx(s['classical_kernel_pcc_mean'])
  assert 'leave-one-drug-out sweep' in md and 'lodo_summary.json' in md
  # Figure 4 lists every drug of the sweep with its gain, largest first.
  rows = read_csv(runs['lodo'] / 'lodo_per_drug.csv')
  ranked = sorted(rows, key=lambda r: -float(r['gain']))
  listed = ', '.join(f"{r['drug_name']} ({float(r['gain']):+.3f})" for r in ranked)
  assert f'All drugs by gain: {listed}.' in md


def test_pathway_table_means_per_pathway(tmp_path):
  """Hand-made sweeps: per pathway, each sweep's mean per-drug PCC, then naive and kernel."""
  def sweep(name, pccs):
    path = tmp_path / name
    path.mkdir()
    lines = ['drug_id,drug_name,pcc,naive_pcc,gain,kernel_pcc,pathway']
    for i, (p, pathway) in enumerate(zip(pccs, ['ERK MAPK signaling', 'Other', 'Other'])):
      lines.append(f'{i},d{i},{p},0.5,{p - 0.5},{0.4 + 0.1 * i},{pathway}')
    (path / 'lodo_per_drug.csv').write_text('\n'.join(lines) + '\n')
    return run_io.load_run(path)
  a, b = sweep('a', [0.7, 0.2, 0.4]), sweep('b', [0.6, 0.6, 0.8])
  md = '\n'.join(report.lodo_table([a, b]))
  assert '| ERK MAPK signaling | 1 | 0.700 | 0.600 | 0.500 | 0.400 |' in md
  assert '| Other | 2 | 0.300 | 0.700 | 0.500 | 0.550 |' in md
  assert (f'| `{a.path}` () | 3 | 0.433 | 0.400 | 0.500 | 0.500 | nan | nan (0) | 1 / 3 | 1 / 3 |'
          in md)   # a sweep without the screening-batch column


def test_seed_ensemble_row_when_test_pairs_match(runs, full_report):
  """Seeds 0 and 1 share their split: a row scores the mean of their predictions."""
  _, md = full_report
  a, b = (read_csv(runs[k] / 'predictions.csv') for k in ('a0', 'a1'))
  assert [(r['cell_id'], r['drug_id']) for r in a] == [(r['cell_id'], r['drug_id']) for r in b]
  mean_pred = np.array([(float(x['predicted']) + float(y['predicted'])) / 2 for x, y in zip(a, b)])
  obs = np.array([float(x['observed']) for x in a])
  row = line_starting(md, '| R1 | ensemble: mean prediction of the 2 runs |')
  pcc, spearman = metrics.pcc(mean_pred, obs), metrics.spearman(mean_pred, obs)
  assert f'| 1 | {pcc:.4f} | {spearman:.4f} |' in row
  assert md.count('ensemble: mean prediction') == 1  # not for the single shuffled run


def test_grouping_by_config_without_seeds(runs):
  loaded = [run_io.load_run(runs[k]) for k in ('a0', 'b', 'a1')]
  groups = report.group_runs(loaded)
  assert [[r.path.name for r in g] for g in groups] == [['expr_s0', 'expr_s1'], ['expr_shuffled']]
  assert loaded[1].label == 'expression shuffled · random · seed'
  assert [r.group for r in loaded] == [1, 2, 1]


def test_cross_validation_folds_are_one_experiment(folds, runs, tmp_path):
  """The folds of a leave_cell_out run form one row (mean ± sd over folds), with no ensemble row
  (their test pairs differ); another split does not join them; the per-run table names each fold."""
  dirs = folds + [runs['a0']]
  groups = report.group_runs([run_io.load_run(d) for d in dirs])
  assert [[r.path.name for r in g] for g in groups] == [['lco_f0', 'lco_f1', 'lco_f2'],
                                                        ['expr_s0']]
  md = report.build_report([str(d) for d in dirs], tmp_path / 'report').read_text()
  pcc = [model_metrics(d)['pcc'] for d in folds]
  row = line_starting(md, '| R1 | expression · leave_cell_out · seed |')
  assert f'| 3 | {np.mean(pcc):.4f} ± {np.std(pcc, ddof=1):.4f} |' in row
  assert re.search(r'\| `[^`]*lco_f2` \| R1 \| [^|]+ \| 0 \| 0 \| 2 \|', md)
  assert 'ensemble' not in md


def test_missing_metrics_names_the_file(runs, tmp_path):
  run = copy_run(runs['a0'], tmp_path)
  (run / 'metrics.json').unlink()
  with pytest.raises(DataError, match=re.escape(str(run / 'metrics.json'))):
    report.build_report([str(run), str(runs['b'])], tmp_path / 'report')
  with pytest.raises(DataError, match='does not exist'):
    run_io.load_run(tmp_path / 'nowhere')
  sweep = copy_run(runs['lodo'], tmp_path)
  (sweep / 'lodo_per_drug.csv').write_text('drug_id,auroc\n1,0.7\n')
  missing = 'no column drug_name, pcc, naive_pcc, gain'
  with pytest.raises(DataError, match=f'lodo_per_drug.csv: {missing}'):
    run_io.load_run(sweep)


def test_missing_table_names_the_file(runs, tmp_path):
  run = copy_run(runs['a0'], tmp_path)
  (run / 'per_type.csv').unlink()
  with pytest.raises(DataError, match=re.escape(str(run / 'per_type.csv'))):
    report.build_report([str(run), str(runs['b'])], tmp_path / 'report')


def test_missing_column_names_the_file_and_column(runs, tmp_path):
  """per_drug.csv without its drug_name column: an error, not the drug ids in its place."""
  run = copy_run(runs['a0'], tmp_path)
  rows = read_csv(run / 'per_drug.csv')
  fields = [k for k in rows[0] if k != 'drug_name']
  with open(run / 'per_drug.csv', 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, fields, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
  with pytest.raises(DataError, match=re.escape(f"{run / 'per_drug.csv'}: no column drug_name")):
    report.build_report([str(run), str(runs['b'])], tmp_path / 'report')


def test_bad_pair_lists_the_choices(runs):
  loaded = [run_io.load_run(runs[k]) for k in ('a0', 'b')]
  with pytest.raises(ValueError, match='choose from'):
    report.pick_pair(loaded, 'expr_s0,missing')


def test_launch_script_without_lodo_falls_back_and_honours_pair(runs, tmp_path):
  """Also checks `--runs A B C` (space-separated) reaches the report."""
  out = tmp_path / 'cli'
  proc = subprocess.run([sys.executable, 'launch/report.py', '--runs', str(runs['a0']),
                         str(runs['a1']), str(runs['b']), f"--pair=expr_shuffled,{runs['a1']}",
                         '--out', str(out)], cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  md = (out / 'report.md').read_text()
  assert '3 runs in 2 experiments' in md
  assert 'NOT leave-one-drug-out' in md and 'cell-line-mean baseline' in md
  assert f"A = `{runs['b']}`" in md and f"B = `{runs['a1']}`" in md
  for name in figures_in(md):
    assert_image(out / name)


def test_labels_name_drug_representations_beyond_the_graph():
  base = {'data.cell_repr': 'expression', 'data.shuffle_cells': False,
          'split.name': 'leave_drug_out', 'model.name': 'seed', 'model.task': 'regression'}
  path = pathlib.Path('run')
  plain = 'expression · leave_drug_out · seed'
  assert report.describe(base, path) == plain   # a run older than drug representations
  assert report.describe({**base, 'data.drug_repr': 'graph', 'data.shuffle_drugs': False},
                         path) == plain
  assert report.describe({**base, 'data.drug_repr': 'graph+morgan', 'data.shuffle_drugs': True},
                         path) == 'expression · drugs: graph+morgan shuffled · leave_drug_out · seed'
  assert report.describe({**base, 'data.screening_batch': True, 'lodo.apart': 60.0}, path) == (
      'expression · screening batch · batch-mates within 60 ids dropped · leave_drug_out · seed')
  assert report.describe({**base, 'data.screening_batch': False, 'lodo.apart': 0.0}, path) == plain


def test_predictor_labels_say_what_each_is():
  assert report.predictor_label('stack').startswith('stack: network + classical')
  assert report.predictor_label('model_before_refit') == (
      'network: selected on validation, before its refit')
  assert report.predictor_label('tuned_kernel_ridge') == 'classical: kernel_ridge'
  assert report.predictor_label('type_drug_mean') == 'naive: type_drug_mean'
