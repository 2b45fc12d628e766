"""Transforms: input checks, intensity preprocessing, slicing, DISYRE's synthetic-anomaly corruption (array +
dictionary twins) and the diffusion baselines' per-sample training draws."""

from .augment import (
    LeanRand2DElasticD,
    LeanRand2DElasticd,
    LeanRand2DElasticDict,
    RandKSpaceGhostingD,
    RandKSpaceGhostingd,
    RandKSpaceGhostingDict,
)
from .corruption import (
    Corruption,
    RandDisyreCorruption,
    RandDisyreCorruptionD,
    RandDisyreCorruptiond,
    RandDisyreCorruptionDict,
)
from .diffusion import RandDiffusionDrawD, RandDiffusionDrawd, RandDiffusionDrawDict
from .intensity import ScaleByPercentile, ScaleByPercentileD, ScaleByPercentiled, ScaleByPercentileDict
from .intensity_bias import RandIntensityBias, RandIntensityBiasD, RandIntensityBiasd, RandIntensityBiasDict
from .shapes import RandAnomalyShape, RandAnomalyShapeD, RandAnomalyShaped, RandAnomalyShapeDict
from .slices import CropToMaskD, CropToMaskd, CropToMaskDict, RandSlicesD, RandSlicesd, RandSlicesDict
from .texture import ForeignPatchCache, RandForeignPatch, RandForeignPatchD, RandForeignPatchd, RandForeignPatchDict
from .validation import (
    CheckImageFilesD,
    CheckImageFilesd,
    CheckImageFilesDict,
    EnsureBrainMaskD,
    EnsureBrainMaskd,
    EnsureBrainMaskDict,
    ValidateImage,
    ValidateImageD,
    ValidateImaged,
    ValidateImageDict,
)

__all__ = [
    "CheckImageFilesd", "CheckImageFilesD", "CheckImageFilesDict", "Corruption", "ForeignPatchCache",
    "EnsureBrainMaskd", "EnsureBrainMaskD", "EnsureBrainMaskDict", "RandSlicesd", "RandSlicesD", "RandSlicesDict",
    "RandAnomalyShape", "RandAnomalyShaped", "RandAnomalyShapeD", "RandAnomalyShapeDict",
    "RandDisyreCorruption", "RandDisyreCorruptiond", "RandDisyreCorruptionD", "RandDisyreCorruptionDict",
    "RandForeignPatch", "RandForeignPatchd", "RandForeignPatchD", "RandForeignPatchDict",
    "RandIntensityBias", "RandIntensityBiasd", "RandIntensityBiasD", "RandIntensityBiasDict",
    "ScaleByPercentile", "ScaleByPercentiled", "ScaleByPercentileD", "ScaleByPercentileDict",
    "ValidateImage", "ValidateImaged", "ValidateImageD", "ValidateImageDict",
    "RandDiffusionDrawd", "RandDiffusionDrawD", "RandDiffusionDrawDict",
    "LeanRand2DElasticd", "LeanRand2DElasticD", "LeanRand2DElasticDict", "CropToMaskd", "CropToMaskD",
    "CropToMaskDict", "RandKSpaceGhostingd", "RandKSpaceGhostingD", "RandKSpaceGhostingDict",
]
