"""Where the MONAI Bundle is (one locator for the configs, the commands and the MONAI Label app), its configs read
from Python, and ``disyre-monai bundle DIR``, a copy of it for ``python -m monai.bundle run``.

An installed wheel carries the bundle inside the package (``disyre_monai/bundle/``, put there by ``setup.py``); a
source checkout (editable install) has it at the repository's top level (``bundle/``).
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from disyre_monai.io import atomic_write

#: files a usable bundle has.
REQUIRED = ("configs/inference.json", "configs/train.json", "configs/metadata.json", "models/model.pt")


def locate_bundle(bundle_dir: str | os.PathLike | None = None,
                  required: Sequence[str] = ("configs/inference.json",)) -> Path:
    """The DISYRE bundle folder, the first of:

    1. ``bundle_dir``, when given;
    2. the bundle whose configs ``python -m monai.bundle run`` is running: the folder above the first config
       file's ``configs/`` (MONAI's ``ConfigWorkflow`` knows that file and itself treats this folder as the
       bundle's root). So ``models/model.pt`` is found next to the configs from any working directory, and a
       copy of the bundle placed anywhere uses its own weights;
    3. ``$DISYRE_BUNDLE``;
    4. the bundle shipped with this installation (``disyre_monai/bundle/`` of a wheel, ``bundle/`` of the
       source checkout this package runs from).

    Args:
        bundle_dir: the bundle folder (holding ``configs/``), or None for the rules above.
        required: files, relative to the folder, that the caller needs.

    Returns:
        the bundle folder, absolute.

    Raises:
        FileNotFoundError: when the folder lacks one of ``required`` (naming what is missing and where it looked),
            or when no rule gives a folder.
    """
    root = Path(bundle_dir) if bundle_dir else _running_bundle()
    if root is None and os.environ.get("DISYRE_BUNDLE"):
        root = Path(os.environ["DISYRE_BUNDLE"])
    if root is None:
        root = _shipped_bundle()
    missing = [name for name in required if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"bundle folder {root} misses {', '.join(missing)}; pass the DISYRE bundle with --bundle_dir "
            "(`disyre-monai bundle DIR` writes a copy) or set DISYRE_BUNDLE."
        )
    return root.resolve()


def bundle_root() -> str:
    """``bundle_root`` of the bundle configs: :func:`locate_bundle` as a string, nothing required.

    The configs' ``initialize`` list resolves ``@bundle_root``, so the folder is known (and cached by the parser)
    from the workflow's ``initialize()`` on, also for ``workflow.parser.get_parsed_content(...)`` called from
    outside. A bare ``ConfigParser`` (no running workflow) gets ``$DISYRE_BUNDLE`` or the shipped bundle; set
    ``parser["bundle_root"]`` there to use another. ``--bundle_root DIR`` on the command line replaces this
    function altogether.
    """
    return str(locate_bundle(required=()))


def _running_bundle() -> Path | None:
    """The folder above ``configs/`` of the running ``ConfigWorkflow``'s first config file, if one runs."""
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, ConfigWorkflow) and getattr(owner, "config_root_path", None) is not None:
                folder = Path(owner.config_root_path)
                return folder.parent if folder.name == "configs" else folder
            frame = frame.f_back
    finally:
        del frame
    return None


def _shipped_bundle() -> Path:
    """``disyre_monai/bundle/`` of an installed wheel, else ``bundle/`` of the source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "bundle", package.parent / "bundle"):
        if (candidate / "configs" / "metadata.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"no DISYRE bundle in {package / 'bundle'} (installed wheel) or {package.parent / 'bundle'} (source "
        "checkout); reinstall disyre-monai, or pass the bundle folder with --bundle_dir."
    )


def bundle_parser(bundle_dir: str | os.PathLike | None = None, config_file: str = "configs/inference.json",
                  owner: str = "bundle_parser", **settings):
    """A MONAI ``ConfigParser`` of one of the bundle's configs, its ``bundle_root`` set and ``settings`` replaced,
    for the commands that run the bundle's objects from Python.

    Args:
        bundle_dir: the bundle folder (see :func:`locate_bundle`).
        config_file: the config, relative to the bundle folder.
        owner: named in the error.
        settings: top-level settings to replace before parsing.

    Raises:
        FileNotFoundError: no such bundle or config file.
        KeyError: a setting the config does not have (naming ``owner`` and the file).
    """
    from monai.bundle import ConfigParser

    root = locate_bundle(bundle_dir, (config_file,))
    parser = ConfigParser()
    parser.read_config(str(root / config_file))
    unknown = sorted(k for k in settings if k not in parser)
    if unknown:
        raise KeyError(f"{owner}: {root / config_file} has no setting {', '.join(unknown)}.")
    parser["bundle_root"] = str(root)
    for key, value in settings.items():
        parser[key] = value
    return parser


def bundle_preprocessing(bundle_dir: str | os.PathLike | None = None, config_file: str = "configs/inference.json",
                         **settings):
    """The bundle's loading transforms (``preprocessing`` of its ``inference.json``), for code that runs outside
    the bundle, so that every entry point loads and checks scans the same way.

    The transforms read the volumes of a case (``CheckImageFilesd`` on the files, ``LoadImaged``,
    ``ValidateImaged``, reorientation to RAS, brain mask, intensity scaling; see ``inference.json``). The scans
    are not checked against the model space card (``ToModelSpaced`` with ``model_space=None``) unless
    ``model_space`` is given in ``settings``. ``disyre-monai evaluate`` and ``disyre-monai validate`` use them.

    Args:
        bundle_dir: the bundle folder (see :func:`locate_bundle`).
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


def copy_bundle(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """``disyre-monai bundle DIR``: write a copy of the shipped bundle to ``output_dir`` (configs, docs, demo
    weights, template, licence).

    Each file is written atomically. Then, from any folder:
    ``python -m monai.bundle run inference --config_file <output_dir>/configs/inference.json``.

    Args:
        output_dir: the new bundle folder (created).
        overwrite: replace files that exist (otherwise an existing, non-empty ``output_dir`` is an error).

    Returns:
        ``output_dir``.

    Raises:
        FileExistsError: ``output_dir`` holds files and ``overwrite`` is False.
    """
    source, target = _shipped_bundle(), Path(output_dir)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"copy_bundle: {target} is not empty; choose another folder or pass --overwrite True.")
    files = [p for p in sorted(source.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
             and "train_runs" not in p.relative_to(source).parts]
    for path in files:
        with open(path, "rb") as f:
            atomic_write(target / path.relative_to(source), lambda out, f=f: shutil.copyfileobj(f, out))
    missing = [name for name in REQUIRED if not (target / name).is_file()]
    if missing:
        raise FileNotFoundError(f"copy_bundle: the bundle in {source} lacks {', '.join(missing)}.")
    print(f"bundle copied to {target} ({len(files)} files); run it with: python -m monai.bundle run inference "
          f"--config_file {target / 'configs' / 'inference.json'}", flush=True)
    return target
