"""GPU check: inference and training speed of the released (``paper``) network on one CUDA device.

Prints a markdown table for a BraTS-sized volume (240 x 240 x 155, synthetic brain): whole slices and
sliding 128-px windows (75% overlap), fp32 and bf16 autocast, the mean single-step ensemble with 4
severities: brain slices per second, seconds per volume and peak GPU memory; what bf16 does to the maps of the
shipped weights on the demo patients (max/mean difference, pooled AP of each: inference defaults to fp32 as
released, ``--amp True`` is bf16; the dry run emulates bf16 with CPU autocast); then training steps per second
at the released batch (96 slices of 128 x 128, bf16 autocast, AdamW, gradient clipping 1.0) and its peak
memory. Run it through ``benchmarks/gpu_check.sh`` (which also installs missing packages from ``.whl/``).

    python benchmarks/gpu_check.py                 # on a CUDA machine, well under 5 minutes on a recent GPU
    python benchmarks/gpu_check.py --dry-run       # every code path on the CPU with tiny sizes (seconds)
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from disyre_monai.inferers import DisyreScorer, SliceAnomalyInferer
from disyre_monai.networks import DisyreUNet

VOLUME = (240, 240, 155)
TRAIN_BATCH = (96, 1, 128, 128)
MODES = {"whole slice": {}, "sliding 128/75%": {"roi_size": 128, "overlap": 0.75}}


def synthetic_brain(shape, seed: int = 0) -> torch.Tensor:
    """(1, 1, *shape) ellipsoidal 'brain' with tissue-like texture in [0, 1], background 0."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt((grids[0] / 0.7) ** 2 + (grids[1] / 0.8) ** 2 + (grids[2] / 0.9) ** 2)
    brain = np.where(r < 1, 0.5 + 0.3 * np.cos(8 * r) + 0.05 * rng.standard_normal(shape), 0)
    return torch.from_numpy(np.clip(brain, 0, 1).astype(np.float32))[None, None]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "-"


