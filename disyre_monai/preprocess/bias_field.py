"""Step 4 (optional): N4 bias-field correction (Tustison et al., IEEE TMI 2010) through SimpleITK.

The multiplicative field is fitted inside the brain on a shrunk copy (fast), evaluated at full resolution
and divided out: ``corrected = image / exp(log_bias)``. Voxels outside the brain keep their (zero) value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.data import MetaTensor

from disyre_monai.preprocess.settings import PreprocessSettings
from disyre_monai.preprocess.sitk_bridge import array_to_sitk, require_sitk
from disyre_monai.preprocess.volumes import affine_of, spatial_array, with_array
from disyre_monai.utils import check_int

_DEFAULTS = PreprocessSettings()  # the step's defaults are the settings' defaults


def n4_bias_correction(
    image: MetaTensor,
    brain_mask: MetaTensor,
    shrink_factor: int = _DEFAULTS.n4_shrink_factor,
    iterations: Sequence[int] = _DEFAULTS.n4_iterations,
) -> MetaTensor:
    """Correct the slow intensity inhomogeneity of ``image`` ``(1, X, Y, Z)`` inside ``brain_mask``.

    Args:
        image: intensities (any positive scale); only voxels with ``brain_mask > 0`` and ``image > 0`` are fitted.
        brain_mask: same grid as ``image``.
        shrink_factor: the field is fitted on the image shrunk by this integer factor per axis (1 = full size).
        iterations: maximum iterations per fitting level; its length is the number of B-spline levels.

    Returns:
        the corrected image (float32) on the same grid, zero wherever ``image`` was zero outside the brain.

    Raises:
        ImportError: without SimpleITK.
        ValueError: when ``shrink_factor``/``iterations`` are out of range or the mask selects no positive voxel.
    """
    sitk = require_sitk("n4=True (N4 bias-field correction)")
    shrink_factor = check_int("n4_bias_correction", "shrink_factor", shrink_factor, 1, 16)
    iterations = [check_int("n4_bias_correction", "iterations", n, 1, 10_000) for n in np.atleast_1d(iterations)]
    array, affine = spatial_array(image), affine_of(image)
    fit_mask = (spatial_array(brain_mask) > 0) & (array > 0)
    if not fit_mask.any():
        raise ValueError("n4_bias_correction: the brain mask selects no voxel with a positive intensity.")
    full = array_to_sitk(array, affine)
    mask = sitk.Cast(array_to_sitk(fit_mask.astype(np.float32), affine), sitk.sitkUInt8)
    small, small_mask = full, mask
    if shrink_factor > 1:
        small = sitk.Shrink(full, [shrink_factor] * 3)
        small_mask = sitk.Shrink(mask, [shrink_factor] * 3)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(iterations)
    corrector.Execute(small, small_mask)
    log_bias = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(full)).transpose(2, 1, 0)
    corrected = array / np.exp(log_bias)
    return with_array(image, corrected.astype(np.float32))
