"""Drug representations: GDSC annotation parser (real file), fingerprints, descriptors, controls."""

import re

import numpy as np
import pytest

from cdr_jax.data import drugs
from cdr_jax.errors import DataError

HEADER = 'drug_id,Name,Synonyms,Targets,Target pathway,PubCHEM,Sample Size,Count\n'
AFATINIB, BMS_536924, OLAPARIB = '10184653', '10390396', '23725625'


@pytest.fixture(scope='module')
def real(data_root):
  """The real annotations and the 223 CIDs of the SMILES file (all used by the dataset)."""
  smiles_path = data_root / 'deepcdr/223drugs_pubchem_smiles.txt'
  lines = [l.split('\t') for l in smiles_path.read_text().splitlines() if l.strip()]
  return drugs.read_drug_list_annotations(data_root), [c for c, _ in lines]


def test_every_dataset_drug_is_annotated(real):
  ann, cids = real
  assert len(cids) == 223
  assert all(c in ann.pathway and c in ann.targets for c in cids)
  assert len({ann.pathway[c] for c in cids}) == 23  # 'Unclassified' only came from BMS-536924


def test_cids_listed_under_several_gdsc_ids_are_merged(real):
  ann, _ = real
  assert ann.gdsc_ids[OLAPARIB] == ('1017', '1495')
  assert ann.targets[OLAPARIB] == ('PARP1', 'PARP2')
  assert ann.pathway[OLAPARIB] == 'Genome integrity'
  assert ann.name[OLAPARIB] == 'Olaparib'


def test_the_one_pathway_disagreement_is_reported(real):
  ann, _ = real
  assert ann.disagreements == (drugs.PathwayDisagreement(
      BMS_536924, {'62': 'IGFR signaling', '1091': 'Unclassified'}, 'IGFR signaling'),)
  assert ann.pathway[BMS_536924] == 'IGFR signaling'


def test_annotation_features_of_known_drugs(real):
  ann, cids = real
  x, columns = drugs.annotation_features(ann, cids)
  assert x.shape == (223, len(columns)) and x.dtype == np.float32
  assert sum(c.startswith(drugs.PATHWAY_PREFIX) for c in columns) == 23
  row = x[cids.index(AFATINIB)]
  on = sorted(columns[i] for i in np.flatnonzero(row))
  assert on == ['pathway:EGFR signaling', 'target:EGFR', 'target:ERBB2']
  pathway_block = x[:, [c.startswith(drugs.PATHWAY_PREFIX) for c in columns]]
  np.testing.assert_array_equal(pathway_block.sum(1), np.ones(223))  # exactly one pathway each


def write_list(tmp_path, rows):
  path = tmp_path / 'drug_list.csv'
  path.write_text(HEADER + ''.join(r + '\n' for r in rows))
  return path


def test_merge_takes_target_union_and_documented_pathway_rule(tmp_path):
  path = write_list(tmp_path, [
      '1000,A,,"AKT1, akt2",PI3K/MTOR signaling,11,1,1',
      '99,A,,"AKT2 ,MTOR, others",Other,11,1,1',        # lower id wins among classified pathways
      '5,B,,not defined,Unclassified,22,1,1',
      '6,B,,EGFR,EGFR signaling,22,1,1',                # a classified pathway beats Unclassified
      '7,C,,KIT,RTK signaling,several,1,1'])            # no CID: skipped
  ann = drugs.read_annotations(path)
  assert ann.targets == {'11': ('AKT1', 'AKT2', 'MTOR'), '22': ('EGFR',)}
  assert ann.pathway == {'11': 'Other', '22': 'EGFR signaling'}
  assert [(d.cid, d.chosen) for d in ann.disagreements] == [('11', 'Other'),
                                                            ('22', 'EGFR signaling')]
  assert ann.gdsc_ids == {'11': ('1000', '99'), '22': ('5', '6')}


def test_missing_annotation_names_the_drug_and_the_file(tmp_path):
  path = write_list(tmp_path, ['1,A,,KIT,RTK signaling,11,1,1'])
  ann = drugs.read_annotations(path)
  with pytest.raises(DataError, match=re.escape(str(path)) + ".*no row with PubCHEM '999'"):
    drugs.annotation_features(ann, ['11', '999'])


