"""ChemNet drug embeddings: SMILES -> the 512-d activation that the Frechet ChemNet Distance uses.

ChemNet (Preuer et al. 2018) and its weights ship inside the `fcd_torch` wheel (1.0.7, MIT), so
they load offline. The model is built by fcd_torch's own `load_imported_model` from its weights
file (read here with `weights_only=True`); the file ends at ChemNet's last LSTM, whose 512 outputs
are the penultimate layer of the published network and the activation FCD compares. Reading the
SMILES, canonicalising, tokenising and batching are written here, matching fcd_torch 1.0.7's
`SmilesDataset` symbol for symbol (same vocabulary, 350-symbol window, one-hot scaled by 1/35).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize
from tqdm import tqdm

from embed_torch import CheckpointError, EmbedError, InputDataError
from embed_torch.io import (METADATA_FORMAT, output_paths, package_versions, sha256_file,
                            write_outputs)
from embed_torch.torch_common import load_weights_only, resolve_device

WEIGHTS_FILE = 'ChemNet_v0.13_pretrained.pt'
# ChemNet's input alphabet, in its one-hot order ('X' = any other symbol, '.' = end of SMILES).
VOCAB = ('C', 'N', 'O', 'H', 'F', 'Cl', 'P', 'B', 'Br', 'S', 'I', 'Si', '#', '(', ')', '+', '-',
         '1', '2', '3', '4', '5', '6', '7', '8', '=', '[', ']', '@', 'c', 'n', 'o', 's', 'X', '.')
UNKNOWN, END = 'X', '.'
# fcd_torch reads a character followed by one of these as a single two-character symbol.
SECOND_LETTERS = frozenset('ril')
WINDOW = 350  # symbols ChemNet reads, the end symbol included; zeros pad the rest
CANONICALISATIONS = ('largest_fragment', 'rdkit')
VERSIONED_PACKAGES = ('torch', 'fcd_torch', 'rdkit', 'numpy')
_INDEX = {symbol: i for i, symbol in enumerate(VOCAB)}


@dataclasses.dataclass(frozen=True)
class Drug:
  """One line of the SMILES file."""

  id: str
  smiles: str
  line: int  # 1-based line number in the file, for error messages


@dataclasses.dataclass
class LoadedChemnet:
  """The pretrained network and what the metadata says about it."""

  model: torch.nn.Module
  dim: int
  weights: Path
  weights_sha256: str
  device: torch.device


def read_smiles_file(path: str | Path) -> list[Drug]:
  """`<id>\\t<SMILES>` lines in file order; blank lines skipped, ids unique."""
  path = Path(path)
  if not path.is_file():
    raise InputDataError(f'{path}: SMILES file not found')
  drugs: list[Drug] = []
  first_line: dict[str, int] = {}
  for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
    if not line.strip():
      continue
    fields = [f.strip() for f in line.split('\t')]
    if len(fields) != 2 or not all(fields):
      raise InputDataError(
          f'{path} line {number}: expected <id>\\t<SMILES>, got {line[:80]!r}')
    drug_id, smiles = fields
    if drug_id in first_line:
      raise InputDataError(
          f'{path} line {number}: duplicate id {drug_id!r} (first on line {first_line[drug_id]})')
    first_line[drug_id] = number
    drugs.append(Drug(drug_id, smiles, number))
  if not drugs:
    raise InputDataError(f'{path}: no <id>\\t<SMILES> lines')
  return drugs


def _bad(drug: Drug, path: Path, problem: str) -> InputDataError:
  """An error naming the file, line and id of `drug`."""
  return InputDataError(f'{path} line {drug.line}: drug {drug.id!r}: {problem}')


def canonicalise(drug: Drug, how: str, path: Path) -> tuple[str, list[str]]:
  """The SMILES ChemNet reads for `drug`, and the fragments dropped on the way.

  'rdkit' is fcd_torch's own canonicalisation (RDKit canonical SMILES of the whole molecule);
  'largest_fragment' first keeps RDKit's largest fragment (counterions and salts removed), because
  ChemNet reads a SMILES only up to its first '.'.
  """
  if how not in CANONICALISATIONS:
    raise EmbedError(f'canonicalisation {how!r}: expected one of {CANONICALISATIONS}')
  with rdBase.BlockLogs():  # RDKit logs parse errors and standardiser steps; we raise our own.
    mol = Chem.MolFromSmiles(drug.smiles)
    if mol is None or mol.GetNumAtoms() == 0:
      raise _bad(drug, path, f'RDKit cannot parse SMILES {drug.smiles!r}')
    if how == 'rdkit':
      return Chem.MolToSmiles(mol), []
    fragments = [Chem.MolToSmiles(f) for f in Chem.GetMolFrags(mol, asMols=True)]
    kept = Chem.MolToSmiles(rdMolStandardize.LargestFragmentChooser().choose(mol))
  if kept in fragments:  # always, unless RDKit's chooser ever rewrites the fragment it keeps
    fragments.remove(kept)
  return kept, fragments


def split_symbols(smiles: str) -> list[str]:
  """ChemNet's symbols of `smiles` by fcd_torch's rule, before unknown ones become 'X'."""
  symbols = []
  i = 0
  while i < len(smiles):
    width = 2 if smiles[i + 1:i + 2] in SECOND_LETTERS else 1
    symbols.append(smiles[i:i + width])
    i += width
  return symbols


def symbols_of(drug: Drug, smiles: str, path: Path) -> list[str]:
  """The symbols of a canonical SMILES; refuses what ChemNet would silently cut short."""
  if END in smiles:
    raise _bad(
        drug, path, f"SMILES {smiles!r} has {smiles.count(END) + 1} fragments and ChemNet reads "
        "only up to the first '.'; use --canonicalisation largest_fragment")
  symbols = split_symbols(smiles)
  if len(symbols) > WINDOW - 1:
    raise _bad(
        drug, path, f'SMILES {smiles!r} has {len(symbols)} symbols; ChemNet reads at most '
        f'{WINDOW - 1} plus the end symbol')
  return symbols


def one_hot(symbols: Sequence[str]) -> np.ndarray:
  """ChemNet's input (len(VOCAB), WINDOW): one-hot symbols then the end symbol, scaled by 1/35.

  The scaling is fcd_torch's (its `SmilesDataset` divides by the vocabulary size) and the weights
  were converted for it, so it is kept.
  """
  codes = [_INDEX.get(s, _INDEX[UNKNOWN]) for s in symbols] + [_INDEX[END]]
  out = np.zeros((len(VOCAB), WINDOW), dtype=np.float64)
  out[codes, np.arange(len(codes))] = 1.0
  return (out / len(VOCAB)).astype(np.float32)


def weights_path() -> Path:
  """ChemNet's weights inside the installed fcd_torch package."""
  try:
    import fcd_torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise EmbedError(f'fcd_torch is not importable ({e}): bash embed_torch/install.sh') from None
  return Path(fcd_torch.__file__).parent / WEIGHTS_FILE


