import matplotlib.pyplot as plt
import numpy as np
import torch
from monai.data import MetaTensor

from disyre_monai.visualize import SaveOverlayMontaged, overlay_montage
from tests.helpers import synthetic_brain


def test_montage_includes_the_peak_slice_and_writes_png(tmp_path):
    image = synthetic_brain((32, 32, 20))
    amap = np.zeros_like(image)
    amap[0, 10:14, 10:14, 13] = 1.0
    fig = overlay_montage(image, amap, label=amap > 0, num_slices=6)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "z=13 (max)" in titles and len(titles) == 6
    plt.close(fig)
    data = {"image": MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": "/x/case7.nii.gz"}),
            "pred": torch.from_numpy(amap)}
    SaveOverlayMontaged(keys=["image", "pred"], output_dir=str(tmp_path))(data)
    assert (tmp_path / "case7_overlay.png").stat().st_size > 5_000
