"""Scenario worlds and independent fits of the tumor twin (NumPy/SciPy; no sampling).

- :func:`inoculum_worlds` - an :class:`vvuq_twin.loop.Operate` function: the calibrated twin
  replicated into worlds with another inoculum (initial volume), a new mouse's time-to-threshold
  and first imaging day in each, with the closed-form check of the inoculum effect;
- :func:`pooled_gompertz_fit` - the plain reduced-Gompertz fit *without* discrepancy (per-mouse
  ``beta``, shared ``k``; least squares on log volumes): the independent fit that the twin's
  carrying capacity is compared with.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares

from .loop import crossing_times, imaging_day, stack_draws
from .model import growth_simulator

__all__ = ["inoculum_worlds", "pooled_gompertz_fit"]


def _with_inoculum(twin: Any, v0: float) -> Any:
    """The same twin with another initial volume (parameters unchanged)."""
    sim = growth_simulator("reduced_gompertz", v0=float(v0), log_output=True,
                           **({"method": "rk4"} if "rk4" in twin.simulator.name else {}))
    return dataclasses.replace(twin, simulator=sim)


def inoculum_worlds(inocula: Mapping[str, float], grid: Sequence[float], log_threshold: float, horizon: float,
                    epsilon: float) -> Any:
    """Operate function: a new mouse in each inoculum world (:func:`vvuq_twin.operations.replicate`)."""
    g = np.asarray(grid, float)

    def operate(result: Any, seed: int) -> dict[str, Any]:
        import functools

        from vvuq_twin.operations import Scenario, replicate

        scen = {name: (None if v0 == 1.0 else Scenario(modify=functools.partial(_with_inoculum, v0=v0)))
                for name, v0 in inocula.items()}
        worlds = replicate(result, scen, g, unit="new", rng=int(seed) % (2**31), include_y=False)
        base = list(inocula)[0]
        beta_new = worlds["beta_new"].sel(scenario=base).transpose("chain", "draw").values.reshape(-1)
        eta_base = stack_draws(worlds["eta"].sel(scenario=base))
        rows, err = [], 0.0
        for name, v0 in inocula.items():
            T = crossing_times(stack_draws(worlds["zeta"].sel(scenario=name)), g, log_threshold, horizon)
            d = imaging_day(T, epsilon, float(g[1]), horizon, rng=int(seed) % (2**31))
            # closed form of the inoculum effect: log V0 exp(-beta t), same new-mouse draws
            expected = np.log(v0) * np.exp(-np.outer(beta_new, g))
            err = max(err, float(np.max(np.abs(stack_draws(worlds["eta"].sel(scenario=name)) - eta_base - expected))))
            rows.append({"world": name, "v0_mm3": float(v0), "T_median": float(np.median(T)),
                         "T_q05": float(np.quantile(T, 0.05)), "T_q95": float(np.quantile(T, 0.95)),
                         "first_imaging_day": float(d.day), "p_violation": float(d.p_violation)})
        return {"worlds": rows, "closed_form_error": err}

    return operate


def pooled_gompertz_fit(t: Any, log_v: Any, units: Any, log_v0: float = 0.0) -> dict[str, Any]:
    """Least-squares reduced Gompertz fit without discrepancy: per-unit ``beta``, shared ``k``.

    ``log V = log_v0 e^{-beta_u t} + k (1 - e^{-beta_u t})`` on the log scale (the twin's error
    model), ``beta_u > 0``.

    Returns
    -------
    dict
        ``k``, ``K_mm3`` (= e^k), ``beta`` per unit (dict), ``beta_geomean``, ``sigma`` (residual
        sd) and ``units``.
    """
    t = np.asarray(t, float).reshape(-1)
    y = np.asarray(log_v, float).reshape(-1)
    u = np.asarray(units).astype(str)
    labels = list(dict.fromkeys(u.tolist()))
    idx = np.array([labels.index(v) for v in u])
    if t.size != y.size or t.size != u.size:
        raise ValueError("t, log_v and units must have the same length.")

    def resid(p: np.ndarray) -> np.ndarray:
        b = np.exp(p[1:])[idx]
        e = np.exp(-b * t)
        return log_v0 * e + p[0] * (1 - e) - y

    fit = least_squares(resid, np.r_[8.5, np.full(len(labels), np.log(0.1))])
    beta = np.exp(fit.x[1:])
    dof = max(1, t.size - fit.x.size)
    return {"k": float(fit.x[0]), "K_mm3": float(np.exp(fit.x[0])), "units": labels,
            "beta": {m: float(b) for m, b in zip(labels, beta)}, "beta_geomean": float(np.exp(np.mean(np.log(beta)))),
            "sigma": float(np.sqrt(np.sum(fit.fun**2) / dof))}
