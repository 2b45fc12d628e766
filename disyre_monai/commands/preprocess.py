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
    <output_dir>/failures.json                 the cases that failed, in the format of every batch run
                                               (:class:`~disyre_monai.engines.FailureReport`)
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

from disyre_monai._version import __version__
from disyre_monai.data.datalist import load_datalist, resolve_paths
from disyre_monai.failures import FailureReport, failure_record
from disyre_monai.io import atomic_write_json, image_stem
from disyre_monai.preprocess.case import ROLES, preprocess_case
from disyre_monai.preprocess.settings import PreprocessSettings
from disyre_monai.utils import check_int

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "preprocess_parameters.json"
FAILURES_FILE = "failures.json"
DATALIST_FILE = "datalist.json"
#: the failure records' stage.
STAGE = "preprocess"


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
    status: str = "pending"  # "pending", "skipped", "done" or "failed"
    result: dict = field(default_factory=dict)  # what the worker returned

#: where, in the output folder, the input's DICOM series get their folders of links (one per series).
DICOM_STAGING = ".dicom-series"

def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "case"


def _image_stem(entry: dict) -> str:
    return image_stem(str(entry["image"]))


def output_names(entries: list[dict]) -> list[str]:
    """File-name-safe output names of the entries of one split, all distinct.

    The entry's "subject" when no other entry of the split has it; else (several scans of one subject, or no
    subject) the image file name without its suffix; if that still collides, ``_<index>`` is appended.
    """
    subjects = [_safe_name(e.get("subject") or _image_stem(e)) for e in entries]
    names = [s if subjects.count(s) == 1 else _safe_name(_image_stem(e)) for s, e in zip(subjects, entries)]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def read_datalist(datalist_or_dir: str | os.PathLike, folder_split: str = "training",
                  staging_dir: str | os.PathLike | None = None) -> tuple[dict, dict, Path]:
    """The input: ``(splits, other top-level keys, folder relative paths start from)``.

    A JSON datalist gives every top-level list as a split (entries with paths relative to the JSON's
    folder); a folder gives its image files and DICOM series as one split named ``folder_split``, with absolute
    paths (each series a folder of links under ``staging_dir``, see :func:`~disyre_monai.data.load_datalist`).
    """
    source = Path(datalist_or_dir)
    if source.is_dir():
        staging = None if staging_dir is None else str(staging_dir)
        return {folder_split: load_datalist(dataset_dir=str(source), staging_dir=staging)}, {}, source
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


def _located(record: dict, split: str, index: int, name: str | None = None) -> dict:
    """A :func:`~disyre_monai.engines.failure_record` plus where the entry is in the datalist (``split``,
    ``index``) and its output ``name``."""
    return {**record, "split": split, "index": str(index), "name": name or ""}


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
                record = failure_record(str(entry), STAGE, "ValueError: the entry has no 'image' path")
                failures.append(_located(record, split, index))
        for (index, entry), name in zip(valid, output_names([e for _, e in valid])):
            (resolved,), missing = resolve_paths([entry], root)
            outputs = {role: f"{split}/{name}_{role}.nii.gz" for role in ROLES if role != "label" or entry.get(role)}
            cases.append(Case(split, index, entry, resolved, name, outputs, missing))
    return cases, failures


def _run_case(entry: dict, outputs: dict, settings: PreprocessSettings) -> dict:
    """Worker body: never raises for a bad case, returns ``{"status": "done"|"failed", ...}``."""
    try:
        return {"status": "done", "warnings": preprocess_case(entry, outputs, settings)}
    except Exception as error:  # one bad case must not stop the others: record it
        logger.debug(traceback.format_exc())
        return {"status": "failed", "record": failure_record(entry, STAGE, error)}


def _limit_threads(threads: int) -> None:
    """Worker initialiser: share the CPU cores between worker processes instead of oversubscribing them."""
    import torch

    torch.set_num_threads(threads)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass


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


def _sort_cases(cases: list[Case], output_dir: Path, overwrite: bool, report: FailureReport) -> list[Case]:
    """The cases to run: cases with missing inputs fail, cases whose outputs all exist are skipped (unless
    ``overwrite``), the rest are returned."""
    todo = []
    for case in cases:
        if case.missing:
            error = "FileNotFoundError: missing input file(s): " + "; ".join(case.missing)
            report.add(_located(failure_record(case.resolved, STAGE, error), case.split, case.index, case.name))
        elif not overwrite and all((output_dir / rel).is_file() for rel in case.outputs.values()):
            case.status = "skipped"
        else:
            todo.append(case)
    report.skipped(sum(case.status == "skipped" for case in cases))
    return todo


