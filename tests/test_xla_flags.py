"""Importing cdr_jax turns off XLA's CPU YNNPACK fusions, unless the user chose otherwise."""

import os
import subprocess
import sys

import pytest

SHOW = 'import os, cdr_jax; print(os.environ.get("XLA_FLAGS", ""))'


@pytest.mark.parametrize('env, expected', [
    ({}, '--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type='),
    ({'CDR_XLA_DEFAULTS': '1'}, '--xla_force_host_platform_device_count=2'),
])
def test_import_sets_flag_once(env, expected):
  base = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'CDR_XLA_DEFAULTS')}
  out = subprocess.run([sys.executable, '-c', SHOW], capture_output=True, text=True, check=True,
                       env={**base, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2', **env})
  assert out.stdout.strip() == expected


def test_user_setting_is_kept():
  base = {k: v for k, v in os.environ.items() if k != 'CDR_XLA_DEFAULTS'}
  chosen = '--xla_cpu_experimental_ynn_fusion_type=YNN_FUSION_TYPE_DOT'
  out = subprocess.run([sys.executable, '-c', SHOW], capture_output=True, text=True, check=True,
                       env={**base, 'XLA_FLAGS': chosen})
  assert out.stdout.strip() == chosen


def test_flag_is_live_in_this_process():
  """The flag is in effect here (cdr_jax is imported before JAX starts): no YNN fusion compiled."""
  import cdr_jax  # pylint: disable=g-import-not-at-top,unused-import
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if 'ynn_fusion_type' not in os.environ.get('XLA_FLAGS', '') or jax.default_backend() != 'cpu':
    pytest.skip('XLA defaults chosen by the environment (CDR_XLA_DEFAULTS / XLA_FLAGS)')
  f = jax.jit(jax.vmap(lambda w, x: jnp.tanh(x @ w), in_axes=(0, None)))
  text = f.lower(jnp.ones((2, 8, 8)), jnp.ones((4, 8))).compile().as_text()
  assert 'ynn' not in text
