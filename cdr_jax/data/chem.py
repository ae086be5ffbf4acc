"""Drug molecules as graphs: SMILES -> 75 atom features (DeepChem ConvMol layout) -> jraph.GraphsTuple.

The feature layout is docs/DEEPCDR.md §3. Atom order is RDKit's; a GCN with pooling does not care.
"""

from collections.abc import Sequence

import jraph
import numpy as np
from rdkit import Chem
from rdkit import RDLogger

from cdr_jax.errors import DataError

RDLogger.DisableLog('rdApp.*')  # RDKit prints parse errors to stderr; we raise our own.

SYMBOLS = ('C', 'N', 'O', 'S', 'F', 'Si', 'P', 'Cl', 'Br', 'Mg', 'Na', 'Ca', 'Fe', 'As', 'Al', 'I',
           'B', 'V', 'K', 'Tl', 'Yb', 'Sb', 'Sn', 'Ag', 'Pd', 'Co', 'Se', 'Ti', 'Zn', 'H', 'Li', 'Ge',
           'Cu', 'Au', 'Ni', 'Cd', 'In', 'Mn', 'Zr', 'Cr', 'Pt', 'Hg', 'Pb', 'Unknown')
DEGREES = tuple(range(11))
IMPLICIT_VALENCES = tuple(range(7))
HYBRIDIZATIONS = (Chem.HybridizationType.SP, Chem.HybridizationType.SP2,
                  Chem.HybridizationType.SP3, Chem.HybridizationType.SP3D,
                  Chem.HybridizationType.SP3D2)
TOTAL_HS = tuple(range(5))
NUM_ATOM_FEATURES = 75


def _one_hot(value, choices: Sequence) -> list[float]:
  """One-hot of `value` over `choices`; values outside fall into the last slot (docs/DEEPCDR.md §3)."""
  out = [0.0] * len(choices)
  out[choices.index(value) if value in choices else len(choices) - 1] = 1.0
  return out


def atom_features(atom: Chem.Atom) -> np.ndarray:
  """The 75 features of one atom, in exactly the layout of docs/DEEPCDR.md §3."""
  feats = (
      _one_hot(atom.GetSymbol(), SYMBOLS)
      + _one_hot(atom.GetDegree(), DEGREES)
      + _one_hot(atom.GetValence(Chem.ValenceType.IMPLICIT), IMPLICIT_VALENCES)
      + [float(atom.GetFormalCharge()), float(atom.GetNumRadicalElectrons())]
      + _one_hot(atom.GetHybridization(), HYBRIDIZATIONS)
      + [float(atom.GetIsAromatic())]
      + _one_hot(atom.GetTotalNumHs(), TOTAL_HS))
  return np.asarray(feats, np.float32)


def smiles_to_graph(smiles: str, drug_id: str = '?') -> jraph.GraphsTuple:
  """Featurises one molecule: nodes [n_atoms, 75] float32, one edge per bond in each direction.

  Args:
    smiles: the molecule.
    drug_id: named in the error if the SMILES does not parse.

  Returns:
    A single-graph `jraph.GraphsTuple` of numpy arrays (edges=None: bonds carry no features).
  """
  mol = Chem.MolFromSmiles(smiles) if smiles else None
  if mol is None or mol.GetNumAtoms() == 0:
    raise DataError(f'invalid SMILES for drug {drug_id}: {smiles!r} (RDKit could not parse it)')
  nodes = np.stack([atom_features(a) for a in mol.GetAtoms()])
  bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
  senders = np.array([i for i, j in bonds] + [j for i, j in bonds], np.int32)
  receivers = np.array([j for i, j in bonds] + [i for i, j in bonds], np.int32)
  return jraph.GraphsTuple(
      nodes=nodes, edges=None, senders=senders, receivers=receivers, globals=None,
      n_node=np.array([len(nodes)], np.int32), n_edge=np.array([len(senders)], np.int32))


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def batch_drug_graphs(graphs: Sequence[jraph.GraphsTuple], multiple: int = 64) -> jraph.GraphsTuple:
  """All drugs as one padded GraphsTuple: graph i is drug i, plus one trailing padding graph.

  Node and edge budgets are the totals rounded up (with at least one padding node), so the arrays have
  a fixed shape for a given set of drugs and a jitted step compiles once.
  """
  batch = jraph.batch_np(list(graphs))
  n_nodes = _round_up(int(batch.n_node.sum()) + 1, multiple)
  n_edges = _round_up(int(batch.n_edge.sum()) + 1, multiple)
  return jraph.pad_with_graphs(batch, n_node=n_nodes, n_edge=n_edges, n_graph=len(graphs) + 1)


def graph_at(g: jraph.GraphsTuple, i: int) -> jraph.GraphsTuple:
  """Graph `i` of a padded batch (`batch_drug_graphs`), as a single-graph GraphsTuple of numpy
  arrays."""
  n0, n = int(g.n_node[:i].sum()), int(g.n_node[i])
  e0, e = int(g.n_edge[:i].sum()), int(g.n_edge[i])
  return g._replace(nodes=np.asarray(g.nodes[n0:n0 + n]),
                    senders=np.asarray(g.senders[e0:e0 + e]) - n0,
                    receivers=np.asarray(g.receivers[e0:e0 + e]) - n0, n_node=np.array([n]),
                    n_edge=np.array([e]))
