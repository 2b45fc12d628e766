"""Generalisation check on a brain the model never trained on: simulated lesions in the healthy validation subject.

The demo's validation subject (Colin27) is never used for training. This script inserts seeded lesions of
several kinds into it with :func:`disyre_monai.synthetic.lesions.simulate_lesion` (one lesion per case), writes a
datalist whose ``test`` split holds those cases (and whose ``training`` split is the demo training brains,
for the normative baseline), then scores a model on it with the bundle's own evaluation command under
protocol ``exact`` and prints AP, best Dice and AUROC per method, overall and per lesion kind.

Usage::

    python scripts/generalisation_check.py --model_path runs/disyre/models/model.pt --output_dir runs/generalisation
    python scripts/generalisation_check.py --model_path bundle/models/model.pt --extra_config bundle/configs/paper.json

The lesion cases are rebuilt identically from their seeds on every run (same seeds, same volumes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from disyre_monai.data.demo import demo_datalist
from disyre_monai.synthetic.lesions import simulate_lesion

# kind -> (seeds, simulate_lesion settings), on the demo's 2 mm grid (1 voxel = 2 mm).
LESION_KINDS = {
    "tumour": ((101, 102, 103), dict(radius_range=(6.0, 11.0), contrast_range=(0.2, 0.45), irregularity=0.4)),
    "stroke": ((201, 202), dict(radius_range=(4.0, 8.0), contrast_range=(0.1, 0.3), irregularity=0.6)),
    "ms": ((301, 302, 303), dict(radius_range=(1.5, 3.0), contrast_range=(0.4, 0.6), irregularity=0.3)),
    "subtle": ((401, 402), dict(radius_range=(4.0, 8.0), contrast_range=(0.75, 0.9), irregularity=0.35)),
}


def build_cases(out_dir: Path) -> Path:
    """Write the lesion cases and a datalist into ``out_dir``; return the datalist path."""
    demo = demo_datalist()
    subject = demo["validation"][0]
    img = nib.load(subject["image"])
    image = np.asarray(img.dataobj, np.float32)
    mask = np.asarray(nib.load(subject["mask"]).dataobj) > 0
    out_dir.mkdir(parents=True, exist_ok=True)
    test = []
    for kind, (seeds, settings) in LESION_KINDS.items():
        for seed in seeds:
            lesioned, lesion = simulate_lesion(image, mask, seed, **settings)
            name = f"{kind}_{seed}"
            nib.save(nib.Nifti1Image(lesioned.astype(np.float32), img.affine), out_dir / f"{name}_t1.nii.gz")
            nib.save(nib.Nifti1Image(lesion.astype(np.uint8), img.affine), out_dir / f"{name}_label.nii.gz")
            test.append({"image": f"{name}_t1.nii.gz", "mask": subject["mask"], "label": f"{name}_label.nii.gz",
                         "subject": name})
    datalist = {"training": demo["training"], "test": test}
    path = out_dir / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2), encoding="utf-8")
    return path


def per_kind(per_case_csv: Path, method: str) -> dict[str, float]:
    """Mean per-volume AP of ``method`` for each lesion kind, from the report's ``per_case.csv``."""
    import csv

    values: dict[str, list[float]] = {}
    with open(per_case_csv, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("method") != method:
                continue
            kind = Path(row["case"]).name.split("_")[0]
            ap = row.get("average_precision") or row.get("ap")
            if ap not in (None, ""):
                values.setdefault(kind, []).append(float(ap))
    return {k: float(np.mean(v)) for k, v in values.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--output_dir", default="runs/generalisation")
    parser.add_argument("--extra_config", action="append", default=[], help="config patches (e.g. paper.json)")
    parser.add_argument("--bundle_dir", default="bundle")
    args = parser.parse_args()

    out = Path(args.output_dir)
    datalist = build_cases(out / "cases")
    configs = [f"{args.bundle_dir}/configs/inference.json", *args.extra_config,
               f"{args.bundle_dir}/configs/evaluate.json"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", repr(configs),
           "--datalist", str(datalist), "--model_path", args.model_path, "--output_dir", str(out / "report"),
           "--calibrate", "False", "--protocol", "exact"]
    subprocess.run(cmd, check=True)
    metrics = json.loads((out / "report" / "metrics.json").read_text(encoding="utf-8"))
    print(f"generalisation check, protocol {metrics['protocol']}, model {args.model_path}:")
    for method, values in metrics["headline"].items():
        print(f"  {method:10s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float)))
    per_case = out / "report" / "per_case.csv"
    if per_case.is_file():
        for method in metrics["headline"]:
            kinds = per_kind(per_case, method)
            if kinds:
                print(f"  {method:10s} per-volume AP by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in kinds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
