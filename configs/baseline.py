"""Bulk expression (697 genes, 527 lines with data) with the seed model: the baseline representation.

  python launch/train.py --config=configs/baseline.py
Expected (legacy split): at least the drug + cell additive baseline (PCC 0.878).
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'expression'
  return common.apply_variants(c, arg)
