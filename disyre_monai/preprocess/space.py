"""The model space card: the space a model's weights were trained in, and the check of an input against it.

A card is a JSON object (``metadata.json`` -> ``"model_space"`` in the bundle, ``models/model_space.json`` next
to the weights a training run writes)::

    {"modality": "T1", "template": "models/template_brain.nii.gz", "template_mask": null,
     "spacing": [2.0, 2.0, 2.0], "spatial_shape": [91, 109, 91], "affine": [[2.0, 0, 0, -90], ...],
     "orientation": "RAS", "skull_stripped": true,
     "intensity": {"method": "percentile", "percentile": 98.0, "within_mask": true, "clip": [0.0, 1.0]}}

``template`` is a named template (``templates.NAMED_TEMPLATES``), an absolute path, or a path relative to the
card's root (the folder above the card's folder: the bundle root for ``configs/metadata.json``, the training
run's ``output_dir`` for ``models/model_space.json``). ``affine`` is the grid the training images shared
(null when they did not share one); ``spacing``/``spatial_shape`` likewise.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import MetaTensor

from disyre_monai.geometry import ras_grid, voxel_spacing
from disyre_monai.preprocess.settings import PreprocessSettings
from disyre_monai.preprocess.skull_strip import skull_presence
from disyre_monai.preprocess.templates import NAMED_TEMPLATES
from disyre_monai.preprocess.volumes import NIFTI_SUFFIXES, affine_of, load_volume
from disyre_monai.utils import check_number

logger = logging.getLogger(__name__)

#: the card a training run writes next to its weights.
CARD_FILE = "model_space.json"
#: key of the card in the bundle's ``metadata.json``.
METADATA_KEY = "model_space"
#: relative tolerance on voxel sizes, and (in voxels) on the position of a registered grid.
SPACING_TOLERANCE = 0.01
GRID_TOLERANCE_VOXELS = 0.5
DEFAULT_INTENSITY = {"method": "percentile", "percentile": 98.0, "within_mask": True, "clip": [0.0, 1.0]}


def axis_codes(affine: np.ndarray) -> str:
    """Orientation code of an affine, e.g. "RAS" or "LPS"."""
    return "".join(nib.orientations.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def _corner_distance_mm(a: np.ndarray, b: np.ndarray, shape) -> float:
    last = [int(n) - 1 for n in shape]
    corners = np.array([[i, j, k, 1.0] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])])
    return float(np.linalg.norm((corners @ a.T - corners @ b.T)[:, :3], axis=1).max())


@dataclass(frozen=True)
class ModelSpace:
    """The space a model was trained in (see the module docstring for the JSON form).

    Attributes:
        spacing: voxel size (mm) of the training images after reorientation to RAS, or None if they differed.
        spatial_shape: their grid size, or None if it differed.
        affine: their common voxel-to-RAS affine (4x4) when they shared one grid, else None.
        template: the template the training images were registered to (name or path), or None.
        template_mask: brain mask of a head template, or None.
        orientation: axis codes the model's arrays follow ("RAS": axial slices along the last axis).
        skull_stripped: whether the training images were skull-stripped.
        modality: e.g. "T1" or "T2" (recorded, not checked: an image does not say its contrast reliably).
        intensity: how intensities were normalised ("percentile" of ``ScaleByPercentile``).
        root: folder relative template paths start from (not part of the JSON).
    """

    spacing: tuple[float, float, float] | None
    spatial_shape: tuple[int, int, int] | None
    affine: tuple[tuple[float, ...], ...] | None = None
    template: str | None = None
    template_mask: str | None = None
    orientation: str = "RAS"
    skull_stripped: bool = True
    modality: str = "T1"
    intensity: dict = field(default_factory=lambda: dict(DEFAULT_INTENSITY))
    root: str | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, card: dict, root: str | os.PathLike | None = None, source: str = "model space card"):
        """A card from its JSON form.

        Raises:
            ValueError: naming ``source`` and the key, for a malformed card.
        """
        if not isinstance(card, dict):
            raise ValueError(f"{source}: a model space card must be a JSON object, got {type(card).__name__}.")
        known = set(cls.__dataclass_fields__) - {"root"}
        unknown = sorted(set(card) - known - {"description"})
        if unknown:
            raise ValueError(f"{source}: unknown model space key(s) {unknown}; known: {sorted(known)}.")
        try:
            spacing = card.get("spacing")
            shape = card.get("spatial_shape")
            affine = card.get("affine")
            return cls(
                spacing=None if spacing is None else tuple(check_number(source, "spacing", v, 1e-3, 100)
                                                           for v in spacing),
                spatial_shape=None if shape is None else tuple(int(n) for n in shape),
                affine=None if affine is None else tuple(tuple(float(v) for v in row) for row in affine),
                template=card.get("template"),
                template_mask=card.get("template_mask"),
                orientation=str(card.get("orientation", "RAS")),
                skull_stripped=bool(card.get("skull_stripped", True)),
                modality=str(card.get("modality", "T1")),
                intensity=dict(card.get("intensity") or DEFAULT_INTENSITY),
                root=None if root is None else str(root),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: malformed model space card ({error}).") from None

    def as_dict(self) -> dict:
        """The JSON form."""
        return {
            "modality": self.modality,
            "template": self.template,
            "template_mask": self.template_mask,
            "spacing": None if self.spacing is None else list(self.spacing),
            "spatial_shape": None if self.spatial_shape is None else list(self.spatial_shape),
            "affine": None if self.affine is None else [list(row) for row in self.affine],
            "orientation": self.orientation,
            "skull_stripped": self.skull_stripped,
            "intensity": dict(self.intensity),
        }

    def _resolve(self, path: str | None) -> str | None:
        if path is None or path in NAMED_TEMPLATES or Path(path).is_absolute() or self.root is None:
            return path
        return str(Path(self.root) / path)

    @property
    def template_file(self) -> str | None:
        """The template as a name or an absolute path."""
        return self._resolve(self.template)

    def preprocess_settings(self, **options) -> PreprocessSettings:
        """Settings that take a scan into this space: the card's spacing, template and grid, plus ``options``
        (skull stripping, N4, registration settings, seed; see :class:`PreprocessSettings`).

        Raises:
            ValueError: when ``options`` set what the card fixes, or the card cannot say where to resample.
        """
        fixed = {"spacing", "template", "template_mask", "spatial_size", "center"}
        clash = sorted(fixed & set(options))
        if clash:
            raise ValueError(f"ModelSpace: {clash} come from the model space card and cannot be set here.")
        if self.spacing is None:
            raise ValueError("ModelSpace: the card has no spacing, so scans cannot be resampled into the model space.")
        return PreprocessSettings.from_options(
            spacing=self.spacing,
            template=self.template_file,
            template_mask=self._resolve(self.template_mask),
            spatial_size=self.spatial_shape,
            center="grid" if self.template is not None else "brain",
            **options,
        )

    def on_model_grid(self, image: MetaTensor) -> bool:
        """True when ``image`` (RAS) lies on the model's grid with another extent: a part of it (e.g. a slab of
        axial slices) or a larger field of view, voxel for voxel (same spacing and axes, whole-voxel offset).
        Such an image is in the model's space; it is scored as it is, with a warning (:meth:`extent_note`)."""
        if self.affine is None:
            return False
        index_map = np.linalg.inv(np.asarray(self.affine, dtype=np.float64)) @ affine_of(image)
        offset = index_map[:3, 3]
        return bool(np.allclose(index_map[:3, :3], np.eye(3), atol=1e-4)
                    and np.allclose(offset, np.round(offset), atol=1e-3))

    def extent_note(self, image: MetaTensor) -> str | None:
        """A warning for an image on the model's grid with another extent (:meth:`on_model_grid`), else None."""
        shape = tuple(int(n) for n in image.shape[1:])
        if self.spatial_shape is None or shape == tuple(self.spatial_shape) or not self.on_model_grid(image):
            return None
        return (f"grid of {_voxels(shape)} voxels, a part or an extension of the model's grid "
                f"({_voxels(self.spatial_shape)}) voxel for voxel: scored as it is")

    def mismatches(self, image: MetaTensor, brain_mask: MetaTensor | None = None) -> dict[str, str]:
        """How an image (reoriented to RAS) differs from this space: ``{"spacing"|"grid"|"skull": text}``.

        Args:
            image: ``(1, X, Y, Z)`` with its affine, already in RAS orientation.
            brain_mask: the case's brain mask on the same grid, if it has one.
        """
        found = {}
        spacing = voxel_spacing(affine_of(image))
        if self.spacing is not None and not np.allclose(spacing, self.spacing, rtol=SPACING_TOLERANCE, atol=1e-4):
            found["spacing"] = (f"voxel spacing {_mm(spacing)} mm, the model's is {_mm(self.spacing)} mm")
        shape = tuple(int(n) for n in image.shape[1:])
        if self.spatial_shape is not None and shape != tuple(self.spatial_shape):
            if not self.on_model_grid(image):
                found["grid"] = f"grid of {_voxels(shape)} voxels, the model's is {_voxels(self.spatial_shape)}"
        elif self.affine is not None and self.template is not None:
            distance = _corner_distance_mm(affine_of(image), np.asarray(self.affine), shape)
            if distance > GRID_TOLERANCE_VOXELS * min(self.spacing or spacing):
                found["grid"] = (f"grid placed up to {distance:.1f} mm away from the model's grid (the training images "
                                 f"were registered to the template {self.template})")
        if self.skull_stripped:
            reason = skull_presence(image, brain_mask)
            if reason is not None:
                found["skull"] = f"not skull-stripped: {reason}"
        return found


