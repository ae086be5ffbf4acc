"""Shared fixtures: the real data root (from $CDR_DATA_DIR) and a tiny DeepCDR-layout data root."""

import os
import pathlib
import tempfile

# Share XLA compilations between the tests and the launcher subprocesses they start (set before
# JAX is imported anywhere): compiling the same tiny step again dominates test time on a CPU.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='cdr_jax_cache_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
# Tests never fetch data from the internet: a missing data file raises instead (test_fetch serves
# files on 127.0.0.1 and turns this off where it tests fetching on first use).
os.environ['CDR_OFFLINE'] = '1'

import ml_collections
import numpy as np
import pytest

from configs import common


@pytest.fixture(scope='session')
def data_root() -> pathlib.Path:
  """The real data root; tests using it skip (saying why) only when CDR_DATA_DIR is unset."""
  root = os.environ.get('CDR_DATA_DIR')
  if not root:
    pytest.skip('CDR_DATA_DIR is not set: real-data test skipped (.ci/run sets it to ../shared/data)')
  return pathlib.Path(root)


TINY_SMILES = {'2244': 'CC(=O)Oc1ccccc1C(=O)O', '2519': 'Cn1cnc2c1c(=O)n(C)c(=O)n2C',
               '3672': 'CC(C)Cc1ccc(C(C)C(=O)O)cc1', '84691': 'N.N.[Cl-].[Cl-].[Pt+2]'}
TINY_CELLS = ['ACH-000001', 'ACH-000002', 'ACH-000003', 'ACH-000004', 'ACH-000005', 'ACH-000006']


def write_tiny_root(root: pathlib.Path) -> pathlib.Path:
  """Writes a 4-drug, 6-cell data root in DeepCDR's layout (GDSC ids 1..5; id 5 has no CID)."""
  (root / 'deepcdr/CCLE').mkdir(parents=True)
  (root / 'deepcdr/GDSC').mkdir(parents=True)
  (root / 'scfoundation').mkdir()
  cids = list(TINY_SMILES)
  (root / 'deepcdr/223drugs_pubchem_smiles.txt').write_text(
      ''.join(f'{c}\t{s}\n' for c, s in TINY_SMILES.items()))
  lines = ['drug_id,Name,Synonyms,Targets,Target pathway,PubCHEM,Sample Size,Count']
  lines += [f'{i + 1},Drug{i + 1},"D{i + 1}, X",T,P,{c},10,6' for i, c in enumerate(cids)]
  lines += ['5,Drug5,,T,P,none,10,6']
  (root / 'deepcdr/GDSC/1.Drug_listMon Jun 24 09_00_55 2019.csv').write_text('\n'.join(lines) + '\n')
  rng = np.random.default_rng(0)
  ic50 = ['"",' + ','.join(f'"{c}"' for c in TINY_CELLS + ['ACH-999999'])]
  for g in range(1, 6):
    vals = [f'{v:.4f}' for v in rng.normal(2, 2, 7)]
    vals[g % 6] = 'NA'
    ic50.append(f'"GDSC:{g}",' + ','.join(vals))
  (root / 'deepcdr/CCLE/GDSC_IC50.csv').write_text('\n'.join(ic50) + '\n')
  ann = ['CCLE_ID\tdepMapID\tName\ttcga_code']
  ann += [f'C{i}_X\t{c}\tC{i}\t{"BRCA" if i % 2 else "LUAD"}' for i, c in enumerate(TINY_CELLS)]
  ann += ['CX\tNA\tCX\tNA']
  (root / 'deepcdr/CCLE/Cell_lines_annotations_20181226.txt').write_text('\n'.join(ann) + '\n')
  (root / 'deepcdr/CCLE/IC50_thred.txt').write_text(
      'Drug1\tD2\tDrug3\tX, Drug4\n1.0\t2.0\t3.0\t4.0')
  expr = ['DepMap_ID,G1,G2,G3']
  expr += [f'{c},{i}.5,{"NaN" if i == 1 else 2},{i}' for i, c in enumerate(TINY_CELLS[:5])]
  expr += [f'{TINY_CELLS[5]},NaN,NaN,NaN']
  (root / 'deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv').write_text(
      '\n'.join(expr) + '\n')
  meth = [',M1,M2'] + [f'{c},0.{i},0.5' for i, c in enumerate(TINY_CELLS)]
  (root / 'deepcdr/CCLE/genomic_methylation_561celllines_808genes_demap_features.csv').write_text(
      '\n'.join(meth) + '\n')
  np.save(root / 'scfoundation/50M-0.1B-res_embedding.npy',
          rng.normal(size=(6, 5)).astype(np.float32))
  (root / 'scfoundation/50M-0.1B-res_embedding.cells.txt').write_text('\n'.join(TINY_CELLS) + '\n')
  return root


@pytest.fixture
def tiny_root(tmp_path) -> pathlib.Path:
  return write_tiny_root(tmp_path / 'data')


def data_config(root, cell_repr: str = 'scfoundation') -> ml_collections.ConfigDict:
  """The data section of the base config, pointed at `root`."""
  cfg = common.base_config().data
  cfg.root, cfg.cell_repr = str(root), cell_repr
  return cfg


@pytest.fixture
def synthetic_dataset():
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from cdr_jax import data  # pylint: disable=g-import-not-at-top
  return data.load_dataset(test_config.get_config().data)


def require(module: str):
  """Imports a sidecar dependency: under CI (which installs it) a missing one fails loudly; elsewhere
  the sidecar tests are skipped, saying how to install it."""
  if os.environ.get('CI'):
    return __import__(module)
  return pytest.importorskip(module, reason=f'{module} is not installed: bash embed_torch/install.sh')
