"""A throw-away Orthanc PACS with its DICOMweb plugin on 127.0.0.1, for tests of DICOM input/output.

``with orthanc_server(tmp_path / "orthanc") as pacs: pacs.upload(files); pacs.pull_series(uid, out_dir)``
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ORTHANC_INSTALL_HINT = "apt-get install -y orthanc orthanc-dicomweb"
# Debian/Ubuntu `orthanc-dicomweb` installs the first; the others are where source builds tend to put it.
_PLUGINS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")


def find_orthanc() -> tuple[str, str]:
    """Locate the Orthanc executable and its DICOMweb plugin.

    Returns:
        The path of the ``Orthanc`` executable and that of the DICOMweb plugin library.

    Raises:
        RuntimeError: When either is missing; the message says how to install them.
    """
    exe = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")  # sbin is often off PATH
    plugin = next((str(p) for d in _PLUGINS if (p := Path(d, "libOrthancDicomWeb.so")).is_file()), None)
    if exe is None or plugin is None:
        missing = "the Orthanc executable" if exe is None else "the Orthanc DICOMweb plugin (libOrthancDicomWeb.so)"
        raise RuntimeError(f"{missing} was not found; install it with `{ORTHANC_INSTALL_HINT}`")
    return exe, plugin


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OrthancServer:
    """A running Orthanc: its REST API at ``url`` and its DICOMweb API at ``dicomweb_url``."""

    url: str
    dicomweb_url: str

    def _rest(self, method: str, path: str, data: bytes | str | None = None) -> object:
        response = requests.request(method, self.url + path, data=data, timeout=60)
        response.raise_for_status()
        return response.json()

    def upload(self, paths: Iterable[Path]) -> list[str]:
        """Store DICOM files in Orthanc through its REST API (``POST /instances``).

        Args:
            paths: The DICOM files.

        Returns:
            The Orthanc identifiers of the stored instances.
        """
        ids = []
        for path in paths:
            response = requests.post(self.url + "/instances", data=Path(path).read_bytes(), timeout=60)
            if not response.ok:
                raise RuntimeError(f"Orthanc refused {path}: HTTP {response.status_code} {response.text[:500]}")
            ids.append(response.json()["ID"])
        return ids

    def studies(self) -> list[str]:
        """List the stored studies.

        Returns:
            Their StudyInstanceUIDs.
        """
        return [study["MainDicomTags"]["StudyInstanceUID"] for study in self._rest("GET", "/studies?expand")]

    def series_of_study(self, study_uid: str) -> list[dict]:
        """List the series of a study.

        Args:
            study_uid: The StudyInstanceUID.

        Returns:
            One dict per series: SeriesInstanceUID, Modality, SeriesDescription and ``instances`` (their count).
        """
        study_ids = [hit["ID"] for hit in self._rest("POST", "/tools/lookup", study_uid) if hit["Type"] == "Study"]
        if not study_ids:
            raise KeyError(f"no study {study_uid} in Orthanc")
        series_list = self._rest("GET", f"/studies/{study_ids[0]}/series")
        keys = ("SeriesInstanceUID", "Modality", "SeriesDescription")
        return [{**{k: s["MainDicomTags"].get(k) for k in keys}, "instances": len(s["Instances"])} for s in series_list]

    def pull_series(self, series_uid: str, out_dir: Path) -> list[Path]:
        """Download every instance of a series through DICOMweb (QIDO-RS, then WADO-RS).

        Args:
            series_uid: The SeriesInstanceUID.
            out_dir: Where to write ``<SOPInstanceUID>.dcm`` files (created if missing).

        Returns:
            The paths of the written files.
        """
        from dicomweb_client.api import DICOMwebClient  # an optional dependency: imported only when needed

        client = DICOMwebClient(url=self.dicomweb_url)
        found = client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
        if not found:
            raise KeyError(f"no series {series_uid} in Orthanc")
        study_uid = found[0]["0020000D"]["Value"][0]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for dataset in client.retrieve_series(study_uid, series_uid):
            path = out_dir / f"{dataset.SOPInstanceUID}.dcm"
            dataset.save_as(path, write_like_original=False)
            paths.append(path)
        return paths


@contextlib.contextmanager
def orthanc_server(storage_dir: Path, timeout: float = 60.0) -> Iterator[OrthancServer]:
    """Run a private Orthanc (REST + DICOMweb, no DICOM port) on 127.0.0.1 for the duration of the block.

    Args:
        storage_dir: Folder for its configuration, database, storage and log (``orthanc.log``); created if missing.
        timeout: Seconds to wait for it to answer ``GET /system``.

    Returns:
        A context manager yielding the :class:`OrthancServer`; Orthanc is stopped on leaving it.
    """
    exe, plugin = find_orthanc()
    storage_dir = Path(storage_dir).resolve()
    storage_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = {
        "Name": "disyre-test",
        "StorageDirectory": str(storage_dir / "storage"),
        "IndexDirectory": str(storage_dir / "index"),
        "HttpPort": port,
        # Orthanc 1.10 has no bind-address option: it listens on every interface but answers loopback clients only.
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "SaveJobs": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }
    config_path = storage_dir / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = storage_dir / "orthanc.log"

    def tail() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])

    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([exe, str(config_path)], stdout=log_file, stderr=subprocess.STDOUT, cwd=storage_dir)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with code {process.returncode}:\n{tail()}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url + "/system", timeout=2).ok:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not answer on {url} within {timeout:.0f} s:\n{tail()}")
                time.sleep(0.2)
            yield OrthancServer(url=url, dicomweb_url=url + "/dicom-web")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def require_orthanc() -> None:
    """Fail (under CI, where ``.ci/run`` installs Orthanc) or skip (elsewhere) when Orthanc is not installed,
    saying how to install it: PACS tests never pass silently without a PACS."""
    import os

    import pytest

    try:
        find_orthanc()
    except RuntimeError as error:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no Orthanc PACS for this test: {error}")