def _mm(values) -> str:
    return "(" + ", ".join(f"{float(v):.3g}" for v in values) + ")"


def _voxels(shape) -> str:
    return " x ".join(str(int(n)) for n in shape)


def load_model_space(model_path: str | os.PathLike | None, metadata_file: str | os.PathLike) -> ModelSpace:
    """The card of the weights at ``model_path``: ``model_space.json`` next to them (written by training), else
    the ``"model_space"`` of the bundle's ``metadata_file``.

    Raises:
        FileNotFoundError / ValueError: when neither holds a card, naming both places.
    """
    if model_path is not None:
        card_file = Path(model_path).with_name(CARD_FILE)
        if card_file.is_file():
            return ModelSpace.from_dict(json.loads(card_file.read_text(encoding="utf-8")), card_file.parent.parent,
                                        str(card_file))
    metadata_file = Path(metadata_file)
    if not metadata_file.is_file():
        raise FileNotFoundError(f"load_model_space: no {CARD_FILE} next to {model_path} and no {metadata_file}.")
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    if METADATA_KEY not in metadata:
        raise ValueError(
            f"load_model_space: no {CARD_FILE} next to {model_path} and no {METADATA_KEY!r} in {metadata_file}; "
            "write the card of these weights (ModelSpace.from_training_data) into either."
        )
    bundle_model = metadata_file.parent.parent / "models"
    if model_path is not None and Path(model_path).resolve().parent != bundle_model.resolve():
        logger.warning(f"no {CARD_FILE} next to {model_path}: the bundle's model space card ({metadata_file}) is "
                       "used; if these weights were trained on other data, put their card next to them.")
    return ModelSpace.from_dict(metadata[METADATA_KEY], metadata_file.parent.parent, f"{metadata_file} {METADATA_KEY}")


