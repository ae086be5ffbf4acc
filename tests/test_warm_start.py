"""Warm starts from the tuned classical predictors: identity codes from matrix factorisation
(`model.id_init='mf'`), the per-drug linear term from ridge / kernel ridge
(`model.linear_init='ridge'`, `data.cell_kernel='rbf'`), the per-line linear term from kernel
ridge over drugs (`model.line_init='kernel_ridge'`, unseen drugs)."""

import dataclasses
import json

import numpy as np
import pytest

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax import lodo
from cdr_jax.data import cells
from cdr_jax.data import dataset
from cdr_jax.data import splits
from cdr_jax.eval import classical
from cdr_jax.eval import lodo_kernel
from cdr_jax.train import warm_start
from configs import test as test_config


def config(arg=None, **model):
  c = test_config.get_config(arg)
  c.model.update(model)
  return c


def unseen_lines(**data_fields):
  c = config('leave_cell_out', id_embed_dim=0, linear_init='ridge')
  c.data.update(data_fields)
  return c


def prepare(c):
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  lines, seen = np.unique(ds.pair_cell[split.train]), np.unique(ds.pair_drug[split.train])
  chosen = warm_start.configure(c, ds, split,
                                experiment.standardized_features(ds, lines, seen, c)[0])
  for key, value in chosen.settings.items():  # what was chosen is what the config has
    section, field = key.split('.')
    assert chosen.config[section][field] == value
  return ds, split, lines, chosen.config, chosen.warm


@pytest.fixture(scope='module')
def seen():
  return prepare(config())


def untrained(ds, split, lines, warmed, warm, pairs):
  """(warm-started, cold) predictions of the untrained network, natural scale."""
  run = experiment.setup(warmed, ds, [split.train], split.train)
  states = warm_start.apply(run.init(), warm, run.host.cell_x, lines, run.host.y_mean,
                            run.host.y_std, run.host.drug_k)
  return run.predict(states, [pairs])[0], run.predict(run.init(), [pairs])[0]


def test_untrained_network_predicts_the_factorisation(seen):
  """Codes from the factorisation and a zero output layer: before any step the network's
  predictions (natural scale, through the model's own predict path) are the factorisation's."""
  ds, split, lines, warmed, warm = seen
  assert warm.kind == 'mf'
  pairs = np.concatenate([split.val, split.test])
  got, cold = untrained(ds, split, lines, warmed, warm, pairs)
  want = warm.fit.predict(ds.pair_cell[pairs], ds.pair_drug[pairs])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert np.abs(cold - want).max() > 0.1  # without the warm start: something else


@pytest.mark.parametrize('kernel', ['none', 'rbf'])
def test_untrained_network_predicts_ridge_on_unseen_lines(kernel):
  """On held-out lines the warm-started network is per-drug ridge on the standardised features
  (with kernel ridge's spectrum stage), or (RBF kernel map) the kernel ridge baseline with the
  width, weights, lambda and spectrum it chooses."""
  ds, split, lines, warmed, warm = prepare(unseen_lines(cell_kernel=kernel))
  assert warm.kind == 'ridge' and warmed.model.drug_linear == warm.fit.params['lambda']
  got, cold = untrained(ds, split, lines, warmed, warm, split.test)
  x = experiment.standardized_features(ds, lines, np.arange(len(ds.drug_ids)), warmed)[0]
  train = classical.Pairs(ds.pair_cell[split.train], ds.pair_drug[split.train],
                          ds.pair_y[split.train].astype(np.float64))
  if kernel == 'rbf':
    annotations = splits.line_annotations(ds, split.name)
    assert set(annotations) == {'type', 'medium', 'doubling'}
    want = classical.kernel_ridge(x, train, len(ds.drug_ids), 0, annotations=annotations)
    assert warmed.data.rbf_width == want.params['width_rel']
    for name in annotations:
      assert warmed.data[f'{name}_weight'] == want.params[f'{name}_weight']
  else:   # with kernel ridge's spectrum stage (one lambda per drug-space component)
    want = classical.ridge_per_drug(x, train, len(ds.drug_ids), 0,
                                    spectrum=(classical.LAMBDAS, classical.SPECTRUM_GAMMAS))
  assert warm.fit.params['lambda'] == pytest.approx(want.params['lambda'])
  assert classical.spectrum_of(warm.fit.params) == classical.spectrum_of(want.params)
  want = want.predict(ds.pair_cell[split.test], ds.pair_drug[split.test])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert np.abs(cold - want).max() > 0.1


