"""A cross-run report: one Markdown page with figures and tables from finished run directories.

Figure 2: per-cell-line, per-cancer-type and per-drug PCC of run A against run B (y = x line).
Figure 3: predicted vs observed ln IC50 for run A's best cancer type and best drug.
Figure 4: leave-one-drug-out PCC gain over the naive baseline, drugs ranked by gain.
Figure 5: validation PCC per epoch of every run (training stability).
Tables: every run grouped over seeds (mean ± sd) beside the naive baselines on the same test sets.
"""

import io as std_io
import json
import logging
import math
import pathlib
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np

from cdr_jax import runs as run_io
from cdr_jax.data import io
from cdr_jax.eval import metrics

# Fields that change between repeats of one experiment without changing the experiment: seeds, and
# the cross-validation fold (the 5 folds of leave_cell_out are one experiment, reported over folds).
SEED_KEYS = ('train.seed', 'split.seed', 'split.fold', 'train.progress',
             'train.max_epochs_this_run')
GROUPS = (('cell', 'per_cell.csv', 'cell line'), ('type', 'per_type.csv', 'cancer type'),
          ('drug', 'per_drug.csv', 'drug'))
MIN_GROUP_PAIRS = 10  # Figure 3 prefers groups with at least this many test pairs.


def describe(config: dict, path: pathlib.Path) -> str:
  """cell_repr [shuffled] [· drugs: drug_repr [shuffled]] [· screening batch] [· batch-mates
  apart] · split · model [· task], or the directory name without a config (the drug part only
  when it is not the graph alone; the unseen-drug settings `data.screening_batch` and
  `lodo.apart` only when set)."""
  if not config:
    return path.name
  cell = config['data.cell_repr'] + (' shuffled' if config['data.shuffle_cells'] else '')
  parts = [cell]
  if 'data.drug_repr' in config:   # runs made before drug representations had the graph only
    drugs, shuffled = config['data.drug_repr'], config['data.shuffle_drugs']
    if drugs != 'graph' or shuffled:
      parts.append(f'drugs: {drugs}' + (' shuffled' if shuffled else ''))
  if config.get('data.screening_batch'):
    parts.append('screening batch')
  if config.get('lodo.apart', 0) > 0:
    parts.append(f"batch-mates within {config['lodo.apart']:g} ids dropped")
  parts += [config['split.name'], config['model.name']]
  if config['model.task'] != 'regression':
    parts.append(config['model.task'])
  return ' · '.join(parts)


def experiment_key(run: run_io.Run) -> str:
  """The config without seeds and without the settings the run chose on its own training and
  validation pairs (metrics.json `chosen`): runs with equal keys are repeats of one experiment."""
  chosen = (run.metrics or {}).get('chosen', {})
  cfg = {k: v for k, v in run.config.items() if k not in SEED_KEYS and k not in chosen}
  return json.dumps([run.lodo is not None, cfg or str(run.path)], sort_keys=True, default=str)


def group_runs(runs: list[run_io.Run]) -> list[list[run_io.Run]]:
  """Groups repeats (configs equal but for seeds), in first-seen order; sets labels and ids."""
  groups: dict[str, list[run_io.Run]] = {}
  for run in runs:
    groups.setdefault(experiment_key(run), []).append(run)
  out = list(groups.values())
  seen: dict[str, list[run_io.Run]] = {}
  for i, members in enumerate(out, start=1):
    label = describe(members[0].config, members[0].path)
    if label in seen:  # Same headline settings: name what else differs.
      other = seen[label][0].config
      diff = [k for k, v in members[0].config.items() if k not in SEED_KEYS and other.get(k) != v]
      label += ' (' + ', '.join(f'{k}={members[0].config[k]}' for k in diff[:3]) + ')'
    seen.setdefault(label, members)
    for run in members:
      run.label, run.group = label, i
  return out


def pick_pair(runs: list[run_io.Run], pair: str | None) -> tuple[run_io.Run, run_io.Run] | None:
  """Runs A and B for Figure 2: `pair` = 'A,B' (paths or directory names), else the first two."""
  trained = [r for r in runs if r.metrics is not None]
  if pair:
    names = pair.split(',')
    if len(names) != 2:
      raise ValueError(f'--pair wants two runs separated by a comma, got {pair!r}')
    return find_run(trained, names[0]), find_run(trained, names[1])
  return (trained[0], trained[1]) if len(trained) >= 2 else None


