"""The training loop: determinism, logging (history, TensorBoard), divergence, bad input."""

import math

import pytest
import torch

from ebrl.energy import MLPEnergy
from ebrl.samplers import MALA
from ebrl.trainers import ContrastiveDivergence, DenoisingScoreMatching, fit


def energy_and_data(seed=0):
    torch.manual_seed(seed)  # the MLP's initialisation only
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    return MLPEnergy(2, (16, 16)), data


def flat(energy):
    return torch.cat([p.detach().flatten() for p in energy.parameters()])


@pytest.mark.parametrize(
    "objective",
    [
        lambda: DenoisingScoreMatching((0.1, 0.3)),
        lambda: ContrastiveDivergence(MALA(0.05, 3), buffer_size=128),
    ],
    ids=["dsm", "pcd"],
)
def test_same_seed_same_run(objective):
    runs = []
    for seed in (3, 3, 4):
        energy, data = energy_and_data()
        fit(energy, data, objective(), 30, batch_size=64, seed=seed, progress_bar=False)
        runs.append(flat(energy))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_history_and_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    energy, data = energy_and_data()
    objective = ContrastiveDivergence(MALA(0.05, 3), buffer_size=128)
    result = fit(
        energy,
        data,
        objective,
        25,
        batch_size=64,
        logdir=str(tmp_path),
        log_every=10,
        progress_bar=False,
    )
    assert result.steps == 25 and result.wall_s > 0
    assert result.history_steps == [0, 10, 20, 24]
    for key in ("loss", "grad_norm", "lr", "energy_gap", "acceptance_rate", "reinit_fraction"):
        assert len(result.history[key]) == 4 and all(map(math.isfinite, result.history[key]))
    assert result.history["lr"][0] == 1e-3  # the rate step 0 used (fit's default lr)
    assert result.history["lr"][0] > result.history["lr"][-1]  # cosine decay
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "loss",
        "grad_norm",
        "energy_pos",
        "energy_neg",
        "energy_gap",
        "acceptance_rate",
    } <= tags


class DivergesAt:
    """Wraps an objective; its loss becomes NaN from step ``at`` on (a controlled divergence)."""

    def __init__(self, objective, at):
        self.objective, self.at, self.calls = objective, at, 0

    def loss(self, energy, x, *, generator=None):
        loss, terms = self.objective.loss(energy, x, generator=generator)
        self.calls += 1
        return (loss * math.nan if self.calls > self.at else loss), terms


def test_non_finite_loss_raises_with_step_and_last_finite_values():
    energy, data = energy_and_data()
    objective = DivergesAt(DenoisingScoreMatching(0.1), at=7)
    with pytest.raises(ValueError) as info:  # a ValueError: the CLI prints it as one line
        fit(energy, data, objective, 20, batch_size=32, progress_bar=False)
    message = str(info.value)
    assert "non-finite loss at step 7" in message
    assert "last finite values: step=6, loss=" in message and "score_norm=" in message
    assert torch.isfinite(flat(energy)).all()  # the failing step never updated the parameters


def test_a_really_diverging_run_raises():
    """DSM at an absurd learning rate: the weights explode and the loss overflows."""
    energy, data = energy_and_data()
    with pytest.raises(ValueError, match=r"non-finite loss at step \d+ \(loss=inf.*Lower lr"):
        fit(
            energy,
            data,
            DenoisingScoreMatching(0.1),
            50,
            batch_size=32,
            lr=1e8,
            lr_schedule="constant",
            progress_bar=False,
        )


class InfiniteGradient:
    """A loss that is finite (zero) but whose gradient is not: sqrt(|z|) at z = 0."""

    def loss(self, energy, x, *, generator=None):
        e = energy(x).mean()
        return (e - e.detach()).abs().sqrt(), {}


def test_a_non_finite_gradient_is_named():
    energy, data = energy_and_data()
    with pytest.raises(ValueError, match=r"non-finite grad_norm at step 0 \(loss=0.0, grad_norm"):
        fit(energy, data, InfiniteGradient(), 5, progress_bar=False)


def test_float64_data_trains_a_float32_energy():
    """Data from numpy is float64: cast to the energy's dtype (before: a matmul dtype error)."""
    energy, data = energy_and_data()
    result = fit(energy, data.double(), DenoisingScoreMatching(0.1), 5, progress_bar=False)
    assert all(map(math.isfinite, result.history["loss"]))
    assert all(p.dtype == torch.float32 for p in energy.parameters())
    # and the other way round: float32 data for a float64 energy
    energy = energy.double()
    fit(energy, data, ContrastiveDivergence(MALA(0.05, 2)), 3, batch_size=32, progress_bar=False)
    assert all(p.dtype == torch.float64 for p in energy.parameters())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": -1e-3}, ValueError, "lr"),
        ({"seed": -1}, ValueError, "seed"),
        ({"lr_schedule": "linear"}, ValueError, "valid names: constant, cosine"),
        ({"grad_clip": 0.0}, ValueError, "grad_clip"),
        ({"data": torch.zeros(10)}, ValueError, r"data must have shape \[n, d\]"),
        ({"data": torch.zeros(10, 2, dtype=torch.long)}, TypeError, "floating point"),
        ({"data": torch.full((10, 2), math.nan)}, ValueError, "NaN"),
        ({"data": torch.full((10, 2), 1e300, dtype=torch.float64)}, ValueError, "infinite"),
        ({"objective": object()}, TypeError, "objective"),
        ({"energy": lambda x: x.sum(-1)}, TypeError, "nn.Module"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    energy, data = energy_and_data()
    args = {
        "energy": energy,
        "data": data,
        "objective": DenoisingScoreMatching(0.1),
        "steps": 5,
        "progress_bar": False,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        fit(**args)


def test_non_finite_parameters_are_named_before_training():
    energy, data = energy_and_data()
    with torch.no_grad():
        next(energy.parameters())[0, 0] = math.nan
    with pytest.raises(ValueError, match="fit: the energy's parameters contain NaN or inf"):
        fit(energy, data, DenoisingScoreMatching(0.1), 5, progress_bar=False)
