"""What a run writes to its workdir, every file atomically.

config.json, history.csv (+ TensorBoard events under tb/), metrics.json, predictions.csv,
per_drug.csv / per_cell.csv / per_type.csv (model beside every baseline), summary.md.
"""

import csv
import io as std_io
import json
import pathlib

import ml_collections
import numpy as np

from cdr_jax import baselines
from cdr_jax import io
from cdr_jax import metrics
from cdr_jax.data import Dataset

HISTORY_FIELDS = ('epoch', 'step', 'train_loss', 'val_pcc', 'val_spearman', 'val_rmse',
                  'val_per_drug_pcc', 'val_auroc', 'seconds')


def write_csv(path: pathlib.Path, rows: list[dict], fields=None) -> None:
  """Writes dict rows as CSV atomically (fields: the first row's keys unless given)."""
  fields = list(fields or (rows[0].keys() if rows else []))
  buf = std_io.StringIO()
  writer = csv.DictWriter(buf, fields, lineterminator='\n', extrasaction='ignore')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})
  io.atomic_write_text(path, buf.getvalue())


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  io.atomic_write_text(workdir / 'config.json', config.to_json_best_effort(indent=2) + '\n')


class TensorBoard:
  """Scalar summaries as TensorBoard event files (tensorboardX; no TensorFlow needed)."""

  def __init__(self, logdir: pathlib.Path):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(str(logdir))

  def scalars(self, step: int, values: dict) -> None:
    for k, v in values.items():
      if v is not None and np.isfinite(v):
        self._writer.add_scalar(k, v, step)
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def evaluate(pred: np.ndarray, ds: Dataset, pairs: np.ndarray, task: str) -> dict:
  """Overall metrics and per-drug / per-cell / per-type PCC summaries of one predictor."""
  obs = ds.pair_y[pairs]
  out = metrics.regression(pred, obs) if task == 'regression' else metrics.classification(
      pred, ds.pair_label[pairs])
  if task == 'regression':
    for name, group, names in group_keys(ds, pairs):
      out[f'per_{name}_pcc'] = metrics.summarize_groups(metrics.per_group(pred, obs, group, names))
  return out


def group_keys(ds: Dataset, pairs: np.ndarray):
  """(name, group index per pair, group names) for drug, cell line and cancer type."""
  return [('drug', ds.pair_drug[pairs], ds.drug_ids), ('cell', ds.pair_cell[pairs], ds.cell_ids),
          ('type', ds.pair_type[pairs], ds.cancer_types)]


def group_tables(preds: dict[str, np.ndarray], ds: Dataset, pairs: np.ndarray) -> dict[str, list]:
  """Per-group rows with the PCC of the model and of every baseline side by side."""
  obs, tables = ds.pair_y[pairs], {}
  for name, group, names in group_keys(ds, pairs):
    rows = None
    for predictor, pred in preds.items():
      part = metrics.per_group(pred, obs, group, names)
      if rows is None:
        rows = [{name: r['group'], 'n': r['n']} for r in part]
        if name == 'drug':
          for r in rows:
            r['drug_name'] = ds.drug_names[ds.drug_ids.index(r['drug'])]
      for r, p in zip(rows, part):
        r[f'{predictor}_pcc'] = p['pcc']
        if predictor == 'model':
          r.update(model_spearman=p['spearman'], model_rmse=p['rmse'])
    tables[name] = rows
  return tables


def summary_markdown(results: dict, title: str) -> str:
  """A Markdown table: the model beside every baseline, overall and per drug."""
  lines = [f'# {title}', '', '| predictor | PCC | Spearman | RMSE | R² | per-drug PCC mean | median |',
           '|---|---|---|---|---|---|---|']
  for name, m in results.items():
    pd = m.get('per_drug_pcc', {})
    lines.append(f"| {name} | {m.get('pcc', float('nan')):.4f} | "
                 f"{m.get('spearman', float('nan')):.4f} | {m.get('rmse', float('nan')):.3f} | "
                 f"{m.get('r2', float('nan')):.3f} | {pd.get('mean', float('nan')):.3f} | "
                 f"{pd.get('median', float('nan')):.3f} |")
  return '\n'.join(lines) + '\n'


def classification_markdown(results: dict, title: str) -> str:
  lines = [f'# {title}', '', '| predictor | AUROC | AUPRC | accuracy |', '|---|---|---|---|']
  for name, m in results.items():
    lines.append(f"| {name} | {m['auroc']:.4f} | {m['auprc']:.4f} | {m['accuracy']:.4f} |")
  return '\n'.join(lines) + '\n'


def final_report(workdir: pathlib.Path, ds: Dataset, train: np.ndarray, test: np.ndarray,
                 model_pred: np.ndarray, config: ml_collections.ConfigDict, extra: dict) -> dict:
  """Evaluates the model and the baselines on test; writes metrics, predictions and tables."""
  task = config.model.task
  preds = {'model': model_pred}
  if config.eval.baselines:
    target = None if task == 'regression' else ds.pair_label.astype(np.float32)
    fit = train if task == 'regression' else train[ds.pair_label[train] >= 0]
    preds.update(baselines.predict_all(ds, fit, test, config.eval, target))
  results = {name: evaluate(p, ds, test, task) for name, p in preds.items()}
  summary = {**extra, 'task': task, 'test': results}
  io.atomic_write_json(workdir / 'metrics.json', summary)
  rows = [{'cell_id': ds.cell_ids[c], 'drug_id': ds.drug_ids[d],
           'cancer_type': ds.cancer_types[ds.cell_type[c]], 'observed': float(y),
           'predicted': float(p)}
          for c, d, y, p in zip(ds.pair_cell[test], ds.pair_drug[test], ds.pair_y[test], model_pred)]
  if task == 'classification':
    for r, label in zip(rows, ds.pair_label[test]):
      r['label'] = int(label)
  write_csv(workdir / 'predictions.csv', rows)
  if task == 'regression':
    for name, table in group_tables(preds, ds, test).items():
      write_csv(workdir / f'per_{name}.csv', table)
  title = f"Test results ({extra.get('split', {}).get('name', '')} split, {config.data.cell_repr})"
  md = (summary_markdown if task == 'regression' else classification_markdown)(results, title)
  if extra.get('selection', {}).get('leaky'):
    md += '\n**Leaky:** the model was selected on the test set (published protocol).\n'
  io.atomic_write_text(workdir / 'summary.md', md)
  return summary


def json_dumps(obj) -> str:
  return json.dumps(obj, default=io._json_default)  # pylint: disable=protected-access
