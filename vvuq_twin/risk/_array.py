"""NumPy layer of the risk measures: estimators, their influence functions and standard errors.

Every estimator returns ``(estimate, psi)`` where ``psi[i]`` is the empirical influence function
of the risk functional evaluated at sample ``i``. The Monte Carlo standard error is then the
standard error of the (weighted) mean of ``psi`` (delta method / von Mises expansion):

* ``"iid"``: ``se**2 = sum_i w_i**2 (psi_i - psi_bar)**2`` with normalised weights ``w``
  (``1/n`` each without weights, where the ``n/(n-1)`` correction is applied);
* ``"ess"``: ``se = sd(psi) / sqrt(ESS(psi))`` with ArviZ's autocorrelation-aware effective
  sample size of the influence values over ``(chain, draw)`` -- for correlated MCMC draws.

This module imports only NumPy, SciPy and ArviZ; it knows nothing of xarray.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import special, stats

from .errors import RiskInputError

__all__ = [
    "check_alpha",
    "clean_samples",
    "quantile_if",
    "superquantile_if",
    "bpoe_if",
    "failure_probability_if",
    "expected_loss_if",
    "entropic_if",
    "standard_error",
    "normal_ci",
    "wilson_ci",
    "weighted_quantile",
]


def check_alpha(alpha: float, func: str, name: str = "alpha") -> float:
    """Validate a probability level in the open interval (0, 1)."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise RiskInputError(
            f"The '{name}' parameter of {func} must be a float in the open interval (0, 1); "
            f"got {alpha!r} of type {type(alpha).__name__}."
        ) from None
    if not (0.0 < a < 1.0) or not math.isfinite(a):
        raise RiskInputError(
            f"The '{name}' parameter of {func} must be a float in the open interval (0, 1); "
            f"got {alpha!r}. It is a probability level, e.g. 0.95 for the worst 5% of outcomes."
        )
    return a


