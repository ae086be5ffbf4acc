"""The published scFoundation cell embedding (561 lines x 768) with the seed model.

  python launch/train.py --config=configs/scfoundation.py
  Controls: configs/scfoundation.py:shuffled, :onehot; splits: :leave_cell_out, ...
Reaches (legacy split, 3 seeds): test PCC 0.9290 +- 0.0002, per-drug PCC 0.705 +- 0.001, level with
matrix factorisation (0.929 / 0.712) and with its shuffled control (0.9296 / 0.707); on unseen lines
(leave_cell_out) per-drug PCC 0.007 +- 0.036: the embedding carries no information there. README.md, Results.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'scfoundation'
  return common.apply_variants(c, arg)
