"""The jitted, sharded functions that train and evaluate F stacked models on a mesh.

An `Engine` is built once per (model, optimizer, task, mesh, F = 1 or not) and reused by every split
and every LODO chunk of that configuration: the step compiles once. The mesh has a `model` axis
(stacked models spread over as many devices as divide F) and a `data` axis (the batch of pairs).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cdr_jax.data import drugs
from cdr_jax.data.dataset import Dataset
from cdr_jax.model import models
from cdr_jax.train import optimizer
from cdr_jax.train import sharding
from cdr_jax.train import step as step_lib
from cdr_jax.train.state import DeviceData, MODEL_AXES, TrainState


def model_mesh(num_models: int):
  """A ('model', 'data') mesh: models over as many devices as divide F, the batch over the rest."""
  n = jax.device_count()
  f = int(np.gcd(n, num_models))
  return sharding.make_mesh(('model', 'data'), (f, n // f))


@dataclasses.dataclass(frozen=True)
class Engine:
  """Model, optimizer and their jitted functions for F stacked models on `mesh`."""
  model: nn.Module
  step_model: nn.Module   # `model`, with the drug atoms split over the data devices when single
  tx: optax.GradientTransformation
  task: str
  l2: tuple[tuple[str, float], ...]
  mesh: jax.sharding.Mesh
  single: bool
  loop: bool = False   # F > 1: a loop over the models inside the program, not a vmap

  @property
  def lift(self) -> dict:
    """How `step.over_models` maps the stacked models: loop or vmap, one block per model device."""
    return dict(loop=self.loop, groups=self.mesh.shape['model'])

  @property
  def replicated(self):
    return sharding.replicated(self.mesh)

  @property
  def by_model(self):
    return sharding.sharded(self.mesh, 'model')

  @property
  def by_data(self):
    return sharding.sharded(self.mesh, 'data')

  @property
  def data_shardings(self) -> DeviceData:
    """`DeviceData` of shardings: shared fields replicated, per-model fields split over `model`."""
    return jax.tree.map(lambda axis: self.replicated if axis is None else self.by_model,
                        MODEL_AXES, is_leaf=lambda a: a is None)

  def put_data(self, data: DeviceData) -> DeviceData:
    """Places host `DeviceData` with `data_shardings`."""
    return jax.tree.map(lambda sh, x: sharding.put(x, sh), self.data_shardings, data,
                        is_leaf=lambda a: isinstance(a, jax.sharding.Sharding))

  def put_batch(self, batch: dict) -> dict:
    return sharding.put(batch, self.by_data)

  def init(self, data: DeviceData, seed: int, num_models: int) -> TrainState:
    """F stacked states, every model from the same initial parameters (those of `seed`)."""
    one = _jitted_init(self.model, self.tx)(data.graphs, data.cell_x, data.drug_x, data.drug_k,
                                            jax.random.key(seed))
    stack = lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (num_models,) + x.shape), tree)
    return jax.jit(stack, out_shardings=self.by_model)(one)

  def key(self, seed: int) -> jax.Array:
    """A PRNG key replicated over the mesh (the same on every process)."""
    return jax.jit(lambda: jax.random.key(seed), out_shardings=self.replicated)()

  @functools.cached_property
  def step(self):
    """(states, data, active, batch, rng) -> (states, {'loss': [F], 'weight': [F]}); donates states."""
    fn = functools.partial(step_lib.stacked_step, model=self.step_model, tx=self.tx,
                           task=self.task, l2=self.l2, single=self.single, **self.lift)
    return jax.jit(fn, donate_argnums=(0,),
                   in_shardings=(self.by_model, self.data_shardings, self.by_model, self.by_data,
                                 self.replicated),
                   out_shardings=(self.by_model, self.replicated))  # metrics: read by the host

  @functools.cached_property
  def encode(self):
    fn = functools.partial(step_lib.encode, model=self.model)
    return jax.jit(step_lib.over_models(fn, (0, MODEL_AXES), self.single, **self.lift))

  @functools.cached_property
  def fuse(self):
    fn = functools.partial(step_lib.fuse, model=self.model)
    # Outputs replicated: every process reads all predictions.
    return jax.jit(step_lib.over_models(fn, (0, 0, MODEL_AXES, 0), self.single, **self.lift),
                   out_shardings=self.replicated)

  def predict(self, states: TrainState, data: DeviceData, pair_lists: list[np.ndarray],
              batch_size: int) -> list[np.ndarray]:
    """Per model, its outputs (standardised ln IC50, or logits) for its own list of pairs."""
    codes = self.encode(states, data)
    bs = sharding.round_to_devices(batch_size, self.mesh)
    n = -(-max(1, max(len(p) for p in pair_lists)) // bs) * bs
    idx = np.zeros((len(pair_lists), n), np.int32)
    for i, p in enumerate(pair_lists):
      idx[i, :len(p)] = p
    spec = sharding.sharded(self.mesh, 'model', 'data')
    outs = [self.fuse(states, codes, data, sharding.put(idx[:, i:i + bs], spec))
            for i in range(0, n, bs)]
    out = np.concatenate([np.asarray(jax.device_get(o)) for o in outs], axis=1)
    return [out[i, :len(p)] for i, p in enumerate(pair_lists)]


def natural_scale(out: np.ndarray, task: str, y_mean: float, y_std: float) -> np.ndarray:
  """Model outputs on the natural scale: ln IC50, or the sensitivity probability."""
  if task == 'regression':
    return out * y_std + y_mean
  return 1.0 / (1.0 + np.exp(-out))


def create_engine(config: ml_collections.ConfigDict, ds: Dataset, batch_size: int, pool_size: int,
                  num_models: int) -> Engine:
  """The engine of `config` for `ds`'s entities, F = `num_models`, training `batch_size` pairs per
  step from a pool of `pool_size` pairs (cached per configuration)."""
  if config.model.task not in ('regression', 'classification'):
    raise ValueError(f'unknown task {config.model.task!r}; choose regression or classification')
  mesh = model_mesh(num_models)
  if batch_size % mesh.shape['data']:
    raise ValueError(f'train.batch_size={batch_size} must be a multiple of the '
                     f'{mesh.shape["data"]} devices on the data axis')
  if config.model.name == 'deepcdr' and config.data.get('cell_kernel', 'none') != 'none':
    raise ValueError('model deepcdr has one branch per omics block, and data.cell_kernel='
                     f'{config.data.cell_kernel} maps the blocks into one kernel map: use the seed '
                     'model or --config.data.cell_kernel=none')
  parts = drugs.parse_repr(config.data.drug_repr)
  model = models.create_model(config.model, len(ds.cell_ids), len(ds.drug_ids), ds.cell_blocks,
                              drugs.GRAPH in parts, ds.drug_x.shape[1] > 0)
  tx = optimizer.create_optimizer(config.optimizer, -(-pool_size // batch_size),
                                  config.train.num_epochs, batch_size)
  step_model, devices = model, mesh.shape['data']
  if num_models == 1 and devices > 1 and ds.drug_graphs.nodes.shape[0] % devices == 0:
    # Split the drug GCN's atoms over the devices (each drug encoded once per step in total).
    step_model = model.clone(node_sharding=sharding.sharded(mesh, 'data', None))
  return _engine(model, step_model, tx, config.model.task, optimizer.l2_penalties(config.model),
                 mesh, num_models == 1, fold_loop(config))


FOLD_MAPS = ('auto', 'loop', 'vmap')


def fold_loop(config: ml_collections.ConfigDict) -> bool:
  """Whether stacked models run as a loop inside the program (`lodo.fold_map`): 'loop', 'vmap', or
  'auto', the platform's choice: a loop on CPU (the work the models share runs once and each
  model's activations stay in cache; only the models still training are stepped,
  `step.stacked_step`), one vmap on an accelerator (one small model leaves it idle)."""
  how = config.lodo.get('fold_map', 'auto')
  if how not in FOLD_MAPS:
    raise ValueError(f'unknown lodo.fold_map {how!r}; choose one of: {", ".join(FOLD_MAPS)}')
  return how == 'loop' or (how == 'auto' and jax.default_backend() == 'cpu')


@functools.lru_cache(maxsize=8)
def _engine(model, step_model, tx, task, l2, mesh, single, loop) -> Engine:
  return Engine(model, step_model, tx, task, l2, mesh, single, loop)


@functools.lru_cache(maxsize=8)
def _jitted_init(model, tx):
  """Compiled initialisation of one model (op-by-op init costs seconds)."""
  @jax.jit
  def init(graphs, cell_x, drug_x, drug_k, key):
    idx = jnp.zeros((2,), jnp.int32)
    variables = model.init({'params': key, 'dropout': key}, graphs, cell_x, idx, idx,
                           jnp.ones((2,), bool), train=False, drug_x=drug_x, drug_k=drug_k)
    params = variables['params']
    return TrainState(jnp.zeros((), jnp.int32), params, variables.get('batch_stats', {}),
                      tx.init(params))
  return init
