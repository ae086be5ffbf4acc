"""Report rendering from small fake run directories (no training: files are written directly)."""

import json
import pathlib
import re
import subprocess
import sys

from matplotlib import image as mpimg
import numpy as np
import pytest

from cdr_jax import report
from cdr_jax.errors import DataError
from cdr_jax.eval import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
BASELINES = ('global_mean', 'drug_mean', 'cell_mean', 'additive')


def write_csv(path: pathlib.Path, header: list[str], rows: list[list]) -> None:
  lines = [','.join(header)] + [','.join(str(v) for v in row) for row in rows]
  path.write_text('\n'.join(lines) + '\n')


def write_fake_run(path: pathlib.Path, seed: int, cell_repr: str = 'expression',
                   shuffled: bool = False, epochs: int = 4, split: str = 'random',
                   fold: int = 0) -> dict:
  """A finished regression run in cdr_jax.outputs' formats; returns its metrics.json."""
  rng = np.random.default_rng(seed + 100 * shuffled)
  path.mkdir(parents=True)
  config = {'data': {'source': 'synthetic', 'cell_repr': cell_repr, 'shuffle_cells': shuffled},
            'split': {'name': split, 'seed': seed, 'fold': fold},
            'model': {'name': 'seed', 'task': 'regression'},
            'train': {'seed': seed, 'num_epochs': epochs, 'progress': False}}
  (path / 'config.json').write_text(json.dumps(config, indent=2))
  write_csv(path / 'history.csv', ['epoch', 'step', 'train_loss', 'val_pcc', 'val_spearman',
                                   'val_rmse', 'val_auroc', 'seconds'],
            [[e, 3 * (e + 1), 2.0 / (e + 1), 0.5 + 0.1 * e + 0.05 * rng.random(), 0.4, 1.5, '',
              0.1] for e in range(epochs)])
  cells = [f'ACH-{i:06d}' for i in range(16)]
  types = ['BRCA', 'LUAD', 'SKCM']
  drugs = [(f'{1000 + d}', f'drug {d}') for d in range(10)]
  pairs = [(c, d) for c in range(16) for d in range(10) if rng.random() < 0.8]
  cell = np.array([p[0] for p in pairs])
  drug = np.array([p[1] for p in pairs])
  ctype = cell % 3
  obs = rng.normal(2, 2, len(pairs))
  pred = obs + rng.normal(0, 1.0 + 0.5 * shuffled, len(pairs))
  write_csv(path / 'predictions.csv',
            ['cell_id', 'drug_id', 'cancer_type', 'observed', 'predicted'],
            [[cells[c], drugs[d][0], types[t], f'{o:.5f}', f'{p:.5f}']
             for c, d, t, o, p in zip(cell, drug, ctype, obs, pred)])
  base_cols = [f'{b}_pcc' for b in BASELINES]
  for key, group, names in (('drug', drug, [d[0] for d in drugs]), ('cell', cell, cells),
                            ('type', ctype, types)):
    rows = []
    for r in metrics.per_group(pred, obs, group, names):
      extra = [drugs[[d[0] for d in drugs].index(r['group'])][1]] if key == 'drug' else []
      rows.append([r['group'], r['n'], *extra, r['pcc'], r['spearman'], r['rmse'],
                   'nan', *rng.uniform(-1, 1, len(BASELINES) - 1).round(4)])
    head = [key, 'n'] + (['drug_name'] if key == 'drug' else [])
    write_csv(path / f'per_{key}.csv', head + ['model_pcc', 'model_spearman', 'model_rmse'] +
              base_cols, rows)
  test = {'model': {**metrics.regression(pred, obs),
                    'per_drug_pcc': metrics.summarize_groups(metrics.per_group(pred, obs, drug,
                                                                               range(10)))}}
  for i, b in enumerate(BASELINES):
    noisy = obs + rng.normal(0, 1 + i, len(obs))
    test[b] = {**metrics.regression(noisy, obs), 'per_drug_pcc': {'mean': 0.1 * i, 'median': 0.1}}
  test['global_mean']['pcc'] = float('nan')  # As the real global-mean baseline writes it.
  summary = {'split': {'name': 'random'}, 'selection': {'best_epoch': epochs - 1},
             'task': 'regression', 'test': test}
  (path / 'metrics.json').write_text(json.dumps(summary))
  return summary


