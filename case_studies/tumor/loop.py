"""Building blocks of the tumor twin's decision loop (NumPy/SciPy; the twin enters through draws).

The tumor case decides *when to image a mouse next*: the latest day ``d`` such that the chance
that the true tumor volume has passed a burden threshold before ``d`` stays below a stated level
(a chance constraint), with the superquantile of the volume at ``d`` as the tail-risk figure.
Its quantity of interest is the time-to-threshold ``T`` of a mouse, the first time at which the
true process (simulator + discrepancy, log volume) reaches ``log(threshold)``.

Functions here take posterior (predictive) draws as arrays, so that they can be tested against
closed forms without a calibration:

- :func:`crossing_times` - ``T`` per draw from the true process on a time grid;
- :func:`gompertz_crossing_time` - ``T`` in closed form for the reduced Gompertz model with a
  locally constant discrepancy;
- :func:`power_law_crossing_time` - ``T`` in closed form for the power law ``dV/dt = a V^gamma``
  (always finite: the law has no carrying capacity);
- :func:`imaging_day` - the chance-constrained imaging day by sample average approximation
  (:func:`vvuq_twin.decisions.solve`) with its closed-form cross-check (an order statistic);
- :func:`linear_gaussian_shapley` - exact Shapley effects of a linear function of Gaussian
  inputs (Owen & Prieur 2017), the independent check of the Monte Carlo Shapley effects;
- :func:`gompertz_individual_fits` - per-mouse least-squares Gompertz fits (alpha_i, beta_i),
  the independent check of the structural correlation reported by Vaghi et al. (2020);
- :func:`importance_mean` - the posterior mean of a quantity after one more measurement by
  Bayes' rule on the calibration draws (self-normalised importance weights) with its Monte Carlo
  standard error: the independent check of :func:`vvuq_twin.assimilation.assimilate`.
"""

from __future__ import annotations

import dataclasses
from itertools import permutations
from math import factorial
from typing import Any, Sequence

import numpy as np
import xarray as xr
from scipy import stats
from scipy.optimize import least_squares

__all__ = [
    "crossing_times",
    "gompertz_crossing_time",
    "power_law_crossing_time",
    "imaging_day",
    "ImagingDecision",
    "linear_gaussian_shapley",
    "gompertz_individual_fits",
    "importance_mean",
    "interval_width",
    "stack_draws",
    "logpdf_normal",
    "unit_labels",
]


def crossing_times(log_v: np.ndarray, grid: np.ndarray, log_threshold: float, horizon: float) -> np.ndarray:
    """First time at which a log-volume path reaches ``log_threshold`` (linear interpolation).

    Parameters
    ----------
    log_v : ndarray, shape (..., n_grid)
        Log-volume paths on ``grid`` (one per draw and unit).
    grid : ndarray, shape (n_grid,)
        Increasing times (days).
    log_threshold : float
        Log of the burden threshold.
    horizon : float
        Paths that do not reach the threshold on the grid get ``horizon`` (right-censored);
        ``horizon`` must be >= ``grid[-1]``.

    Returns
    -------
    ndarray, shape (...)
        Crossing times; ``grid[0]`` for paths already above the threshold at the first point.
    """
    g = np.asarray(grid, float)
    z = np.asarray(log_v, float)
    if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("`grid` must be an increasing 1-D array of at least two times.")
    if z.shape[-1] != g.size:
        raise ValueError(f"`log_v` has {z.shape[-1]} points on its last axis, the grid {g.size}.")
    if horizon < g[-1]:
        raise ValueError(f"`horizon` ({horizon}) must be >= the last grid time ({g[-1]}).")
    above = z >= log_threshold
    hit = above.any(axis=-1)
    first = np.argmax(above, axis=-1)
    out = np.full(z.shape[:-1], float(horizon))
    j = np.where(hit & (first > 0), first, 1)
    z0 = np.take_along_axis(z, (j - 1)[..., None], axis=-1)[..., 0]
    z1 = np.take_along_axis(z, j[..., None], axis=-1)[..., 0]
    frac = np.clip((log_threshold - z0) / np.where(z1 > z0, z1 - z0, 1.0), 0.0, 1.0)
    interp = g[j - 1] + frac * (g[j] - g[j - 1])
    out = np.where(hit & (first > 0), interp, out)
    out = np.where(hit & (first == 0), g[0], out)
    return out


