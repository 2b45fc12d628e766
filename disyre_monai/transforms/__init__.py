"""Transforms: intensity preprocessing and DISYRE's synthetic-anomaly corruption (array + dictionary twins)."""

from .corruption import (
    Corruption,
    RandDisyreCorruption,
    RandDisyreCorruptionD,
    RandDisyreCorruptiond,
    RandDisyreCorruptionDict,
)
from .intensity import ScaleByPercentile, ScaleByPercentileD, ScaleByPercentiled, ScaleByPercentileDict
from .intensity_bias import RandIntensityBias, RandIntensityBiasD, RandIntensityBiasd, RandIntensityBiasDict
from .shapes import RandAnomalyShape, RandAnomalyShapeD, RandAnomalyShaped, RandAnomalyShapeDict
from .slices import EnsureBrainMaskD, EnsureBrainMaskd, EnsureBrainMaskDict, RandSlicesD, RandSlicesd, RandSlicesDict
from .texture import ForeignPatchCache, RandForeignPatch, RandForeignPatchD, RandForeignPatchd, RandForeignPatchDict

__all__ = [
    "Corruption", "ForeignPatchCache",
    "EnsureBrainMaskd", "EnsureBrainMaskD", "EnsureBrainMaskDict", "RandSlicesd", "RandSlicesD", "RandSlicesDict",
    "RandAnomalyShape", "RandAnomalyShaped", "RandAnomalyShapeD", "RandAnomalyShapeDict",
    "RandDisyreCorruption", "RandDisyreCorruptiond", "RandDisyreCorruptionD", "RandDisyreCorruptionDict",
    "RandForeignPatch", "RandForeignPatchd", "RandForeignPatchD", "RandForeignPatchDict",
    "RandIntensityBias", "RandIntensityBiasd", "RandIntensityBiasD", "RandIntensityBiasDict",
    "ScaleByPercentile", "ScaleByPercentiled", "ScaleByPercentileD", "ScaleByPercentileDict",
]
