#!/usr/bin/env bash
# The GPU benchmark in one script (under 8 minutes on one modern GPU); JSON on stdout.
#   bash bench/gpu.sh          # on a machine with one NVIDIA GPU and JAX with CUDA installed
#   bash bench/gpu.sh --cpu    # the same measurements on the CPU, with fewer LODO folds
# Packages this project needs beyond JAX are installed, when missing, from wheels in
# $CDR_WHEELS (default bench/wheels, git-ignored), made on a networked machine with e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d bench/wheels \
#     jraph==0.0.6.dev0 rdkit==2026.9.1 ml-collections==1.1.0 tensorboardX==2.6.5 \
#     flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8 chex==0.1.92 pooch==1.9.0 ...
# and the data root at $CDR_DATA_DIR (default bench/data, a copy of ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="${CDR_WHEELS:-bench/wheels}"
export CDR_DATA_DIR="${CDR_DATA_DIR:-bench/data}"
missing=()
for module in jraph rdkit ml_collections tensorboardX flax optax orbax.checkpoint chex pooch absl; do
  python3 -c "import $module" 2>/dev/null || missing+=("$module")
done
if (( ${#missing[@]} )); then
  if [[ ! -d "$wheels" ]]; then
    echo "bench/gpu.sh: missing Python packages (${missing[*]}) and no wheels in $wheels" >&2
    exit 1
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/cdr_site "$wheels"/*.whl
  export PYTHONPATH="/tmp/cdr_site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ "${1:-}" == "--cpu" ]]; then
  export JAX_PLATFORMS=cpu
fi
python3 bench/gpu_bench.py "$@"
