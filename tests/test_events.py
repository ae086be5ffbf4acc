"""Tests for cdr_jax.data.events: parser, name mapping and representations, synthetic and real."""

import gzip
import pathlib

import numpy as np
import pytest

from cdr_jax.data import cells
from cdr_jax.data import events
from cdr_jax.errors import DataError

_HEADER = ('COSMIC_ID,TISSUE_FACTOR,MSI_FACTOR,BRAF_mut,KRAS_mut,TP53_mut,'
           '"gain_cnaPANCAN1_(CCND1,CTTN)","loss_cnaPANCAN2, loss_cnaPANCAN3"')
_ROWS = {  # cosmic id -> MSI, BRAF, KRAS, TP53, gain, loss
    '1': '0,0,1,1,1,0', '2': '0,0,0,1,0,0', '3': '1,0,,1,0,0', '4': '0,1,0,1,,NA',
    '5': '0,0,0,0,1,1', '6': '0,1,1,0,0,0', '7': '0,0,0,0,0,0', '8': '1,1,1,1,1,1',
    '9': '0,0,0,0,0,1'}
# GDSC names: exact, ambiguous, case/punctuation, CCLE_ID prefix, two names for one line, NA id.
_NAMES = {'1': 'KM-H2', '2': 'KMH-2', '3': 'hcc-1954', '4': 'A-375', '5': 'SW48', '6': 'SW-48',
          '7': 'Ghost', '9': 'FOO'}  # 8 has no name
_MEDIA = {'1': 'R', '2': 'D/F12', '3': 'D/F12', '4': '', '5': 'R', '6': 'R', '7': 'H', '9': 'H'}
_ANNOTATION = [('KMH2_HAEMATOPOIETIC_AND_LYMPHOID_TISSUE', 'ACH-000001', 'KM-H2'),
               ('KMH2_THYROID', 'ACH-000002', 'NA'), ('HCC1954_BREAST', 'ACH-000003', 'HCC 1954'),
               ('A375_SKIN', 'ACH-000004', 'NA'), ('SW48_LARGE_INTESTINE', 'ACH-000005', 'SW48'),
               ('GHOST_LUNG', 'NA', 'GHOST')]


def _write(root: pathlib.Path, rows=None, header=_HEADER) -> pathlib.Path:
  (root / 'gdsc').mkdir(parents=True, exist_ok=True)
  (root / 'deepcdr/CCLE').mkdir(parents=True, exist_ok=True)
  rows = _ROWS if rows is None else rows
  body = [header] + [f'{c},tissue{c},{v}' for c, v in rows.items()]
  with gzip.open(root / events.EVENTS_FILE, 'wt') as f:
    f.write('\n'.join(body) + '\n')
  with gzip.open(root / events.COSMIC_FILE, 'wt') as f:
    f.write('SAMPLE_NAME,COSMIC_ID,GDSC1,SCREEN_MEDIUM\n'
            + ''.join(f'{n},{c},x,{_MEDIA[c]}\n' for c, n in _NAMES.items()))
  (root / events.ANNOTATION_FILE).write_text(
      'CCLE_ID\tdepMapID\tName\tSite_Primary\n' + ''.join(f'{a}\t{b}\t{c}\tx\n' for a, b, c in _ANNOTATION))
  return root


@pytest.fixture
def root(tmp_path) -> pathlib.Path:
  return _write(tmp_path / 'data')


def test_read_events_groups_columns_and_keeps_blanks(root):
  ev = events.read_events(root)
  assert ev.cosmic_ids == list(_ROWS)
  assert ev.columns == ['MSI_FACTOR', 'BRAF_mut', 'KRAS_mut', 'TP53_mut', 'gain_cnaPANCAN1_(CCND1,CTTN)',
                        'loss_cnaPANCAN2, loss_cnaPANCAN3']
  assert ev.tissue[:2] == ['tissue1', 'tissue2']
  assert ev.group('mutation').tolist() == [1, 2, 3]
  assert ev.group('cna').tolist() == [4, 5]
  assert ev.group('msi').tolist() == [0]
  np.testing.assert_array_equal(ev.values[0], [0, 0, 1, 1, 1, 0])
  assert np.isnan(ev.values[2, 2]) and np.isnan(ev.values[3, 4:]).all()
  assert np.nansum(ev.values) == 19


