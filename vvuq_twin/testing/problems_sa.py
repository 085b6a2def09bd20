"""Known-answer problems for sensitivity analysis and surrogates.

Each problem comes with its closed-form indices so tests, the validation suite and benchmarks
share one source of truth:

* :func:`ishigami` (Ishigami & Homma 1990) with :func:`ishigami_indices`;
* :func:`sobol_g` (Saltelli & Sobol 1995) with :func:`sobol_g_indices`;
* :func:`linear_model` with :func:`linear_indices` (independent inputs);
* :func:`linear_gaussian_shapley` - Shapley effects of ``Y = beta . X``, ``X ~ N(mu, Sigma)``
  with correlated inputs (Owen & Prieur 2017; Iooss & Prieur 2019), computed exactly from the
  closed-form conditional variances of the Gaussian.

All model functions accept one input row (shape ``(d,)``) or a batch (``(n, d)``) and are
module-level, hence picklable for process and Dask executors.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np

__all__ = [
    "ISHIGAMI_A",
    "ISHIGAMI_B",
    "G_FUNCTION_A",
    "ishigami",
    "ishigami_indices",
    "ishigami_space",
    "sobol_g",
    "sobol_g_indices",
    "sobol_g_space",
    "linear_model",
    "linear_indices",
    "linear_gaussian_shapley",
    "linear_gaussian_space",
    "ishigami_crashing",
    "ishigami_nan",
]

ISHIGAMI_A = 7.0
ISHIGAMI_B = 0.1
G_FUNCTION_A = (0.0, 1.0, 4.5, 9.0, 99.0, 99.0, 99.0, 99.0)


def ishigami(x: np.ndarray, a: float = ISHIGAMI_A, b: float = ISHIGAMI_B) -> np.ndarray:
    """Ishigami function ``sin x1 + a sin^2 x2 + b x3^4 sin x1`` on ``[-pi, pi]^3``."""
    x = np.asarray(x, dtype=float)
    x1, x2, x3 = x[..., 0], x[..., 1], x[..., 2]
    return np.sin(x1) + a * np.sin(x2) ** 2 + b * x3**4 * np.sin(x1)


def ishigami_indices(a: float = ISHIGAMI_A, b: float = ISHIGAMI_B) -> dict[str, np.ndarray]:
    """Closed-form variance, first-order ``S1`` and total ``ST`` Sobol indices of Ishigami."""
    pi4, pi8 = np.pi**4, np.pi**8
    v1 = 0.5 * (1.0 + b * pi4 / 5.0) ** 2
    v2 = a**2 / 8.0
    v13 = 8.0 * b**2 * pi8 / 225.0
    var = v1 + v2 + v13
    return {
        "variance": np.float64(var),
        "S1": np.array([v1, v2, 0.0]) / var,
        "ST": np.array([v1 + v13, v2, v13]) / var,
        "S2": np.array([[0.0, 0.0, v13], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]) / var,
    }


def ishigami_space():
    """:class:`~vvuq_twin.sensitivity.ParameterSpace` of Ishigami: three U(-pi, pi) inputs."""
    from ..spaces import ParameterSpace, UncertainInput

    return ParameterSpace([UncertainInput(f"x{i + 1}", (-np.pi, np.pi)) for i in range(3)])


def sobol_g(x: np.ndarray, a=G_FUNCTION_A) -> np.ndarray:
    """Sobol G-function ``prod_i (|4 x_i - 2| + a_i) / (1 + a_i)`` on ``[0, 1]^d``."""
    x = np.asarray(x, dtype=float)
    a = np.asarray(a, dtype=float)
    return np.prod((np.abs(4.0 * x - 2.0) + a) / (1.0 + a), axis=-1)


def sobol_g_indices(a=G_FUNCTION_A) -> dict[str, np.ndarray]:
    """Closed-form variance, ``S1`` and ``ST`` of the G-function with coefficients ``a``."""
    a = np.asarray(a, dtype=float)
    vi = 1.0 / (3.0 * (1.0 + a) ** 2)
    var = np.prod(1.0 + vi) - 1.0
    st = np.array([vi[i] * np.prod(np.delete(1.0 + vi, i)) for i in range(a.size)]) / var
    return {"variance": np.float64(var), "S1": vi / var, "ST": st}


def sobol_g_space(a=G_FUNCTION_A):
    """:class:`~vvuq_twin.sensitivity.ParameterSpace` of the G-function: U(0, 1) inputs."""
    from ..spaces import ParameterSpace, UncertainInput

    return ParameterSpace([UncertainInput(f"x{i + 1}", (0.0, 1.0)) for i in range(len(a))])


def linear_model(x: np.ndarray, beta=(1.0, 2.0, 3.0)) -> np.ndarray:
    """Linear model ``beta . x``."""
    return np.asarray(x, dtype=float) @ np.asarray(beta, dtype=float)


def linear_indices(beta, variances) -> dict[str, np.ndarray]:
    """Analytic ``S1 == ST`` of ``beta . X`` with independent inputs of the given variances."""
    contrib = np.asarray(beta, float) ** 2 * np.asarray(variances, float)
    return {"variance": contrib.sum(), "S1": contrib / contrib.sum(), "ST": contrib / contrib.sum()}


def _cond_var(beta: np.ndarray, cov: np.ndarray, J: tuple[int, ...]) -> float:
    """``E[Var(beta.X | X_{-J})]`` for Gaussian X (closed form, no expectation needed)."""
    d = beta.size
    J = list(J)
    if not J:
        return 0.0
    K = [k for k in range(d) if k not in J]
    sjj = cov[np.ix_(J, J)]
    if K:
        sjk = cov[np.ix_(J, K)]
        sjj = sjj - sjk @ np.linalg.solve(cov[np.ix_(K, K)], sjk.T)
    bj = beta[J]
    return float(bj @ sjj @ bj)


def linear_gaussian_shapley(beta, cov) -> dict[str, np.ndarray]:
    """Exact Shapley effects of ``Y = beta . X`` with ``X ~ N(mu, cov)`` (correlated inputs).

    Uses the Shapley value over all subsets with the cost ``c(J) = E[Var(Y | X_{-J})]``, whose
    Gaussian conditional variance is closed form (Song, Nelson & Staum 2016; Owen & Prieur
    2017). Returns the variance and the normalised Shapley effects ``Sh`` (summing to one).
    """
    beta = np.asarray(beta, float)
    cov = np.asarray(cov, float)
    d = beta.size
    var = float(beta @ cov @ beta)
    sh = np.zeros(d)
    for i in range(d):
        others = [k for k in range(d) if k != i]
        for r in range(d):
            w = factorial(r) * factorial(d - r - 1) / factorial(d)
            for J in combinations(others, r):
                sh[i] += w * (_cond_var(beta, cov, tuple(J) + (i,)) - _cond_var(beta, cov, J))
    return {"variance": np.float64(var), "Sh": sh / var}


def linear_gaussian_space(mu, cov, names=None):
    """:class:`~vvuq_twin.sensitivity.ParameterSpace` of correlated Gaussian inputs."""
    from ..spaces import ParameterSpace, UncertainInput
    from ..twin.priors import Normal

    mu = np.asarray(mu, float)
    cov = np.asarray(cov, float)
    sd = np.sqrt(np.diag(cov))
    names = names or [f"x{i + 1}" for i in range(mu.size)]
    corr = cov / np.outer(sd, sd)
    return ParameterSpace(
        [UncertainInput(n, Normal(float(m), float(s))) for n, m, s in zip(names, mu, sd)],
        correlation=corr,
    )


def ishigami_crashing(x: np.ndarray) -> np.ndarray:
    """Ishigami that raises (a crashing simulator) when ``x1 > 2.5`` (failure-injection tests)."""
    x = np.asarray(x, dtype=float)
    if np.any(x[..., 0] > 2.5):
        raise RuntimeError(f"solver diverged at x1={float(np.max(x[..., 0])):.3f}")
    return ishigami(x)


def ishigami_nan(x: np.ndarray) -> np.ndarray:
    """Ishigami that returns NaN when ``x3 > 2.5`` (a QoI undefined on part of the space)."""
    x = np.asarray(x, dtype=float)
    return np.where(x[..., 2] > 2.5, np.nan, ishigami(x))
