"""Anchors: shapes, bounds and sampling of the Gaussian anchors, the mixture anchor's log-density,
the uniform anchor, the truncated Gaussian anchor, and bad constructor arguments and inputs."""

import math

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ebrl.policies import (
    CategoricalAnchor,
    GaussianAnchor,
    GaussianMixtureAnchor,
    SquashedDistribution,
    TruncatedGaussianAnchor,
    TruncatedNormal,
    UniformAnchor,
)
from ebrl.samplers import draw
from tests.helpers import assert_moments

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gaussian_anchor_shapes_bounds_and_draw():
    torch.manual_seed(0)
    anchor = GaussianAnchor(5, Box(-2.0, 1.0, (3,)), hidden_sizes=(16,))
    obs = torch.randn(7, 5)
    dist = anchor(obs)
    assert isinstance(dist, SquashedDistribution)
    assert dist.batch_shape == (7,) and dist.event_shape == (3,)
    a = dist.rsample()
    assert a.requires_grad and a.shape == (7, 3)
    assert dist.log_prob(a).shape == (7,)
    x = draw(dist, (50000,), gen(1))
    assert torch.equal(x, draw(dist, (50000,), gen(1)))
    ref = dist.sample((50000,))
    assert ((x.mean(0) - ref.mean(0)).abs() < 5 * ref.std(0) * math.sqrt(2 / 50000)).all()
    # log-std is held in its range whatever the network outputs
    with torch.no_grad():
        anchor.net[-1].bias.fill_(1e4)
    std = anchor(obs).base_dist.base_dist.scale
    assert (std <= math.exp(2.0) + 1e-5).all()
    unbounded = GaussianAnchor(5, Box(-np.inf, np.inf, (3,)), hidden_sizes=())
    assert isinstance(unbounded(obs), Independent)


def test_mixture_anchor_log_prob_is_the_squashed_mixture():
    torch.manual_seed(1)
    anchor = GaussianMixtureAnchor(4, Box(-1.0, 1.0, (2,)), n_components=3, hidden_sizes=(16,))
    obs = torch.randn(6, 4)
    dist = anchor(obs)
    base = dist.base_dist
    assert isinstance(base, MixtureSameFamily) and dist.batch_shape == (6,)
    a = draw(dist, (20,), gen(2))
    assert a.shape == (20, 6, 2) and (a.abs() <= 1).all()
    # reference: log sum_k w_k p_k(a) with each p_k the squashed k-th component
    comps = base.component_distribution.base_dist
    log_w = base.mixture_distribution.logits
    lp_k = torch.stack(
        [
            SquashedDistribution(
                Independent(Normal(comps.loc[:, k], comps.scale[:, k]), 1), -1.0, 1.0
            ).log_prob(a)
            for k in range(3)
        ],
        -1,
    )
    torch.testing.assert_close(
        dist.log_prob(a), torch.logsumexp(lp_k + log_w, -1), rtol=1e-5, atol=1e-5
    )


def test_uniform_anchor_box_and_discrete():
    box = UniformAnchor(Box(np.array([-1.0, 0.0]), np.array([1.0, 4.0]), dtype=np.float64))
    obs = torch.zeros(5, 3, dtype=F64)
    dist = box(obs)
    assert dist.batch_shape == (5,) and dist.event_shape == (2,)
    inside = torch.tensor([[0.0, 2.0], [1.0, 4.0], [-1.0, 0.0], [0.5, 0.5], [0.9, 3.9]], dtype=F64)
    torch.testing.assert_close(dist.log_prob(inside), torch.full((5,), -math.log(8.0), dtype=F64))
    assert dist.log_prob(inside + torch.tensor([0.0, 4.5], dtype=F64)).eq(-math.inf).all()
    x = draw(dist, (4000,), gen(3))
    assert x.dtype == F64
    assert_moments(
        x,
        torch.tensor([0.0, 2.0], dtype=F64),
        torch.diag(torch.tensor([1 / 3, 16 / 12], dtype=F64)),
        4000 * 5,
    )
    cat = UniformAnchor(Discrete(4))(torch.zeros(3, 2))
    assert isinstance(cat, Categorical) and cat.batch_shape == (3,)
    torch.testing.assert_close(cat.probs, torch.full((3, 4), 0.25))


def test_uniform_anchor_bad_spaces():
    with pytest.raises(ValueError, match="UniformAnchor: the Box must be bounded"):
        UniformAnchor(Box(-np.inf, np.inf, (2,)))
    with pytest.raises(ValueError, match="UniformAnchor: the Box must be bounded"):
        UniformAnchor(Box(np.array([0.0, -np.inf], np.float32), np.array([1.0, 1.0], np.float32)))
    with pytest.raises(ValueError, match="start at 0"):
        UniformAnchor(Discrete(3, start=1))
    with pytest.raises(ValueError, match="Discrete or Box"):
        UniformAnchor("box")
    with pytest.raises(TypeError, match="leading batch dim"):
        UniformAnchor(Discrete(3))(torch.tensor(1.0))


