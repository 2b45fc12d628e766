"""A dataset's on-disk layout, and the scan that turns a dataset root into one record per scan.

A :class:`DatasetLayout` says, with one regular expression, which files under a root belong to the
dataset: the expression is matched against every file's path relative to the root (POSIX separators) and
names the scan (``case``), the person (``subject``) and the file's kind (``kind``: an image of one
modality, the lesion label or the brain mask). :func:`scan_layout` walks the root once, groups the
matching files by scan and checks that each scan has what the requested modality needs.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

__all__ = ["DatasetLayout", "ScanResult", "walk_files", "scan_layout", "slug"]

LABEL, MASK = "label", "mask"
ROLES = ("healthy", "lesion")
#: Other names users give a modality -> the common name the adapters use.
MODALITY_ALIASES = {
    "t1w": "t1", "t1n": "t1", "t1c": "t1ce", "t1gd": "t1ce", "t1wks": "t1ce", "t1post": "t1ce",
    "t2w": "t2", "t2f": "flair", "t2flair": "flair", "t2-flair": "flair", "pdw": "pd",
}


def slug(text: str) -> str:
    """``text`` with every run of characters other than letters, digits and ``-`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")


@dataclass(frozen=True)
class DatasetLayout:
    """Where a dataset's files lie, in its official release.

    Args:
        name: dataset name used on the command line (``brats2021``).
        role: ``"healthy"`` (training data) or ``"lesion"`` (evaluation data with lesion labels).
        pattern: regular expression ``fullmatch``-ed against each file's path relative to the root, with
            the named groups ``kind`` (a key of ``kinds``) and ``case`` or ``subject`` (optionally ``site``,
            ``session`` or any group ``case_format`` uses).
        kinds: file kind as written in the file name -> ``"label"``, ``"mask"`` or a common modality name.
        subject_key: regular expression searched (case-insensitively) in a subject id, a case id or a
            token of a published split file; the match, lower-cased, identifies the subject.
        example: the expected layout, shown when a root holds no file of the dataset.
        aliases: extra ``(pattern, kind)`` pairs for known mis-named files of a release.
        exclude: paths (relative to the root) matching this regular expression (``search``) are ignored.
        all_modalities_per_case: every scan of the release has every modality; a scan that lacks the
            requested one is reported as missing (otherwise it is just not listed).
        case_format: builds the case id from the match groups (each passed through :func:`slug`); default
            the ``case`` group, or ``subject`` + ``_`` + ``session``.
        notes: facts about the release recorded in the datalist metadata.
        label_rule: how the label file becomes the lesion mask.
        label_hint: appended to a "missing label" error (e.g. which part of a release has no labels).
    """

    name: str
    role: str
    pattern: str
    kinds: Mapping[str, str]
    subject_key: str
    example: str
    aliases: tuple[tuple[str, str], ...] = ()
    exclude: str | None = None
    all_modalities_per_case: bool = False
    case_format: str | None = None
    notes: tuple[str, ...] = ()
    label_rule: str = "lesion = label > 0"
    label_hint: str = ""
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"DatasetLayout {self.name}: role must be one of {ROLES}, got {self.role!r}.")
        self._compiled["pattern"] = re.compile(self.pattern)
        self._compiled["aliases"] = [(re.compile(p), kind) for p, kind in self.aliases]
        self._compiled["exclude"] = re.compile(self.exclude) if self.exclude else None
        self._compiled["key"] = re.compile(self.subject_key, re.IGNORECASE)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The common names of the modalities the release ships, e.g. ``("t1", "t2", "flair")``."""
        return tuple(dict.fromkeys(v for v in self.kinds.values() if v not in (LABEL, MASK)))

    def check_modality(self, modality: str) -> str:
        """The common name of ``modality`` (aliases accepted), or ``ValueError`` listing the available ones."""
        name = str(modality).strip().lower()
        name = MODALITY_ALIASES.get(name, name)
        if name not in self.modalities:
            raise ValueError(
                f"dataset {self.name}: modality {modality!r} is not in this release; available: "
                f"{', '.join(self.modalities)}."
            )
        return name

    def key(self, text: str) -> str | None:
        """The subject key found in ``text`` (a subject id, file name or path), or None."""
        found = self._compiled["key"].search(text) or self._compiled["key"].search(slug(text))
        return found.group(0).lower() if found else None

    def match(self, relpath: str) -> tuple[str, str, str, dict, bool] | None:
        """``(case, subject, role, extra fields, matched an alias)`` of a path relative to the root, or None.

        ``role`` is what :attr:`kinds` maps the file's kind to: ``"label"``, ``"mask"`` or a modality.
        """
        if self._compiled["exclude"] is not None and self._compiled["exclude"].search(relpath):
            return None
        found, kind, via_alias = self._compiled["pattern"].fullmatch(relpath), None, False
        if found is not None:
            kind = found.group("kind")
        else:
            for alias, alias_kind in self._compiled["aliases"]:
                found = alias.fullmatch(relpath)
                if found is not None:
                    kind, via_alias = alias_kind, True
                    break
        if found is None:
            return None
        groups = {k: v for k, v in found.groupdict().items() if v is not None}
        if self.case_format is not None:
            case = self.case_format.format(**{k: slug(v) for k, v in groups.items()})
        elif "case" in groups:
            case = groups["case"]
        else:
            case = "_".join(groups[k] for k in ("subject", "session") if k in groups)
        subject = groups.get("subject", case)
        extra = {"site": groups["site"]} if "site" in groups else {}
        return case, subject, self.kinds[kind], extra, via_alias


@dataclass
class ScanResult:
    """What :func:`scan_layout` found: entries (absolute paths) and the scans it left out."""

    entries: list[dict]
    skipped: list[str]
    notes: list[str]


def walk_files(root: Path, desc: str = "scanning", verbose: bool = True) -> list[str]:
    """Every file under ``root`` as a POSIX path relative to it (hidden folders skipped, links followed once)."""
    found, seen = [], set()
    with tqdm(desc=desc, unit=" folders", disable=not verbose, leave=False) as bar:
        for folder, dirs, files in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:  # a symbolic link loop
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = Path(folder).relative_to(root)
            found.extend((rel / f).as_posix() for f in sorted(files) if not f.startswith("."))
            bar.update()
    return found


def scan_layout(
    layout: DatasetLayout, root: Path, files: list[str], modality: str, on_missing: str = "error",
    known_layouts: Iterable[DatasetLayout] = (),
) -> ScanResult:
    """Group the dataset's files under ``root`` by scan and build one datalist entry per complete scan.

    Args:
        layout: the dataset's layout.
        root: the dataset root (``files`` are relative to it).
        files: output of :func:`walk_files`.
        modality: common modality name (checked with :meth:`DatasetLayout.check_modality`).
        on_missing: ``"error"``: incomplete scans raise one error listing every missing file; ``"skip"``:
            they are left out with one warning listing them.
        known_layouts: the other datasets' layouts; when nothing of ``layout`` is under ``root``, the error
            names those the files do look like (:data:`~disyre_monai.data.adapters.DATASETS`, passed by
            :func:`~disyre_monai.data.adapters.scan_dataset`).

    Returns:
        entries ``{"image", "label"?, "mask"?, "subject", "case", "role", "modality", "dataset", "site"?}``
        sorted by case, with absolute paths.

    Raises:
        ValueError: when two files claim the same role of one scan (e.g. two copies of a release under the
            root), whatever ``on_missing`` says, or nothing of the dataset is under ``root``.
        FileNotFoundError: for incomplete scans when ``on_missing="error"``.
    """
    modality = layout.check_modality(modality)
    cases: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    subjects, extras, notes = {}, {}, list(layout.notes)
    for relpath in files:
        matched = layout.match(relpath)
        if matched is None:
            continue
        case, subject, role, extra, via_alias = matched
        if via_alias:
            notes.append(f"{case}: {relpath} taken as its {role} (a known mis-named file of the release)")
        cases[case][role].append(relpath)
        subjects[case] = subject
        extras.setdefault(case, {}).update(extra)
    if not cases:
        raise ValueError(_nothing_found(layout, root, files, known_layouts))

    duplicates = [f"{case} ({role}): {', '.join(paths)}" for case, roles in sorted(cases.items())
                  for role, paths in sorted(roles.items()) if len(paths) > 1]
    if duplicates:
        raise ValueError(
            f"dataset {layout.name} under {root}: {len(duplicates)} scan file(s) found more than once (two copies "
            "or versions of the release under one root?); point the root at one copy: " + "; ".join(duplicates)
        )
    ships_masks = any(MASK in roles for roles in cases.values())
    entries, problems = [], []
    for case in sorted(cases):
        roles = cases[case]
        needed = modality in roles or layout.all_modalities_per_case or (layout.role == "lesion" and LABEL in roles)
        if not needed:
            continue
        lacking = [what for what, present in (
            (f"{modality} image", modality in roles),
            ("lesion label", layout.role != "lesion" or LABEL in roles),
            ("brain mask", not ships_masks or MASK in roles),
        ) if not present]
        if lacking:
            where = os.path.commonpath([str((root / p).parent) for paths in roles.values() for p in paths])
            problems.append((case, f"{case} ({where}): no {' and no '.join(lacking)}"))
            continue
        entry = {"image": str(root / roles[modality][0])}
        for role in (MASK, LABEL):
            if role in roles:
                entry[role] = str(root / roles[role][0])
        entry.update(subject=subjects[case], case=case, role=layout.role, modality=modality, dataset=layout.name)
        entry.update(extras.get(case, {}))
        entries.append(entry)
    if problems:
        hint = f" {layout.label_hint}" if layout.label_hint and any("lesion label" in p for _, p in problems) else ""
        message = (f"dataset {layout.name} under {root}: {len(problems)} scan(s) with missing files: "
                   + "; ".join(p for _, p in problems) + "." + hint)
        if on_missing == "error":
            raise FileNotFoundError(message + ' Pass on_missing="skip" to leave these scans out.')
        warnings.warn(message + " These scans are left out.", stacklevel=3)
    if not entries:
        raise ValueError(f"dataset {layout.name} under {root}: no complete {modality} scan is left.")
    return ScanResult(entries, [case for case, _ in problems], notes)


def _nothing_found(layout: DatasetLayout, root: Path, files: list[str], known_layouts: Iterable[DatasetLayout]) -> str:
    """The message for a root that holds nothing of ``layout``, naming the known layouts it does look like."""
    if not files:
        return f"dataset {layout.name}: the root {root} holds no file. Expected: {layout.example}"
    lookalikes = sorted({other.name for other in known_layouts
                         if other.name != layout.name and any(other.match(f) for f in files[:20000])})
    hint = (f" The root looks like a {' / '.join(lookalikes)} dataset (`disyre-monai datalist "
            f"{lookalikes[0]} {root} ...`).") if lookalikes else ""
    return (f"dataset {layout.name}: none of the {len(files)} files under {root} matches the release's layout. "
            f"Expected: {layout.example}{hint}")
