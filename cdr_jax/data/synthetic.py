"""A synthetic dataset with a planted drug-by-cell interaction, for tests and an offline demo.

Same layout and code path as the real data (`Dataset`, real drug graphs from real SMILES). ln IC50 =
drug effect + cell effect + an interaction between a drug latent (a function of the drug's atom
features) and a cell latent (a linear function of the cell features) + noise. The additive baseline
cannot capture the interaction, so a good model beats it; deterministic by seed.
"""

import ml_collections
import numpy as np

from cdr_jax.data import Dataset
from cdr_jax.data import cells as cells_lib
from cdr_jax.data import chem
from cdr_jax.data import drugs

# (PubChem CID, SMILES) of 36 drugs of the GDSC set, including salts with isolated atoms.
DRUGS = (
    ('560326', 'COC(=O)CNC(=O)C(=O)OC'),
    ('84691', 'N.N.[Cl-].[Cl-].[Pt+2]'),
    ('5394', 'Cn1nnc2c(C(N)=O)ncn2c1=O'),
    ('6253', 'Nc1ccn(C2OC(CO)C(O)C2O)c(=O)n1'),
    ('54676905', 'CC(O)=C(C#N)C(=O)Nc1cc(Br)ccc1Br'),
    ('11960529', 'CC1(c2nc3c(C(N)=O)cccc3[nH]2)CCCN1'),
    ('44450571', 'O=C1N=C(NCc2cccs2)SC1=Cc1ccc2ncccc2c1'),
    ('5208', 'CC(C)=CCC(O)C1=CC(=O)c2c(O)ccc(O)c2C1=O'),
    ('11624601', 'CCOc1nc(NC(=O)Cc2cc(OC)ccc2OC)cc(N)c1C#N'),
    ('444795', 'CC(C=CC1=C(C)CCCC1(C)C)=CC=CC(C)=CC(=O)O'),
    ('9826528', 'O=C(NOCC(O)CO)c1ccc(F)c(F)c1Nc1ccc(I)cc1F'),
    ('11667893', 'CC1(C)CNc2cc(NC(=O)c3cccnc3NCc3ccncc3)ccc21'),
    ('11338033', 'O=C(NC1CCNCC1)c1[nH]ncc1NC(=O)c1c(Cl)cccc1Cl'),
    ('10200390', 'COc1ccc(-c2cc3nccn3c(Nc3ncccc3C(N)=O)n2)cc1OC'),
    ('123631', 'COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1'),
    ('11647372', 'FC(F)c1nc2ccccc2n1-c1nc(N2CCOCC2)nc(N2CCOCC2)n1'),
    ('51371303', 'CCc1cncnc1N1CCN(Cc2nc3ccc(C(F)(F)F)cc3[nH]2)CC1'),
    ('53394750', 'CN1CCc2c(c3ccccc3n2Cc2ccc(C(=O)NO)cc2)C1.OOC#CF'),
    ('6852167', 'CC(=O)Nc1nc(C)c(-c2ccc(Cl)c(S(=O)(=O)NCCO)c2)s1'),
    ('82146', 'C=C(c1ccc(C(=O)O)cc1)c1cc2c(cc1C)C(C)(C)CCC2(C)C'),
    ('46191454', 'CC(C)CC(=O)Nc1n[nH]c2c1CN(C(=O)C1CCN(C)CC1)C2(C)C'),
    ('9952773', 'CCc1nc(-c2cccc(C)c2)c(-c2ccnc(NC(=O)c3ccccc3)c2)s1'),
    ('16720766', 'NS(=O)(=O)OCC1CC(n2ccc3c(NC4CCc5ccccc54)ncnc32)CC1O'),
    ('11178236', 'COCCn1c2c([n+](Cc3cnccn3)c1C)C(=O)c1ccccc1C2=O.[Br-]'),
    ('5717801', 'O=C(C=Cc1ccccc1)NC(NC(=S)Nc1cccc2cccnc12)C(Cl)(Cl)Cl'),
    ('9931953', 'CNCc1ccc(-c2[nH]c3cc(F)cc4c3c2CCNC4=O)cc1.O=P(O)(O)O'),
    ('5329102', 'CCN(CC)CCNC(=O)c1c(C)[nH]c(C=C2C(=O)Nc3ccc(F)cc32)c1C'),
    ('10184653', 'CN(C)CC=CC(=O)Nc1cc2c(Nc3ccc(F)c(Cl)c3)ncnc2cc1OC1CCOC1'),
    ('5330286', 'CC(=O)c1c(C)c2cnc(Nc3ccc(N4CCNCC4)cn3)nc2n(C2CCCC2)c1=O'),
    ('11640390', 'CC1(O)CC(c2nc(-c3ccc4ccc(-c5ccccc5)nc4c3)c3c(N)nccn23)C1'),
    ('46843772', 'CCOc1cc(N2CCC(O)CC2)ccc1Nc1ncc2c(n1)N(C)c1ccccc1C(=O)N2C'),
    ('10074640', 'Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nc(-c2cccnc2)cs1'),
    ('9938202', 'Cl.Cl.O=c1cc(CN2CCOCC2)occ1OCCCCCSc1ccnc2cc(C(F)(F)F)ccc12'),
    ('11676786', 'Cc1ccc(NC(=O)c2cccc(C(C)(C)C#N)c2)cc1Nc1ccc2ncn(C)c(=O)c2c1'),
    ('5494449', 'Cc1cc(Nc2cc(N3CCN(C)CC3)nc(Sc3ccc(NC(=O)C4CC4)cc3)n2)n[nH]1'),
    ('11634725', 'Cc1cnc(Nc2ccc(F)cc2Cl)nc1-c1c[nH]c(C(=O)NC(CO)c2cccc(Cl)c2)c1'),
)


