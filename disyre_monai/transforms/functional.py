"""Pure, deterministic maths of the DISYRE corruption. The random transforms draw parameters, then call these.

Array layout: images are channel-first numpy arrays ``(C, *spatial)`` with 2 or 3 spatial dimensions;
shape masks are ``spatial``-shaped float arrays in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

# Released DISYRE intensity codebook: the 5 tissue-intensity classes of a [0, 1]-normalised brain.
INTENSITY_CODEBOOK = (0.00565, 0.38284, 0.61224, 0.76921, 0.93855)


def _local_coords(shape: Sequence[int], center: Sequence[float]) -> list[np.ndarray]:
    """Coordinates of every voxel of ``shape`` relative to ``center`` (one array per axis)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return [g - c for g, c in zip(grids, center)]


def box_shape(
    shape: Sequence[int], center: Sequence[float], side: float | Sequence[float], angle_deg: float = 0.0,
    pivot: Sequence[float] | None = None,
) -> np.ndarray:
    """Binary rectangle (2D) or cuboid (3D), rotated by ``angle_deg`` in the first two axes about ``pivot``.

    Args:
        shape: spatial shape of the output.
        center: box centre in voxel coordinates (before rotation).
        side: side length in voxels, one for all axes or one per axis.
        angle_deg: rotation in degrees.
        pivot: centre of rotation (default ``center``; the released code rotates its whole anomaly box).

    Returns:
        float32 array of ``shape`` with values in {0, 1}.
    """
    sides = [float(side)] * len(shape) if np.isscalar(side) else [float(v) for v in side]
    pivot = center if pivot is None else pivot
    u = _local_coords(shape, pivot)
    a = np.deg2rad(angle_deg)
    u[0], u[1] = np.cos(a) * u[0] - np.sin(a) * u[1], np.sin(a) * u[0] + np.cos(a) * u[1]
    offsets = [c - p for c, p in zip(center, pivot)]
    inside = np.all([np.abs(ui - o) <= s / 2.0 for ui, o, s in zip(u, offsets, sides)], axis=0)
    return inside.astype(np.float32)


def ellipsoid_shape(shape: Sequence[int], center: Sequence[float], diameter: float) -> np.ndarray:
    """Binary disc (2D) or sphere (3D) of ``diameter`` voxels. Returns float32 array of ``shape``."""
    return (_normalised_radius(shape, center, diameter) <= 1.0).astype(np.float32)


def blob_shape(
    shape: Sequence[int], center: Sequence[float], diameter: float, noise: np.ndarray, roughness: float = 0.5
) -> np.ndarray:
    """Irregular smooth blob: a disc/sphere whose boundary is displaced by a smooth noise field.

    A voxel is inside when ``r + roughness * noise <= 1``, ``r`` being the distance to ``center`` in units of
    the radius. With ``roughness = 0`` this is :func:`ellipsoid_shape`.

    Args:
        shape: spatial shape of the output.
        center: blob centre in voxel coordinates.
        diameter: nominal diameter in voxels.
        noise: smooth zero-mean, unit-variance field of ``shape`` (see :func:`smooth_noise`).
        roughness: how far the boundary may wander, in radii.
    """
    return (_normalised_radius(shape, center, diameter) + roughness * noise <= 1.0).astype(np.float32)


