"""Learning sanity: the small network, trained briefly on real demo slices, clearly learns to restore."""

import nibabel as nib
import numpy as np
import pytest
import torch

from disyre_monai.data.demo import demo_datalist
from disyre_monai.inferers import DisyreScorer
from disyre_monai.networks import DisyreUNet
from disyre_monai.transforms import RandDisyreCorruption
from tests.helpers import slice_inferer

pytestmark = pytest.mark.slow


def _real_slices(entries, per_volume=6):
    """Axial slices (N, 1, 64, 64) from the middle of each volume, centre-cropped to 64 x 64."""
    out = []
    for entry in entries:
        vol = np.asarray(nib.load(entry["image"]).dataobj, dtype=np.float32)
        mid = vol.shape[2] // 2
        for z in range(mid - per_volume, mid + per_volume, 2):
            cx, cy = vol.shape[0] // 2, vol.shape[1] // 2 + 4
            out.append(vol[cx - 32 : cx + 32, cy - 32 : cy + 32, z])
    return np.stack(out)[:, None]


def _corrupted_set(slices, seed, repeats):
    corrupter = RandDisyreCorruption(shape={"size_range": (8, 24), "patch_size": 32}).set_random_state(seed)
    clean = [s for _ in range(repeats) for s in slices]
    samples = [corrupter.corrupt(s) for s in clean]
    corrupted = torch.from_numpy(np.stack([s.image for s in samples]))
    return corrupted, torch.from_numpy(np.stack(clean)), torch.tensor([s.timestep for s in samples])


def test_small_network_learns_to_restore_real_slices():
    torch.manual_seed(0)
    datalist = demo_datalist()
    train, val = _real_slices(datalist["training"]), _real_slices(datalist["validation"])
    x, y, t = _corrupted_set(train, seed=0, repeats=8)
    vx, vy, vt = _corrupted_set(val, seed=1, repeats=2)
    net = DisyreUNet(preset="small")
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)

    def val_loss():
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net.eval()(vx, vt), vy))

    before = val_loss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(x), (16,), generator=gen)
        loss = torch.nn.functional.mse_loss(net.train()(x[idx], t[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    print(f"val MSE before {before:.5f}, after {after:.5f}")
    identity = float(torch.nn.functional.mse_loss(vx, vy))
    assert after < 0.05 * before, (before, after)
    assert after < identity, f"restoration ({after:.5f}) must beat copying the input ({identity:.5f})"
    amap = slice_inferer(DisyreScorer, size_divisor=net.size_divisor)(vx[:4], net.eval())
    assert amap.shape == vx[:4].shape and torch.isfinite(amap).all()
