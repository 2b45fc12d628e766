"""A de-identified MR DICOM series from a NIfTI volume: the demo patients as a scanner would export them, to try
and test the DICOM path without patient data or a network.

Each axial slice (the volume's third voxel axis) becomes one classic MR Image Storage file (uint16 pixels with a
rescale slope, explicit VR little endian) whose ImagePositionPatient, ImageOrientationPatient and PixelSpacing
reproduce the NIfTI affine; UIDs are derived from ``uid_seed``, so the same call gives the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from disyre_monai.dicom.series import require_pydicom
from disyre_monai.io import atomic_path

#: LPS (DICOM) from RAS (NIfTI) world coordinates.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_MAX_STORED = 65535


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS)."""
    return f"{float(value):.10g}"


def series_uids(uid_seed: str) -> dict[str, str]:
    """Study, series and frame-of-reference UIDs derived from ``uid_seed`` (same seed, same UIDs)."""
    from pydicom.uid import generate_uid

    return {k: generate_uid(entropy_srcs=[uid_seed, k]) for k in ("study", "series", "frame")}


def nifti_to_dicom_series(
    nifti: str | os.PathLike,
    out_dir: str | os.PathLike,
    uid_seed: str,
    patient_id: str = "DISYRE-DEMO-1",
    study_uid: str | None = None,
    series_number: int = 1,
    description: str = "T1w MPRAGE (synthetic demo)",
    modality: str = "MR",
) -> list[Path]:
    """Write ``nifti`` as a DICOM series of one file per slice into ``out_dir``.

    Args:
        nifti: a 3D NIfTI volume (non-negative intensities, e.g. a demo patient in [0, 1]).
        out_dir: the folder of the series (created); files ``IM0001.dcm``, ... (slice order).
        uid_seed: seed of the UIDs (SOP instance UIDs too); different series need different seeds.
        patient_id: PatientID and PatientName (a synthetic identifier; no real patient field is written).
        study_uid: StudyInstanceUID (default: derived from ``uid_seed``); give one to put several series in one
            study.
        series_number: SeriesNumber.
        description: SeriesDescription and ProtocolName.
        modality: Modality (``"MR"``; tests use others to build wrong series).

    Returns:
        the written files, in slice order. Pixel values are ``round(v / slope)`` with ``slope = max / 65535``, so
        the series decodes to the NIfTI intensities within ``slope / 2``.
    """
    pydicom = require_pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import MRImageStorage, generate_uid

    image = nib.load(str(nifti))
    volume = np.asarray(image.dataobj, dtype=np.float64)
    if volume.ndim != 3:
        raise ValueError(f"nifti_to_dicom_series: {nifti} is not a 3D volume (shape {volume.shape}).")
    if volume.min() < 0:
        raise ValueError(f"nifti_to_dicom_series: {nifti} has negative intensities; this builder stores uint16.")
    lps = RAS_TO_LPS @ image.affine
    col_step, row_step = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    orientation = [*(lps[:3, 0] / col_step), *(lps[:3, 1] / row_step)]
    slope = float(volume.max()) / _MAX_STORED or 1.0
    stored = np.round(volume / slope).astype(np.uint16)
    uids = series_uids(uid_seed)
    study_uid = study_uid or uids["study"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(volume.shape[2]):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "instance", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, sop_uid
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_uid
        ds.PatientName = ds.PatientID = patient_id
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.PatientIdentityRemoved, ds.DeidentificationMethod = "YES", "synthetic demo data (no patient)"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, uids["series"], uids["frame"]
        ds.StudyDate = ds.SeriesDate = "20260101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.StudyDescription = "disyre-monai demo"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, k + 1
        ds.SeriesDescription = ds.ProtocolName = description
        ds.BodyPartExamined, ds.Manufacturer = "HEAD", "synthetic"
        ds.ImageType = ["DERIVED", "PRIMARY"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
        ds.SliceThickness = ds.SpacingBetweenSlices = _ds(np.linalg.norm(lps[:3, 2]))
        ds.PixelSpacing = [_ds(row_step), _ds(col_step)]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.ImagePositionPatient = [_ds(v) for v in (lps @ [0.0, 0.0, k, 1.0])[:3]]
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), "0", "US"
        ds.WindowCenter, ds.WindowWidth = _ds(volume.max() / 2), _ds(volume.max())
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = out_dir / f"IM{k + 1:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(str(tmp), write_like_original=False)
        written.append(path)
    return written
