import numpy as np
import pytest
import torch

from disyre_monai.schedulers import DisyreScheduler


def test_table_matches_released_schedule_reversed():
    s = DisyreScheduler()
    betas = torch.linspace(1e-3, 0.2, 100, dtype=torch.float64)
    released = torch.cumprod(1 - betas, 0).sqrt().float()
    assert torch.equal(s.severities, released.flip(0))
    assert s.severity(0) == pytest.approx(0.0045, abs=1e-4)
    assert s.severity(99) == pytest.approx(0.9995, abs=1e-4)
    assert torch.all(s.severities[1:] > s.severities[:-1]), "severity must grow with t"


def test_round_trip_severity_timestep_severity():
    s = DisyreScheduler()
    t = torch.arange(100)
    assert torch.equal(s.timestep(s.severity(t)), t)
    sev = torch.rand(1000)
    snapped = s.severity(s.timestep(sev))
    assert torch.equal(s.timestep(snapped), s.timestep(sev))
    gaps = (s.severities[1:] - s.severities[:-1]).max()
    assert (snapped - sev).abs().max() <= gaps / 2 + 1e-6


@pytest.mark.parametrize(
    "num_steps, released_severities",
    [(4, [0.0045, 0.051, 0.272, 0.727]), (5, [0.0045, 0.033, 0.15, 0.44, 0.82])],
)
def test_default_inference_severities_are_the_released_set(num_steps, released_severities):
    # released: diffusers "trailing" labels round(arange(T, 0, -T/K)) - 1 index the UNFLIPPED table
    s = DisyreScheduler()
    betas = torch.linspace(1e-3, 0.2, 100, dtype=torch.float64)
    table = torch.cumprod(1 - betas, 0).sqrt()
    labels = np.round(np.arange(100, 0, -100 / num_steps)).astype(int) - 1
    conditioned = table[labels]
    assert torch.allclose(conditioned, torch.tensor(released_severities, dtype=torch.float64), atol=5e-3)
    ours = s.severity(s.inference_timesteps(num_steps)).double()
    assert torch.allclose(ours, conditioned.sort(descending=True).values, atol=1e-3), "strongest first"
    assert s.inference_timesteps(4).tolist() == [75, 50, 25, 0]


@pytest.mark.parametrize(
    "num_steps, start, expected",
    [(4, None, [99, 74, 49, 24]), (5, None, [99, 79, 59, 39, 19]), (1, None, [99]), (2, 49, [49, 24])],
)
def test_trailing_inference_timesteps(num_steps, start, expected):
    assert DisyreScheduler().inference_timesteps(num_steps, start, spacing="trailing").tolist() == expected


def test_step_moves_by_severity_ratio_and_lands_on_estimate():
    s = DisyreScheduler()
    x_t, x0 = torch.full((1, 1, 2, 2), 0.8), torch.full((1, 1, 2, 2), 0.2)
    nxt = s.step(x0, 99, x_t, 49)
    ratio = float(s.severity(49) / s.severity(99))
    assert torch.allclose(nxt - x0, ratio * (x_t - x0))
    assert torch.allclose(s.step(x0, 24, x_t, -1), x0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.severity(100), "timesteps must be in \\[0, 99\\]"),
        (lambda s: s.severity(-1), "timesteps must be in"),
        (lambda s: s.timestep(1.5), "severity must be in \\[0, 1\\]"),
        (lambda s: s.inference_timesteps(0), "num_steps must be"),
        (lambda s: s.inference_timesteps(4, 100, spacing="trailing"), "start_timestep must be"),
        (lambda s: s.inference_timesteps(4, 50), "start_timestep applies to spacing='trailing' only"),
        (lambda s: s.inference_timesteps(4, spacing="leading"), "leading"),
        (lambda s: s.step(torch.zeros(1), 10, torch.zeros(1), 10), "next_timestep must be"),
        (lambda s: DisyreScheduler(num_train_timesteps=1), "num_train_timesteps must be"),
        (lambda s: DisyreScheduler(beta_start=0.5, beta_end=0.1), "beta_end must be"),
    ],
)
def test_bad_arguments_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call(DisyreScheduler())
