"""Torch helpers shared by the model modules: device, strict checkpoint checks, attention path."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from embed_torch import CheckpointError, EmbedError


def check_state_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path,
                     built_from: str) -> None:
  """Raise naming missing, unexpected and shape-mismatching keys before load_state_dict."""
  expected = model.state_dict()
  missing = sorted(set(expected) - set(state))
  unexpected = sorted(set(state) - set(expected))
  shapes = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}'
                  for k in set(expected) & set(state)
                  if state[k].shape != expected[k].shape)
  problems = [
      f"{label} ({len(keys)}): {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}"
      for label, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                          ('shape mismatches', shapes))
      if keys
  ]
  if problems:
    raise CheckpointError(f'{path}: weights do not fit the model built from {built_from}: ' +
                          '; '.join(problems))


def resolve_device(device: str) -> torch.device:
  """'cpu', 'cuda' or 'cuda:N'; asking for CUDA without it is an error, not a silent fallback."""
  try:
    torch_device = torch.device(device)
  except RuntimeError:
    raise EmbedError(f'--device {device}: expected cpu, cuda or cuda:N') from None
  if torch_device.type == 'cuda' and not torch.cuda.is_available():
    raise EmbedError(f'--device {device}: CUDA is not available on this machine')
  if torch_device.type not in ('cpu', 'cuda'):
    raise EmbedError(f'--device {device}: expected cpu, cuda or cuda:N')
  return torch_device


def load_weights_only(path: Path) -> Any:
  """torch.load with weights_only=True (no code runs on load) onto the CPU."""
  if not path.is_file():
    raise CheckpointError(f'{path}: checkpoint file not found')
  try:
    return torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises several types for corrupt or non-weight pickles
    raise CheckpointError(f'{path}: cannot load with torch.load(weights_only=True): {e}') from None


@contextlib.contextmanager
def standard_attention_path() -> Iterator[None]:
  """Turn off torch's fused encoder fast path (nested tensors) while embedding, then restore it.

  On CPU it ran about 5x slower than the standard path for ~700-token sequences, for results
  equal to 1e-7; the standard path's numerics also do not depend on that prototype feature.
  """
  previous = torch.backends.mha.get_fastpath_enabled()
  torch.backends.mha.set_fastpath_enabled(False)
  try:
    yield
  finally:
    torch.backends.mha.set_fastpath_enabled(previous)
