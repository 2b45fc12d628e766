#!/usr/bin/env bash
# Download the pure-Python wheels that benchmarks/gpu_check.sh installs on a GPU machine without internet
# (one with python3, torch, numpy, scipy, scikit-image, matplotlib, tqdm, tensorboard and einops but without
# MONAI, nibabel or pytorch-ignite) into .whl/ (git-ignored). Versions: those installed in the current Python
# environment (the one the tests pass in), else the newest. Needs pip and access to PyPI.
#
#   bash benchmarks/fetch_gpu_wheels.sh && ls .whl/
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
mkdir -p .whl
for name in monai nibabel pytorch-ignite; do
    version="$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --dest .whl "$name${version:+==$version}"
done
ls .whl