def find_run(runs: list[run_io.Run], name: str) -> run_io.Run:
  """The run whose path or directory name is `name`."""
  hits = [r for r in runs if r.path.resolve() == pathlib.Path(name).resolve()]
  hits = hits or [r for r in runs if r.path.name == name]
  if len(hits) != 1:
    raise ValueError(f'--pair: {name!r} matches {len(hits)} training runs; choose from '
                     f'{[str(r.path) for r in runs]}')
  return hits[0]


# ---------------------------------------------------------------------------------------------
# Reading per-group tables, predictions and histories.


def is_regression(run: run_io.Run) -> bool:
  """A finished training run of the regression task (the only kind with per-group tables)."""
  return run.metrics is not None and run.metrics['task'] == 'regression'


def group_pcc(run: run_io.Run, key: str, file: str) -> dict[str, float]:
  """Group name -> the model's test PCC in that group."""
  return {r[key]: run_io.to_float(r['model_pcc']) for r in run_io.group_rows(run, key, file)}


def best_group(run: run_io.Run, key: str, file: str) -> dict | None:
  """The group with the highest model PCC, preferring groups with enough test pairs to trust it."""
  rows = [r for r in run_io.group_rows(run, key, file) if math.isfinite(run_io.to_float(r['model_pcc']))]
  big = [r for r in rows if int(r['n']) >= MIN_GROUP_PAIRS] or rows
  return max(big, key=lambda r: run_io.to_float(r['model_pcc'])) if big else None


# ---------------------------------------------------------------------------------------------
# Figures.


def new_figure(width: float, height: float) -> Figure:
  """A Figure on the Agg canvas (no display, no pyplot global state)."""
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  return fig


def save_png(fig: Figure, path: pathlib.Path) -> None:
  """Renders to memory, then writes atomically (a reader never sees half a PNG)."""
  buf = std_io.BytesIO()
  fig.savefig(buf, format='png', dpi=110, bbox_inches='tight')
  io.atomic_write_bytes(path, buf.getvalue())


def wrap(text: str, width: int = 45) -> str:
  """Breaks a long title into lines of at most `width` characters."""
  return '\n'.join(textwrap.wrap(text, width)) or text


def name_of(run: run_io.Run) -> str:
  """Label plus directory, so two seeds of one experiment stay distinguishable."""
  return f'{run.label} [{run.path.name}]'


def square_axes(ax, lo: float, hi: float) -> None:
  """Equal x and y ranges with few enough ticks that their labels never touch."""
  ax.set_xlim(lo, hi)
  ax.set_ylim(lo, hi)
  ax.set_aspect('equal')
  ax.xaxis.set_major_locator(MaxNLocator(5))
  ax.yaxis.set_major_locator(MaxNLocator(5))


def identity_limits(x: np.ndarray, y: np.ndarray, pad: float = 0.05) -> tuple[float, float]:
  """One range covering both axes, so the y = x line is the diagonal."""
  both = np.concatenate([x, y])
  return float(both.min()) - pad, float(both.max()) + pad


def pair_panel(ax, a: run_io.Run, b: run_io.Run, key: str, file: str, noun: str) -> None:
  """One scatter of per-group PCC, A on x and B on y, with the y = x line."""
  pa, pb = group_pcc(a, key, file), group_pcc(b, key, file)
  shared = [g for g in pa if g in pb and math.isfinite(pa[g]) and math.isfinite(pb[g])]
  x, y = np.array([pa[g] for g in shared]), np.array([pb[g] for g in shared])
  ax.set_xlabel(f'run A: per-{noun} test PCC')
  ax.set_ylabel(f'run B: per-{noun} test PCC')
  if not shared:
    ax.set_title(f'per {noun}')
    ax.text(0.5, 0.5, f'no {noun} with a PCC in both runs', ha='center', transform=ax.transAxes)
    return
  lo, hi = identity_limits(x, y)
  ax.plot([lo, hi], [lo, hi], 'k--', lw=1, label='y = x')
  ax.scatter(x, y, s=16, alpha=0.7, label=f'one dot per {noun}')
  square_axes(ax, lo, hi)
  ax.set_title(f'per {noun} (n={len(shared)}): B higher for {int((y > x).sum())}')
  ax.legend(loc='best', fontsize=8)


