"""One case through every step: load -> RAS -> spacing -> skull strip -> [N4] -> [template] -> crop/pad -> save.

The brain mask and the lesion label follow exactly the geometric transforms of the image (nearest
neighbour), so a labelled voxel keeps its world coordinate until a registration moves the case.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from disyre_monai.preprocess.bias_field import n4_bias_correction
from disyre_monai.preprocess.crop_pad import crop_or_pad
from disyre_monai.preprocess.register import register_affine, resample_to_template
from disyre_monai.preprocess.reorient import reorient_to_ras
from disyre_monai.preprocess.resample import resample_to_spacing
from disyre_monai.preprocess.skull_strip import (
    apply_brain_mask,
    robex_brain_mask,
    threshold_brain_mask,
)
from disyre_monai.preprocess.templates import load_template
from disyre_monai.preprocess.volumes import affine_of, load_volume, save_volume, spatial_array, with_array

#: largest tolerated difference (mm) between the affine of an image and those of its mask/label.
GRID_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class PreprocessSettings:
    """Resolved parameters of every step (picklable: sent to worker processes, recorded in the metadata).

    Attributes:
        spacing: target voxel size (mm) per axis, or None to keep the spacing.
        skull_strip: "mask" (the entry's brain mask), "robex", "none" (brain = image > 0) or "auto" (the
            entry's mask when it has one, else "none").
        n4: run N4 bias-field correction; ``n4_shrink_factor``, ``n4_iterations`` its settings.
        template: template name or path for affine registration, or None; ``template_mask`` its brain mask;
            ``registration_iterations``, ``registration_sampling`` the optimiser's settings.
        spatial_size: output grid size in voxels, or None to keep each case's own size.
        center: "brain" (crop/pad centred on the brain bounding box) or "grid" (on the grid center).
        seed: seed of ROBEX and of the registration's voxel sampling.
    """

    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    skull_strip: str = "auto"
    n4: bool = False
    n4_shrink_factor: int = 4
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)
    template: str | None = None
    template_mask: str | None = None
    registration_iterations: int = 200
    registration_sampling: float = 0.2
    spatial_size: tuple[int, int, int] | None = (240, 240, 155)
    center: str = "brain"
    seed: int = 0

    def steps(self) -> list[str]:
        """Names of the steps these settings run, in order."""
        steps = ["reorient_ras"]
        steps += ["resample"] if self.spacing is not None else []
        steps += ["skull_strip"] + (["n4_bias_correction"] if self.n4 else [])
        steps += ["affine_registration"] if self.template is not None else []
        steps += ["crop_pad"] if self.spatial_size is not None else []
        return steps + ["cast_float32"]

    def as_dict(self) -> dict:
        """JSON-ready parameters (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def skull_strip_mode(entry: dict, settings: PreprocessSettings) -> str:
    """The skull-stripping mode used for ``entry``: "auto" -> "mask" when the entry has a mask, else "none"."""
    if settings.skull_strip == "auto":
        return "mask" if entry.get("mask") else "none"
    if settings.skull_strip == "mask" and not entry.get("mask"):
        raise ValueError(f"{entry['image']}: skull_strip='mask' but the entry has no 'mask' file.")
    return settings.skull_strip


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
    image = load_volume(image_path, "image")
    mode = skull_strip_mode(entry, settings)
    volumes = {"image": image}
    for role in ("mask", "label"):
        if entry.get(role) and (role == "label" or mode == "mask"):
            volumes[role] = _load_on_image_grid(str(entry[role]), role, image, image_path)
    volumes = {role: reorient_to_ras(v) for role, v in volumes.items()}
    if settings.spacing is not None:
        volumes = {role: resample_to_spacing(v, settings.spacing, role) for role, v in volumes.items()}

    if mode == "mask":
        brain = with_array(volumes["mask"], (spatial_array(volumes["mask"]) > 0).astype(np.float32))
    elif mode == "robex":
        brain = robex_brain_mask(volumes["image"], settings.seed)
    else:
        brain = threshold_brain_mask(volumes["image"])
    _require_brain(brain, f"after skull stripping ({mode})", image_path)
    volumes["mask"], volumes["image"] = brain, apply_brain_mask(volumes["image"], brain)

    if settings.n4:
        corrected = n4_bias_correction(volumes["image"], brain, settings.n4_shrink_factor, settings.n4_iterations)
        volumes["image"] = apply_brain_mask(corrected, brain)

    if settings.template is not None:
        template = load_template(settings.template, settings.template_mask)
        transform = register_affine(
            volumes["image"], template, settings.seed, settings.registration_iterations, settings.registration_sampling
        )
        volumes = {role: resample_to_template(v, template, transform, role) for role, v in volumes.items()}
        _require_brain(volumes["mask"], "after registration to the template", image_path)
        volumes["image"] = apply_brain_mask(volumes["image"], volumes["mask"])

    warnings = []
    if settings.spatial_size is not None:
        counted = [role for role in ("mask", "label") if role in volumes]
        before = {role: int(np.count_nonzero(spatial_array(volumes[role]))) for role in counted}
        volumes = crop_or_pad(volumes, settings.spatial_size, settings.center)
        for role, count in before.items():
            lost = count - int(np.count_nonzero(spatial_array(volumes[role])))
            if lost:
                warnings.append(
                    f"{image_path}: crop to spatial_size {list(settings.spatial_size)} cut off {lost} of {count} "
                    f"{'brain' if role == 'mask' else 'lesion'} voxels."
                )

    if not np.isfinite(spatial_array(volumes["image"])).all():
        raise ValueError(f"{image_path}: preprocessing produced NaN/Inf intensities.")
    # The image is written last: a case counts as done only when all of its outputs exist.
    for role in ("label", "mask", "image"):
        if role in outputs:
            if role not in volumes:
                raise ValueError(f"{image_path}: output {role} requested but the entry has no {role}.")
            save_volume(volumes[role], Path(outputs[role]), role)
    return warnings
