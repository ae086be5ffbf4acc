"""Flax models: a masked GCN drug encoder, cell encoders, and the `seed` and `deepcdr` fusion models.

Entity-factorised: `encode` maps all drug graphs and all cell lines to codes once per call; `fuse`
gathers codes per pair and runs only the per-pair head. Padding (nodes, graphs) is masked out of
BatchNorm statistics, pooling and messages.
"""

from collections.abc import Sequence
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import ml_collections


class MaskedBatchNorm(nn.Module):
  """BatchNorm whose batch statistics use only rows where `mask` is true (no padding)."""
  momentum: float = 0.9  # few, large steps per epoch: running stats must converge fast
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    if train:
      w = mask.astype(x.dtype)[:, None]
      n = jnp.maximum(w.sum(), 1.0)
      mean = (x * w).sum(0) / n
      var = (jnp.square(x - mean) * w).sum(0) / n
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    scale = self.param('scale', nn.initializers.ones, (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    return y * scale + bias


class Dropout(nn.Module):
  """Inverted dropout drawing 8 random bits per element (four elements per 32-bit draw).

  Same as `nn.Dropout` except that the keep probability is rounded to a multiple of 1/256 (rate 0.1
  keeps 230/256 = 0.898, and kept values are scaled by 256/230). Threefry bit generation dominates
  dropout's cost on CPU (a third of a training step with 32-bit draws); this draws a quarter of it.
  """
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    keep = round(256 * (1.0 - self.rate))
    if deterministic or keep >= 256:
      return x
    if keep <= 0:
      return jnp.zeros_like(x)
    n = x.size
    words = jax.random.bits(self.make_rng('dropout'), (-(-n // 4),), jnp.uint32)
    draws = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:n].reshape(x.shape)
    return jnp.where(draws < keep, x * (256.0 / keep), 0.0).astype(x.dtype)


def gcn_normalize(graphs: jraph.GraphsTuple, node_mask: jax.Array, edge_mask: jax.Array):
  """Edge weights and self-loop weights of Â = D^-1/2 (A + I) D^-1/2 over real atoms."""
  num_nodes = graphs.nodes.shape[0]
  degree = 1.0 + jax.ops.segment_sum(edge_mask.astype(jnp.float32), graphs.receivers, num_nodes)
  inv_sqrt = jax.lax.rsqrt(degree)
  edge_w = inv_sqrt[graphs.senders] * inv_sqrt[graphs.receivers] * edge_mask
  self_w = node_mask / degree
  return edge_w, self_w


class GraphConv(nn.Module):
  """H' = Â (H W + b) (docs/DEEPCDR.md §4), with precomputed normalisation weights."""
  features: int

  @nn.compact
  def __call__(self, h, graphs: jraph.GraphsTuple, edge_w, self_w):
    hw = nn.Dense(self.features)(h)
    messages = hw[graphs.senders] * edge_w[:, None]
    agg = jax.ops.segment_sum(messages, graphs.receivers, num_segments=h.shape[0])
    return agg + hw * self_w[:, None]


def masks(graphs: jraph.GraphsTuple):
  """(node mask, edge mask, graph mask, node -> graph index) of a padded batch (last graph = pad)."""
  n_graph = graphs.n_node.shape[0]
  node_graph = jnp.repeat(jnp.arange(n_graph), graphs.n_node, total_repeat_length=graphs.nodes.shape[0])
  edge_graph = jnp.repeat(jnp.arange(n_graph), graphs.n_edge,
                          total_repeat_length=graphs.senders.shape[0])
  return node_graph < n_graph - 1, edge_graph < n_graph - 1, jnp.arange(n_graph) < n_graph - 1, node_graph


class DrugGCN(nn.Module):
  """GCN layers (ReLU -> masked BatchNorm -> Dropout), then mean or max pooling over real atoms.

  `node_sharding` (optional) splits the atoms of all drugs over devices, so that with several
  devices each drug is encoded once per step in total, not once per device.
  """
  units: Sequence[int]
  pool: str = 'max'
  dropout: float = 0.1
  node_sharding: Any = None

  @nn.compact
  def __call__(self, graphs: jraph.GraphsTuple, train: bool,
               drug_active: jax.Array | None = None) -> jax.Array:
    """Codes [num_drugs, units[-1]]; BatchNorm statistics use only atoms of `drug_active` drugs."""
    node_mask, edge_mask, _, node_graph = masks(graphs)
    edge_w, self_w = gcn_normalize(graphs, node_mask, edge_mask)
    stats_mask = node_mask
    if drug_active is not None:
      stats_mask = node_mask & jnp.append(drug_active, False)[node_graph]
    h = graphs.nodes * node_mask[:, None]
    for units in self.units:
      if self.node_sharding is not None:
        h = jax.lax.with_sharding_constraint(h, self.node_sharding)
      h = nn.relu(GraphConv(units)(h, graphs, edge_w, self_w))
      h = MaskedBatchNorm()(h, stats_mask, train)
      h = Dropout(self.dropout)(h, deterministic=not train) * node_mask[:, None]
    n_graph = graphs.n_node.shape[0]
    if self.pool == 'mean':
      total = jax.ops.segment_sum(h, node_graph, n_graph)
      pooled = total / jnp.maximum(graphs.n_node, 1)[:, None].astype(h.dtype)
    elif self.pool == 'max':
      pooled = jax.ops.segment_max(jnp.where(node_mask[:, None], h, -jnp.inf), node_graph, n_graph)
      pooled = jnp.where(jnp.isfinite(pooled), pooled, 0.0)
    else:
      raise ValueError(f'unknown gcn_pool {self.pool!r}; choose mean or max')
    return pooled[:-1]  # drop the padding graph: [num_drugs, units[-1]]


class CellMLP(nn.Module):
  """Dense -> ReLU -> BatchNorm -> Dropout per layer, over all cell lines at once."""
  units: Sequence[int]
  dropout: float = 0.1
  first_activation: str = 'relu'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, active: jax.Array | None = None) -> jax.Array:
    """Codes of all rows; BatchNorm statistics use only `active` rows (training cell lines)."""
    mask = jnp.ones(x.shape[0], bool) if active is None else active
    for i, units in enumerate(self.units):
      x = nn.Dense(units)(x)
      x = nn.tanh(x) if (i == 0 and self.first_activation == 'tanh') else nn.relu(x)
      if i < len(self.units) - 1:
        x = MaskedBatchNorm()(x, mask, train)
        x = Dropout(self.dropout)(x, deterministic=not train)
    return x


class IdentityCodes(nn.Module):
  """Per-cell and per-drug learned codes and biases (the 'hybrid' part; a matrix factorisation)."""
  num_cells: int
  num_drugs: int
  dim: int

  def setup(self):
    init = nn.initializers.normal(0.01)
    self.cell_vec = self.param('cell_vec', init, (self.num_cells, self.dim))
    self.drug_vec = self.param('drug_vec', init, (self.num_drugs, self.dim))
    self.cell_bias = self.param('cell_bias', nn.initializers.zeros, (self.num_cells,))
    self.drug_bias = self.param('drug_bias', nn.initializers.zeros, (self.num_drugs,))

  def __call__(self, cell_idx, drug_idx):
    dot = (self.cell_vec[cell_idx] * self.drug_vec[drug_idx]).sum(-1)
    return dot + self.cell_bias[cell_idx] + self.drug_bias[drug_idx]


class CodeBilinear(nn.Module):
  """A low-rank bilinear term between the encoders' codes: (P·cell_code[c]) · (Q·drug_code[d]).

  Unlike the identity codes it is computed from features, so it also scores cell lines and drugs
  never seen in training: a learned, shared-across-drugs version of per-drug ridge on the cell
  representation. P and Q run once per entity; per pair only a gather and a dot product remain.
  """
  dim: int

  @nn.compact
  def __call__(self, codes, cell_idx, drug_idx):
    drug_codes, cell_codes = codes[:2]
    # Q starts at zero so the term starts at 0 (unnormalised codes would otherwise swamp the head
    # at initialisation); P's gradient is zero at first, Q's is not, so both learn.
    q = nn.Dense(self.dim, use_bias=False, kernel_init=nn.initializers.zeros, name='drug')(
        drug_codes)
    p = nn.Dense(self.dim, use_bias=False, name='cell')(cell_codes)
    return (p[cell_idx] * q[drug_idx]).sum(-1)


class EntityLinear(nn.Module):
  """A linear function of one entity's features with weights per entity of the other kind:
  score[i, j] = x[i]·W[:, j] + b[j] (ridge inside the model, trained with it; the intercept b is
  not penalised, as in ridge). [N, num_outputs] once per step; per pair only a gather remains.

  Two uses, both starting at zero or at a tuned ridge's solution (`train/warm_start.py`), an entity
  without training pairs keeping zeros:
  - the per-drug term `drug_linear_term` on the cell features, [C, D] (L2 `model.drug_linear`,
    start `model.linear_init`): it scores cell lines never seen in training from their features,
    as the per-drug ridge baseline does (on the RBF kernel map, `data.cell_kernel`, kernel ridge);
  - the per-line term `line_linear_term` on the drug kernel map, [D, C] (L2 per model,
    `DeviceData.line_l2`; start `model.line_init`): on the kernel map of the leave-one-drug-out
    baseline's drug kernel (`eval/lodo_kernel.py`, `kernel_map`) ridge with these weights is that
    baseline's kernel ridge over drugs, so it scores a drug never seen in training from its
    annotations and structure.
  """
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.param('kernel', nn.initializers.zeros, (x.shape[-1], self.num_outputs))
    b = self.param('intercept', nn.initializers.zeros, (self.num_outputs,))
    return x @ w + b


class FactorisedDense(nn.Module):
  """Dense(concat(drug_code[d], cell_code[c])) computed as W_d·drug[d] + W_c·cell[c] + b.

  The same function as a Dense layer on the concatenation, but the matrix products run once per
  entity instead of once per pair; per pair only a gather and an add remain.
  """
  features: int

  @nn.compact
  def __call__(self, codes, cell_idx, drug_idx):
    drug_codes, cell_codes = codes[:2]
    drug_part = nn.Dense(self.features, use_bias=False, name='drug')(drug_codes)
    cell_part = nn.Dense(self.features, name='cell')(cell_codes)
    return drug_part[drug_idx] + cell_part[cell_idx]


class ToeplitzConv1D(nn.Module):
  """A 'VALID' 1-D convolution of a single-channel signal, as one matmul with a Toeplitz matrix.

  Same function as `nn.Conv(features, (kernel,), padding='VALID')` on [B, L, 1], but XLA's CPU
  convolution with one input channel and a 150-wide kernel is slow; a [L, (L-k+1)*F] matrix built
  from the kernel turns it into a dense matmul (twice the FLOPs, many times faster on CPU).
  """
  features: int
  kernel: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:  # x: [B, L]
    length = x.shape[-1]
    out_len = length - self.kernel + 1
    w = self.param('kernel', nn.initializers.lecun_normal(), (self.kernel, 1, self.features))[:, 0]
    b = self.param('bias', nn.initializers.zeros, (self.features,))
    offset = jnp.arange(length)[:, None] - jnp.arange(out_len)[None, :]   # [L, out_len]
    valid = (offset >= 0) & (offset < self.kernel)
    toeplitz = jnp.where(valid[..., None], w[jnp.clip(offset, 0, self.kernel - 1)], 0.0)
    y = x @ toeplitz.reshape(length, out_len * self.features)
    return y.reshape(x.shape[0], out_len, self.features) + b


class EntityModel(nn.Module):
  """Shared shape of the models: `encode` every entity once, `fuse` per pair, optional extras.

  `encode` returns (drug codes, cell codes, linear scores): the last a dict with the [C, D]
  per-drug and [D, C] per-line `EntityLinear` scores of the terms the model has; `fuse` gathers from them
  per pair. The fields below are keyword-only (each model
  adds its own architecture fields before them).
  """
  num_cells: int = dataclasses.field(kw_only=True)
  num_drugs: int = dataclasses.field(kw_only=True)
  dropout: float = dataclasses.field(default=0.1, kw_only=True)
  id_embed_dim: int = dataclasses.field(default=0, kw_only=True)   # > 0: IdentityCodes of this dim
  bilinear_dim: int = dataclasses.field(default=0, kw_only=True)   # > 0: CodeBilinear of this rank
  drug_linear: bool = dataclasses.field(default=False, kw_only=True)  # per-drug EntityLinear, cells
  line_linear: bool = dataclasses.field(default=False, kw_only=True)  # per-line EntityLinear, drugs
  node_sharding: Any = dataclasses.field(default=None, kw_only=True)  # see DrugGCN

  def setup_extras(self):
    """The optional terms this model has (identity codes, code bilinear, per-drug linear)."""
    if self.id_embed_dim:
      self.ids = IdentityCodes(self.num_cells, self.num_drugs, self.id_embed_dim)
    if self.bilinear_dim:
      self.bilinear = CodeBilinear(self.bilinear_dim)
    if self.drug_linear:
      self.drug_linear_term = EntityLinear(self.num_drugs)
    if self.line_linear:
      self.line_linear_term = EntityLinear(self.num_cells)

  def __call__(self, graphs, cell_x, cell_idx, drug_idx, pair_mask, train: bool,
               cell_active=None, drug_active=None, drug_x=None, drug_k=None):
    codes = self.encode(graphs, cell_x, train, cell_active, drug_active, drug_x, drug_k)
    return self.fuse(codes, cell_idx, drug_idx, pair_mask, train)

  def linear_scores(self, codes, cell_x, drug_k):
    """`codes` with the dict of linear scores of the terms the model has (per drug on the cell
    features, per line on the drug kernel map `drug_k`) appended."""
    scores = {}
    if self.drug_linear:
      scores['drug_linear'] = self.drug_linear_term(cell_x)
    if self.line_linear:
      if drug_k is None or not drug_k.shape[-1]:
        raise ValueError('model.line_linear needs the drug kernel map (DeviceData.drug_k)')
      scores['line_linear'] = self.line_linear_term(drug_k)
    return (*codes, scores)

  def with_extras(self, y, codes, cell_idx, drug_idx):
    """Adds the per-drug and per-line linear terms, the code bilinear term and the hybrid's
    identity term (a matrix factorisation) when the model has them."""
    if self.drug_linear:
      y = y + codes[2]['drug_linear'][cell_idx, drug_idx]
    if self.line_linear:
      y = y + codes[2]['line_linear'][drug_idx, cell_idx]
    if self.bilinear_dim:
      y = y + self.bilinear(codes, cell_idx, drug_idx)
    return y + self.ids(cell_idx, drug_idx) if self.id_embed_dim else y


class SeedModel(EntityModel):
  """The paper's model: GCN + max pooling (drug), MLP (cell), concat -> MLP head with BN and Dropout."""
  gcn_units: Sequence[int]
  cell_units: Sequence[int]
  head_units: Sequence[int]
  gcn_pool: str = 'max'
  drug_graph: bool = True      # encode the molecular graph (GCN)
  drug_units: Sequence[int] = ()   # non-empty: an MLP over the vector drug features

  def setup(self):
    if self.drug_graph:
      self.drug_encoder = DrugGCN(self.gcn_units, self.gcn_pool, self.dropout, self.node_sharding)
    if self.drug_units:
      self.drug_mlp = CellMLP(self.drug_units, self.dropout)
    self.cell_encoder = CellMLP(self.cell_units, self.dropout)
    self.head_first = FactorisedDense(self.head_units[0])
    self.head_dense = [nn.Dense(u) for u in self.head_units[1:]]
    self.head_bn = [MaskedBatchNorm() for _ in self.head_units]
    self.head_dropout = Dropout(self.dropout)
    self.out = nn.Dense(1)
    self.setup_extras()

  def encode(self, graphs, cell_x, train: bool, cell_active=None, drug_active=None, drug_x=None,
             drug_k=None):
    """Codes of every drug [D, k] (its graph's GCN code beside its vector features' MLP code)
    and every cell line [C, k'].

    `*_active` keep held-out entities out of BatchNorm statistics (no transductive leak).
    """
    drug_codes = []
    if self.drug_graph:
      drug_codes.append(self.drug_encoder(graphs, train, drug_active))
    if self.drug_units:
      drug_codes.append(self.drug_mlp(drug_x, train, drug_active))
    return self.linear_scores((jnp.concatenate(drug_codes, axis=-1),
                               self.cell_encoder(cell_x, train, cell_active)), cell_x, drug_k)

  def fuse(self, codes, cell_idx, drug_idx, pair_mask, train: bool):
    """Per-pair head on gathered codes: one output per pair."""
    x = self.head_first(codes, cell_idx, drug_idx)
    for i, bn in enumerate(self.head_bn):
      if i:
        x = self.head_dense[i - 1](x)
      x = nn.relu(bn(x, pair_mask, train))
      x = self.head_dropout(x, deterministic=not train)
    return self.with_extras(self.out(x)[:, 0], codes, cell_idx, drug_idx)


class DeepCDRModel(EntityModel):
  """docs/DEEPCDR.md §4: GCN 256-256-256-100 (mean pool), per-omics branches, Dense 300 + Conv1D fusion."""
  gcn_units: Sequence[int]
  cell_blocks: Sequence[int]   # feature widths of the omics blocks, one branch each
  gcn_pool: str = 'mean'

  def setup(self):
    self.drug_encoder = DrugGCN(self.gcn_units, self.gcn_pool, self.dropout, self.node_sharding)
    self.branches = [CellMLP((256, 100), self.dropout, first_activation='tanh')
                     for _ in self.cell_blocks]
    self.dense300 = FactorisedDense(300)
    self.conv1 = ToeplitzConv1D(30, 150)
    self.convs = [nn.Conv(10, (5,), padding='VALID'), nn.Conv(5, (5,), padding='VALID')]
    self.out = nn.Dense(1)
    self.drop = Dropout(self.dropout)
    self.drop_flat = Dropout(0.2)
    self.setup_extras()

  def encode(self, graphs, cell_x, train: bool, cell_active=None, drug_active=None, drug_x=None,
             drug_k=None):
    """Drug codes [D, 100]; cell codes: each omics block through its branch, concatenated."""
    del drug_x  # graph only (create_model refuses other drug representations)
    bounds = [0]
    for width in self.cell_blocks:
      bounds.append(bounds[-1] + width)
    cells = [b(cell_x[:, lo:hi], train, cell_active)
             for b, lo, hi in zip(self.branches, bounds, bounds[1:])]
    return self.linear_scores(
        (self.drug_encoder(graphs, train, drug_active), jnp.concatenate(cells, axis=-1)), cell_x,
        drug_k)

  def fuse(self, codes, cell_idx, drug_idx, pair_mask, train: bool):
    del pair_mask  # no batch statistics in this head
    x = self.drop(nn.tanh(self.dense300(codes, cell_idx, drug_idx)), deterministic=not train)
    x = nn.max_pool(nn.relu(self.conv1(x)), (2,), strides=(2,))  # x: a 300-long 1-channel signal
    for conv in self.convs:
      x = nn.max_pool(nn.relu(conv(x)), (3,), strides=(3,))
    x = self.drop(x, deterministic=not train)
    x = self.drop_flat(x.reshape(x.shape[0], -1), deterministic=not train)
    return self.with_extras(self.out(x)[:, 0], codes, cell_idx, drug_idx)


def has_line_linear(config: ml_collections.ConfigDict) -> bool:
  """Whether the model config asks for the per-line linear term on the drug kernel map (an L2
  `line_linear` > 0, or `line_init='kernel_ridge'`, which chooses the L2 per fold)."""
  # .get: configs written before these fields (launch/predict.py reads old runs' config.json)
  return config.get('line_linear', 0.0) > 0 or config.get('line_init', 'zero') == 'kernel_ridge'


def create_model(config: ml_collections.ConfigDict, num_cells: int, num_drugs: int,
                 cell_blocks: Sequence[int], drug_graph: bool = True,
                 drug_vector: bool = False) -> nn.Module:
  """The model named by `config.name` ('seed' or 'deepcdr'); `drug_graph` / `drug_vector`: which
  drug representations the data has (the molecular graph; vector features)."""
  if config.name not in ('seed', 'deepcdr'):
    raise ValueError(f'unknown model {config.name!r}; choose one of: seed, deepcdr')
  shared = dict(num_cells=num_cells, num_drugs=num_drugs, dropout=config.dropout,
                id_embed_dim=config.id_embed_dim, bilinear_dim=config.bilinear_dim,
                drug_linear=config.drug_linear > 0,
                line_linear=has_line_linear(config))
  if config.name == 'seed':
    return SeedModel(tuple(config.gcn_units), tuple(config.cell_units), tuple(config.head_units),
                     config.gcn_pool, drug_graph=drug_graph,
                     drug_units=tuple(config.drug_units) if drug_vector else (), **shared)
  if not drug_graph or drug_vector:
    raise ValueError(f'model {config.name!r} encodes the molecular graph only; use the seed '
                     'model for other drug representations (data.drug_repr)')
  return DeepCDRModel(tuple(config.gcn_units), tuple(cell_blocks), config.gcn_pool, **shared)
