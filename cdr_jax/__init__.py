"""cdr-jax: cancer drug response prediction from drug graphs and cell-line representations."""

from cdr_jax.chem import smiles_to_graph
from cdr_jax.errors import DataError

__all__ = ['smiles_to_graph', 'DataError']
