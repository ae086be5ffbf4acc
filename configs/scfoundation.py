"""The published scFoundation cell embedding (561 lines x 768) with the seed model.

  python launch/train.py --config=configs/scfoundation.py
  Controls: configs/scfoundation.py:shuffled, :onehot; splits: :leave_cell_out, ...
Expected (legacy split, REFERENCE §7): beat matrix factorisation (PCC 0.930, per-drug 0.718).
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'scfoundation'
  return common.apply_variants(c, arg)