def figure_pair(a: run_io.Run, b: run_io.Run, out: pathlib.Path) -> list[str]:
  """Figure 2: per-cell, per-type and per-drug PCC of run A against run B."""
  fig = new_figure(16, 5.8)
  for ax, (key, file, noun) in zip(fig.subplots(1, 3, gridspec_kw={'wspace': 0.35}), GROUPS):
    pair_panel(ax, a, b, key, file, noun)
  fig.suptitle(f'Per-group test PCC (dots above the line: B better)\nA = {name_of(a)}\n'
               f'B = {name_of(b)}')
  save_png(fig, out / 'fig2_pair_pcc.png')
  return ['## Figure 2: per-group PCC, run A vs run B', '',
          '![Figure 2: per-group PCC of run A against run B](fig2_pair_pcc.png)', '',
          f'A = `{a.path}` ({a.label}); B = `{b.path}` ({b.label}). One dot per cell line, cancer '
          'type or drug with a defined PCC (at least 3 test pairs) in both runs; dashed: y = x.',
          '']


def scatter_panel(ax, obs: np.ndarray, pred: np.ndarray, title: str) -> None:
  """Predicted vs observed ln IC50 with the y = x line."""
  lo, hi = identity_limits(obs, pred, pad=0.3)
  ax.plot([lo, hi], [lo, hi], 'k--', lw=1, label='y = x')
  ax.scatter(obs, pred, s=14, alpha=0.6, label=f'test pairs (n={len(obs)})')
  square_axes(ax, lo, hi)
  ax.set_xlabel('observed ln(IC50 / µM)')
  ax.set_ylabel('predicted ln(IC50 / µM)')
  ax.set_title(wrap(title, 50))
  ax.legend(loc='upper left', fontsize=8)


def figure_best(a: run_io.Run, out: pathlib.Path) -> list[str]:
  """Figure 3: predicted vs observed for run A's best cancer type and best drug."""
  pred = run_io.predictions(a)
  best_type = best_group(a, 'type', 'per_type.csv')
  best_drug = best_group(a, 'drug', 'per_drug.csv')
  if best_type is None or best_drug is None:
    return ['## Figure 3: best cancer type and best drug', '',
            f'Not drawn: `{a.path}` has no cancer type or drug with a defined PCC.', '']
  fig = new_figure(11, 5.4)
  ax_type, ax_drug = fig.subplots(1, 2)
  m = pred['cancer_type'] == best_type['type']
  pcc = run_io.to_float(best_type['model_pcc'])
  scatter_panel(ax_type, pred['observed'][m], pred['predicted'][m],
                f"best cancer type: {best_type['type']} (PCC {pcc:.3f})")
  m = pred['drug_id'] == best_drug['drug']
  drug = best_drug['drug_name'] or best_drug['drug']
  scatter_panel(ax_drug, pred['observed'][m], pred['predicted'][m],
                f"best drug: {drug} (PCC {run_io.to_float(best_drug['model_pcc']):.3f})")
  fig.suptitle(wrap(f'Run A: {name_of(a)}', 90))
  save_png(fig, out / 'fig3_best_type_drug.png')
  return ['## Figure 3: best cancer type and best drug of run A', '',
          '![Figure 3: predicted vs observed ln IC50, best cancer type and best drug]'
          '(fig3_best_type_drug.png)', '',
          f'Run A = `{a.path}`. "Best" = highest test PCC among groups with at least '
          f'{MIN_GROUP_PAIRS} test pairs (all groups when none has). Selected on the test set, so '
          'this shows the best case, not a typical one.', '']


