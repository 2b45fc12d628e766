"""Preprocessing of raw scans into the grid and format the bundle trains on (RAS, 1 mm, skull-stripped,
optionally bias-corrected and registered to a template, common size), one module per step."""

from .atlas_mask import atlas_brain_mask
from .bias_field import n4_bias_correction
from .case import PreprocessedCase, load_case, preprocess_case, preprocess_volumes
from .crop_pad import crop_or_pad, crop_pad_window
from .model_space import SaveSpaceRecordd, ToModelSpaced, to_input_grid
from .register import register_affine, resample_onto, resample_to_template, transform_matrix
from .reorient import reorient_to_ras
from .resample import resample_to_spacing
from .settings import PreprocessSettings
from .skull_strip import (
    apply_brain_mask,
    hdbet_brain_mask,
    robex_brain_mask,
    skull_presence,
    threshold_brain_mask,
)
from .space import (
    ModelSpace,
    load_model_space,
    model_space_from_datalist,
    model_space_from_training_data,
    write_model_space,
)
from .templates import NAMED_TEMPLATES, load_template, template_path
from .volumes import load_volume, save_volume

__all__ = [
    "ModelSpace",
    "SaveSpaceRecordd",
    "ToModelSpaced",
    "load_model_space",
    "model_space_from_datalist",
    "model_space_from_training_data",
    "to_input_grid",
    "write_model_space",
    "NAMED_TEMPLATES",
    "PreprocessSettings",
    "PreprocessedCase",
    "apply_brain_mask",
    "crop_or_pad",
    "crop_pad_window",
    "hdbet_brain_mask",
    "atlas_brain_mask",
    "load_case",
    "load_template",
    "load_volume",
    "n4_bias_correction",
    "preprocess_case",
    "preprocess_volumes",
    "register_affine",
    "resample_onto",
    "resample_to_spacing",
    "resample_to_template",
    "reorient_to_ras",
    "robex_brain_mask",
    "save_volume",
    "skull_presence",
    "template_path",
    "threshold_brain_mask",
    "transform_matrix",
]
