"""Seeded simulator of tumour-like lesions in healthy brain volumes (demo "patients" and tests).

Pure numpy/scipy: :func:`simulate_lesion` draws every random number from one generator, so the
same seed always gives the same lesion.

Model, for a volume ``x`` and a soft lesion weight ``w`` in [0, 1]::

    x' = x * (1 - w) + w * c * median(x inside the lesion),   c ~ U(contrast_range), c < 1

``w`` is an irregular smooth blob (an ellipsoid of random size and orientation whose surface is
pushed in and out by smoothed noise), blurred for soft edges. Voxels where ``w`` is zero keep their
exact value, and the returned lesion mask is exactly ``w > 0``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from disyre_monai.utils import check_number, check_range

__all__ = ["simulate_lesion"]

_WEIGHT_FLOOR = 0.05  # blurred weights below this are set to 0 (then rescaled), so edges stay compact
_TRUNCATE = 3.0  # Gaussian kernels are cut at 3 sigma


def simulate_lesion(
    image,
    brain_mask,
    rng=None,
    radius_range=(3.0, 8.0),
    contrast_range=(0.2, 0.5),
    irregularity=0.35,
    edge_sigma=1.0,
    border_margin=2.0,
):
    """Insert one hypointense, irregular, soft-edged lesion inside the brain.

    Steps: draw three semi-axes from ``radius_range`` and a random 3D rotation; draw the centre among
    brain voxels whose distance to the brain border (or the array edge) is at least the lesion's largest
    possible reach plus ``border_margin``; keep the voxels where ``rho <= 1 + irregularity * n`` (``rho``
    the normalised ellipsoid radius, ``n`` smoothed Gaussian noise scaled to [-1, 1]) that are connected
    to the centre; blur that blob with ``edge_sigma``; blend towards ``c * median`` of the covered tissue.

    Args:
        image: array of shape (H, W, D), real and finite; any intensity scale (e.g. [0, 1]).
        brain_mask: array of shape (H, W, D); non-zero voxels are brain. Must not be empty.
        rng: seed (int or ``numpy.random.SeedSequence``) or ``numpy.random.Generator``. The same seed
            gives identical output; a Generator is advanced. ``None`` draws fresh entropy.
        radius_range: (low, high) semi-axis lengths of the ellipsoid in voxels, ``1 <= low <= high``.
        contrast_range: (low, high) core intensity as a fraction of the median tissue intensity it
            replaces, ``0 <= low <= high <= 0.99`` (smaller is darker).
        irregularity: how far smoothed noise moves the surface, relative to the radius, in [0, 0.99].
            0 gives a smooth ellipsoid.
        edge_sigma: Gaussian sigma (voxels) of the soft edge, ``>= 0``; 0 gives a hard edge.
        border_margin: minimum gap (voxels) between the lesion's reach and the brain border, ``>= 0``.

    Returns:
        (lesioned_image, lesion_mask): ``lesioned_image`` has shape (H, W, D) and a floating dtype
        (the image's own, or float32 for integer images); ``lesion_mask`` is a bool array of shape
        (H, W, D), non-empty, inside ``brain_mask``, and ``lesioned_image == image`` outside it.

    Raises:
        ValueError: for a bad argument (the message names it, its value and the allowed range), or when
            no brain voxel lies deep enough for a lesion of this size.

    Example:
        >>> import numpy as np
        >>> img = np.full((32, 32, 32), 0.8, dtype=np.float32)
        >>> brain = np.zeros(img.shape, bool); brain[4:28, 4:28, 4:28] = True
        >>> out, lesion = simulate_lesion(img, brain, rng=0, radius_range=(3, 5))
        >>> bool(lesion.any()), bool((lesion <= brain).all()), bool(out[lesion].min() < 0.8)
        (True, True, True)
    """
    image = np.asarray(image)
    if image.ndim != 3 or not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise ValueError(
            f"simulate_lesion: image must be a real 3D array (H, W, D), got shape {image.shape}, dtype {image.dtype}."
        )
    if not np.isfinite(image).all():
        raise ValueError("simulate_lesion: image must be finite (it contains NaN or inf).")
    brain = np.asarray(brain_mask)
    if brain.shape != image.shape:
        raise ValueError(f"simulate_lesion: brain_mask shape {brain.shape} must equal image shape {image.shape}.")
    brain = brain != 0
    if not brain.any():
        raise ValueError("simulate_lesion: brain_mask is empty (no non-zero voxel).")
    name = "simulate_lesion"
    r_lo, r_hi = check_range(name, "radius_range", radius_range, 1.0)
    c_lo, c_hi = check_range(name, "contrast_range", contrast_range, 0.0, 0.99)
    irregularity = check_number(name, "irregularity", irregularity, 0.0, 0.99)
    edge_sigma = check_number(name, "edge_sigma", edge_sigma, 0.0)
    border_margin = check_number(name, "border_margin", border_margin, 0.0)

    gen = np.random.default_rng(rng)
    radii = gen.uniform(r_lo, r_hi, size=3)
    rotation = Rotation.random(random_state=gen).as_matrix()
    contrast = gen.uniform(c_lo, c_hi)

    # Centre: a brain voxel far enough from the border (the array edge counts as border).
    reach = radii.max() * (1.0 + irregularity) + _TRUNCATE * edge_sigma
    depth = ndi.distance_transform_edt(np.pad(brain, 1))[1:-1, 1:-1, 1:-1]
    candidates = np.argwhere(depth >= reach + border_margin)
    if len(candidates) == 0:
        raise ValueError(
            f"simulate_lesion: no brain voxel is {reach + border_margin:.1f} voxels from the brain border "
            f"(the deepest is {depth.max():.1f}); lower radius_range (got {radius_range!r}) "
            f"or border_margin (got {border_margin!r})."
        )
    centre = candidates[gen.integers(len(candidates))]

    # Work in a box around the centre (clipped to the array).
    half = int(np.ceil(reach)) + 1
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, image.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    offsets = np.stack(np.meshgrid(*(np.arange(a, b) - c for a, b, c in zip(lo, hi, centre)), indexing="ij"), -1)
    rho = np.sqrt((((offsets @ rotation) / radii) ** 2).sum(-1))
    noise = ndi.gaussian_filter(gen.standard_normal(rho.shape), sigma=max(radii.min() / 2.0, 1.0))
    noise = np.clip(noise / max(noise.std(), 1e-12), -1.0, 1.0)
    blob = rho <= 1.0 + irregularity * noise  # always holds at the centre, where rho == 0
    labels, _ = ndi.label(blob)
    blob = ndi.binary_fill_holes(labels == labels[tuple(centre - lo)]) & brain[box]

    if edge_sigma > 0:
        weight = ndi.gaussian_filter(blob.astype(np.float64), edge_sigma, mode="constant", truncate=_TRUNCATE)
        weight /= weight.max()  # small blobs under a wide blur still reach full contrast at the core
        weight = np.clip((weight - _WEIGHT_FLOOR) / (1.0 - _WEIGHT_FLOOR), 0.0, 1.0)
    else:
        weight = blob.astype(np.float64)
    weight *= brain[box]
    inside = weight > 0

    out_dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32
    lesioned = image.astype(out_dtype, copy=True)
    patch = lesioned[box]
    target = contrast * np.median(patch[blob])
    w = weight[inside]
    patch[inside] = (patch[inside] * (1.0 - w) + w * target).astype(out_dtype)
    lesion_mask = np.zeros(image.shape, dtype=bool)
    lesion_mask[box] = inside
    return lesioned, lesion_mask
