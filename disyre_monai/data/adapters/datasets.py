"""The layouts of the public brain MRI datasets used in unsupervised anomaly detection, as released.

Every layout below was checked against the dataset's own documentation or, where that is not public,
against the code of the benchmarks that use it:

- **IXI** (healthy; T1, T2, PD; brain-development.org/ixi-dataset, CC BY-SA 3.0): one archive per modality
  (``IXI-T1.tar``, ``IXI-T2.tar``, ``IXI-PD.tar``), each a flat set of ``IXI<nnn>-<hospital>-<nnnn>-<MOD>.nii.gz``
  files (hospital Guys, HH or IOP). Counts differ per modality (581 T1, 578 T2, as TorchIO's ``IXI`` dataset
  notes), so a subject without the requested modality is simply not listed. Not skull-stripped.
- **Cam-CAN** (healthy; T1w, T2w; Taylor et al., NeuroImage 2017): BIDS,
  ``cc700/mri/pipeline/release004/BIDS_20190411/anat/sub-CC110033/anat/sub-CC110033_T1w.nii.gz`` (path as in
  the UPD benchmark's ``prepare_data.py``, github.com/iolag/UPD_study); the ``anat/`` level may be flattened
  as the UPD scripts do. Not skull-stripped.
- **BraTS 2020** (glioma; Menze et al. 2015, Bakas et al. 2017): ``MICCAI_BraTS2020_TrainingData/
  BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii[.gz]`` (``.nii`` in the Kaggle copy
  the UPD benchmark downloads). Known quirk: case 355 ships its segmentation as ``W39_1998.09.19_Segm.nii``
  (UPD's ``download_BraTS.sh`` renames it); it is taken as that case's label. Labels 1, 2, 4.
- **BraTS 2021** (glioma; Baid et al., arXiv:2107.02314): ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,
  seg}.nii.gz`` (the ids used by Behrendt et al.'s split files). Labels 1, 2, 4.
- **BraTS 2023 GLI**: ``ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData/BraTS-GLI-00000-000/
  BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``; the last three digits number the time point, so the
  subject is ``BraTS-GLI-00000`` and all its time points share a split. Labels 1, 2, 3.
- **ATLAS v2.0** (stroke; Liew et al., Sci. Data 2022): ``ATLAS_2/Training/R001/sub-r001s001/ses-1/anat/
  sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz`` and ``..._label-L_desc-T1lesion_mask.nii.gz``
  (655 training scans: the DISYRE authors' ``atlas_upd_issues_wTestSplit.json`` lists 655). The
  ``Testing/`` folder has no lesion masks (withheld) and is ignored, as the UPD scripts delete it.
  Defaced, not skull-stripped.
- **MSLUB** (multiple sclerosis; Lesjak et al., Neuroinformatics 2018, lit.fe.uni-lj.si): 30 folders
  ``patientXX/`` holding ``patientXX_{T1W,T1WKS,T2W,FLAIR}.nii.gz`` (co-registered to FLAIR, bias-corrected),
  ``patientXX_brainmask.nii.gz`` and ``patientXX_consensus_gt.nii.gz``, plus ``raw/`` (original space,
  ignored) — the archive's readme, mirrored in github.com/muschellij2/open_ms_data; the mirror's unprefixed
  names (``T2W.nii.gz``) are accepted too.
- **WMH 2017** (white matter hyperintensities; Kuijf et al., IEEE TMI 2019; doi:10.34894/AECRSD):
  ``training/{Utrecht,Singapore,Amsterdam/GE3T}/<id>/pre/{T1,FLAIR}.nii.gz`` and ``.../<id>/wmh.nii.gz``;
  the full release adds ``test/`` (also GE1T5 and ``Philips_VU .PETMR_01.``) and ``additional_annotations/``
  (ignored). ``orig/`` holds the unprocessed images and is ignored. Label 1 = WMH, label 2 = "other
  pathology", a rough mask dilated by one pixel that the challenge ignores in its evaluation
  (wmh.isi.uu.nl, "Manual reference standard"). Here the label file is listed unchanged and lesion =
  label > 0, so other pathology counts as anomalous: an anomaly detector should flag it, but scores are
  then not comparable with the challenge's WMH-only scores.

All lesion labels are listed as released; the lesion mask is ``label > 0`` (the evaluation code binarises).
"""

from __future__ import annotations

from monai.utils import look_up_option

from .layout import LABEL, MASK, DatasetLayout

__all__ = ["DATASETS", "FAMILIES", "get_layout", "resolve_layout"]