def load_chemnet(device: str = 'cpu') -> LoadedChemnet:
  """Build ChemNet with fcd_torch's `load_imported_model` from its weights, in eval mode."""
  from fcd_torch.utils import load_imported_model  # pylint: disable=g-import-not-at-top

  path = weights_path()
  layers = load_weights_only(path)
  try:
    model = load_imported_model(layers)
  except (ValueError, KeyError, TypeError, RuntimeError) as e:
    raise CheckpointError(f'{path}: not a ChemNet layer list fcd_torch can build: {e}') from None
  lstms = [m for m in model.modules() if isinstance(m, torch.nn.LSTM)]
  if not lstms:
    raise CheckpointError(f'{path}: the network has no LSTM layer; is this ChemNet?')
  torch_device = resolve_device(device)
  model.to(torch_device).eval()  # eval: no dropout or other training-only behaviour
  return LoadedChemnet(model=model,
                       dim=lstms[-1].hidden_size,
                       weights=path,
                       weights_sha256=sha256_file(path),
                       device=torch_device)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
  """Run with `n` intra-op threads (0: leave torch's setting), then restore; yields the count.

  ChemNet's LSTMs step 88 times through small matrix products. Threads barely help those, and on
  a busy machine they hurt badly: 2 drugs took 7 s with 2 threads and 0.1 s with 1 on 2 shared
  cores. A fixed count also keeps the output independent of the machine's core count.
  """
  if n < 0:
    raise EmbedError(f'--threads must be >= 0, got {n}')
  previous = torch.get_num_threads()
  if n:
    torch.set_num_threads(n)
  try:
    yield torch.get_num_threads()
  finally:
    torch.set_num_threads(previous)


