"""Featuriser tests on hand-checked molecules (docs/DEEPCDR.md §3 layout)."""

import numpy as np
import pytest

import cdr_jax
from cdr_jax.data import chem

C, N, O, CL, NA, PT, UNKNOWN = 0, 1, 2, 7, 10, 40, 43
DEG, VAL, CHARGE, RADICAL, HYB, AROM, HS = 44, 55, 62, 63, 64, 69, 70


def active(row: np.ndarray) -> dict:
  """The set slots of one atom's features, by block."""
  return {'symbol': int(np.argmax(row[:44])), 'degree': int(np.argmax(row[DEG:VAL])),
          'valence': int(np.argmax(row[VAL:CHARGE])), 'charge': row[CHARGE],
          'radical': row[RADICAL], 'hyb': int(np.argmax(row[HYB:AROM])) if row[HYB:AROM].any() else None,
          'aromatic': row[AROM], 'hs': int(np.argmax(row[HS:]))}


def test_ethanol_by_hand():
  g = cdr_jax.smiles_to_graph('CCO')
  assert g.nodes.shape == (3, 75) and g.nodes.dtype == np.float32
  # Each one-hot block has exactly one set slot per atom.
  for lo, hi in [(0, 44), (DEG, VAL), (VAL, CHARGE), (HYB, AROM), (HS, 75)]:
    np.testing.assert_array_equal(g.nodes[:, lo:hi].sum(1), 1)
  c1, c2, o = (active(r) for r in g.nodes)
  assert c1 == dict(symbol=C, degree=1, valence=3, charge=0, radical=0, hyb=2, aromatic=0, hs=3)
  assert c2 == dict(symbol=C, degree=2, valence=2, charge=0, radical=0, hyb=2, aromatic=0, hs=2)
  assert o == dict(symbol=O, degree=1, valence=1, charge=0, radical=0, hyb=2, aromatic=0, hs=1)
  # Two bonds, each in both directions, no self loops.
  assert sorted(zip(g.senders.tolist(), g.receivers.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
  assert g.n_node.tolist() == [3] and g.n_edge.tolist() == [4]


def test_benzene_is_aromatic_sp2():
  g = cdr_jax.smiles_to_graph('c1ccccc1')
  for row in g.nodes:
    assert active(row) == dict(symbol=C, degree=2, valence=1, charge=0, radical=0, hyb=1,
                               aromatic=1, hs=1)
  assert len(g.senders) == 12


def test_salt_with_isolated_atoms():
  """Sodium chloride: two isolated ions, charges as integer values, no edges."""
  g = cdr_jax.smiles_to_graph('[Na+].[Cl-]')
  na, cl = (active(r) for r in g.nodes)
  assert (na['symbol'], na['degree'], na['charge'], na['hs']) == (NA, 0, 1.0, 0)
  assert (cl['symbol'], cl['degree'], cl['charge'], cl['hs']) == (CL, 0, -1.0, 0)
  assert g.senders.shape == (0,) and g.n_edge.tolist() == [0]


def test_cisplatin_salt_layout():
  g = cdr_jax.smiles_to_graph('N.N.[Cl-].[Cl-].[Pt+2]')
  symbols = [active(r)['symbol'] for r in g.nodes]
  assert symbols == [N, N, CL, CL, PT]
  assert g.nodes[4, CHARGE] == 2.0
  assert [active(r)['hs'] for r in g.nodes] == [3, 3, 0, 0, 0]
  assert g.nodes[:, DEG].sum() == 5  # all five atoms have degree 0


def test_out_of_range_values_fall_into_last_slot():
  g = cdr_jax.smiles_to_graph('[U]')  # uranium: not in the symbol list
  assert active(g.nodes[0])['symbol'] == UNKNOWN
  g = cdr_jax.smiles_to_graph('C[S](C)(C)(C)(C)C')  # hexavalent sulfur: degree 6
  assert active(g.nodes[1])['degree'] == 6


def test_radical_counted():
  g = cdr_jax.smiles_to_graph('[CH3]')
  assert g.nodes[0, RADICAL] == 1.0


@pytest.mark.parametrize('smiles', ['C1CC', 'not a smiles', ''])
def test_invalid_smiles_names_drug(smiles):
  with pytest.raises(cdr_jax.DataError, match=r'drug 12345.*' + repr(smiles)[1:-1][:4]):
    chem.smiles_to_graph(smiles, drug_id='12345')


def test_batch_pads_to_fixed_budget():
  graphs = [cdr_jax.smiles_to_graph(s) for s in ('CCO', '[Na+].[Cl-]', 'c1ccccc1')]
  batch = chem.batch_drug_graphs(graphs, multiple=16)
  assert batch.n_node.tolist()[:3] == [3, 2, 6] and len(batch.n_node) == 4
  assert batch.nodes.shape[0] % 16 == 0 and batch.nodes.shape[0] > 11
  # Edges of the benzene graph are offset into its node range.
  real_edges = int(batch.n_edge[:3].sum())
  assert set(batch.senders[4:real_edges].tolist()) <= set(range(5, 11))
