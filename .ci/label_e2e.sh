#!/usr/bin/env bash
# MONAI Label app, end to end: install the `label` extra the documented way in a fresh virtual environment
# (CPU torch wheel first; MONAI Label and pydicom-seg without their own requirements), check that torch and
# numpy were left alone and torchvision was not pulled in, then run the app's tests, which start the real
# server on 127.0.0.1. Usage: bash .ci/label_e2e.sh   (set LABEL_VENV=DIR to reuse a virtual environment)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LABEL_VENV:-$(mktemp -d)/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg
start=$SECONDS
# The documented install (docs/monailabel.md):
pip install -q torch==2.13.0
pip install -q -e ".[label,test]"
pip install -q --no-deps monailabel==0.8.5 pydicom-seg==0.4.1
python - <<'PY'
import importlib.util
import numpy, torch
assert torch.__version__.startswith("2.13.0"), f"torch was replaced: {torch.__version__}"
assert int(numpy.__version__.split(".")[0]) >= 2, f"numpy was downgraded: {numpy.__version__}"
assert importlib.util.find_spec("torchvision") is None, "torchvision must not be installed by the extra"
from disyre_monai.apps.monailabel._compat import require_monailabel
require_monailabel()
print(f"label extra OK: torch {torch.__version__}, numpy {numpy.__version__}, no torchvision")
PY
echo "install: $((SECONDS - start)) s"
python -m pytest -q -p no:cacheprovider tests/apps
echo "label e2e total: $((SECONDS - start)) s"