def drug_gains(run: run_io.Run) -> tuple[list[str], np.ndarray, str] | None:
  """(drug names, PCC gains, what the gain is) from a LODO sweep, else from per_drug.csv."""
  if run.lodo is not None:
    names = [r['drug_name'] or r['drug_id'] for r in run.lodo]
    gain = np.array([run_io.to_float(r['gain']) for r in run.lodo])
    source = (f'leave-one-drug-out sweep `{run.path}`: gain = LODO PCC of the model on the '
              'held-out drug minus the naive cell-line-mean PCC (lodo_per_drug.csv, columns '
              'gain = pcc − naive_pcc)')
  else:
    rows = run_io.group_rows(run, 'drug', 'per_drug.csv')
    if not rows or 'cell_mean_pcc' not in rows[0]:
      return None
    names = [r['drug_name'] or r['drug'] for r in rows]
    gain = np.array([run_io.to_float(r['model_pcc']) - run_io.to_float(r['cell_mean_pcc']) for r in rows])
    source = (f'no LODO sweep among the runs, so this is a stand-in from `{run.path}` '
              f'({run.label}): per-drug test PCC of the model minus that of the cell-line-mean '
              'baseline on the same split (NOT leave-one-drug-out)')
  keep = np.isfinite(gain)
  return [n for n, k in zip(names, keep) if k], gain[keep], source


def figure_gain(run: run_io.Run, out: pathlib.Path, index: int) -> list[str]:
  """Figure 4: PCC gain per drug over the baseline, drugs ranked by gain."""
  found = drug_gains(run)
  if found is None or not len(found[1]):
    return [f'Figure 4 not drawn for `{run.path}`: no drug with a defined gain.', '']
  names, gain, source = found
  order = np.argsort(-gain, kind='stable')
  names, gain = [names[i] for i in order], gain[order]
  fig = new_figure(max(8.0, min(16.0, 0.25 * len(gain))), 4.8)
  ax = fig.subplots()
  ax.bar(np.arange(len(gain)), gain, color=np.where(gain > 0, 'tab:green', 'tab:red'), width=0.85)
  ax.axhline(0, color='k', lw=0.8)
  ax.axhline(gain.mean(), color='tab:blue', ls='--', lw=1, label=f'mean gain {gain.mean():+.3f}')
  if len(gain) <= 40:  # Beyond this the names would overlap; the table below lists the extremes.
    ax.set_xticks(np.arange(len(gain)), [n[:20] for n in names], rotation=90, fontsize=7)
  else:
    ax.set_xticks([])
  ax.set_xlabel(f'drugs ranked by gain (n={len(gain)}; {int((gain > 0).sum())} above 0)')
  ax.set_ylabel('per-drug PCC gain over baseline')
  ax.set_title(wrap(('Leave-one-drug-out' if run.lodo is not None else 'Per-drug (stand-in)') +
                    f' PCC gain: {name_of(run)}', 90))
  ax.legend(loc='upper right', fontsize=8)
  name = f'fig4_drug_gain_{index}.png'
  save_png(fig, out / name)
  listed = [f'{n} ({g:+.3f})' for n, g in zip(names, gain)]
  extremes = (f'Largest gains: {", ".join(listed[:5])}. Smallest: {", ".join(listed[-5:])}.'
              if len(listed) > 10 else f'All drugs by gain: {", ".join(listed)}.')
  return [f'![Figure 4: per-drug PCC gain, drugs ranked]({name})', '', f'Source: {source}.', '',
          extremes, '']


def figure_history(runs: list[run_io.Run], out: pathlib.Path) -> list[str]:
  """Figure 5: validation PCC per epoch of every run with a history (colour = experiment)."""
  fig = new_figure(10, 5.2)
  ax = fig.subplots()
  styles, drawn, skipped = ('-', '--', ':', '-.'), 0, []
  seen_in_group: dict[int, int] = {}
  for run in runs:
    h = run_io.history(run)
    if h is None or not np.isfinite(h['val_pcc']).any():
      skipped.append(f'`{run.path}`')
      continue
    k = seen_in_group.setdefault(run.group, 0)
    seen_in_group[run.group] += 1
    ax.plot(h['epoch'], h['val_pcc'], marker='o', ms=3, ls=styles[k % len(styles)],
            color=f'C{(run.group - 1) % 10}', label=wrap(name_of(run), 60))
    drawn += 1
  ax.set_xlabel('epoch')
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_ylabel('validation PCC')
  ax.set_title('Training stability: validation PCC per epoch (colour = experiment, style = seed)')
  if drawn:
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)
  save_png(fig, out / 'fig5_val_pcc.png')
  note = f' No validation PCC in: {", ".join(skipped)}.' if skipped else ''
  return ['## Figure 5: training stability', '',
          '![Figure 5: validation PCC per epoch for every run](fig5_val_pcc.png)', '',
          f'{drawn} runs drawn from history.csv.{note}', '']


