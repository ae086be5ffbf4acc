#!/usr/bin/env bash
# The runs behind the README's quality tables, in the order they were run (sequential, on the
# 2-core CPU; about 8-12 s per legacy epoch). Usage:
#   CDR_DATA_DIR=../shared/data bash bench/quality_runs.sh [OUT]
#   python launch/report.py --runs OUT/legacy_* --out report/
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quality}"
train() { python launch/train.py --config="$1" --workdir="$out/$2" --config.train.progress=False "${@:3}"; }
# Legacy split, every config but expression, seeds 0, 1, 2 (seed by seed): runs PREFIX_MULTI_sN
# (MULTI: the multi-omics runs' name, as each session named them), PREFIX_scf_sN, PREFIX_shuf_sN,
# PREFIX_onehot_sN.
legacy_other_configs() {
  for s in 0 1 2; do
    train configs/multiomics.py:seed=$s "$1_$2_s$s"
    train configs/scfoundation.py:seed=$s "$1_scf_s$s"
    train configs/baseline.py:shuffled,seed=$s "$1_shuf_s$s"
    train configs/baseline.py:onehot,seed=$s "$1_onehot_s$s"
  done
}
# Legacy split (the published 4,729 test pairs): scFoundation, 3 seeds, and the shuffled control.
train configs/scfoundation.py:seed=0 legacy_scf_s0
train configs/scfoundation.py:shuffled legacy_scf_shuffled_s0
train configs/scfoundation.py:seed=1 legacy_scf_s1
train configs/scfoundation.py:seed=2 legacy_scf_s2
# Unseen cell lines: 5 folds of held-out lines, expression.
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco_expr_f$f --config.split.fold=$f --config.train.num_epochs=20
done
# Session 2 (after the YNNPACK / dropout changes; earlier runs are not re-run).
# Unseen drugs: the paper's protocol of 20 random drugs, all 20 folds vmapped in one chunk.
lodo() { python launch/lodo.py --config="$1" --workdir="$out/$2" --drugs=random:20:0 \
  --config.train.num_epochs=15 --config.lodo.folds_per_chunk=20; }
lodo configs/scfoundation.py:lodo lodo_scf_20
lodo configs/baseline.py:lodo lodo_expr_20
lodo configs/scfoundation.py:lodo,shuffled lodo_scf_shuffled_20
# Tuning the hybrid on the legacy split (validation selects the epoch; compare on test after).
train configs/scfoundation.py:seed=0 legacy_scf_idl2_s0 --config.model.id_l2=2.0
train configs/scfoundation.py:seed=0 legacy_scf_cos_s0 --config.optimizer.learning_rate=0.002 \
  --config.optimizer.schedule=cosine --config.train.num_epochs=60 --config.train.patience=60
# Unseen cell lines, fold 0: without identity codes, then with the code bilinear term.
train configs/baseline.py:leave_cell_out lco_expr_noid_f0 --config.split.fold=0 \
  --config.train.num_epochs=20 --config.model.id_embed_dim=0
train configs/baseline.py:leave_cell_out lco_expr_bil_f0 --config.split.fold=0 \
  --config.train.num_epochs=20 --config.model.id_embed_dim=0 --config.model.bilinear_dim=32
train configs/baseline.py:leave_cell_out lco_expr_noid_d5_f0 --config.split.fold=0 \
  --config.train.num_epochs=20 --config.model.id_embed_dim=0 --config.model.dropout=0.5
# Unseen cell lines, all 5 folds without identity codes (fold 0 above), then the one-hot control.
for f in 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco_expr_noid_f$f --config.split.fold=$f \
    --config.train.num_epochs=20 --config.model.id_embed_dim=0
done
train configs/scfoundation.py:onehot legacy_scf_onehot_s0
# Session 3: the full table, every config on both splits (code of commit 494eccf).
# Legacy split, 3 seeds each (onehot seed 0 is legacy_scf_onehot_s0 above).
for s in 0 1 2; do
  train configs/baseline.py:seed=$s legacy_expr_s$s
  train configs/multiomics.py:seed=$s legacy_multi_s$s
  train configs/scfoundation.py:seed=$s legacy_scf3_s$s
  train configs/scfoundation.py:shuffled,seed=$s legacy_shuf_s$s
