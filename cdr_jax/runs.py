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

from cdr_jax.data import io
from cdr_jax.data.dataset import Dataset
from cdr_jax.eval import evaluate

CONFIG_FILE, HISTORY_FILE, METRICS_FILE = 'config.json', 'history.csv', 'metrics.json'
PREDICTIONS_FILE, SUMMARY_FILE = 'predictions.csv', 'summary.md'
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


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The config of a run directory (config.json)."""
  path = io.require_file(workdir / CONFIG_FILE, 'the config.json of a training run')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  io.atomic_write_text(workdir / CONFIG_FILE, config.to_json_best_effort(indent=2) + '\n')


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


def write_history(workdir: pathlib.Path, rows: list[dict]) -> None:
  """history.csv: one row per epoch (train loss, validation metrics, seconds)."""
  write_csv(workdir / HISTORY_FILE, rows, HISTORY_FIELDS)


def write_results(workdir: pathlib.Path, ds: Dataset, test: np.ndarray, preds: dict[str, np.ndarray],
                  config: ml_collections.ConfigDict, extra: dict) -> dict:
  """Scores the model and the baselines (`preds`, model first) on test; writes metrics.json,
  predictions.csv, the per-group tables and summary.md; returns the metrics."""
  task = config.model.task
  results = {name: evaluate.evaluate(p, ds, test, task) for name, p in preds.items()}
  summary = {**extra, 'task': task, 'test': results}
  io.atomic_write_json(workdir / METRICS_FILE, summary)
  model_pred = preds['model']
  rows = [{'cell_id': ds.cell_ids[c], 'drug_id': ds.drug_ids[d],
           'cancer_type': ds.cancer_types[ds.cell_type[c]], 'observed': float(y),
           'predicted': float(p)}
          for c, d, y, p in zip(ds.pair_cell[test], ds.pair_drug[test], ds.pair_y[test], model_pred)]
  if task == 'classification':
    for r, label in zip(rows, ds.pair_label[test]):
      r['label'] = int(label)
  write_csv(workdir / PREDICTIONS_FILE, rows)
  if task == 'regression':
    for name, table in evaluate.group_tables(preds, ds, test).items():
      write_csv(workdir / f'per_{name}.csv', table)
  title = f"Test results ({extra.get('split', {}).get('name', '')} split, {config.data.cell_repr})"
  md = (summary_markdown if task == 'regression' else classification_markdown)(results, title)
  if extra.get('selection', {}).get('leaky'):
    md += '\n**Leaky:** the model was selected on the test set (published protocol).\n'
  io.atomic_write_text(workdir / SUMMARY_FILE, md)
  return summary


def json_dumps(obj) -> str:
  return json.dumps(obj, default=io._json_default)  # pylint: disable=protected-access
