"""Predictions from a trained run's best checkpoint: for given pairs, or for new drugs (SMILES).

New drugs are featurised, appended to the drug graphs, and encoded by the trained GCN; for a hybrid
model (learned per-drug codes) a new drug gets a zero code and bias, i.e. the graph-only prediction.
"""

import dataclasses
import logging
import pathlib

import jax
import numpy as np

from cdr_jax import data
from cdr_jax import experiment
from cdr_jax import runs
from cdr_jax.data import chem
from cdr_jax.data import drugs
from cdr_jax.data.dataset import SCREEN_SEPARATOR
from cdr_jax.data import io
from cdr_jax.data import splits
from cdr_jax.errors import DataError
from cdr_jax.train import checkpoint
from cdr_jax.train import engine as engine_lib
from cdr_jax.train.state import device_data


def add_drugs(ds: data.Dataset, smiles: list[tuple[str, str]]) -> data.Dataset:
  """The dataset with new drugs (id, SMILES) appended to its drug graphs (no new pairs)."""
  known = len(ds.drug_ids)
  g = ds.drug_graphs
  old = [chem.graph_at(g, i) for i in range(known)]
  new = [chem.smiles_to_graph(s, d) for d, s in smiles]
  return dataclasses.replace(ds, drug_ids=ds.drug_ids + tuple(d for d, _ in smiles),
                             drug_names=ds.drug_names + tuple(d for d, _ in smiles),
                             drug_smiles=ds.drug_smiles + tuple(s for _, s in smiles),
                             drug_graphs=chem.batch_drug_graphs(old + new))


def _pad_per_drug_params(params, num_new: int):
  """Zero per-drug codes and biases (and per-drug linear weights) for new drugs."""
  if 'drug_linear_term' in params:
    pad = lambda w: np.concatenate([w, np.zeros(w.shape[:-1] + (num_new,), w.dtype)], axis=-1)
    params = {**params, 'drug_linear_term': jax.tree.map(pad, params['drug_linear_term'])}
  if 'ids' not in params:
    return params
  ids = dict(params['ids'])
  ids['drug_vec'] = np.concatenate([ids['drug_vec'], np.zeros((num_new, ids['drug_vec'].shape[1]),
                                                              np.float32)])
  ids['drug_bias'] = np.concatenate([ids['drug_bias'], np.zeros(num_new, np.float32)])
  return {**params, 'ids': ids}


