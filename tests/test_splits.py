"""Splits: exact legacy sizes on real data, Python 2 sampling, determinism, and no leakage anywhere."""

import random

import dataclasses

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax.data import splits
from configs import common
from tests.conftest import data_config


def split_cfg(name, **kw):
  cfg = common.base_config().split
  cfg.name = name
  cfg.update(kw)
  return cfg


def assert_partition(ds, s):
  """Train, val and test are disjoint; nothing outside the dataset."""
  parts = [set(s.train.tolist()), set(s.val.tolist()), set(s.test.tolist())]
  assert all(len(p) == len(a) for p, a in zip(parts, (s.train, s.val, s.test)))
  assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
  assert max(max(p, default=0) for p in parts) < ds.num_pairs
  assert len(s.train) and len(s.val) and len(s.test)


def test_py2_sample_both_branches():
  # Pool branch (n <= setsize): a permutation prefix, no repeats, consumes k draws.
  rng, ref = random.Random(3), random.Random(3)
  out = splits.py2_sample(rng, list(range(10)), 4)
  pool = list(range(10))
  expect = []
  for i in range(4):
    j = int(ref.random() * (10 - i))
    expect.append(pool[j])
    pool[j] = pool[9 - i]
  assert out == expect and rng.random() == ref.random()
  # Set branch (n > setsize): rejection sampling by index.
  out = splits.py2_sample(random.Random(0), list(range(1000)), 7)
  ref = random.Random(0)
  assert out == [int(ref.random() * 1000) for _ in range(7)]  # no collision in the first 7 here
  with pytest.raises(ValueError):
    splits.py2_sample(random.Random(0), [1, 2], 3)


def test_legacy_split_real_data(data_root):
  ds = data.load_dataset(data_config(data_root, 'scfoundation'))
  s = splits.make_split(ds, split_cfg('legacy'))
  assert len(s.train) + len(s.val) == 89585 and len(s.test) == 4729
  assert_partition(ds, s)
  # Test is in label order, instance order within each label.
  types = [ds.cancer_types[t] for t in ds.pair_type[s.test]]
  order = [splits.LEGACY_TYPES.index(t) for t in types]
  assert order == sorted(order)
  for label in ('BRCA', 'SKCM'):
    members = s.test[np.array(types) == label]
    assert np.all(np.diff(members) > 0)
  # The drug-mean predictor fit on train+val reproduces docs/DEEPCDR.md §7's 0.8385 on this test set.
  train = np.concatenate([s.train, s.val])
  means = np.bincount(ds.pair_drug[train], ds.pair_y[train]) / np.bincount(ds.pair_drug[train])
  pcc = np.corrcoef(means[ds.pair_drug[s.test]], ds.pair_y[s.test])[0, 1]
  assert pcc == pytest.approx(0.8385, abs=5e-5)


@pytest.mark.parametrize('name, extra', [
    ('random', {}), ('random', {'stratify': False}), ('leave_drug_out', {'fold': 3}),
    ('leave_cell_out', {'fold': 1, 'num_folds': 4}), ('leave_cancer_type_out', {'fold': 2}),
    ('legacy', {})])
def test_no_leakage_and_deterministic(synthetic_dataset, name, extra):
  ds = synthetic_dataset
  if name == 'legacy':  # synthetic types are not TCGA labels; relabel two of them.
    ds = dataclasses.replace(ds, cancer_types=('BRCA', 'LUAD', 'X', 'Y'))
  cfg = split_cfg(name, val_fraction=0.2, **extra)
  s = splits.make_split(ds, cfg)
  assert_partition(ds, s)
  again = splits.make_split(ds, cfg)
  for a, b in zip((s.train, s.val, s.test), (again.train, again.val, again.test)):
    np.testing.assert_array_equal(a, b)
  entity = {'leave_drug_out': ds.pair_drug, 'leave_cell_out': ds.pair_cell,
            'leave_cancer_type_out': ds.pair_cell}.get(name)
  if entity is not None:  # held-out entities appear in neither train nor validation
    held = set(entity[s.test].tolist())
    assert not held & set(entity[s.train].tolist())
    assert not held & set(entity[s.val].tolist())
    assert not set(entity[s.val].tolist()) & set(entity[s.train].tolist())
    assert len(s.train) + len(s.val) + len(s.test) == ds.num_pairs
  if name == 'leave_cancer_type_out':
    assert set(ds.pair_type[s.test].tolist()) == {2}
    assert 2 not in set(ds.pair_type[s.train].tolist())
  if name == 'leave_drug_out':
    assert set(ds.pair_drug[s.test].tolist()) == {3}
  if name == 'random' and extra.get('stratify', True):
    for t in range(4):  # every cancer type is represented in test
      assert (ds.pair_type[s.test] == t).sum() > 0
  other = splits.make_split(ds, split_cfg(name, val_fraction=0.2, **{**extra, 'seed': 1}))
  assert not np.array_equal(other.val, s.val)  # the seed matters


def test_leave_cell_out_folds_cover_every_line(synthetic_dataset):
  ds = synthetic_dataset
  tested = np.concatenate([
      splits.make_split(ds, split_cfg('leave_cell_out', fold=f, num_folds=5)).test for f in range(5)])
  assert sorted(tested.tolist()) == list(range(ds.num_pairs))


def test_unknown_split_and_fold(synthetic_dataset):
  with pytest.raises(ValueError, match=r"unknown split 'blind'.*leave_cell_out"):
    splits.make_split(synthetic_dataset, split_cfg('blind'))
  with pytest.raises(ValueError, match=r'split.fold=99 out of range'):
    splits.make_split(synthetic_dataset, split_cfg('leave_drug_out', fold=99))


def test_type_groups_for_the_same_type_kernel(synthetic_dataset):
  """Cancer types as kernel-ridge groups: 'NA' (unlabelled) joins no group; none at all when a
  whole type is held out (its lines would share no group with a training line)."""
  ds = dataclasses.replace(synthetic_dataset, cancer_types=('BRCA', 'NA', 'LUAD', 'SKCM'))
  groups = splits.type_groups(ds, 'leave_cell_out')
  np.testing.assert_array_equal(groups, np.where(ds.cell_type == 1, -1, ds.cell_type))
  assert (groups == -1).any() and set(groups.tolist()) == {-1, 0, 2, 3}
  np.testing.assert_array_equal(splits.type_groups(ds, 'legacy'), groups)
  assert splits.type_groups(ds, 'leave_cancer_type_out') is None


def test_line_annotations_name_what_the_dataset_has(synthetic_dataset):
  """Kernel ridge's annotations: the type (not when a whole type is held out) and the dataset's
  others (the synthetic one has a medium and a doubling time)."""
  ds = dataclasses.replace(synthetic_dataset, line_annotations={})
  assert set(splits.line_annotations(ds, 'leave_cell_out')) == {'type'}
  assert splits.line_annotations(ds, 'leave_cancer_type_out') == {}
  ds = synthetic_dataset
  found = splits.line_annotations(ds, 'leave_cell_out')
  assert set(found) == {'type', 'medium', 'doubling'}
  np.testing.assert_array_equal(found['type'], splits.type_groups(ds, 'leave_cell_out'))
  assert found['medium'].dtype == np.int64 and found['doubling'].dtype == np.float64
  assert set(splits.line_annotations(ds, 'leave_cancer_type_out')) == {'medium', 'doubling'}
