"""Tests of the sidecar's ChemNet drug embeddings: the real pretrained network from fcd_torch 1.0.7.

The molecules are real drugs written by hand (aspirin, caffeine, ibuprofen, cisplatin, ispinesib
mesylate as in the DeepCDR file); one test also reads the real 223-drug SMILES file.
"""

import hashlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import require

torch = require('torch')
fcd_torch = require('fcd_torch')

# pylint: disable=g-import-not-at-top,wrong-import-position
from fcd_torch.utils import get_one_hot

from embed_torch import CheckpointError, EmbedError, InputDataError
from embed_torch import chemnet_embed
from embed_torch import io as eio
from embed_torch.__main__ import CANONICALISATIONS, main

REPO = pathlib.Path(__file__).resolve().parents[1]
ASPIRIN = 'CC(=O)Oc1ccccc1C(=O)O'
ISPINESIB = 'Cc1ccc(C(=O)N(CCCN)C(c2nc3cc(Cl)ccc3c(=O)n2Cc2ccccc2)C(C)C)cc1'
DRUGS = [
    ('2244', ASPIRIN),
    ('2519', 'Cn1cnc2c1c(=O)n(C)c(=O)n2C'),
    ('3672', 'CC(C)Cc1ccc(C(C)C(=O)O)cc1'),
    ('84691', 'N.N.[Cl-].[Cl-].[Pt+2]'),
    ('6450816', 'CS(=O)(=O)O.' + ISPINESIB),
]
# The seven multi-fragment SMILES of deepcdr/223drugs_pubchem_smiles.txt.
SALTS_223 = {'46930998', '9938202', '53394750', '6450816', '11178236', '9931953', '84691'}


def write_smiles(path: pathlib.Path, drugs) -> pathlib.Path:
  path.write_text(''.join(f'{i}\t{s}\n' for i, s in drugs))
  return path


@pytest.fixture(scope='module')
def smiles_file(tmp_path_factory) -> pathlib.Path:
  return write_smiles(tmp_path_factory.mktemp('smi') / 'drugs.txt', DRUGS)


@pytest.fixture(scope='module')
def embedded(smiles_file, tmp_path_factory):
  out = tmp_path_factory.mktemp('out') / 'chemnet.npy'
  chemnet_embed.run(smiles_file, out, progress=False)
  return out, eio.read_embedding(out)


def test_outputs_ids_and_metadata(embedded, smiles_file):
  out, (emb, ids, meta) = embedded
  assert emb.shape == (5, 512) and emb.dtype == np.float32 and np.isfinite(emb).all()
  assert ids == [i for i, _ in DRUGS]
  assert sorted(p.name for p in out.parent.iterdir()) == [
      'chemnet.cells.txt', 'chemnet.json', 'chemnet.npy'
  ]
  assert meta['model'] == 'chemnet' and meta['checkpoint']['fcd_torch_version'] == '1.0.7'
  assert meta['run'] == {'device': 'cpu', 'batch_size': 128, 'torch_threads': 1}
  assert meta['embedding']['dim'] == 512 and meta['embedding']['n_drugs'] == 5
  assert meta['input']['sha1'] == hashlib.sha1(smiles_file.read_bytes()).hexdigest()
  weights = chemnet_embed.weights_path()
  assert meta['checkpoint']['sha256'] == {
      'ChemNet_v0.13_pretrained.pt': hashlib.sha256(weights.read_bytes()).hexdigest()
  }
  prep = meta['preprocessing']
  assert prep['canonicalisation'] == 'largest_fragment'
  assert prep['fragments_removed'] == {
      '84691': ['N', '[Cl-]', '[Cl-]', '[Pt+2]'],
      '6450816': ['CS(=O)(=O)O']
  }
  assert prep['chemnet_smiles']['2244'] == ASPIRIN and prep['chemnet_smiles']['84691'] == 'N'
  assert prep['chemnet_smiles']['6450816'] == ISPINESIB
  assert prep['max_symbols'] == len(ISPINESIB) - 1  # one two-letter symbol, Cl


def test_rows_equal_fcd_torch_predictions(embedded):
  """Same canonical SMILES through fcd_torch's own pipeline gives the same 512-d activations."""
  _, (emb, ids, meta) = embedded
  smiles = [meta['preprocessing']['chemnet_smiles'][i] for i in ids]
  with chemnet_embed.torch_threads(1):  # only for speed on a busy machine
    expected = fcd_torch.FCD(device='cpu', n_jobs=1, canonize=True).get_predictions(smiles)
  np.testing.assert_allclose(emb, expected, rtol=1e-6, atol=1e-7)


