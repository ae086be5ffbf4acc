"""The run-directory format: every file a run writes (atomically) and every reader of them.

A training run: config.json, history.csv (+ TensorBoard events under tb/), checkpoints/, metrics.json,
predictions.csv, per_drug.csv / per_cell.csv / per_type.csv (model beside every baseline),
summary.md. A LODO sweep: config.json, chunks/, lodo_per_drug.csv, lodo_curves.csv,
lodo_predictions.csv, lodo_summary.json. The report, the audit and predictions read runs only here.
"""

import csv
import dataclasses
import io as std_io
import json
import pathlib

import ml_collections
import numpy as np

from cdr_jax.data import io
from cdr_jax.data.dataset import Dataset
from cdr_jax.errors import DataError
from cdr_jax.eval import evaluate

CONFIG_FILE, HISTORY_FILE, METRICS_FILE = 'config.json', 'history.csv', 'metrics.json'
PREDICTIONS_FILE, SUMMARY_FILE = 'predictions.csv', 'summary.md'
LODO_TABLE_FILE, LODO_SUMMARY_FILE = 'lodo_per_drug.csv', 'lodo_summary.json'
LODO_CURVE_FIELDS = ('drug_id', 'epoch', 'train_loss', 'val_score')
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


def classical_markdown(info: dict) -> str:
  """What each tuned classical predictor chose (on training and validation pairs), or why it does
  not apply to the split; the stack's weights."""
  if not info:
    return ''
  lines = ['', '## Tuned classical predictors and the stack', '',
           '| predictor | applies | chosen on training / validation pairs |', '|---|---|---|']
  for name, entry in info.items():
    if name == 'stack':
      weights = ', '.join(f'{k} {v:.2f}' for k, v in entry['weights'].items() if v)
      lines.append(f'| stack | yes | weights (validation pairs, within drugs): {weights} |')
      continue
    what = _chosen(entry['params']) if entry['applies'] else entry['why']
    if 'refit' in entry:
      what += f"; refit with these on {entry['refit']['pairs']:,} training + validation pairs"
    lines.append(f"| tuned_{name} | {'yes' if entry['applies'] else 'no'} | {what} |")
  return '\n'.join(lines) + '\n'


def unmeasured_scores(preds: dict[str, np.ndarray], ds: Dataset, test: np.ndarray,
                      measured: np.ndarray) -> dict:
  """Every predictor's PCC and mean per-drug PCC on the test pairs whose line and drug were never
  measured in training or validation (`measured`: `splits.measured_before`), beside the count."""
  keep = ~measured
  scores = {}
  for name, p in preds.items():
    m = evaluate.evaluate(np.asarray(p)[keep], ds, test[keep], 'regression')
    scores[name] = {'pcc': m['pcc'], 'per_drug_pcc': m['per_drug_pcc']['mean']}
  return {'pairs': int(keep.sum()), 'measured_in_training': int(measured.sum()),
          'note': 'test pairs whose (line, drug) has no measurement among the training and '
                  'validation pairs; the others repeat one', 'test': scores}


def unmeasured_markdown(entry: dict | None) -> str:
  """summary.md's table of the scores on test pairs never measured in training (or nothing)."""
  if not entry:
    return ''
  lines = ['', f"## Test pairs never measured in training ({entry['pairs']:,}; "
               f"{entry['measured_in_training']:,} others repeat a training measurement)", '',
           '| predictor | PCC | per-drug PCC |', '|---|---|---|']
  lines += [f"| {k} | {v['pcc']:.4f} | {v['per_drug_pcc']:.4f} |" for k, v in entry['test'].items()]
  return '\n'.join(lines) + '\n'


def _chosen(params: dict) -> str:
  """The chosen hyperparameters (scalars; nonzero blend weights), not the grids' scores."""
  shown = [f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in params.items()
           if not isinstance(v, dict) and k not in ('objective', 'note', 'val_score', 'cv_score',
                                                    'spectrum_cv_score', 'intercept')]
  shown += [f'{k} {v:.2f}' for k, v in params.get('weights', {}).items() if v]
  if params.get('annotations'):   # kernel ridge: groups (categorical) or lines with a value
    shown.append('annotations ' + ' / '.join(f'{k} {v}' for k, v in params['annotations'].items()))
  return ', '.join(shown)