def gompertz_crossing_time(
    log_beta: Any, k: Any, delta: Any, log_threshold: float, horizon: float, log_v0: float = 0.0
) -> np.ndarray:
    """Time-to-threshold of the reduced Gompertz model with a constant discrepancy, capped.

    ``log V(t) = log_v0 e^{-beta t} + k (1 - e^{-beta t}) + delta`` reaches ``log_threshold`` at
    ``T = -log(1 - (log_threshold - delta - log_v0) / (k - log_v0)) / beta``; paths whose plateau
    ``k + delta`` lies below the threshold never reach it and get ``horizon``, as do crossings
    after ``horizon``.
    """
    b = np.exp(np.asarray(log_beta, float))
    kk = np.asarray(k, float)
    r = (log_threshold - np.asarray(delta, float) - log_v0) / (kk - log_v0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -np.log1p(-r) / b
    t = np.where((r < 1.0) & (kk > log_v0), t, horizon)
    return np.clip(t, 0.0, horizon)


def power_law_crossing_time(log_a: Any, gamma: Any, log_threshold: float, horizon: float,
                            log_v0: float = 0.0) -> np.ndarray:
    """Time-to-threshold of the power law ``dV/dt = a V^gamma`` (``0 < gamma < 1``), capped at ``horizon``.

    ``V(t) = (V0^{1-gamma} + (1 - gamma) a t)^{1/(1-gamma)}`` reaches ``V* = exp(log_threshold)``
    at ``T = (V*^{1-gamma} - V0^{1-gamma}) / ((1 - gamma) a)``: finite for every draw (no
    carrying capacity), 0 when ``V0 >= V*``.
    """
    a = np.exp(np.asarray(log_a, float))
    g1 = 1.0 - np.asarray(gamma, float)
    if np.any(g1 <= 0.0) or np.any(g1 >= 1.0):
        raise ValueError("power_law_crossing_time needs 0 < gamma < 1.")
    t = (np.exp(g1 * log_threshold) - np.exp(g1 * log_v0)) / (g1 * a)
    return np.clip(t, 0.0, horizon)


@dataclasses.dataclass(frozen=True)
class ImagingDecision:
    """The chance-constrained imaging day of one mouse.

    Attributes
    ----------
    day : float
        Recommended imaging day (the latest feasible one), or ``lower`` when infeasible.
    feasible : bool
        Whether some day in ``[lower, upper]`` meets ``P(T < day) <= epsilon``.
    p_violation : float
        ``P(T < day)`` on the draws (the chance of imaging after the threshold was passed).
    p_violation_upper : float
        One-sided upper confidence bound of that probability (from the solver's report).
    closed_form_day : float
        The order-statistic answer (independent cross-check).
    method : str
        Solver used, or ``"infeasible"``.
    """

    day: float
    feasible: bool
    p_violation: float
    p_violation_upper: float
    closed_form_day: float
    method: str


def _quantile_day(T: np.ndarray, epsilon: float, lower: float, upper: float) -> float:
    """Largest ``d`` in ``[lower, upper]`` with ``mean(T < d) <= epsilon`` (NaN if none)."""
    Ts = np.sort(np.asarray(T, float))
    k = int(np.floor(epsilon * Ts.size))  # at most k draws may lie strictly below d
    d = Ts[k] if k < Ts.size else np.inf
    d = min(d, upper)
    return float(d) if d >= lower else float("nan")


def imaging_day(T: np.ndarray, epsilon: float, lower: float, upper: float, *, rng: Any = None) -> ImagingDecision:
    """Latest imaging day ``d`` with ``P(T < d) <= epsilon`` (chance constraint), ``lower <= d <= upper``.

    Solved as a :class:`vvuq_twin.decisions.Decision` - minimise ``-d`` subject to
    :class:`~vvuq_twin.decisions.ChanceConstraint` ``g(d, T) = d - T > 0`` with level
    ``epsilon`` - by sample average approximation over the draws of ``T``. The SAA optimum is
    the ``floor(epsilon n) + 1``-th smallest draw (clipped to the bounds), reported as
    ``closed_form_day``; the solver's answer is used when it agrees within 0.05 day, otherwise
    the order statistic (and ``method`` says so).
    """
    from vvuq_twin.decisions import (
        AffineInDecision,
        ChanceConstraint,
        Decision,
        DecisionVariable,
        InfeasibleDecisionError,
        solve,
    )

    T = np.asarray(T, float).reshape(-1)
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}.")
    if not lower < upper:
        raise ValueError(f"need lower < upper, got {lower} and {upper}.")
    closed = _quantile_day(T, epsilon, lower, upper)
    dec = Decision(
        variables=[DecisionVariable("imaging_day", lower=float(lower), upper=float(upper))],
        loss=AffineInDecision(coef=lambda xi: -np.ones((len(xi), 1))),
        constraints=[ChanceConstraint(g=lambda d, xi: d[0] - xi[:, 0], epsilon=float(epsilon),
                                      name="threshold_before_imaging")],
    )
    xi = T[:, None]
    if not np.isfinite(closed):
        return ImagingDecision(float(lower), False, float(np.mean(T < lower)), float("nan"), closed,
                               "infeasible")
    try:
        res = solve(dec, xi, method="slsqp", x0=[closed], rng=rng)
        d = float(res.decision.values[0])
        method = res.method
        up = float(res.constraints["upper_bound"].values[0])
    except InfeasibleDecisionError:  # pragma: no cover - closed form says feasible
        d, method, up = closed, "order statistic (solver found none)", float("nan")
    if abs(d - closed) > 0.05:
        d, method = closed, f"order statistic (solver gave {d:.2f})"
    return ImagingDecision(d, True, float(np.mean(T < d)), up, closed, method)


