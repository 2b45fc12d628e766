"""A batch run over series pulled from a real PACS: a demo patient's de-identified series goes into a throw-away
Orthanc, comes back through DICOMweb, and the bundle's map of it equals the map of the patient's NIfTI file.

Tolerance: absolute 1e-4 on the map (the series stores the [0, 1] intensities as uint16 with slope 1/65535, so
they come back within 7.6e-6; the map moves by at most 1.8e-5 with the shipped weights), the anomaly masks equal,
the affine equal to 1e-4 mm.
"""

import shutil

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from disyre_monai.data.demo import demo_datalist
from disyre_monai.dicom import find_series, nifti_to_dicom_series
from tests.bundle.test_bundle import INFER
from tests.pacs import orthanc_server, require_orthanc

pytestmark = pytest.mark.slow


def _infer(dataset_dir, output_dir, **overrides) -> None:
    workflow = ConfigWorkflow(config_file=INFER, workflow_type="infer", logging_file=False, device="cpu",
                              progress=False, dataset_dir=str(dataset_dir), output_dir=str(output_dir), **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def test_series_pulled_from_orthanc_score_like_the_nifti_file(tmp_path):
    require_orthanc()
    case = demo_datalist()["test"][0]
    files = nifti_to_dicom_series(case["image"], tmp_path / "export", uid_seed="pacs-batch", patient_id="DEMO^BATCH")
    pulled = tmp_path / "pulled"
    with orthanc_server(tmp_path / "orthanc") as pacs:
        pacs.upload(files)
        (series,) = find_series(tmp_path / "export")
        pacs.pull_series(series.uid, pulled / "study" / "series")
    assert len(list((pulled / "study" / "series").iterdir())) == len(files)

    _infer(pulled, tmp_path / "dicom_maps", output_format="both", staging_dir=str(tmp_path / "staging"))
    nifti_dir = tmp_path / "nifti"
    nifti_dir.mkdir()
    shutil.copy(case["image"], nifti_dir)
    _infer(nifti_dir, tmp_path / "nifti_maps")

    stem = case["image"].split("/")[-1].replace(".nii.gz", "")
    reference = nib.load(tmp_path / "nifti_maps" / f"{stem}_anomaly_map.nii.gz")
    from_pacs = nib.load(tmp_path / "dicom_maps" / f"{series.name}_anomaly_map.nii.gz")
    assert from_pacs.shape == reference.shape and np.allclose(from_pacs.affine, reference.affine, atol=1e-4)
    assert np.abs(from_pacs.get_fdata() - reference.get_fdata()).max() < 1e-4
    masks = [np.asarray(nib.load(d / f"{n}_anomaly_mask.nii.gz").dataobj)
             for d, n in ((tmp_path / "dicom_maps", series.name), (tmp_path / "nifti_maps", stem))]
    assert masks[1].any() and np.array_equal(*masks)
    assert (tmp_path / "dicom_maps" / f"{series.name}_seg.dcm").is_file()
    assert len(list((tmp_path / "dicom_maps" / f"{series.name}_overlay").iterdir())) == len(files)