def predict(workdir: str | pathlib.Path, pairs: list[tuple[str, str]] | None = None,
            new_drugs: list[tuple[str, str]] | None = None,
            annotations: dict[str, tuple[str, list[str]]] | None = None) -> list[dict]:
  """Predicted ln IC50 (or sensitivity) for (cell id, drug id) pairs; new drugs (id, SMILES)
  against all cells, with their GDSC annotations (id -> (pathway, targets)) when the run uses
  them. Notes on what a prediction could not use are logged and returned in each row."""
  workdir = pathlib.Path(workdir)
  config = runs.read_config(workdir)
  members = int(config.train.get('ensemble', 1))
  if members > 1:   # the mean of the member networks' predictions, as the run reported
    outs = [predict(workdir / experiment.MEMBERS / str(k), pairs, new_drugs, annotations)
            for k in range(members)]
    return [dict(rows[0], predicted=float(np.mean([r['predicted'] for r in rows])))
            for rows in zip(*outs)]
  ds = data.load_dataset(config.data)
  split = splits.make_split(ds, config.split)
  ds = experiment.network_dataset(ds, split, config)   # the drugs the network was trained on
  # The network the run reported: its refit on training + validation pairs when it made one.
  pool = experiment.refit_pool(config, split)
  where = workdir / (experiment.REFIT_CHECKPOINTS if experiment.refits(config, split)
                     else 'checkpoints')
  run = experiment.setup(config, ds, [pool], pool)
  restored = checkpoint.Checkpoints(where).restore('best', run.init())
  if restored is None:
    raise DataError(f'{where}/best: no checkpoint (has the run finished?)')
  params = jax.tree.map(lambda x: np.asarray(x[0]), restored[0].params)
  fit_cells, fit_drugs = np.unique(ds.pair_cell[pool]), np.unique(ds.pair_drug[pool])
  notes = []
  if new_drugs and 'line_linear_term' in params:
    raise DataError(f'{workdir}: this run has a per-line linear term on the kernel map of its own '
                    f'{len(ds.drug_ids)} drugs (model.line_linear / line_init), which cannot '
                    'place a new drug; predict known drugs, or use a run without it')
  if new_drugs:
    old_features = ds.drug_x
    ds = add_drugs(ds, new_drugs)   # checks the SMILES
    raw, notes = drugs.new_drug_features(config.data, ds.drug_feature_names, dict(new_drugs),
                                         annotations)
    for note in notes:
      logging.warning('%s', note)
    ds = dataclasses.replace(ds, drug_features=np.concatenate([old_features, raw]))
    pairs = (pairs or []) + [(c, d) for d, _ in new_drugs for c in ds.cell_ids]
    params = _pad_per_drug_params(params, len(new_drugs))
  cell_index = {c: i for i, c in enumerate(ds.cell_ids)}
  drug_index = {d: i for i, d in enumerate(ds.drug_ids)}
  for c, d in pairs:
    if c not in cell_index:
      raise DataError(f'unknown cell id {c!r}: not among the {len(cell_index)} cell lines of the run')
    if d not in drug_index:
      screens = [k for k in drug_index if k.startswith(d + SCREEN_SEPARATOR)]
      if screens:
        raise DataError(f'drug {d!r} was screened under several GDSC ids, each a drug of this '
                        f'run: name one of {", ".join(screens)}')
      raise DataError(f'unknown drug id {d!r}: not among the run\'s drugs (give new ones as SMILES)')
  query = dataclasses.replace(
      ds, pair_cell=np.array([cell_index[c] for c, _ in pairs], np.int32),
      pair_drug=np.array([drug_index[d] for _, d in pairs], np.int32),
      pair_y=np.zeros(len(pairs), np.float32), pair_label=np.zeros(len(pairs), np.int8),
      pair_screen=None, screen_ids=())
  everything = np.arange(len(pairs))
  # The run's features and target statistics; a hybrid model's per-drug code table grows with the
  # new drugs (their codes are zero).
  cell_x, drug_x = experiment.network_features(query, fit_cells, fit_drugs, config)
  host = dataclasses.replace(device_data(query, cell_x, drug_x, [everything], run.host.drug_k),
                             y_mean=run.host.y_mean, y_std=run.host.y_std)
  engine = engine_lib.create_engine(config, query, run.batch_size, len(pool), 1)
  state = restored[0].replace(params=jax.tree.map(lambda x: x[None], params))
  out = engine.predict(jax.device_put(state, engine.by_model), engine.put_data(host), [everything],
                       config.eval.batch_size)[0]
  out = engine_lib.natural_scale(out, config.model.task, float(host.y_mean[0]),
                                 float(host.y_std[0]))
  note = {d: '; '.join(n for n in notes if n.startswith(f'{d}:')) for _, d in pairs}
  return [{'cell_id': c, 'drug_id': d, 'predicted': float(p), 'note': note[d]}
          for (c, d), p in zip(pairs, out)]


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
  runs.write_csv(pathlib.Path(path), rows, ('cell_id', 'drug_id', 'predicted', 'note'))


def read_annotations_arg(text: str) -> dict[str, tuple[str, list[str]]]:
  """'name=PATHWAY|TARGET1,TARGET2;...' -> name -> (pathway, targets) for new drugs."""
  out = {}
  for item in filter(None, (t.strip() for t in text.split(';'))):
    name, sep, rest = item.partition('=')
    pathway, bar, targets = rest.partition('|')
    if not sep or not bar or not pathway.strip():
      raise DataError(f'--annotations item {item!r}: expected name=PATHWAY|TARGET1,TARGET2')
    out[name.strip()] = (pathway.strip(), [t.strip() for t in targets.split(',') if t.strip()])
  return out



