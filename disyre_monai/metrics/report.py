"""The evaluation report's files (JSON, CSV; written atomically) and its printed summary; its figures are drawn by
:func:`disyre_monai.visualize.report_figures.write_report_figures`."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from disyre_monai.io import atomic_write, atomic_write_json
from disyre_monai.metrics.evaluation import AnomalyEvaluation


def _finite_or_none(value):
    """JSON has no NaN: undefined numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines of a report summary: headline metrics per method, labelled with the protocol."""
    lines = [f"anomaly detection, protocol {summary['protocol']} ({summary['num_cases']} cases, "
             f"{summary['num_lesion_cases']} with lesions):"]
    for method, values in summary["headline"].items():
        shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} n/a" for k, v in values.items())
        lines.append(f"  {method:10s} {shown}")
    return lines


def write_report(result: dict, evaluation: AnomalyEvaluation, output_dir: str | Path) -> None:
    """Write ``metrics.json`` and ``per_case.csv`` of an evaluation result into ``output_dir``."""
    output_dir = Path(output_dir)
    summary = _finite_or_none(result["summary"])
    atomic_write_json(output_dir / "metrics.json", summary)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result["cases"][0]))
    writer.writeheader()
    writer.writerows(result["cases"])
    atomic_write(output_dir / "per_case.csv", lambda f: f.write(buffer.getvalue()), binary=False)
