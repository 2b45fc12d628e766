"""Post-processing of anomaly maps used by evaluation protocols (pure functions on 3D numpy arrays).

Shapes: volumes ``(H, W, D)``; ``mask`` bool of the same shape.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure

from disyre_monai.utils import check_int


def erode_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Brain mask eroded ``iterations`` times in-plane: the 4-connected cross within each axial slice.

    Removes the rim where skull-stripping leaves bright edges that every method flags (Behrendt et al.).
    """
    iterations = check_int("erode_mask", "iterations", iterations, 0)
    mask = np.asarray(mask, bool)
    if iterations == 0:
        return mask
    structure = np.zeros((3,) * mask.ndim, bool)
    structure[(slice(None), slice(None)) + (1,) * (mask.ndim - 2)] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(mask, structure=structure, iterations=iterations)


def median_filter_map(anomaly_map: np.ndarray, size: int) -> np.ndarray:
    """3D median filter of the map with a cubic kernel of side ``size`` (``size`` <= 1: unchanged)."""
    size = check_int("median_filter_map", "size", size, 0)
    anomaly_map = np.asarray(anomaly_map, np.float32)
    return anomaly_map if size <= 1 else ndimage.median_filter(anomaly_map, size=size, mode="constant")


def remove_small_components(binary: np.ndarray, max_size: int) -> np.ndarray:
    """``binary`` without its connected components (26-connected in 3D) of at most ``max_size`` voxels."""
    max_size = check_int("remove_small_components", "max_size", max_size, 0)
    binary = np.asarray(binary, bool)
    if max_size == 0 or not binary.any():
        return binary
    components = measure.label(binary, connectivity=binary.ndim)
    sizes = np.bincount(components.ravel())
    keep = sizes > max_size
    keep[0] = False
    return keep[components]
