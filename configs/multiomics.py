"""Expression + methylation (DeepCDR's multi-omics without mutation, which is not available).

  python launch/train.py --config=configs/multiomics.py
Expected (leave_cell_out, 5 folds): per-drug PCC toward 0.50 (per-drug ridge on expression: 0.425).
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'multiomics'
  return common.apply_variants(c, arg)
