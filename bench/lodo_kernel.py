"""The classical baseline for unseen drugs over all leave-one-drug-out folds (seconds, no network).

  python bench/lodo_kernel.py --config=configs/scfoundation.py
Every drug held out in turn: the naive cell-line mean, and the naive mean plus kernel ridge over the
other drugs' profiles (kernel: GDSC pathway + 2 x targets + 2 x Morgan + 0.5 x descriptors; the
ridge chosen per fold by leave-one-out over the other drugs). Mean / median per-drug PCC over all
of each drug's pairs and drugs beating naive (JSON). The sweep writes the same per fold (kernel_pcc).
With `data.screens` (the default) the other drugs' profiles are one column per GDSC screen
(`lodo_kernel.column_drugs`); `--config.data.screens=False` gives one per drug (before session 21).
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags
import numpy as np
import threadpoolctl

from cdr_jax import data
from cdr_jax.data import dataset
from cdr_jax.eval import baselines
from cdr_jax.eval import lodo_kernel
from cdr_jax.eval import metrics
from cdr_jax.train import warm_start

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/scfoundation.py', 'Data config.')


def main(argv):
  del argv
  config = _CONFIG.value
  ds = data.load_dataset(config.data)
  with threadpoolctl.threadpool_limits(1):
    kernel, info, _ = lodo_kernel.held_out_drug_predictions(
        ds, dataset.resolve_data_root(config.data.root),
        warm_start.kernel_screens(ds, config.data))
  naive, model = [], []
  for d in range(len(ds.drug_ids)):
    test = np.flatnonzero(ds.pair_drug == d)
    naive.append(metrics.pcc(baselines.naive_cell_mean(ds, d, test), ds.pair_y[test]))
    model.append(metrics.pcc(kernel[test], ds.pair_y[test]))
  naive, model = np.array(naive), np.array(model)
  print(json.dumps({'drugs': len(model), 'naive_mean': float(np.nanmean(naive)),
                    'naive_median': float(np.nanmedian(naive)),
                    'kernel_mean': float(np.nanmean(model)),
                    'kernel_median': float(np.nanmedian(model)),
                    'drugs_beating_naive': int((model > naive).sum()), **info}))


if __name__ == '__main__':
  app.run(main)