def test_anchor_constructor_and_input_errors():
    with pytest.raises(ValueError, match="GaussianAnchor: the Box must be bounded on every side"):
        GaussianAnchor(
            3, Box(np.array([0.0, -np.inf], np.float32), np.array([1.0, 1.0], np.float32))
        )
    with pytest.raises(ValueError, match=r"1-D gymnasium\.spaces\.Box"):
        GaussianAnchor(3, Discrete(2))
    with pytest.raises(ValueError, match="obs_dim"):
        CategoricalAnchor(0, 3)
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixtureAnchor(3, Box(-1.0, 1.0, (2,)), n_components=0)
    with pytest.raises(ValueError, match="log_std_bounds"):
        GaussianAnchor(3, Box(-1.0, 1.0, (2,)), log_std_bounds=(2.0, -5.0))
    anchor = GaussianAnchor(3, Box(-1.0, 1.0, (2,)), hidden_sizes=(8,))
    with pytest.raises(ValueError, match=r"obs must have shape \[B, 3\]"):
        anchor(torch.zeros(4, 5))
    with pytest.raises(TypeError, match="dtype"):
        anchor(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        anchor(np.zeros((4, 3)))


def test_gaussian_anchor_gaussian_is_the_pre_squash_base_and_checks_obs():
    anchor = GaussianAnchor(5, Box(-2.0, 1.0, (3,)), hidden_sizes=(16,))
    obs = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    mean, std = anchor.gaussian(obs)
    base = anchor(obs).base_dist.base_dist  # Independent(Normal) under the squash
    torch.testing.assert_close(mean, base.loc)
    torch.testing.assert_close(std, base.scale)
    with pytest.raises(ValueError, match=r"obs must have shape \[B, 5\]"):
        anchor.gaussian(torch.zeros(4, 3))
    with pytest.raises(TypeError, match=r"obs has dtype torch\.float64"):
        anchor.gaussian(torch.zeros(4, 5, dtype=torch.float64))
    # observations on another device than the parameters (a GPU agent given CPU tensors): one
    # clear error, not torch's from deep inside the first matmul ("meta" stands for the other
    # device on a machine without a GPU)
    with pytest.raises(ValueError, match=r"obs is on meta but the parameters are on cpu"):
        anchor.gaussian(torch.zeros(4, 5, device="meta"))


def test_truncated_anchor_is_a_normal_in_action_space_on_the_box():
    torch.manual_seed(0)
    space = Box(np.array([-2.0, 0.0], np.float32), np.array([1.0, 4.0], np.float32))
    anchor = TruncatedGaussianAnchor(5, space, hidden_sizes=(16,))
    obs = torch.randn(7, 5)
    dist = anchor(obs)
    assert dist.batch_shape == (7,) and dist.event_shape == (2,)
    base = dist.base_dist
    assert isinstance(base, TruncatedNormal)
    # the mean is kept within one half-width of the box whatever the network outputs
    with torch.no_grad():
        anchor.net[-1].bias[:2].fill_(1e4)
    far = anchor(obs).base_dist
    torch.testing.assert_close(far.loc, torch.tensor([1.0 + 1.5, 4.0 + 2.0]).expand(7, 2))
    # log_prob is the sum over coordinates of the truncated normal's
    a = draw(dist, (30,), gen(4))
    assert a.shape == (30, 7, 2)
    assert ((a >= torch.as_tensor(space.low)) & (a <= torch.as_tensor(space.high))).all()
    torch.testing.assert_close(dist.log_prob(a), base.log_prob(a).sum(-1))
    ar = dist.rsample()
    assert ar.requires_grad and ar.shape == (7, 2)
    assert dist.median.shape == (7, 2)
    # rebuilt from its spec: same architecture, so the weights load and give the same density
    twin = TruncatedGaussianAnchor.from_spec(anchor.spec)
    twin.load_state_dict(anchor.state_dict())
    torch.testing.assert_close(twin(obs).log_prob(a), anchor(obs).log_prob(a))
    with pytest.raises(ValueError, match="TruncatedGaussianAnchor: the Box must be bounded"):
        TruncatedGaussianAnchor(3, Box(-np.inf, np.inf, (2,)))
    with pytest.raises(ValueError, match=r"obs must have shape \[B, 5\]"):
        anchor(torch.zeros(4, 3))