@pytest.mark.parametrize('rows,header,message', [
    ({'1': '0,2,0,0,0,0'}, _HEADER, r"COSMIC id 1, column 'BRAF_mut': value '2', expected 0 or 1"),
    ({'1': '0,0,0,0,0,0', '1 ': '0,0,0,0,0,0'}, _HEADER, "COSMIC id '1' is empty or repeated"),
    ({'1': '0,0,0,0,0,0'}, _HEADER.replace('TP53_mut', 'TP53'), "column 'TP53' is not an event"),
    ({'1': '0,0,0,0,0'}, _HEADER, 'line 2: 7 fields, expected 8'),
    ({'1': '0,0,0,0,0,0'}, _HEADER.replace('COSMIC_ID', 'ID'), "first column is 'ID'"),
])
def test_read_events_rejects_bad_files(tmp_path, rows, header, message):
  root = _write(tmp_path / 'data', rows, header)
  with pytest.raises(DataError, match=message):
    events.read_events(root)


def test_read_events_names_a_missing_file(tmp_path):
  with pytest.raises(DataError, match='missing file .*genomic_features_v17.csv.gz'):
    events.read_events(tmp_path)


def test_normalise_name_ignores_case_and_punctuation():
  assert {events.normalise_name(n) for n in ('NCI-H460', 'nci_h460', 'NCIH460', 'Nci H460')} == {'NCIH460'}
  assert events.normalise_name('NIH:OVCAR-3') == 'NIHOVCAR3'
  assert events.normalise_name('786-0') != events.normalise_name('786-O')  # not a guess


def test_event_genes():
  assert events.event_genes('BRAF_mut') == ('BRAF',)
  assert events.event_genes('gain_cnaPANCAN59_(CCND1,CTTN)') == ('CCND1', 'CTTN')
  assert events.event_genes('loss_cnaPANCAN4') == ()
  assert events.event_genes('MSI_FACTOR') == ()


def test_map_to_depmap_rules(root):
  mapping, report = events.map_to_depmap(events.read_events(root), root)
  assert mapping == {'1': 'ACH-000001', '3': 'ACH-000003', '4': 'ACH-000004'}
  assert [(m.cosmic_id, m.rule) for m in report.mapped] == [
      ('1', 'exact'), ('3', 'normalised'), ('4', 'normalised')]
  # KMH-2 matches two lines; SW48 (exactly) and SW-48 (normalised) claim the same line: none guessed.
  assert report.ambiguous == [
      events.Match('2', 'KMH-2', ('ACH-000001', 'ACH-000002'), 'several ids'),
      events.Match('5', 'SW48', ('ACH-000005',), 'id shared'),
      events.Match('6', 'SW-48', ('ACH-000005',), 'id shared')]
  # Ghost's only CCLE row has no DepMap id; COSMIC 8 has no name in cosmic_info.
  assert report.unmapped == [events.Match('7', 'Ghost', (), 'no match'),
                             events.Match('8', '', (), 'no name'),
                             events.Match('9', 'FOO', (), 'no match')]
  assert report.summary() == (
      '3 mapped; 3 unmapped: 8, FOO, Ghost; 3 ambiguous: KMH-2 (several ids: ACH-000001/ACH-000002), '
      'SW-48 (id shared: ACH-000005), SW48 (id shared: ACH-000005)')


def test_map_to_depmap_rejects_a_bad_depmap_id(root):
  path = root / events.ANNOTATION_FILE
  path.write_text(path.read_text().replace('ACH-000003', 'CVCL_0001'))
  with pytest.raises(DataError, match=r"line 4: depMapID 'CVCL_0001', expected ACH-"):
    events.map_to_depmap(events.read_events(root), root)


