"""Dataset construction: real-data counts, the tiny layout, imputation, and every bad-input error."""

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax.data import dataset
from cdr_jax.errors import DataError
from tests.conftest import TINY_CELLS, data_config


def test_real_data_scfoundation_counts(data_root):
  ds = data.load_dataset(data_config(data_root, 'scfoundation'))
  assert (ds.num_pairs, len(ds.cell_ids), len(ds.drug_ids)) == (107446, 561, 223)
  assert ds.nbytes() < 200e6
  assert ds.cell_features.shape == (561, 768)
  # Per docs/DEEPCDR.md §2: ln IC50 mean 2.13, sd 2.72; 6,383 repeated (cell, CID) rows kept.
  assert abs(ds.pair_y.mean() - 2.13) < 0.01 and abs(ds.pair_y.std() - 2.72) < 0.01
  pairs = ds.pair_cell.astype(np.int64) * 1000 + ds.pair_drug
  assert len(pairs) - len(np.unique(pairs)) == 6383
  assert max(ds.drug_graphs.n_node[:-1]) == 96
  assert int(np.median(ds.drug_graphs.n_node[:-1])) == 31
  assert sum(1 for g in range(223) if _has_isolated_atoms(ds, g)) == 4
  assert set(np.unique(ds.pair_label)) == {-1, 0, 1}


def _has_isolated_atoms(ds, g):
  start = int(ds.drug_graphs.n_node[:g].sum())
  n = int(ds.drug_graphs.n_node[g])
  degree = ds.drug_graphs.nodes[start:start + n, 44]  # degree-0 slot
  return degree.any()


def test_real_data_expression_gaps_counted(data_root):
  ds = data.load_dataset(data_config(data_root, 'expression'))
  assert len(ds.cell_ids) == 527
  assert ds.info['expression_lines_dropped_all_missing'] == 34
  assert ds.info['expression_lines_imputed'] == 477
  assert ds.info['expression_genes_imputed'] == 6
  assert ds.num_pairs == 107446 - ds.info['instances_dropped_no_features']
  assert np.isfinite(ds.cell_features).all()
  ds2 = data.load_dataset(data_config(data_root, 'multiomics'))
  assert ds2.cell_features.shape == (527, 697 + 808)


def test_tiny_root_layout(tiny_root):
  ds = data.load_dataset(data_config(tiny_root))
  # 4 drugs with CIDs x 6 known cells, one NA each; ACH-999999 has no omics row; GDSC:5 no CID.
  assert (ds.num_pairs, len(ds.cell_ids), len(ds.drug_ids)) == (20, 6, 4)
  assert ds.drug_ids == ('2244', '2519', '3672', '84691')
  assert ds.cell_ids == tuple(TINY_CELLS)
  assert ds.cancer_types == ('BRCA', 'LUAD')
  # Thresholds matched by name, by synonym ('D2') and by a comma-separated part ('X, Drug4').
  thr = np.array([1.0, 2.0, 3.0, 4.0])[ds.pair_drug]
  np.testing.assert_array_equal(ds.pair_label, (ds.pair_y < thr).astype(np.int8))
  # Every pair's indices point at the right entities.
  assert ds.pair_cell.dtype == np.int32 and ds.pair_drug.max() == 3
  # Doubling times 2^(i + 4) hours, line 2's 'NA'; no GDSC line table here, so no medium.
  assert set(ds.line_annotations) == {'doubling'}
  np.testing.assert_array_equal(ds.line_annotations['doubling'], [4, 5, np.nan, 7, 8, 9])
  assert (ds.info['doubling_lines'], ds.info['doubling_lines_without']) == (5, 1)


def test_tiny_expression_imputes_and_drops(tiny_root):
  ds = data.load_dataset(data_config(tiny_root, 'expression'))
  assert ds.cell_ids == tuple(TINY_CELLS[:5])
  assert ds.info['expression_lines_dropped_all_missing'] == 1
  assert ds.info['expression_values_imputed'] == 1
  # G2 of cell 1 is the mean of G2 over the lines that have it (all 2).
  assert ds.cell_features[1, 1] == pytest.approx(2.0)
  assert ds.info['instances_dropped_no_features'] == 4


