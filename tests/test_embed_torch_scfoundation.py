"""Tests of the scFoundation path of the sidecar against a stand-in scFoundation repository.

The stand-in (written to tmp_path) has the interface of github.com/biomap-research/scFoundation's
`model/load.py` (`convertconfig`, and `select_model` imported from `pretrainmodels`) and a small
model with `token_emb(x, output_weight=0)`, `pos_emb(ids)` and `encoder(x, padding_mask)`.
"""

import os
import pathlib
import textwrap

import numpy as np
import pytest

from tests.conftest import require

torch = require('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position
from embed_torch import CheckpointError, InputDataError
from embed_torch import io as eio
from embed_torch import scfoundation_embed

REPO = pathlib.Path(__file__).resolve().parents[1]
EXPRESSION = 'deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv'
GENE_LIST = 'scfoundation/OS_scRNA_gene_index.19264.tsv'
DIM = 16

LOAD_PY = '''
"""Stand-in for scFoundation's model/load.py: same names, same checkpoint layout."""
import collections
from pretrainmodels import select_model


def convertconfig(ckpt):
  model_type = ckpt['config']['model']
  config = dict(ckpt['config']['model_config'][model_type])
  config.update(ckpt['config']['dataset_config']['rnaseq'])
  config['model_type'] = model_type
  state = collections.OrderedDict((k.split('model.')[1], v) for k, v in ckpt['state_dict'].items())
  return {'config': config, 'model_state_dict': state}
'''

SELECT_MODEL_PY = '''
"""Stand-in for scFoundation's pretrainmodels.select_model: a tiny model, same call interface."""
import torch
from torch import nn


class TokenEmb(nn.Module):
  def __init__(self, dim):
    super().__init__()
    self.proj = nn.Linear(1, dim)

  def forward(self, x, output_weight=0):
    return self.proj(x)


class Encoder(nn.Module):
  def __init__(self, dim, depth, heads):
    super().__init__()
    layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True)
    self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

  def forward(self, x, padding_mask):
    return self.layers(x, src_key_padding_mask=padding_mask)


class TinyMae(nn.Module):
  def __init__(self, config):
    super().__init__()
    dim = config['encoder']['hidden_dim']
    self.token_emb = TokenEmb(dim)
    self.pos_emb = nn.Embedding(config['seq_len'] + 1, dim)
    self.encoder = Encoder(dim, config['encoder']['depth'], config['encoder']['heads'])
    self.decoder = nn.Linear(dim, 1)


def select_model(config):
  if config['model'] != 'mae_autobin':
    raise NotImplementedError('Unknown model type!')
  return TinyMae(config)
'''


@pytest.fixture(scope='module')
def shared_data() -> pathlib.Path:
  root = pathlib.Path(os.environ.get('CDR_DATA_DIR') or REPO.parent / 'shared' / 'data')
  assert (root / GENE_LIST).is_file(), f'{root}: no shared data (set CDR_DATA_DIR)'
  return root


def tiny_config():
  return {
      'model': 'mae_autobin',
      'model_config': {
          'mae_autobin': {
              'encoder': {
                  'hidden_dim': DIM,
                  'depth': 2,
                  'heads': 2
              },
              'decoder': {
                  'hidden_dim': DIM
              },
              'n_class': 104,
              'bin_num': 100,
              'bin_alpha': 1.0,
              'mask_token_id': 102,
              'pad_token_id': 103,
              'model': 'mae_autobin'
          }
      },
      'dataset_config': {
          'rnaseq': {
              'seq_len': 19266
          }
      }
  }


@pytest.fixture(scope='module')
def fake_repo(shared_data, tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
  """A stand-in repo dir (loader + gene list) and a checkpoint with a 'cell' entry."""
  repo = tmp_path_factory.mktemp('scf') / 'scFoundation'
  (repo / 'model' / 'pretrainmodels').mkdir(parents=True)
  (repo / 'model' / 'load.py').write_text(textwrap.dedent(LOAD_PY))
  (repo / 'model' / 'pretrainmodels' /
   '__init__.py').write_text('from pretrainmodels.select_model import select_model\n')
  (repo / 'model' / 'pretrainmodels' / 'select_model.py').write_text(
      textwrap.dedent(SELECT_MODEL_PY))
  (repo / 'OS_scRNA_gene_index.19264.tsv').write_bytes((shared_data / GENE_LIST).read_bytes())
  loader = scfoundation_embed.import_loader(repo)
  config = tiny_config()
  torch.manual_seed(0)
  model = loader.select_model(loader.convertconfig({'config': config, 'state_dict': {}})['config'])
  state = {f'model.{k}': v for k, v in model.state_dict().items()}
  ckpt = repo / 'model' / 'models' / 'models.ckpt'
  ckpt.parent.mkdir()
  torch.save({'cell': {'config': config, 'state_dict': state}}, ckpt)
  return repo, ckpt


@pytest.fixture(scope='module')
def expr_csv(shared_data, tmp_path_factory) -> pathlib.Path:
  lines = (shared_data / EXPRESSION).read_text().splitlines()
  path = tmp_path_factory.mktemp('expr') / 'expr.csv'
  path.write_text('\n'.join(lines[:9]) + '\n')  # 8 real cells, 7 of them lacking 6 genes
  return path


def run(expr_csv, fake_repo, out, **kwargs):
  repo, ckpt = fake_repo
  kwargs = {'fill_nan': 'zero', 'progress': False, **kwargs}
  scfoundation_embed.run(expr_csv, repo, ckpt, out, **kwargs)
  return eio.read_embedding(out)


def test_scfoundation_end_to_end(expr_csv, fake_repo, shared_data, tmp_path):
  emb, cells, meta = run(expr_csv, fake_repo, tmp_path / 'scf.npy', batch_size=3)
  header = expr_csv.read_text().splitlines()[0].split(',')[1:]
  listed = set(eio.read_gene_list(shared_data / GENE_LIST))
  assert emb.shape == (8, DIM) and emb.dtype == np.float32 and np.isfinite(emb).all()
  assert cells == [l.split(',')[0] for l in expr_csv.read_text().splitlines()[1:]]
  assert meta['model'] == 'scfoundation' and meta['genes_matched'] == sum(
      g in listed for g in header)
  assert meta['preprocessing']['normalisation'] == 'rowsum1e4_log1p'
  assert meta['preprocessing']['gene_list_alignment']['gene_list_size'] == 19264
  assert meta['checkpoint']['key'] == 'cell' and len(
      meta['checkpoint']['sha256']['models.ckpt']) == 64


def test_recipe_matches_a_hand_computed_cell(expr_csv, fake_repo, shared_data, tmp_path):
  """One cell by hand: align, x/sum*1e4 -> log1p, + log10(sum) twice, values > 0 only, max-pool."""
  emb, cells, _ = run(expr_csv, fake_repo, tmp_path / 'scf.npy', batch_size=4)
  emb1, _, _ = run(expr_csv, fake_repo, tmp_path / 'scf1.npy', batch_size=1)
  np.testing.assert_allclose(emb, emb1, rtol=1e-5, atol=1e-6)  # batching and padding do not matter
  genes = eio.read_gene_list(shared_data / GENE_LIST)
  expr = eio.read_expression(expr_csv)
  raw = np.nan_to_num(expr.values[3])
  x = np.zeros(len(genes))
  for j, g in enumerate(expr.genes):
    if g in genes:
      x[genes.index(g)] = raw[j]
  total = x.sum()
  tokens = np.concatenate([np.log1p(x / total * 1e4), [np.log10(total)] * 2])
  keep = np.flatnonzero(tokens > 0)
  model = scfoundation_embed.load_scfoundation(*fake_repo, 'cell', 'cpu').model
  with torch.no_grad():
    values = torch.tensor(tokens[keep], dtype=torch.float32)[None, :, None]
    h = model.token_emb(values, output_weight=0) + model.pos_emb(torch.tensor(keep)[None])
    expected = model.encoder(h, torch.zeros(1, len(keep), dtype=torch.bool)).amax(dim=1)[0].numpy()
  assert keep[-1] == 19265 and keep[-2] == 19264
  np.testing.assert_allclose(emb[3], expected, rtol=1e-5, atol=1e-6)
  assert cells[3] == expr.cells[3]


def test_same_seed_bitwise_identical(expr_csv, fake_repo, tmp_path):
  run(expr_csv, fake_repo, tmp_path / 'a.npy')
  run(expr_csv, fake_repo, tmp_path / 'b.npy')
  assert (tmp_path / 'a.npy').read_bytes() == (tmp_path / 'b.npy').read_bytes()


def test_missing_loader_is_refused(expr_csv, fake_repo, tmp_path):
  with pytest.raises(CheckpointError, match='model/load.py not found; --repo_dir must be a clone'):
    scfoundation_embed.run(expr_csv,
                           tmp_path,
                           fake_repo[1],
                           tmp_path / 'x.npy',
                           gene_list_path=fake_repo[0] / 'OS_scRNA_gene_index.19264.tsv',
                           fill_nan='zero')


def test_wrong_key_and_mismatching_weights_are_refused(fake_repo, tmp_path):
  repo, ckpt = fake_repo
  with pytest.raises(CheckpointError, match=r"no entry 'rde' \(--ckpt_key\); found \['cell'\]"):
    scfoundation_embed.load_scfoundation(repo, ckpt, 'rde', 'cpu')
  entry = torch.load(ckpt, weights_only=True)['cell']
  entry['config']['model_config']['mae_autobin']['encoder']['hidden_dim'] = 2 * DIM
  bad = tmp_path / 'bad.ckpt'
  torch.save({'cell': entry}, bad)
  with pytest.raises(CheckpointError) as e:
    scfoundation_embed.load_scfoundation(repo, bad, 'cell', 'cpu')
  assert str(bad) in str(e.value) and "built from the config stored under 'cell'" in str(e.value)
  assert 'shape mismatches (' in str(e.value) and 'checkpoint (16,) vs model (32,)' in str(e.value)
  with pytest.raises(CheckpointError, match='checkpoint file not found'):
    scfoundation_embed.load_scfoundation(repo, tmp_path / 'nope.ckpt', 'cell', 'cpu')


def test_no_overlap_with_gene_list_is_refused(fake_repo, tmp_path):
  path = tmp_path / 'bad.csv'
  path.write_text('DepMap_ID,NOT_A_GENE\nA,1\n')
  with pytest.raises(InputDataError, match='none of its 1 gene symbols is in the gene list'):
    run(path, fake_repo, tmp_path / 'x.npy')
