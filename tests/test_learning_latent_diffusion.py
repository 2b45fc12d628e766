"""Learning sanity of the latent-diffusion method: each stage's validation loss falls when trained briefly on real
demo slices through MONAI's SupervisedTrainer with this package's stage plumbing."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.engines import SupervisedTrainer

from disyre_monai.data.demo import demo_datalist
from disyre_monai.engines import LatentDiffusionPrepareBatch, ReconstructionPrepareBatch
from disyre_monai.losses import VQVAELoss
from disyre_monai.networks import LatentDiffusionModel

pytestmark = pytest.mark.slow


def _real_slices(entries, per_volume=8):
    """Axial slices (N, 1, 48, 48) around the middle of each volume, centre-cropped."""
    out = []
    for entry in entries:
        vol = np.asarray(nib.load(entry["image"]).dataobj, dtype=np.float32)
        mid, cx, cy = vol.shape[2] // 2, vol.shape[0] // 2, vol.shape[1] // 2 + 4
        out += [vol[cx - 24 : cx + 24, cy - 24 : cy + 24, z] for z in range(mid - per_volume, mid + per_volume, 2)]
    return torch.from_numpy(np.stack(out)[:, None])


def _batches(slices, steps, batch_size, seed):
    gen = torch.Generator().manual_seed(seed)
    return [{"image": slices[torch.randint(0, len(slices), (batch_size,), generator=gen)]} for _ in range(steps)]


def test_both_stages_learn_on_real_slices():
    torch.manual_seed(0)
    datalist = demo_datalist()
    train, val = _real_slices(datalist["training"]), _real_slices(datalist["validation"])
    model = LatentDiffusionModel(preset="small")

    autoencoder = model.autoencoder

    def reconstruction_loss():
        with torch.no_grad():
            return float(torch.nn.functional.l1_loss(autoencoder.eval()(val)[0], val))

    before = reconstruction_loss()
    SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, epoch_length=50, train_data_loader=_batches(train, 50, 8, 0),
        network=autoencoder, optimizer=torch.optim.Adam(autoencoder.parameters(), 2e-3), loss_function=VQVAELoss(),
        prepare_batch=ReconstructionPrepareBatch(),
    ).run()
    after = reconstruction_loss()
    print(f"stage 1 validation L1 before {before:.4f}, after {after:.4f}")
    assert after < 0.5 * before, (before, after)

    model.fit_scale_factor(train[:16])
    images, noise, _, kwargs = LatentDiffusionPrepareBatch(model, seed=1)({"image": val})

    def noise_loss():
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model.eval()(images, **kwargs), noise))

    before = noise_loss()
    SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, epoch_length=50,
        train_data_loader=_batches(train, 50, 8, 2), network=model,
        optimizer=torch.optim.Adam(model.unet.parameters(), 2e-3), loss_function=torch.nn.MSELoss(),
        prepare_batch=LatentDiffusionPrepareBatch(model, seed=2),
    ).run()
    after = noise_loss()
    print(f"stage 2 validation noise MSE before {before:.4f}, after {after:.4f}")
    assert after < 0.6 * before, (before, after)