def test_rank_and_l2_come_from_the_factorisation(seen):
  ds, split, _, warmed, warm = seen
  y_std = float(np.asarray(ds.pair_y[split.train], np.float32).std())
  assert warmed.model.id_embed_dim == warm.fit.params['rank'] == warm.settings['id_embed_dim']
  assert warmed.model.id_l2 == pytest.approx(warm.fit.params['l2'] / y_std)
  given = config(id_l2=3.0)
  before = given.to_json()
  explicit = prepare(given)[3]
  assert explicit.model.id_l2 == 3.0 and explicit.model.id_embed_dim == warm.fit.params['rank']
  assert given.to_json() == before  # configure returns a copy; the caller's config is untouched


@pytest.mark.parametrize('unseen', [False, True])
def test_choices_never_read_test_labels(unseen):
  """Test labels scrambled: the same settings and the same starting weights (both warm starts)."""
  c = unseen_lines(cell_kernel='rbf') if unseen else config()
  ds, split, lines, warmed, warm = prepare(c)
  y = ds.pair_y.copy()
  y[split.test] = np.random.default_rng(0).permutation(y[split.test]) + 5.0
  scrambled = dataclasses.replace(ds, pair_y=y)
  x_std = experiment.standardized_features(scrambled, lines,
                                           np.unique(ds.pair_drug[split.train]), c)[0]
  again = warm_start.configure(c, scrambled, split, x_std)
  assert again.config.to_json() == warmed.to_json()
  x = experiment.network_features(ds, lines, np.unique(ds.pair_drug[split.train]), warmed)[0]
  one = lambda w: (warm_start.code_params(w.fit, 0.0, 1.0) if w.kind == 'mf' else
                   warm_start.linear_params(w.fit, x, lines, 0.0, 1.0))
  for k, v in one(warm).items():
    np.testing.assert_array_equal(one(again.warm)[k], v)


def test_zscore_lines_by_hand():
  """Row 1, 2, 3: mean 2, sd sqrt(2/3); a row that does not vary is centred only."""
  z = cells.zscore_lines(np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]))
  np.testing.assert_allclose(z[0], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3), rtol=1e-6)
  np.testing.assert_array_equal(z[1], [0.0, 0.0, 0.0])


def test_line_zscore_applies_only_when_on():
  """1: the standardised features, then each line z-scored; 0 and -1 (not yet chosen): not."""
  c = unseen_lines()
  ds = data.load_dataset(c.data)
  lines, seen = np.arange(15), np.arange(len(ds.drug_ids))
  got = {}
  for value in (0.0, -1.0, 1.0):
    c.data.line_zscore = value
    got[value] = experiment.standardized_features(ds, lines, seen, c)[0]
  np.testing.assert_array_equal(got[-1.0], got[0.0])
  np.testing.assert_allclose(got[1.0], cells.zscore_lines(got[0.0]), rtol=1e-6)
  assert np.abs(got[1.0] - got[0.0]).max() > 0.1
  c.data.line_zscore = 0.5
  with pytest.raises(ValueError, match='data.line_zscore is 0.5; choose 0'):
    warm_start.check(c)


