"""Gathers and segment sums that run once for all stacked models under `jax.vmap`.

The LODO sweep vmaps the single-model step over F fold models that share their index arrays (the
drug graphs' edges, the batch's pairs) but not their activations. Batched by vmap's own rules, a
gather or scatter over [F, rows, features] becomes an indexed loop over F strided windows, about
2.4x slower on a CPU than F plain ones (bench/lodo_throughput.py). These functions define their
own batching: the model axis goes inside the feature axis, [rows, F * features], and ONE plain
gather or segment sum does every model's work. Unbatched (F = 1, a single run) they are the plain
operations. Each is linear, with its transpose as its custom VJP, so gradients take the same path.
"""

import functools

import jax
import jax.numpy as jnp


def _fold(x: jax.Array) -> jax.Array:
  """[F, rows, ...] -> [rows, F * prod(...)]."""
  return jnp.moveaxis(x, 0, 1).reshape(x.shape[1], -1)


def _unfold(x: jax.Array, num_models: int, feature_shape: tuple) -> jax.Array:
  """[rows, F * prod(feature_shape)] -> [F, rows, *feature_shape]."""
  return jnp.moveaxis(x.reshape(x.shape[0], num_models, *feature_shape), 1, 0)


def _batched_rule(plain):
  """A custom_vmap rule: with only the first argument batched, run `plain` once on the folded
  layout; otherwise fall back to vmapping `plain` itself."""
  def rule(axis_size, in_batched, x, *rest):
    if in_batched[0] and not any(in_batched[1:]):
      out = plain(_fold(x), *rest)
      return _unfold(out, axis_size, x.shape[2:]), True
    axes = tuple(0 if b else None for b in in_batched)
    return jax.vmap(plain, in_axes=axes, axis_size=axis_size)(x, *rest), True
  return rule


def _take_rows(table, idx):
  return table[idx]


def _sum_rows(values, idx, num_rows: int):
  return jax.ops.segment_sum(values, idx, num_segments=num_rows)


_take = jax.custom_batching.custom_vmap(_take_rows)
_take.def_vmap(_batched_rule(_take_rows))


@functools.lru_cache(maxsize=None)
def _make_sum(num_rows: int):
  f = jax.custom_batching.custom_vmap(lambda values, idx: _sum_rows(values, idx, num_rows))
  f.def_vmap(_batched_rule(lambda values, idx: _sum_rows(values, idx, num_rows)))
  return f


@jax.custom_vjp
def take_rows(table: jax.Array, idx: jax.Array) -> jax.Array:
  """table[idx] (rows), folded under vmap over stacked tables."""
  return _take(table, idx)


def _take_fwd(table, idx):
  return _take(table, idx), (idx, table.shape[0])


def _take_bwd(res, g):
  idx, num_rows = res
  return _make_sum(num_rows)(g, idx), None


take_rows.defvjp(_take_fwd, _take_bwd)


def sum_rows(values: jax.Array, idx: jax.Array, num_rows: int) -> jax.Array:
  """segment_sum(values, idx, num_rows), folded under vmap over stacked values."""
  return _sum_rows_vjp(values, idx, num_rows)


@jax.custom_vjp
def _sum_rows_vjp_impl(values, idx, zeros):
  return _make_sum(zeros.shape[0])(values, idx)


def _sum_fwd(values, idx, zeros):
  return _make_sum(zeros.shape[0])(values, idx), idx


def _sum_bwd(idx, g):
  return _take(g, idx), None, None


_sum_rows_vjp_impl.defvjp(_sum_fwd, _sum_bwd)


def _sum_rows_vjp(values, idx, num_rows):
  # The number of rows travels as the shape of a zero-size array (custom_vjp arguments are arrays).
  return _sum_rows_vjp_impl(values, idx, jnp.zeros((num_rows, 0), values.dtype))
