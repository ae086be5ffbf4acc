"""Expression + methylation (DeepCDR's multi-omics without mutation, which is not available).

  python launch/train.py --config=configs/multiomics.py
Reaches (legacy split, 3 seeds): test PCC 0.9288 +- 0.0004, per-drug 0.703 +- 0.002; leave_cell_out without
identity codes, 5 folds: per-drug PCC 0.396 +- 0.020 (per-drug ridge on multi-omics 0.407). README.md, Results.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'multiomics'
  return common.apply_variants(c, arg)