def _features(config: ml_collections.ConfigDict, base: np.ndarray, cell_ids: list[str]) -> np.ndarray:
  """The matrix named by `config.cell_repr`: 'expression' = the synthetic features, or a control."""
  blocks = []
  for name in cells_lib.parse_repr(config.cell_repr):
    if name == 'expression':
      blocks.append(base)
    elif name in ('onehot', 'random'):
      blocks.append(cells_lib.builtin_control(name, config, cell_ids))
    else:
      raise ValueError(f'unknown cell representation {name!r} for synthetic data; choose from '
                       'expression, onehot, random')
  features = np.concatenate(blocks, axis=1)
  if config.shuffle_cells:
    features = features[np.random.default_rng(config.repr_seed).permutation(len(cell_ids))]
  return features


def make_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """The synthetic dataset for `config` (fields: num_cells, num_types, feature_dim, noise, seed...)."""
  rng = np.random.default_rng(config.synthetic_seed)
  graphs = [chem.smiles_to_graph(s, cid) for cid, s in DRUGS[:config.num_drugs]]
  num_cells, rank = config.num_cells, 4
  base = rng.standard_normal((num_cells, config.feature_dim)).astype(np.float32)
  cell_type = rng.integers(0, config.num_types, num_cells).astype(np.int32)
  base[:, :config.num_types] += 2.0 * np.eye(config.num_types, dtype=np.float32)[cell_type]
  cell_latent = _unit(base @ rng.standard_normal((config.feature_dim, rank)))
  drug_summary = np.stack([g.nodes.mean(0) for g in graphs])
  drug_summary = drug_summary - drug_summary.mean(0)
  drug_latent = _unit(drug_summary @ rng.standard_normal((drug_summary.shape[1], rank)))
  drug_effect = 1.5 * _unit(drug_summary @ rng.standard_normal((drug_summary.shape[1], 1)))[:, 0]
  cell_effect = 0.7 * _unit(base @ rng.standard_normal((config.feature_dim, 1)))[:, 0]
  d, c = np.meshgrid(np.arange(len(graphs)), np.arange(num_cells), indexing='ij')
  d, c = d.ravel(), c.ravel()
  y = (2.0 + drug_effect[d] + cell_effect[c] + 1.5 * (drug_latent[d] * cell_latent[c]).sum(1)
       + config.noise * rng.standard_normal(len(d)))
  keep = rng.random(len(d)) >= config.missing_fraction
  d, c, y = d[keep], c[keep], y[keep].astype(np.float32)
  d, c, y, screen, screen_ids = _screens(config, d, c, y, len(graphs))
  threshold = np.array([np.median(y[d == i]) for i in range(len(graphs))], np.float32)
  cell_ids = [f'SYN-{i:04d}' for i in range(num_cells)]
  features = _features(config, base, cell_ids)
  # Line annotations (a medium, -1: unknown; a log2 doubling time, nan: unknown) from their own
  # stream so the labels stay as they were: no signal here, but the annotation kernels' code runs.
  extra = np.random.default_rng([config.synthetic_seed, 1])
  medium = extra.integers(-1, 3, num_cells)
  doubling = np.where(extra.random(num_cells) < 0.3, np.nan, 5 + extra.standard_normal(num_cells))
  ds = Dataset(
      cell_ids=tuple(cell_ids), cell_features=features,
      cell_type=cell_type, cancer_types=tuple(f'TYPE{t}' for t in range(config.num_types)),
      drug_ids=tuple(cid for cid, _ in DRUGS[:config.num_drugs]),
      drug_names=tuple(f'drug-{cid}' for cid, _ in DRUGS[:config.num_drugs]),
      drug_graphs=chem.batch_drug_graphs(graphs), pair_cell=c.astype(np.int32),
      pair_drug=d.astype(np.int32), pair_y=y, pair_label=(y < threshold[d]).astype(np.int8),
      info={'synthetic': True, 'cell_repr': config.cell_repr,
            'shuffled': bool(config.shuffle_cells)},
      drug_smiles=tuple(s for _, s in DRUGS[:config.num_drugs]),
      line_annotations={'medium': medium.astype(np.int64), 'doubling': doubling},
      pair_screen=screen, screen_ids=screen_ids)
  return drugs.with_features(ds, config, None)


