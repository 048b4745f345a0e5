"""Shared statistical assertions: tolerances from Monte Carlo standard errors."""

import torch


def assert_moments(samples, mean, cov, n_eff, sigmas=5.0):
    """Sample mean and covariance within ``sigmas`` standard errors of the exact ones.

    Standard errors for ``n_eff`` independent Gaussian samples: ``sd(mean_i) = sqrt(S_ii / n)``,
    ``sd(cov_ij) = sqrt((S_ii S_jj + S_ij^2) / n)``.
    """
    x = samples.reshape(-1, samples.shape[-1]).double()
    mean, cov = mean.double(), cov.double()
    var = cov.diagonal()
    se_mean = (var / n_eff).sqrt()
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n_eff).sqrt()
    assert ((x.mean(0) - mean).abs() <= sigmas * se_mean).all(), (x.mean(0), mean, se_mean)
    err = (torch.cov(x.T) - cov).abs()
    assert (err <= sigmas * se_cov).all(), (torch.cov(x.T), cov, se_cov)


def assert_mala_step_compiles(policy, obs, init, noise, log_u):
    """One MALA step on ``policy.energy(obs)`` (in the sampler's logit space of the box
    [-1, 1]) compiles with ``fullgraph=True`` and equals the eager step."""
    from ebrl.samplers import Box, init_state, mala_step

    with torch.no_grad():
        energy_u = Box("test", (-1.0, 1.0), obs).energy_in_u(policy.energy(obs))
    state = init_state(energy_u, init)
    step = lambda s, n, u: mala_step(s, energy_u, n, u, step_size=0.1)  # noqa: E731
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    (got, _), (want, _) = compiled(state, noise, log_u), step(state, noise, log_u)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
