"""The studies folder as a MONAI Label datastore that accepts only brain MRI volumes, and its healthy tags."""

from __future__ import annotations

import logging
import os
from typing import Any

from disyre_monai.apps.monailabel._compat import require_monailabel
from disyre_monai.apps.monailabel.validation import VOLUME_SUFFIXES, check_volume_file

require_monailabel()

from monailabel.datastore.local import LocalDatastore  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException  # noqa: E402

logger = logging.getLogger(__name__)

#: the image-info key that marks a scan as healthy (``PUT /datastore/image/info?image=ID`` with
#: ``info={"healthy": true}``, or ``params={"healthy": true}`` when uploading).
HEALTHY_KEY = "healthy"


def is_healthy(info: dict[str, Any]) -> bool:
    """True when an image's datastore info tags it healthy (``"healthy": true``, also "true"/"yes"/"1")."""
    value = info.get(HEALTHY_KEY, False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def training_images(datastore: Datastore, healthy_only: bool = False) -> list[dict[str, str]]:
    """Every image of ``datastore`` as ``{"image": path, "id": image_id}`` (sorted by id), labels ignored.

    Args:
        datastore: a MONAI Label datastore.
        healthy_only: keep only images whose info is tagged healthy (see :data:`HEALTHY_KEY`).
    """
    entries = []
    for image_id in sorted(datastore.list_images()):
        if healthy_only and not is_healthy(datastore.get_image_info(image_id)):
            continue
        uri = datastore.get_image_uri(image_id)
        if uri:
            entries.append({"image": uri, "id": image_id})
    return entries


def image_ids(value: Any) -> list[str]:
    """A request's ``images`` option as a list of ids: comma-separated text or a list (empty: none named)."""
    if isinstance(value, str):
        return [i.strip() for i in value.split(",") if i.strip()]
    return [str(i) for i in value or []]


def selected_images(datastore: Datastore, ids: list[str], healthy_only: bool = False) -> list[dict[str, str]]:
    """The images ``ids`` of ``datastore`` in that order, tagged healthy or not; without ids, every image (or every
    healthy one) as :func:`training_images` lists them.

    Raises:
        ValueError: naming the ids the datastore does not hold.
    """
    images = training_images(datastore, healthy_only=healthy_only and not ids)
    if not ids:
        return images
    known = {e["id"]: e for e in images}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"images not in the datastore: {', '.join(unknown)}.")
    return [known[i] for i in ids]


class VolumeDatastore(LocalDatastore):
    """MONAI Label's local datastore (a folder of images) that refuses uploads that are not 3D volumes.

    An upload must be NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``), readable, single-channel 3D,
    finite and non-empty; otherwise the client gets an HTTP 400 naming the file and the problem. Files put
    into the folder directly are listed as usual (only these suffixes are listed).
    """

    def __init__(self, datastore_path: str, **kwargs) -> None:
        kwargs.setdefault("extensions", [f"*{s}" for s in VOLUME_SUFFIXES])
        super().__init__(datastore_path, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        file_id, ext = self._to_id(os.path.basename(image_filename))
        name = f"{image_id or file_id}{ext}"  # the uploaded file's name: the endpoint keeps its suffix
        try:
            check_volume_file(image_filename, name=name)
        except ValueError as error:
            logger.warning(f"rejected upload: {error}")
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(error)) from None
        return super().add_image(image_id, image_filename, image_info)
