#!/usr/bin/env bash
# The runs behind the README's quality tables, in the order they were run (sequential, on the
# 2-core CPU; about 8-12 s per legacy epoch). Usage:
#   CDR_DATA_DIR=../shared/data bash bench/quality_runs.sh [OUT]
#   python launch/report.py --runs OUT/legacy_* --out report/
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quality}"
train() { python launch/train.py --config="$1" --workdir="$out/$2" --config.train.progress=False "${@:3}"; }
# Legacy split (the published 4,729 test pairs): scFoundation, 3 seeds, and the shuffled control.
train configs/scfoundation.py:seed=0 legacy_scf_s0
train configs/scfoundation.py:shuffled legacy_scf_shuffled_s0
train configs/scfoundation.py:seed=1 legacy_scf_s1
train configs/scfoundation.py:seed=2 legacy_scf_s2
# Unseen cell lines: 5 folds of held-out lines, expression.
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco_expr_f$f --config.split.fold=$f --config.train.num_epochs=20
done
# Not yet run (session 1 ran everything above this line): unseen drugs, then more legacy configs.
# Unseen drugs: 8 random leave-one-drug-out folds, scFoundation, side by side.
python launch/lodo.py --config=configs/scfoundation.py:lodo --workdir="$out/lodo_scf_8" \
  --drugs=random:8:0 --config.train.num_epochs=15
train configs/baseline.py legacy_expr_s0
train configs/scfoundation.py:onehot legacy_scf_onehot_s0
