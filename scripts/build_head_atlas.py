#!/usr/bin/env python
"""Build the head atlas of ``skull_strip="atlas"``: Colin27's full head and its brain on the demo's 2 mm MNI grid.

Reads Colin27 as Debian's ``mricron-data`` ships it (``apt-get install mricron-data``: ``ch2.nii.gz``, the 1 mm
head, and ``ch2bet.nii.gz``, its brain), resamples both onto the 91 x 109 x 91 grid of the demo data and the
model template (RAS, 2 mm, origin (-90, -126, -72) mm) by linear interpolation, and writes, into
``disyre_monai/preprocess/atlas/``:

- ``colin27_head_2mm.nii.gz``: the head (uint8 intensities, as in ``ch2.nii.gz``);
- ``colin27_brain_2mm.nii.gz``: the fraction of each 2 mm voxel inside Colin27's brain (``ch2bet > 0``), uint8
  with scl_slope 1/255.

Deterministic: the same inputs give the same files. Licence and credits: ``atlas/ATTRIBUTION.md``.

    python scripts/build_head_atlas.py [--templates /usr/share/mricron/templates]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from disyre_monai.preprocess.register import resample_onto
from disyre_monai.preprocess.volumes import load_volume, spatial_array, with_array

OUT = Path(__file__).resolve().parents[1] / "disyre_monai" / "preprocess" / "atlas"
SHAPE = (91, 109, 91)
AFFINE = np.array([[2.0, 0, 0, -90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1.0]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", default="/usr/share/mricron/templates",
                        help="folder of ch2.nii.gz and ch2bet.nii.gz")
    args = parser.parse_args(argv)
    folder = Path(args.templates)
    head = load_volume(str(folder / "ch2.nii.gz"), "image")
    brain = load_volume(str(folder / "ch2bet.nii.gz"), "image")
    inside = with_array(brain, (spatial_array(brain) > 0).astype(np.float32))
    head_2mm = spatial_array(resample_onto(head, SHAPE, AFFINE, None, "image"))
    fraction = spatial_array(resample_onto(inside, SHAPE, AFFINE, None, "image"))
    OUT.mkdir(parents=True, exist_ok=True)
    head_image = nib.Nifti1Image(np.clip(np.rint(head_2mm), 0, 255).astype(np.uint8), AFFINE)
    brain_image = nib.Nifti1Image(np.clip(np.rint(fraction * 255), 0, 255).astype(np.uint8), AFFINE)
    brain_image.header.set_slope_inter(1 / 255, 0)
    for image, name in ((head_image, "colin27_head_2mm.nii.gz"), (brain_image, "colin27_brain_2mm.nii.gz")):
        image.header.set_xyzt_units("mm")
        image.set_qform(AFFINE, code=4)  # MNI
        image.set_sform(AFFINE, code=4)
        temporary = OUT / f".{name}.part.nii.gz"
        nib.save(image, str(temporary))
        temporary.replace(OUT / name)
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
