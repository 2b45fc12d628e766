"""Named evaluation protocols of the field, so that every reported number says how it was computed.

A protocol fixes which voxels are scored, the post-processing of the maps, how voxels are pooled, how a
binarisation threshold is chosen and which numbers are the headline. ``look_up_protocol(name)`` returns
a preset; :class:`Protocol` can also be built directly (``dataclasses.replace(preset, ...)``) for a variant,
which must then get its own ``name``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from monai.utils import look_up_option


@dataclass(frozen=True)
class Protocol:
    """How an evaluation is done.

    Attributes:
        name: the label every reported number carries.
        description: one paragraph, written into ``metrics.json``.
        voxels: ``"brain"`` (brain-mask voxels) or ``"volume"`` (every voxel of the volume).
        mask_erosion: iterations of in-plane (4-connected, per axial slice) erosion of the brain mask; the map
            is zeroed outside the eroded mask before any filtering (0 = none).
        median_filter: side of a cubic 3D median filter applied to every map after masking (0 = none).
        clip_range: ``(low, high)`` the maps are clipped to before scoring (None = no clipping).
        min_component_size: after binarisation, connected components of at most this many voxels are removed
            (affects thresholded Dice only; 0 = none).
        voxels_per_volume: voxels drawn at random WITH replacement (seeded) from each volume's scored region
            for the POOLED metrics, as the released DISYRE code does (0 = all voxels, no draw). Per-volume
            metrics always use all voxels.
        num_thresholds: best Dice over this many evenly spaced thresholds between the pooled minimum and
            maximum score (0 = over every distinct score).
        threshold_policy: how the binarisation threshold is chosen when none is given:
            ``"validation_best_dice"`` (best pooled Dice on a labelled validation split, or the healthy
            false-positive rate ``healthy_fpr`` when the validation split has no lesion),
            ``"healthy_fpr"`` (at ``healthy_fpr`` on healthy validation voxels).
        healthy_fpr: false-positive rate on healthy voxels used by ``"healthy_fpr"``.
        top_k: voxels averaged by the ``top_k_mean`` case and slice scores.
        slice_region: voxels of an axial slice its slice scores (mean, max, top-k mean) are taken over:
            ``"scored"`` (the protocol's scored voxels) or ``"bounding_box"`` (every voxel of the brain mask's
            bounding box, background included, as the released DISYRE code, which crops each volume to its
            foreground and averages whole slices).
        central_box_mm: score only the voxels of the volume's central box of this size (mm per axis, centred as
            torchio's ``CropOrPad``, which the released cDDPM evaluation applies before resampling); None: the
            whole volume. Needs the voxel spacing of every case.
        headline: ``(group, metric)`` pairs printed first and used as the protocol's summary.
        reference: where the protocol comes from.
    """

    name: str
    description: str
    voxels: str = "brain"
    mask_erosion: int = 0
    median_filter: int = 0
    clip_range: tuple[float, float] | None = None
    min_component_size: int = 0
    voxels_per_volume: int = 0
    num_thresholds: int = 0
    threshold_policy: str = "validation_best_dice"
    healthy_fpr: float = 0.01
    top_k: int = 100
    slice_region: str = "scored"
    central_box_mm: tuple[float, float, float] | None = None
    headline: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    reference: str = ""

    def __post_init__(self) -> None:
        for key, allowed in (("voxels", ("brain", "volume")),
                             ("threshold_policy", ("validation_best_dice", "healthy_fpr")),
                             ("slice_region", ("scored", "bounding_box"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"Protocol {self.name}: {key} must be one of {allowed}, got {getattr(self, key)!r}.")
        for key in ("mask_erosion", "median_filter", "min_component_size", "voxels_per_volume", "num_thresholds"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"Protocol {self.name}: {key} must be >= 0, got {getattr(self, key)}.")
        if self.clip_range is not None and not self.clip_range[0] < self.clip_range[1]:
            raise ValueError(f"Protocol {self.name}: clip_range must be (low, high) with low < high.")
        if not 0 < self.healthy_fpr < 1:
            raise ValueError(f"Protocol {self.name}: healthy_fpr must be in (0, 1), got {self.healthy_fpr}.")
        if self.central_box_mm is not None and (len(self.central_box_mm) != 3 or min(self.central_box_mm) <= 0):
            raise ValueError(f"Protocol {self.name}: central_box_mm must be 3 positive sizes (mm), got "
                             f"{self.central_box_mm}.")
        if self.top_k < 1:
            raise ValueError(f"Protocol {self.name}: top_k must be >= 1, got {self.top_k}.")

    def as_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol to :data:`PROTOCOLS` (names are unique)."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"register_protocol: a protocol named {protocol.name!r} exists already.")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def look_up_protocol(protocol: str | Protocol) -> Protocol:
    """A preset by name (``exact``, ``disyre``, ``upd``, ``behrendt``, ``behrendt_slab``, ``mood``), or the protocol
    itself."""
    if isinstance(protocol, Protocol):
        return protocol
    return look_up_option(protocol, PROTOCOLS)


register_protocol(Protocol(
    name="exact",
    description="Every brain-mask voxel of every test volume pooled (no subsampling, no post-processing); AP "
                "and AUROC with scikit-learn's definitions; best Dice over every distinct score, one global "
                "threshold. Sample-level scores over brain voxels. This package's default.",
    headline=(("pooled", "average_precision"), ("pooled", "best_dice"), ("pooled", "auroc")),
    reference="disyre-monai",
))

register_protocol(Protocol(
    name="disyre",
    description="The released DISYRE evaluation (snavalm/disyre evaluate.py): 10 000 voxels drawn with "
                "replacement per volume, pooled; AP; max Dice over 200 evenly spaced thresholds; slice-level "
                "AUROC/AP with mean, max and top-100-mean slice scores over the whole slice of the volume cropped "
                "to the brain's bounding box, background included (as released). Differences, all deliberate: "
                "the pooled voxels are "
                "drawn from the brain mask (released: the foreground bounding box, background scores 0), the "
                "draw is seeded, and the threshold grid spans the scores' range (released: [min score, 1], "
                "because the maximum is taken over the labels).",
    voxels_per_volume=10_000,
    num_thresholds=200,
    top_k=100,
    slice_region="bounding_box",
    headline=(("pooled", "average_precision"), ("pooled", "best_dice"), ("sample_slice", "top_k_mean.auroc")),
    reference="Naval Marimont et al., ISBI 2024 / MICCAI 2024; github.com/snavalm/disyre",
))

register_protocol(Protocol(
    name="upd",
    description="The UPD benchmark (Lagogiannis et al., iolag/UPD_study): every voxel pooled (UPD: every pixel "
                "of every brain slice; maps are 0 outside the brain in both), AP with scikit-learn's definition, "
                "best Dice over 100 evenly spaced thresholds, no post-processing; slice-level AUROC/AP with the "
                "slice's maximum score. UPD evaluates 128x128 resized slices; this protocol scores the volumes "
                "as given.",
    voxels="volume",
    num_thresholds=100,
    headline=(("pooled", "average_precision"), ("pooled", "best_dice"), ("sample_slice", "max.auroc")),
    reference="Lagogiannis et al., 'Unsupervised pathology detection: a deep dive into the state of the art', "
              "IEEE TMI 2023; github.com/iolag/UPD_study",
))

register_protocol(Protocol(
    name="behrendt",
    description="Behrendt et al. (cDDPM/pDDPM): brain mask eroded in-plane (4-connected, 3 iterations, as at "
                "their 2 mm evaluation grid), map zeroed outside it, 3D median filter 5x5x5; every voxel of "
                "the volume scored; per-volume AUPRC and Dice averaged over volumes; the Dice threshold is the "
                "best pooled Dice on a validation split (exact search; theirs is an interval-halving search); "
                "after thresholding, connected components (26-connected) of at most 7 voxels are removed.",
    voxels="volume",
    mask_erosion=3,
    median_filter=5,
    min_component_size=7,
    threshold_policy="validation_best_dice",
    headline=(("per_volume", "dice_at_threshold.mean"), ("per_volume", "average_precision.mean"),
              ("per_volume", "best_dice.mean")),
    reference="Behrendt et al., 'Patched diffusion models for unsupervised anomaly detection in brain MRI', "
              "MIDL 2023; 'Guided reconstruction with conditioned diffusion models...', 2024",
))

register_protocol(replace(
    PROTOCOLS["behrendt"],
    name="behrendt_slab",
    description=PROTOCOLS["behrendt"].description + " Scored region: the central 192 x 192 x 100 mm box of each "
                "volume only (the released evaluation's CropOrPad to 192 x 192 x 100 at 1 mm before resampling to "
                "96 x 96 x 50 at 2 mm: a central axial slab of 100 mm), as the published cDDPM/pDDPM numbers; "
                "protocol behrendt scores the whole volume.",
    central_box_mm=(192.0, 192.0, 100.0),
    reference=PROTOCOLS["behrendt"].reference + "; FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7 "
              "src/datamodules/create_dataset.py (CropOrPad), configs/experiment/cDDPM (imageDim 192x192x100)",
))

register_protocol(Protocol(
    name="mood",
    description="MOOD challenge (MIC-DKFZ/mood evalresults.py): maps clipped to [0, 1], every voxel of every "
                "volume concatenated, voxel AP (scikit-learn); sample-level AP on one score per case (here the "
                "map's maximum). MOOD reads maps as float16; this protocol keeps float32.",
    voxels="volume",
    clip_range=(0.0, 1.0),
    headline=(("pooled", "average_precision"), ("sample_volume", "max.average_precision")),
    reference="Zimmerer et al., 'MOOD 2020: a public benchmark for out-of-distribution detection and "
              "localization on medical images', IEEE TMI 2022; github.com/MIC-DKFZ/mood",
))
