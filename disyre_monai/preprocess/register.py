"""Step 5 (optional): affine registration to a template through SimpleITK, then resampling of the image
(linear) and of its brain mask and label (nearest neighbour) onto the template grid.

The fitted transform is kept as a 4x4 matrix on RAS world coordinates, ``model_to_input``: it maps a point of
the template's (model's) space to the matching point of the input scan. :func:`resample_onto` resamples a
volume onto any grid through such a matrix, in both directions (template grid <- scan, and back: scan grid <-
anomaly map, with the inverse matrix), so the way back is the exact inverse of the way there.

Registration: Mattes mutual information (works across T1/T2 contrasts), random sampling of a fraction of
the template voxels drawn with ``seed``, an affine transform (12 parameters) started from the alignment of
the two intensity centres of mass, regular-step gradient descent (first step 2 mm, halved at each
direction reversal down to 0.001 mm) with parameter scales from physical shifts, three resolution levels
(shrink 4, 2, 1; smoothing 2, 1, 0 mm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample
from scipy import ndimage as ndi

from disyre_monai.geometry import voxel_spacing
from disyre_monai.preprocess.settings import PreprocessSettings
from disyre_monai.preprocess.sitk_bridge import RAS_TO_LPS, array_to_sitk, require_sitk
from disyre_monai.preprocess.volumes import affine_of, spatial_array, with_array
from disyre_monai.utils import check_int, check_number

INITIALISATIONS = ("moments", "geometry")
_DEFAULTS = PreprocessSettings()  # the step's defaults are the settings' defaults
#: volume role -> interpolation of :func:`resample_onto`.
RESAMPLE_MODES = {"image": "bilinear", "map": "bilinear", "mask": "nearest", "label": "nearest"}


def transform_matrix(transform) -> np.ndarray:
    """The 4x4 RAS world matrix of an affine SimpleITK transform (which works on LPS points).

    For the transform :func:`register_affine` returns (template points -> image points) this is
    ``model_to_input``. Exact for affine transforms: the matrix is read off the images of the origin and the
    three unit vectors.
    """
    flip = RAS_TO_LPS  # its own inverse
    origin = flip @ np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)), dtype=np.float64)
    matrix = np.eye(4)
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        image = flip @ np.asarray(transform.TransformPoint(tuple(float(v) for v in flip @ unit)), dtype=np.float64)
        matrix[:3, axis] = image - origin
    matrix[:3, 3] = origin
    return matrix


def matrix_to_sitk(matrix: np.ndarray):
    """A SimpleITK ``AffineTransform`` (LPS points) of a 4x4 RAS world matrix, e.g. to write an ITK ``.tfm``
    file that 3D Slicer reads."""
    sitk = require_sitk("matrix_to_sitk")
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = flip @ np.asarray(matrix, dtype=np.float64) @ flip
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in lps[:3, 3]])
    return transform


def resample_onto(
    volume: MetaTensor,
    shape: Sequence[int],
    affine: np.ndarray,
    target_to_source: np.ndarray | None = None,
    role: str = "image",
) -> MetaTensor:
    """Resample ``volume`` ``(1, X, Y, Z)`` onto the grid ``(shape, affine)`` (MONAI ``SpatialResample``).

    The output voxel at world point ``p`` takes the value of ``volume`` at ``target_to_source @ p``; outside
    ``volume``: 0. With ``target_to_source=None`` (identity) this is plain resampling by world coordinates.

    Args:
        volume: channel-first volume with its affine.
        shape: output grid size.
        affine: output voxel-to-RAS affine.
        target_to_source: 4x4 RAS matrix from the output's world to the volume's world, or None.
        role: "image"/"map" (linear) or "mask"/"label" (nearest neighbour).

    Returns:
        float32 ``(1, *shape)`` with affine ``affine``.
    """
    if role not in RESAMPLE_MODES:
        raise ValueError(f"resample_onto: role must be one of {tuple(RESAMPLE_MODES)}, got {role!r}.")
    affine = np.asarray(affine, dtype=np.float64)
    placed = affine_of(volume)
    if target_to_source is not None:  # move the volume into the output's world: voxel -> source -> target world
        placed = np.linalg.inv(np.asarray(target_to_source, dtype=np.float64)) @ placed
    source = MetaTensor(torch.as_tensor(spatial_array(volume), dtype=torch.float32)[None],
                        affine=torch.as_tensor(placed, dtype=torch.float64))
    resampler = SpatialResample(mode=RESAMPLE_MODES[role], padding_mode="zeros", dtype=torch.float32)
    with resampler.trace_transform(False):
        out = resampler(source, dst_affine=torch.as_tensor(affine), spatial_size=[int(n) for n in shape])
    return with_array(volume, torch.as_tensor(out).as_subclass(torch.Tensor).float(), affine=affine)


def register_affine(
    image: MetaTensor,
    template: MetaTensor,
    seed: int = _DEFAULTS.seed,
    iterations: int = _DEFAULTS.registration_iterations,
    sampling_fraction: float = _DEFAULTS.registration_sampling,
    initialisation: str = "moments",
    mask_erosion_mm: float = _DEFAULTS.registration_mask_erosion_mm,
):
    """Fit the affine transform that aligns ``image`` to ``template``.

    Args:
        image: moving image ``(1, X, Y, Z)``, skull-stripped, with its affine.
        template: fixed image ``(1, X', Y', Z')``, skull-stripped, with its affine.
        seed: seed of the metric's random voxel sampling (handed to ITK as ``seed + 1``: ITK reads 0 as "seed
            from the wall clock"); one seed gives one transform, up to the order of multi-threaded sums (~1e-8).
        iterations: maximum optimiser iterations per resolution level.
        sampling_fraction: fraction of template voxels sampled by the metric, in (0, 1].
        initialisation: ``"moments"`` (align the intensity centres of mass) or ``"geometry"`` (align the
            centres of the two fields of view).
        mask_erosion_mm: the metric samples only template voxels deeper than this inside the template's brain
            (``template > 0``); 0 samples the whole template. The brain's outline is where skull stripping tools
            disagree most; fitted to the interior, the registration follows the anatomy instead (measured on the
            raw demo case with ROBEX's mask: 0.66 mm mean error at the brain's corners with 4 mm, 1.2 mm without).

    Returns:
        a ``SimpleITK.Transform`` mapping template (LPS) points to image (LPS) points, as ITK resampling
        expects.
    """
    sitk = require_sitk("template registration")
    seed = check_int("register_affine", "seed", seed, 0, 2**31 - 1)
    iterations = check_int("register_affine", "iterations", iterations, 1, 100_000)
    sampling_fraction = check_number("register_affine", "sampling_fraction", sampling_fraction, 1e-4, 1.0)
    if initialisation not in INITIALISATIONS:
        raise ValueError(f"register_affine: initialisation must be one of {INITIALISATIONS}, got {initialisation!r}.")
    mask_erosion_mm = check_number("register_affine", "mask_erosion_mm", mask_erosion_mm, 0.0, 100.0)
    fixed = array_to_sitk(spatial_array(template), affine_of(template))
    moving = array_to_sitk(spatial_array(image), affine_of(image))
    mode = sitk.CenteredTransformInitializerFilter
    start = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(3), mode.MOMENTS if initialisation == "moments" else mode.GEOMETRY
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling_fraction, seed + 1)
    if mask_erosion_mm > 0:
        brain = spatial_array(template) > 0
        deep = ndi.distance_transform_edt(brain, sampling=voxel_spacing(affine_of(template)))
        if not (deep > mask_erosion_mm).any():
            raise ValueError(f"register_affine: no template voxel lies deeper than mask_erosion_mm={mask_erosion_mm} "
                             "inside the template's brain; lower it.")
        sampled = array_to_sitk((deep > mask_erosion_mm).astype(np.float32), affine_of(template))
        method.SetMetricFixedMask(sitk.Cast(sampled, sitk.sitkUInt8))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.5
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(start, inPlace=False)
    return method.Execute(fixed, moving)


def resample_to_template(volume: MetaTensor, template: MetaTensor, transform, role: str = "image") -> MetaTensor:
    """Resample ``volume`` onto the grid of ``template`` through ``transform`` (from :func:`register_affine`).

    Args:
        volume: ``(1, X, Y, Z)`` in the space the transform was fitted on.
        template: the fixed image; the output takes its shape and affine.
        transform: template -> volume point mapping.
        role: ``"image"`` (linear) or ``"mask"``/``"label"`` (nearest neighbour). Outside the volume: 0.
    """
    return resample_onto(volume, template.shape[1:], affine_of(template), transform_matrix(transform), role)
