"""Tests of the PyTorch sidecar: scGPT end to end on a random-init model of the real architecture.

The model is scgpt's own TransformerModel (small sizes), saved as a real checkpoint directory with
the real vocab.json; the input is the first rows of the real expression csv.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import require

torch = require('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position
from embed_torch import CheckpointError, EmbedError, InputDataError
from embed_torch import io as eio
from embed_torch import preprocess, scgpt_embed, torchtext_shim
from embed_torch.__main__ import main

REPO = pathlib.Path(__file__).resolve().parents[1]
EXPRESSION = 'deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv'
N_ROWS = 20
ALL_NAN_LINE = 30  # ACH-000438: a row that is entirely NaN in the real file
D_MODEL, N_LAYERS = 32, 2


@pytest.fixture(scope='module')
def shared_data() -> pathlib.Path:
  root = pathlib.Path(os.environ.get('CDR_DATA_DIR') or REPO.parent / 'shared' / 'data')
  assert (root / 'scgpt' / 'vocab.json').is_file(), f'{root}: no shared data (set CDR_DATA_DIR)'
  return root


@pytest.fixture(scope='module')
def expr_csv(shared_data, tmp_path_factory) -> pathlib.Path:
  """Header + the first 20 real rows (18 lack 6 genes) + one entirely-NaN real row."""
  lines = (shared_data / EXPRESSION).read_text().splitlines()
  path = tmp_path_factory.mktemp('expr') / 'expr.csv'
  path.write_text('\n'.join(lines[:N_ROWS + 1] + [lines[ALL_NAN_LINE]]) + '\n')
  return path


@pytest.fixture(scope='module')
def ckpt(shared_data, tmp_path_factory) -> pathlib.Path:
  return scgpt_embed.make_random_checkpoint(tmp_path_factory.mktemp('ckpt') / 'tiny',
                                            shared_data / 'scgpt' / 'vocab.json',
                                            d_model=D_MODEL,
                                            nlayers=N_LAYERS,
                                            nheads=4,
                                            d_hid=32)


def embed(expr_csv, ckpt, out, **kwargs):
  """Run the scGPT pipeline with the test defaults and read the outputs back."""
  kwargs = {'drop_nan_rows': True, 'fill_nan': 'zero', 'progress': False, **kwargs}
  scgpt_embed.run(expr_csv, ckpt, out, **kwargs)
  return eio.read_embedding(out)


@pytest.fixture(scope='module')
def seed0(expr_csv, ckpt, tmp_path_factory):
  out = tmp_path_factory.mktemp('out') / 'emb.npy'
  return out, embed(expr_csv, ckpt, out)


def csv_ids_and_genes(path):
  lines = path.read_text().splitlines()
  return [l.split(',')[0] for l in lines[1:]], lines[0].split(',')[1:]


def test_scgpt_end_to_end_outputs(seed0, expr_csv, ckpt):
  out, (emb, cells, meta) = seed0
  ids, genes = csv_ids_and_genes(expr_csv)
  vocab = json.loads((ckpt / 'vocab.json').read_text())
  assert emb.shape == (N_ROWS, D_MODEL) and emb.dtype == np.float32
  assert cells == ids[:N_ROWS]  # input order, the all-NaN row dropped
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
  assert meta['model'] == 'scgpt' and meta['seed'] == 0
  assert meta['genes_matched'] == sum(g in vocab for g in genes) > 600
  assert meta['preprocessing']['nan']['dropped_cells'] == [ids[-1]]
  assert meta['preprocessing']['nan']['nan_values_filled'] == 6 * 18
  assert meta['preprocessing']['cells_subsampled'] == 0
  digest = hashlib.sha256((ckpt / 'best_model.pt').read_bytes()).hexdigest()
  assert meta['checkpoint']['sha256']['best_model.pt'] == digest
  assert set(meta['checkpoint']['sha256']) == {'best_model.pt', 'args.json', 'vocab.json'}
  assert meta['checkpoint']['flash_attn_keys_renamed'] == 2 * N_LAYERS
  assert 'cls_decoder.out_layer.weight' in meta['checkpoint']['skipped_head_keys']
  assert meta['versions']['torch'] and meta['versions']['scgpt'] == '0.2.4'
  assert sorted(p.name for p in out.parent.iterdir()) == ['emb.cells.txt', 'emb.json', 'emb.npy']


def test_same_seed_is_bitwise_identical(seed0, expr_csv, ckpt, tmp_path):
  out, (emb, cells, _) = seed0
  emb2, cells2, _ = embed(expr_csv, ckpt, tmp_path / 'again.npy')
  assert cells2 == cells
  assert (tmp_path / 'again.npy').read_bytes() == out.read_bytes()
  assert np.array_equal(emb, emb2)


def test_other_seed_keeps_shape_and_ids(seed0, expr_csv, ckpt, tmp_path):
  _, (emb, cells, _) = seed0
  emb1, cells1, meta1 = embed(expr_csv, ckpt, tmp_path / 'seed1.npy', seed=1)
  assert emb1.shape == emb.shape and cells1 == cells and meta1['seed'] == 1


def test_bin_values_ties_are_seeded():
  values = np.repeat(np.arange(1.0, 6.0), 20)  # 5 distinct values, 20 ties each
  bins = [scgpt_embed.bin_values(values, 51, np.random.default_rng(s)) for s in (0, 0, 1)]
  assert np.array_equal(bins[0], bins[1]) and not np.array_equal(bins[0], bins[2])
  for b in bins:
    assert b.min() >= 1 and b.max() <= 50
    for lo, hi in zip(range(1, 5), range(2, 6)):  # larger values never get smaller bins
      assert b[values == lo].max() <= b[values == hi].min()
  distinct = np.linspace(0.5, 9.0, 200)  # no ties: no randomness at all
  assert np.array_equal(scgpt_embed.bin_values(distinct, 51, np.random.default_rng(0)),
                        scgpt_embed.bin_values(distinct, 51, np.random.default_rng(7)))


def test_max_length_subsamples_reproducibly(expr_csv, ckpt, tmp_path):
  emb, _, meta = embed(expr_csv, ckpt, tmp_path / 'a.npy', max_length=100)
  emb2, _, _ = embed(expr_csv, ckpt, tmp_path / 'b.npy', max_length=100)
  assert meta['preprocessing']['cells_subsampled'] == N_ROWS
  assert meta['preprocessing']['tokens_per_cell_including_cls']['max'] == 100
  assert np.array_equal(emb, emb2)


def test_torch_named_checkpoint_gives_same_embedding(seed0, expr_csv, shared_data, tmp_path):
  """Wqkv -> in_proj_ renaming: the same weights under torch's names embed identically."""
  ckpt_torch = scgpt_embed.make_random_checkpoint(tmp_path / 'torch_names',
                                                  shared_data / 'scgpt' / 'vocab.json',
                                                  d_model=D_MODEL,
                                                  nlayers=N_LAYERS,
                                                  nheads=4,
                                                  d_hid=32,
                                                  flash_names=False)
  state = torch.load(ckpt_torch / 'best_model.pt', weights_only=True)
  assert any('in_proj_weight' in k for k in state) and not any('Wqkv' in k for k in state)
  emb, _, meta = embed(expr_csv, ckpt_torch, tmp_path / 'e.npy')
  assert meta['checkpoint']['flash_attn_keys_renamed'] == 0
  assert np.array_equal(emb, seed0[1][0])