done
for s in 1 2; do train configs/scfoundation.py:onehot,seed=$s legacy_onehot_s$s; done
# Unseen cell lines, 5 folds, without identity codes (expression: lco_expr_noid_f* above).
lco() { for f in 0 1 2 3 4; do
  train "$1,leave_cell_out" "lco_${2}_f$f" --config.split.fold=$f --config.train.num_epochs=20 \
    --config.model.id_embed_dim=0; done; }
lco configs/multiomics.py:seed=0 multi
lco configs/scfoundation.py:seed=0 scf
lco configs/scfoundation.py:shuffled shuf
lco configs/scfoundation.py:onehot onehot
# The per-drug linear term (ridge inside the model) on unseen lines, fold 0 (session 3 code).
train configs/baseline.py:leave_cell_out lco_expr_lin1000_f0 --config.split.fold=0 \
  --config.train.num_epochs=20 --config.model.id_embed_dim=0 --config.model.drug_linear=1000
# Analyses (seconds each): the general-sensitivity ceiling on unseen lines; MF as a seed ensemble.
for c in baseline multiomics scfoundation; do python bench/lco_ceiling.py --config=configs/$c.py; done
python bench/mf_ensemble.py --config=configs/scfoundation.py --seeds=0,1,2
python bench/mf_ensemble.py --config=configs/baseline.py --seeds=0,1,2
python bench/mf_ensemble.py --config=configs/multiomics.py --seeds=0,1,2
python bench/lodo_ceiling.py --config=configs/scfoundation.py
# The reports in docs/ (tables as in README, with figures).
python launch/report.py --runs "$out"/legacy_{expr,multi,scf3,shuf}_s{0,1,2} "$out"/legacy_scf_onehot_s0 \
  "$out"/legacy_onehot_s{1,2} --pair "$out/legacy_scf3_s0,$out/legacy_shuf_s0" --out docs/report_legacy
python launch/report.py --runs "$out"/lco_expr_noid_f{0..4} "$out"/lco_{multi,scf,shuf,onehot}_f{0..4} \
  --pair "$out/lco_expr_noid_f0,$out/lco_scf_f0" --out docs/report_lco

# Session 4 (issues 11-14): classical predictors, the stack, benchmarks.
python bench/classical.py --config=configs/baseline.py                # legacy seed 0 + 5 LCO folds
python bench/lodo_kernel.py --config=configs/scfoundation.py          # all 223 LODO folds
bash run.sh launch/train.py --config=configs/baseline.py              # the stack (main command)
python bench/time_to_quality.py --config=configs/scfoundation.py --settings=16384:sqrt:2,0:sqrt:5 --max_epochs=80
# Session 5 (current code: the tuned classical predictors and the stack are in every run).
# Unseen cell lines, expression, 5 folds (the README summary's row).
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco5_expr_f$f --config.split.fold=$f \
    --config.train.num_epochs=20 --config.model.id_embed_dim=0
done
# Legacy split, expression (the README's main command), seeds 0, 1, 2.
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy5_expr_s$s; done
# Unseen drugs: all 223 folds with drug annotations + Morgan beside the graph (expression), then
# 30 random drugs for the shuffled-drug-feature control, the graph alone and + ChemNet (the ChemNet
# file made first by the sidecar into a writable data root).
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --workdir="$out/lodo5_b_annot_morgan"
sub() { python launch/lodo.py --config="configs/baseline.py:lodo$1" --drugs=random:30:1 \
  --workdir="$out/lodo5_$2"; }
sub ,drugs=graph+annotations+morgan,shuffled_drugs d30_shuffled
sub '' a30_graph
python -m embed_torch chemnet --smiles "$CDR_DATA_DIR/deepcdr/223drugs_pubchem_smiles.txt" \
  --out "$CDR_DATA_DIR/drugs/chemnet.npy"
