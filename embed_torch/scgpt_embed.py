"""scGPT cell embeddings: the real `scgpt.model.TransformerModel`, with a seeded embedding loop.

Follows scGPT's `embed_data` recipe (docs/DEEPCDR.md §6) but makes it reproducible: genes are matched
by symbol to the checkpoint's vocab.json, each cell becomes `<cls>` + its non-zero genes, values
are binned per cell by quantile into n_bins with *seeded* tie-breaking, sequences are never
subsampled unless `max_length` asks for it (then seeded too), and the `<cls>` output is
L2-normalised. Computation is float32 (upstream uses fp16 autocast on CUDA).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
import zlib
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from embed_torch import CheckpointError, EmbedError, InputDataError
from embed_torch import preprocess, torchtext_shim
from embed_torch.torch_common import (check_state_fits, load_weights_only, resolve_device,
                                       standard_attention_path)
from embed_torch.io import (METADATA_FORMAT, Expression, output_paths, package_versions,
                            read_expression, sha256_file, write_outputs)

CHECKPOINT_FILES = ('best_model.pt', 'args.json', 'vocab.json')
SPECIAL_TOKENS = ('<pad>', '<cls>', '<eoc>')
CLS_TOKEN = '<cls>'
# Modules on the path from tokens to the <cls> output. Everything else in a checkpoint (expression
# and MVC decoders, classifier, the generative model's flag encoder) is a training head: it is not
# loaded, and the json lists the skipped keys.
EMBEDDING_MODULES = ('encoder', 'value_encoder', 'transformer_encoder')
HEAD_MODULES = ('decoder', 'cls_decoder', 'mvc_decoder', 'grad_reverse_discriminator')
# Modules that would sit on that path in fine-tuned variants (batch labels, batch norms); not built.
UNSUPPORTED_MODULES = ('batch_encoder', 'dsbn', 'bn')
VERSIONED_PACKAGES = ('torch', 'scgpt', 'numpy', 'pandas', 'anndata', 'scanpy')
REQUIRED_ARGS = ('embsize', 'nheads', 'd_hid', 'nlayers', 'n_layers_cls', 'dropout', 'pad_token',
                 'pad_value', 'n_bins', 'input_emb_style')


def import_scgpt() -> Any:
  """Import scgpt with the torchtext stand-in registered first; flash-attn is never used."""
  torchtext_shim.install()
  with warnings.catch_warnings():
    # scgpt warns at import when flash_attn is absent; we load its weights into torch's layer.
    warnings.filterwarnings('ignore', message='flash_attn is not installed')
    import scgpt
    import scgpt.model  # noqa: F401
    import scgpt.tokenizer  # noqa: F401
  return scgpt


@dataclasses.dataclass
class LoadedScgpt:
  """A model ready for `embed`, with what the metadata needs to say about it."""

  model: torch.nn.Module
  vocab: Any  # scgpt.tokenizer.GeneVocab
  config: dict[str, Any]  # args.json
  file_hashes: dict[str, str]
  skipped_head_keys: list[str]
  renamed_flash_keys: int
  device: torch.device


def checkpoint_files(checkpoint_dir: str | Path) -> dict[str, Path]:
  """The three files of a scGPT checkpoint directory; missing ones are an error."""
  checkpoint_dir = Path(checkpoint_dir)
  if not checkpoint_dir.is_dir():
    raise CheckpointError(f'{checkpoint_dir}: checkpoint directory not found')
  files = {name: checkpoint_dir / name for name in CHECKPOINT_FILES}
  missing = [str(p) for p in files.values() if not p.is_file()]
  if missing:
    raise CheckpointError(
        f"{checkpoint_dir}: missing checkpoint file(s) {', '.join(missing)}; a scGPT checkpoint "
        f"directory holds {', '.join(CHECKPOINT_FILES)}")
  return files


def read_args(path: Path) -> dict[str, Any]:
  """args.json, checked for the keys the model needs."""
  try:
    config = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f'{path}: cannot read as JSON: {e}') from None
  missing = [k for k in REQUIRED_ARGS if k not in config]
  if missing:
    raise CheckpointError(
        f"{path}: missing key(s) {missing}; scGPT's args.json has {list(REQUIRED_ARGS)}")
  if config['input_emb_style'] != 'continuous':
    raise CheckpointError(
        f"{path}: input_emb_style {config['input_emb_style']!r} is not supported; the pretrained "
        "scGPT models use 'continuous'")
  return config


def read_vocab(path: Path) -> Any:
  """scGPT's GeneVocab from vocab.json, with the special tokens it expects."""
  scgpt = import_scgpt()
  try:
    vocab = scgpt.tokenizer.GeneVocab.from_file(path)
  except (OSError, ValueError, RuntimeError) as e:
    raise CheckpointError(f'{path}: cannot read as a scGPT vocabulary: {e}') from None
  for token in SPECIAL_TOKENS:
    if token not in vocab:
      vocab.append_token(token)  # As embed_data does; a real vocab.json already has them.
  return vocab