def _grid_of(path: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The RAS grid of an image file, from its header when it is NIfTI."""
    if str(path).lower().endswith(NIFTI_SUFFIXES):
        header = nib.load(str(path))
        return ras_grid(header.affine, header.shape[:3])
    volume = load_volume(path, "image")
    return ras_grid(affine_of(volume), volume.shape[1:])


def model_space_from_training_data(
    entries: list[dict],
    template: str | None = None,
    template_mask: str | None = None,
    modality: str = "T1",
    percentile: float = 98.0,
    within_mask: bool = True,
    skull_stripped: bool = True,
) -> ModelSpace:
    """The card of a model trained on ``entries``, measured from their image headers.

    Args:
        entries: training datalist entries with absolute ``"image"`` paths.
        template: the template the images were registered to (name or path), or None.
        template_mask: its brain mask, if the template is a head image.
        modality: the images' contrast ("T1", "T2", "FLAIR", ...).
        percentile, within_mask: the intensity normalisation of training (``ScaleByPercentiled``).
        skull_stripped: whether the images are skull-stripped.

    Returns:
        the card; spacing, grid shape and affine are None when the images do not share them.
    """
    if not entries:
        raise ValueError("model_space_from_training_data: no training entry.")
    grids = [_grid_of(str(entry["image"])) for entry in entries]
    affines, shapes = [g[0] for g in grids], [g[1] for g in grids]
    spacings = [voxel_spacing(a) for a in affines]
    same_spacing = all(np.allclose(s, spacings[0], rtol=1e-4) for s in spacings)
    same_shape = all(s == shapes[0] for s in shapes)
    same_grid = same_shape and all(np.allclose(a, affines[0], atol=1e-3) for a in affines)
    return ModelSpace(
        spacing=tuple(round(float(v), 6) for v in spacings[0]) if same_spacing else None,
        spatial_shape=shapes[0] if same_shape else None,
        affine=tuple(tuple(round(float(v), 6) for v in row) for row in affines[0]) if same_grid else None,
        template=None if template is None else str(template),
        template_mask=None if template_mask is None else str(template_mask),
        skull_stripped=bool(skull_stripped),
        modality=str(modality),
        intensity={"method": "percentile", "percentile": float(percentile), "within_mask": bool(within_mask),
                   "clip": [0.0, 1.0]},
    )


#: the template of the embedded demo data: the MNI152NLin6Asym brain on the demo grid (the bundle ships a copy as
#: ``models/template_brain.nii.gz``).
DEMO_TEMPLATE = "images/mni152_nlin6asym_t1.nii.gz"


def model_space_from_datalist(
    dataset_dir: str | None = None,
    datalist: str | None = None,
    split: str = "training",
    template: str | None = None,
    template_mask: str | None = None,
    **card_options,
) -> ModelSpace:
    """The card of a model trained on a split of a datalist (what the bundle's training writes).

    Args:
        dataset_dir, datalist, split: the training data, as the bundle's ``load_datalist`` reads them (both None:
            the embedded demo data).
        template, template_mask: the template the images were registered to; None: the one ``disyre-monai
            preprocess`` recorded in the datalist's ``metadata``, or the demo template for the demo data.
        card_options: ``modality``, ``percentile``, ``within_mask``, ``skull_stripped`` (see
            :func:`model_space_from_training_data`).
    """
    from disyre_monai.data.datalist import load_datalist

    entries = [e for e in load_datalist(dataset_dir, datalist, split, missing="keep") if Path(e["image"]).is_file()]
    if template is None and datalist is not None:
        recorded = json.loads(Path(datalist).read_text(encoding="utf-8")).get("metadata", {})
        parameters = recorded.get("preprocessing", {}).get("parameters", {}) if isinstance(recorded, dict) else {}
        template, template_mask = parameters.get("template"), parameters.get("template_mask")
    elif template is None and dataset_dir is None:
        from disyre_monai.data.demo import demo_root

        template = str(demo_root() / DEMO_TEMPLATE)
    return model_space_from_training_data(entries, template, template_mask, **card_options)


def write_model_space(card: ModelSpace, output_dir: str | os.PathLike) -> Path:
    """Write ``card`` as ``<output_dir>/models/model_space.json`` (atomically), next to the weights training saves
    there, with a copy of its template file (``models/template.nii.gz``, ``models/template_mask.nii.gz``), so that
    the run folder carries everything inference needs; named templates stay names."""
    import shutil

    from disyre_monai.io import atomic_write, atomic_write_json

    content = card.as_dict()
    models = Path(output_dir) / "models"
    for key in ("template", "template_mask"):
        value = card.template_file if key == "template" else card._resolve(card.template_mask)
        if value and value not in NAMED_TEMPLATES:
            source = Path(value)
            suffix = ".nii.gz" if source.name.lower().endswith(".nii.gz") else source.suffix
            target = models / f"{key}{suffix}"
            if source.resolve() != target.resolve():
                with open(source, "rb") as f:
                    atomic_write(target, lambda out, f=f: shutil.copyfileobj(f, out))
            content[key] = f"models/{target.name}"
    return atomic_write_json(models / CARD_FILE, content)