sub ,drugs=graph+annotations+morgan+chemnet c30_chemnet
# The lodo variant's batch: 16,384 (its default) against 2,048 on the same 12 folds, graph alone.
python launch/lodo.py --config=configs/baseline.py:lodo --drugs=random:12:3 --workdir="$out/lodo5_bs16384_12"
python launch/lodo.py --config=configs/baseline.py:lodo --drugs=random:12:3 --workdir="$out/lodo5_bs2048_12" \
  --config.train.batch_size=2048 --config.optimizer.lr_scaling=none --config.optimizer.warmup_epochs=0
# Session 6: warm starts (train/warm_start.py). The lines above ran with their session's code; with
# today's code the default network starts from the tuned matrix factorisation (model.id_init=mf) and
# the leave_cell_out variant's from tuned kernel ridge (no codes, RBF kernel map, ridge warm start;
# the earlier network: --config.model.linear_init=zero --config.data.cell_kernel=none).
# Legacy split, expression (the README's main command), seeds 0, 1, 2, then every other config.
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy6_expr_s$s; done
legacy_other_configs legacy6 mo
# Selecting the epoch on per-drug PCC instead (seed 0; validation falls after epoch 4).
train configs/baseline.py legacy6_expr_pd_s0 --config.train.select_metric=per_drug_pcc \
  --config.train.patience=50
# Unseen cell lines, 5 folds: expression (the README summary's row), then selecting on per-drug PCC.
for f in 0 1 2 3 4; do train configs/baseline.py:leave_cell_out lco6_expr_f$f --config.split.fold=$f; done
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco6_expr_pd_f$f --config.split.fold=$f \
    --config.train.select_metric=per_drug_pcc --config.train.patience=5
done
# The other configs on the same folds.
for c in multiomics.py:leave_cell_out scfoundation.py:leave_cell_out \
         scfoundation.py:shuffled,leave_cell_out scfoundation.py:onehot,leave_cell_out; do
  for f in 0 1 2 3 4; do train "configs/$c" "lco6_${c//[:.,]/_}_f$f" --config.split.fold=$f; done
done
# Session 7: unseen drugs. (a) the paper's model (graph alone, folds from random init), all 223
# folds; then every fold starting as kernel ridge over its training drugs (model.line_init=
# kernel_ridge, the lodo variant's default since this session): the 30 drugs of session 5, then
# all 223 folds, drugs = graph + annotations + Morgan.
python launch/lodo.py --config=configs/baseline.py:lodo --config.model.line_init=zero \
  --workdir="$out/lodo7_a_graph_full"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --drugs=random:30:1 --workdir="$out/lodo7_b_line_30"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --workdir="$out/lodo7_b_line_full"
# (docs/report_lodo7, made here, is superseded by docs/report_lodo8 in the session 8 block.)
python launch/report.py --runs "$out/lodo7_b_line_full" "$out/lodo7_a_graph_full" --out docs/report_lodo7
# Session 8: matrix factorisation's L2 grid in sqrt(2) steps and the classical predictors refit
# on training + validation pairs (eval.classical_refit). Legacy (the README's main command), 3
# seeds; unseen lines, 5 folds; then the unseen-drug table's (d) shuffled drug features and (c)
# + ChemNet over all 223 folds (ChemNet made by the sidecar into a writable data root), the
# kernel baseline's variants, and the report with all four sweeps.
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy8_expr_s$s; done
for f in 0 1 2 3 4; do train configs/baseline.py:leave_cell_out lco8_expr_f$f --config.split.fold=$f; done
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan,shuffled_drugs \
  --workdir="$out/lodo8_d_shuffled_full"
python -m embed_torch chemnet --smiles "$CDR_DATA_DIR/deepcdr/223drugs_pubchem_smiles.txt" \
  --out "$CDR_DATA_DIR/drugs/chemnet.npy"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet \
  --workdir="$out/lodo8_c_chemnet_full"
python bench/lodo_kernel_variants.py --config=configs/baseline.py
python launch/report.py --runs "$out/lodo7_b_line_full" "$out/lodo8_c_chemnet_full" \
  "$out/lodo8_d_shuffled_full" "$out/lodo7_a_graph_full" --out docs/report_lodo8
