"""DICOM series on disk: find them in a folder tree (grouped by ``SeriesInstanceUID``), check that each is one
volume the model can read, and name it without patient information.

Only headers are read here (``stop_before_pixels``), so a folder of thousands of files is scanned in seconds.
A series is usable when it is a classic single-frame MR image series forming one stack of parallel, evenly
spaced slices (any orientation: reorientation to RAS follows), whose transfer syntax this installation can
decode. :func:`series_problems` says, in words naming the series, why one is not; a series whose description
does not say T1 (or whose body part is not the head) is still read, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Our own result series (SEG, overlay) carry this manufacturer; a scan of a folder leaves them out.
RESULT_MANUFACTURER = "disyre-monai"
#: Fewest slices a volume needs.
MIN_SLICES = 3
#: Relative tolerance of the slice spacing (a gap above 1.5 spacings is a missing slice).
SPACING_TOLERANCE = 0.01
_LOCALIZER = re.compile(r"locali[sz]er|scout|survey|3[- ]?plane|tri[- ]?pilot|aahead", re.IGNORECASE)
_T1 = re.compile(r"t1|mprage|mp-rage|mp2rage|spgr|bravo|tfe|tfl|vibe|fspgr|mpr\b", re.IGNORECASE)
_NOT_T1 = re.compile(r"t2|flair|dwi|diffusion|\badc\b|swi|\bpd\b|proton|perf|asl|bold|fmri|tof|angio|dti",
                     re.IGNORECASE)
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR index, not a series
#: Transfer syntaxes pydicom decodes without extra packages.
_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
}
#: What to install for the compressed transfer syntaxes (pydicom's pixel data handlers).
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pillow", "1.2.840.10008.1.2.4.51": "pillow",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg", "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
}
_HEADER_TAGS = [
    "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID", "SeriesNumber", "SeriesDescription", "ProtocolName",
    "SequenceName", "Modality", "ImageType", "BodyPartExamined", "Manufacturer", "InstanceNumber", "Rows",
    "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames",
]


def require_pydicom():
    """``pydicom``, or an ImportError saying how to install the DICOM support."""
    try:
        import pydicom
    except ImportError:
        raise ImportError("DICOM input and output need pydicom and highdicom: pip install 'disyre-monai[dicom]'.") \
            from None
    return pydicom


@dataclass
class SliceHeader:
    """The header fields of one DICOM file that decide how it stacks into a volume."""

    path: Path
    transfer_syntax: str
    sop_class: str
    modality: str
    image_type: tuple[str, ...]
    instance: int | None
    rows: int | None
    columns: int | None
    frames: int
    spacing: tuple[float, ...] | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None


@dataclass
class DicomSeries:
    """One series found on disk: its identity, its descriptive header fields and its files.

    Args:
        uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        number: SeriesNumber (None when absent).
        description: SeriesDescription, else ProtocolName (may be empty).
        text: the distinct descriptive fields joined (description, protocol, sequence name), for the T1 check.
        body_part: BodyPartExamined (upper case, may be empty).
        manufacturer: Manufacturer.
        slices: one header per file.
    """

    uid: str
    study_uid: str
    number: int | None
    description: str
    text: str
    body_part: str
    manufacturer: str
    slices: list[SliceHeader] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The case name: ``series<SeriesNumber>_<first 10 hex digits of the UID's SHA-1>``.

        No patient information, no dots (file-name suffix rules would cut them), stable across runs."""
        digest = hashlib.sha1(self.uid.encode()).hexdigest()[:10]
        return f"series{self.number if self.number is not None else 'X'}_{digest}"

    @property
    def label(self) -> str:
        """How messages name the series: number, description and UID (never patient fields)."""
        number = f"series {self.number}" if self.number is not None else "series"
        text = f" {self.description!r}" if self.description else ""
        return f"{number}{text} ({self.uid}, {len(self.slices)} file(s))"

    @property
    def files(self) -> list[Path]:
        """The files, along the slice normal when the geometry allows, else by instance number and name."""
        return [s.path for s in sorted_slices(self.slices)]


def _floats(value) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def read_header(path: str | os.PathLike):
    """The header of one file (no pixels), or None when it is not a readable DICOM file."""
    pydicom = require_pydicom()
    path = Path(path)
    try:
        if not pydicom.misc.is_dicom(str(path)):
            return None
        return pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except Exception:  # noqa: BLE001 - any unreadable file is "not DICOM" here; the folder scan goes on
        return None