_CELLS = ['ACH-000004', 'ACH-000001', 'ACH-000003', 'ACH-000002', 'ACH-000005', 'ACH-000009']


def test_mutation_features_drop_impute_and_constant(root):
  ids, x, info = events.event_features('mutation', root, _CELLS)
  assert ids == ['ACH-000004', 'ACH-000001', 'ACH-000003']
  # Columns BRAF, KRAS (blank for ACH-000003 -> mean of 0 and 1), MSI; TP53 is 1 everywhere: dropped.
  np.testing.assert_array_equal(x, [[1, 0, 0], [0, 1, 0], [0, 0.5, 1]])
  assert x.dtype == np.float32
  assert info == {'mutation_lines_dropped_no_events': 3, 'mutation_lines_dropped_ambiguous': 2,
                  'mutation_values_imputed': 1, 'mutation_events_dropped_constant': 1,
                  'mutation_dim': 3}


def test_cna_features_drop_a_line_with_no_values(root):
  ids, x, info = events.event_features('cna', root, _CELLS)
  assert ids == ['ACH-000001', 'ACH-000003']  # ACH-000004's segments are all blank: dropped
  np.testing.assert_array_equal(x, [[1], [0]])  # the loss segment is 0 for both: dropped
  assert info == {'cna_lines_dropped_no_events': 4, 'cna_lines_dropped_ambiguous': 2,
                  'cna_values_imputed': 0, 'cna_events_dropped_constant': 1, 'cna_dim': 1}


def test_event_features_errors(root):
  with pytest.raises(ValueError, match="unknown event representation 'copynumber'"):
    events.event_features('copynumber', root, _CELLS)
  with pytest.raises(DataError, match='none of the 2 cell lines has mutation events'):
    events.event_features('mutation', root, ['ACH-000002', 'ACH-000009'])


def test_screen_media_join_lines_by_name(root):
  """A line gets its medium when it maps unambiguously and the medium is not blank; the media are
  those of the lines asked for, sorted."""
  medium, media, info = events.screen_media(root, _CELLS)
  # ACH-000004 maps but its medium is blank; 2 and 5 are ambiguous; 9 is nobody's.
  assert media == ('D/F12', 'R')
  np.testing.assert_array_equal(medium, [-1, 1, 0, -1, -1, -1])
  assert info == {'medium_lines': 2, 'medium_lines_without': 4,
                  'medium_values': {'D/F12': 1, 'R': 1}}
  with pytest.raises(DataError, match="no column 'GROWTH_PROPERTIES'"):
    events.line_table_groups(root, _CELLS, 'GROWTH_PROPERTIES', 'growth')


# ---------------------------------------------------------------- real data

_EXPRESSION_LINES_WITHOUT_EVENTS = {
    'ACH-000001', 'ACH-000198', 'ACH-000232', 'ACH-000303', 'ACH-000449', 'ACH-000561', 'ACH-000626',
    'ACH-000649', 'ACH-000827', 'ACH-000871', 'ACH-000932'}


def test_real_mapping_report(data_root):
  ev = events.read_events(data_root)
  assert ev.values.shape == (988, 678)
  assert (len(ev.group('mutation')), len(ev.group('cna')), len(ev.group('msi'))) == (270, 407, 1)
  mapping, report = events.map_to_depmap(ev, data_root)
  assert (len(report.mapped), len(report.unmapped), len(report.ambiguous)) == (957, 29, 2)
  assert len(set(mapping.values())) == len(mapping) == 957
  assert {'786-0', 'U251', 'NCI-H510A', 'OVCAR-3', 'EoL-1-cell'} <= {m.name for m in report.unmapped}
  assert {(m.name, m.depmap_ids) for m in report.ambiguous} == {
      ('T-T', ('ACH-000561', 'ACH-001321')), ('KMH-2', ('ACH-000815', 'ACH-002397'))}
  named = {m.name: m.depmap_ids[0] for m in report.mapped}
  assert (named['A375'], named['HCT-116'], named['KM-H2'], named['TT']) == (
      'ACH-000219', 'ACH-000971', 'ACH-000815', 'ACH-001321')
  row = {mapping[c]: i for i, c in enumerate(ev.cosmic_ids) if c in mapping}
  braf, kras = ev.columns.index('BRAF_mut'), ev.columns.index('KRAS_mut')
  assert ev.values[row['ACH-000219'], braf] == 1 and ev.values[row['ACH-000219'], kras] == 0  # A375
  assert ev.values[row['ACH-000971'], kras] == 1 and ev.values[row['ACH-000971'], braf] == 0  # HCT116


