"""Registration templates: any skull-stripped image file, or a named template shipped inside a package
installed from PyPI (no download at run time).

Named templates:
    ``"mni152_2009a"``: ICBM 2009a nonlinear symmetric T1 template, brain only, 1 mm, RAS,
    197 x 233 x 189 voxels, as shipped in the nilearn wheel
    (``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``, checked in nilearn 0.14.1;
    BSD-3-Clause package, template copyright McConnell Brain Imaging Centre, see the demo data's
    ATTRIBUTION.md). Needs ``pip install nilearn`` (the ``[preprocess]`` extra); nilearn is located, not imported.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from monai.data import MetaTensor

from disyre_monai.preprocess.skull_strip import apply_brain_mask
from disyre_monai.preprocess.volumes import load_volume

#: template name -> (package, file inside the package).
NAMED_TEMPLATES = {
    "mni152_2009a": ("nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
}


def template_path(template: str) -> Path:
    """The file of a named template (see :data:`NAMED_TEMPLATES`) or of a template given by path.

    Raises:
        ImportError: for a named template whose package is not installed.
        FileNotFoundError: when the file does not exist.
    """
    if template in NAMED_TEMPLATES:
        package, relative = NAMED_TEMPLATES[template]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                f"template={template!r} is read from the {package} package: pip install {package} "
                f"(or pip install 'disyre-monai[preprocess]'), or pass the path of a template image."
            )
        path = Path(list(spec.submodule_search_locations)[0]) / relative
        if not path.is_file():
            raise FileNotFoundError(f"template={template!r}: {path} is missing from the installed {package}.")
        return path
    path = Path(template)
    if not path.is_file():
        raise FileNotFoundError(
            f"template {template!r} is neither a named template ({', '.join(NAMED_TEMPLATES)}) nor an existing file."
        )
    return path


@functools.lru_cache(maxsize=2)
def load_template(template: str, template_mask: str | None = None) -> MetaTensor:
    """The skull-stripped template as a ``(1, X, Y, Z)`` float32 ``MetaTensor`` (cached per process).

    Args:
        template: a name of :data:`NAMED_TEMPLATES` or an image path. Give a brain-only image, or a head
            image together with ``template_mask``.
        template_mask: optional brain mask of the template (same grid); the template is zeroed outside it.
    """
    volume = load_volume(template_path(template), "image")
    if template_mask is not None:
        mask = load_volume(template_mask, "mask")
        if tuple(mask.shape) != tuple(volume.shape):
            raise ValueError(
                f"template_mask {template_mask} has shape {tuple(mask.shape[1:])}, the template {template!r} "
                f"{tuple(volume.shape[1:])}."
            )
        volume = apply_brain_mask(volume, mask)
    return volume
