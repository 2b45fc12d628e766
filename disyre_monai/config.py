"""Functions the bundle configs call by ``_target_`` that belong to no pipeline stage."""

from __future__ import annotations

import inspect
import os
from pathlib import Path


def bundle_root() -> str:
    """The folder of the bundle whose configs are being run: the folder above the first config file's ``configs/``.

    MONAI's ``ConfigWorkflow`` (behind ``python -m monai.bundle run``) knows where the first config file lies
    (``config_root_path``) and itself treats the folder above ``configs/`` as the bundle's root (it puts it on
    ``sys.path`` when running). This function finds the running workflow on the call stack and returns the
    same folder, as an absolute path. So ``models/model.pt`` is found next to the configs whatever the working
    directory, and a copy of the bundle folder placed anywhere finds its own weights.

    The bundle's ``initialize`` list resolves ``@bundle_root``, so the folder is known (and cached by the parser)
    from the workflow's ``initialize()`` on, also for ``workflow.parser.get_parsed_content(...)`` called from
    outside. Without a running ``ConfigWorkflow`` (a bare ``ConfigParser``), the working directory is returned,
    as MONAI's bundle scripts assume when no ``bundle_root`` is given. ``--bundle_root DIR`` on the command line
    (or ``bundle_root=DIR`` in Python) replaces this function altogether.

    Returns:
        the bundle folder, absolute.
    """
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, ConfigWorkflow) and getattr(owner, "config_root_path", None) is not None:
                folder = Path(owner.config_root_path)
                return str((folder.parent if folder.name == "configs" else folder).resolve())
            frame = frame.f_back
    finally:
        del frame
    return os.getcwd()
