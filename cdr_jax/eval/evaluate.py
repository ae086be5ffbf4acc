"""Scoring predictions: overall and per-group metrics of every predictor, and model selection."""

import numpy as np

from cdr_jax.data.dataset import Dataset
from cdr_jax.eval import metrics


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


def selection_metrics(pred: np.ndarray, pairs: np.ndarray, ds: Dataset, task: str) -> dict:
  """PCC / Spearman / RMSE / mean per-drug PCC (regression) or AUROC (classification) of `pred`
  (natural scale) on `pairs`: what `train.select_metric` chooses from."""
  if task == 'regression':
    m = metrics.regression(pred, ds.pair_y[pairs])
    return {'pcc': m['pcc'], 'spearman': m['spearman'], 'rmse': m['rmse'],
            'per_drug_pcc': metrics.mean_group_pcc(pred, ds.pair_y[pairs], ds.pair_drug[pairs])}
  return {'auroc': metrics.classification(pred, ds.pair_label[pairs])['auroc']}


def selection_score(m: dict, metric: str) -> float:
  """Selection score, higher is better (RMSE is negated); nan scores never win."""
  if metric not in m:
    raise ValueError(f'unknown train.select_metric {metric!r}; for this task choose one of '
                     f'{", ".join(m)}')
  value = -m['rmse'] if metric == 'rmse' else m[metric]
  return value if np.isfinite(value) else -np.inf