def test_same_input_is_bitwise_identical_and_batching_only_rounds(embedded, smiles_file, tmp_path):
  out, (emb, _, _) = embedded
  chemnet_embed.run(smiles_file, tmp_path / 'again.npy', progress=False)
  assert (tmp_path / 'again.npy').read_bytes() == out.read_bytes()
  chemnet_embed.run(smiles_file, tmp_path / 'bs1.npy', batch_size=1, progress=False)
  one, _, meta = eio.read_embedding(tmp_path / 'bs1.npy')
  assert meta['run']['batch_size'] == 1
  np.testing.assert_allclose(one, emb, rtol=1e-5, atol=1e-5)


def test_different_molecules_differ_and_spellings_do_not(embedded, tmp_path):
  _, (emb, _, _) = embedded
  distances = np.linalg.norm(emb[:, None] - emb[None], axis=-1)[np.triu_indices(len(emb), 1)]
  assert distances.min() > 0.5  # measured 1.8 on these five
  # Aspirin written another way, and the ispinesib free base, embed exactly as above.
  path = write_smiles(tmp_path / 'same.txt', [('a', 'OC(=O)c1ccccc1OC(C)=O'), ('b', ISPINESIB)])
  chemnet_embed.run(path, tmp_path / 'same.npy', progress=False)
  same, _, _ = eio.read_embedding(tmp_path / 'same.npy')
  np.testing.assert_allclose(same, emb[[0, 4]], rtol=1e-6, atol=1e-7)


def test_symbols_and_one_hot_by_hand():
  assert chemnet_embed.split_symbols('ClC(Br)[Si]') == ['Cl', 'C', '(', 'Br', ')', '[', 'Si', ']']
  # fcd_torch's rule: [Pt] is P then t (unknown); Li is one unknown two-letter symbol.
  assert chemnet_embed.split_symbols('[Pt+2]') == ['[', 'P', 't', '+', '2', ']']
  assert chemnet_embed.split_symbols('[Li+]') == ['[', 'Li', '+', ']']
  x = chemnet_embed.one_hot(['C', 'O', 't'])
  assert x.shape == (35, 350) and x.dtype == np.float32
  expected = np.zeros((35, 350), np.float32)
  expected[[0, 2, 33, 34], [0, 1, 2, 3]] = np.float32(1 / 35)  # C, O, X (unknown), end
  np.testing.assert_array_equal(x, expected)
  for smiles in (ASPIRIN, ISPINESIB, 'C/C=C\\Br', '[Li+].[O-]C', 'C[C@@H](N)C(=O)O'):
    first = smiles.split('.')[0]
    reference = (get_one_hot(smiles, 350) / 35).T.astype(np.float32)
    np.testing.assert_array_equal(chemnet_embed.one_hot(chemnet_embed.split_symbols(first)),
                                  reference)


def test_bad_smiles_names_file_line_and_id(tmp_path):
  path = tmp_path / 'bad.txt'
  path.write_text(f'2244\t{ASPIRIN}\n\nbroken\tC1CC(\n')
  with pytest.raises(InputDataError) as e:
    chemnet_embed.run(path, tmp_path / 'x.npy', progress=False)
  assert str(e.value) == f"{path} line 3: drug 'broken': RDKit cannot parse SMILES 'C1CC('"
  assert not (tmp_path / 'x.npy').exists()


def test_what_chemnet_would_cut_short_is_refused(tmp_path):
  path = write_smiles(tmp_path / 's.txt', DRUGS)
  with pytest.raises(InputDataError, match=r"line 4: drug '84691': SMILES 'N\.N\.\[Cl-\]\.\[Cl-\]"
                     r"\.\[Pt\+2\]' has 5 fragments and ChemNet reads only up to the first"):
    chemnet_embed.run(path, tmp_path / 'x.npy', canonicalisation='rdkit', progress=False)
  long = write_smiles(tmp_path / 'long.txt', [('ok', 'C' * 349), ('long', 'C' * 350)])
  with pytest.raises(InputDataError, match=r"line 2: drug 'long': .* has 350 symbols; ChemNet "
                     r'reads at most 349'):
    chemnet_embed.run(long, tmp_path / 'x.npy', progress=False)


