"""Bulk expression (697 genes, 527 lines with data) with the seed model: the baseline representation.

  python launch/train.py --config=configs/baseline.py
Reaches (legacy split, 3 seeds; the network starts as the tuned matrix factorisation and is refit
on training + validation pairs): test PCC 0.9352 +- 0.0000, per-drug PCC 0.739 +- 0.000 (the tuned
MF, refit, the same; the stack 0.9394 / 0.754). `:leave_cell_out` (five networks, each started as
the tuned kernel ridge and refit), 5 folds: per-drug PCC 0.455 +- 0.019 (kernel ridge 0.451). See
README.md, Results (session 10).
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'expression'
  return common.apply_variants(c, arg)
