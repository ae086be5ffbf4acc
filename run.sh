#!/usr/bin/env bash
# Runs a cdr-jax command in the project's venv (.venv), creating and installing it first if needed.
#   bash run.sh launch/train.py --config=configs/scfoundation.py
# Set CDR_WITH_TORCH=1 to also install the PyTorch sidecar (embed_torch) into the venv.
set -euo pipefail
cd "$(dirname "$0")"
venv="${CDR_VENV:-.venv}"
stamp="$venv/.installed-$(cat requirements.txt embed_torch/requirements.txt | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r requirements.txt
  touch "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
if [[ -n "${CDR_WITH_TORCH:-}" && ! -f "$venv/.installed-torch" ]]; then
  bash embed_torch/install.sh && touch "$venv/.installed-torch"
fi
exec python "$@"
