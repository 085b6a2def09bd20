"""Life of a new Virkler panel and the inspection decision under a chance constraint.

A new panel's life (cycles until the crack half-length reaches ``a_crit``) under the twin is::

    L = N(a_crit; log10_C, m) + 1e5 (delta(a_crit) + sigma_obs eps),
    log10_C ~ N(log10_C_mu, log10_C_sigma),  m ~ N(m_mu, m_sigma),  eps ~ N(0, 1),

with ``N`` the Paris-law quadrature of :mod:`case_studies.airframe.model` and the population
parameters ``theta = (log10_C_mu, m_mu, log10_C_sigma, m_sigma, delta_crit, sigma_obs)`` one
posterior draw. Three estimators of the failure probability ``P(L <= T)`` of an inspection
interval ``T`` are provided here:

- :func:`conditional_failure_probability`: for each posterior draw, ``P(L <= T | theta)`` by
  Gauss-Hermite quadrature over ``m`` and ``eps`` and the exact normal tail in ``log10_C``
  (``N`` is exactly ``10^-log10_C G(m)``, so the event is ``log10_C >= log10(G(m) / R)``). The
  posterior mean over draws is the failure probability of a new panel; its reliability index
  ``beta(theta) = -Phi^-1(P(L <= T | theta))`` is the *decision quantity* of the sensitivity
  analysis and of the goal-oriented design.
- subset simulation on the 9-D standard-normal space of a Gaussian approximation of the
  population posterior (:class:`HierarchicalTransform`, :class:`LifeLimitState`); one run
  started below the 1e-4 quantile gives the whole lower tail of the life distribution through
  its intermediate thresholds (:func:`tail_curve_from_subset`), from which the decision is read.
- importance sampling at the FORM design point (cross-check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pytensor
import pytensor.tensor as pt
from numpy.polynomial.hermite_e import hermegauss
from scipy import special, stats

from .data import VIRKLER_CONDITIONS
from .model import cycles_to_length

__all__ = [
    "DELTA_K_REF",
    "CYCLES_SCALE",
    "POPULATION_NAMES",
    "LifeModel",
    "HierarchicalTransform",
    "LifeLimitState",
    "TailCurve",
    "tail_curve_from_subset",
    "conditional_failure_probability",
    "reliability_index",
    "mixture_quantile",
    "ReliabilityQoI",
    "crack_size_at",
    "linear_gaussian_shapley",
]

#: Reference stress-intensity range (MPa m^0.5): log10_C is the growth rate (m/cycle) there.
DELTA_K_REF = 12.0
#: Cycles are calibrated in units of 1e5.
CYCLES_SCALE = 1.0e5
#: Columns of a population-parameter draw ``theta`` (delta_crit and sigma_obs in 1e5 cycles).
POPULATION_NAMES = ("log10_C_mu", "m_mu", "log10_C_sigma", "m_sigma", "delta_crit", "sigma_obs")

_W = float(VIRKLER_CONDITIONS["width_mm"])
_DS = float(VIRKLER_CONDITIONS["stress_range_mpa"])
_A0 = float(VIRKLER_CONDITIONS["initial_half_length_mm"])


class LifeModel:
    """Compiled ``N(a; log10_C, m, stress_range)`` in cycles for the Virkler panels (vectorised).

    One pytensor function of four vectors, compiled on first use and shared by every limit state
    and quadrature (the twin's own :func:`~case_studies.airframe.model.cycles_to_length`).

    Parameters
    ----------
    n_steps : int
        Simpson panels of the quadrature (as in the twin's simulator).
    """

    def __init__(self, n_steps: int) -> None:
        self.n_steps = int(n_steps)
        self._f: Callable[..., np.ndarray] | None = None

    def _compile(self) -> Callable[..., np.ndarray]:
        a, lc, m, ds = pt.dvector("a"), pt.dvector("lc"), pt.dvector("m"), pt.dvector("ds")
        out = cycles_to_length(a, _A0, lc, m, ds, _W, n_steps=self.n_steps, delta_k_ref=DELTA_K_REF)
        return pytensor.function([a, lc, m, ds], out)

    def __call__(self, a: Any, lc: Any, m: Any, stress_range: Any = _DS) -> np.ndarray:
        """Cycles (not scaled) for broadcast arrays ``a`` (mm), ``lc``, ``m``, ``stress_range``."""
        if self._f is None:
            self._f = self._compile()
        arrs = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, lc, m, stress_range)))
        shape = arrs[0].shape
        return self._f(*(np.ascontiguousarray(v).ravel() for v in arrs)).reshape(shape)

    def __getstate__(self) -> dict[str, Any]:  # the compiled function stays in this process
        return {"n_steps": self.n_steps, "_f": None}


# --------------------------------------------------------------------- rare-event estimators
class HierarchicalTransform:
    """Standard-normal ``u`` (9-D) -> ``theta = (log10_C, m, eps)`` of a new panel.

    The posterior of the population is approximated by a Gaussian in unconstrained coordinates
    ``h = (log10_C_mu, m_mu, log log10_C_sigma, log m_sigma, delta(a_crit), log sigma_obs)``
    (``h = mean + L u[:6]``); the new panel then draws its own effects as in the twin:
    ``log10_C = h0 + e^h2 u6``, ``m = h1 + e^h3 u7`` and the cycle error
    ``eps = h4 + e^h5 u8`` (discrepancy at a_crit plus measurement error, 1e5 cycles).
    """

    dim = 9

    def __init__(self, mean: np.ndarray, chol: np.ndarray) -> None:
        self.mean, self.chol = np.asarray(mean, float), np.asarray(chol, float)

    def batch(self, U: np.ndarray) -> np.ndarray:
        """Rows of ``u`` (n, 9) -> rows of ``(log10_C, m, eps)`` (n, 3)."""
        U = np.atleast_2d(U)
        H = self.mean + U[:, :6] @ self.chol.T
        Z = U[:, 6:]
        return np.column_stack([H[:, 0] + np.exp(H[:, 2]) * Z[:, 0],
                                H[:, 1] + np.exp(H[:, 3]) * Z[:, 1],
                                H[:, 4] + np.exp(H[:, 5]) * Z[:, 2]])

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return self.batch(u)[0]

    @classmethod
    def from_population(cls, theta: np.ndarray) -> "HierarchicalTransform":
        """Fit to population draws ``theta`` (n, 6) in :data:`POPULATION_NAMES` order."""
        h = np.column_stack([theta[:, 0], theta[:, 1], np.log(theta[:, 2]), np.log(theta[:, 3]),
                             theta[:, 4], np.log(theta[:, 5])])
        cov = np.cov(h, rowvar=False) + 1e-12 * np.eye(h.shape[1])
        return cls(h.mean(axis=0), np.linalg.cholesky(cov))


class LifeLimitState:
    """``g(theta) = (L(theta) - offset) / 1e5`` for ``theta = (log10_C, m, eps)``; failure ``g <= 0``.

    Parameters
    ----------
    life : LifeModel
        Shared compiled life function.
    a_crit : float
        Critical crack half-length (mm).
    offset : float
        Interval ``T`` (cycles): ``g <= 0`` is "the crack reaches ``a_crit`` before ``T``".
    """

    def __init__(self, life: LifeModel, a_crit: float, offset: float) -> None:
        self.life, self.a_crit, self.offset = life, float(a_crit), float(offset)

    def __call__(self, theta: np.ndarray) -> float:
        n = float(self.life(self.a_crit, theta[0], theta[1])) + float(theta[2]) * CYCLES_SCALE
        return (n - self.offset) / CYCLES_SCALE


@dataclass(frozen=True)
class TailCurve:
    """Lower tail of a new panel's life from one subset-simulation run.

    ``P(L <= interval[k]) = pf[k]`` with the (conservative, fully correlated levels) coefficient
    of variation ``cov[k]``; sorted by increasing interval.
    """

    interval: np.ndarray
    pf: np.ndarray
    cov: np.ndarray
    offset: float
    n_evaluations: int

    def pf_at(self, t: Any) -> np.ndarray:
        """Interpolated ``P(L <= t)`` (log-linear between the levels)."""
        return np.exp(np.interp(t, self.interval, np.log(self.pf)))

    def pf_upper(self, t: Any, confidence: float = 0.95) -> np.ndarray:
        """Upper one-sided ``confidence`` bound of ``P(L <= t)`` (log-normal approximation)."""
        cov = np.interp(t, self.interval, self.cov)
        z = stats.norm.ppf(confidence)
        return self.pf_at(t) * np.exp(z * np.sqrt(np.log1p(cov**2)))

    def largest_interval(self, target: float, *, step: float = 1000.0, confidence: float = 0.95) -> float | None:
        """Largest multiple of ``step`` whose upper bound of ``P(L <= t)`` is <= ``target``.

        None when even the smallest interval of the curve violates the target.
        """
        grid = np.arange(math.ceil(self.interval[0] / step), math.floor(self.interval[-1] / step) + 1) * step
        if grid.size == 0:
            return None
        ok = self.pf_upper(grid, confidence) <= target
        if not ok[0]:
            return None
        # the curve is increasing in t: the feasible set is an initial segment
        return float(grid[np.flatnonzero(ok)[-1]])


def tail_curve_from_subset(result: Any, offset: float) -> TailCurve:
    """The tail curve of a subset-simulation result on ``g = (L - offset) / 1e5``.

    Intermediate threshold ``b_k`` of level ``k`` has ``P(g <= b_k) = p0^k``; the final level
    gives ``P(L <= offset)``.
    """
    d = result.details
    thr = np.asarray(d["thresholds"], float)
    cp = np.asarray(d["conditional_probabilities"], float)
    dk = np.asarray(d["level_cov"], float)
    pf = np.cumprod(cp)
    cov = np.cumsum(dk)  # Au & Beck's fully correlated upper bound, level by level
    t = offset + thr * CYCLES_SCALE
    order = np.argsort(t)
    return TailCurve(t[order], pf[order], cov[order], float(offset), int(result.n_evaluations))


# --------------------------------------------------------------------- quadrature per draw
@lru_cache(maxsize=16)
def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log-weights of Gauss-Hermite quadrature for the standard normal."""
    x, w = hermegauss(int(n))
    return x, np.log(w / math.sqrt(2.0 * math.pi))


def conditional_failure_probability(
    interval: float,
    theta: np.ndarray,
    life: LifeModel,
    a_crit: float,
    *,
    stress_range: float = _DS,
    n_m: int = 32,
    n_eps: int = 12,
    log: bool = False,
) -> np.ndarray:
    """``P(L <= interval | theta)`` for each population draw ``theta`` (rows, :data:`POPULATION_NAMES`).

    ``N(a; lc, m) = 10^-lc G(m)`` exactly (the rate is proportional to ``10^lc``), so for fixed
    ``m`` and ``eps`` the event ``L <= T`` is ``lc >= log10(G(m) / R)`` with
    ``R = T - 1e5 (delta + sigma eps)``: a normal tail. ``m`` and ``eps`` are integrated by
    Gauss-Hermite quadrature (``n_m`` and ``n_eps`` nodes).

    Returns
    -------
    ndarray, shape (n_draws,)
        Probabilities (their natural log with ``log=True``).
    """
    th = np.atleast_2d(np.asarray(theta, float))
    lc_mu, m_mu, s_lc, s_m, dlt, sig = (th[:, k] for k in range(6))
    xm, lwm = _gauss_hermite(n_m)
    xe, lwe = _gauss_hermite(n_eps)
    m_nodes = m_mu[:, None] + s_m[:, None] * xm[None, :]  # (S, n_m)
    log10_g = np.log10(life(a_crit, 0.0, m_nodes, stress_range))  # N at log10_C = 0
    R = float(interval) - CYCLES_SCALE * (dlt[:, None] + sig[:, None] * xe[None, :])  # (S, n_eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        log10_r = np.where(R > 0, np.log10(np.where(R > 0, R, 1.0)), -np.inf)
    z = (log10_g[:, :, None] - log10_r[:, None, :] - lc_mu[:, None, None]) / s_lc[:, None, None]
    terms = special.log_ndtr(-z) + lwm[None, :, None] + lwe[None, None, :]  # log P(lc >= ...)
    top = terms.max(axis=(1, 2))
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):  # every node has probability 0: log 0 = -inf
        out = safe + np.log(np.exp(terms - safe[:, None, None]).sum(axis=(1, 2)))
    out = np.where(np.isfinite(top), out, -np.inf)
    return out if log else np.exp(out)


def reliability_index(log_pf: np.ndarray) -> np.ndarray:
    """``beta = -Phi^-1(pf)`` from ``log pf`` (accurate far in the tail)."""
    return -special.ndtri_exp(np.minimum(np.asarray(log_pf, float), -1e-300))


def mixture_quantile(
    target: float,
    theta: np.ndarray,
    life: LifeModel,
    a_crit: float,
    *,
    stress_range: float = _DS,
    bracket: tuple[float, float] = (1.0e3, 2.0e6),
    n_m: int = 32,
    n_eps: int = 12,
    rtol: float = 1e-5,
) -> float:
    """Interval ``T`` with ``mean_i P(L <= T | theta_i) = target`` (bisection in ``log T``)."""
    lo, hi = np.log(bracket[0]), np.log(bracket[1])

    def f(logt: float) -> float:
        return float(np.mean(conditional_failure_probability(
            math.exp(logt), theta, life, a_crit, stress_range=stress_range, n_m=n_m, n_eps=n_eps)))

    if f(lo) > target or f(hi) < target:
        raise ValueError(f"The {target:g} quantile of the life lies outside {bracket} cycles.")
    while hi - lo > rtol:
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            hi = mid
        else:
            lo = mid
    return float(math.exp(0.5 * (lo + hi)))


class ReliabilityQoI:
    """``beta(theta)`` at a fixed interval for ONE population row (for Shapley effects).

    Picklable (the compiled function is rebuilt in another process).
    """

    def __init__(self, interval: float, life: LifeModel, a_crit: float, *, n_m: int = 24, n_eps: int = 8) -> None:
        self.interval, self.life, self.a_crit = float(interval), life, float(a_crit)
        self.n_m, self.n_eps = int(n_m), int(n_eps)

    def __call__(self, x: np.ndarray) -> float:
        row = np.asarray(x, float).copy()
        row[[2, 3, 5]] = np.maximum(row[[2, 3, 5]], 1e-12)  # copula draws stay positive; guard
        lp = conditional_failure_probability(self.interval, row[None, :], self.life, self.a_crit,
                                             n_m=self.n_m, n_eps=self.n_eps, log=True)
        return float(reliability_index(lp)[0])


# --------------------------------------------------------------------- crack size, Shapley check
def crack_size_at(lc: np.ndarray, m: np.ndarray, cycles: float, life: LifeModel, a_grid: np.ndarray) -> np.ndarray:
    """Crack half-length after ``cycles`` for each (lc, m): invert ``N(a)`` on a grid (mm).

    Panels whose crack would pass the last grid point get the last grid value (>= critical).
    """
    n = life(a_grid[None, :], lc[:, None], m[:, None])
    out = np.empty(lc.size)
    for i in range(lc.size):
        out[i] = a_grid[-1] if n[i, -1] <= cycles else np.interp(cycles, n[i], a_grid)
    return out


def linear_gaussian_shapley(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Closed-form Shapley effects of the least-squares linear fit of ``y`` on Gaussian ``X``.

    For ``Y = b^T X`` with ``X ~ N(mu, S)``: ``c(J) = E[Var(Y | X_-J)] = b_J^T (S_JJ - S_J,-J
    S_-J,-J^-1 S_-J,J) b_J``, and the Shapley effect of input ``i`` is the average increment
    of ``c`` when ``i`` joins, over all orderings (Owen & Prieur 2017; Iooss & Prieur 2019),
    normalised by ``Var(b^T X)``. An independent check of the Monte Carlo Shapley effects of
    a nearly linear QoI.

    Returns
    -------
    effects : ndarray, shape (d,)
    r2 : float
        Coefficient of determination of the linear fit.
    """
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    d = X.shape[1]
    A = np.column_stack([np.ones(len(y)), X])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    b = coef[1:]
    r2 = 1.0 - np.var(y - A @ coef) / np.var(y)
    S = np.cov(X, rowvar=False)

    def c(J: tuple[int, ...]) -> float:
        if not J:
            return 0.0
        J = list(J)
        K = [k for k in range(d) if k not in J]
        cond = S[np.ix_(J, J)]
        if K:
            cond = cond - S[np.ix_(J, K)] @ np.linalg.solve(S[np.ix_(K, K)], S[np.ix_(K, J)])
        return float(b[J] @ cond @ b[J])

    total = c(tuple(range(d)))
    sh = np.zeros(d)
    from itertools import combinations

    for i in range(d):
        others = [k for k in range(d) if k != i]
        for r in range(d):
            wgt = math.factorial(r) * math.factorial(d - r - 1) / math.factorial(d)
            for J in combinations(others, r):
                sh[i] += wgt * (c(tuple(sorted(J + (i,)))) - c(J))
    return sh / total, float(r2)