def test_controls(tiny_root):
  base = data.load_dataset(data_config(tiny_root, 'scfoundation'))
  cfg = data_config(tiny_root, 'scfoundation')
  cfg.shuffle_cells = True
  shuffled = data.load_dataset(cfg)
  assert not np.array_equal(shuffled.cell_features, base.cell_features)
  np.testing.assert_array_equal(np.sort(shuffled.cell_features, 0), np.sort(base.cell_features, 0))
  onehot = data.load_dataset(data_config(tiny_root, 'onehot'))
  np.testing.assert_array_equal(onehot.cell_features, np.eye(6))
  combo = data.load_dataset(data_config(tiny_root, 'scfoundation+random'))
  assert combo.cell_features.shape == (6, 5 + 256)


def _rewrite(path, old, new):
  path.write_text(path.read_text().replace(old, new, 1))


EXPR = 'deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv'
IC50 = 'deepcdr/CCLE/GDSC_IC50.csv'
EMB = 'scfoundation/50M-0.1B-res_embedding'
ANN = 'deepcdr/CCLE/Cell_lines_annotations_20181226.txt'


@pytest.mark.parametrize('mutate, repr_, pattern', [
    (lambda r: (r / IC50).unlink(), 'scfoundation', r'missing file .*GDSC_IC50.csv'),
    (lambda r: _rewrite(r / EXPR, 'DepMap_ID', 'CellID'), 'expression',
     r'genomic_expression.*wrong header.*DepMap_ID'),
    (lambda r: _rewrite(r / EXPR, 'ACH-000002', 'ACH-000001'), 'expression',
     r'genomic_expression.*duplicate .*ACH-000001'),
    (lambda r: _rewrite(r / f'{EMB}.cells.txt', 'ACH-000003', 'ACH-123456'), 'scfoundation',
     r'embedding.npy.*unknown cell id .ACH-123456'),
    (lambda r: _rewrite(r / f'{EMB}.cells.txt', 'ACH-000003\n', ''), 'scfoundation',
     r'6 rows but .*cells.txt lists 5 ids'),
    (lambda r: _rewrite(r / EXPR, '3.5', 'high'), 'expression',
     r"genomic_expression.*non-numeric value 'high'.*ACH-000004.*'G1'"),
    (lambda r: _rewrite(r / 'deepcdr/223drugs_pubchem_smiles.txt', 'Cn1cnc2', 'Cn1cnc9'),
     'scfoundation', r'invalid SMILES for drug 2519'),
    (lambda r: _rewrite(r / IC50, '"GDSC:2"', '"XYZ:2"'), 'scfoundation',
     r"GDSC_IC50.csv: row id 'XYZ:2'.*GDSC:<drug id>"),
    (lambda r: _rewrite(r / ANN, '\t32\t', '\tfast\t'), 'scfoundation',
     r"Cell_lines_annotations.*ACH-000002: Doubling.Time.Calculated.hrs 'fast', expected hours"),
    (lambda r: _rewrite(r / ANN, '\t32\t', '\t0\t'), 'scfoundation',
     r"Cell_lines_annotations.*ACH-000002: Doubling.Time.Calculated.hrs '0', expected hours"),
])
def test_bad_input_names_file_and_id(tiny_root, mutate, repr_, pattern):
  mutate(tiny_root)
  with pytest.raises(DataError, match=pattern):
    data.load_dataset(data_config(tiny_root, repr_))


def test_annotations_without_doubling_times_load_without_them(tiny_root, caplog):
  _rewrite(tiny_root / ANN, 'Doubling.Time.Calculated.hrs', 'Growth.Medium')
  ds = data.load_dataset(data_config(tiny_root))
  assert ds.line_annotations == {} and 'doubling_lines' not in ds.info
  assert 'without the doubling-time kernel' in caplog.text


def test_unknown_representation_and_source(tiny_root):
  with pytest.raises(ValueError, match=r"unknown cell representation 'scbert'.*expression"):
    data.load_dataset(data_config(tiny_root, 'scbert'))
  cfg = data_config(tiny_root)
  cfg.source = 'geo'
  with pytest.raises(ValueError, match=r"unknown data source 'geo'"):
    data.load_dataset(cfg)


def test_missing_embedding_says_how_to_make_it(tiny_root):
  with pytest.raises(DataError, match=r'python -m embed_torch scgpt'):
    data.load_dataset(data_config(tiny_root, 'scgpt'))


def test_root_resolution(monkeypatch, tmp_path):
  monkeypatch.setenv('CDR_DATA_DIR', str(tmp_path))
  assert dataset.resolve_data_root('') == tmp_path
  assert str(dataset.resolve_data_root('/x/y')) == '/x/y'
  monkeypatch.delenv('CDR_DATA_DIR')
  assert str(dataset.resolve_data_root('')) == 'data'