def copy_ckpt(ckpt, dst, args_change=None, state_change=None):
  """A copy of the checkpoint dir with args.json and/or the state_dict edited."""
  dst.mkdir()
  args = json.loads((ckpt / 'args.json').read_text())
  if args_change:
    args_change(args)
  (dst / 'args.json').write_text(json.dumps(args))
  (dst / 'vocab.json').write_bytes((ckpt / 'vocab.json').read_bytes())
  state = torch.load(ckpt / 'best_model.pt', weights_only=True)
  if state_change:
    state_change(state)
  torch.save(state, dst / 'best_model.pt')
  return dst


def test_extra_head_keys_are_skipped_and_reported(ckpt, tmp_path):

  def add_flag_encoder(
      state):  # the official whole-human file has the generative model's flag encoder
    state['flag_encoder.weight'] = torch.zeros(2, D_MODEL)

  loaded = scgpt_embed.load_scgpt(copy_ckpt(ckpt, tmp_path / 'c', state_change=add_flag_encoder))
  assert 'flag_encoder.weight' in loaded.skipped_head_keys


def test_batch_norm_checkpoint_is_refused(ckpt, tmp_path):
  def add_dsbn(state):
    state['dsbn.bns.0.running_mean'] = torch.zeros(D_MODEL)
  with pytest.raises(CheckpointError, match='batch-label or batch-norm modules'):
    scgpt_embed.load_scgpt(copy_ckpt(ckpt, tmp_path / 'c', state_change=add_dsbn))


