"""Shared behaviour of the launchers."""

import functools
import sys

from cdr_jax.errors import DataError


def reporting_errors(main):
  """`main`, with bad input reported as one clear line (exit status 2) instead of a traceback."""
  @functools.wraps(main)
  def run(argv):
    try:
      return main(argv)
    except DataError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
  return run
