"""Per-case failure records of a batch run: what failed (file, stage, error), written as machine-readable JSON."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from disyre_monai.io import atomic_write_json

logger = logging.getLogger(__name__)

#: Key of the marker that a guarded dataset returns instead of a sample when a case fails.
FAILURE_KEY = "__failure__"
_TRANSFORM_IN_MESSAGE = re.compile(r"applying transform <?([\w.]+)")
_MAX_ERROR_CHARS = 2000


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (MONAI wraps transform errors in ``RuntimeError("applying transform")``)."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
    return error


def failure_record(case: Any, stage: str, error: BaseException | str) -> dict[str, str]:
    """A JSON-ready record ``{"case", "stage", "error", "transform"}`` for one failed case.

    Args:
        case: the case's datalist entry (its ``"image"`` names it) or a name.
        stage: where it failed, e.g. ``"load"``, ``"inference"``, ``"postprocessing"``.
        error: the exception (its root cause is reported, with the transform that raised it when known).
    """
    if isinstance(case, Mapping):
        name = str(case.get("image", case.get("subject", "<unnamed case>")))
    else:
        name = str(case)
    record = {"case": name, "stage": str(stage), "error": str(error)[:_MAX_ERROR_CHARS], "transform": ""}
    if isinstance(error, BaseException):
        cause = root_cause(error)
        record["error"] = f"{type(cause).__name__}: {cause}"[:_MAX_ERROR_CHARS]
        chain, current = [], error
        while current is not None and len(chain) < 32:
            chain.append(current)
            current = current.__cause__
        names = [m.group(1).rsplit(".", 1)[-1] for e in chain if (m := _TRANSFORM_IN_MESSAGE.search(str(e)))]
        record["transform"] = names[-1] if names else ""
    return record


class FailureReport:
    """Collect the cases of a batch run that failed, keep the run going, and report them.

    Every failure is logged at once and ``<output_dir>/<filename>`` is rewritten atomically, so even an
    interrupted run leaves its list. :meth:`finish` (the bundle configs call it in ``finalize``) writes the
    file with the totals, prints the failed cases and raises ``SystemExit(1)`` when any case failed, so the
    command exits non-zero after everything else was written.

    File format (JSON)::

        {"run": "inference", "num_completed": 12, "num_skipped": 3, "num_failed": 1,
         "failures": [{"case": "/data/sub-07_T2w.nii.gz", "stage": "load", "transform": "ValidateImaged",
                       "error": "ValueError: ... 1,204 of 8,928,000 voxels are NaN or infinite ..."}],
         "warnings": [{"case": ".../series4_1f0c...", "warning": "DICOM series 4 ...: its header does not say ..."}]}

    (``"warnings"`` only when there are any: cases that were processed but look doubtful.)

    Args:
        output_dir: folder of the file (None: keep the records in memory only).
        filename: name of the file.
        run: name of the run, stored in the file.
        write: False turns file writing off (e.g. on every DDP rank but the first).
        exit_on_failure: :meth:`finish` raises ``SystemExit(1)`` when a case failed.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike | None,
        filename: str = "failures.json",
        run: str = "inference",
        write: bool = True,
        exit_on_failure: bool = True,
    ) -> None:
        self.path = None if output_dir is None else Path(output_dir) / filename
        self.run, self.write_enabled, self.exit_on_failure = str(run), bool(write), bool(exit_on_failure)
        self.failures: list[dict[str, str]] = []
        self.warnings: list[dict[str, str]] = []
        self.num_completed = 0
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.failures)

    def add(self, record: Mapping[str, str]) -> None:
        """Add a record made by :func:`failure_record`; log it and rewrite the file."""
        record = {k: str(v) for k, v in record.items()}
        self.failures.append(record)
        where = f" in {record['transform']}" if record.get("transform") else ""
        logger.error(f"case failed ({record['stage']}{where}): {record['case']}: {record['error']}")
        self.save()

    def record(self, case: Any, stage: str, error: BaseException | str, was_completed: bool = False) -> None:
        """Add a failure of ``case`` at ``stage``; see :func:`failure_record`.

        ``was_completed``: the case had already been counted as completed (its outputs were being written in
        the background when it failed), so it is taken off that count.
        """
        if was_completed:
            self.num_completed -= 1
        self.add(failure_record(case, stage, error))

    def completed(self, count: int = 1) -> None:
        """Count cases that went through."""
        self.num_completed += int(count)

    def skipped(self, count: int) -> None:
        """Count cases left out because their outputs were already complete."""
        self.num_skipped += int(count)

    def warn(self, case: Any, message: str) -> None:
        """Record a warning about a case that is still processed (e.g. a DICOM series not T1 by its header):
        listed under ``"warnings"`` in the file, without failing the run."""
        record = failure_record(case, "check", message)
        self.warnings.append({"case": record["case"], "warning": record["error"]})
        logger.warning(f"{record['case']}: {record['error']}")
        self.save()

    def summary(self) -> dict[str, Any]:
        summary = {"run": self.run, "num_completed": self.num_completed, "num_skipped": self.num_skipped,
                   "num_failed": len(self.failures), "failures": list(self.failures)}
        if self.warnings:
            summary["warnings"] = list(self.warnings)
        return summary

    def save(self) -> None:
        """Write the file now (atomically), if there is one."""
        if self.path is not None and self.write_enabled:
            atomic_write_json(self.path, self.summary())

    def finish(self) -> dict[str, Any]:
        """Write the file, print the failed cases and raise ``SystemExit(1)`` if any (see ``exit_on_failure``)."""
        self.save()
        summary = self.summary()
        if not self.failures:
            return summary
        where = f" (details in {self.path})" if self.path is not None and self.write_enabled else ""
        lines = [f"{self.run}: {len(self.failures)} case(s) failed, {self.num_completed} completed{where}:"]
        lines += [f"  {r['case']} [{r['stage']}] {r['error'].splitlines()[0][:300]}" for r in self.failures]
        print("\n".join(lines), flush=True)
        if self.exit_on_failure:
            raise SystemExit(1)
        return summary