def test_real_features_on_expression_lines(data_root):
  lines, _, _ = cells.load_expression(data_root)
  assert len(lines) == 527
  ids, mut, info = events.event_features('mutation', data_root, lines)
  assert len(ids) == 516 and set(lines) - set(ids) == _EXPRESSION_LINES_WITHOUT_EVENTS
  assert ids == [c for c in lines if c in set(ids)]  # in the order asked for
  assert mut.shape == (516, 269)
  assert info == {'mutation_lines_dropped_no_events': 11, 'mutation_lines_dropped_ambiguous': 1,
                  'mutation_values_imputed': 0, 'mutation_events_dropped_constant': 2,
                  'mutation_dim': 269}
  cna_ids, cna, cna_info = events.event_features('cna', data_root, lines)
  assert cna_ids == ids and cna.shape == (516, 407) and cna_info['cna_events_dropped_constant'] == 0
  # The dropped mutation columns are all-zero, so each line keeps all its events; 51 lines are BRAF
  # mutant and 85 KRAS mutant among the 516.
  ev = events.read_events(data_root)
  mapping, _ = events.map_to_depmap(ev, data_root)
  row = {mapping[c]: i for i, c in enumerate(ev.cosmic_ids) if c in mapping}
  raw = ev.values[[row[c] for c in ids]]
  np.testing.assert_array_equal(mut.sum(axis=1) + cna.sum(axis=1), raw.sum(axis=1))
  assert raw[:, ev.columns.index('BRAF_mut')].sum() == 51
  assert raw[:, ev.columns.index('KRAS_mut')].sum() == 85


def test_events_join_other_cell_representations(data_root):
  """`expression+mutation+cna`: one block per source; lines without events dropped and counted."""
  from tests.conftest import data_config  # pylint: disable=g-import-not-at-top
  cfg = data_config(data_root, 'expression+mutation+cna')
  universe = cells.omics_cell_ids(data_root)
  x, ids, info = cells.build_cell_features(cfg, data_root, universe)
  assert x.shape == (516, 697 + 270 + 407) and len(ids) == 516
  assert info['blocks'] == [697, 270, 407]
  assert info['mutation_lines_dropped_no_events'] == 11 and info['cna_dim'] == 407


def test_real_line_annotations_on_expression_lines(data_root):
  """517 of the 527 expression lines get a GDSC screening medium, 337 a CCLE doubling time, and
  the dataset carries both for kernel ridge."""
  from cdr_jax import data  # pylint: disable=g-import-not-at-top
  from tests.conftest import data_config  # pylint: disable=g-import-not-at-top
  ds = data.load_dataset(data_config(data_root, 'expression'))
  assert set(ds.line_annotations) == {'medium', 'doubling'}
  assert ds.info['medium_lines'] == 517 and ds.info['medium_lines_without'] == 10
  assert ds.info['medium_values'] == {'D/F12': 222, 'D/F12+10': 4, 'H': 5, 'R': 272, 'R+10': 14}
  medium = dict(zip(ds.cell_ids, ds.line_annotations['medium']))
  assert (medium['ACH-000219'], medium['ACH-000971']) == (0, 3)   # A375 D/F12, HCT116 R
  doubling = ds.line_annotations['doubling']
  assert ds.info['doubling_lines'] == 337 and np.isfinite(doubling).sum() == 337
  assert 2 ** np.nanmin(doubling) == pytest.approx(20.9, abs=0.05)   # hours, as in the file
