"""Screens: GDSC measured some drugs under two drug ids; the classical predictors may fit each
screen as a column of its own (`experiment.drug_axis`), scored per drug as before."""

import csv
import dataclasses
import inspect
import json

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax.data import chem
from cdr_jax.data import dataset
from cdr_jax.data import splits
from cdr_jax.data import synthetic
from cdr_jax.eval import classical
from configs import common
from tests.conftest import data_config
from tests.conftest import hand_dataset

N_CELLS, N_DRUGS, OFFSET = 40, 4, 2.0


def _planted(seed: int = 0):
  """40 lines x 4 drugs, every pair measured once per screen; drug 0 in two screens (0 and 1)
  whose ln IC50s differ by OFFSET on every line, drugs 1-3 one screen each (2-4). Line effect +
  drug effect + a rank-one interaction + noise; one in six pairs is a test pair, one in six a
  validation pair, dealt so that every screen has training pairs."""
  rng = np.random.default_rng(seed)
  screen_drug = np.array([0, 0, 1, 2, 3])
  line = rng.standard_normal(N_CELLS)
  u, v = rng.standard_normal(N_CELLS), rng.standard_normal(N_DRUGS)
  cell = np.repeat(np.arange(N_CELLS), len(screen_drug))
  screen = np.tile(np.arange(len(screen_drug)), N_CELLS)
  drug = screen_drug[screen]
  y = (line[cell] + 0.5 * drug + u[cell] * v[drug] + OFFSET * (screen == 1)
       + 0.2 * rng.standard_normal(len(cell)))
  ds = dataclasses.replace(hand_dataset(cell, drug, y), pair_screen=screen.astype(np.int32),
                           screen_ids=('G1', 'G1b', 'G2', 'G3', 'G4'))
  part = rng.permutation(len(y)) % 6
  split = splits.Split('legacy', np.flatnonzero(part >= 2), np.flatnonzero(part == 1),
                       np.flatnonzero(part == 0))
  return ds, split, rng.standard_normal((N_CELLS, 3))


def _config(screens: bool = True):
  config = common.base_config()
  config.data.screens = screens
  return config


def test_drug_columns_are_the_drugs_without_screens():
  ds = hand_dataset([0, 1, 1], [1, 0, 1], [1.0, 2.0, 3.0])
  column, n, screen_drug = ds.drug_columns()
  np.testing.assert_array_equal(column, ds.pair_drug)
  assert n == 2
  np.testing.assert_array_equal(screen_drug, [0, 1])


def test_drug_columns_map_screens_to_drugs():
  ds, _, _ = _planted()
  column, n, screen_drug = ds.drug_columns()
  assert n == 5
  np.testing.assert_array_equal(screen_drug, [0, 0, 1, 2, 3])
  np.testing.assert_array_equal(screen_drug[column], ds.pair_drug)


def test_drug_axis_says_why_not():
  ds, split, _ = _planted()
  for name in ('legacy', 'leave_cell_out'):   # seen pairs and unseen lines
    column, n, about = experiment.drug_axis(ds, dataclasses.replace(split, name=name), _config())
    assert about['columns'] == 'screen' and n == 5
  assert (about['drugs'], about['screens'], about['drugs_with_several_screens']) == (4, 5, 1)
  np.testing.assert_array_equal(column, ds.pair_screen)
  cases = {
      'data.screens is off': (ds, split, _config(False)),
      'no drug has more than one screen': (dataclasses.replace(ds, pair_screen=None), split,
                                           _config()),
  }
  # A validation pair of screen 1 whose screen has no training pair.
  orphan = split.train[ds.pair_screen[split.train] == 1]
  cases['has no training pair'] = (ds, dataclasses.replace(
      split, train=np.setdiff1d(split.train, orphan), val=np.concatenate([split.val, orphan])),
                                   _config())
  # Unseen drugs: drug 0 (both its screens) held out.
  held = ds.pair_drug == 0
  lodo = splits.Split('leave_drug_out', np.flatnonzero(~held & (np.arange(len(held)) % 5 > 0)),
                      np.flatnonzero(~held & (np.arange(len(held)) % 5 == 0)),
                      np.flatnonzero(held))
  cases['has no training pair (drug 0 held out)'] = (ds, lodo, _config())
  for why, (d, s, c) in cases.items():
    column, n, about = experiment.drug_axis(d, s, c)
    assert about['columns'] == 'drug' and why.split(' (')[0] in about['why']
    np.testing.assert_array_equal(column, d.pair_drug)
    assert n == N_DRUGS


