#!/usr/bin/env python
"""Make ``docs/monailabel_overlay.png``: what a client of the DISYRE MONAI Label server shows for a demo patient.

Starts the real server (``disyre-monai label``) on 127.0.0.1 with a temporary studies folder, uploads demo
patient 0 (a real healthy brain with a simulated lesion), asks ``/infer/disyre`` for the uint8 label map (as
3D Slicer and OHIF do) and for the float32 heatmap (``result_dtype=float32``), and draws the three orthogonal
views through the heatmap's peak, viewer-style: the scan in grey, the heatmap in colour, the label map's
outline in yellow and the case scores from the JSON result. Needs the ``label`` extra (docs/monailabel.md).

Usage (from the repository root)::

    python scripts/monailabel_figure.py                 # writes docs/monailabel_overlay.png
    python scripts/monailabel_figure.py --output FILE.png
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
from requests_toolbelt.multipart.decoder import MultipartDecoder  # noqa: E402

from disyre_monai.apps.monailabel.server import serve_in_background  # noqa: E402
from disyre_monai.data.demo import demo_datalist  # noqa: E402
from disyre_monai.io import atomic_savefig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _nifti(content: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content)


def infer(url: str, image_id: str, params: dict) -> tuple[np.ndarray, dict]:
    """``POST /infer/disyre`` for ``image_id``: the returned volume (canonical RAS array) and the JSON result."""
    r = requests.post(f"{url}/infer/disyre", params={"image": image_id, "output": "all"},
                      data={"params": json.dumps(params)}, timeout=900)
    r.raise_for_status()
    parts = {p.headers[b"Content-Disposition"].split(b"name=")[1].split(b";")[0].strip(b'"'): p.content
             for p in MultipartDecoder(r.content, r.headers["Content-Type"]).parts}
    volume = np.asarray(nib.as_closest_canonical(_nifti(parts[b"image"])).dataobj)
    return volume, json.loads(parts[b"params"])


def draw(image: np.ndarray, heatmap: np.ndarray, label: np.ndarray, scores: dict, title: str):
    """Axial, coronal and sagittal views through the heatmap's peak (RAS arrays), on a dark viewer background."""
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    views = [("Axial", lambda v: v[:, :, peak[2]]), ("Coronal", lambda v: v[:, peak[1], :]),
             ("Sagittal", lambda v: v[peak[0], :, :])]
    vmax = float(np.percentile(heatmap[heatmap > 0], 99.9))
    fig, axes = plt.subplots(1, 4, figsize=(12.4, 3.7), gridspec_kw={"width_ratios": [1, 1, 1, 0.95]},
                             facecolor="#1e1e1e")
    for ax, (name, cut) in zip(axes, views):
        ax.set_facecolor("black")
        ax.imshow(np.rot90(cut(image)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        heat = np.ma.masked_less(np.rot90(cut(heatmap)), 0.2 * vmax)
        shown = ax.imshow(heat, cmap="inferno", vmin=0, vmax=vmax, alpha=0.7, interpolation="nearest")
        if cut(label).any():
            ax.contour(np.rot90(cut(label)), levels=[0.5], colors="yellow", linewidths=1.0)
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    bar = fig.colorbar(shown, ax=axes[:3], fraction=0.015, pad=0.01)
    bar.set_label("anomaly score (float32 heatmap)", color="white", fontsize=8)
    bar.ax.tick_params(colors="white", labelsize=7)
    text = "\n".join([
        "MONAI Label model: disyre",
        "",
        "label map (uint8): 1 = anomaly",
        f"  threshold {scores['threshold']:.2f}, yellow outline",
        f"  {scores['anomalous_voxels']} voxels = {scores['anomalous_volume_ml']:.1f} mL",
        "",
        "case scores (brain voxels):",
        f"  max   {scores['max']:.3f}",
        f"  mean  {scores['mean']:.3f}",
        f"  top-{scores['top_k']} mean  {scores['top_k_mean']:.3f}",
    ])
    axes[3].axis("off")
    axes[3].text(0.02, 0.95, text, va="top", ha="left", family="monospace", fontsize=8.5, color="white",
                 transform=axes[3].transAxes)
    fig.suptitle(title, color="white", fontsize=10)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "docs" / "monailabel_overlay.png"))
    args = parser.parse_args()
    case = demo_datalist()["test"][0]
    with tempfile.TemporaryDirectory() as tmp:
        with serve_in_background(Path(tmp) / "studies", app_dir=Path(tmp) / "app", timeout=300) as url:
            with open(case["image"], "rb") as f:
                requests.put(f"{url}/datastore/image", params={"image": "demo_patient"},
                             files={"file": ("demo_patient.nii.gz", f)}, timeout=120).raise_for_status()
            label, _ = infer(url, "demo_patient", {"result_dtype": "uint8"})
            heatmap, result = infer(url, "demo_patient", {"result_dtype": "float32"})
    image = np.asarray(nib.as_closest_canonical(nib.load(case["image"])).dataobj, np.float32)
    fig = draw(image, heatmap, label, result["scores"],
               "DISYRE anomaly heatmap and label map returned by the MONAI Label server (demo patient, shipped "
               "demo weights)")
    atomic_savefig(fig, args.output, dpi=120, facecolor=fig.get_facecolor(), bbox_inches="tight", pad_inches=0.1)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