# Session 9: the LODO step loops over a chunk's folds on CPU (lodo.fold_map) and CPU sweeps run
# 8 folds per chunk. The speed benchmarks, then sweep (b) again with the new defaults (its wall
# time against session 7's one fold per chunk, and its per-drug PCCs against session 7's).
python bench/lodo_throughput.py --config=configs/scfoundation.py:lodo --folds=8 --epochs=2 --repeats=3
python bench/lodo_step.py --config=configs/scfoundation.py:lodo --folds=8
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --workdir="$out/lodo9_b_line_full"
# Session 10: kernel ridge's same-cancer-type kernel (weight by inner CV; the network's kernel map
# carries it) and the network refit on training + validation pairs (train.refit). The kernel
# variants on unseen lines, then unseen lines (5 folds) without and with the refit, and the
# legacy split (3 seeds) with it (one run gives the network before and after the refit).
python bench/lco_kernels.py --config=configs/baseline.py
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco10_expr_f$f --config.split.fold=$f \
    --config.train.refit=False --config.train.ensemble=1
done
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco10r_expr_f$f --config.split.fold=$f \
    --config.train.refit=True --config.train.ensemble=1
done
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy10r_expr_s$s --config.train.refit=True; done
# Seed ensembles on unseen lines: single networks with training seeds 1 and 2 beside seed 0's
# (lco10r), averaged per fold by hand (0.4547 against 0.4509 for one network), then the variant's
# default of five networks per fold (train.ensemble=5, the README's unseen-lines row).
for s in 1 2; do for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco10r_expr_f${f}_t$s --config.split.fold=$f \
    --config.train.seed=$s --config.train.ensemble=1
done; done
for f in 0 1 2 3 4; do train configs/baseline.py:leave_cell_out lco10e_expr_f$f --config.split.fold=$f; done
# The shuffled-rows control on unseen lines with the type kernel (one network per fold).
for f in 0 1 2 3 4; do
  train configs/baseline.py:shuffled,leave_cell_out lco10_shuf_f$f --config.split.fold=$f \
    --config.train.ensemble=1