def test_screen_columns_recover_the_offset_and_score_per_drug():
  ds, split, x = _planted()
  by = {}
  for screens in (True, False):
    val = {}
    preds, _ = experiment.fit_classical(ds, split, x, _config(screens), split.test,
                                        val_predictions=val)
    by[screens] = preds
  test = split.test
  first = ds.pair_screen[test] == 0
  second = ds.pair_screen[test] == 1
  # Per screen, the additive model's residuals have the same level in both screens: it learnt
  # screen 1's drug effect OFFSET above screen 0's.
  add = by[True]['additive']
  level = lambda p, m: float(np.mean(p[m] - ds.pair_y[test][m]))
  assert abs(level(add, second) - level(add, first)) < 0.3
  # Per drug, the two assays are averaged: the offset is left in the residuals.
  flat = by[False]['additive']
  assert abs(level(flat, second) - level(flat, first)) == pytest.approx(OFFSET, abs=0.3)
  # Scored per drug (drug 0 mixes both screens), screens explain drug 0's spread.
  y, drug = ds.pair_y[test], ds.pair_drug[test]
  zero = drug == 0
  pcc = lambda p: float(np.corrcoef(p[zero], y[zero])[0, 1])
  assert pcc(by[True]['drug_blend']) > 0.9 > pcc(by[False]['drug_blend']) + 0.1
  assert classical.mean_drug_pcc(by[True]['drug_blend'], y, drug) > classical.mean_drug_pcc(
      by[False]['drug_blend'], y, drug)


def test_screen_choice_never_reads_test_labels():
  ds, split, x = _planted()
  y = ds.pair_y.copy()
  y[split.test] = np.random.default_rng(1).standard_normal(len(split.test))
  scrambled = dataclasses.replace(ds, pair_y=y)
  choices = []
  for d in (ds, scrambled):
    _, info = experiment.fit_classical(d, split, x, _config(), split.test)
    choices.append({k: v.get('params', {}).get('val_score') for k, v in info.items()})
  assert choices[0] == choices[1]


def test_real_data_screens(data_root):
  ds = data.load_dataset(data_config(data_root, 'expression'))
  column, n, screen_drug = ds.drug_columns()
  assert n == 238 and len(ds.screen_ids) == 238
  assert int(np.sum(np.bincount(screen_drug) == 2)) == 15
  # Every repeated (line, drug) pair is one measurement per screen: none repeats within a screen.
  per_screen = ds.pair_cell.astype(np.int64) * n + column
  assert len(np.unique(per_screen)) == ds.num_pairs
  per_drug = ds.pair_cell.astype(np.int64) * len(ds.drug_ids) + ds.pair_drug
  assert ds.num_pairs - len(np.unique(per_drug)) == 5960
  split = splits.make_split(ds, common.base_config().split)
  assert experiment.drug_axis(ds, split, _config())[2]['columns'] == 'screen'