@pytest.mark.parametrize('args_change,state_change,expected', [
    (lambda a: a.update(nlayers=N_LAYERS - 1), None,
     'unexpected keys (12): transformer_encoder.layers.1.'),
    (lambda a: a.update(nlayers=N_LAYERS + 1), None,
     'missing keys (12): transformer_encoder.layers.2.'),
    (lambda a: a.update(embsize=64), None,
     'encoder.embedding.weight: checkpoint (60697, 32) vs model (60697, 64)'),
    (None, lambda s: s.pop('value_encoder.norm.weight'),
     'missing keys (1): value_encoder.norm.weight'),
    (None, lambda s: s.update({'transformer_encoder.extra': torch.zeros(1)}),
     'unexpected keys (1): transformer_encoder.extra'),
])
def test_checkpoint_not_fitting_args_names_keys(ckpt, tmp_path, args_change, state_change,
                                                expected):
  bad = copy_ckpt(ckpt, tmp_path / 'bad', args_change, state_change)
  with pytest.raises(CheckpointError) as e:
    scgpt_embed.load_scgpt(bad)
  assert str(bad / 'best_model.pt') in str(e.value) and expected in str(e.value)


@pytest.mark.parametrize('name', ['best_model.pt', 'args.json', 'vocab.json'])
def test_missing_checkpoint_file(ckpt, tmp_path, name):
  bad = copy_ckpt(ckpt, tmp_path / 'bad')
  (bad / name).unlink()
  with pytest.raises(CheckpointError, match=f'missing checkpoint file.*{name}'):
    scgpt_embed.load_scgpt(bad)


def test_args_json_missing_key(ckpt, tmp_path):
  bad = copy_ckpt(ckpt, tmp_path / 'bad', args_change=lambda a: a.pop('nheads'))
  with pytest.raises(CheckpointError, match=r"args.json: missing key\(s\) \['nheads'\]"):
    scgpt_embed.load_scgpt(bad)


def write_csv(tmp_path, text):
  path = tmp_path / 'bad.csv'
  path.write_text(text)
  return path