def test_bad_drug_list_rows_are_named(tmp_path):
  with pytest.raises(DataError, match='line 2: GDSC id 1 has an empty Target pathway'):
    drugs.read_annotations(write_list(tmp_path, ['1,A,,KIT,,11,1,1']))


def test_morgan_bits_of_ethanol_by_hand():
  # Ethanol: 3 distinct atoms (radius 0); each atom's bonded neighbourhood adds 3 more (radius 1);
  # radius 2 reaches no new bond set, so it adds nothing. Methane: one environment.
  smiles = {'ethanol': 'CCO', 'ethanol2': 'OCC', 'methane': 'C'}
  ids = ['ethanol', 'ethanol2', 'methane']
  for radius, expected in ((0, [3, 3, 1]), (1, [6, 6, 1]), (2, [6, 6, 1])):
    x = drugs.morgan_features(smiles, ids, radius=radius, bits=2048)
    assert x.shape == (3, 2048) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(x.sum(1), expected)
  np.testing.assert_array_equal(x[0], x[1])  # the molecule, not its spelling


def test_bad_smiles_names_the_drug_and_the_file():
  with pytest.raises(DataError, match=r"smiles\.txt: invalid SMILES for drug 'x1'"):
    drugs.morgan_features({'ok': 'CCO', 'x1': 'C1CC'}, ['ok', 'x1'], source='smiles.txt')
  with pytest.raises(DataError, match=r"smiles\.txt: no SMILES for drug 'x2'"):
    drugs.descriptor_features({'ok': 'CCO'}, ['ok', 'x2'], source='smiles.txt')


def test_descriptors_of_known_molecules():
  x, names = drugs.descriptor_features({'e': 'CCO', 'pt': 'N.N.[Cl-].[Cl-].[Pt+2]'}, ['e', 'pt'])
  assert x.shape == (2, len(names)) == (2, len(drugs.descriptor_names()))
  col = {n: i for i, n in enumerate(names)}
  assert x[0, col['HeavyAtomCount']] == 3 and x[0, col['NumHDonors']] == 1
  assert x[0, col['MolWt']] == pytest.approx(46.069, abs=1e-3)
  assert np.isnan(x[1, col['BCUT2D_MWHI']])  # RDKit has no BCUT for cisplatin: kept as nan


def test_standardize_uses_only_training_rows():
  raw = np.array([[1.0, np.nan, 4.0],
                  [3.0, 5.0, 4.0],
                  [100.0, 7.0, np.inf]])
  s = drugs.standardize(raw, [0, 1], ['a', 'b', 'c'], clip=10.0)
  np.testing.assert_allclose(s.mean, [2.0, 5.0, 4.0])
  np.testing.assert_allclose(s.scale, [1.0, 1.0, 1.0])  # b and c have no spread on rows 0-1
  np.testing.assert_array_equal(s.features, [[-1, 0, 0], [1, 0, 0], [10, 0, 0]])  # 98 clipped
  assert s.num_nonfinite == 2 and s.nonfinite_columns == {'b': 1, 'c': 1}
  assert s.constant_columns == ['b', 'c']
  other = raw.copy()
  other[2] = [-50.0, 1.0, 2.0]  # the held-out row changes nothing for the training rows
  t = drugs.standardize(other, [0, 1], ['a', 'b', 'c'])
  np.testing.assert_array_equal(t.features[:2], s.features[:2])
  assert t.features[2, 0] == -10.0


def test_standardize_is_a_z_score_on_the_training_rows():
  raw = np.array([[0.0], [2.0], [4.0], [6.0]])
  s = drugs.standardize(raw, [1, 2, 3], ['a'])
  np.testing.assert_allclose(s.features[:, 0], (raw[:, 0] - 4.0) / np.sqrt(8 / 3), rtol=1e-6)


def test_shuffled_permutes_rows_by_seed():
  x = np.arange(12, dtype=np.float32).reshape(6, 2)
  a, b = drugs.shuffled(x, 0), drugs.shuffled(x, 0)
  np.testing.assert_array_equal(a, b)
  assert sorted(map(tuple, a)) == sorted(map(tuple, x)) and not np.array_equal(a, x)
  assert not np.array_equal(drugs.shuffled(x, 1), a)


