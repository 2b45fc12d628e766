"""Training speed of the bundle against the network alone, and where the bundle's time goes.

Three measurements in one run, on the bundle's default training config (``bundle/configs/train.json``,
embedded demo data, or the configs and overrides given):

1. **Pure step**: forward + MSE + backward + AdamW of the same network on a random batch of the shape the
   bundle's stream yields (timed before and after the bundle run; the mean is the reference).
2. **Bundle**: the config's trainer runs ``--epochs`` epochs exactly as ``monai.bundle run training`` does
   (DataLoader workers, validation every ``val_interval`` epochs, checkpoints, logging); time per step =
   wall time from the trainer's start to its end / steps. Printed: the ratio bundle / pure (target <= 1.3)
   and the part of the time the trainer spent waiting for data and in validation.
3. **Profile**: the stream's batches drawn in this process (no workers) with every transform timed, grouped
   by stage (slicing, augmentation, corruption: shape / texture / bias, collation, cache copy), the one-off
   cost of loading, validation and scaling (cached per volume), and the replay that rebuilds the
   foreign-patch cache when a run resumes.

    python benchmarks/train_speed.py                        # default config, 2 epochs (one validation)
    python benchmarks/train_speed.py --epochs 1 --profile-batches 20
    python benchmarks/train_speed.py --config bundle/configs/train.json bundle/configs/paper.json \
        --set device=cuda batch_size=8 --epochs 1 --epoch-length 50       # on a GPU

For a sampling profile of every process (DataLoader workers included) as a flame graph (``pip install
py-spy``; root or ptrace rights needed):

    py-spy record --subprocesses --rate 50 -o runs/train_profile.svg -- python benchmarks/train_speed.py --epochs 1

Timings on a shared machine vary; the ratios are measured inside one run, so both sides see the same load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Events
from inference_compare import parse_overrides  # the benchmarks' folder is the script's folder on sys.path
from monai.bundle import ConfigWorkflow
from monai.transforms import Randomizable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = [str(REPO / "bundle" / "configs" / "train.json")]

# Stage of each transform class of the training pipeline (anything else is reported under its class name).
STAGES = {
    "slicing": (
        "RandSlicesd", "CropToMaskd", "CropForegroundd", "SpatialPadd", "RandSpatialCropd", "ResizeWithPadOrCropd",
    ),
    "augmentation": (
        "Rand2DElasticd", "LeanRand2DElasticd", "RandRotated", "RandZoomd", "RandFlipd", "RandScaleIntensityd",
        "RandAdjustContrastd", "RandGaussianNoised", "RandGaussianSmoothd", "ScaleIntensityRanged", "RandAffined",
    ),
    "corruption": ("RandDisyreCorruptiond",),
    "loading": ("CheckImageFilesd", "LoadImaged"),
    "validation": ("ValidateImaged",),
    "orientation + brain mask": ("Orientationd", "EnsureBrainMaskd"),
    "scaling": ("ScaleByPercentiled",),
}
# Parts of the corruption, timed inside it: (attribute of the corrupter, method).
CORRUPTION_PARTS = {
    "  shape": (("shaper", "randomize"), ("shaper", "render")),
    "  texture": (("texture", "randomize"), ("texture", "blend")),
    "  intensity bias": (("bias", "corrupt"),),
}


def stage_of(transform) -> str:
    name = type(transform).__name__
    return next((stage for stage, names in STAGES.items() if name in names), name)


def time_calls(obj, label: str, totals: dict[str, float]) -> None:
    """Add the wall time of every ``obj(...)`` call to ``totals[label]`` (the instance's class is subclassed)."""
    cls = type(obj)

    def timed_call(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return cls.__call__(self, *args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start

    obj.__class__ = type(cls.__name__, (cls,), {"__call__": timed_call})


def time_method(owner, method: str, label: str, totals: dict[str, float]) -> None:
    """Add the wall time of every ``owner.method(...)`` call to ``totals[label]`` (instance attribute)."""
    bound = getattr(owner, method)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return bound(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start

    setattr(owner, method, timed)


def make_workflow(configs: list[str], output_dir: str, overrides: dict) -> ConfigWorkflow:
    workflow = ConfigWorkflow(config_file=configs, workflow_type="train", logging_file=False, output_dir=output_dir,
                              **overrides)
    workflow.initialize()
    return workflow


def pure_step_seconds(network: torch.nn.Module, batch_shape, optimizer_args: dict, steps: int, device) -> float:
    """Seconds per forward + MSE + backward + AdamW step of ``network`` on a random batch of ``batch_shape``."""
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), **optimizer_args)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_shape, generator=gen).to(device)
    target = torch.rand(batch_shape, generator=gen).to(device)
    t = torch.randint(0, 100, (batch_shape[0],), generator=gen).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(network(x, t), target)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def device_of(parser) -> torch.device:
    return torch.device(parser.get_parsed_content("device"))


def run_bundle(workflow: ConfigWorkflow) -> dict[str, float]:
    """Run the config's trainer; returns wall time, steps, data wait and validation time."""
    parser = workflow.parser
    trainer = parser.get_parsed_content("train#trainer")
    validators = []
    for handler in parser.get_parsed_content("train#handlers"):
        validator = getattr(handler, "validator", None)
        if validator is not None:
            validators.append(validator)
    clock: dict[str, float] = defaultdict(float)
    marks: dict[str, float] = {}

    def mark(name):
        return lambda engine: marks.__setitem__(name, time.perf_counter())

    def add(name, since):
        return lambda engine: clock.__setitem__(name, clock[name] + time.perf_counter() - marks[since])

    trainer.add_event_handler(Events.STARTED, mark("start"))
    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("get"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, add("data wait", "get"))
    for validator in validators:
        validator.add_event_handler(Events.STARTED, mark("validation"))
        validator.add_event_handler(Events.COMPLETED, add("validation", "validation"))
    first = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1),
                              lambda e: first.__setitem__("first", time.perf_counter() - marks["start"]))
    start = time.perf_counter()
    trainer.run()
    clock["wall"] = time.perf_counter() - start
    clock["first iteration"] = first.get("first", 0.0)
    clock["steps"] = trainer.state.iteration
    return dict(clock)


