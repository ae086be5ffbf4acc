"""Does a cell embedding carry biology beyond cell identity? Controls that can say no.

Four checks, each against a null built from the same data:
  - leave-one-out kNN cancer-type accuracy vs the majority-class rate and a label-permutation null;
  - rank correlation of the embedding's and expression's cell-cell distances (a Mantel test);
  - a cross-validated ridge probe from the embedding to every expression gene, vs row shuffles;
  - optionally, a model trained on the embedding vs the same model on the shuffled-row control.
A pairing error between rows and cell ids (or an embedding without biology) fails all of them.
"""

import dataclasses
import pathlib

import numpy as np

from cdr_jax import runs
from cdr_jax.data import cells
from cdr_jax.data import deepcdr
from cdr_jax.data import io
from cdr_jax.data import layout
from cdr_jax.errors import DataError
from cdr_jax.eval import metrics

EXPRESSION_FILE, ANNOTATION_FILE = layout.EXPRESSION_FILE, layout.ANNOTATION_FILE


@dataclasses.dataclass(frozen=True)
class Settings:
  """Every knob of the audit; the defaults are the documented protocol."""
  k: int = 5
  metric: str = 'cosine'       # 'cosine' or 'euclidean', on column-standardised matrices
  permutations: int = 200      # label permutations (kNN) and row permutations (distances)
  folds: int = 5
  ridge_lambdas: tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4)
  probe_shuffles: int = 5      # row-shuffled embeddings the probe is compared with
  alpha: float = 0.05
  seed: int = 0
  # Not cancer types: left out of the kNN check.
  exclude_labels: tuple[str, ...] = ('NA', 'UNABLE TO CLASSIFY', '')
  min_shared_cells: int = 20


