"""Tiny synthetic config for integration tests (seconds on a CPU).

  python launch/train.py --config=configs/test.py --workdir=/tmp/cdr_test
Expected: finishes; metrics.json beside the baselines. Not a quality check.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  # Data
  c.data.source = 'synthetic'
  c.data.num_cells = 24
  c.data.num_drugs = 12
  c.data.feature_dim = 16
  c.data.random_dim = 8
  c.split.name = 'random'
  c.split.val_fraction = 0.15
  c.split.test_fraction = 0.15
  c = common.apply_variants(c, arg)
  # Model: tiny for every variant (e.g. :lodo, :deepcdr keep their structure, not their widths).
  c.model.gcn_units = (16, 16)
  c.model.cell_units = (16,)
  c.model.head_units = (16,)
  # Training
  c.train.batch_size = 64
  c.train.num_epochs = 3
  c.train.patience = 2
  c.train.progress = False
  c.train.checkpoint_every_s = 0.0  # every epoch: the resume tests kill runs between epochs
  c.train.refit = False  # one training phase per test run (tests/test_warm_start.py tests refits)
  c.train.ensemble = 1   # one network per test run (the unseen-lines variants average five)
  # Evaluation
  c.eval.batch_size = 256
  c.eval.mf_rank = 4
  c.eval.mf_iters = 5
  c.lodo.folds_per_chunk = 4
  return c
