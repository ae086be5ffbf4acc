"""Data: the entity-indexed dataset, its readers, cell and drug representations, splits, download.

`load_dataset(config.data)` is the entry point: it reads a data root laid out like DeepCDR's `data/`
folder (plus `scfoundation/`, `scgpt/`, `gdsc/`) or builds the synthetic dataset.
"""

import ml_collections

from cdr_jax.data.dataset import Dataset


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """The dataset named by `config.source`: 'deepcdr' (real data root) or 'synthetic'."""
  if config.source == 'deepcdr':
    from cdr_jax.data import deepcdr  # pylint: disable=g-import-not-at-top
    return deepcdr.load_deepcdr(config)
  if config.source == 'synthetic':
    from cdr_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.make_dataset(config)
  raise ValueError(f'unknown data source {config.source!r}; choose one of: deepcdr, synthetic')