def build_model(config: Mapping[str, Any], vocab: Any, do_mvc: bool = False) -> torch.nn.Module:
  """scgpt's TransformerModel as args.json describes it (do_mvc adds a head unused here)."""
  scgpt = import_scgpt()
  model = scgpt.model.TransformerModel(
      ntoken=len(vocab),
      d_model=config['embsize'],
      nhead=config['nheads'],
      d_hid=config['d_hid'],
      nlayers=config['nlayers'],
      nlayers_cls=config['n_layers_cls'],
      n_cls=1,
      vocab=vocab,
      dropout=config['dropout'],
      pad_token=config['pad_token'],
      pad_value=config['pad_value'],
      do_mvc=do_mvc,
      do_dab=False,
      use_batch_labels=False,
      domain_spec_batchnorm=False,
      input_emb_style=config['input_emb_style'],
      n_input_bins=config['n_bins'],
      cell_emb_style='cls',
      explicit_zero_prob=False,
      # torch's TransformerEncoderLayer; flash-attn weights are renamed to it on load.
      use_fast_transformer=False,
      pre_norm=False,
  )
  return model


def strip_heads(model: torch.nn.Module) -> torch.nn.Module:
  """Delete the modules not on the <cls> embedding path, so a strict load covers exactly it."""
  for name in HEAD_MODULES:
    if hasattr(model, name):
      delattr(model, name)
  stray = sorted({k.split('.')[0] for k in model.state_dict()} - set(EMBEDDING_MODULES))
  if stray:
    raise EmbedError(f'scgpt TransformerModel has unexpected parameter groups {stray}')
  return model


def map_flash_names(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
  """Rename flash-attn's packed projection (`self_attn.Wqkv.*`) to torch's `self_attn.in_proj_*`.

  Both pack q, k, v in that order along dim 0, so the tensors carry over unchanged.
  """
  renamed = {}
  count = 0
  for key, value in state.items():
    new = key.replace('self_attn.Wqkv.', 'self_attn.in_proj_')
    count += new != key
    renamed[new] = value
  return renamed, count


def load_state(path: Path) -> dict[str, torch.Tensor]:
  """best_model.pt as a flat name -> tensor dict (weights_only: no code runs on load)."""
  state = load_weights_only(path)
  if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
    raise CheckpointError(
        f'{path}: expected a state_dict (name -> tensor), got {type(state).__name__}')
  return dict(state)


def load_scgpt(checkpoint_dir: str | Path, device: str = 'cpu') -> LoadedScgpt:
  """Build the model from args.json + vocab.json and load best_model.pt strictly."""
  files = checkpoint_files(checkpoint_dir)
  config = read_args(files['args.json'])
  vocab = read_vocab(files['vocab.json'])
  model = strip_heads(build_model(config, vocab))
  state, renamed = map_flash_names(load_state(files['best_model.pt']))
  heads = sorted(k for k in state if k.split('.')[0] not in EMBEDDING_MODULES)
  unsupported = [k for k in heads if k.split('.')[0] in UNSUPPORTED_MODULES]
  if unsupported:
    raise CheckpointError(
        f"{files['best_model.pt']}: has {unsupported[:3]}: batch-label or batch-norm modules of a "
        'fine-tuned scGPT change the embedding and are not supported; use a pretrained checkpoint')
  state = {k: v for k, v in state.items() if k.split('.')[0] in EMBEDDING_MODULES}
  check_state_fits(model, state, files['best_model.pt'], str(files['args.json']))
  model.load_state_dict(state, strict=True)
  torch_device = resolve_device(device)
  model.to(torch_device).eval()
  return LoadedScgpt(
      model=model,
      vocab=vocab,
      config=config,
      file_hashes={name: sha256_file(p) for name, p in files.items()},
      skipped_head_keys=heads,
      renamed_flash_keys=renamed,
      device=torch_device,
  )


def bin_values(values: np.ndarray, n_bins: int, rng: np.random.Generator) -> np.ndarray:
  """Per-cell quantile binning of positive values into 1..n_bins-1 (scGPT's scheme).

  Bin edges are the n_bins-1 quantiles of the values. A value lying on several equal edges
  (repeated values) could belong to any of those bins; upstream picks one with unseeded
  np.random, here `rng` picks uniformly among them.
  """
  edges = np.quantile(values, np.linspace(0.0, 1.0, n_bins - 1))
  left = np.digitize(values, edges)
  right = np.digitize(values, edges, right=True)
  low = np.where(right < left, right + 1, left)
  draws = rng.random(values.shape[0])
  return low + np.floor(draws * (left - low + 1)).astype(np.int64)


def cell_rng(seed: int, cell_id: str) -> np.random.Generator:
  """A generator that depends only on the seed and the cell's id (not on row order or batching)."""
  return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(cell_id.encode())]))


