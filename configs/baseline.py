"""Bulk expression (697 genes, 527 lines with data) with the seed model: the baseline representation.

  python launch/train.py --config=configs/baseline.py
Reaches (legacy split, 3 seeds): test PCC 0.9294 +- 0.0004, per-drug PCC 0.707 +- 0.002 (matrix
factorisation 0.929 / 0.713); leave_cell_out without identity codes, 5 folds: per-drug PCC 0.397 +- 0.015
(per-drug ridge 0.434). See README.md, Results.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'expression'
  return common.apply_variants(c, arg)