def test_duplicate_ids_and_malformed_lines_are_refused(tmp_path):
  dup = write_smiles(tmp_path / 'dup.txt', [('1', 'C'), ('2', 'CC'), ('1', 'CCC')])
  with pytest.raises(InputDataError, match=r"dup.txt line 3: duplicate id '1' \(first on line 1\)"):
    chemnet_embed.run(dup, tmp_path / 'x.npy', progress=False)
  for text in ('1\tC\textra\n', '1 C\n', '\tC\n'):
    (tmp_path / 'bad.txt').write_text(text)
    with pytest.raises(InputDataError, match=r'bad.txt line 1: expected <id>\\t<SMILES>'):
      chemnet_embed.read_smiles_file(tmp_path / 'bad.txt')
  with pytest.raises(InputDataError, match='--out must end in .npy'):
    chemnet_embed.run(dup, tmp_path / 'x.csv', progress=False)
  with pytest.raises(InputDataError, match='SMILES file not found'):
    chemnet_embed.run(tmp_path / 'nope.txt', tmp_path / 'x.npy', progress=False)


def test_cli_end_to_end_matches_library(embedded, smiles_file, tmp_path):
  out, _ = embedded
  cli_out = tmp_path / 'cli' / 'chemnet.npy'
  result = subprocess.run([
      sys.executable, '-m', 'embed_torch', 'chemnet', '--smiles',
      str(smiles_file), '--out',
      str(cli_out), '--quiet'
  ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('wrote ') and str(cli_out) in result.stdout
  assert cli_out.read_bytes() == out.read_bytes()  # bitwise across processes too
  assert cli_out.with_suffix('.cells.txt').read_text() == ''.join(f'{i}\n' for i, _ in DRUGS)


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
  path = write_smiles(tmp_path / 'bad.txt', [('x', 'C'), ('y', 'not a smiles')])
  assert main(['chemnet', '--smiles', str(path), '--out', str(tmp_path / 'x.npy'), '--quiet']) == 2
  err = capsys.readouterr().err
  assert err == (f"embed_torch chemnet: error: {path} line 2: drug 'y': RDKit cannot parse "
                 "SMILES 'not a smiles'\n")
  assert CANONICALISATIONS == chemnet_embed.CANONICALISATIONS


def test_torch_threads_are_set_then_restored():
  before = torch.get_num_threads()
  with chemnet_embed.torch_threads(1) as n:
    assert n == 1 and torch.get_num_threads() == 1
  with chemnet_embed.torch_threads(0) as n:
    assert n == before  # 0 leaves torch's setting
  assert torch.get_num_threads() == before
  with pytest.raises(EmbedError, match='--threads must be >= 0, got -1'):
    with chemnet_embed.torch_threads(-1):
      pass


def test_loading_errors_are_checkpoint_errors(monkeypatch, tmp_path):
  with pytest.raises(EmbedError, match="canonicalisation 'inchi': expected one of"):
    chemnet_embed.canonicalise(chemnet_embed.Drug('a', 'C', 1), 'inchi', tmp_path)
  monkeypatch.setattr(chemnet_embed, 'weights_path', lambda: tmp_path / 'missing.pt')
  with pytest.raises(CheckpointError, match='missing.pt: checkpoint file not found'):
    chemnet_embed.load_chemnet()


def test_real_223_drugs(data_root, tmp_path):
  """All 223 DeepCDR drugs tokenise; the first 12 embed exactly as fcd_torch embeds them."""
  path = data_root / 'deepcdr' / '223drugs_pubchem_smiles.txt'
  drugs = chemnet_embed.read_smiles_file(path)
  inputs, report = chemnet_embed.prepare(drugs, 'largest_fragment', path)
  assert inputs.shape == (223, 35, 350) and len(drugs) == 223
  assert set(report['fragments_removed']) == SALTS_223
  assert report['max_symbols'] < chemnet_embed.WINDOW and report['unknown_symbols_as_X'] == {}
  head = write_smiles(tmp_path / 'head.txt', [(d.id, d.smiles) for d in drugs[:12]])
  chemnet_embed.run(head, tmp_path / 'head.npy', progress=False)
  emb, ids, _ = eio.read_embedding(tmp_path / 'head.npy')
  smiles = [report['chemnet_smiles'][i] for i in ids]
  with chemnet_embed.torch_threads(1):
    expected = fcd_torch.FCD(device='cpu').get_predictions(smiles)
  np.testing.assert_allclose(emb, expected, rtol=1e-6, atol=1e-7)
  assert ids == [d.id for d in drugs[:12]]