@dataclasses.dataclass
class Tokens:
  """One cell's model input before padding."""

  genes: np.ndarray  # int64 token ids, <cls> first
  values: np.ndarray  # float32 binned values, pad_value at <cls>
  subsampled: bool


def tokenize_cell(row: np.ndarray, gene_ids: np.ndarray, cls_id: int, pad_value: float, n_bins: int,
                  max_length: Optional[int], rng: np.random.Generator) -> Tokens:
  """<cls> + the cell's non-zero genes with binned values; seeded subsampling past max_length."""
  nonzero = np.flatnonzero(row > 0)
  bins = bin_values(row[nonzero], n_bins, rng)
  genes = gene_ids[nonzero]
  subsampled = max_length is not None and len(genes) + 1 > max_length
  if subsampled:
    keep = np.sort(rng.choice(len(genes), size=max_length - 1, replace=False))
    genes, bins = genes[keep], bins[keep]
  return Tokens(
      genes=np.concatenate([[cls_id], genes]).astype(np.int64),
      values=np.concatenate([[pad_value], bins]).astype(np.float32),
      subsampled=bool(subsampled),
  )


def match_genes(expr: Expression, vocab: Any) -> tuple[Expression, np.ndarray, dict[str, Any]]:
  """Keep the genes whose symbol is in the vocab (special tokens excluded); report the count."""
  keep = [j for j, g in enumerate(expr.genes) if g in vocab and g not in SPECIAL_TOKENS]
  if not keep:
    raise InputDataError(
        f'{expr.source}: none of its {len(expr.genes)} gene symbols (e.g. {expr.genes[:3]}) '
        f'is in the scGPT vocabulary ({len(vocab)} tokens); are the columns gene symbols?')
  genes = [expr.genes[j] for j in keep]
  kept = set(genes)
  report = {
      'input_genes': len(expr.genes),
      'matched': len(genes),
      'unmatched': [g for g in expr.genes if g not in kept],
  }
  matched = dataclasses.replace(expr, values=expr.values[:, keep], genes=genes)
  return matched, np.array([vocab[g] for g in genes], dtype=np.int64), report


def tokenize(expr: Expression, gene_ids: np.ndarray, loaded: LoadedScgpt, seed: int,
             max_length: Optional[int]) -> list[Tokens]:
  """Tokens for every cell; a cell with no expressed vocab gene is an error."""
  empty = [c for c, row in zip(expr.cells, expr.values) if not (row > 0).any()]
  if empty:
    raise InputDataError(
        f'{expr.source}: cell(s) with no expressed gene in the scGPT vocabulary: {empty[:5]}'
        f"{' ...' if len(empty) > 5 else ''}")
  cls_id = loaded.vocab[CLS_TOKEN]
  pad_value, n_bins = loaded.config['pad_value'], loaded.config['n_bins']
  return [
      tokenize_cell(row, gene_ids, cls_id, pad_value, n_bins, max_length, cell_rng(seed, cell))
      for cell, row in zip(expr.cells, expr.values)
  ]


