"""The bundle's defaults are the released DISYRE settings (paper.json: the released scale; the demo halves
every size); see docs/fidelity.md."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import OneOf, RandAdjustContrastd, RandGaussianNoised, RandGaussianSmoothd

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
TRAIN, INFER, PAPER = (str(CONFIGS / f) for f in ("train.json", "inference.json", "paper.json"))


def _parser(*files, **overrides):
    parser = ConfigParser()
    parser.read_config(list(files))
    parser.update(overrides)
    parser.parse()
    return parser


def _of_type(transforms, cls):
    return [t for t in transforms if isinstance(t, cls)]


def test_noise_std_is_at_most_0_05():
    augment = _parser(TRAIN).get_parsed_content("augment_transforms")
    (noise,) = _of_type(augment, RandGaussianNoised)
    assert noise.rand_gaussian_noise.std <= 0.05 and noise.rand_gaussian_noise.sample_std
    assert noise.prob == pytest.approx(0.15)
    noise.prob = 1.0
    noise.set_random_state(0)
    image = torch.full((1, 64, 64), 0.5)
    stds = [float((noise({"image": image.clone()})["image"] - image).std()) for _ in range(300)]
    assert max(stds) <= 0.05 * 1.05 and np.mean(stds) == pytest.approx(0.025, abs=0.004), "std ~ U(0, 0.05)"


def test_gamma_is_half_below_half_above_one_and_blur_has_the_released_probability():
    augment = _parser(TRAIN).get_parsed_content("augment_transforms")
    gammas = _of_type(augment, OneOf)
    assert len(gammas) == 2
    for one_of, inverted in zip(gammas, (False, True)):
        assert np.allclose(one_of.weights, [0.5, 0.5])
        ranges = [tuple(t.adjuster.gamma) for t in one_of.transforms if isinstance(t, RandAdjustContrastd)]
        assert ranges == [(0.5, 1.0), (1.0, 2.0)]
        assert all(t.adjuster.invert_image == inverted and t.prob == 0.15 for t in one_of.transforms)
    (blur,) = _of_type(augment, RandGaussianSmoothd)
    assert blur.prob == pytest.approx(0.15 * 0.5)


def test_spatial_augmentation_runs_before_the_crop_so_crops_have_no_zero_corners():
    parser = _parser(TRAIN, **{"spatial_augment_transforms#1#prob": 1.0, "num_slices": 10})  # always rotate
    preprocessing = parser.get_parsed_content("train#preprocessing")
    names = [type(t).__name__ for t in preprocessing.transforms]
    assert names.index("RandRotated") < names.index("RandSpatialCropd")
    random_part = preprocessing.transforms[names.index("RandSlicesd"):names.index("RandFlipd")]
    for i, transform in enumerate(random_part):
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(i)
    volume = {"image": torch.ones(1, 400, 400, 4), "mask": torch.ones(1, 400, 400, 4, dtype=torch.uint8)}
    crops = []
    for _ in range(5):
        samples = volume
        for transform in random_part:
            samples = [transform(s) for s in samples] if isinstance(samples, list) else transform(samples)
        crops += [s["image"] for s in samples]
    assert all(c.shape == (1, 64, 64) for c in crops)
    with_zeros = np.mean([float(c.min()) < 0.5 for c in crops])
    # zeros only where a crop reaches past the rotated slice's border; rotating the crop itself zeroes its corners
    assert with_zeros <= 0.25


@pytest.mark.parametrize("extra, box, sizes, blob, offset, spacing", [
    ([], 32, (5, 22), (10, 42), 250, 16),
    ([PAPER], 64, (10, 44), (20, 84), 1000, 32),
])
def test_corruption_and_elastic_settings_released_at_paper_scale_halved_in_the_demo(extra, box, sizes, blob, offset,
                                                                                      spacing):
    parser = _parser(TRAIN, *extra)
    corrupter = parser.get_parsed_content("corruption").corrupter
    shape, bias = corrupter.shaper, corrupter.bias
    assert (shape.patch_size, shape.size_range, shape.blob_size_range) == (box, sizes, blob)
    assert (shape.margin, shape.ellipsoid_margin, shape.sigma_range) == (box // 2, 10 * box // 64, (0, 5 * box / 64))
    assert (shape.rotation_prob, shape.blur_prob, shape.rotation_range) == (0.5, 0.7, (-15, 15))
    assert corrupter.texture.patch_size == box and corrupter.texture.cache.capacity == 512
    assert bias.count_offset == offset and bias.alpha_range == (0, 1) and corrupter.mode == "dag"
    (elastic,) = [t for t in parser.get_parsed_content("spatial_augment_transforms") if hasattr(t, "rand_2d_elastic")]
    assert tuple(elastic.rand_2d_elastic.deform_grid.spacing) == (spacing, spacing)
    assert tuple(elastic.rand_2d_elastic.deform_grid.magnitude) == (0, spacing / 8)


def test_paper_inference_is_the_released_evaluation_and_the_demo_scores_whole_slices():
    paper = _parser(INFER, PAPER).get_parsed_content("inferer").scorer
    assert paper.timesteps == [75, 50, 25, 0] and paper.method == "mean_single_step"
    assert (paper.roi_size, paper.overlap, paper.sigma_scale, paper.blend_mode) == ((128, 128), 0.75, 0.125, "gaussian")
    assert paper.foreground_weighting == "released"
    demo = _parser(INFER).get_parsed_content("inferer").scorer
    assert demo.timesteps == [75, 50, 25, 0] and demo.roi_size is None and demo.foreground_weighting == "none"


def test_paper_optimiser_schedule_batch_and_severity_schedule_are_released():
    parser = _parser(TRAIN, PAPER, device="cpu")
    optimiser = parser.get_parsed_content("optimizer")
    group = optimiser.param_groups[0]
    assert type(optimiser).__name__ == "AdamW" and group["betas"] == (0.95, 0.999)
    assert (group["weight_decay"], group["eps"]) == (1e-6, 1e-8)
    lr_schedule = parser.get_parsed_content("lr_scheduler")
    assert lr_schedule.base_lrs == [1e-4] and (lr_schedule.warmup_steps, lr_schedule.t_total) == (500, 100_000)
    assert (parser["batch_size"], parser["num_slices"], parser["grad_clip"]) == (8, 12, 1.0)
    scheduler = parser.get_parsed_content("scheduler")
    assert scheduler.num_train_timesteps == 100
    assert float(scheduler.severities[0]) == pytest.approx(0.0045, abs=1e-4)
    assert parser.get_parsed_content("corruption").corrupter.mode == "dag"
    assert parser.get_parsed_content("corruption").corrupter.prob == 1.0


#: each method's config stack on top of train.json or inference.json (the peers' patches are stacked after them).
METHOD_PATCHES = {"disyre": [], "cddpm": ["cddpm.json"], "ddpm": ["ddpm.json"], "pddpm": ["pddpm.json"],
                  "ldm": ["ldm.json"]}


@pytest.mark.parametrize("method", METHOD_PATCHES)
def test_inference_of_every_method_runs_fp32_as_released(method):
    parser = _parser(INFER, *(str(CONFIGS / f) for f in METHOD_PATCHES[method]))
    inferer = parser.get_parsed_content("inferer")
    assert parser.get_parsed_content("amp") is False and inferer.amp is False
    assert inferer.cpu_batch_pixels == parser.get_parsed_content("cpu_batch_pixels")


@pytest.mark.parametrize("base", ["train.json", "inference.json"])
@pytest.mark.parametrize("method", METHOD_PATCHES)
def test_the_configs_precision_and_cpu_cap_reach_every_methods_inferer(base, method):
    files = [str(CONFIGS / base), *(str(CONFIGS / f) for f in METHOD_PATCHES[method])]
    inferer = _parser(*files, amp=True, cpu_batch_pixels=12345).get_parsed_content("inferer")
    assert inferer.amp is True and inferer.amp_dtype == torch.bfloat16 and inferer.cpu_batch_pixels == 12345
    assert type(inferer).__name__ == "SliceAnomalyInferer", "one engine decides precision and caps for every method"
    assert not {"amp", "cpu_batch_pixels", "slice_batch_size"} & set(vars(inferer.scorer)), "the scorer has none"
