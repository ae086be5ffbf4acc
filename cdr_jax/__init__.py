"""cdr-jax: cancer drug response prediction from drug graphs and cell-line representations."""

import os as _os

# XLA's CPU backend (jaxlib 0.10) routes dots and their neighbours through YNNPACK fusions, which run
# this project's training step 1.5x slower (vmapped LODO steps 3x slower) on the machines measured
# (bench/train_throughput.py, bench/lodo_throughput.py). Turned off here, before JAX creates its
# backend, unless XLA_FLAGS already sets the option or CDR_XLA_DEFAULTS=1 (XLA's own defaults, for
# comparison). It only affects CPU compilation.
YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type='
if ('ynn_fusion_type' not in _os.environ.get('XLA_FLAGS', '')
    and _os.environ.get('CDR_XLA_DEFAULTS') != '1'):
  _os.environ['XLA_FLAGS'] = f'{_os.environ.get("XLA_FLAGS", "")} {YNN_FLAG}'.strip()

from cdr_jax.data.chem import smiles_to_graph  # pylint: disable=g-import-not-at-top,wrong-import-position
from cdr_jax.errors import DataError  # pylint: disable=g-import-not-at-top,wrong-import-position

__all__ = ['smiles_to_graph', 'DataError']