_ANY = r"(?:.*/)?"  # any parent folders
_NII = r"\.nii(?:\.gz)?"
_NO_LABELS_HINT = "The BraTS validation and test releases ship no segmentation: point the root at the training data."

IXI = DatasetLayout(
    name="ixi", role="healthy",
    pattern=rf"{_ANY}(?P<case>IXI\d{{3}}-(?P<site>[A-Za-z]+)-\d{{4}})-(?P<kind>T1|T2|PD){_NII}",
    kinds={"T1": "t1", "T2": "t2", "PD": "pd"},
    subject_key=r"IXI\d{3}",
    example="IXI-T1/IXI002-Guys-0828-T1.nii.gz, IXI-T2/IXI002-Guys-0828-T2.nii.gz, IXI-PD/... (the contents of "
            "IXI-T1.tar, IXI-T2.tar, IXI-PD.tar).",
    notes=("IXI: healthy volunteers from three London hospitals (site); raw scans, not skull-stripped.",),
)

CAMCAN = DatasetLayout(
    name="camcan", role="healthy",
    pattern=rf"{_ANY}(?P<subject>sub-CC\d{{6}})/(?:anat/)?(?P=subject)_(?P<kind>T1w|T2w){_NII}",
    kinds={"T1w": "t1", "T2w": "t2"},
    subject_key=r"CC\d{6}",
    example="cc700/mri/pipeline/release004/BIDS_20190411/anat/sub-CC110033/anat/sub-CC110033_T1w.nii.gz "
            "and ..._T2w.nii.gz (BIDS).",
    notes=("Cam-CAN: healthy adults 18-88 years; raw BIDS scans, not skull-stripped.",),
)

BRATS2020 = DatasetLayout(
    name="brats2020", role="lesion",
    pattern=rf"{_ANY}(?P<case>BraTS20_Training_\d{{3}})/(?P=case)_(?P<kind>t1|t1ce|t2|flair|seg){_NII}",
    aliases=((rf"{_ANY}(?P<case>BraTS20_Training_355)/W39_1998\.09\.19_Segm{_NII}", "seg"),),
    kinds={"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": LABEL},
    subject_key=r"BraTS20_Training_\d{3}",
    all_modalities_per_case=True,
    example="MICCAI_BraTS2020_TrainingData/BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii"
            "[.gz].",
    notes=("BraTS 2020 training data (369 cases); BraTS20_Validation_* cases ship no label and are not listed.",),
    label_rule="lesion = seg > 0 (1 necrotic/non-enhancing core, 2 oedema, 4 enhancing tumour: the whole tumour)",
    label_hint=_NO_LABELS_HINT,
)

BRATS2021 = DatasetLayout(
    name="brats2021", role="lesion",
    pattern=rf"{_ANY}(?P<case>BraTS2021_\d{{5}})/(?P=case)_(?P<kind>t1|t1ce|t2|flair|seg){_NII}",
    kinds={"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": LABEL},
    subject_key=r"BraTS2021_\d{5}",
    all_modalities_per_case=True,
    example="BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz.",
    label_rule="lesion = seg > 0 (1 necrotic/non-enhancing core, 2 oedema, 4 enhancing tumour: the whole tumour)",
    label_hint=_NO_LABELS_HINT,
)

BRATS2023 = DatasetLayout(
    name="brats2023", role="lesion",
    pattern=rf"{_ANY}(?P<case>(?P<subject>BraTS-GLI-\d{{5}})-\d{{3}})/(?P=case)-(?P<kind>t1n|t1c|t2w|t2f|seg){_NII}",
    kinds={"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": LABEL},
    subject_key=r"BraTS-GLI-\d{5}",
    all_modalities_per_case=True,
    example="ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData/BraTS-GLI-00000-000/"
            "BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz.",
    notes=("BraTS 2023 GLI: case BraTS-GLI-<subject>-<time point>; all time points of a subject share a split.",),
    label_rule="lesion = seg > 0 (1 non-enhancing tumour core, 2 surrounding FLAIR hyperintensity, 3 enhancing "
               "tumour: the whole tumour)",
    label_hint=_NO_LABELS_HINT,
)

