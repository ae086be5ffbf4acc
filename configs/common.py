"""Defaults every config starts from, and the variants any config accepts after a colon.

Variants (comma-separated, e.g. `configs/scfoundation.py:shuffled,leave_cell_out`):
  shuffled        the shuffled-row control (cell features permuted across cell lines)
  onehot, random  the identity and random-feature controls (replace the cell representation)
  legacy, random_split, leave_drug_out, leave_cell_out, leave_cancer_type_out   the split (the
                  unseen-lines splits also set the network they validate best with: no identity
                  codes, the RBF + cancer-type kernel map, the kernel-ridge warm start, 20
                  epochs, an ensemble of five networks)
  deepcdr, seed   the model;  classification   the sensitive/resistant task
  lodo            the leave-one-drug-out sweep settings (launch/lodo.py; folds start from kernel
                  ridge over drugs, model.line_init=kernel_ridge)
  drugs=PARTS     the drug representation, e.g. drugs=graph+annotations+morgan (data.drug_repr)
  shuffled_drugs  the shuffled drug-feature control (vector drug features permuted across drugs)
  screening_batch unseen drugs: kernel ridge over drugs adds the GDSC screening order (an assay
                  covariate, not a drug representation; data.screening_batch)
  apart           unseen drugs screened apart: each LODO fold also drops the drugs GDSC screened
                  within 60 ids of its held-out drug, its screening batch-mates (lodo.apart)
  seed=N          the training seed (also the split's validation seed)
"""

import ml_collections

