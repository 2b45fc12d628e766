"""A PACS as the studies of the DISYRE app: MONAI Label's DICOMweb datastore, set up to work offline and to store
the results back.

MONAI Label's own set-up of a DICOMweb address downloads the dcmqi tools from the internet at start-up and turns
each series into NIfTI with another reader. Here the series is downloaded (WADO-RS) into the app's cache as a
folder of DICOM files and read by the bundle's own DICOM reader (the same as ``monai.bundle run inference`` on
a DICOM folder); MR series are listed (a ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` other than MONAI Label's
default CT filter replaces that); and
:meth:`DicomWebStudies.store` sends result instances (SEG, overlay) to the PACS with STOW-RS. Nothing else
leaves the machine: every request goes to the PACS address given.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from disyre_monai.apps.monailabel._compat import require_monailabel

require_monailabel()

from monailabel.config import settings  # noqa: E402
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore  # noqa: E402

logger = logging.getLogger(__name__)

#: the series the app lists unless ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` is set to something other than MONAI
#: Label's default (CT series, :data:`MONAI_LABEL_DEFAULT_FILTER`).
DEFAULT_SEARCH_FILTER = {"Modality": "MR"}
MONAI_LABEL_DEFAULT_FILTER = {"Modality": "CT"}


class DicomWebStudies(DICOMWebDatastore):
    """MONAI Label's ``DICOMWebDatastore`` with series kept as DICOM folders and a way to store results.

    Args:
        client: the DICOMweb client of the PACS.
        search_filter: QIDO-RS filter of the listed series.
        cache_path: where downloaded series are kept (one folder per SeriesInstanceUID).
    """

    def __init__(self, client, search_filter: dict, cache_path: str) -> None:
        super().__init__(client=client, search_filter=search_filter, cache_path=cache_path, fetch_by_frame=False,
                         convert_to_nifti=False)

    def store(self, datasets: list) -> list[str]:
        """Send ``datasets`` to the PACS (STOW-RS); return the SeriesInstanceUIDs stored, in order of appearance.

        Raises:
            requests.HTTPError: when the PACS refuses them.
        """
        if datasets:
            self._client.store_instances(list(datasets))
        return list(dict.fromkeys(str(ds.SeriesInstanceUID) for ds in datasets))


def dicomweb_studies(url: str, app_dir: str | os.PathLike) -> DicomWebStudies:
    """The datastore of a DICOMweb address (e.g. Orthanc's ``http://pacs:8042/dicom-web``), with MONAI Label's
    settings for credentials (``MONAI_LABEL_DICOMWEB_USERNAME``/``PASSWORD``), URL prefixes and cache path
    (default ``<app_dir>/dicomweb-cache``); no tool is downloaded."""
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        from dicomweb_client.session_utils import create_session_from_user_pass

        session = create_session_from_user_pass(settings.MONAI_LABEL_DICOMWEB_USERNAME,
                                                settings.MONAI_LABEL_DICOMWEB_PASSWORD)
    client = DICOMwebClientX(
        url=url.rstrip("/"), session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX, stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )
    search_filter = dict(settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER or {})
    if search_filter == MONAI_LABEL_DEFAULT_FILTER:  # MONAI Label's default (its server exports it to the environment)
        search_filter = dict(DEFAULT_SEARCH_FILTER)
    cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or str(Path(app_dir) / "dicomweb-cache")
    logger.info(f"DICOMweb studies at {url} (series filter {search_filter}; cache {cache})")
    return DicomWebStudies(client, search_filter, cache)