def test_onehot_is_identity():
  np.testing.assert_array_equal(drugs.onehot(['a', 'b', 'c']), np.eye(3, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# Drug representations selected by config.


def _data_config(drug_repr, shuffle=False):
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  c = test_config.get_config().data
  c.drug_repr, c.shuffle_drugs = drug_repr, shuffle
  return c


def test_parse_repr_names_the_choices():
  assert drugs.parse_repr('graph+morgan') == ['graph', 'morgan']
  for bad in ('graph+smiles', 'morgan+morgan', ''):
    with pytest.raises(ValueError, match='annotations, morgan, descriptors, chemnet, binding, onehot'):
      drugs.parse_repr(bad)


def test_build_features_joins_parts_in_order_and_shuffles_rows():
  smiles = {'a': 'CCO', 'b': 'c1ccccc1O', 'c': 'CC(=O)O'}
  ids = list(smiles)
  x, names, info = drugs.build_drug_features(_data_config('graph+morgan+onehot'), None, ids, smiles)
  assert x.shape == (3, 2048 + 3) and names[0] == 'morgan:0' and names[-1] == 'onehot:c'
  np.testing.assert_array_equal(x[:, 2048:], np.eye(3))
  np.testing.assert_array_equal(x[:, :2048], drugs.morgan_features(smiles, ids))
  assert info['drug_feature_dim'] == 2051
  graph_only, names, _ = drugs.build_drug_features(_data_config('graph'), None, ids, smiles)
  assert graph_only.shape == (3, 0) and names == ()
  shuffled, _, _ = drugs.build_drug_features(_data_config('onehot', True), None, ids, smiles)
  assert sorted(map(tuple, shuffled)) == sorted(map(tuple, np.eye(3, dtype=np.float32)))
  assert not np.array_equal(shuffled, np.eye(3))   # rows permuted (seed 0)
  with pytest.raises(ValueError, match='shuffle_drugs permutes vector drug features'):
    drugs.build_drug_features(_data_config('graph', True), None, ids, smiles)
  with pytest.raises(DataError, match='annotations need the GDSC drug list'):
    drugs.build_drug_features(_data_config('annotations'), None, ids, smiles)


def test_annotations_from_a_data_root(tiny_root):
  from cdr_jax import data  # pylint: disable=g-import-not-at-top
  from tests.conftest import data_config  # pylint: disable=g-import-not-at-top
  cfg = data_config(tiny_root)
  cfg.drug_repr = 'graph+annotations'
  ds = data.load_dataset(cfg)
  assert ds.drug_feature_names == ('pathway:P', 'target:T')
  np.testing.assert_array_equal(ds.drug_x, np.ones((len(ds.drug_ids), 2)))


def test_new_drug_features_in_the_run_columns():
  smiles = {'a': 'CCO', 'b': 'c1ccccc1O'}
  columns = ['pathway:PI3K', 'pathway:DNA', 'target:EGFR'] + [f'morgan:{i}' for i in range(2048)]
  cfg = _data_config('graph+annotations+morgan')
  x, notes = drugs.new_drug_features(cfg, columns, smiles, {'a': ('DNA', ['egfr', 'XYZ'])})
  np.testing.assert_array_equal(x[0, :3], [0, 1, 1])
  np.testing.assert_array_equal(x[1, :3], [0, 0, 0])
  np.testing.assert_array_equal(x[:, 3:], drugs.morgan_features(smiles, list(smiles)))
  assert notes == ["a: not among the training drugs' annotations, ignored: target:XYZ",
                   'b: no annotations given: the prediction uses structure only']
  with pytest.raises(DataError, match='need ChemNet embeddings'):
    drugs.new_drug_features(_data_config('graph+chemnet'), columns, smiles)


def test_chemnet_file_is_read_by_id(tmp_path):
  (tmp_path / 'drugs').mkdir()
  np.save(tmp_path / 'drugs/chemnet.npy', np.arange(6, dtype=np.float32).reshape(3, 2))
  (tmp_path / 'drugs/chemnet.cells.txt').write_text('b\na\nc\n')
  cfg = _data_config('chemnet')
  x, names, _ = drugs.build_drug_features(cfg, tmp_path, ['a', 'b'], {'a': 'C', 'b': 'CC'})
  np.testing.assert_array_equal(x, [[2, 3], [0, 1]])
  assert names == ('chemnet:0', 'chemnet:1')
  with pytest.raises(DataError, match="no embedding for drug 'z'.*embed_torch chemnet"):
    drugs.build_drug_features(cfg, tmp_path, ['z'], {'z': 'C'})
