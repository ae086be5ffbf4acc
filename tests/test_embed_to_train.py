"""The sidecar's files feed cdr_jax: real expression -> scGPT (random init, real architecture and
checkpoint format) -> .npy + ids -> `configs/scgpt.py` dataset -> a test-sized training run."""

import json

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from configs import scgpt as scgpt_config
from configs import test as test_config

from tests.conftest import require

require('torch')
from embed_torch import scgpt_embed  # pylint: disable=g-import-not-at-top,wrong-import-position

EXPRESSION = 'deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv'
N_CELLS = 40


def test_scgpt_embedding_trains_in_cdr_jax(data_root, tmp_path):
  root = tmp_path / 'data'
  root.mkdir()
  for name in ('deepcdr', 'scfoundation'):
    (root / name).symlink_to(data_root / name)
  (root / 'scgpt').mkdir()
  lines = (data_root / EXPRESSION).read_text().splitlines()
  csv = tmp_path / 'expr.csv'
  csv.write_text('\n'.join(lines[:N_CELLS + 1]) + '\n')
  ckpt = scgpt_embed.make_random_checkpoint(tmp_path / 'ckpt', data_root / 'scgpt/vocab.json',
                                            d_model=32, nlayers=2, nheads=4, d_hid=32)
  out = root / 'scgpt' / 'scgpt_embedding.npy'
  scgpt_embed.run(csv, ckpt, out, drop_nan_rows=True, fill_nan='zero', progress=False)
  meta = json.loads(out.with_suffix('.json').read_text())
  assert meta['model'].startswith('scgpt')

  config = scgpt_config.get_config('random_split')
  tiny = test_config.get_config()
  config.model, config.train, config.eval = tiny.model, tiny.train, tiny.eval
  config.data.root = str(root)
  config.train.num_epochs = 2
  ds = data.load_dataset(config.data)
  embedded = out.with_suffix('.cells.txt').read_text().split()
  assert list(ds.cell_ids) == [c for c in ds.cell_ids if c in embedded]
  assert len(ds.cell_ids) == len(embedded) <= N_CELLS and ds.cell_features.shape[1] == 32
  assert len(ds.drug_ids) == 223
  summary = experiment.train_and_evaluate(config, tmp_path / 'run')
  assert np.isfinite(summary['test']['model']['pcc'])
  assert summary['dataset']['cell_repr'] == 'scgpt'