@torch.inference_mode()
def embed_inputs(inputs: np.ndarray, loaded: LoadedChemnet, batch_size: int,
                 progress: bool = False) -> np.ndarray:
  """ChemNet's 512-d output for each (len(VOCAB), WINDOW) input, float32, in input order."""
  if batch_size < 1:
    raise EmbedError(f'--batch_size must be >= 1, got {batch_size}')
  out = np.zeros((len(inputs), loaded.dim), dtype=np.float32)
  with tqdm(total=len(inputs), unit='drug', desc='ChemNet', disable=not progress) as bar:
    for start in range(0, len(inputs), batch_size):
      batch = torch.from_numpy(inputs[start:start + batch_size]).to(loaded.device)
      out[start:start + len(batch)] = loaded.model(batch).float().cpu().numpy()
      bar.update(len(batch))
  return out


def prepare(drugs: Sequence[Drug], canonicalisation: str,
            path: Path) -> tuple[np.ndarray, dict[str, Any]]:
  """One-hot inputs of all drugs (all checked before any model runs) and a report for the json."""
  inputs = np.zeros((len(drugs), len(VOCAB), WINDOW), dtype=np.float32)
  chemnet_smiles, removed, unknown, longest = {}, {}, Counter(), 0
  for i, drug in enumerate(drugs):
    smiles, dropped = canonicalise(drug, canonicalisation, path)
    symbols = symbols_of(drug, smiles, path)
    inputs[i] = one_hot(symbols)
    longest = max(longest, len(symbols))
    chemnet_smiles[drug.id] = smiles
    if dropped:
      removed[drug.id] = dropped
    unknown.update({s for s in symbols if s not in _INDEX})  # counted once per drug
  report = {
      'canonicalisation': canonicalisation,
      'fragments_removed': removed,
      'unknown_symbols_as_X': dict(sorted(unknown.items())),
      'max_symbols': longest,
      'window': WINDOW,
      'chemnet_smiles': chemnet_smiles,
  }
  return inputs, report


def _metadata(path: Path, n_drugs: int, loaded: LoadedChemnet, report: dict[str, Any],
              batch_size: int, threads: int) -> dict[str, Any]:
  """The json beside the embeddings: model, weights, input, preprocessing, run, versions."""
  versions = package_versions(VERSIONED_PACKAGES)
  return {
      'format': METADATA_FORMAT,
      'model': 'chemnet',
      'embedding': {
          'n_drugs': n_drugs,
          'dim': loaded.dim,
          'dtype': 'float32',
          'l2_normalised': False,
          'layer': "output of ChemNet's last LSTM (its penultimate layer), as used by FCD",
      },
      'input': {
          'path': str(path),
          'sha1': hashlib.sha1(path.read_bytes()).hexdigest(),
          'sha256': sha256_file(path),
          'drugs_in_file': n_drugs,
      },
      'checkpoint': {
          'package': 'fcd_torch',
          'fcd_torch_version': versions['fcd_torch'],
          'path': str(loaded.weights),
          'sha256': {WEIGHTS_FILE: loaded.weights_sha256},
      },
      'preprocessing': report,
      'run': {
          'device': str(loaded.device),
          'batch_size': batch_size,
          'torch_threads': threads
      },
      'versions': versions,
  }


def run(smiles_path: str | Path,
        out: str | Path,
        *,
        canonicalisation: str = 'largest_fragment',
        batch_size: int = 128,
        device: str = 'cpu',
        threads: int = 1,
        progress: bool = True) -> dict[str, Path]:
  """SMILES file -> `out` (.npy, drugs x 512) + .cells.txt (drug ids) + .json."""
  output_paths(out)  # Fail on a bad --out before any work.
  path = Path(smiles_path)
  drugs = read_smiles_file(path)
  inputs, report = prepare(drugs, canonicalisation, path)
  loaded = load_chemnet(device)
  with torch_threads(threads) as n_threads:
    embeddings = embed_inputs(inputs, loaded, batch_size, progress)
  metadata = _metadata(path, len(drugs), loaded, report, batch_size, n_threads)
  return write_outputs(out, embeddings, [d.id for d in drugs], metadata)