@pytest.mark.parametrize('case, want', [('noise_level', 1.0), ('level_is_signal', 0.0)])
def test_line_zscore_is_kernel_ridges_choice(case, want):
  """data.line_zscore=-1: kernel ridge's inner CV picks. Lines shifted by large offsets across all
  features that have nothing to do with the response (uncorrelated with every feature on the
  training lines, so the column standardisation leaves them a shift of each line) get z-scored;
  lines whose response is their overall level (which z-scoring removes) do not. The choice is
  written into the config."""
  c = unseen_lines(cell_kernel='rbf')
  assert c.data.line_zscore == -1.0   # the unseen-lines variant lets kernel ridge choose
  c.data.num_cells = 60               # more training lines than features
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  lines = np.unique(ds.pair_cell[split.train])
  rng = np.random.default_rng(0)
  f = ds.cell_features.astype(np.float64)
  if case == 'noise_level':
    basis = np.linalg.qr(np.c_[np.ones(len(lines)), f[lines] - f[lines].mean(0)])[0]
    offset = rng.normal(size=len(f))
    offset[lines] -= basis @ (basis.T @ offset[lines])
    ds = dataclasses.replace(ds, cell_features=(f + 20.0 * offset[:, None] / offset[lines].std()
                                                ).astype(np.float32))
  else:
    level = rng.normal(size=len(f))
    x = level[:, None] + 0.05 * rng.normal(size=f.shape)
    y = (rng.uniform(0.5, 2.0, len(ds.drug_ids))[ds.pair_drug] * level[ds.pair_cell]
         + 0.1 * rng.normal(size=len(ds.pair_y)))
    ds = dataclasses.replace(ds, cell_features=x.astype(np.float32), pair_y=y.astype(np.float32))
  seen = np.unique(ds.pair_drug[split.train])
  x_std = experiment.standardized_features(ds, lines, seen, c)[0]
  chosen = warm_start.configure(c, ds, split, x_std)
  assert chosen.settings['data.line_zscore'] == chosen.config.data.line_zscore == want
  train = classical.Pairs(ds.pair_cell[split.train], ds.pair_drug[split.train],
                          ds.pair_y[split.train].astype(np.float64))
  annotations = splits.line_annotations(ds, split.name)
  score = {z: classical.cv_score_of(classical.kernel_ridge(
      cells.zscore_lines(x_std) if z else x_std, train, len(ds.drug_ids), 0,
      annotations=annotations).params) for z in (0.0, 1.0)}
  assert max(score, key=score.get) == want and score[want] > score[1.0 - want]
  # The width and the weights are those of the chosen features' kernel ridge.
  x = experiment.standardized_features(ds, lines, seen, chosen.config)[0]
  fit = classical.kernel_ridge(x, train, len(ds.drug_ids), 0, annotations=annotations)
  assert chosen.config.data.rbf_width == fit.params['width_rel']


def test_code_params_reproduce_scores():
  """By hand: mu 1, one line (code [2], bias 0.5), one drug (code [3], bias -1): y = 6.5;
  standardised with mean 0.5 and std 4 the codes give (6.5 - 0.5) / 4 = 1.5."""
  mf = classical.Predictor('matrix_factorization', np.array([[6.5]]), {},
                           factors={'mu': 1.0, 'line': np.array([[2.0, 0.5]]),
                                    'drug': np.array([[3.0, -1.0]])})
  p = warm_start.code_params(mf, 0.5, 4.0)
  z = p['cell_vec'] @ p['drug_vec'].T + p['cell_bias'][:, None] + p['drug_bias'][None]
  assert z.item() == pytest.approx(1.5)
  with pytest.raises(ValueError, match='no factors'):
    warm_start.code_params(dataclasses.replace(mf, factors=None), 0.0, 1.0)


def test_linear_params_by_hand():
  """Lines x = 0, 1, 2 (one feature) with ridge's fitted values 1, 3, 5 for drug 0 (slope 2,
  intercept 1) and none for drug 1: standardised with mean 1, std 2 that is w = 1, b = 0."""
  ridge = classical.Predictor('ridge_per_drug', np.array([[1.0, np.nan], [3.0, np.nan],
                                                          [5.0, np.nan]]), {})
  p = warm_start.linear_params(ridge, np.array([[0.0], [1.0], [2.0]]), np.arange(3), 1.0, 2.0)
  np.testing.assert_allclose(p['kernel'], [[1.0, 0.0]], atol=1e-12)
  np.testing.assert_allclose(p['intercept'], [0.0, 0.0], atol=1e-12)