SPLITS = {'legacy': 'legacy', 'random_split': 'random', 'leave_drug_out': 'leave_drug_out',
          'leave_cell_out': 'leave_cell_out', 'leave_cancer_type_out': 'leave_cancer_type_out'}


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with the defaults of the real-data configs."""
  c = ml_collections.ConfigDict()
  # Data
  c.data = ml_collections.ConfigDict(dict(
      source='deepcdr',        # 'deepcdr' (a data root) or 'synthetic'
      root='',                 # '' -> $CDR_DATA_DIR -> ./data
      cell_repr='expression',  # see cdr_jax/data/cells.py; '+' joins several
      embeddings={'scfoundation': 'scfoundation/50M-0.1B-res_embedding.npy',
                  'scgpt': 'scgpt/scgpt_embedding.npy'},
      shuffle_cells=False, repr_seed=0, random_dim=256,
      # Drugs: 'graph' (the GCN) and/or vector parts joined by '+': annotations (GDSC pathway
      # one-hot + target multi-hot), morgan (2048-bit fingerprint), descriptors (RDKit 2D),
      # chemnet (the sidecar's ChemNet embedding), binding (kinases bound in the public binding
      # panels under <root>/binding; it also adds their kernel to the unseen-drug kernel ridge),
      # onehot (identity control); see data/drugs.py and data/binding.py.
      drug_repr='graph', shuffle_drugs=False,
      drug_embeddings={'chemnet': 'drugs/chemnet.npy'},
      standardize=True,        # z-score features, fitted on training cell lines only
      # 'rbf': the network sees the RBF kernel map of the (standardised) cell features, fitted on
      # the training lines: per-drug ridge on it is kernel ridge (eval/classical.py kernel_map).
      # rbf_width: times the median distance between training lines; 0: kernel ridge's choice.
      # type_weight / medium_weight / doubling_weight: the kernel adds these times a kernel on
      # each line annotation (same cancer type, same screening medium, doubling time); -1: kernel
      # ridge's choice (splits.line_annotations: no type kernel where a whole cancer type is held
      # out, no medium kernel without GDSC's line table). fine_weight: times a second RBF,
      # classical.FINE_WIDTH_REL as wide; -1: kernel ridge's choice.
      cell_kernel='none', rbf_width=0.0, type_weight=-1.0, medium_weight=-1.0,
      doubling_weight=-1.0, fine_weight=-1.0,
      # 1: after the standardisation, each line z-scored across its features (its profile, not
      # its overall level; cells.zscore_lines); -1: kernel ridge's choice by inner CV over the
      # training lines (warm_start.configure); 0: off.
      line_zscore=0.0,
      # Each GDSC screen (drug id) is a drug identity of its own for the models that learn one
      # per drug: the classical predictors' columns and the network's drugs, on seen pairs and
      # unseen lines (experiment.drug_axis; GDSC screened 15 drugs under two ids; chosen on
      # validation, README session 20). Scores stay per drug.
      screens=True,
      # Unseen drugs only: kernel ridge over drugs (the LODO baseline, every fold's start and the
      # stack, the network's per-line kernel features) adds a kernel on the GDSC screening order
      # (lodo_kernel.screening_kernel: drugs screened close together deviate alike). A covariate
      # of the GDSC assay, not of the drug: off by default, reported apart (README, session 24).
      # With shuffled_drugs the network's kernel is permuted whole, this part too.
      screening_batch=False,
      # Synthetic data only.
      num_cells=96, num_drugs=36, num_types=4, feature_dim=32, noise=0.3,
      missing_fraction=0.1, synthetic_seed=0,
      synthetic_screens=0))    # the last k drugs measured again in a second screen (synthetic.py)
  c.split = ml_collections.ConfigDict(dict(
      name='legacy', seed=0, val_fraction=0.05, test_fraction=0.05, stratify=True, fold=0,
      num_folds=5))
  # Model
  c.model = ml_collections.ConfigDict(dict(
      name='seed',             # 'seed' (the paper's) or 'deepcdr' (docs/DEEPCDR.md §4)
      task='regression',       # or 'classification' (sensitive/resistant, BCE)
      gcn_units=(128, 128, 128), gcn_pool='max', cell_units=(256, 128),
      drug_units=(128, 64),    # MLP over the vector drug features (when data.drug_repr has any)
      head_units=(256, 128), dropout=0.1,
      id_embed_dim=32,         # > 0: hybrid, also learns per-cell and per-drug codes (0: the
                               # paper's pure feature model)
      bilinear_dim=0,          # > 0: a rank-r bilinear term between cell and drug codes (from
                               # features, so it also scores unseen lines and drugs)
      id_l2=0.0,               # L2 on those codes, as in matrix factorisation (penalty on the sum
                               # of squared standardised errors over the training pairs)
      id_init='mf',            # codes start from the tuned matrix factorisation, with its rank
                               # and L2 (train/warm_start.py; README, Training, "Warm starts");
                               # 'random': from a small random init, id_embed_dim / id_l2 as set
      drug_linear=0.0,         # > 0: add a per-drug linear term on the cell features with this L2
                               # (per-drug ridge inside the model; eval.ridge_lambda is 1000)
      linear_init='zero',      # 'ridge': that term on, starting from tuned per-drug ridge with its
                               # lambda (train/warm_start.py; README, Training, "Warm starts")
      line_linear=0.0,         # > 0: add a per-line linear term on the kernel map of the LODO
                               # baseline's drug kernel (annotations + structure) with this L2
      line_init='zero'))       # 'kernel_ridge': that term on, starting from kernel ridge over the
                               # training drugs with its lambda (each LODO fold its own)
  # Optimizer
  c.optimizer = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='constant', warmup_epochs=0.0,
      weight_decay=0.0, grad_clip=0.0,
      lr_scaling='none',       # learning_rate is for base_batch_size; 'sqrt' / 'linear' scale it
      base_batch_size=2048))   # to train.batch_size (see bench/time_to_quality.py)
  # Training
  c.train = ml_collections.ConfigDict(dict(
      seed=0, batch_size=2048,  # pairs per step; 0: every training pair in one step (full batch)
      num_epochs=50, patience=10,
      select_on='val',         # 'test' only reproduces the published (leaky) protocol
      select_metric='pcc',     # pcc, spearman, rmse, per_drug_pcc (auroc for classification)
      # 'se' (with select_metric='per_drug_pcc' and a scored warm start): a trained epoch
      # replaces the start only by a per-drug gain that survives one standard error over the
      # validation drugs (Experiment.selector); the lodo variant sets it (README, session 18).
      select_margin='none',
      progress=True,
      max_epochs_this_run=0,   # > 0: stop (resumably) after this many epochs in one invocation
      checkpoint_every_s=60.0,  # save at most this often, and at the end (0: every epoch)
      # Once the epoch is chosen on validation, train the network again on training +
      # validation pairs for that many epochs (from its warm start refit on them); the test
      # predictions are the refit's, the selected network's stay beside them (model_before_refit)
      # (README, Training, "Refit"; session 10: +0.002 per-drug PCC on unseen lines, and on seen
      # pairs the network then equals the refit matrix factorisation it starts from).
      refit=True,
      # > 1: train this many networks (seeds train.seed + k, each a full run under
      # workdir/members/k) and average their predictions (README, Training, "Ensembles").
      ensemble=1,
      score_start=True))       # with a warm start, the untrained network competes in selection
                               # (best epoch -1: it never ends below the predictor it starts as)
  # Evaluation
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=8192, baselines=True, mf_rank=20, mf_l2=5.0, mf_iters=15, ridge_lambda=1000.0,
      classical=True,          # tuned classical predictors and the stack (eval/classical.py)
      # Once chosen on validation, the classical predictors are refit on training + validation
      # pairs for their test predictions (the stack's weights stay fitted on validation).
      classical_refit=True))
  # LODO sweep (launch/lodo.py)
  # folds_per_chunk: folds trained side by side; 0 = by platform: 8 on CPU, 32 on an accelerator
  # (lodo.folds_per_chunk; README "Benchmarks").
  # fold_map: how a chunk's folds share the step: 'loop' (a loop over the folds inside the one
  # program: their shared work runs once, each fold's activations stay in cache, stopped folds are
  # skipped), 'vmap', or 'auto': a loop on CPU, vmap on an accelerator (train/engine.py, fold_loop).
  # refit: as train.refit for a single run, each fold trains again on its training + validation
  # drugs for the epochs its validation chose, from its start fitted again on them; the test
  # predictions are the refit's (pcc_before_refit beside them). Its start without the validation
  # drugs scores 0.5712 against 0.5740 with them (bench/lodo_kernel_variants.py): README, session 17.
  # apart: GDSC ids; > 0 drops from each fold every drug screened within that many ids of its
  # held-out drug (lodo_kernel.batch_mates; from training, validation, the naive mean, the kernel
  # baseline and the stack): a new drug screened apart from every known one. The `apart` variant
  # sets 60, two widths of the screening kernel (its value to those drugs is above exp(-2));
  # the same 60 as bench/lodo_screening_batch.py. README, session 25.
  c.lodo = ml_collections.ConfigDict(dict(drugs='all', folds_per_chunk=0, val_fraction=0.05,
                                          fold_map='auto', refit=True, apart=0.0))
  return c


def set_seed(c: ml_collections.ConfigDict, seed: int) -> None:
  """What a seed means (the `seed=N` variant): the training seed (initial weights, matrix
  factorisation's start, inner folds) and the split's (its validation carve)."""
  c.train.seed = c.split.seed = seed


def apply_variants(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies comma-separated variants (see module docstring); unknown ones raise ValueError."""
  unseen_lines = False
  for v in filter(None, (arg or '').split(',')):
    if v == 'shuffled':
      c.data.shuffle_cells = True
    elif v in ('onehot', 'random'):
      c.data.cell_repr = v
    elif v in SPLITS:
      c.split.name = SPLITS[v]
      unseen_lines = v in ('leave_cell_out', 'leave_cancer_type_out')
    elif v in ('deepcdr', 'seed'):
      c.model.name = v
      if v == 'deepcdr':  # docs/DEEPCDR.md §4's faithful architecture
        c.model.gcn_units, c.model.gcn_pool = (256, 256, 256, 100), 'mean'
    elif v == 'classification':
      c.model.task = 'classification'
      c.train.select_metric, c.train.select_margin = 'auroc', 'none'
    elif v == 'lodo':  # launch/lodo.py: many folds side by side, so a lighter model per fold
      c.split.name = 'leave_drug_out'
      c.model.gcn_units, c.model.cell_units, c.model.head_units = (64, 64, 64), (128, 64), (128, 64)
      c.train.num_epochs, c.train.patience = 30, 5
      c.model.id_init = 'random'  # a held-out drug's code never trains
      # Every fold starts as kernel ridge over its training drugs (train/warm_start.py): on 30
      # random drugs 0.561 against 0.516 from random init (kernel baseline 0.559); README "Unseen
      # drugs". The paper's model: --config.model.line_init=zero.
      c.model.line_init = 'kernel_ridge'
      # 8x the default batch with sqrt learning-rate scaling: on 12 LODO folds (random:12:3, graph
      # only) 3.3 against 7.5 min, mean validation per-drug PCC 0.523 against 0.528 at batch 2,048
      # (test 0.539 / 0.545; naive 0.556). Chosen for the full sweep's time; README "Unseen drugs".
      c.train.batch_size, c.optimizer.lr_scaling, c.optimizer.warmup_epochs = 16384, 'sqrt', 2.0
      if c.model.task == 'regression':  # select on what a held-out drug is scored on
        c.train.select_metric = 'per_drug_pcc'
        # A fold's trained epoch must beat its kernel-ridge start by one standard error of the
        # per-drug gain over its ~11 validation drugs: in session 17 (plain maximum) the 145
        # folds whose validation chose a trained epoch scored 0.0016 below the start's kernel
        # on their held-out drugs. README "Unseen drugs", session 18.
        c.train.select_margin = 'se'
    elif v == 'shuffled_drugs':
      c.data.shuffle_drugs = True
    elif v == 'screening_batch':
      c.data.screening_batch = True
    elif v == 'apart':
      c.lodo.apart = 60.0
    elif v.startswith('drugs='):
      c.data.drug_repr = v[6:]
    elif v.startswith('seed='):
      set_seed(c, int(v[5:]))
    else:
      hint = ' (join variants with commas: a:b,c, not a:b:c)' if ':' in v else ''
      raise ValueError(f'unknown config variant {v!r}{hint}; choose from shuffled, onehot, '
                       f'random, {", ".join(SPLITS)}, deepcdr, seed, classification, lodo, '
                       'shuffled_drugs, screening_batch, apart, drugs=<parts joined by +>, '
                       'seed=N')
  if unseen_lines:  # README "Unseen cell lines" (whatever the order of the variants)
    # No identity codes: a held-out line's never trains.
    c.model.id_embed_dim, c.train.num_epochs = 0, 20
    # Five networks averaged (a minute each here): on the 5 folds, seeds 0-2 averaged gave 0.4547
    # against 0.4509 for one network on average (README, Results, session 10).
    c.train.ensemble = 5
    if c.model.task == 'regression':  # start as the tuned (kernel) ridge
      c.model.linear_init = 'ridge'
      if c.model.name == 'seed':  # deepcdr's per-omics branches need the omics blocks themselves
        c.data.cell_kernel = 'rbf'
        # Inner CV chose z-scored lines in all 5 folds x inner seeds 0-2 (README, session 16).
        c.data.line_zscore = -1.0
  return c
