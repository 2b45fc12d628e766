"""Step 1: reorient a volume to RAS, the closest canonical orientation (axes permuted and flipped, no
interpolation), as nibabel's ``as_closest_canonical`` does."""

from __future__ import annotations

from monai.data import MetaTensor
from monai.transforms import Orientation

#: MONAI's axis labels for nibabel's RAS world space (Left->Right, Posterior->Anterior, Inferior->Superior).
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def reorient_to_ras(volume: MetaTensor) -> MetaTensor:
    """Permute and flip the axes of ``volume`` ``(1, X, Y, Z)`` so that they run closest to R, A, S.

    Voxel values are moved, never interpolated; the returned affine maps each voxel to the same world
    point as before. A residual rotation (oblique scans) stays in the affine.
    """
    return Orientation(as_closest_canonical=True, labels=RAS_LABELS)(volume)