def test_settings_and_refusals(tmp_path):
  assert warm_start.check(config()) == 'mf'
  assert warm_start.check(config(id_embed_dim=0)) is None     # codes off: nothing to start
  assert warm_start.check(config('classification')) is None   # logits, not ln IC50
  lodo_config = test_config.get_config('lodo')  # the sweep: random codes, kernel ridge over drugs
  assert (lodo_config.model.id_init, warm_start.check(lodo_config)) == ('random', 'line')
  assert warm_start.check(test_config.get_config('lodo,classification')) is None
  assert warm_start.check(unseen_lines()) == 'ridge'
  lco = config('leave_cell_out')  # the unseen-lines variant's network: the kernel-ridge start
  assert (lco.model.id_embed_dim, lco.data.cell_kernel, warm_start.check(lco)) == (0, 'rbf', 'ridge')
  for order in ('deepcdr,leave_cell_out', 'leave_cell_out,deepcdr'):  # ridge on the raw blocks
    deep = config(order)
    assert (deep.model.linear_init, deep.data.cell_kernel) == ('ridge', 'none'), order
  for order in ('classification,leave_cell_out', 'leave_cell_out,classification'):
    cls = config(order)
    assert (cls.model.id_embed_dim, cls.model.linear_init, cls.data.cell_kernel) == (
        0, 'zero', 'none'), order
  # With codes on, nothing could choose the factorisation's rank on unseen validation lines.
  assert warm_start.check(config('leave_cell_out', id_embed_dim=32, linear_init='zero')) is None
  assert warm_start.check(config('classification,leave_cell_out')) is None
  with pytest.raises(ValueError, match="unknown model.id_init 'svd'"):
    warm_start.check(config(id_init='svd'))
  with pytest.raises(ValueError, match="unknown data.cell_kernel 'poly'"):
    warm_start.check(unseen_lines(cell_kernel='poly'))
  with pytest.raises(ValueError, match='would each start the network as a full predictor'):
    warm_start.check(config(linear_init='ridge'))
  with pytest.raises(ValueError, match=r"linear_init='ridge' .* and model.line_init="):
    warm_start.check(config('leave_drug_out', linear_init='ridge', line_init='kernel_ridge'))
  with pytest.raises(ValueError, match="unknown model.line_init 'knn'"):
    warm_start.check(config(line_init='knn'))
  with pytest.raises(ValueError, match="model.id_init='mf' .* set --config.model.id_init=random"):
    lodo.run_sweep(config(), tmp_path)
  with pytest.raises(ValueError, match='set --config.model.linear_init=zero'):
    lodo.run_sweep(config('lodo', linear_init='ridge', line_init='zero'), tmp_path)
  deep = config('deepcdr', id_embed_dim=0)
  deep.data.cell_kernel, deep.data.rbf_width = 'rbf', 1.0
  ds = data.load_dataset(deep.data)
  with pytest.raises(ValueError, match='model deepcdr has one branch per omics block'):
    experiment.prepare(deep, ds, splits.make_split(ds, deep.split))
  c = unseen_lines(cell_kernel='rbf')
  ds = data.load_dataset(c.data)
  with pytest.raises(ValueError, match='needs data.rbf_width > 0'):
    experiment.network_features(ds, np.arange(5), np.arange(3), c)


def test_run_reuses_the_factorisation(seen, tmp_path):
  """End to end: the run records the warm start, its tuned_matrix_factorization is the warm
  start's fit (not refitted) and equals a fresh classical fit."""
  ds, split, lines, _, warm = seen
  c = config()
  c.train.num_epochs = c.train.patience = 2
  summary = experiment.train_and_evaluate(c, tmp_path)
  metrics = json.loads((tmp_path / 'metrics.json').read_text())
  assert metrics['warm_start']['id_embed_dim'] == warm.fit.params['rank']
  assert metrics['classical']['matrix_factorization']['prefit'] is True
  written = json.loads((tmp_path / 'config.json').read_text())
  assert written['model']['id_embed_dim'] == warm.fit.params['rank']
  assert metrics['chosen'] == {'model.id_embed_dim': warm.fit.params['rank'],
                               'model.id_l2': pytest.approx(warm.settings['id_l2'])}
  x = experiment.standardized_features(ds, lines, np.arange(len(ds.drug_ids)), c)[0]
  fresh, _ = experiment.fit_classical(ds, split, x, c, split.test)
  np.testing.assert_allclose(summary['test']['tuned_matrix_factorization']['pcc'],
                             np.corrcoef(fresh['matrix_factorization'],
                                         ds.pair_y[split.test])[0, 1], rtol=1e-5)


