"""Volume-to-slice transforms of the training pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor, get_track_meta
from monai.transforms import MapTransform, Randomizable, SpatialCrop, SpatialPad
from monai.utils import convert_to_tensor, fall_back_tuple

from disyre_monai.utils import check_int, check_number, source_name


class RandSlicesd(Randomizable, MapTransform):
    """Draw ``num_slices`` random 2D slices of 3D volumes among the slices that hold brain.

    All ``keys`` are sliced at the same positions (drawn once); the result is a list of ``num_slices``
    dictionaries (MONAI's list-of-samples convention, flattened by ``list_data_collate``) whose ``keys``
    hold ``(C, H, W)`` tensors; other entries are copied. Slices are drawn with replacement, uniformly among those
    with at least one brain voxel: for a mask without gaps any slice from the first to the last with brain
    (released DISYRE: between the first and the last slice with a non-zero voxel, the last left out), while a mask
    with empty slices in between (a registration or skull-strip mask) never gives a brainless slice.

    Args:
        keys: volumes ``(C, H, W, D)`` to slice.
        num_slices: slices per volume (released: 12).
        mask_key: brain mask deciding which slices have brain (default: the first key's non-zero voxels).
        axis: spatial axis to slice along (2 = last = axial in RAS).
        central_mm: draw only from the central ``central_mm`` of the brain's extent along ``axis`` (the slice
            spacing read from the image's affine): ``round(central_mm / spacing)`` slices centred as a centred crop
            of the brain's slices would cut them, or every brain slice when the brain is shorter. Released
            cDDPM/pDDPM: 100 (their volumes are cut to the brain's box, then centre-cropped to 100 slices of 1 mm,
            and any of those slices is drawn). None: every slice from the first to the last with brain.
    """

    def __init__(self, keys: KeysCollection, num_slices: int = 12, mask_key: str | None = "mask", axis: int = 2,
                 central_mm: float | None = None, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.num_slices = check_int(type(self).__name__, "num_slices", num_slices, 1, 100_000)
        self.axis = check_int(type(self).__name__, "axis", axis, 0, 2)
        self.mask_key = mask_key
        self.central_mm = None if central_mm is None else check_number(type(self).__name__, "central_mm",
                                                                       central_mm, 1e-3)
        self.positions: np.ndarray = np.zeros(0, int)

    def randomize(self, brain_slices: np.ndarray, spacing: float | None = None) -> None:
        """Draw ``positions`` among ``brain_slices`` (sorted indices of the slices with brain)."""
        lo, hi = int(brain_slices.min()), int(brain_slices.max())
        if self.central_mm is not None and spacing:
            keep, extent = max(int(round(self.central_mm / spacing)), 1), hi - lo + 1
            if extent > keep:
                lo = lo + extent // 2 - keep // 2
                hi = lo + keep - 1
        candidates = brain_slices[(brain_slices >= lo) & (brain_slices <= hi)]
        if len(candidates) == 0:  # a central window that falls in a gap of the mask: its nearest brain slice
            candidates = brain_slices[[int(np.argmin(np.abs(brain_slices - (lo + hi) / 2)))]]
        # the same draws as randint(lo, hi + 1) when every slice in the window holds brain
        self.positions = candidates[self.R.randint(0, len(candidates), size=self.num_slices)]

    def slice_spacing(self, image: NdarrayOrTensor, name: str) -> float | None:
        """Spacing (mm) along ``axis`` from the affine of ``image`` (needed only with ``central_mm``)."""
        if self.central_mm is None:
            return None
        if not isinstance(image, MetaTensor):
            raise ValueError(f"{type(self).__name__}: central_mm needs the slice spacing from the image's affine; "
                             f"{name} has no affine (load it as a MetaTensor).")
        return float(image.pixdim[self.axis])

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, NdarrayOrTensor]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        ref = convert_to_tensor(d[self.mask_key] if self.mask_key in d else d[keys[0]], track_meta=False)
        if ref.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expects (C, H, W, D) volumes, got shape {tuple(ref.shape)}.")
        others = tuple(i for i in range(4) if i != self.axis + 1)
        brain_slices = torch.nonzero(ref.amax(dim=others) > 0)  # (ref > 0).any over the others, one pass
        if len(brain_slices) == 0:
            raise ValueError(f"{type(self).__name__}: volume {source_name(d[keys[0]])} has no brain voxel to sample.")
        self.randomize(brain_slices.flatten().numpy(), self.slice_spacing(d[keys[0]], source_name(d[keys[0]])))
        samples = []
        for pos in self.positions:
            sample = dict(d)
            for key in keys:
                vol = convert_to_tensor(d[key], track_meta=False)
                sample[key] = vol.select(self.axis + 1, int(pos)).clone()
            samples.append(sample)
        return samples


RandSlicesD = RandSlicesDict = RandSlicesd


class CropToMaskd(MapTransform):
    """Crop ``keys`` to the bounding box of the non-zero voxels of ``mask_key`` (any channel).

    The crop of MONAI's ``CropForegroundd(keys, source_key=mask_key, allow_smaller=True)`` (margin 0, same
    box, an empty box when the mask is empty), about 5x cheaper per 2D slice: plain tensors are sliced
    directly, and the box coordinates are not written into the sample. ``MetaTensor`` inputs with metadata
    tracking on go through MONAI's ``SpatialCrop`` so that their affine follows the crop.

    With ``min_size`` a crop smaller than it is then zero-padded, centred (MONAI's ``SpatialPad``), to at least
    that size: a slice holding a speck of brain becomes one training patch of mostly background instead of a
    1 x 1 image that no spatial augmentation can resample. The released trainer gets the same guarantee from
    batchgenerators, whose spatial transform samples a patch-sized grid on every slice, however small.

    Args:
        keys: images ``(C, *spatial)`` to crop (2 or 3 spatial dims), same spatial shape as the mask.
        mask_key: the mask whose non-zero voxels set the box.
        min_size: smallest spatial size of the output, one int per spatial dim (or one for all); None: no
            padding (the box as it is, empty for an empty mask).
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", min_size: Sequence[int] | int | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.min_size = min_size

    def box(self, mask: NdarrayOrTensor) -> tuple[slice, ...]:
        """Spatial slices of the bounding box of ``mask`` ``(C, *spatial)`` > 0 (empty slices when none)."""
        fg = convert_to_tensor(mask, track_meta=False) > 0
        fg = fg.any(0)
        if not fg.any():
            return (slice(0, 0),) * fg.ndim
        box = []
        for dim in range(fg.ndim):
            hit = torch.nonzero(fg.movedim(dim, 0).flatten(1).any(1)).flatten()
            box.append(slice(int(hit[0]), int(hit[-1]) + 1))
        return tuple(box)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if self.mask_key not in d:
            raise KeyError(f"{type(self).__name__}: mask key {self.mask_key!r} is not in the sample "
                           f"(keys: {sorted(map(str, d))}).")
        box = self.box(d[self.mask_key])
        for key in self.key_iterator(d):
            img = d[key]
            if tuple(img.shape[1:]) != tuple(d[self.mask_key].shape[1:]):
                raise ValueError(f"{type(self).__name__}: {key!r} of {source_name(img)} has spatial shape "
                                 f"{tuple(img.shape[1:])}, the mask {tuple(d[self.mask_key].shape[1:])}.")
            if isinstance(img, MetaTensor) and get_track_meta():
                d[key] = SpatialCrop(roi_slices=box)(img)
            else:
                d[key] = img[(slice(None), *box)]
            if self.min_size is not None:
                target = fall_back_tuple(self.min_size, d[key].shape[1:])
                if any(s < t for s, t in zip(d[key].shape[1:], target)):  # cheap skip: most slices are larger
                    d[key] = SpatialPad(spatial_size=target, method="symmetric")(d[key])
        return d


CropToMaskD = CropToMaskDict = CropToMaskd
