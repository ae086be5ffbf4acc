"""Bulk expression (697 genes, 527 lines with data) with the seed model: the baseline representation.

  python launch/train.py --config=configs/baseline.py
Reaches (legacy split, 3 seeds; the network starts as the tuned matrix factorisation): test PCC
0.9326 +- 0.0002, per-drug PCC 0.730 +- 0.001 (tuned MF 0.729; the stack 0.745). `:leave_cell_out`
(the network starts as the tuned kernel ridge), 5 folds: per-drug PCC 0.448 +- 0.022 (kernel ridge
0.447). See README.md, Results.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'expression'
  return common.apply_variants(c, arg)
