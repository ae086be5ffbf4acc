"""Expression + methylation (DeepCDR's multi-omics without mutation, which is not available).

  python launch/train.py --config=configs/multiomics.py
Reaches (legacy split, 3 seeds; network started as the tuned MF): per-drug PCC 0.730 +- 0.001
(0.9326); leave_cell_out, 5 folds: 0.423 +- 0.029 (kernel ridge 0.429). README.md, Results.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'multiomics'
  return common.apply_variants(c, arg)