def short_table(summary: dict, strongest: int = 3) -> str:
  """The lines `launch/train.py` prints: the model, the stack and the strongest other predictors
  (by per-drug PCC) with PCC, Spearman, RMSE and per-drug PCC; regression runs only."""
  test = summary['test']
  if 'pcc' not in test['model']:
    return '\n'.join(f'{k}: AUROC {v["auroc"]:.4f}' for k, v in test.items())
  per_drug = lambda k: test[k]['per_drug_pcc']['mean']
  others = sorted((k for k in test if k not in ('model', 'stack') and per_drug(k) == per_drug(k)),
                  key=per_drug, reverse=True)[:strongest]
  rows = [k for k in ('model', 'stack') if k in test] + others
  width = max(28, *(len(k) + 1 for k in rows))
  lines = [f'{"predictor":<{width}} {"PCC":>7} {"Spearman":>9} {"RMSE":>7} {"per-drug PCC":>13}']
  for k in rows:
    m = test[k]
    lines.append(f'{k:<{width}} {m["pcc"]:7.4f} {m["spearman"]:9.4f} {m["rmse"]:7.3f} '
                 f'{per_drug(k):13.3f}')
  return '\n'.join(lines)


def write_history(workdir: pathlib.Path, rows: list[dict]) -> None:
  """history.csv: one row per epoch (train loss, validation metrics, seconds)."""
  write_csv(workdir / HISTORY_FILE, rows, HISTORY_FIELDS)


def write_results(workdir: pathlib.Path, ds: Dataset, test: np.ndarray, preds: dict[str, np.ndarray],
                  config: ml_collections.ConfigDict, extra: dict, write: bool = True) -> dict:
  """Scores the model and the baselines (`preds`, model first) on test; writes metrics.json,
  predictions.csv, the per-group tables and summary.md (unless not `write`); returns the metrics."""
  task = config.model.task
  results = {name: evaluate.evaluate(p, ds, test, task) for name, p in preds.items()}
  summary = {**extra, 'task': task, 'test': results}
  if not write:
    return summary
  io.atomic_write_json(workdir / METRICS_FILE, summary)
  write_predictions(workdir, ds, test, preds['model'], task)
  if task == 'regression':
    for name, table in evaluate.group_tables(preds, ds, test).items():
      write_csv(workdir / f'per_{name}.csv', table)
  title = f"Test results ({extra.get('split', {}).get('name', '')} split, {config.data.cell_repr})"
  md = (summary_markdown if task == 'regression' else classification_markdown)(results, title)
  md += classical_markdown(extra.get('classical', {}))
  md += unmeasured_markdown(extra.get('test_unmeasured'))
  if extra.get('selection', {}).get('leaky'):
    md += '\n**Leaky:** the model was selected on the test set (published protocol).\n'
  io.atomic_write_text(workdir / SUMMARY_FILE, md)
  return summary


def write_predictions(workdir: pathlib.Path, ds: Dataset, test: np.ndarray, pred: np.ndarray,
                      task: str) -> None:
  """predictions.csv: cell, drug, cancer type, observed, predicted (and label) per test pair, and
  the screen (GDSC drug id) it was measured in where the dataset records one."""
  rows = [{'cell_id': ds.cell_ids[c], 'drug_id': ds.drug_ids[d],
           'cancer_type': ds.cancer_types[ds.cell_type[c]], 'observed': float(y),
           'predicted': float(p)}
          for c, d, y, p in zip(ds.pair_cell[test], ds.pair_drug[test], ds.pair_y[test], pred)]
  if task == 'classification':
    for r, label in zip(rows, ds.pair_label[test]):
      r['label'] = int(label)
  if ds.pair_screen is not None:
    for r, screen in zip(rows, ds.pair_screen[test]):
      r['screen'] = ds.screen_ids[screen]
  write_csv(workdir / PREDICTIONS_FILE, rows)


def write_lodo(workdir: pathlib.Path, ds: Dataset, rows: list[dict], summary: dict) -> None:
  """A sweep's lodo_per_drug.csv, lodo_curves.csv, lodo_predictions.csv and lodo_summary.json from
  its per-fold rows (each with its `curve` and test `predictions`)."""
  table = [{k: v for k, v in r.items() if k not in ('curve', 'predictions')} for r in rows]
  write_csv(workdir / LODO_TABLE_FILE, table)
  curves = [{'drug_id': r['drug_id'], **c} for r in rows for c in r['curve']]
  write_csv(workdir / 'lodo_curves.csv', curves, LODO_CURVE_FIELDS)
  preds = []
  for r in rows:
    test = np.flatnonzero(ds.pair_drug == ds.drug_ids.index(r['drug_id']))
    preds += [{'drug_id': r['drug_id'], 'cell_id': ds.cell_ids[ds.pair_cell[i]],
               'observed': float(ds.pair_y[i]), 'predicted': p}
              for i, p in zip(test, r['predictions'])]
  write_csv(workdir / 'lodo_predictions.csv', preds)
  io.atomic_write_json(workdir / LODO_SUMMARY_FILE, summary)


def json_dumps(obj) -> str:
  return json.dumps(obj, default=io._json_default)  # pylint: disable=protected-access


# ---------------------------------------------------------------------------------------------
# Reading run directories (the report, the audit and predictions read runs only through these).

# What a run's label and the report's per-run table are made of.
REQUIRED_CONFIG = ('data.cell_repr', 'data.shuffle_cells', 'split.name', 'split.seed', 'split.fold',
                   'model.name', 'model.task', 'train.seed')
