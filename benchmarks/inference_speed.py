"""Inference speed: the inferer per preset and mode, the bundle against the network, the released workload, ONNX.

Default: slices per second of the DISYRE inferer (SliceAnomalyInferer + DisyreScorer) on a BraTS-sized volume
(240 x 240 x 155) for every preset, method and window mode, the projected seconds per volume (brain slices /
rate) and speed ratios measured in this one run, on CPU and on CUDA too when available (bf16 autocast). The
other modes (see ``inference_compare.py``):

    python benchmarks/inference_speed.py                    # both presets, all modes
    python benchmarks/inference_speed.py --presets small --slices 32
    python benchmarks/inference_speed.py --bundle           # bundle wall time vs pure network, 20 demo volumes
    python benchmarks/inference_speed.py --released         # released workload vs our default: slices/s and AP
    python benchmarks/inference_speed.py --onnx             # ONNX Runtime vs PyTorch on CPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from disyre_monai.inferers import DisyreScorer, SliceAnomalyInferer
from disyre_monai.networks import DisyreUNet

VOLUME = (240, 240, 155)
DEFAULT_SLICES = {("cpu", "paper"): 2, ("cpu", "small"): 16, ("cuda", "paper"): 64, ("cuda", "small"): 155}
WINDOW_MODES = {"whole-slice": {}, "sliding-128/75%": {"roi_size": 128, "overlap": 0.75}}


def brats_sized_brain(seed: int = 0) -> torch.Tensor:
    """(1, 1, 240, 240, 155) ellipsoidal 'brain' with tissue-like texture, background 0."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in VOLUME], indexing="ij")
    r = np.sqrt((grids[0] / 0.7) ** 2 + (grids[1] / 0.8) ** 2 + (grids[2] / 0.9) ** 2)
    brain = np.where(r < 1, 0.5 + 0.3 * np.cos(8 * r) + 0.05 * rng.standard_normal(VOLUME), 0)
    return torch.from_numpy(np.clip(brain, 0, 1).astype(np.float32))[None, None]


def time_mode(net, volume, device, preset, method, window, n_slices, slice_batch_size) -> float:
    """Seconds per brain slice for one configuration, timed on ``n_slices`` brain slices."""
    brain_slices = torch.nonzero(volume[0, 0].flatten(0, 1).any(0)).flatten()
    mid = len(brain_slices) // 2
    chosen = brain_slices[mid - n_slices // 2 : mid - n_slices // 2 + n_slices]
    sub = volume[..., chosen].to(device)
    scorer = DisyreScorer(method=method, num_steps=4, size_divisor=net.size_divisor, sw_batch_size=64,
                          **WINDOW_MODES[window])
    inferer = SliceAnomalyInferer(scorer, slice_batch_size=slice_batch_size)
    inferer(sub[..., :1], net)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    inferer(sub, net)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "paper"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--slices", type=int, default=None, help="brain slices timed per configuration")
    parser.add_argument("--slice-batch-size", type=int, default=16)
    parser.add_argument("--bundle", action="store_true", help="bundle inference vs the network alone")
    parser.add_argument("--released", action="store_true", help="released inference workload vs our default")
    parser.add_argument("--onnx", action="store_true", help="ONNX Runtime vs PyTorch (CPU)")
    parser.add_argument("--volumes", type=int, default=20, help="--bundle: demo-sized volumes")
    parser.add_argument("--window", type=int, default=None, help="--released: window size (default: the "
                        "training patch of the preset, 64 small / 128 paper)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="inference config overrides")
    args = parser.parse_args()
    if args.bundle or args.released or args.onnx:
        import inference_compare

        overrides = inference_compare.parse_overrides(args.set)
        if args.bundle:
            inference_compare.bundle_vs_network(args.volumes, overrides)
        if args.released:
            inference_compare.released_vs_default(args.window, overrides)
        if args.onnx:
            inference_compare.onnx_vs_torch(overrides)
        return
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    volume = brats_sized_brain()
    n_brain = int(volume[0, 0].flatten(0, 1).any(0).sum())
    print(f"volume {VOLUME}, {n_brain} brain slices; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'device':6} {'preset':6} {'method':17} {'window':16} {'slices/s':>9} {'s/volume':>9}")
    rates: dict[tuple, float] = {}
    for device_name in devices:
        device = torch.device(device_name)
        for preset in args.presets:
            net = DisyreUNet(preset=preset).eval().to(device)
            n_slices = args.slices or DEFAULT_SLICES[(device.type, preset)]
            for method in ("mean_single_step", "multi_step"):
                for window in WINDOW_MODES:
                    sec = time_mode(net, volume, device, preset, method, window, n_slices, args.slice_batch_size)
                    rates[(device_name, preset, method, window)] = 1.0 / sec
                    print(f"{device_name:6} {preset:6} {method:17} {window:16} {1 / sec:9.2f} {sec * n_brain:9.1f}")
    print("\nratios measured in this run:")
    for (device_name, preset, method, window), rate in rates.items():
        if window == "whole-slice":
            sliding = rates[(device_name, preset, method, "sliding-128/75%")]
            print(f"  {device_name} {preset} {method}: whole-slice is {rate / sliding:.1f}x faster than sliding "
                  "windows")
    for device_name in devices:
        if "cuda" in devices and device_name == "cpu":
            for key, rate in rates.items():
                if key[0] == "cuda":
                    print(f"  cuda/cpu {key[1]} {key[2]} {key[3]}: {rate / rates[('cpu', *key[1:])]:.1f}x")
    if {"small", "paper"} <= set(args.presets):
        for device_name in devices:
            key = (device_name, "mean_single_step", "whole-slice")
            ratio = rates[(device_name, "small", *key[1:])] / rates[(device_name, "paper", *key[1:])]
            print(f"  {device_name}: small preset is {ratio:.1f}x faster than paper (mean_single_step, whole-slice)")


if __name__ == "__main__":
    main()
