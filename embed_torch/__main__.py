"""Command line of the sidecar: `python -m embed_torch {scgpt,scfoundation,chemnet,...} ...`.

Examples (see embed_torch/README.md):
  python -m embed_torch scgpt --checkpoint_dir CKPT --expression expr.csv \
      --out data/scgpt/scgpt_embedding.npy --drop_nan_rows --fill_nan zero
  python -m embed_torch scfoundation --repo_dir scFoundation \
      --checkpoint scFoundation/model/models/models.ckpt --expression expr.csv \
      --out data/scfoundation/embedding.npy --drop_nan_rows --fill_nan zero
  python -m embed_torch chemnet --smiles data/deepcdr/223drugs_pubchem_smiles.txt \
      --out data/chemnet/chemnet.npy
  python -m embed_torch make_random_scgpt --out /tmp/tiny_scgpt --d_model 64 --nlayers 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from embed_torch import EmbedError
from embed_torch.io import read_gene_list
from embed_torch.preprocess import FILL_NAN, NORMALISATIONS

CANONICALISATIONS = ('largest_fragment', 'rdkit')


def _add_input_args(parser: argparse.ArgumentParser, default_normalisation: str) -> None:
  """Options shared by the two embedding commands."""
  parser.add_argument('--expression',
                      required=True,
                      help='cells x genes CSV (first column = cell id) or .h5ad')
  parser.add_argument('--out',
                      required=True,
                      help='output PATH.npy; PATH.cells.txt and PATH.json go beside it')
  parser.add_argument('--gene_column',
                      default=None,
                      help='.h5ad only: var column with gene symbols')
  parser.add_argument(
      '--drop_nan_rows',
      action='store_true',
      help='drop cells whose values are all NaN (default: refuse); the json lists them')
  parser.add_argument(
      '--fill_nan',
      choices=FILL_NAN,
      default=None,
      help="fill remaining NaN with 0 or the gene's mean over cells (default: refuse)")
  parser.add_argument('--normalisation',
                      choices=NORMALISATIONS,
                      default=default_normalisation,
                      help=f'per-cell normalisation (default: {default_normalisation})')
  parser.add_argument('--seed', type=int, default=0, help='seed of all randomness (default 0)')
  parser.add_argument('--batch_size',
                      type=int,
                      default=32,
                      help='cells per forward pass (default 32)')
  parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
  parser.add_argument('--quiet', action='store_true', help='no progress bar')


def _add_chemnet(commands: argparse._SubParsersAction) -> None:
  """The `chemnet` command: drug SMILES -> ChemNet embeddings."""
  chem = commands.add_parser('chemnet',
                             help='ChemNet drug embeddings (512-d; weights ship in fcd_torch)')
  chem.add_argument('--smiles', required=True, help='file of <id>\\t<SMILES> lines')
  chem.add_argument('--out',
                    required=True,
                    help='output PATH.npy; PATH.cells.txt (drug ids) and PATH.json go beside it')
  chem.add_argument(
      '--canonicalisation',
      choices=CANONICALISATIONS,  # chemnet_embed's, spelled out: importing it imports torch
      default='largest_fragment',
      help="RDKit canonical SMILES of the largest fragment (default), or of the whole molecule "
      "as fcd_torch does (then a salt or mixture is an error: ChemNet stops at the first '.')")
  chem.add_argument('--batch_size', type=int, default=128, help='drugs per forward pass')
  chem.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
  chem.add_argument('--threads',
                    type=int,
                    default=1,
                    help="torch CPU threads (default 1, the fastest measured; 0: torch's own)")
  chem.add_argument('--quiet', action='store_true', help='no progress bar')


def build_parser() -> argparse.ArgumentParser:
  """The argparse tree of the four commands."""
  parser = argparse.ArgumentParser(prog='python -m embed_torch',
                                   description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest='command', required=True)

  scgpt = commands.add_parser('scgpt', help='scGPT <cls> embeddings (needs the scgpt package)')
  scgpt.add_argument('--checkpoint_dir',
                     required=True,
                     help='directory with best_model.pt, args.json, vocab.json')
  scgpt.add_argument(
      '--max_length',
      type=int,
      default=None,
      help='cap on tokens per cell incl. <cls>; longer cells are subsampled with the seed '
      '(default: no cap, every expressed gene is used)')
  scgpt.add_argument(
      '--gene_list',
      default=None,
      help='optional tsv with a gene_name column: restrict/zero-pad the input to these genes')
  _add_input_args(scgpt, default_normalisation='none')

  scf = commands.add_parser('scfoundation',
                            help='scFoundation max-pooled embeddings (needs a clone of its repo)')
  scf.add_argument('--repo_dir',
                   required=True,
                   help='clone of github.com/biomap-research/scFoundation')
  scf.add_argument('--checkpoint',
                   required=True,
                   help='scFoundation checkpoint (model/models/models.ckpt)')
  scf.add_argument('--ckpt_key',
                   default='cell',
                   help='entry of the checkpoint to load (default: cell)')
  scf.add_argument('--gene_list',
                   default=None,
                   help='the 19,264-gene list (default: REPO_DIR/OS_scRNA_gene_index.19264.tsv)')
  _add_input_args(scf, default_normalisation='rowsum1e4_log1p')

  _add_chemnet(commands)

  rand = commands.add_parser(
      'make_random_scgpt',
      help='write a random-init scGPT checkpoint directory of the real architecture')
  rand.add_argument('--out', required=True, help='directory to create')
  rand.add_argument('--vocab',
                    default=None,
                    help='scGPT vocab.json (default: $CDR_DATA_DIR/scgpt/vocab.json)')
  rand.add_argument('--d_model', type=int, default=64)
  rand.add_argument('--nlayers', type=int, default=2)
  rand.add_argument('--nheads', type=int, default=4)
  rand.add_argument('--d_hid', type=int, default=64)
  rand.add_argument('--seed', type=int, default=0)
  rand.add_argument('--torch_names',
                    action='store_true',
                    help="save attention weights under torch's names instead of flash-attn's Wqkv")
  return parser


def _common(args: argparse.Namespace) -> dict:
  """Keyword arguments shared by both embedding runs."""
  return dict(seed=args.seed,
              batch_size=args.batch_size,
              device=args.device,
              normalisation=args.normalisation,
              drop_nan_rows=args.drop_nan_rows,
              fill_nan=args.fill_nan,
              gene_column=args.gene_column,
              progress=not args.quiet)


def _run(args: argparse.Namespace) -> str:
  """Dispatch one parsed command; returns what to print on success."""
  if args.command == 'scgpt':
    from embed_torch import scgpt_embed

    gene_list = read_gene_list(args.gene_list) if args.gene_list else None
    paths = scgpt_embed.run(args.expression,
                            args.checkpoint_dir,
                            args.out,
                            max_length=args.max_length,
                            gene_list=gene_list,
                            **_common(args))
    return 'wrote ' + ', '.join(str(p) for p in paths.values())
  if args.command == 'scfoundation':
    from embed_torch import scfoundation_embed

    paths = scfoundation_embed.run(args.expression,
                                   args.repo_dir,
                                   args.checkpoint,
                                   args.out,
                                   ckpt_key=args.ckpt_key,
                                   gene_list_path=args.gene_list,
                                   **_common(args))
    return 'wrote ' + ', '.join(str(p) for p in paths.values())
  if args.command == 'chemnet':
    from embed_torch import chemnet_embed

    paths = chemnet_embed.run(args.smiles,
                              args.out,
                              canonicalisation=args.canonicalisation,
                              batch_size=args.batch_size,
                              device=args.device,
                              threads=args.threads,
                              progress=not args.quiet)
    return 'wrote ' + ', '.join(str(p) for p in paths.values())
  from embed_torch import scgpt_embed

  vocab = args.vocab or _default_vocab()
  out = scgpt_embed.make_random_checkpoint(args.out,
                                           vocab,
                                           d_model=args.d_model,
                                           nlayers=args.nlayers,
                                           nheads=args.nheads,
                                           d_hid=args.d_hid,
                                           seed=args.seed,
                                           flash_names=not args.torch_names)
  return f'wrote random-init scGPT checkpoint to {out}'


def _default_vocab() -> str:
  """$CDR_DATA_DIR/scgpt/vocab.json, or an error saying to pass --vocab."""
  data_dir = os.environ.get('CDR_DATA_DIR')
  if not data_dir:
    raise EmbedError('pass --vocab PATH/vocab.json (or set CDR_DATA_DIR to the data root)')
  return str(Path(data_dir) / 'scgpt' / 'vocab.json')


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Parse, run, and turn the sidecar's own errors into a one-line message and exit code 2."""
  args = build_parser().parse_args(argv)
  try:
    print(_run(args))
  except EmbedError as e:
    print(f'embed_torch {args.command}: error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
