"""Errors raised for bad input: each names the file, the row or id, and what was expected."""


class DataError(ValueError):
  """Input data (a file, a SMILES, an id) is not what cdr-jax expects."""
