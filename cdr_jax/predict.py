"""Predictions from a trained run's best checkpoint: for given pairs, or for new drugs (SMILES).

New drugs are featurised, appended to the drug graphs, and encoded by the trained GCN; for a hybrid
model (learned per-drug codes) a new drug gets a zero code and bias, i.e. the graph-only prediction.
"""

import dataclasses
import json
import pathlib

import jax
import ml_collections
import numpy as np

from cdr_jax import chem
from cdr_jax import checkpoint
from cdr_jax import data
from cdr_jax import io
from cdr_jax import sharding
from cdr_jax import train
from cdr_jax.errors import DataError


def load_run(workdir: pathlib.Path) -> tuple[ml_collections.ConfigDict, train.Prepared]:
  """The run's config and its prepared dataset / split / model (as trained)."""
  path = io.require_file(workdir / 'config.json', 'the config.json of a training run')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  return config, train.prepare(config)


def add_drugs(ds: data.Dataset, smiles: list[tuple[str, str]]) -> data.Dataset:
  """The dataset with new drugs (id, SMILES) appended to its drug graphs (no new pairs)."""
  known = len(ds.drug_ids)
  g = ds.drug_graphs
  old = [_graph(g, i) for i in range(known)]
  new = [chem.smiles_to_graph(s, d) for d, s in smiles]
  return dataclasses.replace(ds, drug_ids=ds.drug_ids + tuple(d for d, _ in smiles),
                             drug_names=ds.drug_names + tuple(d for d, _ in smiles),
                             drug_graphs=chem.batch_drug_graphs(old + new))


def _graph(g, i: int):
  """Graph `i` of a padded batch, as a single-graph GraphsTuple of numpy arrays."""
  n0, n = int(g.n_node[:i].sum()), int(g.n_node[i])
  e0, e = int(g.n_edge[:i].sum()), int(g.n_edge[i])
  return g._replace(nodes=np.asarray(g.nodes[n0:n0 + n]),
                    senders=np.asarray(g.senders[e0:e0 + e]) - n0,
                    receivers=np.asarray(g.receivers[e0:e0 + e]) - n0, n_node=np.array([n]),
                    n_edge=np.array([e]))


def _pad_per_drug_params(params, num_new: int):
  """Zero per-drug codes and biases (and per-drug linear weights) for new drugs."""
  if 'drug_linear_term' in params:
    w = params['drug_linear_term']['kernel']
    params = {**params, 'drug_linear_term': {'kernel': np.concatenate(
        [w, np.zeros((w.shape[0], num_new), np.float32)], axis=1)}}
  if 'ids' not in params:
    return params
  ids = dict(params['ids'])
  ids['drug_vec'] = np.concatenate([ids['drug_vec'], np.zeros((num_new, ids['drug_vec'].shape[1]),
                                                              np.float32)])
  ids['drug_bias'] = np.concatenate([ids['drug_bias'], np.zeros(num_new, np.float32)])
  return {**params, 'ids': ids}


def predict(workdir: str | pathlib.Path, pairs: list[tuple[str, str]] | None = None,
            new_drugs: list[tuple[str, str]] | None = None) -> list[dict]:
  """Predicted ln IC50 (or sensitivity) for (cell id, drug id) pairs; new drugs against all cells."""
  workdir = pathlib.Path(workdir)
  config, prep = load_run(workdir)
  trainer = train.Trainer(prep, config, sharding.make_mesh())
  like = jax.device_put(train.init_state(prep, config.train.seed), trainer.rep)
  restored = checkpoint.Checkpoints(workdir / 'checkpoints').restore('best', like)
  if restored is None:
    raise DataError(f'{workdir}/checkpoints/best: no checkpoint (has the run finished an epoch?)')
  state = restored[0]
  ds = prep.ds
  if new_drugs:
    ds = add_drugs(ds, new_drugs)
    pairs = (pairs or []) + [(c, d) for d, _ in new_drugs for c in ds.cell_ids]
    state = state.replace(params=_pad_per_drug_params(jax.device_get(state.params), len(new_drugs)))
  cell_index = {c: i for i, c in enumerate(ds.cell_ids)}
  drug_index = {d: i for i, d in enumerate(ds.drug_ids)}
  for c, d in pairs:
    if c not in cell_index:
      raise DataError(f'unknown cell id {c!r}: not among the {len(cell_index)} cell lines of the run')
    if d not in drug_index:
      raise DataError(f'unknown drug id {d!r}: not among the run\'s drugs (give new ones as SMILES)')
  cells = np.array([cell_index[c] for c, _ in pairs], np.int32)
  drugs = np.array([drug_index[d] for _, d in pairs], np.int32)
  query = dataclasses.replace(ds, pair_cell=cells, pair_drug=drugs,
                              pair_y=np.zeros(len(cells), np.float32),
                              pair_label=np.zeros(len(cells), np.int8))
  static = train.make_static(query, prep.static['cell_x'], prep.split.train[:0],
                             (prep.y_mean, prep.y_std))
  # A hybrid model's per-drug code table grows with the new drugs (their codes are zero).
  qprep = dataclasses.replace(prep, ds=query, static=static,
                              model=prep.model.clone(num_drugs=len(ds.drug_ids)))
  qtrainer = train.Trainer(qprep, config, trainer.mesh)
  out = qtrainer.predict(jax.device_put(state, qtrainer.rep), np.arange(len(cells)))
  return [{'cell_id': c, 'drug_id': d, 'predicted': float(p)} for (c, d), p in zip(pairs, out)]


def read_pairs(path: str) -> list[tuple[str, str]]:
  """cell_id,drug_id rows (header required; extra columns ignored)."""
  head, body = io.read_table(path, 'pairs to predict: cell_id,drug_id', header=['cell_id', 'drug_id'])
  del head
  return [(r[0].strip(), r[1].strip()) for r in body]


def read_smiles_arg(text: str) -> list[tuple[str, str]]:
  """'name=SMILES;name2=SMILES2' or a file of `name<TAB>SMILES` lines."""
  path = pathlib.Path(text)
  if path.is_file():
    return [tuple(line.split('\t', 1)) for line in path.read_text().splitlines() if line.strip()]
  out = []
  for item in filter(None, text.split(';')):
    name, sep, smiles = item.partition('=')
    if not sep:
      raise DataError(f'--smiles item {item!r}: expected name=SMILES')
    out.append((name.strip(), smiles.strip()))
  return out


def write_predictions(path: str, rows: list[dict]) -> None:
  from cdr_jax import outputs  # pylint: disable=g-import-not-at-top
  outputs.write_csv(pathlib.Path(path), rows, ('cell_id', 'drug_id', 'predicted'))



