"""Contrastive divergence: the loss, the PCD sample buffer, negatives from the shared samplers,
bad input, and learning a 2-D mixture."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal, Uniform

from ebrl.energy import GaussianEnergy, MLPEnergy
from ebrl.samplers import MALA, Langevin
from ebrl.trainers import ContrastiveDivergence, SampleBuffer, contrastive_divergence_loss, fit
from tests.helpers import assert_moments
from tests.trainer_helpers import assert_learns_mixture, random_energy


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def uniform_box(d=2, half=3.0, dtype=torch.float32):
    return Independent(
        Uniform(-half * torch.ones(d, dtype=dtype), half * torch.ones(d, dtype=dtype)), 1
    )


# ---------------------------------------------------------------- the loss


def test_loss_value_terms_and_gradients():
    energy = random_energy(2)
    pos = torch.randn(5, 2, generator=gen(1), dtype=torch.float64)
    neg = torch.randn(7, 2, generator=gen(2), dtype=torch.float64).requires_grad_(True)
    loss, terms = contrastive_divergence_loss(energy, pos, neg, energy_reg=0.1)
    e_pos, e_neg = energy(pos), energy(neg.detach())
    want = e_pos.mean() - e_neg.mean() + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(terms["energy_gap"], (e_neg.mean() - e_pos.mean()).detach())
    # the gradient reaches the parameters, never the negatives (no backprop through a sampler)
    loss.backward()
    assert neg.grad is None
    assert all(p.grad is not None for p in energy.parameters())


# ---------------------------------------------------------------- the sample buffer


def test_buffer_fills_from_noise_and_keeps_chains():
    buffer = SampleBuffer(50, reinit_prob=0.0)
    proposal = uniform_box()
    index, init, reinit = buffer.draw(20, proposal, gen())
    assert buffer.chains.shape == (50, 2) and (buffer.chains.abs() <= 3).all()
    assert len(set(index.tolist())) == 20  # distinct chains
    assert not reinit.any()
    torch.testing.assert_close(init, buffer.chains[index])  # continue where they were
    before = buffer.chains.clone()
    buffer.update(index, init + 100.0)
    moved = (buffer.chains != before).any(-1)
    assert moved.sum() == 20 and moved[index].all()  # written back in place, others untouched
    torch.testing.assert_close(buffer.chains[index], init + 100.0)
    # the next draw continues the updated chains
    index2, init2, _ = buffer.draw(50, proposal, gen(1))
    torch.testing.assert_close(init2, buffer.chains[index2])


def test_buffer_reinitialises_with_the_given_probability():
    proposal = uniform_box()
    buffer = SampleBuffer(400, reinit_prob=1.0)
    buffer.draw(1, proposal, gen())
    buffer.chains.fill_(100.0)  # every chain far from the proposal's support
    _, init, reinit = buffer.draw(400, proposal, gen(1))
    assert reinit.all() and (init.abs() <= 3).all()

    p, batch, rounds = 0.3, 400, 50
    buffer = SampleBuffer(batch, reinit_prob=p)
    buffer.draw(1, proposal, gen())
    count = 0
    for r in range(rounds):
        buffer.chains.fill_(100.0)
        _, init, reinit = buffer.draw(batch, proposal, gen(10 + r))
        restarted = (init.abs() <= 3).all(-1)
        assert torch.equal(restarted, reinit)  # exactly the flagged chains restarted
        count += int(reinit.sum())
    n = batch * rounds
    assert abs(count / n - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_pcd_writes_negatives_back_into_the_buffer():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    cd = ContrastiveDivergence(
        Langevin(0.01, 3), buffer_size=64, reinit_prob=0.0, proposal=uniform_box()
    )
    x = torch.randn(16, 2, generator=gen())
    cd.negatives(energy, x, generator=gen(1))
    before = cd.buffer.chains.clone()
    result = cd.negatives(energy, x, generator=gen(2))
    moved = (cd.buffer.chains != before).any(-1)
    assert int(moved.sum()) == 16
    got = {tuple(r) for r in cd.buffer.chains[moved].tolist()}
    assert got == {tuple(r) for r in result.samples.tolist()}
    assert float(result.stats["reinit_fraction"]) == 0.0


def test_cd_k_starts_from_the_data():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    cd = ContrastiveDivergence(Langevin(1e-8, 1), persistent=False)
    x = torch.randn(32, 2, generator=gen()) + 10.0
    negatives = cd.negatives(energy, x, generator=gen(1)).samples
    torch.testing.assert_close(negatives, x, atol=1e-3, rtol=0)
    assert cd.buffer is None


def test_temperature_targets_the_tempered_density():
    """With temperature T the negatives follow exp(-E / T): N(0, T I) for E = |x|^2 / 2."""
    energy = GaussianEnergy(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    t = 0.25
    cd = ContrastiveDivergence(MALA(0.05, 150, warmup_steps=50), persistent=False, temperature=t)
    x = torch.randn(3000, 2, generator=gen(), dtype=torch.float64)
    negatives = cd.negatives(energy, x, generator=gen(1)).samples
    assert_moments(negatives, torch.zeros(2), t * torch.eye(2), n_eff=3000)


def test_loss_reports_sampler_stats_and_is_deterministic():
    def run(seed):
        torch.manual_seed(0)
        energy = MLPEnergy(2, (16,))
        cd = ContrastiveDivergence(MALA(0.05, 5), buffer_size=256)
        x = torch.randn(64, 2, generator=gen())
        return cd.loss(energy, x, generator=gen(seed))

    (a, terms), (b, _), (c, _) = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for key in ("energy_pos", "energy_neg", "energy_gap", "acceptance_rate", "reinit_fraction"):
        assert terms[key].shape == () and torch.isfinite(terms[key])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sampler": object()}, TypeError, "sampler"),
        ({"buffer_size": 0}, ValueError, "size"),
        ({"reinit_prob": 1.5}, ValueError, "reinit_prob"),
        ({"energy_reg": -1.0}, ValueError, "energy_reg"),
        ({"energy_reg": float("nan")}, ValueError, "energy_reg"),
        ({"energy_reg": "0.1"}, TypeError, "energy_reg"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"proposal": Normal(0.0, 1.0)}, TypeError, "proposal"),
        ({"num_negatives": 0}, ValueError, "num_negatives"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"sampler": Langevin(0.01, 1), **kwargs}
    with pytest.raises(error, match=match):
        ContrastiveDivergence(**args)


def test_bad_batches_and_buffer_too_small():
    energy = MLPEnergy(2, (8,))
    cd = ContrastiveDivergence(Langevin(0.01, 1), buffer_size=8)
    with pytest.raises(ValueError, match=r"shape \[n, d\]"):
        cd.loss(energy, torch.zeros(5))
    with pytest.raises(TypeError, match="floating point"):
        cd.loss(energy, torch.zeros(5, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="exceeds the buffer size"):
        cd.loss(energy, torch.zeros(16, 2))
    with pytest.raises(ValueError, match="data dimension"):
        ContrastiveDivergence(Langevin(0.01, 1), proposal=uniform_box(3)).loss(
            energy, torch.zeros(4, 2)
        )


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize(
    ("persistent", "step_size"), [(False, 0.01), (True, 0.1)], ids=["cd", "pcd"]
)
def test_learns_a_two_component_mixture(persistent, step_size):
    """CD-k from the data takes short moves; persistent chains need larger ones to follow the
    changing model."""
    box = Independent(Uniform(torch.tensor([-5.0, -5.0]), torch.tensor([5.0, 5.5])), 1)
    objective = ContrastiveDivergence(
        MALA(step_size, 10),
        persistent=persistent,
        buffer_size=256,
        reinit_prob=0.05,
        energy_reg=0.001,
        proposal=box,
    )
    assert_learns_mixture(
        lambda energy, data: fit(
            energy, data, objective, 1500, batch_size=256, lr=3e-3, seed=0, progress_bar=False
        )
    )


@pytest.mark.parametrize("persistent", [False, True], ids=["cd", "pcd"])
@pytest.mark.parametrize("value", [0.0, 5e3, -1e6])
def test_constant_data_gets_a_proposal_of_nonzero_width(persistent, value):
    """The default proposal pads a zero-width data box relative to the data's magnitude (before:
    an absolute 1e-4, which vanishes in float32 beyond |x| = 4096: torch's raw 'Expected
    parameter low' error)."""
    cd = ContrastiveDivergence(MALA(1e-3, 2), persistent=persistent, buffer_size=8)
    x = torch.full((4, 1), value)
    loss, _ = cd.loss(MLPEnergy(1, (4,)), x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    low, high = cd.proposal.base_dist.low, cd.proposal.base_dist.high
    assert (low < x[0]).all() and (x[0] < high).all()
