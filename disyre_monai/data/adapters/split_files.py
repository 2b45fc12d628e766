"""Published split files: the subject lists that benchmarks ship, read into ``{split: [subject tokens]}``.

Formats seen in the field, all supported:

- **DISYRE authors' code** (github.com/snavalm/disyre, ``experiments/*.json``): a MONAI-decathlon-like JSON
  object whose lists are named ``<split>_<modality>[_<variant>]`` (``training_t2``, ``validation_t2``,
  ``training_t2_upd``, ``training_t1_upd_exIssues``) with entries ``{"image": "<file name>", "label": ...}``
  whose file names carry the subject id (``sub-CC110033_T2w_stripped_registered.nii.gz``,
  ``BraTS20_Training_001_t2_registered.nii``). Lists named ``<split>`` or ``<split>_<modality>`` are read
  as that split; others are chosen with ``split_map`` (e.g. ``{"training_t2_upd": "test"}``: for the
  lesion datasets the authors' ``training_*`` lists are the evaluation sets).
- **Behrendt et al.** (github.com/FinnBehrendt/patched-Diffusion-Models-UAD, ``Data/splits/*.csv``): one CSV per
  split (``IXI_train_fold0.csv``, ``Brats21_val.csv``, ``MSLUB_test.csv``) with an ``img_name`` column
  (``IXI105-HH-1471_t1.nii.gz``, ``BraTS2021_00538``, ``patient26``): pass them as
  ``{"training": "IXI_train_fold0.csv", "validation": "IXI_val_fold0.csv", "test": "IXI_test.csv"}``. Their
  IXI fold files name 8 to 10 of the scans ``IXI_test.csv`` names (9 for fold 0, e.g. ``IXI219-Guys-0894``),
  so importing them needs ``on_conflict="prefer_test"`` (or ``"drop"``).
- **UPD benchmark** (github.com/iolag/UPD_study): ships no subject list for its MRI data — it globs the
  preprocessed files and cuts the list by a fraction (``normal_split``, ``anomal_split`` in
  ``data/dataloaders/MRI.py``); the DISYRE authors' ``*_upd`` lists record those subjects. Its text files
  (one file name per line) are supported as plain lists.

A file that names subjects without saying which split (a text list, a CSV without a ``split`` column, a JSON
list) selects subjects; the seeded fractions then split them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path

from .layout import DatasetLayout
from .splits import SPLITS

__all__ = ["SUBJECT_COLUMNS", "ON_CONFLICT", "read_split_file", "load_split_files", "match_subjects"]

#: columns tried, in this order (case-insensitively), for the subject of each CSV/TSV row.
SUBJECT_COLUMNS = ("subject", "subject_id", "participant_id", "case", "case_id", "img_name", "id", "image",
                   "img_path", "filename", "file", "path")
SPLIT_COLUMNS = ("split", "set", "subset", "partition")
#: what to do with a subject a split file puts in two splits: raise, keep it in the later split only
#: (test > validation > training, so nothing leaks into evaluation), or leave it out.
ON_CONFLICT = ("error", "prefer_test", "drop")
_SPLIT_NAMES = {"training": "training", "train": "training", "tr": "training", "validation": "validation",
                "val": "validation", "valid": "validation", "test": "test", "testing": "test", "ts": "test"}


def _split_name(value: str, where: str) -> str:
    name = _SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ValueError(f"{where}: {value!r} is not a split; use one of {', '.join(SPLITS)} (or train, val, test).")
    return name


def read_split_file(
    path: str | Path, modality: str | None = None, split_map: Mapping[str, str] | None = None,
    subject_column: str | None = None,
) -> dict[str | None, list[str]]:
    """The subject tokens of one split file, grouped by split.

    Args:
        path: a JSON file (object of lists, or a list), a CSV/TSV file (``.csv``, ``.tsv``; header row) or a text
            file with one subject or file name per line (``#`` comments and blank lines ignored).
        modality: the modality being listed, for JSON lists named ``<split>_<modality>``.
        split_map: JSON list name -> split, for lists whose name is not a split (DISYRE's ``training_t2_upd``);
            when given, only these lists are read.
        subject_column: CSV/TSV column holding the subject (default: the first of :data:`SUBJECT_COLUMNS`).

    Returns:
        ``{split: tokens}``; the key ``None`` holds tokens the file does not assign to a split.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file and what is wrong (no subject column, unknown split, no list to read...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split_file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
        listing = _from_json(content, path, modality, split_map)
    elif suffix in (".csv", ".tsv"):
        listing = _from_table(path, "\t" if suffix == ".tsv" else ",", subject_column)
    else:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        listing = {None: [line for line in lines if line and not line.startswith("#")]}
    if not any(listing.values()):
        raise ValueError(f"split_file {path} names no subject.")
    return listing


def _token(item, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        for key in ("subject", "case", "image"):
            if isinstance(item.get(key), str):
                return item[key]
        strings = [v for v in item.values() if isinstance(v, str)]
        if strings:
            return strings[0]
    raise ValueError(f"{where}: entry {item!r} names no subject (expected a string, or an object with 'subject' or "
                     "'image').")


def _from_json(content, path: Path, modality: str | None, split_map: Mapping[str, str] | None):
    if isinstance(content, list):
        return {None: [_token(item, f"split_file {path}") for item in content]}
    if not isinstance(content, Mapping):
        raise ValueError(f"split_file {path}: expected a JSON object of lists or a list, got {type(content).__name__}.")
    lists = {k: v for k, v in content.items() if isinstance(v, list)}
    if split_map:
        absent = [k for k in split_map if k not in lists]
        if absent:
            raise ValueError(f"split_file {path}: split_map names list(s) {absent} that the file lacks; its lists: "
                             f"{', '.join(lists)}.")
        chosen = {k: _split_name(v, f"split_map[{k!r}]") for k, v in split_map.items()}
    else:
        names = {s: s for s in SPLITS}
        if modality:
            names.update({f"{s}_{modality}".lower(): s for s in SPLITS})
        chosen = {k: names[k.lower()] for k in lists if k.lower() in names}
        if not chosen:
            raise ValueError(
                f"split_file {path}: none of its lists ({', '.join(lists) or 'none'}) is named after a split"
                + (f" for modality {modality}" if modality else "")
                + "; choose them with split_map, e.g. {\"" + (next(iter(lists), "<list>")) + "\": \"test\"}."
            )
    listing: dict[str | None, list[str]] = {}
    for key, split in chosen.items():
        listing.setdefault(split, []).extend(_token(item, f"split_file {path} [{key}]") for item in lists[key])
    return listing


def _from_table(path: Path, delimiter: str, subject_column: str | None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
        header = rows[0].keys() if rows else []
    by_lower = {str(c).strip().lower(): c for c in header if c is not None}
    if subject_column is not None:
        if subject_column not in header and subject_column.lower() not in by_lower:
            raise ValueError(f"split_file {path}: no column {subject_column!r}; columns: {list(header)}.")
        column = subject_column if subject_column in header else by_lower[subject_column.lower()]
    else:
        column = next((by_lower[c] for c in SUBJECT_COLUMNS if c in by_lower), None)
        if column is None:
            raise ValueError(f"split_file {path}: no subject column (looked for {', '.join(SUBJECT_COLUMNS)}); "
                             f"columns: {list(header)}; pass subject_column.")
    split_column = next((by_lower[c] for c in SPLIT_COLUMNS if c in by_lower), None)
    listing: dict[str | None, list[str]] = {}
    for number, row in enumerate(rows, start=2):
        token = (row.get(column) or "").strip()
        if not token:
            continue
        split = _split_name(row[split_column], f"split_file {path} line {number}") if split_column else None
        listing.setdefault(split, []).append(token)
    return listing


def load_split_files(
    split_file: str | Path | Mapping[str, str | Path], modality: str | None = None,
    split_map: Mapping[str, str] | None = None, subject_column: str | None = None,
) -> tuple[dict[str | None, list[str]], list[dict]]:
    """Read ``split_file``: one file, or ``{split: file}`` where each file names the subjects of that split.

    Returns:
        the tokens by split (see :func:`read_split_file`), and ``[{"path", "sha256", "split"?}]`` for provenance.
    """
    files = split_file.items() if isinstance(split_file, Mapping) else [(None, split_file)]
    listing: dict[str | None, list[str]] = {}
    sources = []
    for split, path in files:
        content = read_split_file(path, modality, split_map, subject_column)
        source = {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
        if split is not None:
            split = _split_name(split, "split_file key")
            source["split"] = split
            content = {split: [t for tokens in content.values() for t in tokens]}
        for key, tokens in content.items():
            listing.setdefault(key, []).extend(tokens)
        sources.append(source)
    return listing, sources


def match_subjects(
    layout: DatasetLayout, subjects: list[str], listing: dict[str | None, list[str]], on_missing: str = "error",
    on_conflict: str = "error",
) -> dict[str, str | None]:
    """Which subjects on disk the split file names, and in which split.

    Args:
        layout: gives the subject key found in each token and each subject id.
        subjects: subject ids found on disk.
        listing: output of :func:`load_split_files`.
        on_missing: ``"error"``: subjects named in the file but absent on disk raise; ``"skip"``: a warning.
        on_conflict: one of :data:`ON_CONFLICT`, for subjects named in two splits (Behrendt et al.'s IXI fold
            files share 8 to 10 scans with their ``IXI_test.csv``); the non-error choices warn, listing them.

    Returns:
        ``{subject: split}`` for every subject the file names (split None: named without a split).

    Raises:
        ValueError: tokens naming no subject of this dataset, subjects in two splits (with
            ``on_conflict="error"``), or subjects absent on disk (with ``on_missing="error"``) — each listing all.
    """
    on_disk: dict[str, str] = {}
    for subject in subjects:
        key = layout.key(subject)
        if key is None or (key in on_disk and on_disk[key] != subject):
            raise ValueError(f"dataset {layout.name}: subject {subject!r} has no unique key ({key!r}).")
        on_disk[key] = subject
    unreadable, named = [], {}
    for split, tokens in listing.items():
        for token in tokens:
            key = layout.key(token)
            if key is None:
                unreadable.append(token)
            else:
                named.setdefault(key, set()).add(split)
    if unreadable:
        raise ValueError(f"split_file: {len(unreadable)} entr(ies) name no {layout.name} subject: "
                         + ", ".join(unreadable))
    conflicts = sorted(f"{k} ({', '.join(sorted(map(str, s)))})" for k, s in named.items() if len(s) > 1)
    if conflicts:
        message = f"split_file: {len(conflicts)} subject(s) named in more than one split: " + ", ".join(conflicts)
        if on_conflict == "error":
            raise ValueError(message + '. Pass on_conflict="prefer_test" (keep each in its later split) or "drop".')
        order = {None: -1, **{split: i for i, split in enumerate(SPLITS)}}
        for key in [k for k, s in named.items() if len(s) > 1]:
            if on_conflict == "drop":
                del named[key]
            else:
                named[key] = {max(named[key], key=order.__getitem__)}
        kept = "kept in the later split only" if on_conflict != "drop" else "left out"
        warnings.warn(f"{message}; {kept}.", stacklevel=3)
    absent = sorted(k for k in named if k not in on_disk)
    if absent:
        message = (f"split_file: {len(absent)} subject(s) named in the split file are not on disk (or were left out "
                   f"as incomplete): " + ", ".join(absent))
        if on_missing == "error":
            raise ValueError(message + '. Pass on_missing="skip" to go on without them.')
        warnings.warn(message + "; going on without them.", stacklevel=3)
    return {on_disk[k]: next(iter(s)) for k, s in named.items() if k in on_disk}