def pad_batch(batch: Sequence[Tokens], pad_id: int,
              pad_value: float) -> tuple[torch.Tensor, torch.Tensor]:
  """Right-pad token ids with <pad> and values with pad_value to the batch's longest cell."""
  length = max(len(t.genes) for t in batch)
  genes = np.full((len(batch), length), pad_id, dtype=np.int64)
  values = np.full((len(batch), length), pad_value, dtype=np.float32)
  for i, t in enumerate(batch):
    genes[i, :len(t.genes)] = t.genes
    values[i, :len(t.values)] = t.values
  return torch.from_numpy(genes), torch.from_numpy(values)


@torch.inference_mode()
def embed_tokens(tokens: Sequence[Tokens], loaded: LoadedScgpt, batch_size: int,
                 progress: bool) -> np.ndarray:
  """Run the encoder batch by batch and return L2-normalised <cls> outputs (float32)."""
  pad_id = loaded.vocab[loaded.config['pad_token']]
  pad_value = loaded.config['pad_value']
  out = np.zeros((len(tokens), loaded.config['embsize']), dtype=np.float32)
  with tqdm(total=len(tokens), unit='cell', desc='scGPT',
            disable=not progress) as bar, standard_attention_path():
    for start in range(0, len(tokens), batch_size):
      genes, values = pad_batch(tokens[start:start + batch_size], pad_id, pad_value)
      genes, values = genes.to(loaded.device), values.to(loaded.device)
      hidden = loaded.model._encode(genes, values, src_key_padding_mask=genes.eq(pad_id))
      out[start:start + len(genes)] = hidden[:, 0, :].float().cpu().numpy()
      bar.update(len(genes))
  return out / np.linalg.norm(out, axis=1, keepdims=True)