# ---------------------------------------------------------------------------------------------
# Tables.

REGRESSION_COLUMNS = (('PCC', ('pcc',), 4), ('Spearman', ('spearman',), 4), ('RMSE', ('rmse',), 3),
                      ('per-drug PCC mean', ('per_drug_pcc', 'mean'), 3),
                      ('per-drug PCC median', ('per_drug_pcc', 'median'), 3))
CLASSIFICATION_COLUMNS = (('AUROC', ('auroc',), 4), ('AUPRC', ('auprc',), 4),
                          ('accuracy', ('accuracy',), 4))


def lookup(m: dict, keys: tuple[str, ...]) -> float:
  """A nested metric, nan when absent."""
  for k in keys:
    if not isinstance(m, dict) or k not in m:
      return float('nan')
    m = m[k]
  return float(m) if m is not None else float('nan')


def finite_median(x: np.ndarray) -> float:
  """Median of the finite entries (nan when there are none)."""
  x = np.asarray(x, np.float64)
  x = x[np.isfinite(x)]
  return float(np.median(x)) if len(x) else float('nan')


def finite_mean(x: np.ndarray) -> float:
  """Mean of the finite entries (nan when there are none), without warnings."""
  x = np.asarray(x, np.float64)
  x = x[np.isfinite(x)]
  return float(x.mean()) if len(x) else float('nan')


def mean_sd(values: list[float], digits: int) -> str:
  """'x' for one value, 'mean ± sd' (sample sd) for several; nan values are left out."""
  v = np.array([x for x in values if math.isfinite(x)])
  if not len(v):
    return 'n/a'
  if len(v) == 1:  # One run, or only one with a defined value: no spread to show.
    return f'{v[0]:.{digits}f}' + (f' (1 of {len(values)})' if len(values) > 1 else '')
  return f'{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}'


def cells(members: list[run_io.Run], predictor: str, columns) -> list[str]:
  """Table cells of one predictor over a group of runs."""
  return [mean_sd([lookup(r.metrics['test'].get(predictor, {}), keys) for r in members], d)
          for _, keys, d in columns]


def ensemble_metrics(members: list[run_io.Run]) -> dict | None:
  """Test metrics of the mean prediction of repeats (a seed ensemble), or None when there are fewer
  than two or their test pairs differ (cross-validation folds)."""
  if len(members) < 2 or not all(is_regression(r) for r in members):
    return None
  cols = [run_io.predictions(r) for r in members]
  first = cols[0]
  if not all(np.array_equal(c['cell_id'], first['cell_id']) and
             np.array_equal(c['drug_id'], first['drug_id']) for c in cols[1:]):
    return None
  pred, obs = np.mean([c['predicted'] for c in cols], axis=0), first['observed']
  names, drug = np.unique(first['drug_id'], return_inverse=True)
  return {**metrics.regression(pred, obs), 'per_drug_pcc': metrics.summarize_groups(
      metrics.per_group(pred, obs, drug, names))}


def summary_table(groups: list[list[run_io.Run]], columns) -> list[str]:
  """Model rows (one per experiment, mean ± sd over seeds), then the naive baselines.

  An experiment whose repeats share their test pairs also gets an ensemble row: the mean of its
  runs' predictions, scored like one model. Baselines depend only on the data and split, so
  identical rows from several experiments are shown once, naming the experiments whose test set
  they come from.
  """
  lines = ['| id | predictor | runs | ' + ' | '.join(c[0] for c in columns) + ' |',
           '|---' * (3 + len(columns)) + '|']
  baselines: dict[tuple, list[int]] = {}
  for members in groups:
    g = members[0].group
    lines.append(f'| R{g} | {members[0].label} | {len(members)} | '
                 + ' | '.join(cells(members, 'model', columns)) + ' |')
    ensemble = ensemble_metrics(members) if columns is REGRESSION_COLUMNS else None
    if ensemble:
      lines.append(f'| R{g} | ensemble: mean prediction of the {len(members)} runs | 1 | '
                   + ' | '.join(mean_sd([lookup(ensemble, keys)], d) for _, keys, d in columns)
                   + ' |')
    for name in members[0].metrics['test']:
      if name != 'model':
        baselines.setdefault((name, len(members), *cells(members, name, columns)), []).append(g)
  for (name, n, *values), ids in baselines.items():
    lines.append(f"| {', '.join(f'R{i}' for i in ids)} | {predictor_label(name)} | {n} | "
                 + ' | '.join(values) + ' |')
  return lines


