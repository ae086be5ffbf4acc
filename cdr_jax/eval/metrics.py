"""Regression and classification metrics, overall and per group (drug, cell line, cancer type)."""

from collections.abc import Sequence

import numpy as np


def pcc(pred: np.ndarray, obs: np.ndarray) -> float:
  """Pearson correlation; nan when either side is constant or there are fewer than 2 pairs."""
  pred, obs = np.asarray(pred, np.float64), np.asarray(obs, np.float64)
  if len(pred) < 2 or pred.std() == 0 or obs.std() == 0:
    return float('nan')
  return float(np.corrcoef(pred, obs)[0, 1])


def rank(x: np.ndarray) -> np.ndarray:
  """Ranks with ties averaged (as Spearman needs)."""
  x = np.asarray(x)
  order = np.argsort(x, kind='mergesort')
  sorted_x = x[order]
  ranks = np.empty(len(x), np.float64)
  ranks[order] = np.arange(len(x), dtype=np.float64)
  _, start, counts = np.unique(sorted_x, return_index=True, return_counts=True)
  mean_rank = start + (counts - 1) / 2.0
  ranks[order] = np.repeat(mean_rank, counts)
  return ranks


def spearman(pred: np.ndarray, obs: np.ndarray) -> float:
  return pcc(rank(pred), rank(obs))


def rmse(pred: np.ndarray, obs: np.ndarray) -> float:
  return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - obs) ** 2)))


def r2(pred: np.ndarray, obs: np.ndarray) -> float:
  obs = np.asarray(obs, np.float64)
  return float(1 - np.sum((pred - obs) ** 2) / np.sum((obs - obs.mean()) ** 2))


def regression(pred: np.ndarray, obs: np.ndarray) -> dict[str, float]:
  """PCC, Spearman, RMSE and R² of one set of predictions."""
  return {'pcc': pcc(pred, obs), 'spearman': spearman(pred, obs), 'rmse': rmse(pred, obs),
          'r2': r2(pred, obs), 'n': int(len(obs))}


def auroc(score: np.ndarray, label: np.ndarray) -> float:
  """Area under the ROC curve (Mann-Whitney form, ties averaged); nan with one class."""
  label = np.asarray(label).astype(bool)
  n_pos, n_neg = int(label.sum()), int((~label).sum())
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  r = rank(score)
  return float((r[label].sum() + n_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(score: np.ndarray, label: np.ndarray) -> float:
  """Average precision (area under the precision-recall curve, step-wise)."""
  label = np.asarray(label).astype(bool)
  if not label.any():
    return float('nan')
  order = np.argsort(-np.asarray(score), kind='mergesort')
  hits = label[order]
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision[hits].sum() / hits.sum())


def classification(score: np.ndarray, label: np.ndarray) -> dict[str, float]:
  """AUROC, AUPRC and accuracy at 0.5 of sigmoid scores against 0/1 labels (-1 = unlabelled)."""
  label = np.asarray(label)
  keep = label >= 0
  score, label = np.asarray(score)[keep], label[keep]
  return {'auroc': auroc(score, label), 'auprc': auprc(score, label),
          'accuracy': float(np.mean((score > 0.5) == label.astype(bool))), 'n': int(keep.sum())}


MIN_GROUP_PAIRS = 3  # a group's PCC / Spearman need at least this many pairs (else nan)


def per_group(pred: np.ndarray, obs: np.ndarray, group: np.ndarray,
              names: Sequence[str]) -> list[dict]:
  """PCC, Spearman, RMSE and n for each group present (groups with < 3 pairs get nan PCC)."""
  rows = []
  for g in np.unique(group):
    m = group == g
    enough = m.sum() >= MIN_GROUP_PAIRS
    rows.append({'group': names[g], 'n': int(m.sum()),
                 'pcc': pcc(pred[m], obs[m]) if enough else float('nan'),
                 'spearman': spearman(pred[m], obs[m]) if enough else float('nan'),
                 'rmse': rmse(pred[m], obs[m])})
  return rows


def summarize_groups(rows: list[dict]) -> dict[str, float]:
  """Mean and median PCC over groups with a defined PCC, and how many there were."""
  return _summarize_pccs([r['pcc'] for r in rows])


def _summarize_pccs(pccs) -> dict[str, float]:
  values = np.array(pccs, np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return {'mean': float('nan'), 'median': float('nan'), 'groups': 0}
  return {'mean': float(values.mean()), 'median': float(np.median(values)), 'groups': int(len(values))}


def group_pccs(pred: np.ndarray, obs: np.ndarray, group: np.ndarray) -> np.ndarray:
  """[G] the within-group PCC of each group present, in `np.unique(group)` order (nan for a group
  with fewer than 3 pairs or no spread)."""
  return np.array([pcc(pred[m], obs[m]) if m.sum() >= MIN_GROUP_PAIRS else np.nan
                   for m in (group == g for g in np.unique(group))], np.float64)


def gain_lower_bound(pccs: np.ndarray, reference: np.ndarray) -> float:
  """Mean per-group gain of `pccs` over `reference` minus its standard error (the groups where both
  are defined): a gain that survives one standard error. 0 where they are equal; -inf where no
  group is defined in both. With one group the standard error is taken as 0."""
  diff = np.asarray(pccs, np.float64) - np.asarray(reference, np.float64)
  diff = diff[np.isfinite(diff)]
  if not len(diff):
    return -np.inf
  se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
  return float(diff.mean() - se)


def mean_group_pcc(pred: np.ndarray, obs: np.ndarray, group: np.ndarray) -> float:
  """Mean over groups (e.g. drugs) with at least 3 pairs of the within-group PCC; nan if none.

  The `mean` of `summarize_groups(per_group(...))`, without the per-group Spearman and RMSE (it
  runs every epoch, for every LODO fold)."""
  return _summarize_pccs(group_pccs(pred, obs, group))['mean']
