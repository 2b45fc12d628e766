"""The ``--bundle``, ``--released`` and ``--onnx`` modes of ``inference_speed.py`` (run that script, not this one).

- ``--bundle``: ``python -m monai.bundle run inference`` on N demo-sized volumes (copies of the demo
  patients) against the pure network time of the same volumes (the network's forward passes inside the
  config's inferer, timed in this process, half of the volumes before the bundle run and half after).
  Target: bundle wall time <= 1.2x the pure network time.
- ``--released``: the released inference workload (sliding windows of the training patch size, 75% overlap,
  every axial slice including those without brain, one slice at a time, one forward pass per severity)
  against our default (the inference config's inferer) and cheaper settings, on the demo patients with
  the shipped weights: seconds, volume slices per second, speed-up, pooled voxel AP (protocol exact: every
  brain voxel) and the AP difference to the released workload. Target: >= 5x at |AP difference| <= 0.01.
- ``--onnx``: the network exported to ONNX and run by ONNX Runtime against PyTorch, on CPU, same inferer
  and volumes, alternating (two rounds each): seconds, slices per second, ratio, max map difference.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from disyre_monai.data.demo import demo_datalist
from disyre_monai.inferers import DisyreScorer, SliceAnomalyInferer
from disyre_monai.metrics import average_precision
from disyre_monai.networks import load_network_weights

REPO = Path(__file__).resolve().parents[1]
INFER = REPO / "bundle" / "configs" / "inference.json"
# The released workload (on top of the config's method, severities and scheduler).
RELEASED = {"overlap": 0.75, "slice_batch_size": 1, "sw_batch_size": 1024, "batch_severities": False}
TRAINING_PATCH = {"small": 64, "paper": 128}


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value pairs, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_config(overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(INFER))
    parser.update({"bundle_root": str(REPO / "bundle"), "device": "cpu", "progress": False, **overrides})
    return parser


def load_network(parser: ConfigParser) -> torch.nn.Module:
    network = parser.get_parsed_content("network_def", instantiate=True)
    load_network_weights(network, parser.get_parsed_content("model_path"), map_location="cpu")
    return network.to(parser.get_parsed_content("device")).eval()


def demo_cases(parser: ConfigParser) -> list[dict]:
    """The demo patients through the config's preprocessing (image, mask, label as the bundle sees them)."""
    preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
    return [preprocessing(dict(case)) for case in demo_datalist()["test"]]


class TimedNetwork(torch.nn.Module):
    """Wraps a network and adds the wall time of its forward passes to ``seconds``."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.seconds, self.cpu_seconds, self.calls = network, 0.0, 0.0, 0

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        start, start_cpu = time.perf_counter(), time.process_time()
        out = self.network(x, timesteps)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - start_cpu
        self.calls += 1
        return out


def _batch(case: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.as_tensor(case["image"]).as_subclass(torch.Tensor)[None].to(device)
    mask = torch.as_tensor(case["mask"]).as_subclass(torch.Tensor)[None].to(device)
    return image, mask


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load_line() -> str:
    return f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {torch.get_num_threads()} torch threads"


def bundle_vs_network(volumes: int, overrides: dict) -> None:
    """Bundle inference on ``volumes`` copies of the demo patients vs the network's own time (see module docs)."""
    parser = load_config(overrides)
    device = torch.device(parser.get_parsed_content("device"))
    network = TimedNetwork(load_network(parser))
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    cases = demo_cases(parser)
    print(f"\n== bundle inference vs the network alone: {volumes} demo-sized volumes ({_load_line()}) ==")
    with tempfile.TemporaryDirectory() as tmp:
        entries = []
        for i in range(volumes):
            source = demo_datalist()["test"][i % len(cases)]
            entry = {}
            for key in ("image", "mask", "label"):
                target = Path(tmp, "data", f"case{i:02d}_{key}.nii.gz")
                target.parent.mkdir(exist_ok=True)
                shutil.copy(source[key], target)
                entry[key] = str(target)
            entries.append(entry)
        datalist = Path(tmp, "datalist.json")
        datalist.write_text(json.dumps({"test": entries}))

        def pure(indices) -> float:
            inferer_seconds = 0.0
            for i in indices:
                image, mask = _batch(cases[i % len(cases)], device)
                start = time.perf_counter()
                with torch.no_grad():
                    inferer(image, network, mask=mask)
                inferer_seconds += time.perf_counter() - start
            return inferer_seconds

        inferer_seconds = pure(range(0, volumes, 2))
        command = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", str(INFER),
                   "--datalist", str(datalist), "--output_dir", str(Path(tmp, "out")), "--bundle_root",
                   str(REPO / "bundle")]
        for key, value in {"device": str(device), **overrides}.items():
            command += [f"--{key}", str(value)]
        start, start_cpu = time.perf_counter(), _children_cpu()
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        bundle_seconds, bundle_cpu = time.perf_counter() - start, _children_cpu() - start_cpu
        if result.returncode != 0:
            raise SystemExit(f"bundle inference failed ({result.returncode}):\n{result.stderr[-3000:]}")
        inferer_seconds += pure(range(1, volumes, 2))
        written = sorted(p.name for p in Path(tmp, "out").iterdir())
    brain_slices = sum(int(c["mask"].flatten(1, 2).any(1).sum()) for c in cases)
    forwards = network.calls
    print(f"command: {' '.join(command[1:])}")
    print(f"outputs written: {len(written)} files ({', '.join(sorted({n.split('_', 1)[-1] for n in written}))})")
    print(f"network forward passes: {network.seconds:7.1f} s ({forwards} passes; about "
          f"{brain_slices * volumes // len(cases)} brain slices x {len(inferer.scorer.timesteps)} severities)")
    print(f"inferer in total:       {inferer_seconds:7.1f} s ({inferer_seconds / network.seconds:.2f}x the network)")
    print(f"bundle wall time:       {bundle_seconds:7.1f} s (start-up, loading, validation, inference, inversion, "
          "writing)")
    print(f"RATIO bundle / pure network: {bundle_seconds / network.seconds:.2f}x (target <= 1.2x); in CPU time "
          f"{bundle_cpu / network.cpu_seconds:.2f}x ({bundle_cpu:.1f} s / {network.cpu_seconds:.1f} s)")