def _slice_of(path: Path, ds) -> SliceHeader:
    meta = getattr(ds, "file_meta", None)
    return SliceHeader(
        path=path,
        transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "")),
        sop_class=str(ds.get("SOPClassUID", "")),
        modality=str(ds.get("Modality", "")).upper(),
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
        instance=_int(ds.get("InstanceNumber")),
        rows=_int(ds.get("Rows")),
        columns=_int(ds.get("Columns")),
        frames=_int(ds.get("NumberOfFrames")) or 1,
        spacing=_floats(ds.get("PixelSpacing")),
        position=_floats(ds.get("ImagePositionPatient")),
        orientation=_floats(ds.get("ImageOrientationPatient")),
    )


def dicom_files(root: str | os.PathLike) -> list[Path]:
    """Every DICOM file in ``root`` (a file or a folder, searched recursively; hidden entries left out)."""
    root = Path(root)
    if root.is_file():
        return [root] if read_header(root) is not None else []
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / n for n in sorted(names) if not n.startswith(".")]
    return [p for p in found if p.is_file() and p.stat().st_size >= 132 and read_header(p) is not None]


def find_series(root: str | os.PathLike) -> list[DicomSeries]:
    """The DICOM series under ``root`` (a file or folder tree), grouped by SeriesInstanceUID, in SeriesNumber
    then UID order. Files that are not DICOM are ignored."""
    groups: dict[str, DicomSeries] = {}
    for path in dicom_files(root):
        ds = read_header(path)
        if ds is None or str(ds.get("SOPClassUID", "")) == _MEDIA_DIRECTORY:
            continue
        uid = str(ds.get("SeriesInstanceUID", "")) or f"no-series-uid:{path.parent}"
        if uid not in groups:
            texts = [str(ds.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName", "SequenceName")]
            groups[uid] = DicomSeries(
                uid=uid, study_uid=str(ds.get("StudyInstanceUID", "")), number=_int(ds.get("SeriesNumber")),
                description=texts[0] or texts[1], text=" ".join(dict.fromkeys(t for t in texts if t)),
                body_part=str(ds.get("BodyPartExamined", "") or "").upper(),
                manufacturer=str(ds.get("Manufacturer", "") or ""),
            )
        groups[uid].slices.append(_slice_of(path, ds))
    return sorted(groups.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """The unit normal of the slice plane from ImageOrientationPatient (row and column direction cosines)."""
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:6])
    normal = np.cross(row, col)
    return normal / max(float(np.linalg.norm(normal)), 1e-12)


def sorted_slices(slices: list[SliceHeader]) -> list[SliceHeader]:
    """Slices in the order of their position along the slice normal (the order the volume is stacked in),
    falling back to instance number and file name when the geometry is missing."""
    if slices and all(s.position and s.orientation for s in slices):
        normal = slice_normal(slices[0].orientation)
        return sorted(slices, key=lambda s: (float(np.dot(normal, s.position)), s.instance or 0, s.path.name))
    return sorted(slices, key=lambda s: (s.instance if s.instance is not None else 1 << 30, s.path.name))


def _decoder_problem(syntax: str) -> str | None:
    """Why pixel data in this transfer syntax cannot be decoded here, or None when it can."""
    if not syntax or syntax in _NATIVE_SYNTAXES:
        return None
    pydicom = require_pydicom()
    from pydicom import config

    for handler in config.pixel_data_handlers:
        try:
            if handler.supports_transfer_syntax(pydicom.uid.UID(syntax)) and handler.is_available():
                return None
        except Exception:  # noqa: BLE001 - a broken optional handler is "not available"
            continue
    name = getattr(pydicom.uid.UID(syntax), "name", syntax)
    package = _DECODER_PACKAGES.get(syntax, "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
    return (f"its pixel data is compressed ({name}, transfer syntax {syntax}) and no installed decoder reads it: "
            f"pip install {package}")


def _geometry_problem(slices: list[SliceHeader]) -> str | None:
    """Why the slices do not form one evenly spaced stack of parallel slices, or None."""
    missing = [name for name, attr in (("ImagePositionPatient", "position"), ("ImageOrientationPatient", "orientation"),
                                       ("PixelSpacing", "spacing"), ("Rows/Columns", "rows"))
               if any(getattr(s, attr) is None for s in slices)]
    if missing:
        return f"its images lack {', '.join(missing)}, so their place in the patient is unknown"
    orientations = np.asarray([s.orientation[:6] for s in slices])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        count = len({tuple(np.round(o, 3)) for o in orientations})
        return f"it is not one stack of parallel slices ({count} slice orientations; a multi-plane localizer?)"
    sizes = {(s.rows, s.columns, tuple(np.round(s.spacing[:2], 4))) for s in slices}
    if len(sizes) > 1:
        return f"its images differ in size or pixel spacing ({len(sizes)} kinds)"
    normal = slice_normal(slices[0].orientation)
    positions = np.sort([float(np.dot(normal, s.position)) for s in slices])
    steps = np.diff(positions)
    if np.any(steps < 1e-3):
        return (f"{int(np.sum(steps < 1e-3)) + 1} images share a slice position (several echoes, phases or "
                "repeats in one series); export one volume per series")
    spacing = float(np.median(steps))
    gaps = np.nonzero(steps > (1.5 - SPACING_TOLERANCE) * spacing)[0]
    if gaps.size:
        i = int(gaps[0])
        lost = int(round(steps[i] / spacing)) - 1
        return (f"{int(sum(round(steps[g] / spacing) - 1 for g in gaps))} slice(s) are missing: a gap of "
                f"{steps[i]:.3g} mm after the slice at {positions[i]:.4g} mm along the slice normal where the spacing "
                f"is {spacing:.3g} mm ({lost} slice(s) there); re-export the complete series")
    if np.abs(steps - spacing).max() > SPACING_TOLERANCE * spacing:
        return (f"its slice spacing is uneven ({steps.min():.4g} to {steps.max():.4g} mm); a volume needs evenly "
                "spaced slices: resample or re-export the series")
    return None


def series_problems(series: DicomSeries) -> tuple[list[str], list[str]]:
    """Why ``series`` cannot be read as one brain volume (errors) and what makes it doubtful (warnings).

    Errors: not an MR image series (other modality, SEG/SR/other non-image objects), a localizer, enhanced
    multi-frame images, fewer than :data:`MIN_SLICES` slices, not one stack of parallel slices, images of
    different sizes, several images at one position, missing slices or uneven spacing, a compressed transfer
    syntax without a decoder (naming the package to install).
    Warnings: the descriptive fields do not say T1 (or say T2, FLAIR, ...), or the body part is not the head.
    """
    slices = series.slices
    modalities = sorted({s.modality or "?" for s in slices})
    if modalities != ["MR"]:
        return [f"it is not an MR series (Modality {', '.join(modalities)})"], []
    if any(s.rows is None or s.columns is None for s in slices):
        return ["it holds no images (no Rows/Columns: a report, presentation state or other non-image object)"], []
    if any("LOCALIZER" in s.image_type for s in slices) or _LOCALIZER.search(series.text):
        return ["it is a localizer/scout series, not a diagnostic volume"], []
    if any(s.frames > 1 for s in slices):
        return ["it holds enhanced multi-frame images, which are not read here; export the series as classic "
                "single-frame MR images (one file per slice)"], []
    if len(slices) < MIN_SLICES:
        return [f"it has {len(slices)} image(s); a volume needs at least {MIN_SLICES} slices"], []
    errors = [p for p in (_geometry_problem(slices),) if p]
    syntaxes = sorted({s.transfer_syntax for s in slices})
    errors += [p for p in (_decoder_problem(s) for s in syntaxes) if p][:1]
    warnings = []
    if _NOT_T1.search(series.text) or not _T1.search(series.text):
        warnings.append(f"its header does not say it is T1-weighted (description {series.text!r}); the model is "
                        "trained on T1 brain scans, so its map of another contrast is not meaningful")
    if series.body_part and series.body_part not in ("HEAD", "BRAIN", "SKULL", "HEADNECK"):
        warnings.append(f"its body part is {series.body_part}, not the head")
    return errors, warnings


def check_series_folder(folder: str | os.PathLike) -> DicomSeries:
    """The one usable series a folder given as an image holds.

    Raises:
        ValueError: naming the folder: no DICOM file, several series (each named; a folder given as one image
            must hold one series: give the parent folder as ``dataset_dir`` to score each series as its own
            case), or the series' problem (:func:`series_problems`).
    """
    found = find_series(folder)
    if not found:
        raise ValueError(f"{folder}: no DICOM file in this folder.")
    if len(found) > 1:
        raise ValueError(
            f"{folder}: holds {len(found)} DICOM series ({'; '.join(s.label for s in found)}); an image folder must "
            "hold one series: pass the folder as dataset_dir to score every series as its own case."
        )
    series = found[0]
    errors, _ = series_problems(series)
    if errors:
        raise ValueError(f"{folder}: DICOM {series.label} cannot be read as a volume: {errors[0]}.")
    return series


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder whose first file (in name order) is DICOM."""
    path = Path(path)
    if not path.is_dir():
        return False
    for entry in sorted(path.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            return read_header(entry) is not None
    return False
