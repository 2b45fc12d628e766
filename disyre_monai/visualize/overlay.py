"""PNG montages of axial slices with the anomaly map overlaid (and the lesion outline when known)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from disyre_monai.io import atomic_savefig
from disyre_monai.utils import as_numpy, check_int, source_name


def overlay_montage(image, anomaly_map, label=None, num_slices: int = 8, vmax: float | None = None, title: str = ""):
    """A matplotlib figure: ``num_slices`` axial slices of ``image`` with ``anomaly_map`` as a heat overlay.

    Slices are spread evenly over the brain, always including the slice of the map's maximum.

    Args:
        image: ``(H, W, D)`` (or ``(1, H, W, D)``) volume, RAS.
        anomaly_map: same shape, values >= 0.
        label: optional lesion mask of the same shape, drawn as a green outline.
        num_slices: slices in the montage.
        vmax: top of the colour scale (default: the map's 99.9th percentile inside the brain).
        title: figure title.
    """
    from matplotlib.figure import Figure  # no pyplot: no global figure state, safe in a background writer thread

    image, amap = np.squeeze(as_numpy(image)), np.squeeze(as_numpy(anomaly_map))
    label = None if label is None else np.squeeze(as_numpy(label))
    brain_slices = np.flatnonzero(image.reshape(-1, image.shape[-1]).any(0))
    if brain_slices.size == 0:
        brain_slices = np.arange(image.shape[-1])
    picks = np.linspace(brain_slices[0], brain_slices[-1], num_slices + 2)[1:-1].round().astype(int)
    peak = int(np.unravel_index(np.argmax(amap), amap.shape)[-1])
    picks[np.argmin(np.abs(picks - peak))] = peak
    positive = amap[amap > 0]
    vmax = vmax or (float(np.percentile(positive, 99.9)) if positive.size else 1.0)
    cols = min(4, num_slices)
    rows = int(np.ceil(num_slices / cols))
    fig = Figure(figsize=(2.4 * cols, 2.7 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, z in zip(axes.flat, picks):
        ax.imshow(np.rot90(image[:, :, z]), cmap="gray", vmin=0, vmax=max(float(image.max()), 1e-6))
        shown = np.ma.masked_less_equal(np.rot90(amap[:, :, z]), 0.25 * vmax)  # only the salient part
        ax.imshow(shown, cmap="inferno", vmin=0, vmax=vmax, alpha=0.65)
        if label is not None and label[:, :, z].any():
            ax.contour(np.rot90(label[:, :, z] > 0), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"z={z}" + (" (max)" if z == peak else ""), fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


class SaveOverlayMontaged(MapTransform):
    """Write ``<output_dir>/<case>_overlay.png`` for each sample (``case`` from the image's file name).

    Args:
        keys: ``(image_key, map_key)``, e.g. ``("image", "pred")``.
        output_dir: folder of the PNG files.
        label_key: optional lesion mask to outline.
        num_slices: slices in the montage.
    """

    def __init__(self, keys: KeysCollection, output_dir: str, label_key: str | None = None, num_slices: int = 8,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"SaveOverlayMontaged: keys must be (image_key, map_key), got {self.keys}.")
        self.output_dir, self.label_key = Path(output_dir), label_key
        self.num_slices = check_int(type(self).__name__, "num_slices", num_slices, 1, 64)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image_key, map_key = self.keys
        case = Path(source_name(d[image_key], "case")).name.split(".")[0]
        label = d.get(self.label_key) if self.label_key else None
        fig = overlay_montage(d[image_key], d[map_key], label, self.num_slices, title=f"DISYRE anomaly map: {case}")
        atomic_savefig(fig, self.output_dir / f"{case}_overlay.png", dpi=90)
        return d
