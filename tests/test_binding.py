"""Binding panels: reading the fetched files, matching drugs by structure, features and kernel."""

import json

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax.data import binding
from cdr_jax.data import drugs
from cdr_jax.errors import DataError
from cdr_jax.eval import lodo_kernel
from cdr_jax.train import warm_start
from configs import common
from tests.conftest import TINY_SMILES
from tests.conftest import data_config
from tests.conftest import write_tiny_panels

DAVIS, KIBA = binding.PANELS
ASPIRIN, CAFFEINE, IBUPROFEN, CISPLATIN = '2244', '2519', '3672', '84691'


@pytest.fixture
def panels(tmp_path):
  return write_tiny_panels(tmp_path)


def test_davis_kd_reads_as_pkd_and_binds_at_100_nm(panels):
  panel = binding.read_panel(panels, DAVIS)
  assert panel.compound_ids == ('11', '12', '13') and panel.targets == ('K1', 'K2', 'K3')
  np.testing.assert_allclose(panel.affinity[0], [7.0, 5.0, 9 - np.log10(5)])
  np.testing.assert_array_equal(panel.binds(), [[1, 0, 1], [0, 1, 0], [1, 1, 1]])


def test_kiba_scores_bind_at_12_1_and_unmeasured_pairs_never_bind(panels):
  panel = binding.read_panel(panels, KIBA)
  assert np.isnan(panel.affinity[0, 1])
  np.testing.assert_array_equal(panel.binds(), [[1, 0], [1, 0]])


def test_drugs_match_by_structure_across_salt_and_writing(panels):
  rows = binding.match(binding.read_panel(panels, DAVIS), list(TINY_SMILES), TINY_SMILES)
  np.testing.assert_array_equal(rows, [0, -1, 1, -1])   # aspirin as its sodium salt; ibuprofen
  rows = binding.match(binding.read_panel(panels, KIBA), list(TINY_SMILES), TINY_SMILES)
  np.testing.assert_array_equal(rows, [1, 0, -1, -1])   # aspirin written otherwise; caffeine
  (panels / KIBA.ligands).write_text(   # caffeine twice: the first form is the one used
      '{"C1": "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "C2": "OC(=O)c1ccccc1OC(C)=O", '
      '"C3": "O=c1n(C)c(=O)c2c(ncn2C)n1C"}')
  (panels / KIBA.values).write_text('12.5\tnan\n12.1\t11.0\n13\t13\n')
  rows = binding.match(binding.read_panel(panels, KIBA), list(TINY_SMILES), TINY_SMILES)
  np.testing.assert_array_equal(rows, [1, 0, -1, -1])
  with pytest.raises(DataError, match="drug 'x': no parsable SMILES.*'davis'"):
    binding.match(binding.read_panel(panels, DAVIS), ['x'], {'x': 'C1CC'})


def test_bad_panel_files_are_clear_errors(panels):
  kd = panels / DAVIS.values
  kd.write_text('100 10000\n10000 10\n1 1\n')
  with pytest.raises(DataError, match=r'Davis_et_al.*expected 3 x 3 values.*got 3 x 2'):
    binding.read_panel(panels, DAVIS)
  kd.write_text('100 0 5\n10000 10 101\n1 1 1\n')
  with pytest.raises(DataError, match="Kd must be positive.*compound '11' and target 'K2'"):
    binding.read_panel(panels, DAVIS)
  kd.write_text('100 x 5\n10000 10 101\n1 1 1\n')
  with pytest.raises(DataError, match='not a numeric matrix'):
    binding.read_panel(panels, DAVIS)
  (panels / KIBA.ligands).write_text('["C1", "C2"]')
  with pytest.raises(DataError, match='ligands_can.txt: expected a non-empty JSON object'):
    binding.read_panel(panels, KIBA)
  (panels / KIBA.targets).unlink()
  with pytest.raises(DataError, match="panel 'kiba' not found.*fetch_data.py.*--only binding/"):
    binding.read_panel(panels, KIBA)


