#!/usr/bin/env bash
# GPU check of the released (paper) network: inference (whole slice / sliding windows, fp32 / bf16) on a
# BraTS-sized volume and training steps/s at the released batch; prints a markdown table (benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh             # on a CUDA machine: well under 5 minutes on a recent GPU
#   bash benchmarks/gpu_check.sh --dry-run   # every code path on the CPU with tiny sizes
#
# Works on a CUDA workstation with the package installed, and on a bare GPU machine with only this repository
# copied and no internet, provided it has python3 with torch, numpy, scipy, scikit-image, matplotlib, tqdm,
# tensorboard and einops: the packages still missing there (MONAI, nibabel, pytorch-ignite) are installed from
# the wheels in .whl/ (git-ignored), which `bash benchmarks/fetch_gpu_wheels.sh` downloads beforehand on a
# machine that reaches PyPI. Set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import monai, nibabel, ignite" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "gpu_check: MONAI, nibabel or pytorch-ignite is missing and .whl/ holds no wheels;" \
             "run 'bash benchmarks/fetch_gpu_wheels.sh' where PyPI is reachable and copy .whl/ along." >&2
        exit 1
    fi
    site="${TMPDIR:-/tmp}/disyre_gpu_site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "gpu_check: installed $(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' ')into $site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
exec "$PY" benchmarks/gpu_check.py "$@"
