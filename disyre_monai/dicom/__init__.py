"""DICOM in and out (ground-floor input/output, like ``io``): find and check series, read a series folder with
MONAI's pydicom reader, write the anomaly mask as DICOM SEG and the map as an overlay series, and build
de-identified demo series."""

from .build import nifti_to_dicom_series
from .reader import DicomSeriesReader
from .results import OUTPUT_FORMATS, SaveDicomResultsd, dicom_results
from .series import DicomSeries, check_series_folder, find_series, is_dicom_folder, series_problems

__all__ = ["OUTPUT_FORMATS", "DicomSeries", "DicomSeriesReader", "SaveDicomResultsd", "check_series_folder",
           "dicom_results", "find_series", "is_dicom_folder", "nifti_to_dicom_series", "series_problems"]