def write_fake_lodo(path: pathlib.Path, num_drugs: int = 50) -> None:
  """A LODO sweep directory as cdr_jax.lodo writes it (per-drug table, summary, config)."""
  rng = np.random.default_rng(7)
  path.mkdir(parents=True)
  config = {'data': {'cell_repr': 'scfoundation', 'shuffle_cells': False},
            'split': {'name': 'leave_drug_out', 'seed': 0}, 'model': {'name': 'seed'},
            'train': {'seed': 0}}
  (path / 'config.json').write_text(json.dumps(config))
  rows = []
  for d in range(num_drugs):
    pcc, naive = rng.uniform(0, 0.8), rng.uniform(0, 0.7)
    rows.append([f'{2000 + d}', f'lodo drug {d}', 30, 5, 0.5, f'{pcc:.4f}', 0.3, 1.2,
                 f'{naive:.4f}', f'{pcc - naive:.4f}'])
  write_csv(path / 'lodo_per_drug.csv', ['drug_id', 'drug_name', 'n', 'best_epoch', 'val_score',
                                         'pcc', 'spearman', 'rmse', 'naive_pcc', 'gain'], rows)
  (path / 'lodo_summary.json').write_text(json.dumps({'folds': num_drugs, 'per_drug_pcc_mean': 0.4,
                                                      'cell_repr': 'scfoundation'}))


@pytest.fixture
def runs(tmp_path) -> dict[str, pathlib.Path]:
  out = {'a0': tmp_path / 'runs/expr_s0', 'a1': tmp_path / 'runs/expr_s1',
         'b': tmp_path / 'runs/expr_shuffled', 'lodo': tmp_path / 'runs/lodo'}
  write_fake_run(out['a0'], seed=0)
  write_fake_run(out['a1'], seed=1)
  write_fake_run(out['b'], seed=0, shuffled=True)
  write_fake_lodo(out['lodo'])
  return out


def assert_image(path: pathlib.Path) -> None:
  """A decodable PNG, of a reasonable size, that is not a blank canvas."""
  img = mpimg.imread(path)
  assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, img.shape
  assert img[..., :3].std() > 0.02


def figures_in(md: str) -> list[str]:
  return re.findall(r'!\[[^\]]*\]\(([^)]+)\)', md)


def test_report_renders_every_figure_and_table(runs, tmp_path):
  out = tmp_path / 'report'
  path = report.build_report([str(runs[k]) for k in ('a0', 'a1', 'b', 'lodo')], out)
  md = path.read_text()
  figs = figures_in(md)
  assert set(figs) == {'fig2_pair_pcc.png', 'fig3_best_type_drug.png', 'fig4_drug_gain_1.png',
                       'fig5_val_pcc.png'}
  for name in figs:
    assert_image(out / name)
  assert sorted(p.name for p in out.glob('*.png')) == sorted(figs)
  assert not list(out.glob('.*.tmp'))  # Atomic writes leave no temp files behind.
  # The two seeds form one row with mean ± sd of the model's test PCC.
  pcc = [json.loads((runs[k] / 'metrics.json').read_text())['test']['model']['pcc']
         for k in ('a0', 'a1')]
  expected = f'{np.mean(pcc):.4f} ± {np.std(pcc, ddof=1):.4f}'
  row = next(line for line in md.splitlines() if line.startswith('| R1 | expression · random'))
  assert f'| 2 | {expected} |' in row
  assert re.search(r'\| R2 \| expression shuffled · random · seed \| 1 \| \d\.\d{4} \|', md)
  for b in BASELINES:
    assert f'naive: {b}' in md
  assert '| R1 | naive: global_mean | 2 | n/a |' in md
  assert 'leave-one-drug-out sweep' in md and 'lodo_summary.json' in md
  assert '| R3 | scfoundation · leave_drug_out · seed (LODO sweep) |' in md


def test_grouping_by_config_without_seeds(runs):
  loaded = [report.load_run(runs[k]) for k in ('a0', 'b', 'a1')]
  groups = report.group_runs(loaded)
  assert [[r.path.name for r in g] for g in groups] == [['expr_s0', 'expr_s1'], ['expr_shuffled']]
  assert loaded[1].label == 'expression shuffled · random · seed'


