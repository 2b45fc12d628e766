"""The throw-away Orthanc of tests/pacs.py: store a small MR series, list it, pull it back through DICOMweb."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from tests.pacs import find_orthanc, orthanc_server


def write_mr_series(folder: Path, slices: int = 3, size: int = 8) -> list[Path]:
    """Write a tiny valid MR series, one uint16 slice per file.

    Args:
        folder: Where to write ``slice<N>.dcm`` (created if missing).
        slices: Number of slices.
        size: Rows and columns of each slice.

    Returns:
        The paths of the files, in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    paths = []
    for index in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.StudyID, ds.AccessionNumber = "Test^Pacs", "PACS001", "1", ""
        ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20240101", "120000", ""
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = "MR", 1, "T1 test", index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
        path = folder / f"slice{index}.dcm"
        ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


def test_orthanc_store_list_and_pull_back(tmp_path: Path) -> None:
    try:
        find_orthanc()
    except RuntimeError as error:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(error))  # the message holds ORTHANC_INSTALL_HINT

    originals = write_mr_series(tmp_path / "series")
    first = pydicom.dcmread(originals[0])
    with orthanc_server(tmp_path / "orthanc") as pacs:
        assert len(pacs.upload(originals)) == 3
        assert pacs.studies() == [first.StudyInstanceUID]
        assert pacs.series_of_study(first.StudyInstanceUID) == [
            {"SeriesInstanceUID": first.SeriesInstanceUID, "Modality": "MR", "SeriesDescription": "T1 test",
             "instances": 3}
        ]
        pulled = pacs.pull_series(first.SeriesInstanceUID, tmp_path / "pulled")

    assert len(pulled) == 3
    pulled_by_uid = {pydicom.dcmread(path).SOPInstanceUID: path for path in pulled}
    for path in originals:
        original = pydicom.dcmread(path)
        copy = pydicom.dcmread(pulled_by_uid[original.SOPInstanceUID])
        assert copy.SeriesInstanceUID == original.SeriesInstanceUID
        np.testing.assert_array_equal(copy.pixel_array, original.pixel_array)
