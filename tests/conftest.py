"""Shared fixtures: the real data root (from $CDR_DATA_DIR), a tiny DeepCDR-layout data root, and
real tiny run directories (training runs and LODO sweeps of configs/test.py)."""

import os
import csv
import pathlib
import shutil
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
  ann = ['CCLE_ID\tdepMapID\tName\tDoubling.Time.Calculated.hrs\ttcga_code']
  ann += [f'C{i}_X\t{c}\tC{i}\t{"NA" if i == 2 else 2 ** (i + 4)}\t{"BRCA" if i % 2 else "LUAD"}'
          for i, c in enumerate(TINY_CELLS)]
  ann += ['CX\tNA\tCX\t40\tNA']
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


def write_tiny_panels(root: pathlib.Path) -> pathlib.Path:
  """Writes two binding panels in the fetched files' formats under `root`/binding (a Davis-like Kd
  matrix, space-separated, every pair measured; a KIBA-like score matrix, tab-separated, nan = not
  measured): aspirin as its sodium salt and ibuprofen in davis, aspirin and caffeine in kiba."""
  davis, kiba = root / 'binding/davis', root / 'binding/kiba'
  davis.mkdir(parents=True)
  kiba.mkdir(parents=True)
  (davis / 'ligands_can.txt').write_text(
      '{"11": "CC(=O)Oc1ccccc1C(=O)[O-].[Na+]", "12": "CC(C)Cc1ccc(C(C)C(=O)O)cc1", '
      '"13": "c1ccncc1"}')
  (davis / 'proteins.txt').write_text('{"K1": "MA", "K2": "MB", "K3": "MC"}')
  (davis / 'drug-target_interaction_affinities_Kd__Davis_et_al.2011v1.txt').write_text(
      '100 10000 5\n10000 10 101\n1 1 1\n')   # binds at Kd <= 100 nM
  (kiba / 'ligands_can.txt').write_text(
      '{"C1": "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "C2": "OC(=O)c1ccccc1OC(C)=O"}')
  (kiba / 'proteins.txt').write_text('{"P1": "MA", "P2": "MB"}')
  (kiba / 'kiba_binding_affinity_v2.txt').write_text('12.5\tnan\n12.1\t11.0\n')
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


RUN_EPOCHS = 2  # tiny runs: enough for a history of two epochs and a best-epoch choice


class TinyRuns:
  """Real run directories of configs/test.py, each produced once per test session on first use."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self._made: dict[str, tuple] = {}

  def _once(self, name: str, spec: tuple, make) -> pathlib.Path:
    path = self.root / name
    if name in self._made:
      assert self._made[name] == spec, f'tiny run {name!r} asked for with two settings'
      return path
    make(path)
    self._made[name] = spec
    return path

  def train(self, name: str, variant: str | None = None,
            overrides: dict[str, object] | None = None) -> pathlib.Path:
    """A finished training run: configs/test.py:`variant`, RUN_EPOCHS epochs, 'section.key'
    `overrides`, written by cdr_jax.experiment.train_and_evaluate."""
    from cdr_jax import experiment  # pylint: disable=g-import-not-at-top
    cfg = _test_config(variant, overrides)
    return self._once(name, ('train', cfg.to_json()),
                      lambda path: experiment.train_and_evaluate(cfg, path))

  def sweep(self, name: str = 'lodo', drugs: str = 'random:3:0') -> pathlib.Path:
    """A finished LODO sweep: configs/test.py:lodo, RUN_EPOCHS epochs, by cdr_jax.lodo.run_sweep."""
    from cdr_jax import lodo  # pylint: disable=g-import-not-at-top
    cfg = _test_config('lodo', None)
    return self._once(name, ('sweep', drugs), lambda path: lodo.run_sweep(cfg, path, drugs=drugs))


def _test_config(variant: str | None, overrides: dict[str, object] | None):
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  cfg = test_config.get_config(variant)
  cfg.train.num_epochs = RUN_EPOCHS
  for key, value in (overrides or {}).items():
    section, field = key.split('.')
    cfg[section][field] = value
  return cfg


@pytest.fixture(scope='session')
def tiny_runs(tmp_path_factory) -> TinyRuns:
  """Real tiny training runs and LODO sweeps, shared by every test module of the session."""
  return TinyRuns(tmp_path_factory.mktemp('tiny_runs'))


def hand_dataset(pair_cell, pair_drug, pair_y, cell_features=None, cell_type=None,
                 pair_label=None, num_cells: int | None = None, num_drugs: int | None = None):
  """A Dataset written out by hand (no drug graphs): cells 'C<i>', drugs 'D<i>' named 'drug <i>',
  cancer types 'T<i>'; for baselines, metrics and run files, which never read the graphs."""
  from cdr_jax.data.dataset import Dataset  # pylint: disable=g-import-not-at-top
  pair_cell, pair_drug = np.asarray(pair_cell, np.int32), np.asarray(pair_drug, np.int32)
  num_cells = num_cells or int(pair_cell.max()) + 1
  num_drugs = num_drugs or int(pair_drug.max()) + 1
  cell_type = np.asarray(np.zeros(num_cells) if cell_type is None else cell_type, np.int32)
  features = np.zeros((num_cells, 1)) if cell_features is None else cell_features
  labels = np.full(len(pair_cell), -1) if pair_label is None else pair_label
  return Dataset(
      cell_ids=tuple(f'C{i}' for i in range(num_cells)),
      cell_features=np.asarray(features, np.float32), cell_type=cell_type,
      cancer_types=tuple(f'T{i}' for i in range(int(cell_type.max()) + 1)),
      drug_ids=tuple(f'D{i}' for i in range(num_drugs)),
      drug_names=tuple(f'drug {i}' for i in range(num_drugs)), drug_graphs=None,
      pair_cell=pair_cell, pair_drug=pair_drug, pair_y=np.asarray(pair_y, np.float32),
      pair_label=np.asarray(labels, np.int8))


def read_csv(path: pathlib.Path) -> list[dict]:
  """CSV rows as dicts of strings."""
  with open(path, newline='', encoding='utf-8') as f:
    return list(csv.DictReader(f))


def copy_run(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
  """A private copy of a shared run directory, for a test to corrupt."""
  return pathlib.Path(shutil.copytree(run, tmp_path / run.name,
                                      ignore=shutil.ignore_patterns('checkpoints', 'tb')))
