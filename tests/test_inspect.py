"""launch/inspect_data.py: one JSON object; --dump_test writes the test pairs in split order."""

import csv
import json
import subprocess
import sys

import pytest

from cdr_jax import data
from cdr_jax.data import splits
from configs import test as test_config


def run_inspect(*args, env=None):
  out = subprocess.run([sys.executable, 'launch/inspect_data.py', *args], capture_output=True,
                       text=True, check=True, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_inspect_synthetic_and_dump(tmp_path):
  summary = run_inspect('--config=configs/test.py', f'--dump_test={tmp_path}/t.csv')
  cfg = test_config.get_config()
  ds = data.load_dataset(cfg.data)
  split = splits.make_split(ds, cfg.split)
  assert summary['instances'] == ds.num_pairs and summary['test'] == len(split.test)
  assert summary['dataset_bytes'] == ds.nbytes()
  rows = list(csv.reader(open(tmp_path / 't.csv')))
  assert rows[0] == ['cell_id', 'drug_id', 'ln_ic50'] and len(rows) == len(split.test) + 1
  first = split.test[0]
  assert rows[1][:2] == [ds.cell_ids[ds.pair_cell[first]], ds.drug_ids[ds.pair_drug[first]]]
  assert float(rows[1][2]) == pytest.approx(float(ds.pair_y[first]))


def test_inspect_real_legacy(data_root, tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  summary = run_inspect('--config=configs/scfoundation.py', f'--dump_test={tmp_path}/t.csv',
                        env={**os.environ, 'CDR_DATA_DIR': str(data_root)})
  assert (summary['instances'], summary['cells'], summary['drugs']) == (107446, 561, 223)
  assert (summary['train_plus_val'], summary['test']) == (89585, 4729)
  assert summary['dataset_bytes'] < 200e6


def test_inspect_rejects_unknown_variant():
  out = subprocess.run([sys.executable, 'launch/inspect_data.py', '--config=configs/test.py:bogus'],
                       capture_output=True, text=True)
  assert out.returncode != 0 and "unknown config variant 'bogus'" in out.stderr


def test_variants_joined_by_colons_get_a_hint():
  from configs import common  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='join variants with commas'):
    common.apply_variants(common.base_config(), 'shuffled:leave_cell_out')
  c = common.apply_variants(common.base_config(), 'shuffled,leave_cell_out')
  assert c.data.shuffle_cells and c.split.name == 'leave_cell_out'


def test_bad_input_is_one_line_exit_2(tmp_path):
  out = subprocess.run([sys.executable, 'launch/inspect_data.py', '--config=configs/scgpt.py'],
                       capture_output=True, text=True,
                       env={**__import__('os').environ, 'CDR_DATA_DIR': str(tmp_path)})
  assert out.returncode == 2
  assert out.stderr.strip().startswith('error: missing file') and 'Traceback' not in out.stderr