def _released_map(inferer: SliceAnomalyInferer, image: torch.Tensor, mask: torch.Tensor, network) -> torch.Tensor:
    """The released workload: every axial slice, one at a time (slices without brain are run and give 0)."""
    out = torch.zeros_like(image)
    for z in range(image.shape[-1]):
        has_brain = bool(mask[..., z].any())
        slice_mask = mask[..., z : z + 1] if has_brain else torch.ones_like(mask[..., z : z + 1])
        scored = inferer(image[..., z : z + 1], network, mask=slice_mask)
        if has_brain:
            out[..., z : z + 1] = scored
    return out


def _pooled_ap(maps: list[torch.Tensor], cases: list[dict]) -> float:
    scores, labels = [], []
    for amap, case in zip(maps, cases):
        brain = np.asarray(case["mask"])[0] > 0
        scores.append(amap[0, 0].float().cpu().numpy()[brain])
        labels.append(np.asarray(case["label"])[0][brain] > 0)
    return average_precision(np.concatenate(scores), np.concatenate(labels))


def released_vs_default(window: int | None, overrides: dict) -> None:
    """The released inference workload against our default and cheaper settings (see module docs)."""
    parser = load_config(overrides)
    device = torch.device(parser.get_parsed_content("device"))
    network = load_network(parser)
    default = parser.get_parsed_content("inferer", instantiate=True)
    window = window or TRAINING_PATCH.get(getattr(network, "preset", ""), 128)
    cases = demo_cases(parser)
    batches = [_batch(c, device) for c in cases]
    num_slices = sum(int(b[0].shape[-1]) for b in batches)

    ours = default.scorer

    def variant(**kwargs) -> SliceAnomalyInferer:
        settings = {"method": ours.method, "scheduler": ours.scheduler, "size_divisor": ours.size_divisor,
                    "sigma_scale": ours.sigma_scale, "foreground_weighting": ours.foreground_weighting, **kwargs}
        scorer = DisyreScorer(**settings)
        scorer.timesteps = list(ours.timesteps)  # the same severities, whatever the config's num_steps
        return SliceAnomalyInferer(scorer, slice_batch_size=default.slice_batch_size)

    settings = {
        f"released: {window}-px windows, 75% overlap, 1 slice, all slices": None,
        "ours (inference config default)": default,
        f"{window}-px windows, 75% overlap, batched": variant(roi_size=window, overlap=0.75),
        f"{window}-px windows, 50% overlap, batched": variant(roi_size=window, overlap=0.5),
        f"{window}-px windows, 25% overlap, batched": variant(roi_size=window, overlap=0.25),
        "whole slices, batched": variant(roi_size=None),
    }
    released = variant(roi_size=window, **RELEASED)
    print(f"\n== released inference workload vs ours: {len(cases)} demo patients, {num_slices} axial slices, "
          f"{len(ours.timesteps)} severities {ours.timesteps}, preset {network.preset} ({_load_line()}) ==")
    print(f"{'setting':58} {'seconds':>8} {'slices/s':>9} {'speed-up':>9} {'CPU s':>8} {'speed-up':>9} {'AP':>7} "
          f"{'|dAP|':>7}")
    results, cpu = {}, {}
    for name, inferer in settings.items():
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            if inferer is None:
                maps = [_released_map(released, image, mask, network) for image, mask in batches]
            else:
                maps = [inferer(image, network, mask=mask) for image, mask in batches]
        seconds, cpu[name] = time.perf_counter() - start, time.process_time() - start_cpu
        results[name] = (seconds, _pooled_ap(maps, cases))
        ref_seconds, ref_ap = next(iter(results.values()))
        ref_cpu = next(iter(cpu.values()))
        speed, ap = ref_seconds / seconds, results[name][1]
        print(f"{name:58} {seconds:8.1f} {num_slices / seconds:9.1f} {speed:8.1f}x {cpu[name]:8.1f} "
              f"{ref_cpu / cpu[name]:8.1f}x {ap:7.4f} {abs(ap - ref_ap):7.4f}", flush=True)
    print("(wall-clock speed-ups drift with the machine's load during the run; CPU-time speed-ups much less)")
    ref_seconds, ref_ap = next(iter(results.values()))
    ours_seconds, ours_ap = results["ours (inference config default)"]
    print(f"RATIO ours / released: {ref_seconds / ours_seconds:.1f}x faster (CPU time "
          f"{cpu[next(iter(cpu))] / cpu['ours (inference config default)']:.1f}x) at AP difference "
          f"{ours_ap - ref_ap:+.4f} (target >= 5x at |difference| <= 0.01)")
    if ours_ap < ref_ap - 0.01:
        print("our default LOSES more than 0.01 AP against the released workload")
    good = [(s, n) for n, (s, ap) in list(results.items())[1:] if abs(ap - ref_ap) <= 0.01]
    if good:
        seconds, name = min(good)
        print(f"cheapest setting within 0.01 AP of the released workload: {name} ({ref_seconds / seconds:.1f}x)")
    else:
        print("no cheaper setting stays within 0.01 AP of the released workload")


