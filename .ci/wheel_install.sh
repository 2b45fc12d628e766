#!/usr/bin/env bash
# A hospital's install: build the wheel, install it (not editable) into a fresh virtual environment, copy the
# bundle out of the installed package, and run that copy's inference on the embedded demo from a folder that
# has nothing to do with the checkout. Usage: bash .ci/wheel_install.sh   (about 2 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$SECONDS
export PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
pip install -q torch==2.13.0
pip wheel -q --no-deps -w "$work/dist" "$repo"
pip install -q "$work"/dist/disyre_monai-*.whl
echo "wheel built and installed: $((SECONDS - start)) s"
mkdir "$work/elsewhere" && cd "$work/elsewhere"
python - <<'PY'
import disyre_monai
from disyre_monai.commands.bundle import locate_bundle
root = locate_bundle()
assert "site-packages" in str(root), f"the bundle must come from the installed wheel, not a checkout: {root}"
assert "site-packages" in disyre_monai.__file__, disyre_monai.__file__
print(f"bundle in the installed package: {root}")
PY
disyre-monai bundle my_bundle
python -m monai.bundle run inference --config_file my_bundle/configs/inference.json --output_dir maps --device cpu \
    --progress False
python - <<'PY'
from pathlib import Path
import nibabel as nib
from disyre_monai.data.demo import demo_datalist
maps = sorted(Path("maps").glob("*_anomaly_map.nii.gz"))
cases = demo_datalist()["test"]
assert len(maps) == len(cases), f"{len(maps)} maps for {len(cases)} demo patients"
for case in cases:
    name = Path(case["image"]).name.replace(".nii.gz", "")
    image, amap = nib.load(case["image"]), nib.load(f"maps/{name}_anomaly_map.nii.gz")
    assert amap.shape == image.shape and (abs(amap.affine - image.affine) < 1e-4).all(), name
print(f"inference of the copied bundle from {Path.cwd()}: {len(maps)} anomaly maps on their inputs' grids")
PY
# DICOM in and out from the wheel: a demo patient as a DICOM series, scored with DICOM results.
python -c "
from disyre_monai.data.demo import demo_datalist
from disyre_monai.dicom import nifti_to_dicom_series
nifti_to_dicom_series(demo_datalist()['test'][0]['image'], 'dicom_in/patient', uid_seed='wheel')"
python -m monai.bundle run inference --config_file my_bundle/configs/inference.json --dataset_dir dicom_in \
    --output_dir dicom_out --output_format both --device cpu --progress False
python - <<'PY'
from pathlib import Path
import pydicom
(seg,) = Path("dicom_out").glob("series1_*_seg.dcm")
overlay = sorted(Path("dicom_out").glob("series1_*_overlay/*.dcm"))
assert pydicom.dcmread(seg).Modality == "SEG" and len(overlay) == 91, (seg, len(overlay))
assert list(Path("dicom_out").glob("series1_*_anomaly_map.nii.gz")), "no NIfTI map of the DICOM series"
print(f"DICOM series in, SEG + {len(overlay)}-image overlay series out: {seg.name}")
PY
# The commands that read the bundle, run from the wheel (0.3.1 looked for it where only a checkout keeps it), and
# the MONAI Label command's help (the server module imports without the extra).
disyre-monai validate dicom_in
disyre-monai evaluate maps --output_dir report --progress False
test -s report/metrics.json
PAGER=cat disyre-monai label --help >/dev/null
# A user's mistake ends in one line (exit status 2), not a traceback.
if disyre-monai evaluate no_such_maps 2>mistake.txt; then echo "evaluate accepted a missing folder"; exit 1; fi
if [ "$(wc -l <mistake.txt)" -ne 1 ] || ! grep -q "disyre-monai evaluate: FileNotFoundError" mistake.txt; then
    cat mistake.txt; echo "a missing maps folder must end in one line"; exit 1
fi
# A site calibration of the copied bundle's weights on a healthy demo brain, which its inference then uses.
mkdir healthy
python -c "
import shutil
from disyre_monai.data.demo import demo_datalist
shutil.copy(demo_datalist()['validation'][0]['image'], 'healthy/')"
disyre-monai calibrate healthy --model_path my_bundle/models/model.pt --fpr 0.01 --device cpu --progress False
python -m monai.bundle run inference --config_file my_bundle/configs/inference.json --output_dir maps_site \
    --device cpu --progress False
python -c "
import json
record = json.load(open('maps_site/threshold.json'))
assert record['calibrated'] and record['calibration']['scans'] == 1, record
print(f'site threshold {record[\"threshold\"]:.4f} used by the inference of the copied bundle')"
echo "wheel install test: $((SECONDS - start)) s"