def predictor_label(name: str) -> str:
  """How the tables name a predictor beside the model: the stack, the network before its refit,
  a tuned classical predictor (eval/classical.py), or a naive baseline (eval/baselines.py)."""
  if name == 'stack':
    return 'stack: network + classical (weights on validation)'
  if name == 'model_before_refit':
    return 'network: selected on validation, before its refit'
  if name.startswith('tuned_'):
    return f'classical: {name[6:]}'
  return f'naive: {name}'


def runs_table(runs: list[run_io.Run]) -> list[str]:
  """One row per run directory."""
  lines = ['| run | id | label | train.seed | split.seed | split.fold | best epoch | test PCC | '
           'per-drug PCC mean |', '|---|---|---|---|---|---|---|---|---|']
  for r in runs:
    if r.metrics is None:
      lines.append(f'| `{r.path}` | R{r.group} | {r.label} (LODO sweep) | | | | | | |')
      continue
    m, sel = r.metrics['test']['model'], r.metrics.get('selection', {})
    lines.append(f"| `{r.path}` | R{r.group} | {r.label} | {r.config['train.seed']} | "
                 f"{r.config['split.seed']} | {r.config['split.fold']} | "
                 f"{sel.get('best_epoch', '')} | "
                 f"{mean_sd([lookup(m, ('pcc',))], 4)} | "
                 f"{mean_sd([lookup(m, ('per_drug_pcc', 'mean'))], 3)} |")
  return lines


def lodo_table(sweeps: list[run_io.Run]) -> list[str]:
  """Per sweep: drugs, mean and median per-drug PCC beside the naive mean, the classical kernel
  baseline, the kernel with the screening batch and the stack (when the sweep has their columns),
  drugs beating naive and the kernel; then per-pathway means."""
  lines = ['| sweep | drugs | per-drug PCC mean | median | naive mean | kernel baseline mean | '
           'kernel + screening batch mean | stack mean (folds) | drugs beating naive | '
           'drugs beating kernel |', '|---|---|---|---|---|---|---|---|---|---|']
  notes = []
  for r in sweeps:
    pcc, naive, kernel, batch, stack = (
        lodo_column(r, c) for c in ('pcc', 'naive_pcc', 'kernel_pcc', 'kernel_batch_pcc',
                                    'stack_pcc'))
    beats_kernel = (f'{int((pcc > kernel).sum())} / {int(np.isfinite(pcc - kernel).sum())}'
                    if np.isfinite(kernel).any() else 'n/a')
    lines.append(f'| `{r.path}` ({r.label}) | {len(r.lodo)} | {finite_mean(pcc):.3f} | '
                 f'{finite_median(pcc):.3f} | {finite_mean(naive):.3f} | '
                 f'{finite_mean(kernel):.3f} | {finite_mean(batch):.3f} | {finite_mean(stack):.3f} '
                 f'({int(np.isfinite(stack).sum())}) | {int((pcc > naive).sum())} / '
                 f'{int(np.isfinite(pcc - naive).sum())} | {beats_kernel} |')
    summary = r.path / run_io.LODO_SUMMARY_FILE
    if summary.is_file():
      flat = run_io.flatten(run_io.read_json(summary, 'LODO sweep summary'))
      notes.append(f'`{summary}`: ' + ', '.join(
          f'{k} = {v:.4g}' if isinstance(v, float) else f'{k} = {v}' for k, v in flat.items()
          if isinstance(v, (int, float, str)))[:600])
  return lines + [''] + pathway_table(sweeps) + notes


def lodo_column(run: run_io.Run, column: str) -> np.ndarray:
  """A numeric column of a sweep's lodo_per_drug.csv (nan where absent, e.g. older sweeps)."""
  return np.array([run_io.to_float(x.get(column, 'nan')) for x in run.lodo])