@pytest.mark.parametrize('line_zscore', [-1.0, 1.0])
def test_unseen_lines_run_with_kernel_map_predicts_from_checkpoint(tmp_path, line_zscore):
  """End to end on unseen lines with the RBF map: the chosen width is in the written config, and
  predictions from the checkpoint (predict.py rebuilds the map, the lines z-scored or not as the
  run chose) match the run's."""
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  c = unseen_lines(cell_kernel='rbf', line_zscore=line_zscore)
  c.train.num_epochs = c.train.patience = 2
  experiment.train_and_evaluate(c, tmp_path)
  written = json.loads((tmp_path / 'config.json').read_text())
  assert written['data']['rbf_width'] > 0 and written['model']['drug_linear'] > 0
  assert written['data']['line_zscore'] in ((0.0, 1.0) if line_zscore < 0 else (1.0,))
  first = (tmp_path / 'predictions.csv').read_text().splitlines()[1].split(',')
  got = predict.predict(tmp_path, [(first[0], first[1])])
  assert got[0]['predicted'] == pytest.approx(float(first[4]), abs=1e-4)


def test_resume_refuses_different_choices(tmp_path):
  """A run resuming from checkpoints made with another chosen rank gets a clear error."""
  from cdr_jax import runs  # pylint: disable=g-import-not-at-top
  from cdr_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  (tmp_path / 'checkpoints' / 'latest').mkdir(parents=True)
  c = config()
  c.model.id_embed_dim = 7
  runs.write_config(tmp_path, c)
  experiment.check_resumable(tmp_path, {'model.id_l2': c.model.id_l2})  # the same: fine
  with pytest.raises(DataError, match=r'chose model.id_embed_dim=4 .* made with 7'):
    experiment.check_resumable(tmp_path, {'model.id_embed_dim': 4})


def unseen_drugs(arg='leave_drug_out', **model):
  return config(arg, id_init='random', line_init='kernel_ridge', **model)


def test_untrained_network_predicts_kernel_ridge_on_unseen_drugs():
  """On held-out drugs the warm-started network is the leave-one-drug-out baseline's kernel ridge
  over the training drugs, with the lambda it chooses (its L2 in the config)."""
  c = unseen_drugs()
  ds, split, lines, warmed, warm = prepare(c)
  assert warm.kind == 'line' and warmed.model.line_linear == warm.fit.lam
  assert warm.info()['from'] == 'lodo_kernel_ridge'
  got, cold = untrained(ds, split, lines, warmed, warm, split.test)
  kernel = warm_start.drug_kernel(ds, c)
  want = warm_start.fit_line(ds, split.train, kernel, c.data)
  assert want.lam == warm.fit.lam
  test_drugs = np.unique(ds.pair_drug[split.test])
  profiles = want.profiles(kernel, np.arange(len(ds.drug_ids)))
  assert not set(test_drugs) & set(want.drugs)
  np.testing.assert_allclose(got, profiles[ds.pair_drug[split.test], ds.pair_cell[split.test]],
                             rtol=1e-4, atol=1e-4)
  assert np.abs(cold - got).max() > 0.1


