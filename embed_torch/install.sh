#!/usr/bin/env bash
# Installs the PyTorch sidecar into the active venv, beside the JAX requirements (run those first).
# Quiet and idempotent: a second run changes nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  echo "embed_torch/install.sh: activate the project's venv first" >&2
  exit 1
fi
# The JAX pins act as constraints: pip fails rather than move numpy, scipy, protobuf, ...
pip install -q -r "$here/requirements.txt" -c "$root/requirements.txt"
# scgpt's declared dependencies are broken here (torchtext needs torch 2.3; orbax 0.1.7 breaks
# orbax.checkpoint): install it alone. embed_torch.torchtext_shim stands in for torchtext.vocab.
pip install -q --no-deps scgpt==0.2.4
# fcd_torch (ChemNet) after the pinned torch, alone: a no-op when the line above installed it, and
# a guarantee that it never resolves a torch of its own (an unpinned one can be a CUDA build).
pip install -q --no-deps fcd_torch==1.0.7