def profile_stream(workflow: ConfigWorkflow, batches: int) -> tuple[dict, dict, dict, int]:
    """Draw ``batches`` batches of the training stream in this process, timing each transform by stage.

    Returns the per-batch seconds by stage and by transform class, the one-off seconds by stage (loading,
    validation, scaling of every volume once; the replay of a resumed stream), and the samples per batch.
    """
    parser = workflow.parser
    stream = parser.get_parsed_content("train#stream")
    dataset = stream.dataset
    totals: dict[str, float] = defaultdict(float)
    deterministic, random = [], []
    for t in dataset.transform.transforms:  # CacheDataset caches the prefix before the first random transform
        (random if random or isinstance(t, Randomizable) else deterministic).append(t)
    by_class: dict[str, float] = defaultdict(float)
    for t in random:
        time_calls(t, stage_of(t), totals)
        time_calls(t, type(t).__name__, by_class)
        corrupter = getattr(t, "corrupter", None)
        if corrupter is not None:
            for label, parts in CORRUPTION_PARTS.items():
                for attr, method in parts:
                    part = getattr(corrupter, attr, None)
                    if part is not None and hasattr(part, method):
                        time_method(part, method, label, totals)
    collate = stream.collate_fn
    stream.collate_fn = lambda items: _timed(collate, items, "collation", totals)
    start = time.perf_counter()
    iterator = iter(stream)
    first = next(iterator)
    samples = int(next(v for v in first.values() if isinstance(v, torch.Tensor)).shape[0])
    totals.clear()
    by_class.clear()
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    per_batch = {k: v / batches for k, v in totals.items()}
    per_class = {k: v / batches for k, v in by_class.items()}
    per_batch["total"] = (time.perf_counter() - start) / batches
    timed = sum(v for k, v in per_batch.items() if k != "total" and not k.startswith("  "))
    per_batch["other (cache copy, stream bookkeeping)"] = per_batch["total"] - timed

    once: dict[str, float] = defaultdict(float)
    for t in deterministic:
        time_calls(t, stage_of(t), once)
    compose = type(dataset.transform)(deterministic)
    for item in dataset.data:
        compose(item)
    # A resumed run rebuilds each worker's foreign-patch cache by replaying earlier batches.
    stream.start_batch = 1000
    totals.clear()
    start = time.perf_counter()
    next(iter(stream))
    once["replay on resume (per worker)"] = time.perf_counter() - start - per_batch["total"]
    stream.start_batch = 0
    return per_batch, per_class, dict(once), samples