def test_each_fold_starts_as_its_own_kernel_ridge():
  """F = 2 folds side by side (vmapped): each fold's untrained network is kernel ridge over its
  own training drugs, with its own lambda as its L2."""
  c = config('lodo', line_init='kernel_ridge')
  ds = data.load_dataset(c.data)
  folds = [lodo.make_fold(ds, d, 0.2, 0) for d in (2, 5)]
  kernel = warm_start.drug_kernel(ds, c)
  ridges = [warm_start.fit_line(ds, f.train, kernel, c.data) for f in folds]
  run = experiment.setup(c, ds, [f.train for f in folds], np.arange(ds.num_pairs), kernel,
                         [r.lam for r in ridges])
  np.testing.assert_allclose(run.host.line_l2, [r.lam for r in ridges])
  states = warm_start.start_from(
      run.init(), 'line', [warm_start.line_params(r, run.host.drug_k, m, s)
                           for r, m, s in zip(ridges, run.host.y_mean, run.host.y_std)], 'test')
  assert not np.asarray(states.params['ids']['drug_vec']).any()
  preds = run.predict(states, [np.concatenate([f.test, f.val]) for f in folds])
  for f, r, p in zip(folds, ridges, preds):
    pairs = np.concatenate([f.test, f.val])
    np.testing.assert_allclose(p, r.profiles(kernel, ds.pair_drug[pairs])[
        np.arange(len(pairs)), ds.pair_cell[pairs]], rtol=1e-4, atol=1e-4)
  rows = lodo.run_chunk(ds, c, folds, drug_kernel=kernel)  # and trains from there
  assert [row['line_l2'] for row in rows] == pytest.approx([r.lam for r in ridges])
  assert all(row['best_epoch'] >= -1 for row in rows)


def test_line_start_never_reads_held_out_labels():
  """A fold's start (lambda and weights) is the same with its held-out and validation drugs'
  labels scrambled."""
  c = config('lodo', line_init='kernel_ridge')
  ds = data.load_dataset(c.data)
  fold = lodo.make_fold(ds, 3, 0.2, 0)
  kernel = warm_start.drug_kernel(ds, c)
  kmap = warm_start.lodo_kernel.kernel_map(kernel)
  y = ds.pair_y.copy()
  hidden = np.concatenate([fold.test, fold.val])
  y[hidden] = np.random.default_rng(0).permutation(y[hidden]) + 5.0
  a = warm_start.fit_line(ds, fold.train, kernel, c.data)
  b = warm_start.fit_line(dataclasses.replace(ds, pair_y=y), fold.train, kernel, c.data)
  assert a.lam == b.lam
  for k, v in warm_start.line_params(a, kmap, 0.0, 1.0).items():
    np.testing.assert_array_equal(warm_start.line_params(b, kmap, 0.0, 1.0)[k], v)


def test_drug_kernel_adds_the_screening_order_when_asked():
  c = config('lodo,drugs=graph+morgan', line_init='kernel_ridge')
  ds = data.load_dataset(c.data)
  plain = warm_start.drug_kernel(ds, c)
  c.data.screening_batch = True
  np.testing.assert_allclose(warm_start.drug_kernel(ds, c) - plain,
                             warm_start.lodo_kernel.SCREENING_WEIGHT
                             * warm_start.lodo_kernel.screening_kernel(ds))
  # Screens as drugs (seen pairs, unseen lines) have no screening order: a clear error.
  with pytest.raises(ValueError, match='data.screening_batch .* for unseen drugs'):
    warm_start.drug_kernel(dataset.screens_as_drugs(ds), c)


def test_shuffled_drug_control_permutes_the_kernel_as_the_features():
  c = config('lodo,drugs=graph+morgan,shuffled_drugs', line_init='kernel_ridge')
  ds = data.load_dataset(c.data)
  kernel = warm_start.drug_kernel(ds, c)
  shuffled = warm_start.network_kernel(kernel, c.data)
  perm = np.random.default_rng(c.data.repr_seed).permutation(len(kernel))
  np.testing.assert_array_equal(shuffled, kernel[np.ix_(perm, perm)])
  assert not np.array_equal(shuffled, kernel)
  # Drug i's vector features are drug perm[i]'s, and so is its kernel row.
  morgan = warm_start.drug_lib.morgan_features(dict(zip(ds.drug_ids, ds.drug_smiles)),
                                               list(ds.drug_ids))
  np.testing.assert_array_equal(ds.drug_x, morgan[perm])
  c.data.shuffle_drugs = False
  np.testing.assert_array_equal(warm_start.network_kernel(kernel, c.data), kernel)