def pathway_table(sweeps: list[run_io.Run]) -> list[str]:
  """Mean per-drug PCC per GDSC target pathway: each sweep, then the naive mean and the kernel
  baseline of the first sweep; [] when no sweep has the pathway column."""
  with_pathway = [r for r in sweeps if r.lodo and r.lodo[0].get('pathway')]
  if not with_pathway:
    return []
  first = with_pathway[0]
  columns = [(f'S{i}', r, 'pcc') for i, r in enumerate(with_pathway, start=1)]
  columns += [('naive', first, 'naive_pcc'), ('kernel', first, 'kernel_pcc')]
  pathways = sorted({x['pathway'] for r in with_pathway for x in r.lodo})
  lines = ['Mean per-drug PCC by target pathway (GDSC drug list). ' + '; '.join(
      f'S{i} = `{r.path}`' for i, r in enumerate(with_pathway, start=1)) + '.', '',
           '| pathway | drugs | ' + ' | '.join(c[0] for c in columns) + ' |',
           '|---|---|' + '---|' * len(columns)]
  for p in pathways:
    n = sum(x['pathway'] == p for x in first.lodo)
    means = [finite_mean(lodo_column(r, col)[[x['pathway'] == p for x in r.lodo]])
             for _, r, col in columns]
    lines.append(f'| {p} | {n} | ' + ' | '.join(f'{m:.3f}' for m in means) + ' |')
  return lines + ['']


# ---------------------------------------------------------------------------------------------
# The page.


def summary_section(groups: list[list[run_io.Run]]) -> list[str]:
  """The summary tables: regression experiments, then classification ones if any."""
  lines = ['## Summary: test set, model beside the naive baselines', '',
           'One row per experiment: runs whose config.json is identical except for '
           f'{", ".join(SEED_KEYS)} and the settings each chose on its own training and '
           'validation pairs (metrics.json `chosen`) are repeats (seeds, or the folds of a '
           'cross-validation), '
           'shown as mean ± sd (sample sd) over them. '
           'Baseline rows name the experiments (R…) whose test set they were scored on.', '']
  reg = [g for g in groups if is_regression(g[0])]
  cls = [g for g in groups if g[0].metrics is not None and not is_regression(g[0])]
  if reg:
    lines += summary_table(reg, REGRESSION_COLUMNS) + ['']
  if cls:
    lines += ['Classification (sensitive / resistant):', ''] + summary_table(
        cls, CLASSIFICATION_COLUMNS) + ['']
  return lines


def figures(runs: list[run_io.Run], pair: tuple[run_io.Run, run_io.Run] | None, out: pathlib.Path) -> list[str]:
  """Figures 2-5 with captions; says why a figure is missing when it cannot be drawn."""
  regression = [r for r in runs if is_regression(r)]
  lines = figure_pair(*pair, out) if pair else [
      '## Figure 2: per-group PCC, run A vs run B', '',
      'Not drawn: needs two regression training runs (give --runs A B ...).', '']
  a = pair[0] if pair else (regression[0] if regression else None)
  lines += figure_best(a, out) if a else []
  sweeps = [r for r in runs if r.lodo is not None]
  lines += ['## Figure 4: per-drug PCC gain over the baseline, drugs ranked', '']
  for i, run in enumerate(sweeps or ([a] if a else []), start=1):
    lines += figure_gain(run, out, i)
  if sweeps:
    lines += lodo_table(sweeps) + ['']
  return lines + figure_history(runs, out)


def build_report(run_dirs: list[str], out: io.PathLike, pair: str | None = None) -> pathlib.Path:
  """Reads every run, draws the figures, writes `out`/report.md; returns its path."""
  if not run_dirs:
    raise ValueError('no runs given: pass --runs DIR [DIR ...]')
  out = pathlib.Path(out)
  runs = [run_io.load_run(d) for d in run_dirs]
  groups = group_runs(runs)
  chosen = pick_pair(runs, pair)
  lines = ['# cdr-jax: cross-run report', '',
           f'{len(runs)} runs in {len(groups)} experiments. Regression figures use ln IC50 '
           '(natural log of IC50 in µM); PCC = Pearson correlation on the test set.', '']
  lines += summary_section(groups) + ['## Runs', ''] + runs_table(runs) + ['']
  lines += figures(runs, chosen, out)
  path = out / 'report.md'
  io.atomic_write_text(path, '\n'.join(lines))
  logging.info('wrote %s', path)
  return path
