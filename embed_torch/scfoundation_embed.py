"""scFoundation cell embeddings through the user's clone of github.com/biomap-research/scFoundation.

The model code is not a package, so it is imported at run time from `<repo_dir>/model` (its
`load.py`, which brings in `pretrainmodels`); nothing of it is vendored here. Around it this
module implements the published recipe (docs/DEEPCDR.md §6): symbol-match to the 19,264-gene list with
zero fill, x / rowsum * 1e4 then log1p, two extra tokens both carrying log10 of the cell's total
count (the 'resolution' tokens of scFoundation's get_embedding.py, here T = S), only values > 0
enter the encoder, and the encoder output is max-pooled over tokens -> 768-d.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import torch
from tqdm import tqdm

from embed_torch import CheckpointError, EmbedError
from embed_torch import preprocess
from embed_torch.io import (METADATA_FORMAT, Expression, output_paths, package_versions,
                            read_expression, read_gene_list, sha256_file, write_outputs)
from embed_torch.torch_common import (check_state_fits, load_weights_only, resolve_device,
                                       standard_attention_path)

GENE_LIST_NAME = 'OS_scRNA_gene_index.19264.tsv'
N_RESOLUTION_TOKENS = 2
VERSIONED_PACKAGES = ('torch', 'numpy', 'pandas', 'anndata', 'einops', 'local-attention')
_LOADER_MODULE = '_embed_torch_scfoundation_load'


@dataclasses.dataclass
class LoadedScfoundation:
  """The pretrained model, its config and what the metadata says about them."""

  model: torch.nn.Module
  config: dict[str, Any]
  dim: int
  checkpoint_sha256: str
  device: torch.device


@contextlib.contextmanager
def _on_sys_path(path: Path) -> Iterator[None]:
  """Put the repo's model/ folder first on sys.path while its modules import."""
  sys.path.insert(0, str(path))
  try:
    yield
  finally:
    sys.path.remove(str(path))


def import_loader(repo_dir: str | Path) -> ModuleType:
  """Import `<repo_dir>/model/load.py` (scFoundation's loader) as a private module."""
  model_dir = Path(repo_dir) / 'model'
  load_py = model_dir / 'load.py'
  if not load_py.is_file():
    raise CheckpointError(
        f'{repo_dir}: {load_py} not found; --repo_dir must be a clone of scFoundation')
  # A previous repo's `pretrainmodels` would shadow this one's: import it afresh.
  for name in [n for n in sys.modules if n == 'pretrainmodels' or n.startswith('pretrainmodels.')]:
    del sys.modules[name]
  spec = importlib.util.spec_from_file_location(_LOADER_MODULE, load_py)
  module = importlib.util.module_from_spec(spec)
  with _on_sys_path(model_dir):
    try:
      spec.loader.exec_module(module)
    except ImportError as e:
      raise EmbedError(
          f"{load_py}: importing scFoundation's model code failed: {e}. Its model code needs "
          'einops and local-attention (see embed_torch/README.md)') from None
  for name in ('convertconfig', 'select_model'):
    if not hasattr(module, name):
      raise CheckpointError(f"{load_py}: has no {name}(); is this scFoundation's model/load.py?")
  return module


def load_scfoundation(repo_dir: str | Path, checkpoint: str | Path, key: str,
                      device: str) -> LoadedScfoundation:
  """Build the model with the repo's `select_model` and load the `key` entry strictly.

  Same steps as the repo's `load_model_frommmf`, minus its unconditional `.cuda()` and with
  `weights_only=True`.
  """
  checkpoint = Path(checkpoint)
  loader = import_loader(repo_dir)
  entries = load_weights_only(checkpoint)
  if not isinstance(entries, Mapping) or key not in entries:
    available = sorted(entries) if isinstance(entries, Mapping) else type(entries).__name__
    raise CheckpointError(f'{checkpoint}: no entry {key!r} (--ckpt_key); found {available}')
  try:
    converted = loader.convertconfig(entries[key])
  except (KeyError, IndexError, TypeError) as e:
    raise CheckpointError(
        f'{checkpoint}: entry {key!r} is not an scFoundation checkpoint: {e!r}') from None
  config = converted['config']
  with _on_sys_path(Path(repo_dir) / 'model'):
    model = loader.select_model(config)
  state = dict(converted['model_state_dict'])
  check_state_fits(model, state, checkpoint, f'the config stored under {key!r}')
  model.load_state_dict(state, strict=True)
  torch_device = resolve_device(device)
  model.to(torch_device).eval()
  return LoadedScfoundation(model=model,
                            config=config,
                            dim=int(config['encoder']['hidden_dim']),
                            checkpoint_sha256=sha256_file(checkpoint),
                            device=torch_device)


def with_resolution_tokens(values: np.ndarray, totals: np.ndarray) -> np.ndarray:
  """Append two columns, both log10(total count): the T and S tokens with T = S."""
  if not (totals > 0).all():
    raise EmbedError('every cell needs a positive total count for the log10 resolution tokens')
  log_total = np.log10(totals)[:, None]
  return np.hstack([values, log_total, log_total]).astype(np.float32)