def test_cross_validation_folds_are_one_experiment(tmp_path):
  """The folds of a leave_cell_out run form one row (mean ± sd over folds); another split does not
  join them, and the per-run table names each fold."""
  dirs = [tmp_path / f'lco_f{f}' for f in range(3)] + [tmp_path / 'random_f0']
  for f, d in enumerate(dirs[:3]):
    write_fake_run(d, seed=0, split='leave_cell_out', fold=f)
  write_fake_run(dirs[3], seed=0, split='random', fold=0)
  groups = report.group_runs([report.load_run(d) for d in dirs])
  assert [[r.path.name for r in g] for g in groups] == [['lco_f0', 'lco_f1', 'lco_f2'],
                                                        ['random_f0']]
  md = report.build_report([str(d) for d in dirs], tmp_path / 'report').read_text()
  pcc = [json.loads((d / 'metrics.json').read_text())['test']['model']['pcc'] for d in dirs[:3]]
  row = next(line for line in md.splitlines()
             if line.startswith('| R1 | expression · leave_cell_out'))
  assert f'| 3 | {np.mean(pcc):.4f} ± {np.std(pcc, ddof=1):.4f} |' in row
  assert re.search(r'\| `[^`]*lco_f2` \| R1 \| [^|]+ \| 0 \| 0 \| 2 \|', md)


def test_missing_metrics_names_the_file(runs, tmp_path):
  (runs['a0'] / 'metrics.json').unlink()
  with pytest.raises(DataError, match=re.escape(str(runs['a0'] / 'metrics.json'))):
    report.build_report([str(runs['a0']), str(runs['b'])], tmp_path / 'report')
  with pytest.raises(DataError, match='does not exist'):
    report.load_run(tmp_path / 'nowhere')
  write_csv(runs['lodo'] / 'lodo_per_drug.csv', ['drug_id', 'auroc'], [['1', '0.7']])
  with pytest.raises(DataError, match=r'lodo_per_drug.csv: no column pcc, naive_pcc'):
    report.load_run(runs['lodo'])


def test_missing_table_names_the_file(runs, tmp_path):
  (runs['a0'] / 'per_type.csv').unlink()
  with pytest.raises(DataError, match='per_type.csv'):
    report.build_report([str(runs['a0']), str(runs['b'])], tmp_path / 'report')


def test_bad_pair_lists_the_choices(runs):
  loaded = [report.load_run(runs[k]) for k in ('a0', 'b')]
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


def test_seed_ensemble_row_when_test_pairs_match(runs, tmp_path):
  """Repeats scored on the same test pairs get a row for their mean prediction; repeats on
  different pairs (the fixture's two seeds draw different pairs) get none."""
  import shutil  # pylint: disable=g-import-not-at-top
  twin = tmp_path / 'runs/expr_s0_twin'
  shutil.copytree(runs['a0'], twin)
  config = json.loads((twin / 'config.json').read_text())
  config['train']['seed'] = 5
  (twin / 'config.json').write_text(json.dumps(config))
  lines = (twin / 'predictions.csv').read_text().splitlines()
  rng = np.random.default_rng(3)
  rows = [line.split(',') for line in lines[1:]]
  for row in rows:
    row[4] = f'{float(row[4]) + rng.normal(0, 1.5):.5f}'
  (twin / 'predictions.csv').write_text('\n'.join([lines[0]] + [','.join(r) for r in rows]) + '\n')
  obs = np.array([float(r[3]) for r in rows])
  a = report.predictions(report.load_run(runs['a0']))['predicted']
  mean_pred = (a + np.array([float(r[4]) for r in rows])) / 2
  md = report.build_report([str(runs['a0']), str(twin)], tmp_path / 'rep').read_text()
  row = next(line for line in md.splitlines() if 'ensemble: mean prediction of the 2 runs' in line)
  assert row.startswith('| R1 |')
  assert f'| 1 | {metrics.pcc(mean_pred, obs):.4f} |' in row
  md = report.build_report([str(runs['a0']), str(runs['a1'])], tmp_path / 'rep2').read_text()
  assert 'ensemble: mean prediction' not in md