@pytest.mark.parametrize('text,message', [
    ('DepMap_ID,TP53,EGFR,TP53\nA,1,2,3\n', "duplicate gene symbol 'TP53' at columns 1 and 3"),
    ('DepMap_ID,TP53,EGFR\nA,1,2\nB,1,2\nA,3,4\n', "duplicate cell id 'A' at rows 1 and 3"),
    ('DepMap_ID,TP53,EGFR\nA,1,2\nB,1,high\n',
     "non-numeric value 'high' for cell 'B', gene 'EGFR'"),
])
def test_bad_csv_is_refused_by_name(tmp_path, text, message):
  path = write_csv(tmp_path, text)
  with pytest.raises(InputDataError) as e:
    eio.read_expression(path)
  assert str(path) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize('text,kwargs,message', [
    ('DepMap_ID,TP53,EGFR\nA,1,2\nB,NaN,NaN\n', {},
     "1 cell(s) have no known value (entirely NaN): 'B'"),
    ('DepMap_ID,TP53,EGFR\nA,1,2\nB,3,NaN\n', {},
     "first at cell 'B', gene 'EGFR'; pass --fill_nan"),
    ('DepMap_ID,TP53,EGFR\nA,1,2\nB,3,NaN\n', {
        'drop_nan_rows': True
    }, "first at cell 'B', gene 'EGFR'"),
    ('DepMap_ID,TP53,EGFR\nA,1,-2\n', {
        'fill_nan': 'zero'
    }, "negative value(s), first -2 at cell 'A', gene 'EGFR'"),
    ('DepMap_ID,TP53,EGFR\nA,1,NaN\nB,2,NaN\n', {
        'fill_nan': 'gene_mean'
    }, "gene(s) 'EGFR' are NaN in every cell"),
])
def test_nan_and_bad_values_are_refused_by_name(tmp_path, text, kwargs, message):
  path = write_csv(tmp_path, text)
  kwargs = {'drop_nan_rows': False, 'fill_nan': None, **kwargs}
  with pytest.raises(InputDataError) as e:
    preprocess.handle_nan(eio.read_expression(path), **kwargs)
  assert str(path) in str(e.value) and message in str(e.value)


def test_no_gene_in_vocab_is_refused(ckpt, tmp_path):
  path = write_csv(tmp_path, 'DepMap_ID,NOT_A_GENE,ALSO_NOT\nA,1,2\n')
  with pytest.raises(InputDataError,
                     match='none of its 2 gene symbols .* is in the scGPT vocabulary'):
    scgpt_embed.run(path, ckpt, tmp_path / 'x.npy', progress=False)
  assert not (tmp_path / 'x.npy').exists()


