"""Inference inputs into the model's space and outputs back onto each input's own grid (MONAI transforms).

:class:`ToModelSpaced` compares every input with the model space card (:class:`~.space.ModelSpace`). Without
``preprocess`` it only reorients to RAS (lossless) and stops with an error naming the file, the mismatch and
the option that fixes it when spacing, grid or skull differ. With ``preprocess`` it runs the preprocessing
pipeline of :func:`~.case.preprocess_volumes` (RAS, model spacing, skull stripping, optional N4, affine
registration to the model's template onto the model's grid) and records how to go back.

:meth:`ToModelSpaced.inverse` (run by MONAI's ``Invertd``, in the bundle's postprocessing and the MONAI Label app
alike) maps maps and masks from the model's grid back onto the input file's grid (same shape, same affine) through
the inverse of every spatial step: reorientation, resampling and crop/pad keep world
coordinates, so their composed inverse is resampling by world coordinates through the inverse registration
matrix; when that is a pure permutation/flip of voxels (no preprocessing) it is done without interpolation.
:class:`SaveSpaceRecordd` writes the registration (ITK ``.tfm`` and JSON) next to the outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import look_up_option

from disyre_monai.io import image_stem
from disyre_monai.preprocess.case import preprocess_volumes
from disyre_monai.preprocess.register import matrix_to_sitk, resample_onto
from disyre_monai.preprocess.reorient import reorient_to_ras
from disyre_monai.preprocess.space import ModelSpace, axis_codes
from disyre_monai.preprocess.volumes import affine_of, spatial_array
from disyre_monai.utils import source_name

logger = logging.getLogger(__name__)

MISMATCH_ACTIONS = ("error", "warn")
#: the words that start the message of an input outside the model's space (after its file name).
MISMATCH_MESSAGE = "does not match the model's space"
#: how each mismatch is fixed, quoted in errors.
FIX = ("run with --preprocess True to preprocess it on the fly (reorient, resample, skull-strip, register to the "
       "model's template; results are mapped back onto the input's grid), or preprocess it as the training data were "
       "(disyre-monai preprocess)")


def find_record(volume: torch.Tensor) -> dict:
    """The :class:`ToModelSpaced` record in a volume's ``applied_operations`` (the last one).

    Raises:
        ValueError: when the volume went through no ``ToModelSpaced``.
    """
    for operation in reversed(getattr(volume, "applied_operations", []) or []):
        if operation.get("class") == ToModelSpaced.__name__:
            return dict(operation["extra_info"])
    raise ValueError(
        f"{source_name(volume)}: no ToModelSpaced record in its applied operations; put "
        "disyre_monai.preprocess.ToModelSpaced in the preprocessing before restoring outputs to the input grid."
    )


def _grid_aligned(index_map: np.ndarray) -> bool:
    """True when an index-to-index affine is a signed permutation with integer offsets (no interpolation needed)."""
    linear, offset = index_map[:3, :3], index_map[:3, 3]
    return (np.allclose(linear, np.round(linear), atol=1e-4) and np.allclose(offset, np.round(offset), atol=1e-3)
            and np.array_equal(np.abs(np.round(linear)).sum(0), np.ones(3))
            and np.array_equal(np.abs(np.round(linear)).sum(1), np.ones(3)))


def to_input_grid(volume: torch.Tensor, source_affine: np.ndarray, record: dict, role: str = "map") -> MetaTensor:
    """Map ``volume`` ``(1, X, Y, Z)`` on the grid ``source_affine`` (the model's grid) onto the input's grid.

    Args:
        volume: an anomaly map, mask or label in the model's space.
        source_affine: voxel-to-RAS affine of ``volume``'s grid.
        record: the :class:`ToModelSpaced` record (``input_affine``, ``input_shape``, ``model_to_input``).
        role: "map" (linear) or "mask"/"label" (nearest neighbour).

    Returns:
        float32 ``(1, *input_shape)`` with the input's affine.
    """
    input_affine = np.asarray(record["input_affine"], dtype=np.float64)
    model_to_input = np.asarray(record["model_to_input"], dtype=np.float64)
    source_affine = np.asarray(source_affine, dtype=np.float64)
    index_map = np.linalg.inv(source_affine) @ np.linalg.inv(model_to_input) @ input_affine
    if _grid_aligned(index_map):
        role = "mask"  # every input voxel centre is a model voxel centre: nearest neighbour copies it exactly
    placed = MetaTensor(torch.as_tensor(np.asarray(spatial_array(volume), np.float32))[None],
                        affine=torch.as_tensor(source_affine))
    return resample_onto(placed, record["input_shape"], input_affine, np.linalg.inv(model_to_input), role)


def _with_meta(like: MetaTensor, volume: MetaTensor) -> MetaTensor:
    """``volume`` carrying the metadata of ``like`` (file name, original affine...) with its own affine."""
    meta = {k: v for k, v in dict(getattr(like, "meta", {})).items() if k != "affine"}
    out = MetaTensor(volume.as_tensor(), affine=volume.affine, meta=meta)
    out.applied_operations = list(getattr(like, "applied_operations", []))
    return out


class ToModelSpaced(MapTransform, InvertibleTransform):
    """Check every input against the model space card, or take it into the model's space (``preprocess``).

    The image (``keys``), its brain mask (``mask_key``) and lesion label (``label_key``), loaded channel-first
    with their affines, are reoriented to RAS. Then:

    - ``preprocess=False``: the image must already be in the model's space. Spacing, grid or skull that differ
      from the card raise a ``ValueError`` naming the file, each mismatch and the fix (``on_mismatch="warn"``
      logs a warning instead and scores the image as it is); another orientation is adapted losslessly, with a
      warning, and so is a grid that is a part or an extension of the model's grid voxel for voxel (a slab of
      axial slices, a larger field of view).
    - ``preprocess=True``: :func:`~disyre_monai.preprocess.case.preprocess_volumes` with the card's spacing,
      template and grid: skull stripping (the case's mask, ROBEX or HD-BET; see ``PreprocessSettings``), optional
      N4, affine registration to the template and resampling onto the model's grid. The mask key then holds the
      brain mask on the model's grid (the image is zero outside it) and the label follows the image.

    Either way the image carries a record of the input's grid and the registration (``applied_operations``) that
    :meth:`inverse` (through ``Invertd``) uses to go back. Intensities are not changed: the bundle's
    ``ScaleByPercentiled`` normalises them afterwards, as in training.

    Args:
        keys: the image key (one).
        model_space: the card (:class:`ModelSpace` or its JSON dict), or None to only reorient to RAS without any
            check (for code that loads scans without scoring them with the model, e.g. ``disyre-monai evaluate``).
        mask_key: brain mask key (optional in the data).
        label_key: lesion label key (optional in the data).
        preprocess: take inputs into the model's space instead of only checking them.
        on_mismatch: "error" (default) or "warn", for inputs that differ from the card without ``preprocess``.
        options: preprocessing options (``skull_strip``, ``n4``, ``registration_iterations``, ``seed``, ...; see
            ``PreprocessSettings``; spacing, template and grid come from the card).
    """

    def __init__(
        self,
        keys: KeysCollection,
        model_space: ModelSpace | dict | None,
        mask_key: str | None = "mask",
        label_key: str | None = "label",
        preprocess: bool = False,
        on_mismatch: str = "error",
        options: Mapping | None = None,
    ) -> None:
        MapTransform.__init__(self, keys)
        if len(self.keys) != 1:
            raise ValueError(f"ToModelSpaced: keys must name one image, got {self.keys}.")
        if model_space is not None and not isinstance(model_space, ModelSpace):
            model_space = ModelSpace.from_dict(model_space)
        self.model_space = model_space
        self.mask_key, self.label_key = mask_key, label_key
        self.preprocess = bool(preprocess)
        if self.preprocess and model_space is None:
            raise ValueError("ToModelSpaced: preprocess=True needs the model space card (model_space), got None.")
        self.on_mismatch = look_up_option(on_mismatch, MISMATCH_ACTIONS)
        self.settings = self.model_space.preprocess_settings(**dict(options or {})) if self.preprocess else None
        if self.settings is not None:
            self.settings = self.settings.resolve()  # checks optional packages and loads the template once

    def _check(self, volumes: dict[str, MetaTensor], name: str, input_affine: np.ndarray) -> None:
        if self.model_space is None:
            return
        codes = axis_codes(input_affine)
        if codes != self.model_space.orientation:
            logger.warning(f"{name}: orientation {codes} reoriented to {self.model_space.orientation} (lossless); "
                           "the outputs are written back in the input's orientation.")
        note = self.model_space.extent_note(volumes["image"])
        if note is not None:
            logger.warning(f"{name}: {note}.")
        found = self.model_space.mismatches(volumes["image"], volumes.get("mask"))
        if not found:
            return
        text = f"{name}: {MISMATCH_MESSAGE}: " + "; ".join(f"{k}: {v}" for k, v in found.items())
        if self.on_mismatch == "warn":
            logger.warning(f"{text}. Scored as it is (on_mismatch='warn'); the map may be meaningless.")
            return
        raise ValueError(f"{text}. To fix: {FIX}.")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        key = self.keys[0]
        image = d[key]
        name = source_name(image)
        input_affine = affine_of(image)
        roles = {"image": key, "mask": self.mask_key, "label": self.label_key}
        volumes = {role: d[k] for role, k in roles.items() if k is not None and k in d}
        record = {"input_affine": input_affine.tolist(), "input_shape": [int(n) for n in image.shape[1:]],
                  "input_orientation": axis_codes(input_affine), "preprocessed": self.preprocess,
                  "mode": "bilinear"}  # what inverse() interpolates with; Invertd(nearest_interp=True) sets "nearest"
        if self.preprocess:
            case = preprocess_volumes(volumes, self.settings, name)
            volumes = case.volumes
            record.update(model_to_input=case.model_to_input.tolist(), skull_strip=case.skull_strip,
                          steps=self.settings.steps(), template=self.settings.template)
        else:
            volumes = {role: reorient_to_ras(v) for role, v in volumes.items()}
            self._check(volumes, name, input_affine)
            record.update(model_to_input=np.eye(4).tolist(), skull_strip=None, steps=["reorient_ras"], template=None)
        record.update(model_affine=affine_of(volumes["image"]).tolist(),
                      model_shape=[int(n) for n in volumes["image"].shape[1:]])
        for role, volume in volumes.items():
            original = d.get(roles[role], image)
            d[roles[role]] = _with_meta(original if isinstance(original, MetaTensor) else image, volume)
        self.push_transform(d[key], extra_info=record)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Map ``keys`` (e.g. an anomaly map carrying the image's operations, as ``Invertd`` passes it) back onto
        the input's grid: linear interpolation, or nearest neighbour under ``Invertd(nearest_interp=True)`` (masks)."""
        d = dict(data)
        for key in self.key_iterator(d):
            operation = self.pop_transform(d[key])
            volume = d[key]
            role = "mask" if operation["extra_info"].get("mode") == "nearest" else "map"
            restored = to_input_grid(volume, np.asarray(operation["extra_info"]["model_affine"]),
                                     operation["extra_info"], role)
            d[key] = _with_meta(volume if isinstance(volume, MetaTensor) else restored, restored)
        return d


class SaveSpaceRecordd(MapTransform):
    """Write, next to a case's outputs, how its image was taken into the model's space (preprocessed cases only).

    Files (``<stem>`` is the input file name without its suffix): ``<stem>_registration.tfm``, the fitted affine
    as an ITK transform file (template points -> scan points, as ITK registration writes it; 3D Slicer and ITK
    read it), and ``<stem>_preprocessing.json``: steps, skull-stripping mode, template, the 4x4 RAS matrix
    ``model_to_input``, and the input's and the model's grids.

    Args:
        keys: the preprocessed image (one key).
        output_dir: folder of the files.
    """

    def __init__(self, keys: KeysCollection = "image", output_dir: str | os.PathLike = ".") -> None:
        super().__init__(keys)
        self.output_dir = Path(output_dir)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        from disyre_monai.io import atomic_path, atomic_write_json

        d = dict(data)
        for key in self.key_iterator(d):
            record = find_record(d[key])
            if not record.get("preprocessed"):
                continue
            name = source_name(d[key])
            stem = image_stem(name)
            atomic_write_json(self.output_dir / f"{stem}_preprocessing.json", {"image": name, **record})
            from disyre_monai.preprocess.sitk_bridge import require_sitk

            sitk = require_sitk("writing the registration transform")
            with atomic_path(self.output_dir / f"{stem}_registration.tfm") as tmp:
                sitk.WriteTransform(matrix_to_sitk(np.asarray(record["model_to_input"])), str(tmp))
        return d