done
python launch/report.py --runs "$out"/lco10e_expr_f* "$out"/lco10_shuf_f* --out docs/report_lco10
python launch/report.py --runs "$out"/legacy10r_expr_s* --out docs/report_legacy10
# Every other config (multi-omics, scFoundation, its shuffled rows, one-hot identity): unseen
# lines, one network per fold, as lco<session>_<name>_f<fold>; then the legacy split, 3 seeds, as
# legacy<session>_<name>_s<seed>.
every_config() {
  for c in multiomics.py:leave_cell_out:mo scfoundation.py:leave_cell_out:scf \
           scfoundation.py:shuffled,leave_cell_out:scfshuf baseline.py:onehot,leave_cell_out:onehot; do
    cfg=${c%:*}; name=${c##*:}
    for f in 0 1 2 3 4; do
      train "configs/$cfg" "lco$1_${name}_f$f" --config.split.fold=$f --config.train.ensemble=1
    done
  done
  for c in multiomics.py::mo scfoundation.py::scf baseline.py:shuffled,:shuf baseline.py:onehot,:onehot; do
    cfg=${c%:*}; name=${c##*:}
    for s in 0 1 2; do train "configs/${cfg}seed=$s" "legacy$1_${name}_s$s"; done
  done
}
# Every other config with the type kernel and the refit.
every_config 10
# Session 11: kernel ridge's line annotations beyond the cancer type: the GDSC screening medium
# (same-medium kernel) and CCLE's calculated doubling time (a kernel on the standardised log2
# hours), weights by inner CV one after another; the network's kernel map carries them. The kernel
# steps on unseen lines, then unseen lines (5 folds, five networks, the variant's default), the
# shuffled control (one network) and the legacy split (3 seeds).
python bench/lco_kernels.py --config=configs/baseline.py
for f in 0 1 2 3 4; do train configs/baseline.py:leave_cell_out lco11e_expr_f$f --config.split.fold=$f; done
for f in 0 1 2 3 4; do
  train configs/baseline.py:shuffled,leave_cell_out lco11_shuf_f$f --config.split.fold=$f \
    --config.train.ensemble=1
done
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy11_expr_s$s; done
python launch/report.py --runs "$out"/lco11e_expr_f* "$out"/lco11_shuf_f* --out docs/report_lco11
# Session 12: kernel ridge's spectrum stage (one lambda per drug-space component of the training
# responses). The kernel bench, unseen lines (five networks), legacy (3 seeds), then every other
# config: unseen lines one network per fold, legacy 3 seeds.
python bench/lco_kernels.py --config=configs/baseline.py
for f in 0 1 2 3 4; do train configs/baseline.py:leave_cell_out lco12e_expr_f$f --config.split.fold=$f; done
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy12_expr_s$s; done
for f in 0 1 2 3 4; do
  train configs/baseline.py:shuffled,leave_cell_out lco12_shuf_f$f --config.split.fold=$f \
    --config.train.ensemble=1
done
every_config 12
python launch/report.py --runs "$out"/lco12e_expr_f* "$out"/lco12_shuf_f* --out docs/report_lco12
# Session 13: kNN neighbour weights (power, shrink), the fine RBF in kernel ridge, then the third
# kNN step (item-kNN on the cascade's residuals). Unseen lines (five networks), legacy 3 seeds
# before the third step (legacy13b) and with it (legacy13c), the kernel bench, the shuffled
# control (one network per fold).
for f in 0 1 2 3 4; do train configs/baseline.py:leave_cell_out lco13e_expr_f$f --config.split.fold=$f; done
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy13b_expr_s$s; done
python bench/lco_kernels.py --config=configs/baseline.py
for f in 0 1 2 3 4; do
  train configs/baseline.py:shuffled,leave_cell_out lco13_shuf_f$f --config.split.fold=$f \
    --config.train.ensemble=1
done
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy13c_expr_s$s; done
python launch/report.py --runs "$out"/lco13e_expr_f* "$out"/lco13_shuf_f* --out docs/report_lco13
python launch/report.py --runs "$out"/legacy13c_expr_s* --out docs/report_legacy13
# Every other config with session 13's code (this session ran the legacy half first; the runs do
# not depend on the order).
every_config 13
# Session 14: kernel ridge's inner-CV seed (5 seeds, kernel ridge alone), and unseen lines with
# training seed 1 (five networks; the folds stay those of split seed 0).
python bench/lco_inner_seeds.py --config=configs/baseline.py
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco14e_seed1_f$f --config.split.fold=$f --config.train.seed=1
done
# Session 15: unseen lines (five networks) with 40 epochs instead of 20, then selecting the epoch
# on per-drug validation PCC (fold 2 only). Neither adopted (README, Results, session 15).
for f in 2 1 0 3 4; do
  train configs/baseline.py:leave_cell_out lco15e40_f$f --config.split.fold=$f --config.train.num_epochs=40
done
train configs/baseline.py:leave_cell_out lco15pd_f2 --config.split.fold=2 \
  --config.train.select_metric=per_drug_pcc
# Session 16: unseen lines with each line z-scored across its features when kernel ridge's inner
# CV prefers it (data.line_zscore=-1, now the unseen-lines variants' setting); kernel ridge alone
# with and without it.
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco16z_f$f --config.split.fold=$f
done
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco16z_seed1_f$f --config.split.fold=$f --config.train.seed=1
done
python bench/lco_kernels.py --config=configs/baseline.py
# Session 17: the unseen-drug kernel baseline with z-scored profiles for the naive line means and
# one ridge per principal component (lodo_kernel.NAIVE, PER_COMPONENT; the inner choice is in the
# variants' JSON), then sweep (b) and its shuffled control (d) over all 223 folds with the LODO
# refit (lodo.refit, the default since this session; every fold starts as that baseline over its
# training drugs), then (c) + ChemNet (ChemNet made by the sidecar into a writable copy of the
# data root, as in session 8), and their report. (a) was not re-run this session.
python bench/lodo_kernel_variants.py --config=configs/baseline.py
python bench/lodo_kernel.py --config=configs/baseline.py
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --workdir="$out/lodo17_b_full"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan,shuffled_drugs \
  --workdir="$out/lodo17_d_shuffled_full"
python -m embed_torch chemnet --smiles "$CDR_DATA_DIR/deepcdr/223drugs_pubchem_smiles.txt" \
  --out "$CDR_DATA_DIR/drugs/chemnet.npy"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet \
  --workdir="$out/lodo17_c_chemnet_full"
python launch/report.py --runs "$out/lodo17_b_full" "$out/lodo17_c_chemnet_full" \
  "$out/lodo17_d_shuffled_full" --out docs/report_lodo17
# Session 18: unseen drugs with the stricter selection rule (train.select_margin='se', the lodo
# variant's default since this session: a fold's trained epoch must beat its kernel-ridge start by
# one standard error of the per-drug gain over its validation drugs), sweep (b); the kernel-weight
# grid scored with the held-out labels (a ceiling for re-weighting); then (a) the paper's model
# with the refit (no start there, so the rule does not apply), the shuffled control (d), and their
# report. (c) + ChemNet was not re-run this session.
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --workdir="$out/lodo18_b"
python bench/lodo_kernel_grid.py --config=configs/baseline.py
python launch/lodo.py --config=configs/baseline.py:lodo --config.model.line_init=zero \
  --workdir="$out/lodo18_a"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan,shuffled_drugs \
  --workdir="$out/lodo18_d"
python launch/report.py --runs "$out/lodo18_b" "$out/lodo18_a" "$out/lodo18_d" --out docs/report_lodo18
# (session 19 replaced docs/report_lodo18 with docs/report_lodo19, the same three sweeps and (c).)
# Session 19: (c) + ChemNet re-run with the stricter rule (ChemNet made by the sidecar into a
# writable copy of the data root) and the report of (b), (c), (a), (d); then the legacy split with
# the per-drug blend (classical.drug_blend, fitted on cross-fitted training predictions) for every
# config, 3 seeds (as far as this session got: see the README). Unseen lines are unchanged (the
# per-drug blend applies to seen pairs only).
python -m embed_torch chemnet --smiles "$CDR_DATA_DIR/deepcdr/223drugs_pubchem_smiles.txt" \
  --out "$CDR_DATA_DIR/drugs/chemnet.npy"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet \
  --workdir="$out/lodo19_c"
python launch/report.py --runs "$out/lodo18_b" "$out/lodo19_c" "$out/lodo18_a" "$out/lodo18_d" \
  --out docs/report_lodo19
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy19_expr_s$s; done
legacy_other_configs legacy19 multi
python launch/report.py --runs "$out"/legacy19_expr_s* --out docs/report_legacy19
# The replicate measurements in the legacy test pairs, and the per-drug blend cross-fitted over
# keys (adopted) against over measurements.
python bench/legacy_replicates.py --config=configs/baseline.py --seeds=0,1,2
# Session 20: screens as identities (data.screens: each GDSC drug id its own identity for the
# classical predictors and the network, on seen pairs and unseen lines). The classical predictors
# with one identity per drug and per screen, on validation and test (legacy, 3 seeds; unseen
# lines, 5 folds); the legacy split, expression, 3 seeds; unseen lines, expression, 5 folds; the
# legacy shuffled and one-hot controls at seed 0 (as far as this session got: see the README).
python bench/screens.py --config=configs/baseline.py --seeds=0,1,2
python bench/screens.py --config=configs/baseline.py:leave_cell_out --folds=0,1,2,3,4
for s in 0 1 2; do train configs/baseline.py:seed=$s legacy20_s$s; done
for f in 0 1 2 3 4; do
  train configs/baseline.py:leave_cell_out lco20_f$f --config.split.fold=$f
done
train configs/baseline.py:shuffled,seed=0 legacy20_shuf_s0
train configs/baseline.py:onehot,seed=0 legacy20_onehot_s0
python launch/report.py --runs "$out"/legacy20_s* --out docs/report_legacy20
python launch/report.py --runs "$out"/lco20_f* --out docs/report_lco20
# Session 21: unseen drugs with kernel ridge over drugs per GDSC screen (data.screens: one profile
# column per screen for the classical baseline, the stack's and each fold's start). The baseline's
# variants and the inner choice between per-drug and per-screen columns; sweeps (b) and (c) (ChemNet
# from the writable copy of session 19); the report; the legacy multi-omics and scFoundation runs
# with screens as identities (seed 0, as far as this session got: see the README).
python bench/lodo_kernel_variants.py --config=configs/baseline.py
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan \
  --workdir="$out/lodo21_b"
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet \
  --workdir="$out/lodo21_c"
python launch/report.py --runs "$out/lodo21_b" "$out/lodo21_c" --out docs/report_lodo21
train configs/multiomics.py:seed=0 legacy21_multi_s0
train configs/scfoundation.py:seed=0 legacy21_scf_s0
# Session 22: the shuffled drug-feature control (d) with the per-screen kernel, and the report of
# (b), (c), (d) (replacing session 21's of (b), (c)).
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan,shuffled_drugs \
  --workdir="$out/lodo21_d"
python launch/report.py --runs "$out/lodo21_b" "$out/lodo21_c" "$out/lodo21_d" --out docs/report_lodo21
# Session 23: the baseline's variants again, now with the target-genomics prior ("screens", "per
# screen + target genomics"; ChemNet from a data root with drugs/chemnet.npy, made by
# `python -m embed_torch chemnet --smiles <root>/deepcdr/223drugs_pubchem_smiles.txt
# --out <root>/drugs/chemnet.npy`).
python bench/lodo_kernel_variants.py --config=configs/baseline.py
python bench/lodo_neighbours.py --config=configs/baseline.py
# Session 24: the GDSC screening batch. What the screening order tells about a held-out drug's
# profile (behaviour similarity, twice-screened drugs, the oracle's neighbour, kernel ridge with it,
# folds without the held-out drug's batch-mates); then sweep (e): (c) with the screening batch in
# the kernel baseline, every fold's start and the stack (ChemNet as for (c)); the report of (e)
# beside (c)'s session 21 figures (README).
python bench/lodo_screening_batch.py --config=configs/baseline.py
python launch/lodo.py \
  --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet,screening_batch \
  --workdir="$out/lodo24_e"
python launch/report.py --runs "$out/lodo24_e" --out docs/report_lodo24
# Session 25: unseen drugs screened apart (lodo.apart, the `apart` variant): each fold also drops
# the drugs GDSC screened within 60 ids of its held-out drug (its batch-mates) from training,
# validation, the naive mean, the kernel baseline and the stack. (c), its shuffled control (d) and
# (a) the paper's model that way (ChemNet as for (c)); the classical predictors at several such
# distances; the report of the three sweeps.
python launch/lodo.py --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet,apart \
  --workdir="$out/lodo25_c_apart"
python launch/lodo.py \
  --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet,shuffled_drugs,apart \
  --workdir="$out/lodo25_d_apart"
python launch/lodo.py --config=configs/baseline.py:lodo,apart --config.model.line_init=zero \
  --workdir="$out/lodo25_a_apart"
python bench/lodo_apart.py --config=configs/baseline.py
python launch/report.py --runs "$out/lodo25_c_apart" "$out/lodo25_d_apart" "$out/lodo25_a_apart" \
  --out docs/report_lodo25
# Session 26: measured binding panels (`python launch/fetch_data.py --dest <root> --only binding/`
# puts Davis 2011 and KIBA under the data root). The kernel baseline with the kinases each drug
# binds (each panel alone and both, at several weights, and the weight chosen per fold), on the
# plain folds and apart; then sweep (f), (c) + the binding representation (the panels' kernel in
# the kernel baseline, every fold's start and the stack; ChemNet as for (c)), plain and apart;
# the report of (f) beside (c).
python bench/lodo_binding.py --config=configs/baseline.py
python launch/lodo.py \
  --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet+binding \
  --workdir="$out/lodo26_f"
python launch/lodo.py \
  --config=configs/baseline.py:lodo,drugs=graph+annotations+morgan+chemnet+binding,apart \
  --workdir="$out/lodo26_f_apart"
python launch/report.py --runs "$out/lodo26_f" "$out/lodo26_f_apart" --out docs/report_lodo26