ATLAS = DatasetLayout(
    name="atlas", role="lesion",
    pattern=(rf"{_ANY}(?P<subject>sub-r\d{{3}}s\d{{3}})/(?P<session>ses-[A-Za-z0-9]+)/anat/(?P=subject)_(?P=session)"
             rf"_space-MNI152NLin2009aSym_(?P<kind>T1w|label-L_desc-T1lesion_mask){_NII}"),
    kinds={"T1w": "t1", "label-L_desc-T1lesion_mask": LABEL},
    subject_key=r"r\d{3}s\d{3}",
    exclude=r"(?:^|/)Testing/",
    example="ATLAS_2/Training/R001/sub-r001s001/ses-1/anat/sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz "
            "and ..._label-L_desc-T1lesion_mask.nii.gz.",
    notes=("ATLAS v2.0 training scans (MNI152NLin2009aSym, defaced, not skull-stripped); Testing/ (lesion masks "
           "withheld) is ignored.",),
    label_rule="lesion = label > 0 (stroke lesion mask)",
)

MSLUB = DatasetLayout(
    name="mslub", role="lesion",
    pattern=(rf"{_ANY}(?P<case>patient\d{{2}})/(?:(?P=case)_)?"
             rf"(?P<kind>T1W|T1WKS|T2W|FLAIR|consensus_gt|brainmask){_NII}"),
    kinds={"T1W": "t1", "T1WKS": "t1ce", "T2W": "t2", "FLAIR": "flair", "consensus_gt": LABEL, "brainmask": MASK},
    subject_key=r"patient\d{2}",
    all_modalities_per_case=True,
    example="patient01/patient01_{T1W,T1WKS,T2W,FLAIR,brainmask,consensus_gt}.nii.gz (raw/ sub-folders ignored).",
    notes=("MSLUB: images co-registered to FLAIR and bias-corrected; brain mask and consensus lesion segmentation "
           "in FLAIR space; the raw/ sub-folders (original space) are ignored.",),
    label_rule="lesion = label > 0 (consensus white matter lesion segmentation)",
)

WMH = DatasetLayout(
    name="wmh", role="lesion",
    pattern=rf"{_ANY}(?P<site>[^/]+)/(?P<num>\d+)/(?P<kind>pre/T1|pre/FLAIR|wmh){_NII}",
    case_format="{site}_{num}",
    kinds={"pre/T1": "t1", "pre/FLAIR": "flair", "wmh": LABEL},
    subject_key=r"(?:Utrecht|Singapore|GE3T|GE1T5|Philips_VU_PETMR_01)_\d+",
    exclude=r"(?:^|/)additional_annotations/",
    all_modalities_per_case=True,
    example="training/Utrecht/0/pre/{T1,FLAIR}.nii.gz and training/Utrecht/0/wmh.nii.gz (also Singapore/<id>, "
            "Amsterdam/GE3T/<id>, and test/...).",
    notes=("WMH 2017: pre/ images (FLAIR space, bias-corrected); orig/ and additional_annotations/ are ignored.",),
    label_rule="lesion = label > 0: 1 white matter hyperintensity and 2 other pathology (a rough mask the challenge "
               "ignores in its own evaluation) both count as anomalous",
)

#: dataset name (as on the command line) -> layout; ``brats-gli`` is an alias of ``brats2023``.
DATASETS: dict[str, DatasetLayout] = {
    layout.name: layout for layout in (IXI, CAMCAN, BRATS2020, BRATS2021, BRATS2023, ATLAS, MSLUB, WMH)
}
DATASETS["brats-gli"] = BRATS2023
#: family name -> its releases; ``brats`` picks the BraTS release whose file names the root holds.
FAMILIES = {"brats": ("brats2020", "brats2021", "brats2023")}


def get_layout(dataset: str) -> DatasetLayout:
    """The layout of ``dataset`` (case-insensitive; a family name gives its first release), or ``ValueError``."""
    name = str(dataset).strip().lower()
    try:
        name = FAMILIES[name][0] if name in FAMILIES else name
        return look_up_option(name, DATASETS, print_all_options=False)
    except ValueError:
        raise ValueError(
            f"datalist: dataset {dataset!r} is not supported; supported: {', '.join([*DATASETS, *FAMILIES])}."
        ) from None


def resolve_layout(dataset: str, files: list[str], root) -> DatasetLayout:
    """The layout of ``dataset``; for a family (``brats``), the one release whose files are under ``root``.

    Args:
        dataset: a dataset or family name.
        files: the files under ``root`` (relative POSIX paths).
        root: shown in messages.
    """
    name = str(dataset).strip().lower()
    if name not in FAMILIES:
        return get_layout(name)
    found = [r for r in FAMILIES[name] if any(DATASETS[r].match(f) for f in files)]
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        raise ValueError(f"datalist: dataset {dataset!r} means one of {', '.join(FAMILIES[name])}; {root} holds files "
                         f"of {what}. Name the release (e.g. `disyre-monai datalist {FAMILIES[name][1]} ...`) and "
                         "point the root at one release.")
    return DATASETS[found[0]]
