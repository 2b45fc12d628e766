"""DICOM results of one scored series: the anomaly mask as a DICOM SEG and the anomaly map as an RGB overlay
series, both in the source's study, on the source's slices, written atomically.

- **SEG** (binary, one segment "Anomaly", one frame per source slice): each frame references its source MR slice,
  so OHIF, 3D Slicer (QuantitativeReporting) and MONAI Label read it as a label map of the source series.
- **Overlay** (Secondary Capture, RGB, one image per source slice): the scan in grey with the map in colour
  where it reaches half the threshold, the pixels at the source slice's position (ImagePositionPatient,
  ImageOrientationPatient and PixelSpacing copied), so any PACS viewer shows it and a 3D viewer places it.

Volumes arrive as MONAI arrays of the series (``(X, Y, Z)`` = columns, rows, slices in
:class:`~disyre_monai.dicom.reader.DicomSeriesReader`'s order, which is the order of
:attr:`~disyre_monai.dicom.series.DicomSeries.files`); frame ``k`` of the series is ``volume[:, :, k].T``.
UIDs are derived from the source series and the content, so writing the same result twice gives the same
instances (a PACS stores them once) and a different result gets new ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from disyre_monai._version import __version__
from disyre_monai.dicom.series import RESULT_MANUFACTURER, check_series_folder, is_dicom_folder, require_pydicom
from disyre_monai.io import atomic_path
from disyre_monai.utils import as_numpy, check_number, source_name

logger = logging.getLogger(__name__)

#: ``output_format`` values of the inference config.
OUTPUT_FORMATS = ("nifti", "dicom", "both")
#: File and folder postfixes of the DICOM outputs of a case: ``<case>_seg.dcm``, ``<case>_overlay/``.
SEG_POSTFIX, OVERLAY_POSTFIX = "seg", "overlay"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
_PATIENT_STUDY_FIELDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientIdentityRemoved", "StudyInstanceUID",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
    "FrameOfReferenceUID",
)


def output_postfixes(output_format: str) -> list[str]:
    """The outputs whose presence marks a case complete (``pending_cases``' postfixes; a postfix with a dot keeps
    its own suffix)."""
    from monai.utils import look_up_option

    output_format = look_up_option(output_format, OUTPUT_FORMATS)
    nifti = ["anomaly_map", "anomaly_mask"] if output_format != "dicom" else []
    return nifti + ([f"{SEG_POSTFIX}.dcm"] if output_format != "nifti" else [])


def read_source_series(folder: str | os.PathLike) -> list:
    """The pydicom datasets (with pixels) of the one series in ``folder``, in stacking order."""
    pydicom = require_pydicom()
    return [pydicom.dcmread(str(p)) for p in check_series_folder(folder).files]


def series_frames(volume, count: int, what: str) -> np.ndarray:
    """``(slices, rows, columns)`` frames of a ``([1,] X, Y, Z)`` volume of a series of ``count`` slices."""
    array = as_numpy(volume)
    array = array[0] if array.ndim == 4 else array
    if array.ndim != 3 or array.shape[2] != count:
        raise ValueError(f"the {what} has shape {array.shape}; the source series has {count} slices on its last axis.")
    return np.ascontiguousarray(array.transpose(2, 1, 0))


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def part10_dataset(sop_class: str, sop_instance: str):
    """An empty DICOM file dataset (128-byte preamble, file meta, explicit VR little endian) of one instance: sent
    as it is to a PACS (STOW-RS) or written to disk, it is a valid Part 10 file."""
    pydicom = require_pydicom()
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_instance
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    return ds


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def _item(**elements):
    from pydicom.dataset import Dataset

    item = Dataset()
    for name, value in elements.items():
        setattr(item, name, value)
    return item


def _copy_fields(source, target, names) -> None:
    for name in names:
        if name in source:
            setattr(target, name, source.data_element(name).value)


def segmentation(sources: list, mask_frames: np.ndarray, label: str = "Anomaly"):
    """A binary DICOM SEG (Segmentation Storage) of ``mask_frames`` (``(slices, rows, columns)``, nonzero =
    anomaly) with one frame per source slice, each referencing its source image and position.

    Built with pydicom from the SEG IOD (multi-frame functional groups, 1-bit frames): highdicom 0.22, the last
    release for pydicom 2 (which MONAI Label 0.8.5 needs), fails on numpy 2, and pydicom-seg declares numpy < 2
    (pip would downgrade numpy).
    """
    from pydicom.tag import Tag

    first = sources[0]
    mask = np.asarray(mask_frames) > 0
    if mask.shape != (len(sources), int(first.Rows), int(first.Columns)):
        raise ValueError(f"segmentation: mask frames {mask.shape} do not match {len(sources)} source slices of "
                         f"{first.Rows} x {first.Columns}.")
    content = _digest(mask.astype(np.uint8))
    sop_uid = _uid(first.SeriesInstanceUID, "seg-instance", content)
    ds = part10_dataset(SEGMENTATION, sop_uid)
    _copy_fields(first, ds, _PATIENT_STUDY_FIELDS)
    ds.SOPClassUID, ds.SOPInstanceUID = SEGMENTATION, sop_uid
    ds.SeriesInstanceUID = _uid(first.SeriesInstanceUID, "seg", content)
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SEG", _series_number(first, 9000), 1
    ds.SeriesDescription = f"DISYRE anomaly mask ({label})"
    ds.Manufacturer, ds.ManufacturerModelName = RESULT_MANUFACTURER, "DISYRE"
    ds.SoftwareVersions, ds.DeviceSerialNumber = __version__, "0"
    ds.ContentDate, ds.ContentTime = first.get("StudyDate", ""), first.get("StudyTime", "")
    ds.ContentLabel, ds.ContentDescription = "ANOMALY", "DISYRE anomaly mask (map >= threshold)"
    ds.ContentCreatorName = "DISYRE^disyre-monai"
    ds.ImageType, ds.PositionReferenceIndicator = ["DERIVED", "PRIMARY"], ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = int(first.Rows), int(first.Columns), len(sources)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.LossyImageCompression, ds.SegmentationType = "00", "BINARY"
    organisation = _uid(ds.SeriesInstanceUID, "dimensions")
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=organisation)]
    ds.DimensionIndexSequence = [
        _item(DimensionOrganizationUID=organisation, DimensionIndexPointer=Tag("ReferencedSegmentNumber"),
              FunctionalGroupPointer=Tag("SegmentIdentificationSequence"),
              DimensionDescriptionLabel="ReferencedSegmentNumber"),
        _item(DimensionOrganizationUID=organisation, DimensionIndexPointer=Tag("ImagePositionPatient"),
              FunctionalGroupPointer=Tag("PlanePositionSequence"), DimensionDescriptionLabel="ImagePositionPatient"),
    ]
    ds.SegmentSequence = [_item(
        SegmentNumber=1, SegmentLabel=label, SegmentAlgorithmType="AUTOMATIC", SegmentAlgorithmName="DISYRE",
        SegmentedPropertyCategoryCodeSequence=[_code("49755003", "SCT", "Morphologically Abnormal Structure")],
        SegmentedPropertyTypeCodeSequence=[_code("52988006", "SCT", "Lesion")],
        RecommendedDisplayCIELabValue=[54534, 54298, 50842],  # a warm orange
    )]
    measures = _item(PixelSpacing=first.PixelSpacing)
    _copy_fields(first, measures, ("SliceThickness", "SpacingBetweenSlices"))
    ds.SharedFunctionalGroupsSequence = [_item(
        PlaneOrientationSequence=[_item(ImageOrientationPatient=first.ImageOrientationPatient)],
        PixelMeasuresSequence=[measures],
    )]
    source_purpose = _code("121322", "DCM", "Source image for image processing operation")
    ds.PerFrameFunctionalGroupsSequence = [_item(
        DerivationImageSequence=[_item(
            SourceImageSequence=[_item(ReferencedSOPClassUID=source.SOPClassUID,
                                       ReferencedSOPInstanceUID=source.SOPInstanceUID,
                                       PurposeOfReferenceCodeSequence=[source_purpose])],
            DerivationCodeSequence=[_code("113076", "DCM", "Segmentation")],
        )],
        FrameContentSequence=[_item(DimensionIndexValues=[1, index + 1])],
        PlanePositionSequence=[_item(ImagePositionPatient=source.ImagePositionPatient)],
        SegmentIdentificationSequence=[_item(ReferencedSegmentNumber=1)],
    ) for index, source in enumerate(sources)]
    ds.ReferencedSeriesSequence = [_item(
        SeriesInstanceUID=first.SeriesInstanceUID,
        ReferencedInstanceSequence=[
            _item(ReferencedSOPClassUID=s.SOPClassUID, ReferencedSOPInstanceUID=s.SOPInstanceUID) for s in sources],
    )]
    bits = np.packbits(mask.reshape(-1).astype(np.uint8), bitorder="little")
    ds.PixelData = bits.tobytes() + (b"\0" if bits.size % 2 else b"")
    return ds


def _series_number(source, offset: int) -> int:
    number = source.get("SeriesNumber")
    return offset + (int(number) % 1000 if number not in (None, "") else 0)


def overlay_rgb(image_frames: np.ndarray, map_frames: np.ndarray, threshold: float) -> np.ndarray:
    """``(slices, rows, columns, 3)`` uint8: the scan in grey (1st-99th percentile window) with the map in
    'inferno' colours, 60% opaque, where it reaches ``threshold / 2`` (full colour at twice the threshold)."""
    from matplotlib import colormaps

    image = np.asarray(image_frames, dtype=np.float32)
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    grey = np.clip((image - low) / max(float(high - low), 1e-6), 0, 1)[..., None].repeat(3, axis=-1)
    floor, top = threshold / 2, max(2 * threshold, threshold / 2 + 1e-6)
    level = np.clip((np.asarray(map_frames, dtype=np.float32) - floor) / (top - floor), 0, 1)
    colour = colormaps["inferno"](0.25 + 0.75 * level)[..., :3]
    alpha = 0.6 * (np.asarray(map_frames) >= floor)[..., None]
    return np.round(255 * ((1 - alpha) * grey + alpha * colour)).astype(np.uint8)


def overlay_series(sources: list, image_frames: np.ndarray, map_frames: np.ndarray, threshold: float) -> list:
    """One RGB Secondary Capture dataset per source slice (see :func:`overlay_rgb`), in the source's study and
    frame of reference, each referencing its source slice."""
    rgb = overlay_rgb(image_frames, map_frames, threshold)
    first = sources[0]
    content = _digest(rgb)
    series_uid = _uid(first.SeriesInstanceUID, "overlay", content)
    datasets = []
    for index, (source, pixels) in enumerate(zip(sources, rgb)):
        sop_uid = _uid(series_uid, index)
        ds = part10_dataset(SECONDARY_CAPTURE, sop_uid)
        _copy_fields(source, ds, _PATIENT_STUDY_FIELDS)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = SECONDARY_CAPTURE, sop_uid, series_uid
        ds.Modality, ds.ConversionType, ds.ImageType = "OT", "WSD", ["DERIVED", "SECONDARY"]
        ds.SeriesNumber, ds.InstanceNumber = _series_number(first, 9500), index + 1
        ds.SeriesDescription = f"DISYRE anomaly map overlay (threshold {threshold:g})"
        ds.Manufacturer, ds.SoftwareVersions = RESULT_MANUFACTURER, __version__
        ds.DerivationDescription = "DISYRE anomaly map over the source image; colour from half the threshold"
        ds.BurnedInAnnotation = "NO"
        _copy_fields(source, ds, ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"))
        ds.SourceImageSequence = [_item(ReferencedSOPClassUID=source.SOPClassUID,
                                        ReferencedSOPInstanceUID=source.SOPInstanceUID)]
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixels.tobytes()
        datasets.append(ds)
    return datasets


def _write_dataset(ds, path: Path) -> None:
    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), write_like_original=False)


def write_overlay_folder(datasets: list, folder: str | os.PathLike) -> Path:
    """Write the overlay series into ``folder`` (``IM0001.dcm``, ...) as a whole: built under a temporary name,
    then swapped in, so a reader sees the old folder or the complete new one; when the swap fails the old folder is
    put back. Hidden folders a killed write of ``folder`` left behind are deleted first."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    old = None
    try:
        for index, ds in enumerate(datasets):
            ds.save_as(str(building / f"IM{index + 1:04d}.dcm"), write_like_original=False)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
            os.replace(folder, old)
        os.replace(building, folder)
    except BaseException:
        if old is not None and old.exists() and not folder.exists():
            os.replace(old, folder)
        shutil.rmtree(building, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _remove_leftovers(folder: Path) -> None:
    """Delete the hidden folders :func:`write_overlay_folder` makes for ``folder`` (``.<name>.<8 characters>.tmp``
    being built, ``.<name>.old.<pid>`` being replaced) that a killed process left; no other folder matches."""
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(?:[a-z0-9_]{{8}}\.tmp|old\.\d+)")
    for entry in folder.parent.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def dicom_results(series_folder: str | os.PathLike, anomaly_map, anomaly_mask, threshold: float) -> tuple:
    """``(seg, overlay datasets)`` of one scored series (maps on the series' grid, ``([1,] X, Y, Z)``)."""
    sources = read_source_series(series_folder)
    count = len(sources)
    from monai.data import PydicomReader

    reader = PydicomReader()
    image = np.stack([reader._get_array_data(ds, "") for ds in sources])
    seg = segmentation(sources, series_frames(anomaly_mask, count, "anomaly mask"))
    overlay = overlay_series(sources, image, series_frames(anomaly_map, count, "anomaly map"), threshold)
    return seg, overlay


class SaveDicomResultsd(MapTransform):
    """Write ``<case>_overlay/`` (the map over the scan, one RGB image per slice) and then ``<case>_seg.dcm``
    (the mask as DICOM SEG) for a case read from a DICOM series folder; the SEG is written last, so its presence
    marks the case complete.

    Args:
        keys: ``[map key, mask key]`` holding ``(1, X, Y, Z)`` volumes on the source series' grid (after
            ``Invertd``), the mask already thresholded.
        image_key: the input image, whose ``filename_or_obj`` is the series folder (the case name is its name less a
            suffix, as for the NIfTI outputs).
        output_dir: the run's output folder.
        threshold: the anomaly threshold (the overlay colours from half of it).
        require_dicom: True (``output_format="dicom"``): a case not read from DICOM is an error (nothing else
            would be written for it); False (``"both"``): such a case is skipped with a log line.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | os.PathLike = ".",
                 threshold: float = 0.5, require_dicom: bool = False) -> None:
        super().__init__(keys)
        if len(self.keys) != 2:
            raise ValueError(f"SaveDicomResultsd: keys must be [map key, mask key], got {list(self.keys)}.")
        self.image_key, self.output_dir = image_key, Path(output_dir)
        self.threshold = check_number("SaveDicomResultsd", "threshold", threshold)
        self.require_dicom = bool(require_dicom)

    def _output(self, folder: str, postfix: str) -> Path:
        """``<output_dir>/<stem>_<postfix>`` with the stem ``SaveImaged`` gives the case's NIfTI outputs (the folder
        name less a suffix: ``1.2.840.5`` -> ``1.2.840``), which the resume check (``output_postfixes``) expects."""
        from monai.data import create_file_basename

        return Path(create_file_basename(postfix, folder, str(self.output_dir), separate_folder=False, makedirs=False))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        folder = source_name(d[self.image_key], "")
        if not folder or not is_dicom_folder(folder):
            if self.require_dicom:
                raise ValueError(f"{folder or 'the input'}: output_format 'dicom' needs a DICOM series as input; use "
                                 "--output_format nifti (or both) for other files.")
            logger.info(f"{folder}: not a DICOM series, so no DICOM results are written for it")
            return d
        map_key, mask_key = self.keys
        seg, overlay = dicom_results(folder, d[map_key], d[mask_key], self.threshold)
        write_overlay_folder(overlay, self._output(folder, OVERLAY_POSTFIX))
        _write_dataset(seg, Path(f"{self._output(folder, SEG_POSTFIX)}.dcm"))
        return d