SCREEN_OFFSET = 1.5   # ln IC50 a second screen reads above the first, on every line


def _screens(config: ml_collections.ConfigDict, d: np.ndarray, c: np.ndarray, y: np.ndarray,
             num_drugs: int):
  """Pairs and screens: drug i is screen '<i + 1>' (numbers, as GDSC drug ids are: their order
  is the screening order `lodo_kernel.screening_kernel` reads); with `synthetic_screens` = k, the
  last k drugs are measured again, on the same lines, in a second screen ('<1001 + i>') that
  reads SCREEN_OFFSET higher with its own noise (as GDSC screened some drugs under two ids). The
  second screen's pairs come after the first's; labels and noise of the first are as without it."""
  screen_ids = [str(i + 1) for i in range(num_drugs)]
  k = int(config.get('synthetic_screens', 0))
  if not k:
    return d, c, y, d.astype(np.int32), tuple(screen_ids)
  again = np.flatnonzero(d >= num_drugs - k)
  noise = np.random.default_rng([config.synthetic_seed, 2]).standard_normal(len(again))
  second = num_drugs + d[again] - (num_drugs - k)
  screen_ids += [str(1001 + i) for i in range(num_drugs - k, num_drugs)]
  return (np.concatenate([d, d[again]]), np.concatenate([c, c[again]]),
          np.concatenate([y, y[again] + SCREEN_OFFSET + config.noise * noise]).astype(np.float32),
          np.concatenate([d, second]).astype(np.int32), tuple(screen_ids))


def _unit(x: np.ndarray) -> np.ndarray:
  """Columns standardised to mean 0, sd 1 / sqrt(ncols) so interactions have unit scale."""
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  return (x / np.sqrt(x.shape[1])).astype(np.float32)
