"""Why the reduced-Gompertz twins forecast growth after the decision day too low: independent point fits.

Each growth law / error model below is fitted to the calibration readings only (least squares
or maximum likelihood, NumPy/SciPy, no sampling) and its point forecast is compared with the
held-back readings: the fraction of them above the forecast (the twin's PIT-bias statistic for a
point forecast) and the mean log residual. The variants isolate one assumption each:

- ``reduced_gompertz`` - the twin's law and error model (per-mouse beta, shared k, V(0) = 1 mm³,
  constant sd of log V);
- ``reduced_gompertz_per_mouse_k`` - the same with a per-mouse k, partially pooled (Gaussian
  penalty of sd ``tau`` on k_u - k, at the twin's noise level);
- ``gompertz_per_mouse`` - the full Gompertz law with both parameters per mouse, unpooled;
- ``power_law`` - ``dV/dt = a_u V^gamma`` from V(0) = 1 mm³, shared gamma (Benzekry et al. 2014);
- ``reduced_gompertz_power_error`` - the twin's law with the sd of log V proportional to
  ``(V / 100 mm³)^g``, ``g`` estimated by maximum likelihood (relative caliper error that shrinks
  as the tumor grows).

The calibration residuals of the reduced Gompertz and of the power law by day show the misfit's
shape (a trend in time). ``TWIN_VARIANT`` maps each candidate twin of the loop to the variant with
its growth law and error model: its point forecast should reproduce the twin's median bias.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize

from .loop import gompertz_individual_fits
from .scenarios import pooled_gompertz_fit

__all__ = ["power_law_fit", "power_error_fit", "forecast_bias_diagnosis", "TWIN_VARIANT"]

#: The point-fit variant with each candidate twin's growth law and error model (no discrepancy).
TWIN_VARIANT = {"none": "reduced_gompertz", "hsgp": "reduced_gompertz", "orthogonal": "reduced_gompertz",
                "power_law": "power_law"}


def _index(units: Any) -> tuple[list[str], np.ndarray]:
    u = np.asarray(units).astype(str)
    labels = list(dict.fromkeys(u.tolist()))
    return labels, np.array([labels.index(v) for v in u])


def _power_law(t: np.ndarray, a: np.ndarray, gamma: float) -> np.ndarray:
    """log V of ``dV/dt = a V^gamma``, ``V(0) = 1``: ``log(1 + (1 - gamma) a t) / (1 - gamma)``."""
    return np.log1p((1.0 - gamma) * a * t) / (1.0 - gamma)


def power_law_fit(t: Any, log_v: Any, units: Any) -> dict[str, Any]:
    """Least-squares power law ``dV/dt = a_u V^gamma`` (V(0) = 1 mm³) on log volumes, shared ``gamma``.

    Returns
    -------
    dict
        ``gamma`` (in (0, 1)), ``a`` per unit (dict) and ``units``.
    """
    t, y = np.asarray(t, float).ravel(), np.asarray(log_v, float).ravel()
    labels, idx = _index(units)
    if t.size != y.size or t.size != idx.size:
        raise ValueError("t, log_v and units must have the same length.")

    def resid(p: np.ndarray) -> np.ndarray:
        return _power_law(t, np.exp(p[1:])[idx], 1.0 / (1.0 + np.exp(-p[0]))) - y

    fit = least_squares(resid, np.r_[0.0, np.zeros(len(labels))])
    return {"gamma": float(1.0 / (1.0 + np.exp(-fit.x[0]))), "a": dict(zip(labels, np.exp(fit.x[1:]).tolist())),
            "units": labels}


def _rg(t: np.ndarray, k: float, beta: np.ndarray) -> np.ndarray:
    return k * (1.0 - np.exp(-beta * t))


def power_error_fit(t: Any, log_v: Any, units: Any, v_ref: float = 100.0) -> dict[str, Any]:
    """Maximum likelihood of the reduced Gompertz law with ``sd(log V) = s (V / v_ref)^g``.

    ``V`` in the error model is the fitted volume. Returns ``k``, ``K_mm3``, ``beta`` per unit,
    ``s`` and ``g``.
    """
    t, y = np.asarray(t, float).ravel(), np.asarray(log_v, float).ravel()
    labels, idx = _index(units)
    start = pooled_gompertz_fit(t, y, units)

    def nll(p: np.ndarray) -> float:
        m = _rg(t, p[0], np.exp(p[1:-2])[idx])
        sd = np.exp(p[-2] + p[-1] * (m - np.log(v_ref)))
        return float(np.sum(np.log(sd) + 0.5 * ((y - m) / sd) ** 2))

    p0 = np.r_[start["k"], np.log([start["beta"][m] for m in labels]), np.log(start["sigma"]), 0.0]
    fit = minimize(nll, p0, method="L-BFGS-B", options={"maxiter": 20000, "maxfun": 200000})
    p = fit.x
    return {"k": float(p[0]), "K_mm3": float(np.exp(p[0])), "beta": dict(zip(labels, np.exp(p[1:-2]).tolist())),
            "s": float(np.exp(p[-2])), "g": float(p[-1]), "converged": bool(fit.success)}


def _pooled_k_fit(t: np.ndarray, y: np.ndarray, idx: np.ndarray, n: int, sigma: float, tau: float) -> np.ndarray:
    def resid(p: np.ndarray) -> np.ndarray:
        return np.r_[(p[1:n + 1][idx] * (1 - np.exp(-np.exp(p[n + 1:])[idx] * t)) - y) / sigma,
                     (p[1:n + 1] - p[0]) / tau]

    return least_squares(resid, np.r_[8.5, np.full(n, 8.5), np.full(n, np.log(0.1))]).x


def forecast_bias_diagnosis(cal: Any, hold: Any, *, tau: float = 0.5) -> dict[str, Any]:
    """Point forecasts of the held-back readings by each variant (module docstring), fitted on ``cal``.

    Parameters
    ----------
    cal, hold : TwinData
        Calibration and held-back readings (x = days, y = log volume, unit = mouse).
    tau : float
        Pooling sd of the per-mouse k variant.

    Returns
    -------
    dict
        ``variants``: name -> ``fraction_above`` (held-back readings above the forecast),
        ``mean_log_residual`` and, where the law has one, ``K_mm3``; ``calibration_residual_by_day``:
        ``reduced_gompertz`` and ``power_law`` (day -> mean residual of the calibration readings);
        ``twin_variant`` (:data:`TWIN_VARIANT`).
    """
    t, y = np.asarray(cal.x, float)[:, 0], np.asarray(cal.y, float)
    th, yh = np.asarray(hold.x, float)[:, 0], np.asarray(hold.y, float)
    labels, idx = _index(cal.unit)
    uh = np.asarray(hold.unit).astype(str)
    missing = sorted(set(uh.tolist()) - set(labels))
    if missing:
        raise ValueError(f"held-back readings of mice {missing} that have no calibration reading.")
    ih = np.array([labels.index(m) for m in uh])

    def row(forecast: np.ndarray, K: float | None = None) -> dict[str, Any]:
        r = yh - forecast
        out = {"fraction_above": float(np.mean(r > 0)), "mean_log_residual": float(np.mean(r))}
        if K is not None:
            out["K_mm3"] = float(K)
        return out

    rg = pooled_gompertz_fit(t, y, cal.unit)
    b = np.array([rg["beta"][m] for m in labels])
    variants = {"reduced_gompertz": row(_rg(th, rg["k"], b[ih]), rg["K_mm3"])}
    p = _pooled_k_fit(t, y, idx, len(labels), rg["sigma"], tau)
    n = len(labels)
    variants["reduced_gompertz_per_mouse_k"] = {
        **row(p[1:n + 1][ih] * (1 - np.exp(-np.exp(p[n + 1:])[ih] * th)), float(np.exp(p[0]))), "tau": float(tau)}
    g = gompertz_individual_fits(t, y, cal.unit)
    a_i, b_i = g["alpha"][ih], g["beta"][ih]
    variants["gompertz_per_mouse"] = row(a_i / b_i * (1 - np.exp(-b_i * th)))
    pw = power_law_fit(t, y, cal.unit)
    variants["power_law"] = {**row(_power_law(th, np.array([pw["a"][m] for m in labels])[ih], pw["gamma"])),
                             "gamma": pw["gamma"]}
    pe = power_error_fit(t, y, cal.unit)
    variants["reduced_gompertz_power_error"] = {
        **row(_rg(th, pe["k"], np.array([pe["beta"][m] for m in labels])[ih]), pe["K_mm3"]), "g": pe["g"]}
    a_pw = np.array([pw["a"][m] for m in labels])
    by_day = {}
    for law, res in (("reduced_gompertz", y - _rg(t, rg["k"], b[idx])),
                     ("power_law", y - _power_law(t, a_pw[idx], pw["gamma"]))):
        by_day[law] = {f"{d:g}": float(np.mean(res[t == d])) for d in np.unique(t)}
    return {"variants": variants, "calibration_residual_by_day": by_day, "twin_variant": dict(TWIN_VARIANT)}