def embed(expr: Expression,
          loaded: LoadedScgpt,
          seed: int,
          batch_size: int,
          max_length: Optional[int],
          progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
  """Cell embeddings for `expr` (already cleaned/normalised) and a report for the metadata."""
  if batch_size < 1:
    raise EmbedError(f'--batch_size must be >= 1, got {batch_size}')
  if max_length is not None and max_length < 2:
    raise EmbedError(f'--max_length must be >= 2 (<cls> + one gene), got {max_length}')
  matched, gene_ids, gene_report = match_genes(expr, loaded.vocab)
  tokens = tokenize(matched, gene_ids, loaded, seed, max_length)
  torch.manual_seed(seed)  # Nothing random runs in eval mode; this guards against surprises.
  embeddings = embed_tokens(tokens, loaded, batch_size, progress)
  lengths = np.array([len(t.genes) for t in tokens])
  report = {
      'vocab_matching': gene_report,
      'tokens_per_cell_including_cls': {
          'min': int(lengths.min()),
          'max': int(lengths.max())
      },
      'max_length': max_length,
      'cells_subsampled': int(sum(t.subsampled for t in tokens)),
      'binning': {
          'n_bins': loaded.config['n_bins'],
          'scope': 'per cell, non-zero values',
          'ties': 'uniform among tied bins, numpy Generator seeded by (seed, crc32(cell id))'
      },
  }
  return embeddings, report


def run(expression: str | Path,
        checkpoint_dir: str | Path,
        out: str | Path,
        *,
        seed: int = 0,
        batch_size: int = 32,
        device: str = 'cpu',
        max_length: Optional[int] = None,
        normalisation: str = 'none',
        gene_list: Optional[Sequence[str]] = None,
        drop_nan_rows: bool = False,
        fill_nan: Optional[str] = None,
        gene_column: Optional[str] = None,
        progress: bool = True) -> dict[str, Path]:
  """Expression file -> `out` (.npy) + .cells.txt + .json, with the scGPT in `checkpoint_dir`.

  Returns the three written paths.
  """
  output_paths(out)  # Fail on a bad --out before any work.
  raw = read_expression(expression, gene_column)
  expr, _, prep_report = preprocess.prepare(raw, drop_nan_rows, fill_nan, gene_list, normalisation)
  loaded = load_scgpt(checkpoint_dir, device)
  embeddings, embed_report = embed(expr, loaded, seed, batch_size, max_length, progress)
  metadata = {
      'format': METADATA_FORMAT,
      'model': 'scgpt',
      'embedding': {
          'n_cells': len(expr.cells),
          'dim': int(embeddings.shape[1]),
          'dtype': 'float32',
          'pooling': '<cls> token output of the transformer encoder',
          'l2_normalised': True
      },
      'input': {
          'path': str(expression),
          'sha256': sha256_file(expression),
          'cells_in_file': len(raw.cells),
          'genes_in_file': len(raw.genes)
      },
      'checkpoint': {
          'dir': str(checkpoint_dir),
          'sha256': loaded.file_hashes,
          'config': {
              k: loaded.config[k] for k in REQUIRED_ARGS
          },
          'skipped_head_keys': loaded.skipped_head_keys,
          'flash_attn_keys_renamed': loaded.renamed_flash_keys
      },
      'genes_matched': embed_report['vocab_matching']['matched'],
      'preprocessing': {
          **prep_report,
          **embed_report
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


def whole_human_style_args(d_model: int, nlayers: int, nheads: int, d_hid: int,
                           vocab_path: str) -> dict[str, Any]:
  """args.json with the keys of scGPT's whole-human release; architecture sizes as given."""
  return {
      'data_source': 'none: random initialisation (python -m embed_torch make_random_scgpt)',
      'save_dir': '',
      'load_model': None,
      'n_hvg': None,
      'valid_size_or_ratio': 0.003,
      'dist_backend': 'nccl',
      'grad_accu_steps': 1,
      'pad_token': '<pad>',
      'input_style': 'binned',
      'input_emb_style': 'continuous',
      'n_bins': 51,
      'max_seq_len': 1200,
      'training_tasks': 'both',
      'dist_url': '',
      'mask_ratio': [0.25, 0.5, 0.75],
      'trunc_by_sample': True,
      'vocab_path': vocab_path,
      'rank': 0,
      'batch_size': 32,
      'eval_batch_size': 64,
      'epochs': 0,
      'lr': 0.0001,
      'scheduler_interval': 100,
      'scheduler_factor': 0.99,
      'warmup_ratio_or_step': 10000.0,
      'no_cls': True,
      'no_cce': True,
      'fp16': True,
      'fast_transformer': True,
      'nlayers': nlayers,
      'nheads': nheads,
      'embsize': d_model,
      'd_hid': d_hid,
      'dropout': 0.2,
      'n_layers_cls': 3,
      'log_interval': 9000,
      'save_interval': 27000,
      'mask_value': -1,
      'pad_value': -2,
      'USE_CLS': False,
      'USE_CCE': False,
      'MVC': True,
      'USE_GENERATIVE_TRAINING': True,
      'world_size': 1,
      'distributed': False,
      'local_rank': 0,
      'gpu': 0,
  }


def make_random_checkpoint(out_dir: str | Path,
                           vocab_path: str | Path,
                           d_model: int = 64,
                           nlayers: int = 2,
                           nheads: int = 4,
                           d_hid: int = 64,
                           seed: int = 0,
                           flash_names: bool = True) -> Path:
  """Write a randomly initialised real-architecture scGPT checkpoint directory (for smoke tests).

  Saves the whole TransformerModel state_dict, MVC head included, and by default with
  flash-attn's `Wqkv` names as the official whole-human checkpoint has them.
  """
  vocab_path = Path(vocab_path)
  if not vocab_path.is_file():
    raise CheckpointError(f'{vocab_path}: vocab.json not found')
  if d_model % nheads:
    raise EmbedError(f'--d_model {d_model} must be divisible by --nheads {nheads}')
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  config = whole_human_style_args(d_model, nlayers, nheads, d_hid, str(vocab_path))
  vocab = read_vocab(vocab_path)
  torch.manual_seed(seed)
  model = build_model(config, vocab, do_mvc=config['MVC'])
  state = model.state_dict()
  if flash_names:
    state = {k.replace('self_attn.in_proj_', 'self_attn.Wqkv.'): v for k, v in state.items()}
  torch.save(state, out_dir / 'best_model.pt')
  (out_dir / 'args.json').write_text(json.dumps(config, indent=2) + '\n')
  (out_dir / 'vocab.json').write_bytes(vocab_path.read_bytes())
  return out_dir