def gather_nonzero(batch: np.ndarray,
                   pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
  """Per row, the values > 0 and their positions, in gene order, right-padded with pad_token_id.

  Returns (values, positions, padding mask). Padding is marked by length, not by comparing
  values with pad_token_id.
  """
  keep = batch > 0
  counts = keep.sum(axis=1)
  length = int(counts.max())
  values = np.full((len(batch), length), pad_token_id, dtype=np.float32)
  positions = np.full((len(batch), length), pad_token_id, dtype=np.int64)
  for i, row in enumerate(batch):
    index = np.flatnonzero(keep[i])
    values[i, :len(index)] = row[index]
    positions[i, :len(index)] = index
  padding = np.arange(length)[None, :] >= counts[:, None]
  return torch.from_numpy(values), torch.from_numpy(positions), torch.from_numpy(padding)


@torch.inference_mode()
def embed_matrix(tokens: np.ndarray, loaded: LoadedScfoundation, batch_size: int,
                 progress: bool) -> np.ndarray:
  """Encoder over the non-zero tokens of each row, max-pooled over real (unpadded) tokens."""
  out = np.zeros((len(tokens), loaded.dim), dtype=np.float32)
  model, device = loaded.model, loaded.device
  with tqdm(total=len(tokens), unit='cell', desc='scFoundation',
            disable=not progress) as bar, standard_attention_path():
    for start in range(0, len(tokens), batch_size):
      values, positions, padding = gather_nonzero(tokens[start:start + batch_size],
                                                  loaded.config['pad_token_id'])
      values, positions, padding = values.to(device), positions.to(device), padding.to(device)
      x = model.token_emb(values.unsqueeze(2), output_weight=0) + model.pos_emb(positions)
      hidden = model.encoder(x, padding)
      pooled = hidden.masked_fill(padding.unsqueeze(2), float('-inf')).amax(dim=1)
      out[start:start + len(values)] = pooled.float().cpu().numpy()
      bar.update(len(values))
  return out


def embed(expr: Expression,
          totals: np.ndarray,
          loaded: LoadedScfoundation,
          batch_size: int,
          progress: bool = True) -> np.ndarray:
  """Embeddings of `expr` (aligned to the gene list, normalised) given raw per-cell totals."""
  if batch_size < 1:
    raise EmbedError(f'--batch_size must be >= 1, got {batch_size}')
  n_positions = expr.values.shape[1] + N_RESOLUTION_TOKENS
  capacity = getattr(loaded.model.pos_emb, 'num_embeddings', None)
  if capacity is not None and n_positions > capacity:
    raise EmbedError(
        f"the gene list gives {n_positions} token positions (genes + 2) but the model's position "
        f"embedding has {capacity}; use scFoundation's own {GENE_LIST_NAME}")
  return embed_matrix(with_resolution_tokens(expr.values, totals), loaded, batch_size, progress)


def run(expression: str | Path,
        repo_dir: str | Path,
        checkpoint: str | Path,
        out: str | Path,
        *,
        ckpt_key: str = 'cell',
        gene_list_path: Optional[str | Path] = None,
        seed: int = 0,
        batch_size: int = 32,
        device: str = 'cpu',
        normalisation: str = 'rowsum1e4_log1p',
        drop_nan_rows: bool = False,
        fill_nan: Optional[str] = None,
        gene_column: Optional[str] = None,
        progress: bool = True) -> dict[str, Path]:
  """Expression file -> `out` (.npy) + .cells.txt + .json with scFoundation from `repo_dir`."""
  output_paths(out)  # Fail on a bad --out before any work.
  gene_list_path = Path(gene_list_path) if gene_list_path else Path(repo_dir) / GENE_LIST_NAME
  gene_list = read_gene_list(gene_list_path)
  raw = read_expression(expression, gene_column)
  expr, totals, prep_report = preprocess.prepare(raw, drop_nan_rows, fill_nan, gene_list,
                                                 normalisation)
  preprocess.check_totals(totals, expr)  # log10(total) needs a positive total.
  loaded = load_scfoundation(repo_dir, checkpoint, ckpt_key, device)
  torch.manual_seed(seed)  # Nothing random runs in eval mode; this guards against surprises.
  embeddings = embed(expr, totals, loaded, batch_size, progress)
  metadata = {
      'format': METADATA_FORMAT,
      'model': 'scfoundation',
      'embedding': {
          'n_cells':
              len(expr.cells),
          'dim':
              loaded.dim,
          'dtype':
              'float32',
          'l2_normalised':
              False,
          'pooling':
              'max over the encoder outputs of all non-zero tokens incl. the two total-count tokens'
      },
      'input': {
          'path': str(expression),
          'sha256': sha256_file(expression),
          'cells_in_file': len(raw.cells),
          'genes_in_file': len(raw.genes)
      },
      'checkpoint': {
          'repo_dir': str(repo_dir),
          'path': str(checkpoint),
          'key': ckpt_key,
          'sha256': {
              Path(checkpoint).name: loaded.checkpoint_sha256
          },
          'gene_list': str(gene_list_path),
          'gene_list_sha256': sha256_file(gene_list_path)
      },
      'genes_matched': prep_report['gene_list_alignment']['input_genes_matched'],
      'preprocessing': {
          **prep_report, 'resolution_tokens': 'log10(total count of the aligned input row), twice',
          'encoder_input': 'values > 0 only, in gene-list order'
      },
      'seed': seed,
      'run': {
          'device': str(loaded.device),
          'batch_size': batch_size,
          'torch_threads': torch.get_num_threads()
      },
      'versions': package_versions(VERSIONED_PACKAGES),
  }
  return write_outputs(out, embeddings, expr.cells, metadata)
