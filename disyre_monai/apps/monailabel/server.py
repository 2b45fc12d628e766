"""Start the DISYRE MONAI Label server: ``disyre-monai label --studies DIR``.

:func:`start_server` prepares a writable app folder (``main.py`` + a copy of the bundle whose
``models/model.pt`` training may replace) and runs MONAI Label's own ``start_server`` on it, bound to
127.0.0.1 unless told otherwise. :func:`serve_in_background` runs the same command in a subprocess, for
scripts and tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from disyre_monai.commands.bundle import REQUIRED, locate_bundle
from disyre_monai.io import atomic_write

#: the app folder's ``main.py``: MONAI Label loads the ``MONAILabelApp`` subclass it finds there.
MAIN_PY = '''"""MONAI Label app folder of disyre-monai (written by `disyre-monai label`; rewritten at every start)."""

from disyre_monai.apps.monailabel.app import DisyreLabelApp  # noqa: F401
'''
#: parts of the bundle copied into the app folder (configs are refreshed at every start; weights are kept).
BUNDLE_PARTS = ("configs", "docs", "LICENSE")
ASGI_APP = "disyre_monai.apps.monailabel.asgi:app"
APP_FOLDER_NAME = ".disyre-monai-label"


def _copy_file(source: Path, destination: Path) -> None:
    with open(source, "rb") as f:
        atomic_write(destination, lambda out: shutil.copyfileobj(f, out))


def prepare_app(app_dir: str | os.PathLike, bundle_dir: str | os.PathLike | None = None,
                reset_model: bool = False) -> Path:
    """Create or refresh the app folder MONAI Label loads: ``main.py`` and ``model/disyre/`` (the bundle).

    The bundle's configs, docs, licence and the model space card's files in ``models/`` (template, card; not the
    weights) are copied at every call; ``models/model.pt`` only when the app folder has none yet or ``reset_model``
    is True, so weights fine-tuned by the train task survive restarts.

    Args:
        app_dir: the app folder (created).
        bundle_dir: the bundle to serve (see :func:`~disyre_monai.commands.bundle.locate_bundle`).
        reset_model: put the bundle's weights back, discarding fine-tuned ones (earlier runs stay in
            ``model/disyre/train_runs/``).

    Returns:
        the app folder.
    """
    from disyre_monai.apps.monailabel.app import BUNDLE_SUBDIR  # imports MONAI Label: a missing extra fails here

    source = locate_bundle(bundle_dir, REQUIRED)
    app = Path(app_dir).resolve()
    target = app / BUNDLE_SUBDIR
    for part in BUNDLE_PARTS:
        path = source / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] * path.is_file()
        for file in files:
            _copy_file(file, target / file.relative_to(source))
    # the model space card's files (template, models/model_space.json of a trained run): inference checks against
    # them and --preprocess registers to the template; weights (*.pt) are handled below
    for file in sorted(p for p in (source / "models").glob("*") if p.is_file() and p.suffix != ".pt"):
        _copy_file(file, target / "models" / file.name)
    model = target / "models" / "model.pt"
    if reset_model or not model.is_file():
        _copy_file(source / "models" / "model.pt", model)
    atomic_write(app / "main.py", lambda f: f.write(MAIN_PY), binary=False)
    return app


def default_app_dir(studies: str) -> Path:
    """``<studies>/.disyre-monai-label`` for a local studies folder, ``~/.disyre-monai-label`` for a remote one."""
    if studies.startswith(("http://", "https://")):
        return Path.home() / APP_FOLDER_NAME
    return Path(studies).resolve() / APP_FOLDER_NAME


def start_server(
    studies: str,
    app_dir: str | None = None,
    bundle_dir: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    reset_model: bool = False,
    preload: bool = False,
    preprocess: bool = False,
    skull_strip: str | None = None,
    store_results: bool = True,
    log_level: str = "INFO",
) -> None:
    """Serve DISYRE to 3D Slicer / OHIF with MONAI Label (blocks until stopped with Ctrl+C).

    Model ``disyre``: ``POST /infer/disyre`` returns a uint8 label map (1 = anomaly) or, with
    ``params={"result_dtype": "float32"}``, the anomaly heatmap, plus case scores in the JSON result;
    ``POST /train/disyre`` fine-tunes on the studies' images without labels. Nothing is downloaded.

    Args:
        studies: folder of NIfTI/NRRD scans (created if missing), or a DICOMweb address (a PACS such as Orthanc:
            ``http://pacs:8042/dicom-web``; its MR series are listed, read as DICOM, see docs/pacs.md).
        app_dir: writable app folder with the served bundle copy and logs (default:
            ``<studies>/.disyre-monai-label``).
        bundle_dir: bundle to serve (default: ``$DISYRE_BUNDLE`` or the bundle shipped with the package; see
            :func:`~disyre_monai.commands.bundle.locate_bundle`).
        host: address to bind; the default 127.0.0.1 only accepts connections from this computer (use
            0.0.0.0 to serve other machines, behind your own access control).
        port: TCP port.
        reset_model: replace the served (possibly fine-tuned) weights by the bundle's.
        preload: load the network when the server starts instead of at the first request.
        preprocess: the studies are raw scans (full head, native space): each is taken into the model's space on
            the fly (the bundle's ``--preprocess True``) and the label map / heatmap come back on the scan's own
            grid; without it, scans must already be in the model's space (others are refused with the reason).
        skull_strip: with ``preprocess``, how raw scans are skull-stripped (default: the bundle's
            ``preprocess_options``, "auto": ROBEX for a head): "atlas" (Colin27's head registered to the scan,
            about 3 s instead of ROBEX's 60-85 s per scan on 2 CPU cores, coarser), "robex", "hdbet", ...
        store_results: with a DICOMweb address as ``studies`` (a PACS): store each scored series' results back
            in its study (the anomaly mask as DICOM SEG, the map as an overlay series); False leaves the PACS
            untouched (results go to the client only).
        log_level: DEBUG, INFO, WARNING or ERROR.
    """
    from disyre_monai.apps.monailabel._compat import require_monailabel

    require_monailabel()
    from monailabel.main import Main

    from disyre_monai.apps.monailabel.infer import SKULL_STRIP_CONF, STORE_RESULTS_CONF, skull_strip_setting

    if skull_strip is not None and not preprocess:
        raise ValueError("start_server: skull_strip applies to raw scans; add preprocess=True (--preprocess True).")
    studies = str(studies)
    app = prepare_app(app_dir or default_app_dir(studies), bundle_dir, reset_model)
    argv = ["start_server", "--app", str(app), "--studies", studies, "--host", str(host), "--port", str(int(port)),
            "--uvicorn_app", ASGI_APP, "--verbose", str(log_level).upper(), "--log_level", str(log_level).lower()]
    if preload:
        argv += ["--conf", "preload", "true"]
    if preprocess:
        argv += ["--conf", "preprocess", "true"]
    if not store_results:
        argv += ["--conf", STORE_RESULTS_CONF, "false"]
    if skull_strip is not None:
        argv += ["--conf", SKULL_STRIP_CONF, skull_strip_setting({SKULL_STRIP_CONF: skull_strip})]
    if not os.environ.get("MONAI_LABEL_SESSION_PATH"):
        from monailabel.config import settings

        settings.MONAI_LABEL_SESSION_PATH = str(app / "sessions")  # keep the server's files in the app folder
    main = Main()
    args = main.args_parser().parse_args(argv)
    main.action_start_server(args)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 180.0, log: Path | None = None) -> None:
    """Poll ``GET {url}/info/`` until it answers 200.

    Raises:
        RuntimeError: when the server process ends first or ``timeout`` seconds pass, with the log's tail.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/info/", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:] if log and log.is_file() else ""
    state = f"exited with {process.returncode}" if process.poll() is not None else f"not ready after {timeout:.0f} s"
    raise RuntimeError(f"MONAI Label server {state}; log tail:\n{tail}")


@contextlib.contextmanager
def serve_in_background(
    studies: str | os.PathLike,
    app_dir: str | os.PathLike | None = None,
    port: int | None = None,
    log_file: str | os.PathLike | None = None,
    timeout: float = 180.0,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Run ``disyre-monai label`` in a subprocess on 127.0.0.1 and yield its base URL until the block ends.

    The server (and any training process it started) is stopped at exit: SIGTERM to its process group, then
    SIGKILL after 20 s.

    Args:
        studies: studies folder.
        app_dir: app folder (default: the server's default).
        port: TCP port (default: a free one).
        log_file: where the server's output goes (default: ``<app folder>/logs/server_<port>.log``).
        timeout: seconds to wait for the server to answer.
        env: environment of the server process (default: this one's).
        extra_args: more ``disyre-monai label`` arguments, e.g. ``("--bundle_dir", path)``.
    """
    port = port or free_port()
    folder = Path(app_dir) if app_dir else default_app_dir(str(studies))
    log = Path(log_file) if log_file else folder / "logs" / f"server_{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "disyre_monai.commands.cli", "label", "--studies", str(studies), "--port", str(port)]
    if app_dir:
        cmd += ["--app_dir", str(app_dir)]
    cmd += list(extra_args)
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, timeout, log)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
