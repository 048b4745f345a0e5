"""The agents' replay buffer: dtypes per action space, ring wrap-around, uniform sampling, the
filled part in its state dict, and lazily committed storage."""

import numpy as np
import pytest
import torch

from ebrl.agents import ReplayBuffer


def fill(buffer, start, n, obs_dim=3):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(obs_dim, 1)
    actions = torch.arange(start, start + n) % 4
    buffer.add(obs, actions, np.full(n, start, np.float32), obs + 1, np.zeros(n, np.float32))


def test_discrete_actions_are_int64_and_the_ring_wraps():
    buffer = ReplayBuffer(5, 3, (), torch.int64)
    for start in range(0, 8, 2):  # 4 adds of 2 transitions into 5 slots
        fill(buffer, start, 2)
    assert len(buffer) == 5 and buffer.position == 3
    assert buffer.actions.dtype == torch.int64 and buffer.actions.shape == (5,)
    # slots hold transitions 5, 6, 7 (newest, wrapped) then 3, 4
    assert buffer.obs[:, 0].tolist() == [5.0, 6.0, 7.0, 3.0, 4.0]
    assert buffer.actions.tolist() == [1, 2, 3, 3, 0]
    torch.testing.assert_close(buffer.next_obs, buffer.obs + 1)
    state = buffer.state_dict()
    assert state["obs"].shape == (5, 3) and state["position"] == 3


def test_continuous_actions_and_uniform_sampling():
    buffer = ReplayBuffer(100, 2, (3,), torch.float32)
    buffer.add(
        np.zeros((10, 2)), torch.ones(10, 3), np.arange(10.0), np.zeros((10, 2)), np.ones(10)
    )
    assert buffer.state_dict()["obs"].shape == (10, 2)  # only the filled part
    batch = buffer.sample(20_000, torch.Generator().manual_seed(0))
    assert batch.actions.shape == (20_000, 3) and batch.actions.dtype == torch.float32
    counts = torch.bincount(batch.rewards.long(), minlength=10).float()
    # uniform over the 10 filled slots: each count ~ Binomial(20000, 0.1), sd ~42
    assert (counts - 2000).abs().max() < 5 * 42.5


@pytest.mark.parametrize(
    ("obs_dim", "n_batches", "batch_size"),
    [(3, 1, 7), (3, 130, 64), (1000, 5, 200), (1000, 3, 300)],
)
def test_sample_batches_draws_what_sample_would(obs_dim, n_batches, batch_size):
    """``sample_batches(n, b)`` gives the transitions of ``n`` calls of ``sample(b)`` from the
    same generator, also across its gathers of at most 4 MB (1000-dim observations, 8 kB a
    row: 2 batches of 200 per gather, then 1 batch of 300 per gather)."""
    buffer = ReplayBuffer(1000, obs_dim, (), torch.int64)
    fill(buffer, 0, 1000, obs_dim)
    gen = torch.Generator().manual_seed(0)
    expected = [buffer.sample(batch_size, gen) for _ in range(n_batches)]
    gen.manual_seed(0)
    got = list(buffer.sample_batches(n_batches, batch_size, gen))
    assert len(got) == n_batches
    for a, b in zip(got, expected, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match="empty buffer"):  # raised by the call itself
        ReplayBuffer(2, 1).sample_batches(1, 4)
    with pytest.raises(ValueError, match="n_batches must be an int >= 1"):
        buffer.sample_batches(0, 4)
    with pytest.raises(TypeError, match="batch_size must be an int >= 1"):
        buffer.sample_batches(2, 4.0)


def test_bad_input():
    with pytest.raises(ValueError, match="capacity must be an int >= 1"):
        ReplayBuffer(0, 3)
    with pytest.raises(ValueError, match="action_dtype"):
        ReplayBuffer(10, 3, (), torch.int32)
    buffer = ReplayBuffer(2, 1)
    with pytest.raises(ValueError, match="cannot add 3 transitions to capacity 2"):
        buffer.add(np.zeros((3, 1)), np.zeros(3), np.zeros(3), np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="empty buffer"):
        buffer.sample(4)