REQUIRED_METRICS = ('task', 'test')  # metrics.json: the task and the test metrics of each predictor
PREDICTION_COLUMNS = ('cell_id', 'drug_id', 'cancer_type', 'observed', 'predicted')
LODO_COLUMNS = ('drug_id', 'drug_name', 'pcc', 'naive_pcc', 'gain')  # what the report reads


@dataclasses.dataclass
class Run:
  """One run directory: a training run (metrics.json) or a LODO sweep (lodo_per_drug.csv)."""
  path: pathlib.Path
  config: dict                  # config.json flattened to 'section.key' -> value
  metrics: dict | None          # metrics.json; None for a LODO sweep
  lodo: list[dict] | None       # lodo_per_drug.csv rows; None for a training run
  label: str = ''
  group: int = 0


def flatten(tree: dict, prefix: str = '') -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def read_json(path: pathlib.Path, what: str) -> dict:
  """Reads a JSON object, naming the file on failure."""
  try:
    return json.loads(io.require_file(path, what).read_text(encoding='utf-8'))
  except json.JSONDecodeError as e:
    raise DataError(f'{path}: not valid JSON ({e}); expected {what}') from None


def to_float(text: str) -> float:
  """CSV cell -> float ('' and 'nan' -> nan)."""
  try:
    return float(text) if text.strip() else float('nan')
  except ValueError:
    return float('nan')


def read_rows(path: pathlib.Path, what: str, required: tuple[str, ...] = ()) -> list[dict]:
  """CSV rows as dicts of strings; raises naming the file when a `required` column is absent."""
  head, body = io.read_table(path, what)
  missing = [c for c in required if c not in head]
  if missing:
    raise DataError(f'{path}: no column {", ".join(missing)}; expected {what} with columns '
                    f'{", ".join(required)} (in any order)')
  return [dict(zip(head, row)) for row in body]


def read_lodo(path: pathlib.Path) -> list[dict]:
  """lodo_per_drug.csv rows (cdr_jax.lodo's columns, in any order; regression sweeps only)."""
  return read_rows(path, 'the per-drug results of a regression LODO sweep', LODO_COLUMNS)


def load_run(path: io.PathLike) -> Run:
  """Reads a run directory; raises naming the file when metrics.json (or a LODO table) is absent."""
  path = pathlib.Path(path)
  if not path.is_dir():
    raise DataError(f'run directory {path} does not exist')
  lodo_file = path / LODO_TABLE_FILE
  lodo = None
  if lodo_file.is_file():
    lodo = read_lodo(lodo_file)
  elif not (path / METRICS_FILE).is_file():
    raise DataError(f'missing file {path / "metrics.json"}: expected a finished training run '
                    '(launch/train.py writes it at the end) or a LODO sweep (lodo_per_drug.csv)')
  metrics = read_json(path / METRICS_FILE, 'test metrics') if lodo is None else None
  missing = [k for k in REQUIRED_METRICS if metrics is not None and k not in metrics]
  if missing:
    raise DataError(f'{path / METRICS_FILE}: no {", ".join(missing)}; expected the metrics.json '
                    'of cdr_jax.runs.write_results')
  has_config = (path / CONFIG_FILE).is_file() or lodo is None
  config = flatten(read_json(path / CONFIG_FILE, 'the run config')) if has_config else {}
  missing = [k for k in REQUIRED_CONFIG if config and k not in config]
  if missing:
    raise DataError(f'{path / "config.json"}: no {", ".join(missing)}; expected a cdr-jax config')
  return Run(path, config, metrics, lodo)


def group_rows(run: Run, key: str, file: str) -> list[dict]:
  """per_cell / per_type / per_drug rows of a training run (per_drug.csv also names the drug)."""
  required = (key, 'n', 'model_pcc') + (('drug_name',) if key == 'drug' else ())
  return read_rows(run.path / file, f'per-{key} PCC of the model and baselines', required)


def predictions(run: Run) -> dict[str, np.ndarray]:
  """predictions.csv as columns (ids as str arrays, values as floats)."""
  rows = read_rows(run.path / PREDICTIONS_FILE, 'test predictions', PREDICTION_COLUMNS)
  cols = {k: np.array([r[k] for r in rows]) for k in ('cell_id', 'drug_id', 'cancer_type')}
  cols.update({k: np.array([to_float(r[k]) for r in rows]) for k in ('observed', 'predicted')})
  return cols


def history(run: Run) -> dict[str, np.ndarray] | None:
  """history.csv columns as float arrays, or None when the run has no history."""
  path = run.path / HISTORY_FILE
  if not path.is_file():
    return None
  rows = read_rows(path, 'per-epoch training history', ('epoch', 'val_pcc'))
  return {k: np.array([to_float(r[k]) for r in rows]) for k in ('epoch', 'val_pcc')}
