import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from monai.data import MetaTensor

from disyre_monai.visualize import SaveOverlayMontaged, overlay_montage
from disyre_monai.visualize.report_figures import plot_case_snapshots
from tests.helpers import synthetic_brain


def test_montage_includes_the_peak_slice_and_writes_png(tmp_path):
    image = synthetic_brain((32, 32, 20))
    amap = np.zeros_like(image)
    amap[0, 10:14, 10:14, 13] = 1.0
    open_figures = plt.get_fignums()
    fig = overlay_montage(image, amap, label=amap > 0, num_slices=6)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "z=13 (max)" in titles and len(titles) == 6
    assert isinstance(fig, Figure) and plt.get_fignums() == open_figures, "a figure pyplot does not hold"
    data = {"image": MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": "/x/case7.nii.gz"}),
            "pred": torch.from_numpy(amap)}
    SaveOverlayMontaged(keys=["image", "pred"], output_dir=str(tmp_path))(data)
    assert (tmp_path / "case7_overlay.png").stat().st_size > 5_000


def test_figures_leave_the_users_matplotlib_backend_alone(tmp_path):
    """A notebook or GUI user keeps their backend: the library draws on its own figures, it never calls
    ``matplotlib.use``."""
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        image = synthetic_brain((16, 16, 8))
        data = {"image": MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": "case1.nii.gz"}),
                "pred": torch.from_numpy(image)}
        SaveOverlayMontaged(keys=["image", "pred"], output_dir=str(tmp_path))(data)
        snapshot = {"case": "case1", "average_precision": 0.5, "slice": 4, "image": image[0, ..., 4],
                    "map": image[0, ..., 4], "label": image[0, ..., 4] > 0.5}
        plot_case_snapshots([snapshot], "best cases", tmp_path / "best.png")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "case1_overlay.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "best.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        matplotlib.use(previous)
