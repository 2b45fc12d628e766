"""Which weights a MONAI Label request uses: the served ones, or a patient's own (fine-tuned on their earlier study).

The served weights are ``<bundle>/models/model.pt``. A training request with ``weights_name`` NAME keeps its result
as ``<bundle>/models/patients/NAME/model.pt`` instead of replacing them, so that weights adapted to one patient
are never served to the others; inference and calibration requests name them the same way. Each set of weights
has its own calibration card next to it (``calibration.json`` in its folder).
"""

from __future__ import annotations

import os
import re

#: the folder, under ``models/``, of the patients' own weights.
PATIENT_WEIGHTS_DIR = "patients"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def weights_path(bundle_path: str | os.PathLike, name: str | None = None, must_exist: bool = True) -> str:
    """The weights file of ``name`` (None or "": the served weights).

    Args:
        bundle_path: the served bundle folder.
        name: a patient weights name: letters, digits, ``_``, ``.``, ``-`` (no path), at most 128 characters.
        must_exist: raise when the file is not there.

    Raises:
        ValueError: a name that is not a plain name.
        FileNotFoundError: ``must_exist`` and no such weights (saying how to make them).
    """
    if not name:
        path = os.path.join(bundle_path, "models", "model.pt")
    else:
        if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
            raise ValueError(f"weights_name must be a plain name (letters, digits, '_', '.', '-'), got {name!r}.")
        path = os.path.join(bundle_path, "models", PATIENT_WEIGHTS_DIR, name, "model.pt")
    if must_exist and not os.path.isfile(path):
        how = "train them with a training request naming it" if name else "the bundle has no weights"
        raise FileNotFoundError(f"no weights {name or 'served'!r} ({path}): {how}.")
    return path
