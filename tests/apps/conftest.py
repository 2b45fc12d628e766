"""Small real scans for the MONAI Label app tests: a demo patient cut to the slices around its lesion."""

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from disyre_monai.data.demo import demo_datalist

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundle"
NUM_SLICES = 16  # axial slices kept around the lesion: the same real brain, a quarter of the inference time

#: sitecustomize for the server and its training process: any connection off this machine is refused and logged.
OFFLINE_GUARD = '''
import socket, sys
_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")
def _guard(connect):
    def guarded(self, address):
        host = str(address[0]) if isinstance(address, tuple) else ""
        if self.family in (socket.AF_INET, socket.AF_INET6) and not host.startswith(_LOCAL):
            sys.stderr.write(f"OFFLINE-GUARD blocked a connection to {address}\\n")
            sys.stderr.flush()
            raise OSError(f"offline guard: no connection to {address}")
        return connect(self, address)
    return guarded
socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)
sys.stderr.write("OFFLINE-GUARD active\\n")
'''


def offline_env(guard: Path) -> dict[str, str]:
    """The environment of a server process that can reach this machine only (:data:`OFFLINE_GUARD` installed as
    ``sitecustomize`` from the new folder ``guard``) and imports this checkout."""
    guard.mkdir(parents=True)
    (guard / "sitecustomize.py").write_text(OFFLINE_GUARD)
    paths = [str(guard), str(REPO), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def save_demo_patient(path: Path, lps: bool = False) -> Path:
    """Save demo patient 0 (simulated lesion), cut to ``NUM_SLICES`` axial slices through its lesion.

    Args:
        path: output ``.nii.gz``.
        lps: store it in LPS orientation (x and y flipped, as DICOM-derived files are) instead of RAS.
    """
    case = demo_datalist()["test"][0]
    z = np.flatnonzero(np.asarray(nib.load(case["label"]).dataobj).any((0, 1)))
    start = int(max(0, (z[0] + z[-1]) // 2 - NUM_SLICES // 2))
    image = nib.load(case["image"]).slicer[:, :, start:start + NUM_SLICES]
    data, affine = np.asarray(image.dataobj, np.float32), image.affine.copy()
    if lps:
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = np.array(data.shape[:2]) - 1
        data, affine = data[::-1, ::-1].copy(), affine @ flip
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def bundle_anomaly_map(image: Path, model_path: Path, output_dir: Path) -> nib.Nifti1Image:
    """The bundle's own inference (``configs/inference.json``, CPU) of the single scan in ``image``'s folder."""
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"), workflow_type="infer", logging_file=False,
        device="cpu", progress=False, dataset_dir=str(image.parent), model_path=str(model_path),
        output_dir=str(output_dir),
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return nib.load(output_dir / image.name.replace(".nii.gz", "_anomaly_map.nii.gz"))


@pytest.fixture(scope="session")
def demo_patient(tmp_path_factory) -> Path:
    return save_demo_patient(tmp_path_factory.mktemp("patient") / "patient.nii.gz")


@pytest.fixture(scope="session")
def demo_patient_lps(tmp_path_factory) -> Path:
    return save_demo_patient(tmp_path_factory.mktemp("patient_lps") / "patient_lps.nii.gz", lps=True)
