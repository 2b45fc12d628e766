"""Transforms: intensity preprocessing and DISYRE's synthetic-anomaly corruption (array + dictionary twins)."""

from .corruption import (
    Corruption,
    RandDisyreCorruption,
    RandDisyreCorruptiond,
    RandDisyreCorruptionD,
    RandDisyreCorruptionDict,
)
from .intensity import ScaleByPercentile, ScaleByPercentiled, ScaleByPercentileD, ScaleByPercentileDict
from .intensity_bias import RandIntensityBias, RandIntensityBiasd, RandIntensityBiasD, RandIntensityBiasDict
from .slices import EnsureBrainMaskd, EnsureBrainMaskD, EnsureBrainMaskDict, RandSlicesd, RandSlicesD, RandSlicesDict
from .shapes import RandAnomalyShape, RandAnomalyShaped, RandAnomalyShapeD, RandAnomalyShapeDict
from .texture import ForeignPatchCache, RandForeignPatch, RandForeignPatchd, RandForeignPatchD, RandForeignPatchDict

__all__ = [
    "Corruption", "ForeignPatchCache",
    "EnsureBrainMaskd", "EnsureBrainMaskD", "EnsureBrainMaskDict", "RandSlicesd", "RandSlicesD", "RandSlicesDict",
    "RandAnomalyShape", "RandAnomalyShaped", "RandAnomalyShapeD", "RandAnomalyShapeDict",
    "RandDisyreCorruption", "RandDisyreCorruptiond", "RandDisyreCorruptionD", "RandDisyreCorruptionDict",
    "RandForeignPatch", "RandForeignPatchd", "RandForeignPatchD", "RandForeignPatchDict",
    "RandIntensityBias", "RandIntensityBiasd", "RandIntensityBiasD", "RandIntensityBiasDict",
    "ScaleByPercentile", "ScaleByPercentiled", "ScaleByPercentileD", "ScaleByPercentileDict",
]
