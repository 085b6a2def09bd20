"""Known-answer experimental-design problems, shared by tests and benchmarks.

* :func:`linear_gaussian_problem` -- ``y = X theta + eps``; the design *is* the rows of ``X``.
  For ``X = [[1,0],[0,1],[1,1]]``, ``sigma = 1`` and a standard-normal prior the EIG is
  ``½ log det(I + X Xᵀ) = ½ log 8 = 1.03972`` nats (:data:`LINEAR_GAUSSIAN_EIG`).
* :func:`quadratic_regression_problem` -- ``y = b0 + b1 x + b2 x² + eps`` on ``x ∈ [-1, 1]``; under a
  vague prior the EIG is the D-criterion, whose optimum puts weight 1/3 on {-1, 0, 1}.
* :func:`location_finding_problem` -- the 2-source, 2-D location-finding problem of Foster et al.
  (Deep Adaptive Design, ICML 2021; also SG-BOED 2020): sources ``theta_k ~ N(0, I_2)``,
  intensity ``mu = b + Σ_k alpha_k / (m + ||theta_k - xi||²)`` with ``alpha_k = 1``, ``b = 0.1``,
  ``m = 1e-4``, and ``log y ~ N(log mu, 0.5²)`` (we observe ``log y``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from ..design.problem import AllParameters, DesignProblem, Target

__all__ = [
    "LINEAR_GAUSSIAN_X",
    "LINEAR_GAUSSIAN_EIG",
    "linear_gaussian_problem",
    "quadratic_regression_problem",
    "location_finding_problem",
    "location_error",
]

LINEAR_GAUSSIAN_X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
LINEAR_GAUSSIAN_EIG = 0.5 * math.log(8.0)  # = 1.0397207708399179


def linear_gaussian_problem(n_params: int = 2, *, sigma: float = 1.0, prior_sd: float = 1.0,
                            bound: float = 2.0, target: Target = AllParameters(),
                            dtype: torch.dtype = torch.float64, device: Any = "cpu") -> DesignProblem:
    """Linear-Gaussian problem ``y_i = x_i · theta + N(0, sigma²)`` with prior ``N(0, prior_sd² I)``.

    A design is a matrix ``(n_obs, n_params)`` whose rows are the regressors ``x_i`` in
    ``[-bound, bound]``.
    """
    dev = torch.device(device)
    prior = Independent(Normal(torch.zeros(n_params, dtype=dtype, device=dev),
                               torch.full((n_params,), float(prior_sd), dtype=dtype, device=dev)), 1)

    def observation(theta: torch.Tensor, design: torch.Tensor) -> Normal:
        mean = (design * theta[..., None, :]).sum(-1)
        return Normal(mean, torch.as_tensor(sigma, dtype=mean.dtype, device=mean.device))

    def linear(design: torch.Tensor) -> tuple[torch.Tensor, float]:
        return design, sigma

    b = np.array([[-bound] * n_params, [bound] * n_params])
    return DesignProblem(prior, observation, b, [f"theta_{i}" for i in range(n_params)], target=target,
                         design_names=[f"x_{i}" for i in range(n_params)], linear_gaussian=linear,
                         factorised_prior=True, dtype=dtype, device=dev, name="linear_gaussian")


def quadratic_regression_problem(*, sigma: float = 1.0, prior_sd: float = 100.0,
                                 dtype: torch.dtype = torch.float64, device: Any = "cpu") -> DesignProblem:
    """Quadratic regression ``y = b0 + b1 x + b2 x² + N(0, sigma²)`` on ``x ∈ [-1, 1]``.

    With a vague prior (``prior_sd`` large) the EIG equals ``½ log det(Fᵀ F) + const``, the
    D-criterion; its optimal approximate design puts weight 1/3 on each of -1, 0, 1.
    """
    dev = torch.device(device)
    prior = Independent(Normal(torch.zeros(3, dtype=dtype, device=dev),
                               torch.full((3,), float(prior_sd), dtype=dtype, device=dev)), 1)

    def feats(design: torch.Tensor) -> torch.Tensor:
        x = design[..., 0]
        return torch.stack([torch.ones_like(x), x, x * x], dim=-1)

    def observation(theta: torch.Tensor, design: torch.Tensor) -> Normal:
        mean = (feats(design) * theta[..., None, :]).sum(-1)
        return Normal(mean, torch.as_tensor(sigma, dtype=mean.dtype, device=mean.device))

    return DesignProblem(prior, observation, np.array([[-1.0], [1.0]]), ["b0", "b1", "b2"],
                         design_names=["x"], linear_gaussian=lambda d: (feats(d), sigma),
                         factorised_prior=True, dtype=dtype, device=dev, name="quadratic_regression")


def location_finding_problem(*, n_sources: int = 2, dim: int = 2, noise_scale: float = 0.5,
                             base_signal: float = 0.1, max_signal: float = 1e-4, alpha: float = 1.0,
                             bound: float = 4.0, target: Target = AllParameters(),
                             dtype: torch.dtype = torch.float64, device: Any = "cpu") -> DesignProblem:
    """Location finding (Foster et al. 2021, DAD): ``n_sources`` sources in ``dim`` dimensions.

    Parameters are ordered ``theta_{k}_{j}`` (source ``k``, coordinate ``j``); a design is
    ``(n_obs, dim)`` measurement locations in ``[-bound, bound]^dim``; the observation is
    ``log y ~ N(log(b + Σ_k alpha / (m + ||theta_k - xi||²)), noise_scale²)``.
    """
    dev = torch.device(device)
    p = n_sources * dim
    prior = MultivariateNormal(torch.zeros(p, dtype=dtype, device=dev),
                               covariance_matrix=torch.eye(p, dtype=dtype, device=dev))

    def observation(theta: torch.Tensor, design: torch.Tensor) -> Normal:
        th = theta.reshape(*theta.shape[:-1], 1, n_sources, dim)
        xi = design[..., :, None, :]
        d2 = ((th - xi) ** 2).sum(-1)
        mu = base_signal + (alpha / (max_signal + d2)).sum(-1)
        return Normal(torch.log(mu), torch.as_tensor(noise_scale, dtype=mu.dtype, device=mu.device))

    names = [f"theta_{k}_{j}" for k in range(n_sources) for j in range(dim)]
    b = np.array([[-bound] * dim, [bound] * dim])
    return DesignProblem(prior, observation, b, names, target=target,
                         design_names=[f"xi_{j}" for j in range(dim)], factorised_prior=True,
                         dtype=dtype, device=dev, name="location_finding")


def location_error(theta: torch.Tensor, truth: torch.Tensor, *, n_sources: int = 2, dim: int = 2) -> torch.Tensor:
    """Label-invariant squared error ``min_perm Σ_k ||theta_perm(k) - truth_k||²`` per row of ``theta``."""
    th = theta.reshape(-1, n_sources, dim)
    tr = truth.reshape(n_sources, dim).to(th)
    errs = [((th[:, list(perm)] - tr) ** 2).sum((-1, -2)) for perm in itertools.permutations(range(n_sources))]
    return torch.stack(errs, -1).amin(-1)
