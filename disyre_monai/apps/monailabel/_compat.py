"""Importing MONAI Label 0.8.5 beside the user's own torch, without torchvision.

MONAI Label's ``monailabel.transform.post`` (imported by its bundle inference task) imports
``torchvision.utils.make_grid``/``save_image`` at module level, for 2D pathology debug images only. torchvision
has no wheel matching every torch build (e.g. PyPI's torchvision next to a CPU-only torch wheel fails with
"operator torchvision::nms does not exist"), and installing it can replace the user's torch. So when
torchvision cannot be imported, :func:`import_monailabel` imports that one module with a stand-in
``torchvision.utils`` whose two functions raise an ``ImportError`` saying why, then removes the stand-in from
``sys.modules`` so nothing else (MONAI's optional imports included) ever sees it.
"""

from __future__ import annotations

import sys
import types

#: the install commands, quoted in every "MONAI Label is missing" message.
INSTALL_HINT = (
    'pip install "disyre-monai[label]" && pip install --no-deps monailabel==0.8.5 pydicom-seg==0.4.1 '
    "(see docs/monailabel.md)"
)


def require_monailabel() -> None:
    """Raise an ``ImportError`` with the install commands when MONAI Label or a module it needs is missing."""
    try:
        import monailabel  # noqa: F401
    except ImportError as error:
        raise ImportError(f"the DISYRE MONAI Label app needs MONAI Label 0.8.5 ({error}); install it with: "
                          f"{INSTALL_HINT}") from error
    import_monailabel()


def _torchvision_failure() -> str | None:
    """Why ``torchvision.utils`` cannot be imported, or None when it can."""
    try:
        import torchvision.utils  # noqa: F401
    except Exception as error:  # ImportError when absent, RuntimeError when built for another torch
        return f"{type(error).__name__}: {error}"
    return None


def _stand_in(reason: str) -> dict[str, types.ModuleType]:
    def unavailable(*args, **kwargs):
        raise ImportError(f"torchvision is needed for this MONAI Label feature but cannot be imported ({reason}).")

    package, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    utils.make_grid = utils.save_image = unavailable
    package.utils = utils
    package.__path__ = []  # a package, so that "torchvision.utils" resolves
    return {"torchvision": package, "torchvision.utils": utils}


def import_monailabel() -> None:
    """Import the MONAI Label modules the app uses, working around an absent or broken torchvision.

    Raises:
        ImportError: when a module MONAI Label needs is missing, with the install commands.
    """
    if "monailabel.transform.post" not in sys.modules:
        reason = _torchvision_failure()
        stand_in = _stand_in(reason) if reason else {}
        saved = {name: sys.modules.get(name) for name in stand_in}
        sys.modules.update(stand_in)
        try:
            import monailabel.transform.post  # noqa: F401
        except ImportError as error:
            raise ImportError(f"MONAI Label cannot be imported ({error}); install it with: {INSTALL_HINT}") from error
        finally:
            for name, module in stand_in.items():
                if sys.modules.get(name) is module:
                    if saved[name] is None:
                        del sys.modules[name]
                    else:
                        sys.modules[name] = saved[name]
    try:
        import monailabel.interfaces.app  # noqa: F401
        import monailabel.tasks.infer.bundle  # noqa: F401
    except ImportError as error:
        raise ImportError(f"MONAI Label cannot be imported ({error}); install it with: {INSTALL_HINT}") from error