def onnx_vs_torch(overrides: dict) -> None:
    """ONNX Runtime against PyTorch on CPU, same inferer and volumes (see module docs)."""
    from disyre_monai.commands.export_onnx import export_onnx
    from disyre_monai.networks import OnnxNetwork

    parser = load_config({**overrides, "device": "cpu"})
    network = load_network(parser)
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    batches = [_batch(c, "cpu") for c in demo_cases(parser)]
    brain_slices = sum(int(mask.flatten(2, 3).any(2).sum()) for _, mask in batches)
    print(f"\n== ONNX Runtime vs PyTorch on CPU: {len(batches)} demo patients, {brain_slices} brain slices "
          f"({_load_line()}) ==")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.onnx")
        start = time.perf_counter()
        report = export_onnx(network, path, inferer=inferer)
        print(f"export + verification: {time.perf_counter() - start:.1f} s, max |map difference| "
              f"{report['max_abs_difference']:.2e}")
        runtimes = {"pytorch": network, "onnxruntime": OnnxNetwork(path, providers=["CPUExecutionProvider"])}
        seconds = {name: 0.0 for name in runtimes}
        maps = {}
        for _ in range(2):
            for name, net in runtimes.items():
                start = time.perf_counter()
                with torch.no_grad():
                    maps[name] = [inferer(image, net, mask=mask) for image, mask in batches]
                seconds[name] += (time.perf_counter() - start) / 2
    diff = max(float((a - b).abs().max()) for a, b in zip(maps["pytorch"], maps["onnxruntime"]))
    for name, sec in seconds.items():
        print(f"{name:12} {sec:7.1f} s per round, {brain_slices / sec:6.1f} brain slices/s")
    print(f"RATIO onnxruntime / pytorch speed: {seconds['pytorch'] / seconds['onnxruntime']:.2f}x; max |map "
          f"difference| {diff:.2e}")