def _run_cases(todo: list[Case], output_dir: Path, settings: PreprocessSettings, num_workers: int) -> None:
    """Run the cases (in this process, or in ``num_workers`` processes) and store each result in ``case.result``."""

    def outputs_of(case: Case) -> dict:
        return {role: str(output_dir / rel) for role, rel in case.outputs.items()}

    progress = tqdm(total=len(todo), desc="preprocess", unit="case", disable=not todo)
    if num_workers == 0:
        for case in todo:
            case.result = _run_case(case.resolved, outputs_of(case), settings)
            progress.update()
    else:
        threads = max(1, (os.cpu_count() or 1) // num_workers)
        with ProcessPoolExecutor(num_workers, get_context("spawn"), _limit_threads, (threads,)) as pool:
            futures = {pool.submit(_run_case, case.resolved, outputs_of(case), settings): case for case in todo}
            try:
                for future in as_completed(futures):
                    try:
                        futures[future].result = future.result()
                    except Exception as error:  # a worker died (e.g. killed for memory): the case failed
                        futures[future].result = {"status": "failed",
                                                  "record": failure_record(futures[future].resolved, STAGE, error)}
                    progress.update()
            except BaseException:  # e.g. Ctrl-C: drop the queued cases instead of running them all first
                for future in futures:
                    future.cancel()
                raise
    progress.close()


def _collect(todo: list[Case], report: FailureReport) -> list[str]:
    """Record each run case as done or failed; return the warnings of the done ones."""
    warnings = []
    for case in todo:
        if case.result["status"] == "done":
            case.status = "done"
            report.completed()
            warnings.extend(case.result["warnings"])
            for message in case.result["warnings"]:
                logger.warning(message)
        else:
            report.add(_located(case.result["record"], case.split, case.index, case.name))
    return warnings


def _write_datalist(splits: dict, others: dict, cases: list[Case], source, output_dir: Path, metadata: dict) -> Path:
    """The output datalist: the input's splits with the done/skipped entries pointing at the outputs, its other
    keys, and ``metadata["preprocessing"]``."""
    out_splits = {split: [] for split in splits}
    for case in cases:
        if case.status in ("done", "skipped"):
            subject = case.entry.get("subject", case.name)
            out_splits[case.split].append({**case.entry, "subject": subject, **case.outputs})
    source_metadata = others.get("metadata")
    merged = dict(source_metadata) if isinstance(source_metadata, dict) else {}
    merged["preprocessing"] = {"tool": f"disyre_monai {__version__} preprocess",
                               "source": str(Path(source).resolve()), **metadata}
    datalist = {**{k: v for k, v in others.items() if k != "metadata"}, **out_splits, "metadata": merged}
    return atomic_write_json(output_dir / DATALIST_FILE, datalist)


def preprocess_dataset(
    datalist_or_dir: str,
    output_dir: str,
    settings: PreprocessSettings | None = None,
    num_workers: int = 0,
    overwrite: bool = False,
    folder_split: str = "training",
    **options,
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
        settings: the step parameters; None: :class:`~disyre_monai.preprocess.PreprocessSettings` made from
            ``options``.
        num_workers: worker processes (0: run in this process).
        overwrite: redo cases whose outputs exist (otherwise they are skipped, so a killed run resumes).
        folder_split: split name given to the images of a folder input.
        options: step parameters by name, each with its default and meaning in ``PreprocessSettings``:
            ``spacing`` (mm; default 1 mm), ``skull_strip`` ("auto", "mask", "robex", "hdbet", "atlas", "none"), ``n4``,
            ``n4_shrink_factor``, ``n4_iterations``, ``template`` ("mni152_2009a" or a path), ``template_mask``,
            ``registration_iterations``, ``registration_sampling``, ``registration_mask_erosion_mm``,
            ``spatial_size`` ("auto", 3 voxel counts or None), ``center`` ("auto", "brain", "grid"), ``seed``.
            Not allowed together with ``settings``.

    Returns:
        ``{"done": n, "skipped": n, "failed": n, "datalist": path, "failures": path, "warnings": [...]}``.

    Raises:
        ValueError / FileNotFoundError / ImportError: before any case runs, for bad arguments, an unreadable
            datalist, an output_dir made with other parameters, or a missing optional package. A failing case
            does not raise: it is listed in ``failures.json``.
    """
    if settings is not None and options:
        raise ValueError(f"preprocess_dataset: give settings or options ({', '.join(options)}), not both.")
    settings = (settings or PreprocessSettings.from_options(**options)).resolve()
    num_workers = check_int("preprocess_dataset", "num_workers", num_workers, 0, 1024)
    output_dir = Path(output_dir).resolve()
    splits, others, root = read_datalist(datalist_or_dir, folder_split, staging_dir=output_dir / DICOM_STAGING)
    cases, entry_failures = plan_cases(splits, root)
    parameters = settings.as_dict()
    _check_previous_parameters(output_dir, parameters, bool(overwrite))
    atomic_write_json(output_dir / PARAMETERS_FILE, parameters)

    report = FailureReport(output_dir, FAILURES_FILE, run=STAGE, exit_on_failure=False)
    for record in entry_failures:
        report.add(record)
    todo = _sort_cases(cases, output_dir, bool(overwrite), report)
    _run_cases(todo, output_dir, settings, num_workers)
    warnings = _collect(todo, report)
    report.failures.sort(key=lambda f: (f.get("split", ""), int(f.get("index", 0))))
    report.save()

    counts = {"done": report.num_completed, "skipped": report.num_skipped, "failed": len(report)}
    datalist_path = _write_datalist(splits, others, cases, datalist_or_dir, output_dir, {
        "steps": settings.steps(), "parameters": parameters, "counts": counts, "warnings": warnings})
    print(
        f"preprocess: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
        + (f" (see {report.path})" if len(report) else "")
        + f"; datalist: {datalist_path}",
        flush=True,
    )
    return {**counts, "datalist": str(datalist_path), "failures": str(report.path), "warnings": warnings}


@functools.wraps(preprocess_dataset)
def preprocess_command(*args, **kwargs) -> None:
    """Command-line wrapper of :func:`preprocess_dataset`: exit status 1 when any case failed."""
    summary = preprocess_dataset(*args, **kwargs)
    if summary["failed"]:
        raise SystemExit(1)
