"""Synthetic data (36 real drugs, 96 synthetic cell lines, a planted interaction): runs anywhere.

  python launch/train.py --config=configs/demo.py
Expected: test PCC above the drug + cell additive baseline (the planted interaction is non-additive).
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  # Data
  c.data.source = 'synthetic'
  c.split.name = 'random'
  c = common.apply_variants(c, arg)
  # Model
  c.model.gcn_units = (64, 64, 32)
  c.model.cell_units = (64, 32)
  c.model.head_units = (64, 32)
  # Training
  c.train.batch_size = 256
  c.train.num_epochs = 40
  # Evaluation
  c.eval.mf_rank = 8
  return c
