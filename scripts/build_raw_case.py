#!/usr/bin/env python
"""Build the raw-looking test case (a full head scan as from the scanner, with a known answer), reproducibly.

Writes, for each variant (1 mm isotropic; 0.9 x 0.9 x 5 mm thick slices), ``<out>/raw_<variant>/image.nii.gz``
(LPS, int16, full head, lesion, bias field, noise, moved by a known rigid transform), its true ``brainmask.nii.gz``
and ``label.nii.gz``, ``case.json`` (the transform and every setting), and once ``<out>/model_space/`` (the same
case preprocessed by hand: skull-stripped, on the model's 2 mm MNI grid, scaled like the demo data). See
``disyre_monai.synthetic.raw_case`` for the recipe. The default source is the demo test subject's full head, shipped
with the package (no download). Colin27's 1 mm head works too (``apt-get install mricron-data``)::

    python scripts/build_raw_case.py --out runs/raw_case
    python scripts/build_raw_case.py --out runs/raw_case --seed 1 --variants 1mm
    python scripts/build_raw_case.py --out runs/colin_raw --head /usr/share/mricron/templates/ch2.nii.gz \\
        --brain_mask /usr/share/mricron/templates/ch2bet.nii.gz

Then, e.g.: ``python -m monai.bundle run inference --config_file bundle/configs/inference.json
--dataset_dir runs/raw_case/raw_1mm --preprocess True``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from disyre_monai.synthetic.raw_case import ORIENTATIONS, VARIANTS, build_raw_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/raw_case"), help="output folder (default: %(default)s)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0, help="seed of lesion, transform, bias field and noise")
    parser.add_argument("--orientation", default="LPS", choices=ORIENTATIONS)
    parser.add_argument("--bias_strength", type=float, default=0.15)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--head", default=None, help="another full-head scan (default: the demo test subject's)")
    parser.add_argument("--brain_mask", default=None, help="brain mask of --head (same grid)")
    args = parser.parse_args(argv)
    for variant in args.variants:
        case = build_raw_case(args.out, variant, seed=args.seed, orientation=args.orientation,
                              bias_strength=args.bias_strength, noise=args.noise, head_file=args.head,
                              mask_file=args.brain_mask)
        summary = {k: case[k] for k in ("image", "shape", "spacing", "orientation")}
        summary["transform"] = {k: case["transform"][k] for k in ("rotation_deg", "shift_mm")}
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