def smooth_noise(white_noise: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed ``white_noise`` rescaled to zero mean and unit standard deviation."""
    field = gaussian_filter(white_noise.astype(np.float32), sigma)
    return (field - field.mean()) / max(float(field.std()), 1e-8)


def _normalised_radius(shape: Sequence[int], center: Sequence[float], diameter: float) -> np.ndarray:
    u = _local_coords(shape, center)
    return np.sqrt(sum(ui**2 for ui in u)) / max(diameter / 2.0, 1e-6)


def soften(shape_mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soft edges: Gaussian blur of a shape mask (``sigma`` in voxels, 0 = unchanged), kept in [0, 1]."""
    if sigma <= 0:
        return shape_mask.astype(np.float32)
    return np.clip(gaussian_filter(shape_mask.astype(np.float32), sigma), 0.0, 1.0)


def patch_slices(center: Sequence[int], patch_size: Sequence[int], spatial_shape: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the ``patch_size`` box centred on ``center``, clipped to ``spatial_shape``."""
    starts = [max(0, int(c) - p // 2) for c, p in zip(center, patch_size)]
    return tuple(slice(s, min(n, s + p)) for s, p, n in zip(starts, patch_size, spatial_shape))


def place_patch(crop: np.ndarray, spatial_shape: Sequence[int], origin: Sequence[int]) -> np.ndarray:
    """Put ``crop`` ``(C, *P)`` into a ``(C, *spatial_shape)`` canvas with its first voxel at ``origin``.

    The canvas outside the crop is filled by mirroring the crop (``numpy.pad`` "symmetric"), so any region
    around ``origin`` gets texture, whatever the crop's size.
    """
    pads, cuts = [(0, 0)], [slice(None)]
    for o, p, n in zip(origin, crop.shape[1:], spatial_shape):
        before, after = max(0, o), max(0, n - o - p)
        pads.append((before, after))
        cuts.append(slice(before - o, before - o + n))
    return np.pad(crop, pads, mode="symmetric")[tuple(cuts)]


def rescale_to_host(patch: np.ndarray, host: np.ndarray, shape_mask: np.ndarray) -> np.ndarray:
    """Min-max rescale each channel of ``patch`` to the host's range inside ``shape_mask > 0`` ("dag" mode).

    Args:
        patch: ``(C, *spatial)`` foreign texture.
        host: ``(C, *spatial)`` image being corrupted.
        shape_mask: ``spatial`` mask.
    """
    inside = shape_mask > 0
    if not inside.any():
        return patch
    out = np.empty_like(patch)
    for c in range(patch.shape[0]):
        p, h = patch[c][inside], host[c][inside]
        p_range = max(float(p.max() - p.min()), 1e-8)
        out[c] = (patch[c] - p.min()) / p_range * float(h.max() - h.min()) + float(h.min())
    return out


def foreign_patch_blend(image: np.ndarray, shape_mask: np.ndarray, patch: np.ndarray, alpha: float) -> np.ndarray:
    """Foreign patch interpolation: ``x' = x * (1 - alpha * m) + alpha * m * patch``.

    Args:
        image: ``(C, *spatial)`` host image.
        shape_mask: ``spatial`` soft mask ``m`` in [0, 1].
        patch: ``(C, *spatial)`` foreign texture, aligned with ``image``.
        alpha: texture severity in [0, 1]; 0 returns ``image`` unchanged.
    """
    weight = (alpha * shape_mask)[None].astype(image.dtype)
    return image * (1.0 - weight) + weight * patch.astype(image.dtype)


def quantise(image: np.ndarray, codebook: Sequence[float] = INTENSITY_CODEBOOK) -> np.ndarray:
    """Index of the nearest codebook intensity for every voxel. Shape: same as ``image`` (int64)."""
    book = np.asarray(codebook, dtype=np.float32)
    return np.abs(image[..., None] - book).argmin(axis=-1)


def intensity_bias(
    image: np.ndarray,
    shape_mask: np.ndarray,
    classes: Sequence[int],
    alpha: float,
    host: np.ndarray | None = None,
    codebook: Sequence[float] = INTENSITY_CODEBOOK,
    sigma: float = 1.0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Shift the intensity of the chosen tissue classes inside the shape by ``alpha`` (signed), clip to [0, 1].

    ``region = blur(quantise(host) in classes, sigma) * m``; ``x' = clip(x + alpha * region, 0, 1)``.

    Args:
        image: ``(C, *spatial)`` image to modify.
        shape_mask: ``spatial`` soft mask ``m``.
        classes: codebook indices whose voxels are shifted.
        alpha: signed severity in [-1, 1]; 0 returns ``image`` unchanged.
        host: image whose intensities define the classes (default ``image``).
        codebook: class intensities.
        sigma: blur of the class region in voxels.
        labels: ``quantise(host, codebook)`` when the caller has it already (same shape as ``image``).
    """
    if alpha == 0:
        return image
    if labels is None:
        labels = quantise(image if host is None else host, codebook)
    region = np.isin(labels, list(classes)).astype(np.float32)
    region = np.stack([soften(r, sigma) for r in region]) * shape_mask[None]
    return np.clip(image + alpha * region, 0.0, 1.0).astype(image.dtype)


def class_counts(
    image: np.ndarray, shape_mask: np.ndarray, codebook: Sequence[float] = INTENSITY_CODEBOOK,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Number of voxels of each codebook class inside ``shape_mask > 0`` (all channels). Shape: ``(K,)``.

    ``labels``: ``quantise(image, codebook)`` when the caller has it already.
    """
    labels = (quantise(image, codebook) if labels is None else labels)[:, shape_mask > 0]
    return np.bincount(labels.ravel(), minlength=len(codebook))
