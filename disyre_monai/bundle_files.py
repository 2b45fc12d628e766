"""Where the MONAI Bundle is, and a copy of it for ``python -m monai.bundle run``.

An installed wheel carries the bundle inside the package (``disyre_monai/bundle/``, put there by ``setup.py``); a
source checkout (editable install) has it at the repository's top level (``bundle/``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from disyre_monai.io import atomic_write

#: files a usable bundle has.
REQUIRED = ("configs/inference.json", "configs/train.json", "configs/metadata.json", "models/model.pt")


def bundle_root() -> Path:
    """The bundle shipped with this installation: ``disyre_monai/bundle/`` of a wheel, else ``bundle/`` of the
    source checkout this package runs from.

    Raises:
        FileNotFoundError: when neither exists.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "bundle", package.parent / "bundle"):
        if (candidate / "configs" / "metadata.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"no DISYRE bundle in {package / 'bundle'} (installed wheel) or {package.parent / 'bundle'} (source "
        "checkout); reinstall disyre-monai, or pass the bundle folder explicitly."
    )


def copy_bundle(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a copy of the shipped bundle to ``output_dir`` (configs, docs, demo weights, template, licence).

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
    source, target = bundle_root(), Path(output_dir)
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
