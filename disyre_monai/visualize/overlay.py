"""PNG montages of axial slices with the anomaly map overlaid (and the lesion outline when known)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from monai.config import KeysCollection
from monai.transforms import MapTransform

from disyre_monai.io import atomic_savefig
from disyre_monai.utils import as_numpy, check_int, source_name


def draw_overlay(ax, image, anomaly_map, label=None, vmax: float = 1.0, alpha: float = 0.65,
                 image_vmax: float | None = None) -> None:
    """Draw one axial slice on a matplotlib ``ax``: the scan in grey (from 0), the salient part of the map (above a
    quarter of ``vmax``) as heat, the lesion outline in green; rotated so that anterior is up.

    Args:
        ax: the axes.
        image, anomaly_map: ``(H, W)`` slices (RAS).
        label: optional ``(H, W)`` lesion mask (> 0: lesion).
        vmax: top of the map's colour scale.
        alpha: opacity of the map.
        image_vmax: top of the scan's grey scale (default: the slice's maximum).
    """
    image = np.asarray(image, np.float32)
    top = float(image.max()) if image_vmax is None else image_vmax
    ax.imshow(np.rot90(image), cmap="gray", vmin=0, vmax=max(top, 1e-6))
    ax.imshow(np.ma.masked_less_equal(np.rot90(anomaly_map), 0.25 * vmax), cmap="inferno", vmin=0, vmax=vmax,
              alpha=alpha)
    if label is not None and np.any(label):
        ax.contour(np.rot90(np.asarray(label) > 0), levels=[0.5], colors="lime", linewidths=0.8)


def overlay_montage(image, anomaly_map, label=None, num_slices: int = 8, vmax: float | None = None, title: str = ""):
    """A ``matplotlib.figure.Figure``: ``num_slices`` axial slices of ``image`` with ``anomaly_map`` as a heat overlay.

    Slices are spread evenly over the brain, always including the slice of the map's maximum.

    Args:
        image: ``(H, W, D)`` (or ``(1, H, W, D)``) volume, RAS.
        anomaly_map: same shape, values >= 0.
        label: optional lesion mask of the same shape, drawn as a green outline.
        num_slices: slices in the montage.
        vmax: top of the colour scale (default: the map's 99.9th percentile inside the brain).
        title: figure title.

    Returns:
        the figure, not registered with pyplot (no backend is chosen, nothing needs closing): save it with
        ``fig.savefig(path)``; a notebook displays it.
    """
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
        draw_overlay(ax, image[:, :, z], amap[:, :, z], None if label is None else label[:, :, z], vmax,
                     image_vmax=float(image.max()))
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
