"""Embedding audit: an expression-derived embedding passes, a random one fails; bad input named.
The runs check reads run directories written by real tiny training runs (configs/test.py)."""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from cdr_jax import audit
from cdr_jax.errors import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
FAST = audit.Settings(permutations=50, probe_shuffles=2)
NUM_CELLS, NUM_GENES, TYPES = 120, 30, ('BRCA', 'LUAD', 'SKCM', 'COAD/READ')


def write_data(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """Expression with cancer-type structure, its annotations, and two embeddings of the same cells.

  'informative' is a noisy linear map of expression; 'random' is noise. Cell 0 is all-missing in
  the expression file and some values are NaN (both handled as in cells.load_expression).
  """
  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  ids = [f'ACH-{i:06d}' for i in range(NUM_CELLS)]
  label = np.arange(NUM_CELLS) % len(TYPES)
  centres = rng.normal(0, 2, (len(TYPES), NUM_GENES))
  latent = rng.normal(size=(NUM_CELLS, 3))
  expr = centres[label] + latent @ rng.normal(size=(3, NUM_GENES)) + rng.normal(
      0, 0.5, (NUM_CELLS, NUM_GENES))
  text = [['DepMap_ID'] + [f'G{g}' for g in range(NUM_GENES)]]
  for i, c in enumerate(ids):
    row = [f'{v:.5f}' for v in expr[i]]
    if i == 0:
      row = ['NaN'] * NUM_GENES
    elif i % 7 == 0:
      row[3] = 'NaN'
    text.append([c] + row)
  paths = {'expression': root / 'expression.csv', 'annotations': root / 'annotations.txt'}
  paths['expression'].write_text('\n'.join(','.join(r) for r in text) + '\n')
  ann = ['CCLE_ID\tdepMapID\tName\ttcga_code']
  ann += [f'C{i}\t{c}\tC{i}\t{"NA" if i % 25 == 3 else TYPES[label[i]]}' for i, c in enumerate(ids)]
  paths['annotations'].write_text('\n'.join(ann) + '\n')
  embeddings = {'informative': expr @ rng.normal(size=(NUM_GENES, 16)) + rng.normal(
      0, 0.5, (NUM_CELLS, 16)), 'random': rng.normal(size=(NUM_CELLS, 16))}
  for name, matrix in embeddings.items():
    np.save(root / f'{name}.npy', matrix.astype(np.float32))
    (root / f'{name}.cells.txt').write_text('\n'.join(ids) + '\n')
    paths[name] = root / f'{name}.npy'
  return paths


@pytest.fixture(scope='module')
def runs(tiny_runs) -> dict[str, pathlib.Path]:
  """A training run, a second seed of it, its shuffled-row control and a LODO sweep."""
  return {'real': tiny_runs.train('expr_s0'),
          'seed1': tiny_runs.train('expr_s1', overrides={'train.seed': 1}),
          'shuffled': tiny_runs.train('expr_shuffled', 'shuffled'), 'lodo': tiny_runs.sweep()}


def model_metrics(run: pathlib.Path) -> dict:
  return json.loads((run / 'metrics.json').read_text())['test']['model']


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
  return write_data(tmp_path_factory.mktemp('audit') / 'data')


def run(files, name: str, **kwargs) -> dict:
  return audit.run_audit(files[name], files['expression'], files['annotations'],
                         settings=FAST, **kwargs)


def test_informative_embedding_passes_with_small_p(files, runs, tmp_path):
  result = run(files, 'informative', runs=(runs['real'], runs['shuffled']), out=tmp_path / 'out')
  assert result['verdict'].startswith('VERDICT: the embedding carries expression biology')
  assert all(result['passes'].values()), result['passes']
  assert result['distance']['p'] <= 1 / (FAST.permutations + 1) + 1e-12
  assert result['distance']['spearman'] > 0.5
  assert result['knn']['accuracy'] > 2 * result['knn']['majority_rate']
  assert result['probe']['r2'] > 0.3 > result['probe']['shuffled_r2_max']
  assert result['distance']['cells'] == NUM_CELLS - 1       # the all-missing expression row
  assert result['knn']['cells'] == NUM_CELLS - 5            # 'NA' labels are not cancer types
  real, shuffled = model_metrics(runs['real']), model_metrics(runs['shuffled'])
  checked = result['runs']
  assert checked['real'] == {'run': str(runs['real']), 'pcc': real['pcc'],
                             'spearman': real['spearman'], 'rmse': real['rmse'],
                             'per_drug_pcc_mean': real['per_drug_pcc']['mean'],
                             'shuffle_cells': False}
  assert checked['shuffled']['shuffle_cells'] is True
  assert checked['pcc_gain'] == pytest.approx(real['pcc'] - shuffled['pcc'])
  assert not checked['warnings']
  md = (tmp_path / 'out/audit.md').read_text()
  assert result['verdict'] in md
  assert f"| real: `{runs['real']}` | {real['pcc']:.4f} | {real['spearman']:.4f} |" in md
  assert f"{real['pcc'] - shuffled['pcc']:+.4f}" in md
  assert json.loads((tmp_path / 'out/audit.json').read_text())['verdict'] == result['verdict']


def test_random_embedding_has_no_evidence(files):
  result = run(files, 'random')
  assert result['verdict'].startswith('VERDICT: no evidence'), result['verdict']
  assert result['distance']['p'] > 0.05
  assert result['probe']['r2'] < 0.05
  # The positive control does not depend on the embedding: expression itself separates the types.
  assert result['reference_expression_knn']['accuracy'] > 0.8


def test_row_id_mismatch_names_the_file(files, tmp_path):
  bad = tmp_path / 'bad.npy'
  np.save(bad, np.zeros((5, 4), np.float32))
  (tmp_path / 'bad.cells.txt').write_text('ACH-000001\nACH-000002\n')
  with pytest.raises(DataError, match=r'bad\.npy: 5 rows but .*bad\.cells\.txt lists 2 ids'):
    audit.run_audit(bad, files['expression'], files['annotations'], settings=FAST)


def test_no_shared_cells_names_both_files(files, tmp_path):
  other = tmp_path / 'other.npy'
  np.save(other, np.ones((30, 4), np.float32))
  (tmp_path / 'other.cells.txt').write_text('\n'.join(f'X{i}' for i in range(30)))
  with pytest.raises(DataError, match='other.npy: only 0 of its cell ids have a cancer type'):
    audit.run_audit(other, files['expression'], files['annotations'], settings=FAST)


def test_run_without_metrics_names_the_file(files, runs, tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataError, match=re.escape(str(tmp_path / 'empty' / 'metrics.json'))):
    run(files, 'random', runs=(runs['real'], tmp_path / 'empty'))
  # A LODO sweep has no test metrics of one model.
  with pytest.raises(DataError, match=re.escape(f"{runs['lodo'] / 'metrics.json'}: no test.model")):
    audit.runs_check(runs['real'], runs['lodo'])


def test_unshuffled_control_is_flagged(runs):
  result = audit.runs_check(runs['real'], runs['seed1'])
  assert result['warnings'] == [f"{runs['seed1'] / 'config.json'} does not set "
                                'data.shuffle_cells: is it really the shuffled-row control?']
  swapped = audit.runs_check(runs['shuffled'], runs['real'])
  assert len(swapped['warnings']) == 2
  assert 'the "real" run is itself shuffled' in swapped['warnings'][1]


def test_launch_script(files, tmp_path):
  out = tmp_path / 'cli'
  proc = subprocess.run(
      [sys.executable, 'launch/audit_embeddings.py', f"--embedding={files['random']}",
       f"--expression={files['expression']}", f"--annotations={files['annotations']}",
       f'--out={out}'], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith('VERDICT: no evidence')
  assert (out / 'audit.json').is_file()


def test_published_scfoundation_embedding(data_root, tmp_path):
  """The real embedding against the real expression; the expression positive control must work."""
  result = audit.run_audit(
      data_root / 'scfoundation/50M-0.1B-res_embedding.npy', data_root / audit.EXPRESSION_FILE,
      data_root / audit.ANNOTATION_FILE, out=tmp_path,
      settings=audit.Settings(permutations=50, probe_shuffles=1))
  print(result['verdict'])
  assert result['shape'] == [561, 768]
  assert result['distance']['cells'] == 527 and result['probe']['genes'] == 697
  assert result['reference_expression_knn']['accuracy'] > 0.4
  for check in ('knn', 'distance'):
    assert 0 < result[check]['p'] <= 1
  assert np.isfinite(result['probe']['r2'])
  assert (tmp_path / 'audit.md').is_file()