def test_screens_as_drugs_keeps_pairs_and_copies_each_drug():
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  c = test_config.get_config()
  c.data.synthetic_screens, c.data.drug_repr = 2, 'graph+morgan'
  ds = data.load_dataset(c.data)
  view = dataset.screens_as_drugs(ds)
  n = c.data.num_drugs
  assert len(view.drug_ids) == n + 2 and view.pair_screen is None
  assert view.drug_ids[:n - 2] == ds.drug_ids[:n - 2]
  twice = (n - 2, n - 1)
  assert view.drug_ids[n - 2:] == (tuple(f'{ds.drug_ids[i]}@{i + 1}' for i in twice)
                                   + tuple(f'{ds.drug_ids[i]}@{1001 + i}' for i in twice))
  np.testing.assert_array_equal(view.pair_drug, ds.pair_screen)
  np.testing.assert_array_equal(view.pair_y, ds.pair_y)
  np.testing.assert_array_equal(view.drug_features[n + 1], ds.drug_features[n - 1])
  assert view.drug_smiles[n + 1] == ds.drug_smiles[n - 1]
  # Screen n + 1's graph is drug n - 1's.
  same = lambda g, i: chem.graph_at(g, i).nodes
  np.testing.assert_array_equal(same(view.drug_graphs, n + 1), same(ds.drug_graphs, n - 1))
  # The second screen reads SCREEN_OFFSET higher on the same lines.
  first, second = ds.pair_screen == n - 1, ds.pair_screen == n + 1
  np.testing.assert_array_equal(ds.pair_cell[first], ds.pair_cell[second])
  assert float(np.mean(ds.pair_y[second] - ds.pair_y[first])) == pytest.approx(
      synthetic.SCREEN_OFFSET, abs=0.2)
  with pytest.raises(ValueError, match='needs every screen'):
    dataset.screens_as_drugs(hand_dataset([0], [0], [1.0]))


@pytest.mark.parametrize('variant', [None, 'leave_cell_out'])
def test_network_learns_screens_end_to_end(tmp_path, variant):
  """A run on synthetic data with two drugs screened twice (seen pairs; unseen lines): the
  network's drugs are the screens (on seen pairs its warm start's matrix factorisation is the
  classical one; on unseen lines its per-drug linear term starts as kernel ridge per screen),
  scores and files stay per drug, and `predict` asks which screen of a twice-screened drug."""
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  from cdr_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  c = test_config.get_config(variant)
  c.data.synthetic_screens, c.train.num_epochs, c.train.patience = 2, 2, 2
  experiment.train_and_evaluate(c, tmp_path)
  out = json.loads((tmp_path / 'metrics.json').read_text())
  assert out['drug_axis']['columns'] == 'screen' and out['drug_axis']['screens'] == 14
  if variant is None:
    assert out['classical']['matrix_factorization']['prefit'] is True
  ds = data.load_dataset(c.data)
  rows = (tmp_path / 'predictions.csv').read_text().splitlines()
  assert len(rows) - 1 == len(splits.make_split(ds, c.split).test)
  assert {r.split(',')[1] for r in rows[1:]} <= set(ds.drug_ids)   # per drug (CID), as before
  twice_rows = [r.split(',') for r in rows[1:] if r.split(',')[1] == ds.drug_ids[-1]]
  assert rows[0].split(',')[-1] == 'screen' and {r[-1] for r in twice_rows} == {'12', '1012'}
  twice, line = ds.drug_ids[-1], ds.cell_ids[0]
  with pytest.raises(DataError, match=f"drug '{twice}' was screened under several GDSC ids"):
    predict.predict(tmp_path, [(line, twice)])
  lines = ds.cell_ids[:8]
  got = predict.predict(tmp_path, [(x, f'{twice}@12') for x in lines]
                        + [(x, f'{twice}@1012') for x in lines])
  values = np.array([r['predicted'] for r in got]).reshape(2, -1)
  # Its two screens differ by most of the offset (the warm start's L2 shrinks it on 24 lines); one
  # drug identity would give both the same prediction.
  assert 0.5 * synthetic.SCREEN_OFFSET < float(np.mean(values[1] - values[0])) < 1.5 * (
      synthetic.SCREEN_OFFSET)
  split = splits.make_split(ds, c.split)
  c.data.screens = False
  assert experiment.network_dataset(ds, split, c) is ds
  del c.data.screens   # a run written before the field trained one identity per drug
  assert experiment.network_dataset(ds, split, c) is ds


