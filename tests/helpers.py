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
