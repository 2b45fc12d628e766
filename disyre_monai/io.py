"""Files: the image formats read (:data:`IMAGE_SUFFIXES`), and atomic writing: every output goes to a temporary
file in its folder, then is renamed into place.

A reader, or a crash (even ``SIGKILL``) at any moment, sees either the previous file or the complete new one,
never a torn file. Temporary files are hidden (``.<name>.<random>.tmp[<suffix>]``); a killed writer can leave
one behind, which :func:`remove_stale_temporaries` deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from monai.data import NibabelWriter

#: File-name endings of the image formats read (NIfTI, NRRD, MetaImage), lower case.
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
#: The NIfTI ones, compressed first (the order in which an output file is looked for).
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Names of the temporary files written here (``mkstemp`` adds 8 random characters).
TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9.]+)?$")
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".xz")


def image_stem(path: str | os.PathLike) -> str:
    """The file name of an image without its suffix (one of :data:`IMAGE_SUFFIXES`, any case)."""
    name = Path(path).name
    suffix = max((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), key=len, default="")
    return name[: len(name) - len(suffix)] if suffix else Path(name).stem


def _image_suffix(name: str) -> str:
    """``".nii.gz"`` for ``"x.nii.gz"``, ``".png"`` for ``"x.png"``: what format-sniffing writers look at."""
    suffixes = Path(name).suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() in _COMPRESSIONS:
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it to ``path``.

    For writers that take a file name rather than an open file (``nib.save``, ``SaveImage`` writers). With
    ``keep_suffix`` the temporary name ends with ``path``'s suffix (e.g. ``.nii.gz``), so writers that pick
    the format from the name write the right one. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (_image_suffix(path.name) if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it and rename it to ``path``.

    A reader, or a crash at any moment, sees either the previous file or the complete new one, never a
    torn file. Returns ``path``.
    """
    path = Path(path)
    with atomic_path(path, keep_suffix=False) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"), binary=False)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path``, atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def verify_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Raise ``ValueError`` unless ``path`` is a complete PyTorch zip file whose records all pass their CRC check.

    ``torch.load`` itself does not check the CRCs: a flipped bit inside a tensor loads silently.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{what} {path} is truncated or not a PyTorch file ({e}).") from None
    if bad is not None:
        raise ValueError(f"{what} {path} is corrupt: its record {bad!r} fails the CRC check.")


def safe_torch_load(path: str | os.PathLike, map_location=None, verify: bool = True, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the problem.

    Only tensors and plain Python values (dicts, lists, numbers, strings) can be loaded; no pickled object
    is ever executed. With ``verify`` the file's CRCs are checked first (:func:`verify_torch_file`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is truncated, corrupt, or holds objects other than tensors and plain values.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    if verify:
        verify_torch_file(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{what} {path} holds objects other than tensors and plain values and is refused (weights-only loading; "
            f"re-save its state_dict): {first}"
        ) from None
    except Exception as e:
        raise ValueError(f"{what} {path} cannot be loaded ({type(e).__name__}: {str(e)[:500]}).") from None


def atomic_savefig(fig, path: str | os.PathLike, **kwargs) -> Path:
    """``matplotlib`` ``fig.savefig`` to ``path`` (format from its suffix), atomically."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **kwargs))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporary files a killed writer left directly in ``folder``; returns them.

    Only names this module creates (:data:`TEMPORARY_NAME`) are touched. Do not call it while another
    process writes into the same folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and TEMPORARY_NAME.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's ``NibabelWriter`` writing to a temporary file that is renamed into place when complete.

    Use it as ``SaveImage(d)(writer="disyre_monai.io.AtomicNibabelWriter")``: a killed inference run never
    leaves a torn NIfTI file under the final name.
    """

    def write(self, filename, verbose: bool = False, **obj_kwargs) -> None:
        with atomic_path(os.path.expanduser(filename)) as tmp:
            super().write(tmp, verbose=verbose, **obj_kwargs)