def test_unseen_drugs_run_predicts_from_checkpoint(tmp_path):
  """End to end (launch/train.py's path) on held-out drugs: the chosen lambda is in the written
  config and the metrics, predictions from the checkpoint match the run's, and a new drug is
  refused (the kernel map is over the run's own drugs)."""
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  from cdr_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  c = unseen_drugs()
  c.train.num_epochs = c.train.patience = 2
  experiment.train_and_evaluate(c, tmp_path)
  written = json.loads((tmp_path / 'config.json').read_text())
  metrics = json.loads((tmp_path / 'metrics.json').read_text())
  assert written['model']['line_linear'] == metrics['chosen']['model.line_linear'] > 0
  assert metrics['warm_start']['from'] == 'lodo_kernel_ridge'
  first = (tmp_path / 'predictions.csv').read_text().splitlines()[1].split(',')
  got = predict.predict(tmp_path, [(first[0], first[1])])
  assert got[0]['predicted'] == pytest.approx(float(first[4]), abs=1e-4)
  with pytest.raises(DataError, match='cannot place a new drug'):
    predict.predict(tmp_path, new_drugs=[('new', 'CCO')])


@pytest.mark.parametrize('c', [config(), unseen_lines(cell_kernel='rbf'), unseen_drugs()],
                         ids=['mf', 'ridge', 'line'])
def test_refit_start_is_the_classical_refit(c):
  """The network's refit starts from its warm start fitted again on training + validation pairs
  with the same choices: the untrained refit network predicts what that classical refit does."""
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  lines, seen_drugs = np.unique(ds.pair_cell[split.train]), np.unique(ds.pair_drug[split.train])
  chosen = warm_start.configure(c, ds, split,
                                experiment.standardized_features(ds, lines, seen_drugs, c)[0])
  both = np.concatenate([split.train, split.val])
  both_lines = np.unique(ds.pair_cell[both])
  x_both = experiment.standardized_features(ds, both_lines, np.unique(ds.pair_drug[both]), c)[0]
  again = warm_start.refit(chosen, ds, both, x_both)
  assert again.warm.kind == chosen.warm.kind and again.settings == chosen.settings
  pairs = split.test
  if chosen.warm.kind == 'mf':
    p = chosen.warm.fit.params
    want = classical.matrix_factorization(warm_start._pairs(ds, both), len(ds.cell_ids),
                                          len(ds.drug_ids), p['rank'], p['l2'], c.train.seed)
    want = want.predict(ds.pair_cell[pairs], ds.pair_drug[pairs])
    assert again.config.model.id_l2 == pytest.approx(p['l2'] / ds.pair_y[both].std(), rel=1e-5)
  elif chosen.warm.kind == 'ridge':   # kernel ridge refit with the width, weight and lambda chosen
    kr = classical.kernel_ridge(np.asarray(x_both, np.float64), warm_start._pairs(ds, split.train),
                                len(ds.drug_ids), 0,
                                annotations=splits.line_annotations(ds, split.name))
    want = classical.kernel_ridge(
        np.asarray(x_both, np.float64), warm_start._pairs(ds, both), len(ds.drug_ids), 0,
        widths=(kr.params['width_rel'],), lambdas=(chosen.warm.fit.params['lambda_rel'],),
        spectrum=classical.spectrum_of(chosen.warm.fit.params),
        annotations=splits.line_annotations(ds, split.name),
        annotation_weights={n: (w,) for n, w in classical.annotation_weights_of(kr.params).items()})
    assert again.config.model.drug_linear == pytest.approx(want.params['lambda'])
    want = want.predict(ds.pair_cell[pairs], ds.pair_drug[pairs])
  else:   # kernel ridge over drugs (its predictions through the network: the tests above)
    # One ridge per principal component, chosen again on the new drugs' components; the per-line
    # term's L2 stays the one chosen.
    want = lodo_kernel.fit_drugs(ds.pair_cell[both], ds.pair_drug[both], ds.pair_y[both],
                                 len(ds.cell_ids), warm_start.drug_kernel(ds, c))
    assert again.config.model.line_linear == chosen.config.model.line_linear
    assert again.warm.fit.component_lam is not None
    np.testing.assert_allclose(again.warm.fit.alpha, want.alpha, atol=1e-10)
    want = None
  run = experiment.setup(again.config, ds, [both], both)
  states = warm_start.apply(run.init(), again.warm, run.host.cell_x, both_lines, run.host.y_mean,
                            run.host.y_std, run.host.drug_k)
  got = run.predict(states, [pairs])[0]
  if want is not None:
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_refit_run_trains_on_train_and_val(tmp_path):
  """End to end with train.refit: the run trains again on training + validation pairs for the
  selected epoch + 1 epochs; the test predictions are the refit's, the selected network's beside
  them; a second invocation resumes both phases and reproduces the results."""
  c = config()
  c.train.num_epochs, c.train.patience, c.train.refit = 3, 3, True
  c.train.score_start = False   # so the refit trains (best epoch >= 0)
  first = experiment.train_and_evaluate(c, tmp_path)
  metrics = json.loads((tmp_path / 'metrics.json').read_text())
  ds = data.load_dataset(c.data)
  split = splits.make_split(ds, c.split)
  assert metrics['refit']['epochs'] == metrics['selection']['best_epoch'] + 1 >= 1
  assert metrics['refit']['pairs'] == len(split.train) + len(split.val)
  assert metrics['refit']['warm_start']['from'] == 'matrix_factorization'
  assert (tmp_path / 'checkpoints_refit').is_dir()
  model, before = metrics['test']['model'], metrics['test']['model_before_refit']
  assert model['pcc'] != before['pcc']
  again = experiment.train_and_evaluate(c, tmp_path)   # resumes: nothing left to train
  assert again['test']['model']['pcc'] == pytest.approx(first['test']['model']['pcc'], abs=1e-6)
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  rows = [r.split(',') for r in (tmp_path / 'predictions.csv').read_text().splitlines()[1:4]]
  got = predict.predict(tmp_path, [(r[0], r[1]) for r in rows])   # the refit network
  np.testing.assert_allclose([g['predicted'] for g in got], [float(r[4]) for r in rows], atol=1e-4)