def linear_gaussian_shapley(grad: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Exact Shapley effects of ``Y = grad @ X``, ``X ~ N(m, cov)`` (normalised by Var Y).

    The cost of a subset ``J`` is ``Var(E[Y | X_J]) = a^T C_{.J} C_{JJ}^{-1} C_{J.} a``; the
    Shapley effect averages its increments over all orderings (Owen & Prieur 2017, SIAM/ASA
    JUQ 5:986). ``d <= 8`` (all ``d!`` orderings are enumerated).
    """
    a = np.asarray(grad, float)
    C = np.asarray(cov, float)
    d = a.size
    if C.shape != (d, d):
        raise ValueError(f"cov must be ({d}, {d}), got {C.shape}.")
    if d > 8:
        raise ValueError("linear_gaussian_shapley enumerates d! orderings; use d <= 8.")
    var_y = float(a @ C @ a)

    def explained(J: tuple[int, ...]) -> float:
        if not J:
            return 0.0
        J = list(J)
        v = C[:, J] @ np.linalg.solve(C[np.ix_(J, J)], C[J, :] @ a)
        return float(a @ v)

    cache: dict[tuple[int, ...], float] = {}
    sh = np.zeros(d)
    for perm in permutations(range(d)):
        prev = 0.0
        for i in range(d):
            key = tuple(sorted(perm[: i + 1]))
            if key not in cache:
                cache[key] = explained(key)
            sh[perm[i]] += cache[key] - prev
            prev = cache[key]
    return sh / factorial(d) / var_y


def gompertz_individual_fits(t: np.ndarray, log_v: np.ndarray, units: np.ndarray) -> dict[str, np.ndarray]:
    """Least-squares fit of the full Gompertz model to each unit's log volumes (``V(0) = 1``).

    ``log V = (alpha / beta) (1 - e^{-beta t})``, fitted on the log scale (the twin's error
    model) with positive ``alpha, beta``.

    Returns
    -------
    dict
        ``unit``, ``alpha``, ``beta`` (1/day) per unit.
    """
    t = np.asarray(t, float).reshape(-1)
    y = np.asarray(log_v, float).reshape(-1)
    u = np.asarray(units).astype(str)
    labels = list(dict.fromkeys(u.tolist()))
    alpha, beta = [], []
    for lab in labels:
        s = u == lab
        ts, ys = t[s], y[s]
        if ts.size < 2:
            raise ValueError(f"unit {lab!r} has fewer than 2 measurements.")

        def resid(p: np.ndarray) -> np.ndarray:
            a, b = np.exp(p)
            return a / b * (1.0 - np.exp(-b * ts)) - ys

        fit = least_squares(resid, np.log([0.8, 0.1]))
        a, b = np.exp(fit.x)
        alpha.append(a)
        beta.append(b)
    return {"unit": np.array(labels), "alpha": np.array(alpha), "beta": np.array(beta)}


def importance_mean(
    values: np.ndarray, log_w: np.ndarray, *, ess_factor: float = 1.0
) -> tuple[float, float, float]:
    """Self-normalised importance-sampling mean of ``values`` under log weights ``log_w``.

    With draws ``x_i`` from the posterior given the calibration data and ``log_w_i = log p(y_new |
    x_i)``, the weighted mean is the posterior mean given the calibration data and ``y_new``
    (Bayes' rule), exact as the number of draws grows.

    Parameters
    ----------
    values : ndarray, shape (n,)
        The quantity at each draw.
    log_w : ndarray, shape (n,)
        Unnormalised log weights (one per draw, same order).
    ess_factor : float
        Ratio (0, 1] of the effective to the nominal number of the draws (MCMC autocorrelation);
        the variance of the estimate is divided by it.

    Returns
    -------
    mean : float
        ``sum w_i x_i`` with normalised weights.
    se : float
        Delta-method standard error ``sqrt(sum w_i^2 (x_i - mean)^2 / ess_factor)``.
    ess : float
        Kish effective sample size ``1 / sum w_i^2`` of the weights.
    """
    x = np.asarray(values, float).reshape(-1)
    lw = np.asarray(log_w, float).reshape(-1)
    if x.size != lw.size:
        raise ValueError(f"values has {x.size} entries, log_w {lw.size}; one weight per draw is needed.")
    if not np.all(np.isfinite(x)):
        raise ValueError("values contain NaN or inf.")
    if not np.isfinite(lw).any():
        raise ValueError("all log weights are -inf or NaN: the datum has zero likelihood under every draw.")
    if not 0.0 < ess_factor <= 1.0:
        raise ValueError(f"ess_factor must be in (0, 1], got {ess_factor}.")
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    mean = float(w @ x)
    se = float(np.sqrt(np.sum(w**2 * (x - mean) ** 2) / ess_factor))
    return mean, se, float(1.0 / np.sum(w**2))


def interval_width(x: np.ndarray, prob: float = 0.9) -> float:
    """Width of the central ``prob`` interval of draws ``x``."""
    lo, hi = np.quantile(np.asarray(x, float).reshape(-1), [(1 - prob) / 2, (1 + prob) / 2])
    return float(hi - lo)


def stack_draws(da: xr.DataArray) -> np.ndarray:
    """A DataArray with ``chain``, ``draw`` and one more dim as an array (n_draws, n)."""
    other = [d for d in da.dims if d not in ("chain", "draw")]
    return da.transpose("chain", "draw", *other).values.reshape(da.sizes["chain"] * da.sizes["draw"], -1)


def logpdf_normal(y: float, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Gaussian log density, vectorised over draws."""
    return stats.norm.logpdf(y, loc=mean, scale=sd)


def unit_labels(seq: Sequence[Any]) -> list[str]:
    """Unique labels in order of first appearance."""
    return list(dict.fromkeys(np.asarray(seq).astype(str).tolist()))
