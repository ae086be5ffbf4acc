"""The network's identity codes started from the tuned matrix factorisation (`model.id_init='mf'`).

The hybrid model adds a biased matrix factorisation (`IdentityCodes`: per-line and per-drug codes
and biases) to the feature network's output. Trained from random codes by Adam for 50 epochs it
stays below the same factorisation fitted by ALS to convergence (README, Results). With
`id_init='mf'` the run first fits and selects matrix factorisation exactly as the classical
predictors do (`classical.select_matrix_factorization`: rank and L2 chosen on the validation pairs,
ALS from the run's seed), then
  - sizes the codes with its rank and penalises them with its L2 (unless `model.id_l2` is set),
    converted to the network's standardised scale;
  - starts the codes from its solution and the head's output layer at zero, so that the untrained
    network predicts exactly what the matrix factorisation does; training then fits what the
    features add to it, and selection on validation keeps the epoch that validates best.
Only training and validation pairs are read; the run's `tuned_matrix_factorization` reuses the same
fit.

Scale: the network predicts z = (y - mean) / std. A factorisation y = mu + b + a + u.v is, on that
scale, (mu - mean) / std + b / std + a / std + (u / sqrt(std)).(v / sqrt(std)); ALS's penalty
l2 * |u|^2 on the summed squared error of y is, divided by std^2, (l2 / std) * |u / sqrt(std)|^2
on the summed squared error of z: the network's `id_l2` is l2 / std. (Biases are penalised alike.)
"""

import dataclasses
import logging
import time

import jax
import ml_collections
import numpy as np

from cdr_jax.data import splits
from cdr_jax.data.dataset import Dataset
from cdr_jax.eval import classical
from cdr_jax.train import sharding

INITS = ('random', 'mf')


@dataclasses.dataclass(frozen=True)
class IdentityInit:
  """The matrix factorisation the codes start from, and what it set."""
  mf: classical.Predictor
  id_embed_dim: int
  id_l2: float
  seconds: float

  def info(self) -> dict:
    return {'from': 'matrix_factorization', 'id_embed_dim': self.id_embed_dim,
            'id_l2': self.id_l2, 'mf': {k: v for k, v in self.mf.params.items() if k != 'val'},
            'seconds': self.seconds}


def check(model_config: ml_collections.ConfigDict) -> bool:
  """Whether `model.id_init` asks for the warm start; ValueError for an unknown or contradictory
  setting."""
  init = model_config.get('id_init', 'random')
  if init not in INITS:
    raise ValueError(f'unknown model.id_init {init!r}; choose one of: {", ".join(INITS)}')
  if init == 'mf' and not model_config.id_embed_dim:
    raise ValueError("model.id_init='mf' starts the identity codes from matrix factorisation, but "
                     'model.id_embed_dim=0 turns the codes off; set it > 0 (the rank then comes '
                     "from the factorisation's selection)")
  return init == 'mf'


def fit(ds: Dataset, split: splits.Split, seed: int) -> classical.Predictor:
  """Matrix factorisation fitted on the split's training pairs, rank and L2 chosen on its
  validation pairs (the classical predictor `tuned_matrix_factorization`)."""
  pairs = lambda idx: classical.Pairs(ds.pair_cell[idx], ds.pair_drug[idx],
                                      np.asarray(ds.pair_y[idx], np.float64))
  return classical.select_matrix_factorization(pairs(split.train), pairs(split.val),
                                               len(ds.cell_ids), len(ds.drug_ids), seed)


def configure(config: ml_collections.ConfigDict, ds: Dataset, split: splits.Split
              ) -> tuple[ml_collections.ConfigDict, IdentityInit]:
  """A copy of `config` whose identity codes have the tuned factorisation's rank and L2 (on the
  standardised scale; an explicit `model.id_l2` > 0 is kept), and the factorisation."""
  start = time.perf_counter()
  mf = fit(ds, split, config.train.seed)
  seconds = time.perf_counter() - start
  y_std = float(np.asarray(ds.pair_y[split.train], np.float32).std())
  out = ml_collections.ConfigDict(config.to_dict())
  out.model.id_embed_dim = int(mf.params['rank'])
  if not config.model.id_l2:
    out.model.id_l2 = float(mf.params['l2']) / y_std
  init = IdentityInit(mf, out.model.id_embed_dim, out.model.id_l2, seconds)
  logging.info('identity codes from matrix factorisation: rank %d, L2 %g (%g on the standardised '
               'scale), validation per-drug PCC %.4f, %.1f s', mf.params['rank'], mf.params['l2'],
               out.model.id_l2, mf.params['val_score'], seconds)
  return out, init


def code_params(mf: classical.Predictor, y_mean: float, y_std: float) -> dict[str, np.ndarray]:
  """`IdentityCodes` parameters on the standardised scale that reproduce the factorisation."""
  f = mf.factors
  if f is None:
    raise ValueError(f'predictor {mf.name!r} has no factors to start identity codes from')
  line, drug = np.asarray(f['line']), np.asarray(f['drug'])
  root = np.sqrt(y_std)
  return {'cell_vec': line[:, :-1] / root, 'drug_vec': drug[:, :-1] / root,
          'cell_bias': line[:, -1] / y_std + (f['mu'] - y_mean) / y_std,
          'drug_bias': drug[:, -1] / y_std}


def apply(states, mf: classical.Predictor, y_mean: np.ndarray, y_std: np.ndarray):
  """`states` (F stacked models) with identity codes from `mf` and a zero output layer.

  Each model f uses its own standardisation (y_mean[f], y_std[f]); every model starts from the
  same factorisation. New leaves keep the old ones' shardings (any number of processes).
  """
  old = states.params
  if 'ids' not in old or 'out' not in old:
    raise ValueError('the warm start needs a model with identity codes and an `out` layer')
  per_model = [code_params(mf, float(m), float(s)) for m, s in zip(y_mean, y_std)]
  ids = {}
  for k, leaf in old['ids'].items():
    ids[k] = np.stack([p[k] for p in per_model]).astype(leaf.dtype)
    if ids[k].shape != leaf.shape:
      raise ValueError(f'identity codes {k} have shape {leaf.shape}; the factorisation gives '
                       f'{ids[k].shape} (is model.id_embed_dim its rank?)')
  new = {'ids': ids, 'out': jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), old['out'])}
  placed = jax.tree.map(lambda x, leaf: sharding.put(x, leaf.sharding), new,
                        {'ids': old['ids'], 'out': old['out']})
  return states.replace(params=dict(old, **placed))
