"""A small pure-Python stand-in for the few `torchtext.vocab` names that scgpt imports.

scgpt 0.2.4 subclasses `torchtext.vocab.Vocab` for its `GeneVocab` and builds vocabularies with
`torchtext.vocab.vocab(ordered_dict)`. torchtext's compiled extension only works with the torch
release it was built for (torch 2.3 for its last release), so importing the real package next to
torch 2.13 fails or crashes. This module provides the same behaviour for the methods scgpt uses
(token <-> index maps, insert/append, a default index) and registers itself as `torchtext` and
`torchtext.vocab` in `sys.modules`; call `install()` before `import scgpt`.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from typing import Iterable, Optional

SHIM_MARKER = '__cdr_jax_torchtext_shim__'


class _Store:
  """Index <-> token tables: what torchtext's C++ `VocabPybind` holds."""

  def __init__(self, tokens: Iterable[str] = ()) -> None:
    self.itos: list[str] = []
    self.stoi: dict[str, int] = {}
    self.default_index: Optional[int] = None
    for token in tokens:
      self.append(token)

  def append(self, token: str) -> None:
    """Add a token at the end; a token already present is an error (as in torchtext)."""
    if token in self.stoi:
      raise RuntimeError(
          f'token {token!r} already exists in the Vocab with index {self.stoi[token]}')
    self.stoi[token] = len(self.itos)
    self.itos.append(token)

  def insert(self, token: str, index: int) -> None:
    """Insert a token at `index`, shifting later tokens up by one."""
    if token in self.stoi:
      raise RuntimeError(
          f'token {token!r} already exists in the Vocab with index {self.stoi[token]}')
    if not 0 <= index <= len(self.itos):
      raise RuntimeError(f'index {index} out of range for a Vocab of size {len(self.itos)}')
    if index == len(self.itos):
      self.append(token)
      return
    self.itos.insert(index, token)
    # Only the shifted tail needs new indices.
    for i in range(index, len(self.itos)):
      self.stoi[self.itos[i]] = i


class Vocab:
  """Token <-> index vocabulary with the interface of `torchtext.vocab.Vocab` that scgpt uses."""

  def __init__(self, vocab: _Store) -> None:
    if not isinstance(vocab, _Store):
      raise TypeError(
          f'Vocab expects the store of another Vocab (its .vocab), got {type(vocab).__name__}')
    self.vocab = vocab

  def __len__(self) -> int:
    return len(self.vocab.itos)

  def __contains__(self, token: object) -> bool:
    return token in self.vocab.stoi

  def __getitem__(self, token: str) -> int:
    index = self.vocab.stoi.get(token)
    if index is not None:
      return index
    if self.vocab.default_index is None:
      raise RuntimeError(f'Token {token!r} not found and default index is not set')
    return self.vocab.default_index

  def __call__(self, tokens: list[str]) -> list[int]:
    return self.lookup_indices(tokens)

  def forward(self, tokens: list[str]) -> list[int]:
    """Indices of `tokens` (torchtext's nn.Module-style entry point)."""
    return self.lookup_indices(tokens)

  def set_default_index(self, index: Optional[int]) -> None:
    """Index returned for unknown tokens (None: unknown tokens raise)."""
    self.vocab.default_index = index

  def get_default_index(self) -> Optional[int]:
    """The index returned for unknown tokens, or None."""
    return self.vocab.default_index

  def insert_token(self, token: str, index: int) -> None:
    """Insert `token` at `index`."""
    self.vocab.insert(token, index)

  def append_token(self, token: str) -> None:
    """Add `token` at the end."""
    self.vocab.append(token)

  def lookup_token(self, index: int) -> str:
    """The token at `index`."""
    if not 0 <= index < len(self.vocab.itos):
      raise RuntimeError(f'Specified index {index} is out of bounds of the size of itos dictionary')
    return self.vocab.itos[index]

  def lookup_tokens(self, indices: list[int]) -> list[str]:
    """The tokens at `indices`."""
    return [self.lookup_token(i) for i in indices]

  def lookup_indices(self, tokens: list[str]) -> list[int]:
    """The indices of `tokens` (unknown tokens map to the default index)."""
    return [self[t] for t in tokens]

  def get_stoi(self) -> dict[str, int]:
    """A copy of the token -> index map."""
    return dict(self.vocab.stoi)

  def get_itos(self) -> list[str]:
    """A copy of the index -> token list."""
    return list(self.vocab.itos)


def vocab(
    ordered_dict: 'OrderedDict[str, int]',
    min_freq: int = 1,
    specials: Optional[list[str]] = None,
    special_first: bool = True,
) -> Vocab:
  """Build a Vocab from token -> frequency pairs in order, keeping tokens seen >= min_freq times."""
  specials = list(specials or [])
  tokens = [t for t, freq in ordered_dict.items() if freq >= min_freq and t not in specials]
  ordered = specials + tokens if special_first else tokens + specials
  return Vocab(_Store(ordered))


def build_vocab_from_iterator(
    iterator: Iterable[Iterable[str]],
    min_freq: int = 1,
    specials: Optional[list[str]] = None,
    special_first: bool = True,
) -> Vocab:
  """Build a Vocab from an iterator of token lists, most frequent first (ties alphabetical)."""
  counts: dict[str, int] = {}
  for tokens in iterator:
    for t in tokens:
      counts[t] = counts.get(t, 0) + 1
  ranked = sorted(sorted(counts.items()), key=lambda kv: kv[1], reverse=True)
  return vocab(OrderedDict(ranked),
               min_freq=min_freq,
               specials=specials,
               special_first=special_first)


def install() -> None:
  """Register this module as `torchtext.vocab` (and a bare `torchtext`) unless already imported."""
  if 'torchtext' in sys.modules and 'torchtext.vocab' in sys.modules:
    return
  package = types.ModuleType('torchtext')
  package.__path__ = [
  ]  # Marks it as a package so `import torchtext.vocab` resolves via sys.modules.
  setattr(package, SHIM_MARKER, True)
  module = sys.modules[__name__]
  package.vocab = module  # type: ignore[attr-defined]
  sys.modules['torchtext'] = package
  sys.modules['torchtext.vocab'] = module
