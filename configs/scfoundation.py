"""The published scFoundation cell embedding (561 lines x 768) with the seed model.

  python launch/train.py --config=configs/scfoundation.py
  Controls: configs/scfoundation.py:shuffled, :onehot; splits: :leave_cell_out, ...
Reaches (legacy split, 3 seeds; network started as the tuned MF): per-drug PCC 0.729 +- 0.001
(0.9325), level with tuned MF and with the shuffled / one-hot controls; on unseen lines
(leave_cell_out) per-drug PCC -0.003 +- 0.022: the embedding carries no information there.
README.md, Results.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'scfoundation'
  return common.apply_variants(c, arg)
