"""From a dataset root to a datalist JSON the bundle reads: scan, split by subject, write atomically."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from monai.utils import look_up_option

from disyre_monai._version import __version__
from disyre_monai.data.paths import PATH_KEYS
from disyre_monai.io import atomic_write_json

from .datasets import DATASETS, get_layout, resolve_layout
from .layout import scan_layout, walk_files
from .split_files import ON_CONFLICT, load_split_files, match_subjects
from .splits import DEFAULT_FRACTIONS, SPLITS, check_fractions, split_subjects

__all__ = ["scan_dataset", "make_datalist", "write_datalist"]

ON_MISSING = ("error", "skip")


def scan_dataset(dataset: str, root: str | os.PathLike, modality: str = "t1", on_missing: str = "error",
                 verbose: bool = False) -> list[dict]:
    """Every complete scan of ``dataset`` under ``root`` as a datalist entry with absolute paths.

    Args:
        dataset: one of :data:`~disyre_monai.data.adapters.DATASETS` (``ixi``, ``camcan``, ``brats2020``,
            ``brats2021``, ``brats2023``/``brats-gli``, ``atlas``, ``mslub``, ``wmh``), or ``brats``: the BraTS
            release whose files are under ``root``.
        root: the dataset folder, in the release's own layout (any folder above the scans).
        modality: ``t1``, ``t1ce``, ``t2``, ``flair`` or ``pd`` (aliases such as ``T2w``, ``t2f`` accepted),
            among those the dataset ships.
        on_missing: ``"error"`` or ``"skip"`` (see :func:`~disyre_monai.data.adapters.layout.scan_layout`).
        verbose: show a progress bar while the folders are walked.

    Returns:
        entries ``{"image", "mask"?, "label"?, "subject", "case", "role", "modality", "dataset", "site"?}``.
    """
    return _scan(dataset, root, modality, on_missing, verbose)[0].entries


def _check_on_missing(on_missing: str) -> str:
    try:
        return look_up_option(on_missing, ON_MISSING, print_all_options=False)
    except ValueError:
        raise ValueError(f"datalist: on_missing must be one of {ON_MISSING}, got {on_missing!r}.") from None


def _scan(dataset, root, modality, on_missing, verbose):
    get_layout(dataset).check_modality(modality)  # fail fast, before walking a large tree
    _check_on_missing(on_missing)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"datalist: dataset root {root} is not a folder.")
    files = walk_files(root, desc=f"scanning {root.name}", verbose=verbose)
    layout = resolve_layout(dataset, files, root)
    return scan_layout(layout, root, files, modality, on_missing, DATASETS.values()), layout, root


def make_datalist(
    dataset: str,
    root: str | os.PathLike,
    modality: str = "t1",
    seed: int = 0,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    split_file: str | os.PathLike | Mapping[str, str] | None = None,
    split_map: Mapping[str, str] | None = None,
    subject_column: str | None = None,
    on_missing: str = "error",
    on_conflict: str = "error",
    verbose: bool = False,
) -> dict:
    """The datalist of a dataset as a dict: ``{"metadata", "training", "validation", "test"}``, absolute paths.

    Arguments as in :func:`write_datalist`. Each entry also carries ``"split"``.
    """
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"datalist: on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}.")
    scan, layout, root = _scan(dataset, root, modality, on_missing, verbose)
    role_val, role_test = DEFAULT_FRACTIONS[layout.role]
    val, test = check_fractions(role_val if val_fraction is None else val_fraction,
                                role_test if test_fraction is None else test_fraction, "datalist")
    subjects = sorted({e["subject"] for e in scan.entries})
    assignment, unlisted, sources = {}, [], None
    if split_file is not None:
        listing, sources = load_split_files(split_file, scan.entries[0]["modality"], split_map, subject_column)
        named = match_subjects(layout, subjects, listing, on_missing, on_conflict)
        unlisted = [s for s in subjects if s not in named]
        assignment = {s: split for s, split in named.items() if split is not None}
        selected = sorted(s for s, split in named.items() if split is None)
    else:
        selected = subjects
    for split, members in split_subjects(selected, seed, val, test).items():
        assignment.update(dict.fromkeys(members, split))

    datalist = {split: [] for split in SPLITS}
    for entry in scan.entries:
        split = assignment.get(entry["subject"])
        if split is not None:
            datalist[split].append({**entry, "split": split})
    if layout.role == "lesion" and datalist["training"]:
        warnings.warn(f"datalist: {len(datalist['training'])} {layout.name} scan(s) with lesions are in the training "
                      "split; DISYRE trains on healthy scans only.", stacklevel=2)
    counts = {split: dict(sorted(Counter(e["role"] for e in datalist[split]).items())) for split in SPLITS}
    datalist["metadata"] = {
        "dataset": layout.name,
        "modality": scan.entries[0]["modality"],
        "role": layout.role,
        "root": str(root),
        "seed": seed,
        "val_fraction": val,
        "test_fraction": test,
        "split_source": "split_file" if split_file is not None else "seeded fractions",
        "split_files": sources,
        "split_map": dict(split_map) if split_map else None,
        "on_conflict": on_conflict if split_file is not None else None,
        "counts": {split: {"scans": len(datalist[split]), "subjects": len({e["subject"] for e in datalist[split]}),
                           "roles": counts[split]} for split in SPLITS},
        "unlisted_subjects": unlisted,
        "skipped_scans": scan.skipped,
        "label_rule": layout.label_rule if layout.role == "lesion" else None,
        "notes": scan.notes,
        "tool": f"disyre-monai {__version__}",
    }
    return {"metadata": datalist.pop("metadata"), **datalist}


def _relative(entries: list[dict], folder: Path) -> list[dict]:
    return [{k: (os.path.relpath(v, folder) if k in PATH_KEYS else v) for k, v in e.items()} for e in entries]


def write_datalist(
    dataset: str,
    root: str,
    output: str | None = None,
    modality: str = "t1",
    seed: int = 0,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    split_file: str | Mapping[str, str] | None = None,
    split_map: Mapping[str, str] | None = None,
    subject_column: str | None = None,
    on_missing: str = "error",
    on_conflict: str = "error",
    verbose: bool = True,
) -> str:
    """Scan a dataset in its official layout and write a datalist JSON with subject-level splits.

    ``disyre-monai datalist brats2021 /data/BraTS2021 --modality t2 --output brats_t2.json`` then
    ``python -m monai.bundle run ... --datalist brats_t2.json`` (no ``--dataset_dir`` needed: paths are
    relative to the JSON file's folder).

    Args:
        dataset: ``ixi``, ``camcan`` (healthy), ``brats2020``, ``brats2021``, ``brats2023`` (alias ``brats-gli``),
            ``atlas``, ``mslub``, ``wmh`` (lesion); ``brats`` picks the BraTS release found under ``root``.
            Layouts and sources: :mod:`disyre_monai.data.adapters.datasets`.
        root: the dataset folder as released (any folder above the scans).
        output: JSON file to write; default ``<root>/datalist_<dataset>_<modality>.json``.
        modality: ``t1``, ``t1ce``, ``t2``, ``flair`` or ``pd`` (aliases ``T1w``, ``t2f``... accepted).
        seed: seed of the subject-level split (same seed, same subjects -> same split).
        val_fraction, test_fraction: shares of subjects in validation and test (the rest is training);
            default 0.1/0.1 for healthy datasets and 0.1/0.9 (no training) for lesion datasets.
        split_file: a published split instead of the seeded one: a JSON, CSV/TSV or text file, or
            ``{"validation": file, "test": file, ...}``; see :mod:`disyre_monai.data.adapters.split_files`.
            Subjects on disk that it does not name are left out (listed in the metadata); a file that names
            subjects without splits selects them, and the seeded fractions split them.
        split_map: for a JSON split file, list name -> split (e.g. ``{"training_t2_upd": "test"}``).
        subject_column: for a CSV/TSV split file, the column with subject ids.
        on_missing: ``"error"`` (default): incomplete scans, or split-file subjects absent on disk, raise one
            error listing all of them; ``"skip"``: they are left out with a warning.
        on_conflict: a subject the split file puts in two splits: ``"error"`` (default), ``"prefer_test"`` (kept
            in the later split only, test > validation > training) or ``"drop"`` (left out), with a warning.
        verbose: print the summary and show a progress bar.

    Returns:
        the path of the written JSON (``{"metadata", "training", "validation", "test"}``, each entry with
        ``"image"``, ``"label"`` for lesion datasets, ``"mask"`` where the release ships brain masks,
        ``"subject"``, ``"case"``, ``"role"``, ``"modality"``, ``"dataset"``, ``"split"``).
    """
    datalist = make_datalist(dataset, root, modality, seed, val_fraction, test_fraction, split_file, split_map,
                             subject_column, on_missing, on_conflict, verbose)
    meta = datalist["metadata"]
    if output is None:
        output = Path(meta["root"]) / f"datalist_{meta['dataset']}_{meta['modality']}.json"
    output = Path(output).expanduser().resolve()
    folder = output.parent
    written = {"metadata": meta, **{split: _relative(datalist[split], folder) for split in SPLITS}}
    try:
        atomic_write_json(output, written)
    except OSError as error:
        raise OSError(f"datalist: cannot write {output} ({error}); choose another place with output=...") from error
    if verbose:
        print(_summary(meta, output))
    return str(output)


def _summary(meta: dict, output: Path) -> str:
    total = sum(c["scans"] for c in meta["counts"].values())
    lines = [f"{meta['dataset']} {meta['modality']}: {total} scans ({meta['split_source']}) -> {output}"]
    for split, c in meta["counts"].items():
        roles = ", ".join(f"{n} {role}" for role, n in c["roles"].items()) or "empty"
        lines.append(f"  {split:<10} {c['scans']:>5} scans, {c['subjects']:>5} subjects ({roles})")
    if meta["unlisted_subjects"]:
        lines.append(f"  left out (not in the split file): {len(meta['unlisted_subjects'])} subjects")
    if meta["skipped_scans"]:
        lines.append(f"  left out (incomplete): {len(meta['skipped_scans'])} scans")
    return "\n".join(lines)
