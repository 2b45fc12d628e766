#!/usr/bin/env python
"""Make ``docs/pacs_result.png``: what a PACS viewer shows after the bundle scored a DICOM series.

Builds demo patient 0 (a real healthy brain with a simulated lesion) as a de-identified MR series
(``nifti_to_dicom_series``) in a temporary folder, runs the bundle's ``inference`` with ``output_format="dicom"``
(shipped weights, default settings, CPU) and reads the results back from the DICOM files only (pydicom): the
SEG's frames (1-bit, frame k referencing source slice k) and the overlay series (RGB secondary capture). On the
axial slice with the most SEG pixels it draws (a) the source MR slice, (b) the overlay image as stored and (c) the
SEG outline over the source with the demo lesion label's outline, anterior up as in the other figures.

Usage (from the repository root)::

    python scripts/pacs_figure.py                 # writes docs/pacs_result.png
    python scripts/pacs_figure.py --output FILE.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from monai.bundle import ConfigWorkflow  # noqa: E402

from disyre_monai.data.demo import demo_datalist  # noqa: E402
from disyre_monai.dicom import nifti_to_dicom_series  # noqa: E402
from disyre_monai.io import atomic_path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEG_COLOUR, LABEL_COLOUR = "orange", "lime"


def run_bundle(dataset_dir: Path, output_dir: Path, staging_dir: Path) -> None:
    """The bundle's ``inference`` on every series under ``dataset_dir``, DICOM results into ``output_dir``."""
    workflow = ConfigWorkflow(config_file=str(REPO / "bundle" / "configs" / "inference.json"), workflow_type="infer",
                              logging_file=False, device="cpu", progress=False, dataset_dir=str(dataset_dir),
                              output_dir=str(output_dir), staging_dir=str(staging_dir), output_format="dicom")
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def read_results(series_dir: Path, output_dir: Path) -> dict:
    """Source slices, SEG frames and overlay images, from the DICOM files alone, keyed by source SOP instance UID."""
    sources = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, sorted(series_dir.glob("*.dcm")))}
    (seg_path,) = output_dir.glob("*_seg.dcm")
    seg = pydicom.dcmread(seg_path)
    bits = np.unpackbits(np.frombuffer(seg.PixelData, np.uint8), bitorder="little")
    frames = bits[:seg.NumberOfFrames * seg.Rows * seg.Columns].reshape(seg.NumberOfFrames, seg.Rows, seg.Columns)
    refs = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence]
    overlay_dir = seg_path.with_name(seg_path.name.replace("_seg.dcm", "_overlay"))
    overlays = {ds.SourceImageSequence[0].ReferencedSOPInstanceUID: ds
                for ds in map(pydicom.dcmread, sorted(overlay_dir.glob("*.dcm")))}
    return {"sources": sources, "seg": seg, "frames": frames, "refs": refs, "overlays": overlays}


def draw(res: dict, frame: int, label: np.ndarray, caption: str):
    """The three viewer panels of SEG frame ``frame`` (rows displayed bottom-up: anterior up, as the rot90 of the
    other figures); ``label`` is the lesion mask on that slice in frame orientation (rows, columns)."""
    uid = res["refs"][frame]
    source, overlay, mask = res["sources"][uid], res["overlays"][uid], res["frames"][frame]
    grey = source.pixel_array * float(source.RescaleSlope) + float(source.RescaleIntercept)
    low, width = float(source.WindowCenter) - float(source.WindowWidth) / 2, float(source.WindowWidth)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), facecolor="#1e1e1e")
    window, view = dict(cmap="gray", vmin=low, vmax=low + width), dict(origin="lower", interpolation="nearest")
    axes[0].imshow(grey, **window, **view)
    axes[1].imshow(overlay.pixel_array, **view)
    axes[2].imshow(grey, **window, **view)
    axes[2].contour(label, levels=[0.5], colors=LABEL_COLOUR, linewidths=1.2, origin="lower")
    axes[2].contour(mask, levels=[0.5], colors=SEG_COLOUR, linewidths=1.2, origin="lower")
    axes[2].legend(handles=[Line2D([], [], color=SEG_COLOUR, label="SEG (anomaly mask)"),
                            Line2D([], [], color=LABEL_COLOUR, label="simulated lesion label")],
                   loc="lower right", fontsize=7.5, facecolor="black", labelcolor="white", framealpha=0.6)
    titles = [f"(a) source MR series, instance {source.InstanceNumber}",
              f"(b) DISYRE overlay series (secondary capture), instance {overlay.InstanceNumber}",
              f"(c) DISYRE SEG over the source, frame {frame + 1}"]
    for ax, title in zip(axes, titles):
        ax.set_title(title, color="white", fontsize=9.5)
        ax.axis("off")
    fig.suptitle("DISYRE results as a PACS viewer shows them (demo patient 0, DICOM in, DICOM out)", color="white")
    fig.text(0.5, 0.03, caption, color="#bbbbbb", ha="center", fontsize=8.5)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.08, wspace=0.04)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "docs" / "pacs_result.png"))
    args = parser.parse_args()
    case, start = demo_datalist()["test"][0], time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        series_dir, output_dir = Path(tmp) / "pacs" / "mr_t1", Path(tmp) / "results"
        nifti_to_dicom_series(case["image"], series_dir, uid_seed="disyre-pacs-figure", patient_id="DISYRE-DEMO-0")
        run_bundle(series_dir.parent, output_dir, Path(tmp) / "staging")
        res = read_results(series_dir, output_dir)
    counts = res["frames"].reshape(len(res["frames"]), -1).sum(1)
    frame = int(np.argmax(counts))
    k = int(res["sources"][res["refs"][frame]].InstanceNumber) - 1  # the builder's instance k + 1 is volume[:, :, k]
    label = np.asarray(nib.load(case["label"]).dataobj)[:, :, k].T > 0
    mask = res["frames"][frame] > 0
    dice = 2 * (mask & label).sum() / max(mask.sum() + label.sum(), 1)
    seg = res["seg"]
    caption = (f"study of 3 series: MR {len(res['sources'])} instances | SEG (series {seg.SeriesNumber}) 1 instance, "
               f"{seg.NumberOfFrames} frames, {int(counts.sum())} anomaly pixels | overlay SC (series "
               f"{next(iter(res['overlays'].values())).SeriesNumber}) {len(res['overlays'])} instances  --  slice "
               f"{frame + 1}/{len(counts)}: {int(counts[frame])} SEG pixels, Dice vs lesion label {dice:.2f}")
    fig = draw(res, frame, label, caption)
    with atomic_path(args.output) as tmp_png:
        fig.savefig(tmp_png, dpi=130, facecolor=fig.get_facecolor())
    print(f"slice {frame + 1}/{len(counts)} (volume z={k}): {int(counts[frame])} anomalous pixels, "
          f"{int(label.sum())} lesion pixels, Dice {dice:.3f}; SEG total {int(counts.sum())} pixels")
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1024:.0f} kB) in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
