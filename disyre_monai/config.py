"""The bundle from Python: functions the bundle configs call by ``_target_`` that belong to no pipeline stage, and
the way back, finding the bundle folder and reading its loading transforms for the commands that run outside it."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
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


def find_bundle(bundle_dir: str | os.PathLike | None = None,
                required: Sequence[str] = ("configs/inference.json",)) -> Path:
    """The DISYRE bundle folder: ``bundle_dir``, else ``$DISYRE_BUNDLE``, else the bundle shipped with this
    installation (``disyre_monai/bundle/`` of an installed wheel, ``bundle/`` of a source checkout; see
    :func:`disyre_monai.bundle_files.bundle_root`).

    Args:
        bundle_dir: the bundle folder (holding ``configs/``), or None for the default.
        required: files, relative to the folder, that the caller needs.

    Raises:
        FileNotFoundError: when the folder lacks one of ``required``, naming what is missing and where it looked.
    """
    if bundle_dir:
        root = Path(bundle_dir)
    elif os.environ.get("DISYRE_BUNDLE"):
        root = Path(os.environ["DISYRE_BUNDLE"])
    else:
        from disyre_monai.bundle_files import bundle_root as shipped_bundle

        try:
            root = shipped_bundle()
        except FileNotFoundError:
            root = Path(__file__).resolve().parents[1] / "bundle"
    missing = [name for name in required if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"bundle folder {root} misses {', '.join(missing)}; pass the DISYRE bundle with --bundle_dir "
            "(the `bundle/` folder of a disyre-monai source checkout) or set DISYRE_BUNDLE."
        )
    return root


def bundle_preprocessing(bundle_dir: str | os.PathLike | None = None, config_file: str = "configs/inference.json",
                         **settings):
    """The bundle's loading transforms (``preprocessing`` of its ``inference.json``), for code that runs outside
    the bundle, so that every entry point loads and checks scans the same way.

    The transforms read the volumes of a case (``CheckImageFilesd`` on the files, ``LoadImaged``,
    ``ValidateImaged``, reorientation to RAS, brain mask, intensity scaling; see ``inference.json``). The scans
    are not checked against the model space card (``ToModelSpaced`` with ``model_space=None``) unless
    ``model_space`` is given in ``settings``.
    ``disyre-monai evaluate`` and ``disyre-monai validate`` use them.

    Args:
        bundle_dir: the bundle folder (see :func:`find_bundle`).
        config_file: the config holding ``preprocessing``, relative to the bundle folder.
        settings: top-level config settings to replace before parsing, e.g. ``max_voxels=...``,
            ``nonfinite="zero"`` or ``volume_keys=["image", "mask", "label", "map"]`` (the keys of the files
            loaded and reoriented together).

    Returns:
        the parsed ``preprocessing`` (a MONAI ``Compose``).

    Raises:
        FileNotFoundError: no such bundle or config file.
        KeyError: a setting the config does not have.
    """
    parser = bundle_parser(bundle_dir, config_file, owner="bundle_preprocessing", **settings)
    if "model_space" in parser and "model_space" not in settings:
        parser["model_space"] = None  # no model scores these scans: reorient them, without the model space check
    return parser.get_parsed_content("preprocessing")


def bundle_parser(bundle_dir: str | os.PathLike | None = None, config_file: str = "configs/inference.json",
                  owner: str = "bundle_parser", **settings):
    """A MONAI ``ConfigParser`` of one of the bundle's configs, its ``bundle_root`` set and ``settings`` replaced,
    for the commands that run the bundle's objects from Python.

    Args:
        bundle_dir: the bundle folder (see :func:`find_bundle`).
        config_file: the config, relative to the bundle folder.
        owner: named in the error.
        settings: top-level settings to replace before parsing.

    Raises:
        FileNotFoundError: no such bundle or config file.
        KeyError: a setting the config does not have (naming ``owner`` and the file).
    """
    from monai.bundle import ConfigParser

    root = find_bundle(bundle_dir, (config_file,))
    parser = ConfigParser()
    parser.read_config(str(root / config_file))
    unknown = sorted(k for k in settings if k not in parser)
    if unknown:
        raise KeyError(f"{owner}: {root / config_file} has no setting {', '.join(unknown)}.")
    parser["bundle_root"] = str(root.resolve())
    for key, value in settings.items():
        parser[key] = value
    return parser