def test_fill_and_normalisation_formulas(tmp_path):
  path = write_csv(tmp_path, 'DepMap_ID,G1,G2,G3\nA,1,NaN,3\nB,3,4,0\nC,NaN,NaN,NaN\n')
  expr, report = preprocess.handle_nan(eio.read_expression(path),
                                       drop_nan_rows=True,
                                       fill_nan='gene_mean')
  assert expr.cells == ['A', 'B'
                       ] and report['dropped_cells'] == ['C'] and report['nan_values_filled'] == 1
  x = np.array([[1.0, 4.0, 3.0], [3.0, 4.0, 0.0]])
  np.testing.assert_array_equal(expr.values, x)
  cpm = preprocess.normalise(expr, 'cpm_log10').values
  np.testing.assert_allclose(cpm, np.log10(x / x.sum(1, keepdims=True) * 1e6 + 1))
  scf = preprocess.normalise(expr, 'rowsum1e4_log1p').values
  np.testing.assert_allclose(scf, np.log1p(x / x.sum(1, keepdims=True) * 1e4))
  aligned, info = preprocess.align_genes(expr, ['G3', 'NEW', 'G1'])
  np.testing.assert_array_equal(aligned.values, [[3.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
  assert info['input_genes_matched'] == 2 and info['input_genes_not_in_list'] == ['G2']


def test_h5ad_input_matches_csv(seed0, expr_csv, ckpt, tmp_path):
  anndata = require('anndata')
  expr, _ = preprocess.handle_nan(eio.read_expression(expr_csv),
                                  drop_nan_rows=True,
                                  fill_nan='zero')
  adata = anndata.AnnData(X=expr.values)
  adata.obs_names, adata.var_names = expr.cells, expr.genes
  adata.var['symbol'] = expr.genes
  adata.write_h5ad(tmp_path / 'expr.h5ad')
  emb, cells, _ = embed(tmp_path / 'expr.h5ad', ckpt, tmp_path / 'e.npy', gene_column='symbol')
  assert cells == seed0[1][1] and np.array_equal(emb, seed0[1][0])


def test_cli_in_a_fresh_process_never_imports_jax(seed0, expr_csv, ckpt, tmp_path):
  """`python -m embed_torch scgpt` end to end; io needs no torch and nothing pulls in jax."""
  out = tmp_path / 'cli.npy'
  argv = [
      'scgpt', '--checkpoint_dir',
      str(ckpt), '--expression',
      str(expr_csv), '--out',
      str(out), '--drop_nan_rows', '--fill_nan', 'zero', '--quiet'
  ]
  code = ('import sys, runpy, embed_torch.io, embed_torch.preprocess\n'
          'assert "torch" not in sys.modules, "embed_torch.io imported torch"\n'
          'import embed_torch.scfoundation_embed\n'
          f'sys.argv = ["embed_torch"] + {argv!r}\n'
          'try:\n'
          '  runpy.run_module("embed_torch", run_name="__main__")\n'
          'finally:\n'
          '  assert "jax" not in sys.modules, "the sidecar imported jax"\n')
  env = {**os.environ, 'PYTHONPATH': str(REPO)}
  done = subprocess.run([sys.executable, '-c', code],
                        cwd=REPO,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=300,
                        check=False)
  assert done.returncode == 0, done.stderr
  assert out.read_bytes() == seed0[0].read_bytes()  # also identical across processes
  assert out.with_suffix('.cells.txt').read_text().split() == seed0[1][1]


def test_cli_error_is_one_line_and_exit_2(expr_csv, ckpt, tmp_path, capsys):
  code = main([
      'scgpt', '--checkpoint_dir',
      str(ckpt), '--expression',
      str(expr_csv), '--out',
      str(tmp_path / 'x.npy'), '--quiet'
  ])
  err = capsys.readouterr().err
  assert code == 2 and 'embed_torch scgpt: error:' in err and '--drop_nan_rows' in err
  assert main([
      'scgpt', '--checkpoint_dir',
      str(ckpt), '--expression',
      str(expr_csv), '--out',
      str(tmp_path / 'x.txt')
  ]) == 2
  assert 'must end in .npy' in capsys.readouterr().err


def test_make_random_scgpt_cli(shared_data, tmp_path):
  out = tmp_path / 'rand'
  assert main([
      'make_random_scgpt', '--out',
      str(out), '--vocab',
      str(shared_data / 'scgpt' / 'vocab.json'), '--d_model', '16', '--nlayers', '1', '--nheads',
      '2', '--d_hid', '16'
  ]) == 0
  args = json.loads((out / 'args.json').read_text())
  assert {
      k: args[k] for k in ('embsize', 'nlayers', 'nheads', 'd_hid', 'n_bins', 'pad_value')
  } == {
      'embsize': 16,
      'nlayers': 1,
      'nheads': 2,
      'd_hid': 16,
      'n_bins': 51,
      'pad_value': -2
  }
  assert args['fast_transformer'] and args['MVC'] and args['input_emb_style'] == 'continuous'
  state = torch.load(out / 'best_model.pt', weights_only=True)
  assert 'transformer_encoder.layers.0.self_attn.Wqkv.weight' in state
  assert (out / 'vocab.json').read_bytes() == (shared_data / 'scgpt' / 'vocab.json').read_bytes()


def test_torchtext_shim_vocab():
  v = torchtext_shim.vocab({'b': 3, 'a': 1, 'rare': 0}, min_freq=1, specials=['<pad>'])
  assert v.get_itos() == ['<pad>', 'b', 'a'] and len(v) == 3 and 'rare' not in v
  v.insert_token('z', 1)
  assert v.get_itos() == ['<pad>', 'z', 'b', 'a'] and v['a'] == 3 and v.get_stoi()['b'] == 2
  with pytest.raises(RuntimeError):
    v['unknown']  # pylint: disable=pointless-statement
  v.set_default_index(0)
  assert v(['a', 'unknown']) == [3, 0] and v.lookup_tokens([1, 3]) == ['z', 'a']
  scgpt = scgpt_embed.import_scgpt()
  gv = scgpt.tokenizer.GeneVocab.from_dict({'<pad>': 0, 'TP53': 1, 'EGFR': 2})
  assert gv['EGFR'] == 2 and gv['nope'] == 0 and isinstance(gv, torchtext_shim.Vocab)


def test_error_classes_share_a_base():
  assert issubclass(InputDataError, EmbedError) and issubclass(CheckpointError, EmbedError)