def _timed(fn: Callable, arg, label: str, totals: dict[str, float]):
    start = time.perf_counter()
    try:
        return fn(arg)
    finally:
        totals[label] += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=DEFAULT_CONFIG, help="bundle config files (merged in order)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (JSON values)")
    parser.add_argument("--epochs", type=int, default=2, help="bundle epochs timed (default 2: one validation)")
    parser.add_argument("--epoch-length", type=int, default=None, help="steps per epoch (default: the config's)")
    parser.add_argument("--pure-steps", type=int, default=None, help="pure steps timed, before and after "
                        "(default: one epoch's worth)")
    parser.add_argument("--profile-batches", type=int, default=50, help="batches drawn for the profile")
    args = parser.parse_args()

    overrides = {"device": "cpu", "progress": False, "max_epochs": args.epochs, **parse_overrides(args.set)}
    if args.epoch_length:
        overrides["epoch_length"] = args.epoch_length
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        workflow = make_workflow(args.config, os.path.join(tmp, "run"), overrides)
        cfg = workflow.parser
        trainer = cfg.get_parsed_content("train#trainer")
        startup = time.perf_counter() - start
        device = device_of(cfg)
        steps_per_epoch = int(cfg.get_parsed_content("epoch_length"))
        probe = next(iter(cfg.get_parsed_content("train#stream")))
        batch_shape = tuple(probe["image"].shape)
        opt = cfg.get_parsed_content("optimizer")
        opt_args = {k: opt.defaults[k] for k in ("lr", "betas", "weight_decay", "eps")}
        net_def = cfg.get_parsed_content("network_def", instantiate=True)
        pure_steps = args.pure_steps or steps_per_epoch
        print(f"config {[Path(c).name for c in args.config]}, overrides {overrides}")
        print(f"batch {batch_shape}, {steps_per_epoch} steps/epoch, {args.epochs} epoch(s), "
              f"network {type(net_def).__name__} preset {getattr(net_def, 'preset', '?')}, "
              f"{sum(p.numel() for p in net_def.parameters()) / 1e6:.2f} M parameters, device {device}")

        pure_before = pure_step_seconds(_copy_net(cfg).to(device), batch_shape, opt_args, pure_steps, device)
        bundle = run_bundle(workflow)
        pure_after = pure_step_seconds(_copy_net(cfg).to(device), batch_shape, opt_args, pure_steps, device)
        pure = (pure_before + pure_after) / 2
        steps = bundle["steps"]
        per_step = bundle["wall"] / steps
        print("\n== bundle training vs the network alone (same run) ==")
        print(f"pure step (forward + backward + AdamW): {pure * 1e3:7.1f} ms  (before {pure_before * 1e3:.1f}, "
              f"after {pure_after * 1e3:.1f})")
        print(f"bundle time per step:                   {per_step * 1e3:7.1f} ms  ({steps} steps in "
              f"{bundle['wall']:.1f} s)")
        print(f"  of which waiting for data:            {bundle.get('data wait', 0) / steps * 1e3:7.1f} ms "
              f"(first batch incl. worker start {bundle['first iteration']:.1f} s)")
        print(f"  of which validation (amortised):      {bundle.get('validation', 0) / steps * 1e3:7.1f} ms")
        rest = per_step - (bundle.get("data wait", 0) + bundle.get("validation", 0)) / steps
        print(f"  network step + handlers:              {rest * 1e3:7.1f} ms")
        print(f"start-up (config, caching the volumes, network): {startup:.1f} s")
        print(f"RATIO bundle / pure step: {per_step / pure:.2f}x (target <= 1.3x); "
              f"without start-up; with start-up spread over this run: "
              f"{(bundle['wall'] + startup) / steps / pure:.2f}x")

        per_batch, per_class, once, samples = profile_stream(workflow, args.profile_batches)
        print(f"\n== profile: data pipeline in one process, {args.profile_batches} batches of {samples} samples ==")
        print(f"{'stage':42} {'ms/batch':>9} {'% of data':>9} {'x pure step':>11}")
        for stage, sec in sorted(per_batch.items(), key=lambda kv: (kv[0] == "total", -kv[1] if not
                                                                      kv[0].startswith("  ") else 0)):
            print(f"{stage:42} {sec * 1e3:9.1f} {100 * sec / per_batch['total']:8.0f}% {sec / pure:10.2f}x")
        print("by transform (ms/batch): " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in
                                                     sorted(per_class.items(), key=lambda kv: -kv[1])))
        print("one-off costs (not per step):")
        for stage, sec in once.items():
            print(f"  {stage:40} {sec:8.2f} s")
        print(f"the data pipeline needs {per_batch['total'] / pure:.2f}x the pure step per batch on one core; "
              f"{cfg.get_parsed_content('num_workers')} DataLoader worker(s) share "
              f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPU(s) "
              "with the training step")
        del trainer


def _copy_net(cfg) -> torch.nn.Module:
    """A fresh network of the config's definition, seeded (same weights before and after the bundle run)."""
    torch.manual_seed(0)
    return cfg.get_parsed_content("network_def", instantiate=True, lazy=False)


if __name__ == "__main__":
    main()
