"""Seconds per step of on-the-fly preprocessing, scoring and the way back, for the raw-looking 1 mm demo case.

Builds the raw case (``disyre_monai.synthetic.raw_case``: the demo test subject's full head, lesion, rigid transform,
LPS, 1 mm, bias field), then runs the bundle's steps with the shipped demo weights and model space card, timing
each: load, reorient + resample to the model spacing, skull stripping, affine registration to the model's
template (+ resampling onto the model grid), scoring (SliceAnomalyInferer + DisyreScorer, mean single-step,
4 steps), inverse (anomaly map and brain mask back onto the raw grid), and the total, once per skull-stripping
mode asked for (default: "atlas", the registered Colin27 head, then "robex"). Also prints the brain-mask Dice
against the known mask and the registration error (mm, at the brain's corners). Target (issue 12): total under
60 s on 2 CPU cores.

    python benchmarks/raw_inference.py                   # 1 mm case, atlas then ROBEX
    python benchmarks/raw_inference.py --skull_strip atlas
    python benchmarks/raw_inference.py --variant thick   # 0.9 x 0.9 x 5 mm
    python benchmarks/raw_inference.py --threads 2       # torch/ITK threads (default: all cores)
    python benchmarks/raw_inference.py --head /usr/share/mricron/templates/ch2.nii.gz \
        --brain_mask /usr/share/mricron/templates/ch2bet.nii.gz   # Colin27's true 1 mm head (mricron-data)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished child processes (ROBEX runs as one)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="1mm", choices=["1mm", "thick"])
    parser.add_argument("--bundle", default=str(REPO / "bundle"), help="bundle folder (weights and model space card)")
    parser.add_argument("--skull_strip", nargs="+", default=["atlas", "robex"],
                        help="modes to time, one after the other: atlas, robex, hdbet, auto, mask (the known mask)")
    parser.add_argument("--threads", type=int, default=None, help="torch and SimpleITK threads (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the raw case")
    parser.add_argument("--head", default=None, help="another full-head scan, e.g. Colin27's 1 mm ch2.nii.gz")
    parser.add_argument("--brain_mask", default=None, help="brain mask of --head (e.g. ch2bet.nii.gz)")
    args = parser.parse_args()

    from disyre_monai.inferers import DisyreScorer, SliceAnomalyInferer
    from disyre_monai.networks import DisyreUNet
    from disyre_monai.networks.loading import load_network_weights
    from disyre_monai.preprocess import ModelSpace, load_model_space, to_input_grid
    from disyre_monai.preprocess.case import brain_mask_of, skull_strip_mode
    from disyre_monai.preprocess.register import register_affine, resample_onto, transform_matrix
    from disyre_monai.preprocess.reorient import reorient_to_ras
    from disyre_monai.preprocess.resample import resample_to_spacing
    from disyre_monai.preprocess.skull_strip import apply_brain_mask
    from disyre_monai.preprocess.templates import load_template
    from disyre_monai.preprocess.volumes import affine_of, load_volume, spatial_array
    from disyre_monai.schedulers import DisyreScheduler
    from disyre_monai.synthetic.raw_case import build_raw_case
    from disyre_monai.transforms import ScaleByPercentile

    if args.threads:
        torch.set_num_threads(args.threads)
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"(1/5/15 min); torch threads {torch.get_num_threads()}")
    folder = Path(tempfile.mkdtemp(prefix="disyre-raw-bench-"))
    case = build_raw_case(folder, args.variant, seed=args.seed, head_file=args.head, mask_file=args.brain_mask)
    print(f"raw case: {case['variant']}, {case['orientation']}, shape {case['shape']}, spacing {case['spacing']} mm, "
          f"rotation {case['transform']['rotation_deg']:.1f} deg, shift "
          f"{np.linalg.norm(case['transform']['shift_mm']):.1f} mm")

    bundle = Path(args.bundle)
    card: ModelSpace = load_model_space(bundle / "models" / "model.pt", bundle / "configs" / "metadata.json")
    network = DisyreUNet(spatial_dims=2, in_channels=1, out_channels=1, preset="small").eval()
    load_network_weights(network, bundle / "models" / "model.pt", "cpu")
    scorer = DisyreScorer(method="mean_single_step", num_steps=4, scheduler=DisyreScheduler(100, 0.001, 0.2),
                          size_divisor=network.size_divisor)
    inferer = SliceAnomalyInferer(scorer, slice_axis=2, slice_batch_size=32)
    known_mask = spatial_array(load_volume(case["brain_mask"], "mask"))
    known = np.asarray(case["model_to_input"])
    corners = np.array([[x, y, z, 1.0] for x in (-70, 70) for y in (-100, 70) for z in (-50, 80)])
    summary = {}
    for mode in args.skull_strip:
        settings = card.preprocess_settings(skull_strip=mode if mode != "mask" else "auto").resolve()
        times, cpu = {}, {}

        def timed(step, function, *a):
            start, start_cpu = time.perf_counter(), cpu_seconds()
            result = function(*a)
            times[step] = times.get(step, 0.0) + time.perf_counter() - start
            cpu[step] = cpu.get(step, 0.0) + cpu_seconds() - start_cpu
            return result

        start_all, start_all_cpu = time.perf_counter(), cpu_seconds()
        image = timed("load", load_volume, case["image"])
        volumes = {"image": image}
        if mode == "mask":
            volumes["mask"] = load_volume(case["brain_mask"], "mask")
        # The same steps as preprocess_volumes, timed one by one (the test suite checks preprocess_volumes itself).
        volumes = timed("reorient_resample", lambda v: {
            r: resample_to_spacing(reorient_to_ras(x), settings.spacing, r) for r, x in v.items()}, volumes)
        resolved = skull_strip_mode(settings.skull_strip, volumes, case["image"])
        brain = timed("skull_strip", brain_mask_of, resolved, volumes, settings.seed)
        stripped = apply_brain_mask(volumes["image"], brain)
        template = load_template(settings.template, settings.template_mask)
        transform = timed("registration", register_affine, stripped, template, settings.seed,
                          settings.registration_iterations, settings.registration_sampling, "moments",
                          settings.registration_mask_erosion_mm)
        model_to_input = transform_matrix(transform)
        on_model = timed("registration", lambda: {
            "image": resample_onto(stripped, template.shape[1:], affine_of(template), model_to_input, "image"),
            "mask": resample_onto(brain, template.shape[1:], affine_of(template), model_to_input, "mask")})
        on_model["image"] = apply_brain_mask(on_model["image"], on_model["mask"])

        def score():
            scaled = ScaleByPercentile(98.0, within_mask=True)(on_model["image"], on_model["mask"])
            with torch.no_grad():
                return inferer(torch.as_tensor(scaled)[None], network, mask=torch.as_tensor(on_model["mask"])[None])[0]

        anomaly_map = timed("scoring", score)
        record = {"input_affine": affine_of(image).tolist(), "input_shape": list(image.shape[1:]),
                  "model_to_input": model_to_input.tolist()}
        restored = timed("inverse", lambda: (to_input_grid(anomaly_map, affine_of(template), record, "map"),
                                             to_input_grid(on_model["mask"], affine_of(template), record, "mask")))
        total, total_cpu = time.perf_counter() - start_all, cpu_seconds() - start_all_cpu

        error = np.linalg.norm((corners @ model_to_input.T - corners @ known.T)[:, :3], axis=1)
        dice = _dice(spatial_array(restored[1]), known_mask)
        print(f"\n== skull stripping: {mode} ({resolved}) ==")
        print("step                  wall s    CPU s   (CPU s: all threads and child processes together)")
        for step in ("load", "reorient_resample", "skull_strip", "registration", "scoring", "inverse"):
            if step in times:
                print(f"{step:<20} {times[step]:8.1f} {cpu[step]:8.1f}")
        print(f"{'total':<20} {total:8.1f} {total_cpu:8.1f}   (target: under 60 s wall on 2 cores: "
              f"{'met' if total < 60 else 'NOT met'})")
        print(f"map on the raw grid: shape {tuple(restored[0].shape[1:])} == input {tuple(image.shape[1:])}: "
              f"{tuple(restored[0].shape[1:]) == tuple(image.shape[1:])}; affine equal: "
              f"{np.allclose(affine_of(restored[0]), affine_of(image))}")
        print(f"brain mask Dice against the known mask (raw grid): {dice:.3f}")
        print(f"registration error at the brain box's corners: mean {error.mean():.2f} mm, max {error.max():.2f} mm")
        summary[mode] = {"wall_s": {k: round(v, 2) for k, v in times.items()},
                         "cpu_s": {k: round(v, 2) for k, v in cpu.items()}, "total_wall_s": round(total, 2),
                         "total_cpu_s": round(total_cpu, 2), "brain_dice": round(dice, 4),
                         "registration_error_mm": round(float(error.mean()), 3)}
    summary["load_average_before"] = [round(v, 2) for v in load]
    summary["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(summary))

if __name__ == "__main__":
    main()