def test_lodo_sweep_fits_kernel_ridge_per_screen(tmp_path, monkeypatch):
  """Unseen drugs keep one network identity per drug, but kernel ridge over drugs (the sweep's
  classical baseline, the stack's and each fold's start) fits one profile column per screen, a
  held-out drug leaving with both its screens; `data.screens=False` fits one per drug. The
  baseline's scores are recomputed here; the stack's baseline and the starts are checked to get
  the screens (their per-screen fits are tested in test_lodo_kernel.py)."""
  from cdr_jax import lodo  # pylint: disable=g-import-not-at-top
  from cdr_jax.eval import lodo_kernel  # pylint: disable=g-import-not-at-top
  from cdr_jax.train import warm_start  # pylint: disable=g-import-not-at-top
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  c = test_config.get_config('lodo').unlock()
  c.data.synthetic_screens, c.train.num_epochs, c.train.patience = 2, 1, 1
  c.model.line_init = 'kernel_ridge'
  ds = data.load_dataset(c.data)
  twice, once = len(ds.drug_ids) - 1, 0
  seen = {'without_drug': [], 'fit_drugs': []}
  for name in seen:
    def spy(*args, _name=name, _real=getattr(lodo_kernel, name), **kwargs):
      bound = inspect.signature(_real).bind(*args, **kwargs).arguments
      seen[_name].append(bound.get('pair_screen'))
      return _real(*args, **kwargs)
    monkeypatch.setattr(lodo_kernel, name, spy)
  summary = lodo.run_sweep(c, tmp_path, drugs=f'{ds.drug_ids[twice]},{ds.drug_ids[once]}')
  assert summary['classical_kernel']['columns'] == 'screen'
  assert len(seen['without_drug']) == 2 and len(seen['fit_drugs']) >= 2   # stacks; starts
  for screens in seen['without_drug']:
    np.testing.assert_array_equal(screens, ds.pair_screen)
  for screens in seen['fit_drugs']:        # each start's training pairs' screens
    assert screens is not None and len(np.unique(screens)) > len(np.unique(ds.pair_drug)) - 2
  monkeypatch.undo()
  kernel = warm_start.drug_kernel(ds, c)
  want = {screens: lodo_kernel.lodo_kernel_ridge(
      ds.pair_cell, ds.pair_drug, ds.pair_y, len(ds.cell_ids), kernel[None], np.ones((1, 1)),
      lodo_kernel.LAMBDAS, folds=[twice, once],
      pair_screen=ds.pair_screen if screens else None) for screens in (True, False)}
  with open(tmp_path / 'lodo_per_drug.csv') as f:
    rows = {r['drug_id']: r for r in csv.DictReader(f)}
  for d in (twice, once):
    test = ds.pair_drug == d
    got = float(rows[ds.drug_ids[d]]['kernel_pcc'])
    per_screen = float(np.corrcoef(want[True].profiles[d][ds.pair_cell[test]], ds.pair_y[test])[0, 1])
    assert got == pytest.approx(per_screen, abs=1e-6)
  per_drug = np.corrcoef(want[False].profiles[twice][ds.pair_cell[ds.pair_drug == twice]],
                         ds.pair_y[ds.pair_drug == twice])[0, 1]
  assert abs(per_drug - float(rows[ds.drug_ids[twice]]['kernel_pcc'])) > 1e-4
  # Each fold's start is kernel ridge per screen over its training drugs.
  fold = lodo.make_fold(ds, twice, c.lodo.val_fraction, c.split.seed)
  fit = warm_start.fit_line(ds, fold.train, kernel, c.data)
  assert fit.params['columns'] == fit.params['drugs'] + 1   # one training drug screened twice
  c.data.screens = False
  assert warm_start.fit_line(ds, fold.train, kernel, c.data).params['columns'] == (
      fit.params['drugs'])