def test_features_and_kernel_of_the_dataset_drugs(panels):
  ids = list(TINY_SMILES)
  info = binding.drug_binding(panels, ids, TINY_SMILES)
  assert info.summary() == {'davis': {'drugs_in_panel': 2, 'targets': 3,
                                      'drug_ids': [ASPIRIN, IBUPROFEN]},
                            'kiba': {'drugs_in_panel': 2, 'targets': 2,
                                     'drug_ids': [ASPIRIN, CAFFEINE]}}
  np.testing.assert_array_equal(info.in_any_panel(), [True, True, True, False])
  x, columns = binding.binding_features(info)
  assert columns == ['binding:davis:in_panel', 'binding:davis:K1', 'binding:davis:K2',
                     'binding:davis:K3', 'binding:kiba:in_panel', 'binding:kiba:P1',
                     'binding:kiba:P2']
  np.testing.assert_array_equal(x, [[1, 1, 0, 1, 1, 1, 0],    # aspirin
                                    [0, 0, 0, 0, 1, 1, 0],    # caffeine
                                    [1, 0, 1, 0, 0, 0, 0],    # ibuprofen
                                    [0, 0, 0, 0, 0, 0, 0]])   # cisplatin: in no panel

  class Drugs:   # what binding_kernel reads of a dataset
    drug_ids, drug_smiles = ids, [TINY_SMILES[d] for d in ids]

  k = lodo_kernel.binding_kernel(Drugs, panels)
  # davis: aspirin and ibuprofen share no kinase; kiba: aspirin and caffeine bind P1 alone.
  np.testing.assert_allclose(k, [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
  assert np.linalg.eigvalsh(k).min() > -1e-12
  with pytest.raises(DataError, match='data root'):
    lodo_kernel.binding_kernel(Drugs, None)


def test_binding_representation_and_the_unseen_drug_kernel(tiny_root):
  cfg = data_config(write_tiny_panels(tiny_root), 'expression')
  cfg.drug_repr = 'graph+morgan+binding'
  assert drugs.uses_binding(cfg)
  ds = data.load_dataset(cfg)
  binding_cols = [c for c in ds.drug_feature_names if c.startswith('binding:')]
  assert len(binding_cols) == 7 and ds.info['binding_panels']['davis']['drugs_in_panel'] == 2
  plain, weights = lodo_kernel.weighted_kernel(ds, tiny_root)
  with_panels, with_weights = lodo_kernel.weighted_kernel(ds, tiny_root, binding=True)
  assert with_weights == {**weights, 'binding': lodo_kernel.BINDING_WEIGHT}
  np.testing.assert_allclose(with_panels - plain, lodo_kernel.BINDING_WEIGHT
                             * lodo_kernel.binding_kernel(ds, tiny_root))
  run = common.base_config()   # the network's kernel-ridge start reads the same kernel
  run.data = cfg
  np.testing.assert_allclose(warm_start.drug_kernel(ds, run), with_panels)
  cfg.root = None
  with pytest.raises(DataError, match='binding panels are read from a data root'):
    drugs.build_drug_features(cfg, None, list(TINY_SMILES), TINY_SMILES)


def test_new_drug_gets_its_binding_profile_by_structure(tiny_root):
  cfg = data_config(write_tiny_panels(tiny_root), 'expression')
  cfg.drug_repr = 'graph+binding'
  columns = binding.binding_features(binding.drug_binding(tiny_root, ['a'], {'a': 'CCO'}))[1]
  new = {'ibu': 'OC(=O)C(C)c1ccc(CC(C)C)cc1', 'eth': 'CCO'}
  x, notes = drugs.new_drug_features(cfg, columns, new)
  np.testing.assert_array_equal(x, [[1, 0, 1, 0, 0, 0, 0], [0] * 7])
  assert notes == ['eth: in no binding panel: the prediction uses no binding profile']
  with pytest.raises(DataError, match="binding: its binding panels differ.*'binding:davis:K3'"):
    drugs.new_drug_features(cfg, columns[:3] + columns[4:], new)
  with pytest.raises(DataError, match="differ.*'binding:davis:K9'.*--only binding/"):
    drugs.new_drug_features(cfg, columns + ['binding:davis:K9'], new)


def test_real_panels_match_the_gdsc_drugs(data_root):
  """The fetched panels (`launch/fetch_data.py --only binding/`) against the 223 GDSC drugs."""
  if not (data_root / DAVIS.values).is_file():
    pytest.skip(f'{data_root} has no binding/ panels (CI\'s data root does not; fetch them with '
                'python launch/fetch_data.py --dest <root> --only binding/)')
  smiles = dict(line.rstrip('\n').split('\t') for line in
                (data_root / 'deepcdr/223drugs_pubchem_smiles.txt').open())
  info = binding.drug_binding(data_root, list(smiles), smiles)
  summary = info.summary()
  assert {n: (s['drugs_in_panel'], s['targets']) for n, s in summary.items()} == {
      'davis': (36, 442), 'kiba': (29, 229)}
  assert len(set(summary['davis']['drug_ids']) | set(summary['kiba']['drug_ids'])) == 60
  davis = json.loads((data_root / DAVIS.ligands).read_text())
  assert len(set(davis) & set(smiles)) == 34   # by CID alone; by structure 2 more
  erlotinib = list(smiles).index('176870')
  assert info.binds['davis'][erlotinib, list(info.targets['davis']).index('EGFR')]
