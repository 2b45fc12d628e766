"""Reading a DICOM series folder as one volume with MONAI's own ``PydicomReader``, stacked along the slice normal.

MONAI's reader stacks a folder's files in InstanceNumber order and takes the slice spacing from the z
coordinates alone; scanners do not promise either (instance numbers can run against the position, sagittal
stacks step along x). This subclass first checks the folder (:func:`~disyre_monai.dicom.series.check_series_folder`:
one series, one evenly spaced stack, decodable) and stacks the slices by their position along the normal,
so the affine from the first and last ImagePositionPatient is the series' true geometry. NIfTI and other
files are left to MONAI's other readers (``verify_suffix`` is False for them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.data import PydicomReader
from monai.utils import ensure_tuple

from disyre_monai.dicom.series import check_series_folder, is_dicom_folder


class DicomSeriesReader(PydicomReader):
    """MONAI ``ImageReader`` for one DICOM series in a folder: ``LoadImaged(keys, reader=DicomSeriesReader)``.

    The array is ``(columns, rows, slices)`` with the RAS affine (MONAI's defaults ``swap_ij`` and
    ``affine_lps_to_ras``), the same layout and world coordinates as a NIfTI conversion of the series;
    ``RescaleSlope``/``RescaleIntercept`` are applied (float32).

    Args:
        kwargs: passed to ``PydicomReader`` (e.g. ``prune_metadata``).
    """

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        names = ensure_tuple(filename)
        return len(names) == 1 and is_dicom_folder(names[0])

    def read(self, data: Sequence[str] | str, **kwargs):
        """The pydicom datasets of the folder's series, sorted along the slice normal.

        Raises:
            ValueError: naming the folder and the problem (several series, missing slices, ...).
        """
        folder = ensure_tuple(data)[0]
        series = check_series_folder(folder)
        files = [str(p) for p in series.files]
        import pydicom

        options = {**self.kwargs, **kwargs}
        self.has_series = True
        self.filenames = [files]
        return [pydicom.dcmread(f, **options) for f in files]

    def _combine_dicom_series(self, data, filenames):
        """Stack the (already sorted) slices as the last axis; the metadata of the first slice, the spacing along
        the normal and the last slice's position (for the affine)."""
        slices = list(data)
        stack = np.stack([self._get_array_data(ds, f) for ds, f in zip(slices, filenames)], axis=-1)
        first, last = slices[0], slices[-1]
        meta = self._get_meta_dict(first)
        step = 0.0
        if len(slices) > 1:
            step = float(np.linalg.norm(np.subtract(last.ImagePositionPatient, first.ImagePositionPatient)))
            step /= len(slices) - 1
        meta["spacing"] = np.asarray([*map(float, first.PixelSpacing), step])
        meta["lastImagePositionPatient"] = np.asarray(last.ImagePositionPatient, dtype=float)
        meta["spatial_shape"] = stack.shape
        return stack, meta