def time_inference(net, volume, device, mode: dict, bf16: bool, slice_batch_size: int, batch_severities: bool = True):
    """(brain slices per second, seconds per volume, peak GiB) of the mean single-step ensemble on ``volume``."""
    scorer = DisyreScorer(num_steps=4, size_divisor=net.size_divisor, sw_batch_size=64,
                          batch_severities=batch_severities, **mode)
    inferer = SliceAnomalyInferer(scorer, slice_batch_size=slice_batch_size, amp=bf16)
    brain_slices = int(volume[0, 0].flatten(0, 1).any(0).sum())
    inferer(volume[..., volume.shape[-1] // 2 : volume.shape[-1] // 2 + 2], net)  # warm-up (kernels, allocator)
    reset_peak(device)
    synchronize(device)
    start = time.perf_counter()
    inferer(volume, net)
    synchronize(device)
    seconds = time.perf_counter() - start
    return brain_slices / seconds, seconds, peak_gib(device)


def time_training(net, device, batch_shape, steps: int):
    """(steps per second, peak GiB) of forward + MSE + backward + clip + AdamW at ``batch_shape``, bf16 autocast."""
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_shape, generator=gen).to(device)
    target = torch.rand(batch_shape, generator=gen).to(device)
    t = torch.randint(0, 100, (batch_shape[0],), generator=gen).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.mse_loss(net(x, t).float(), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    reset_peak(device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps / (time.perf_counter() - start), peak_gib(device)


class _CpuBf16Inferer(SliceAnomalyInferer):
    """The slicing engine whose ``amp`` autocasts on the CPU too (bf16; GroupNorm stays fp32 as under CUDA autocast):
    the dry run's stand-in for the GPU's bf16 path."""

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp)


def precision_effect(device: torch.device, emulate: bool) -> None:
    """Print fp32 against bf16 autocast maps of the shipped demo weights on the 3 demo patients (the inference
    config's defaults: mean single-step, 4 released severities, whole slices): max and mean absolute difference
    in the brain, mean relative difference, and the pooled AP (protocol exact: every brain voxel) of each."""
    import nibabel as nib

    from disyre_monai.data.demo import demo_datalist
    from disyre_monai.metrics.curve import curve_from_scores
    from disyre_monai.networks.loading import load_network_weights
    from disyre_monai.transforms import ScaleByPercentile

    net = DisyreUNet(preset="small")
    load_network_weights(net, str(Path(__file__).resolve().parents[1] / "bundle" / "models" / "model.pt"))
    net = net.to(device).eval()
    inferer_class = _CpuBf16Inferer if emulate else SliceAnomalyInferer
    maps, brains, labels = {False: [], True: []}, [], []
    for case in demo_datalist()["test"]:
        image, mask, label = (np.asarray(nib.load(case[k]).dataobj, np.float32) for k in ("image", "mask", "label"))
        x = ScaleByPercentile(98.0)(torch.from_numpy(image)[None], torch.from_numpy(mask)[None] > 0)[None].to(device)
        brain = torch.from_numpy(mask > 0)[None, None].to(device)
        for bf16 in (False, True):
            inferer = inferer_class(DisyreScorer(num_steps=4, size_divisor=net.size_divisor), amp=bf16)
            with torch.no_grad():
                maps[bf16].append(inferer(x, net, brain)[0, 0].float().cpu().numpy()[mask > 0])
        brains.append(mask > 0)
        labels.append(label[mask > 0] > 0)
    fp32, bf16, truth = np.concatenate(maps[False]), np.concatenate(maps[True]), np.concatenate(labels)
    difference = np.abs(fp32 - bf16)
    ap = [curve_from_scores(m, truth).average_precision() for m in (fp32, bf16)]
    print(f"\nprecision of the anomaly maps (shipped demo weights, 3 demo patients, {fp32.size} brain voxels"
          f"{', bf16 emulated by CPU autocast' if emulate else ''}): max |fp32 - bf16| {difference.max():.4f}, "
          f"mean {difference.mean():.5f}, mean relative {difference.mean() / np.abs(fp32).mean():.1%}; "
          f"pooled AP fp32 {ap[0]:.3f}, bf16 {ap[1]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: exercise every code path")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--slice-batch-size", type=int, default=64, help="slices per forward (paper.json: 64)")
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args()
    if args.dry_run:
        device, volume_shape, batch_shape, steps = torch.device("cpu"), (64, 64, 3), (2, 1, 64, 64), 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device (use --dry-run to exercise the code on the CPU)")
        device, volume_shape, batch_shape, steps = torch.device("cuda"), VOLUME, TRAIN_BATCH, args.train_steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version()}; TF32 conv {torch.backends.cudnn.allow_tf32}, TF32 matmul "
          f"{torch.backends.cuda.matmul.allow_tf32}" + (" (DRY RUN: CPU, tiny sizes, numbers meaningless)"
                                                         if args.dry_run else ""))
    torch.manual_seed(0)
    net = DisyreUNet(preset=args.preset).to(device).eval()
    volume = synthetic_brain(volume_shape).to(device)
    brain_slices = int(volume[0, 0].flatten(0, 1).any(0).sum())
    print(f"\npreset {args.preset} ({sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters), volume "
          f"{volume_shape} ({brain_slices} brain slices), mean single-step, 4 severities, slice batch "
          f"{args.slice_batch_size}, window batch 64\n")
    print("| mode | precision | brain slices/s | s/volume | peak GiB |")
    print("| --- | --- | --- | --- | --- |")
    for mode_name, mode in MODES.items():
        for bf16 in (False, True):
            rate, seconds, peak = time_inference(net, volume, device, mode, bf16, args.slice_batch_size)
            print(f"| {mode_name} | {'bf16' if bf16 else 'fp32'} | {rate:.1f} | {seconds:.2f} | {peak} |",
                  flush=True)
    rate, seconds, peak = time_inference(net, volume, device, {}, True, args.slice_batch_size, False)
    print(f"| whole slice, one forward per severity | bf16 | {rate:.1f} | {seconds:.2f} | {peak} |", flush=True)
    del volume
    precision_effect(device, emulate=device.type != "cuda")
    steps_per_s, peak = time_training(net, device, batch_shape, steps)
    print(f"\ntraining, batch {batch_shape[0]} x {batch_shape[2]} x {batch_shape[3]}, bf16 autocast, AdamW, clip 1.0: "
          f"{steps_per_s:.2f} steps/s ({1 / steps_per_s * 1e3:.0f} ms/step; 100k released steps: "
          f"{1e5 / steps_per_s / 3600:.1f} h of network time), peak {peak} GiB")


if __name__ == "__main__":
    main()