def test_ensemble_run_averages_its_members(tmp_path):
  """train.ensemble=2: two member runs (seeds 0 and 1, each refit) under members/; the run's
  predictions are their mean, predict.py gives the same, and a second invocation resumes."""
  from cdr_jax import predict  # pylint: disable=g-import-not-at-top
  c = config('leave_cell_out', id_embed_dim=0, linear_init='ridge')
  c.train.num_epochs, c.train.patience, c.train.refit, c.train.ensemble = 2, 2, True, 2
  first = experiment.train_and_evaluate(c, tmp_path)
  metrics = json.loads((tmp_path / 'metrics.json').read_text())
  assert metrics['ensemble']['members'] == 2 and metrics['ensemble']['seeds'] == [0, 1]
  read = lambda p: [r.split(',') for r in p.read_text().splitlines()[1:]]
  rows = read(tmp_path / 'predictions.csv')
  members = [read(tmp_path / 'members' / str(k) / 'predictions.csv') for k in range(2)]
  assert not any((tmp_path / 'members' / str(k) / 'metrics.json').exists() for k in range(2))
  for k in range(2):
    assert json.loads((tmp_path / 'members' / str(k) / 'config.json').read_text())[
        'train']['seed'] == k
  mean = [np.mean([float(m[i][4]) for m in members]) for i in range(len(rows))]
  np.testing.assert_allclose([float(r[4]) for r in rows], mean, atol=1e-5)
  assert max(abs(float(a[4]) - float(b[4])) for a, b in zip(*members)) > 1e-4  # seeds differ
  got = predict.predict(tmp_path, [(r[0], r[1]) for r in rows[:3]])
  np.testing.assert_allclose([g['predicted'] for g in got], [float(r[4]) for r in rows[:3]],
                             atol=1e-4)
  again = experiment.train_and_evaluate(c, tmp_path)
  assert again['test']['model']['pcc'] == pytest.approx(first['test']['model']['pcc'], abs=1e-6)
