"""Transforms: intensity preprocessing, DISYRE's synthetic-anomaly corruption and the latent-diffusion noise draws
(array + dictionary twins)."""

from .corruption import (
    Corruption,
    RandDisyreCorruption,
    RandDisyreCorruptionD,
    RandDisyreCorruptiond,
    RandDisyreCorruptionDict,
)
from .intensity import ScaleByPercentile, ScaleByPercentileD, ScaleByPercentiled, ScaleByPercentileDict
from .intensity_bias import RandIntensityBias, RandIntensityBiasD, RandIntensityBiasd, RandIntensityBiasDict
from .latent_noise import LatentNoise, RandLatentNoise, RandLatentNoiseD, RandLatentNoised, RandLatentNoiseDict
from .shapes import RandAnomalyShape, RandAnomalyShapeD, RandAnomalyShaped, RandAnomalyShapeDict
from .slices import EnsureBrainMaskD, EnsureBrainMaskd, EnsureBrainMaskDict, RandSlicesD, RandSlicesd, RandSlicesDict
from .texture import ForeignPatchCache, RandForeignPatch, RandForeignPatchD, RandForeignPatchd, RandForeignPatchDict

__all__ = [
    "Corruption", "ForeignPatchCache",
    "EnsureBrainMaskd", "EnsureBrainMaskD", "EnsureBrainMaskDict", "RandSlicesd", "RandSlicesD", "RandSlicesDict",
    "RandAnomalyShape", "RandAnomalyShaped", "RandAnomalyShapeD", "RandAnomalyShapeDict",
    "RandDisyreCorruption", "RandDisyreCorruptiond", "RandDisyreCorruptionD", "RandDisyreCorruptionDict",
    "RandForeignPatch", "RandForeignPatchd", "RandForeignPatchD", "RandForeignPatchDict",
    "LatentNoise", "RandLatentNoise", "RandLatentNoised", "RandLatentNoiseD", "RandLatentNoiseDict",
    "RandIntensityBias", "RandIntensityBiasd", "RandIntensityBiasD", "RandIntensityBiasDict",
    "ScaleByPercentile", "ScaleByPercentiled", "ScaleByPercentileD", "ScaleByPercentileDict",
]