def clean_samples(
    x: np.ndarray,
    weights: np.ndarray | None,
    *,
    func: str,
    nan_policy: str = "raise",
    where: str = "samples",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate samples (any shape) and weights; return them with NaN rows handled.

    Returns the samples and weights flattened to 1-D when NaNs were omitted, otherwise with
    their shape kept. Weights are returned normalised to sum 1 (or ``None``).
    """
    if nan_policy not in ("raise", "omit"):
        raise RiskInputError(
            f"The 'nan_policy' parameter of {func} must be 'raise' or 'omit'; got {nan_policy!r}."
        )
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        raise RiskInputError(
            f"{func} received an empty sample ({where} has shape {x.shape}); "
            "pass at least one draw."
        )
    nan = np.isnan(x)
    if nan.all():
        raise RiskInputError(
            f"{func}: all {x.size} values of {where} are NaN; there is nothing to estimate from. "
            "Check the model runs that produced them (failed ensemble runs are NaN)."
        )
    if np.isinf(x).any():
        raise RiskInputError(
            f"{func}: {where} contains {int(np.isinf(x).sum())} infinite value(s); "
            "risk measures need finite samples."
        )
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        if w.shape != x.shape:
            try:
                w = np.broadcast_to(w, x.shape).copy()
            except ValueError:
                raise RiskInputError(
                    f"{func}: weights of shape {np.shape(weights)} do not match {where} of shape "
                    f"{x.shape}."
                ) from None
        if not np.isfinite(w).all():
            raise RiskInputError(
                f"{func}: weights contain {int((~np.isfinite(w)).sum())} NaN or infinite "
                "value(s); weights must be finite and non-negative."
            )
        if (w < 0).any():
            i = int(np.flatnonzero(w.ravel() < 0)[0])
            raise RiskInputError(
                f"{func}: weights must be non-negative; weight at flat index {i} is "
                f"{w.ravel()[i]!r} ({int((w < 0).sum())} negative in all)."
            )
    if nan.any():
        if nan_policy == "raise":
            raise RiskInputError(
                f"{func}: {where} contains {int(nan.sum())} NaN value(s) out of {x.size}. "
                "Pass nan_policy='omit' to drop them (this assumes failures are unrelated to "
                "the outcome) or rerun the failed cases."
            )
        keep = ~nan
        x = x[keep]
        if w is not None:
            w = w[keep]
    if w is not None:
        total = w.sum()
        if not (total > 0) or not math.isfinite(total):
            raise RiskInputError(
                f"{func}: weights are not normalisable (their sum is {total!r}); at least one "
                "weight of a non-NaN sample must be positive."
            )
        w = w / total
    return x, w


def _norm_weights(n: int, w: np.ndarray | None) -> np.ndarray:
    return np.full(n, 1.0 / n) if w is None else w


def weighted_quantile(x: np.ndarray, w: np.ndarray | None, alpha: float) -> float:
    """Inverse empirical CDF: the smallest sample value ``q`` with ``F(q) >= alpha``."""
    x = np.ravel(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    if w is None:
        k = max(int(math.ceil(alpha * xs.size - 1e-9)) - 1, 0)
        return float(xs[min(k, xs.size - 1)])
    cw = np.cumsum(np.ravel(w)[order])
    k = int(np.searchsorted(cw, alpha - 1e-12, side="left"))
    return float(xs[min(k, xs.size - 1)])


def _kish(w: np.ndarray | None, n: int) -> float:
    return float(n) if w is None else float(1.0 / np.sum(w**2))


def quantile_if(x: np.ndarray, w: np.ndarray | None, alpha: float) -> tuple[float, np.ndarray]:
    """VaR_alpha and its influence values ``(alpha - 1{x <= q}) / f(q)``.

    The sparsity ``1/f(q)`` is the Siddiqui difference quotient of the empirical quantile
    function with the Hall--Sheather bandwidth (as used for quantile regression).
    """
    x = np.ravel(x)
    q = weighted_quantile(x, w, alpha)
    n = _kish(w, x.size)
    z = stats.norm.ppf(0.975)
    za = stats.norm.ppf(alpha)
    h = n ** (-1 / 3) * z ** (2 / 3) * (1.5 * stats.norm.pdf(za) ** 2 / (2 * za**2 + 1)) ** (1 / 3)
    lo, hi = max(alpha - h, 0.5 / x.size), min(alpha + h, 1 - 0.5 / x.size)
    if hi > lo:
        sparsity = (weighted_quantile(x, w, hi) - weighted_quantile(x, w, lo)) / (hi - lo)
    else:
        sparsity = 0.0
    psi = (alpha - (x <= q).astype(float)) * sparsity
    return q, psi


def superquantile_if(x: np.ndarray, w: np.ndarray | None, alpha: float) -> tuple[float, np.ndarray]:
    """Rockafellar--Uryasev CVaR ``q + E[(X-q)+]/(1-alpha)`` at ``q = VaR_alpha``, with IF."""
    x = np.ravel(x)
    q = weighted_quantile(x, w, alpha)
    ww = _norm_weights(x.size, w)
    excess = np.maximum(x - q, 0.0)
    cvar = q + float(np.dot(ww, excess)) / (1.0 - alpha)
    psi = q + excess / (1.0 - alpha) - cvar
    return cvar, psi


def bpoe_if(x: np.ndarray, w: np.ndarray | None, threshold: float) -> tuple[float, np.ndarray]:
    """Buffered probability of exceedance of ``threshold`` and its influence values.

    ``bPOE(z) = min_{a >= 0} E[(a (X - z) + 1)+] = min_{t < z} E[(X - t)+] / (z - t)``
    (Mafusalov & Uryasev 2018; Rockafellar & Royset 2010). The 1-D convex problem is solved
    exactly: the minimum over ``t`` lies at a sample point (or ``t -> -inf``, value 1), so all
    candidates are evaluated with cumulative tail sums in ``O(n log n)``. The influence values
    follow from the envelope theorem at the minimiser ``t*``.
    """
    x = np.ravel(x)
    z = float(threshold)
    ww = _norm_weights(x.size, w)
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], ww[order]
    # tail sums over j > k (strictly after position k in ascending order)
    tail_w = np.concatenate([np.cumsum(ws[::-1])[::-1][1:], [0.0]])
    tail_wx = np.concatenate([np.cumsum((ws * xs)[::-1])[::-1][1:], [0.0]])
    cand = xs < z
    if not cand.any():
        # every sample >= z: E[(X-t)+]/(z-t) -> 1 as t -> -inf and is >= 1 otherwise
        return 1.0, np.zeros_like(x)
    t = xs[cand]
    vals = (tail_wx[cand] - t * tail_w[cand]) / (z - t)
    k = int(np.argmin(vals))
    best = float(vals[k])
    if best >= 1.0:
        return 1.0, np.zeros_like(x)
    t_star = float(t[k])
    psi = np.maximum(x - t_star, 0.0) / (z - t_star) - best
    return max(best, 0.0), psi


def failure_probability_if(
    x: np.ndarray, w: np.ndarray | None, threshold: float
) -> tuple[float, np.ndarray]:
    """``P(X > threshold)`` and its influence values ``1{x > z} - p``."""
    x = np.ravel(x)
    ind = (x > threshold).astype(float)
    p = float(np.dot(_norm_weights(x.size, w), ind))
    return p, ind - p


def expected_loss_if(x: np.ndarray, w: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Mean and its influence values ``x - mean``."""
    x = np.ravel(x)
    m = float(np.dot(_norm_weights(x.size, w), x))
    return m, x - m


def entropic_if(x: np.ndarray, w: np.ndarray | None, theta: float) -> tuple[float, np.ndarray]:
    """Entropic risk ``log E[exp(theta X)] / theta`` (log-sum-exp) and its influence values."""
    x = np.ravel(x)
    ww = _norm_weights(x.size, w)
    pos = ww > 0
    rho = float(special.logsumexp(theta * x[pos], b=ww[pos])) / theta
    psi = np.expm1(theta * (x - rho)) / theta
    return rho, psi


def standard_error(
    psi: np.ndarray, w: np.ndarray | None, method: str, chain_shape: tuple[int, int] | None = None
) -> tuple[float, float]:
    """Standard error of the mean of the influence values; returns ``(se, n_eff)``."""
    psi = np.ravel(psi)
    n = psi.size
    if method == "ess":
        import arviz as az

        arr = psi.reshape(chain_shape)
        sd = float(np.std(psi, ddof=1)) if n > 1 else 0.0
        if sd == 0.0:
            return 0.0, float(n)
        ess = float(az.ess(arr, method="mean"))
        return sd / math.sqrt(ess), ess
    if w is None:
        if n < 2:
            return math.nan, float(n)
        return float(np.std(psi, ddof=1) / math.sqrt(n)), float(n)
    centred = psi - np.dot(w, psi)
    return float(math.sqrt(np.sum(w**2 * centred**2))), _kish(w, n)


def normal_ci(est: float, se: float, confidence: float) -> tuple[float, float]:
    """Two-sided normal interval ``est -/+ z se``."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return float(est - z * se), float(est + z * se)


def wilson_ci(p: float, n_eff: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion with an effective sample size."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    if not n_eff > 0:
        return 0.0, 1.0
    denom = 1 + z**2 / n_eff
    centre = (p + z**2 / (2 * n_eff)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n_eff + z**2 / (4 * n_eff**2), 0.0)) / denom
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


KERNELS: dict[str, Callable[..., tuple[float, np.ndarray]]] = {
    "quantile": quantile_if,
    "superquantile": superquantile_if,
    "buffered_failure_probability": bpoe_if,
    "failure_probability": failure_probability_if,
    "expected_loss": expected_loss_if,
    "entropic_risk": entropic_if,
}
