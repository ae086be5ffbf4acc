"""Models: the GCN layer against a dense Â(HW+b), padding invariance, masked BatchNorm, factories."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cdr_jax
from cdr_jax.data import chem
from cdr_jax.model import models
from configs import common

SMILES = ('CCO', '[Na+].[Cl-]', 'c1ccccc1O', 'CC(=O)Nc1ccc(O)cc1')


def graphs(multiple=16):
  return chem.batch_drug_graphs([cdr_jax.smiles_to_graph(s) for s in SMILES], multiple=multiple)


def test_graph_conv_matches_dense_normalised_adjacency():
  g = graphs()
  n_real = int(g.n_node[:-1].sum())
  node_mask, edge_mask, _, _ = models.masks(g)
  edge_w, self_w = models.gcn_normalize(g, node_mask, edge_mask)
  conv = models.GraphConv(8)
  h = jnp.asarray(g.nodes)
  params = conv.init(jax.random.key(0), h, g, edge_w, self_w)
  out = np.asarray(conv.apply(params, h, g, edge_w, self_w))[:n_real]
  # Dense reference over real atoms only: Â = D^-1/2 (A + I) D^-1/2.
  a = np.eye(n_real)
  n_edge = int(g.n_edge[:-1].sum())
  for s, r in zip(g.senders[:n_edge], g.receivers[:n_edge]):
    a[r, s] = 1.0
  d = np.diag(1 / np.sqrt(a.sum(1)))
  w, b = params['params']['Dense_0']['kernel'], params['params']['Dense_0']['bias']
  expected = d @ a @ d @ (np.asarray(g.nodes[:n_real]) @ w + b)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('pool', ['mean', 'max'])
def test_drug_codes_ignore_padding_budget(pool):
  enc = models.DrugGCN((16, 8), pool, dropout=0.0)
  small, big = graphs(16), graphs(128)
  variables = enc.init(jax.random.key(0), small, train=False)
  a, _ = enc.apply(variables, small, train=True, mutable=['batch_stats'])
  b, _ = enc.apply(variables, big, train=True, mutable=['batch_stats'])
  assert a.shape == (len(SMILES), 8)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_masked_batchnorm_uses_only_masked_rows():
  bn = models.MaskedBatchNorm()
  x = jnp.array([[1.0], [3.0], [100.0]])
  mask = jnp.array([True, True, False])
  v = bn.init(jax.random.key(0), x, mask, train=True)
  y, _ = bn.apply(v, x, mask, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(y[:2, 0], [-1.0, 1.0], atol=1e-4)


def test_factorised_dense_equals_dense_on_concat():
  drug, cell = jax.random.normal(jax.random.key(0), (5, 3)), jax.random.normal(jax.random.key(1), (7, 4))
  d_idx, c_idx = jnp.array([0, 4, 2]), jnp.array([6, 0, 3])
  f = models.FactorisedDense(6)
  p = f.init(jax.random.key(2), (drug, cell), c_idx, d_idx)
  got = f.apply(p, (drug, cell), c_idx, d_idx)
  w = jnp.concatenate([p['params']['drug']['kernel'], p['params']['cell']['kernel']])
  ref = jnp.concatenate([drug[d_idx], cell[c_idx]], -1) @ w + p['params']['cell']['bias']
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_toeplitz_conv_equals_flax_conv():
  x = jax.random.normal(jax.random.key(0), (3, 40))
  m = models.ToeplitzConv1D(4, 9)
  v = m.init(jax.random.key(1), x)
  ref = nn.Conv(4, (9,), padding='VALID').apply({'params': v['params']}, x[:, :, None])
  np.testing.assert_allclose(m.apply(v, x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name, id_dim, bilinear, linear', [
    ('seed', 0, 0, 0.0), ('seed', 4, 3, 10.0), ('deepcdr', 0, 0, 0.0), ('deepcdr', 2, 3, 10.0)])
def test_models_output_one_value_per_pair(name, id_dim, bilinear, linear):
  cfg = common.apply_variants(common.base_config(), name).model
  cfg.id_embed_dim, cfg.bilinear_dim, cfg.drug_linear = id_dim, bilinear, linear
  model = models.create_model(cfg, num_cells=6, num_drugs=len(SMILES), cell_blocks=[5, 3])
  g, cells = graphs(), jnp.ones((6, 8))
  cell_idx, drug_idx = jnp.array([0, 5, 2]), jnp.array([3, 0, 1])
  v = model.init(jax.random.key(0), g, cells, cell_idx, drug_idx, jnp.ones(3, bool), train=False)
  out = model.apply(v, g, cells, cell_idx, drug_idx, jnp.ones(3, bool), train=False)
  assert out.shape == (3,) and np.isfinite(out).all()
  codes = model.apply(v, g, cells, train=False, method='encode')
  assert codes[0].shape[0] == len(SMILES) and codes[1].shape[0] == 6


@pytest.mark.parametrize('name', ['seed', 'deepcdr'])
def test_drug_linear_adds_a_per_drug_linear_function_of_the_cell_features(name):
  cfg = common.apply_variants(common.base_config(), name).model
  cfg.drug_linear = 1.0
  model = models.create_model(cfg, num_cells=6, num_drugs=len(SMILES), cell_blocks=[5, 3])
  g, cells = graphs(), jax.random.normal(jax.random.key(1), (6, 8))
  cell_idx, drug_idx = jnp.array([0, 5, 2, 2]), jnp.array([3, 0, 1, 3])
  v = model.init(jax.random.key(0), g, cells, cell_idx, drug_idx, jnp.ones(4, bool), train=False)
  w = v['params']['drug_linear_term']['kernel']
  assert w.shape == (8, len(SMILES)) and not np.any(w)  # starts at zero
  run = lambda params: model.apply({**v, 'params': params}, g, cells, cell_idx, drug_idx,
                                   jnp.ones(4, bool), train=False)
  w = jax.random.normal(jax.random.key(2), w.shape)
  b = jax.random.normal(jax.random.key(3), (len(SMILES),))
  moved = run({**v['params'], 'drug_linear_term': {'kernel': w, 'intercept': b}}) - run(v['params'])
  expected = [float(cells[c] @ w[:, d] + b[d]) for c, d in zip(cell_idx, drug_idx)]
  np.testing.assert_allclose(moved, expected, rtol=1e-4, atol=1e-5)


def test_code_bilinear_is_a_dot_of_projected_codes():
  drug, cell = jnp.arange(12.0).reshape(3, 4) / 10, jnp.arange(10.0).reshape(5, 2) / 7
  cell_idx, drug_idx = jnp.array([4, 0, 2, 2]), jnp.array([1, 1, 0, 2])
  m = models.CodeBilinear(3)
  v = m.init(jax.random.key(0), (drug, cell), cell_idx, drug_idx)
  np.testing.assert_array_equal(m.apply(v, (drug, cell), cell_idx, drug_idx), 0.0)  # starts at 0
  v = {'params': {**v['params'], 'drug': {'kernel': jnp.arange(12.0).reshape(4, 3) / 5 - 1}}}
  q, p = drug @ v['params']['drug']['kernel'], cell @ v['params']['cell']['kernel']
  expected = [float(p[c] @ q[d]) for c, d in zip(cell_idx, drug_idx)]
  np.testing.assert_allclose(m.apply(v, (drug, cell), cell_idx, drug_idx), expected, rtol=1e-5)


def test_unknown_model_and_pool():
  cfg = common.base_config().model
  cfg.name = 'transformer'
  with pytest.raises(ValueError, match=r"unknown model 'transformer'.*seed, deepcdr"):
    models.create_model(cfg, 1, 1, [1])
  enc = models.DrugGCN((4,), 'sum')
  with pytest.raises(ValueError, match=r"unknown gcn_pool 'sum'"):
    enc.init(jax.random.key(0), graphs(), train=False)


@pytest.mark.parametrize('rate', [0.1, 0.5])
def test_dropout_keeps_quantised_fraction_and_mean(rate):
  keep = round(256 * (1 - rate)) / 256
  x = jnp.ones((333, 301))  # an element count not divisible by 4
  drop = models.Dropout(rate)
  out = np.asarray(drop.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(0)}))
  kept = out != 0
  assert abs(kept.mean() - keep) < 0.005
  np.testing.assert_allclose(out[kept], 1 / keep, rtol=1e-6)
  assert abs(out.mean() - 1.0) < 0.01   # inverted dropout preserves the expectation
  again = drop.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(0)})
  np.testing.assert_array_equal(out, np.asarray(again))
  other = drop.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(1)})
  assert (np.asarray(other) != out).any()
  np.testing.assert_array_equal(np.asarray(drop.apply({}, x, deterministic=True)), np.asarray(x))
  assert (np.asarray(models.Dropout(0.0).apply({}, x, deterministic=False)) == 1).all()