def standardize(x: np.ndarray) -> np.ndarray:
  """Z-scores columns; constant columns become 0."""
  x = np.asarray(x, np.float64)
  sd = x.std(axis=0)
  return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def distances(x: np.ndarray, metric: str) -> np.ndarray:
  """Pairwise cosine or euclidean distances between rows."""
  if metric == 'cosine':
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norm > 0, norm, 1.0)
    return np.clip(1.0 - u @ u.T, 0.0, 2.0)
  if metric == 'euclidean':
    sq = (x * x).sum(axis=1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
  raise ValueError(f'unknown metric {metric!r}; choose cosine or euclidean')


def _p_value(observed: float, null: np.ndarray) -> float:
  """One-sided permutation p-value, counting the observed statistic as one draw of the null."""
  return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def _knn_votes(neighbours: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Majority class among the neighbours; ties go to the class of the nearer neighbour."""
  k = neighbours.shape[1]
  votes = np.zeros((len(neighbours), num_classes))
  weight = 1.0 + 1e-3 * np.arange(k, 0, -1)  # Breaks ties only, never outvotes a majority.
  np.add.at(votes, (np.arange(len(neighbours))[:, None], labels[neighbours]), weight[None, :])
  return votes.argmax(axis=1)


def knn_check(x: np.ndarray, labels: list[str], s: Settings, rng: np.random.Generator) -> dict:
  """Leave-one-out kNN accuracy vs the majority rate and a label-permutation null."""
  names, y = np.unique(labels, return_inverse=True)
  d = distances(standardize(x), s.metric)
  np.fill_diagonal(d, np.inf)  # Leave-one-out: a cell is never its own neighbour.
  neighbours = np.argsort(d, axis=1, kind='stable')[:, :s.k]
  acc = float(np.mean(_knn_votes(neighbours, y, len(names)) == y))
  null = np.array([np.mean(_knn_votes(neighbours, p, len(names)) == p)
                   for p in (rng.permutation(y) for _ in range(s.permutations))])
  return {'accuracy': acc, 'majority_rate': float(np.bincount(y).max() / len(y)),
          'null_mean': float(null.mean()), 'p': _p_value(acc, null), 'cells': len(y),
          'classes': len(names), 'k': s.k}


def distance_check(x: np.ndarray, expr: np.ndarray, s: Settings,
                   rng: np.random.Generator) -> dict:
  """Spearman correlation of the two distance matrices, with a row-permutation (Mantel) null."""
  n = len(x)
  iu = np.triu_indices(n, 1)
  ranked = []
  for m in (x, expr):
    r = np.zeros((n, n))
    r[iu] = metrics.rank(distances(standardize(m), s.metric)[iu])
    ranked.append(r + r.T)
  a = ranked[0][iu] - ranked[0][iu].mean()
  # Permuting cells only reorders the entries, so the rank vector's mean and norm are unchanged.
  b_full = ranked[1] - ranked[1][iu].mean()
  scale = np.linalg.norm(a) * np.linalg.norm(b_full[iu])
  rho = float(a @ b_full[iu] / scale)
  null = np.empty(s.permutations)
  for i in range(s.permutations):
    p = rng.permutation(n)
    null[i] = a @ b_full[p[iu[0]], p[iu[1]]] / scale
  return {'spearman': rho, 'null_mean': float(null.mean()), 'null_sd': float(null.std()),
          'p': _p_value(rho, null), 'cells': n, 'permutations': s.permutations}


def _ridge_factors(xtr: np.ndarray, xte: np.ndarray, ytr: np.ndarray):
  """(A, e, B) with ridge predictions A diag(1 / (e + lambda)) B, from the smaller Gram matrix."""
  if len(xtr) <= xtr.shape[1]:  # Dual form: an n x n eigenproblem when cells < features.
    e, q = np.linalg.eigh(xtr @ xtr.T)
    return xte @ xtr.T @ q, e, q.T @ ytr
  e, v = np.linalg.eigh(xtr.T @ xtr)
  return xte @ v, e, v.T @ (xtr.T @ ytr)


def ridge_cv_r2(x: np.ndarray, y: np.ndarray, folds: int, lambdas: tuple[float, ...],
                seed: int) -> dict[float, np.ndarray]:
  """Out-of-fold R² of every column of `y` per ridge lambda (features standardised per fold)."""
  fold = np.random.default_rng(seed).permutation(len(x)) % folds
  pred = {lam: np.zeros_like(y) for lam in lambdas}
  for f in range(folds):
    tr, te = fold != f, fold == f
    mu, sd = x[tr].mean(0), x[tr].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    ymu = y[tr].mean(0)
    a, e, b = _ridge_factors((x[tr] - mu) / sd, (x[te] - mu) / sd, y[tr] - ymu)
    e = np.maximum(e, 0.0)  # Round-off can make a zero eigenvalue slightly negative.
    for lam in lambdas:
      pred[lam][te] = (a / (e + lam)) @ b + ymu
  total = ((y - y.mean(0)) ** 2).sum(0)
  total = np.where(total > 0, total, np.nan)  # A constant gene has no R².
  return {lam: 1 - ((y - p) ** 2).sum(0) / total for lam, p in pred.items()}


def probe_check(x: np.ndarray, expr: np.ndarray, s: Settings, rng: np.random.Generator) -> dict:
  """Ridge probe embedding -> expression genes vs the same probe on row-shuffled pairings.

  Shuffling which embedding row goes with which expression row is done on the expression side, so
  every shuffle shares the folds' factorisations (one solve for all). Each probe reports its best
  lambda, so the real and shuffled probes get the same selection bonus.
  """
  blocks = [expr] + [expr[rng.permutation(len(expr))] for _ in range(s.probe_shuffles)]
  r2 = ridge_cv_r2(x, np.concatenate(blocks, axis=1), s.folds, s.ridge_lambdas, s.seed)
  g = expr.shape[1]
  mean = {lam: [float(np.nanmean(v[i * g:(i + 1) * g])) for i in range(len(blocks))]
          for lam, v in r2.items()}
  best = max(mean, key=lambda lam: mean[lam][0])
  shuffled = [max(mean[lam][i] for lam in mean) for i in range(1, len(blocks))]
  return {'r2': mean[best][0], 'lambda': best,
          'r2_by_lambda': {f'{lam:g}': m[0] for lam, m in mean.items()},
          'shuffled_r2': shuffled, 'shuffled_r2_max': float(max(shuffled)),
          'genes': g, 'cells': len(x), 'folds': s.folds}


def runs_check(real_dir: io.PathLike, shuffled_dir: io.PathLike) -> dict:
  """The test result of a model on the embedding vs the same model on its shuffled-row control."""
  real, shuffled = runs.load_run(real_dir), runs.load_run(shuffled_dir)
  out = {}
  for name, run in (('real', real), ('shuffled', shuffled)):
    if run.metrics is None or 'pcc' not in run.metrics['test'].get('model', {}):
      raise DataError(f'{run.path / "metrics.json"}: no test.model.pcc; expected a finished '
                      'regression training run')
    m = run.metrics['test']['model']
    out[name] = {'run': str(run.path), 'pcc': m.get('pcc'), 'spearman': m.get('spearman'),
                 'rmse': m.get('rmse'), 'per_drug_pcc_mean': m.get('per_drug_pcc', {}).get('mean'),
                 'shuffle_cells': run.config.get('data.shuffle_cells')}
  out['pcc_gain'] = out['real']['pcc'] - out['shuffled']['pcc']
  out['warnings'] = []
  if out['shuffled']['shuffle_cells'] is not True:
    out['warnings'].append(f'{shuffled.path / "config.json"} does not set data.shuffle_cells: '
                           'is it really the shuffled-row control?')
  if out['real']['shuffle_cells'] is True:
    out['warnings'].append(f'{real.path / "config.json"} sets data.shuffle_cells: the "real" run '
                           'is itself shuffled')
  return out


def passes(result: dict, s: Settings) -> dict[str, bool]:
  """Which checks found signal beyond identity (each against its own null)."""
  knn, dist, probe = result['knn'], result['distance'], result['probe']
  return {'knn': knn['p'] < s.alpha and knn['accuracy'] > knn['majority_rate'],
          'distance': dist['p'] < s.alpha and dist['spearman'] > 0,
          'probe': probe['r2'] > 0 and probe['r2'] > probe['shuffled_r2_max']}


def verdict(result: dict, s: Settings) -> str:
  """One line: the conclusion and the numbers behind it."""
  ok = passes(result, s)
  knn, dist, probe = result['knn'], result['distance'], result['probe']
  numbers = (f"kNN acc {knn['accuracy']:.3f} vs chance {knn['majority_rate']:.3f} "
             f"(perm p={knn['p']:.3g}); distance rank corr {dist['spearman']:.3f}, "
             f"p={dist['p']:.3g}; probe R² {probe['r2']:.3f} vs shuffled "
             f"{probe['shuffled_r2_max']:.3f}")
  if 'runs' in result:
    r = result['runs']
    numbers += (f"; model test PCC {r['real']['pcc']:.4f} vs shuffled-row control "
                f"{r['shuffled']['pcc']:.4f}")
  passed = [k for k, v in ok.items() if v]
  if len(passed) >= 2:
    head = 'the embedding carries expression biology beyond identity'
  elif passed:
    head = f'weak evidence of biology beyond identity (only the {passed[0]} check passes)'
  else:
    head = 'no evidence the embedding carries expression biology beyond identity'
  return f'VERDICT: {head} ({numbers})'


def align(emb_ids: list[str], other_ids: list[str], emb_path: io.PathLike, other_path: io.PathLike,
          minimum: int) -> tuple[np.ndarray, np.ndarray]:
  """Row indices into the embedding and into the other matrix of the cells both hold."""
  where = {c: i for i, c in enumerate(other_ids)}
  shared = [(i, where[c]) for i, c in enumerate(emb_ids) if c in where]
  if len(shared) < minimum:
    raise DataError(f'{emb_path} and {other_path} share {len(shared)} cell ids, expected at '
                    f'least {minimum} (first embedding ids: {emb_ids[:3]}, first other ids: '
                    f'{other_ids[:3]})')
  return np.array([a for a, _ in shared]), np.array([b for _, b in shared])


def labelled(ids: list[str], labels: dict[str, str], s: Settings) -> tuple[np.ndarray, list[str]]:
  """Rows whose cell has a cancer-type label (not an excluded one), and those labels."""
  rows = [i for i, c in enumerate(ids) if labels.get(c, '') not in s.exclude_labels]
  return np.array(rows, int), [labels[ids[i]] for i in rows]


def run_audit(embedding: io.PathLike, expression: io.PathLike, annotations: io.PathLike,
              runs: tuple = (), out: io.PathLike | None = None,
              settings: Settings = Settings()) -> dict:
  """Runs every check on one embedding; writes audit.json and audit.md to `out` if given.

  Args:
    embedding: `<name>.npy` with its row ids in `<name>.cells.txt`.
    expression: cells x genes csv (first column = cell id); annotations: CCLE annotation file.
    runs: () or (run on the embedding, run on its shuffled-row control).
  Returns:
    Every statistic, which checks passed, and the verdict line.
  """
  if len(runs) not in (0, 2):
    raise ValueError(f'runs: give two run dirs (real, shuffled-row control), got {len(runs)}')
  s, rng = settings, np.random.default_rng(settings.seed)
  emb_ids, emb = io.read_embedding(embedding)
  emb = emb.astype(np.float64)
  expr_ids, expr, _ = cells.read_expression(expression)
  expr = expr.astype(np.float64)
  labels = deepcdr.read_annotation_file(annotations)
  rows, names = labelled(emb_ids, labels, s)
  if len(rows) < s.min_shared_cells:
    raise DataError(f'{embedding}: only {len(rows)} of its cell ids have a cancer type in '
                    f'{annotations}, expected at least {s.min_shared_cells}')
  e_rows, x_rows = align(emb_ids, expr_ids, embedding, expression, s.min_shared_cells)
  ref_rows, ref_names = labelled(expr_ids, labels, s)
  result = {'embedding': str(embedding), 'shape': list(emb.shape), 'expression': str(expression),
            'annotations': str(annotations), 'settings': dataclasses.asdict(s),
            'knn': knn_check(emb[rows], names, s, rng),
            'distance': distance_check(emb[e_rows], expr[x_rows], s, rng),
            'probe': probe_check(emb[e_rows], expr[x_rows], s, rng),
            'reference_expression_knn': knn_check(expr[ref_rows], ref_names, s, rng)}
  if runs:
    result['runs'] = runs_check(*runs)
  result['passes'] = passes(result, s)
  result['verdict'] = verdict(result, s)
  if out is not None:
    out = pathlib.Path(out)
    io.atomic_write_json(out / 'audit.json', result)
    io.atomic_write_text(out / 'audit.md', markdown(result))
  return result


def _num(x, digits: int) -> str:
  """A number for a table; n/a when the run did not record it."""
  return 'n/a' if x is None else f'{x:.{digits}f}'


def markdown(result: dict) -> str:
  """The audit as a short Markdown page."""
  knn, dist, probe, ok = result['knn'], result['distance'], result['probe'], result['passes']
  ref, yes = result['reference_expression_knn'], {True: 'yes', False: 'no'}
  lines = [
      f"# Embedding audit: {pathlib.Path(result['embedding']).name}", '',
      f"Embedding `{result['embedding']}` ({result['shape'][0]} cells x {result['shape'][1]} d); "
      f"expression `{result['expression']}`; annotations `{result['annotations']}`.", '',
      '| check | observed | chance / null | p | signal? |', '|---|---|---|---|---|',
      f"| kNN cancer type (k={knn['k']}, leave-one-out, {knn['cells']} cells, {knn['classes']} "
      f"types) | acc {knn['accuracy']:.3f} | majority {knn['majority_rate']:.3f}; permuted labels "
      f"{knn['null_mean']:.3f} | {knn['p']:.3g} | {yes[ok['knn']]} |",
      f"| distance rank corr. vs expression ({dist['cells']} cells) | Spearman "
      f"{dist['spearman']:.3f} | permuted rows {dist['null_mean']:.3f} ± {dist['null_sd']:.3f} | "
      f"{dist['p']:.3g} | {yes[ok['distance']]} |",
      f"| ridge probe -> {probe['genes']} genes ({probe['folds']}-fold CV, lambda "
      f"{probe['lambda']:g}) | mean R² {probe['r2']:.3f} | row-shuffled embedding max "
      f"{probe['shuffled_r2_max']:.3f} | | {yes[ok['probe']]} |", '',
      f"Positive control: expression itself reaches kNN cancer-type accuracy {ref['accuracy']:.3f} "
      f"(majority {ref['majority_rate']:.3f}, {ref['cells']} cells).", '']
  if 'runs' in result:
    r = result['runs']
    lines += ['| run | test PCC | Spearman | RMSE | per-drug PCC mean |', '|---|---|---|---|---|']
    for name in ('real', 'shuffled'):
      m = r[name]
      lines.append(f"| {name}: `{m['run']}` | {_num(m['pcc'], 4)} | {_num(m['spearman'], 4)} | "
                   f"{_num(m['rmse'], 3)} | {_num(m['per_drug_pcc_mean'], 3)} |")
    lines += ['', f"Test PCC gained from the real row pairing: {r['pcc_gain']:+.4f}.", '']
    lines += [f'Warning: {w}' for w in r['warnings']] + ['']
  return '\n'.join(lines + [f"**{result['verdict']}**", ''])
