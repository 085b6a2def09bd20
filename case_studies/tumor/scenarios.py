"""Scenario worlds and independent fits of the tumor twin (NumPy/SciPy; no sampling).

- :func:`inoculum_worlds` - an :class:`vvuq_twin.loop.Operate` function: the calibrated twin
  (reduced Gompertz or power law) replicated into worlds with another inoculum (initial volume),
  a new mouse's time-to-threshold and first imaging day in each, with the closed-form check of
  the law's volume in each world;
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


#: Growth laws whose inoculum worlds have a closed-form check.
INOCULUM_LAWS = ("reduced_gompertz", "power_law")


def _with_inoculum(twin: Any, v0: float, law: str = "reduced_gompertz") -> Any:
    """The same twin with another initial volume (parameters unchanged)."""
    sim = growth_simulator(law, v0=float(v0), log_output=True,
                           **({"method": "rk4"} if "rk4" in twin.simulator.name else {}))
    return dataclasses.replace(twin, simulator=sim)


def _closed_form_log_volume(law: str, worlds: Any, result: Any, name: str, base: str, v0: float,
                            g: np.ndarray) -> np.ndarray:
    """The law's log volume of the new mouse in world ``name`` (closed form, same draws), (n_draws, n_grid).

    Reduced Gompertz: the inoculum adds ``log V0 e^{-beta t}`` to the calibrated world's path.
    Power law: ``log(V0^{1-gamma} + (1 - gamma) a t) / (1 - gamma)`` from the new mouse's ``a``
    and the shared ``gamma``.
    """
    if law == "reduced_gompertz":
        beta = worlds["beta_new"].sel(scenario=base).transpose("chain", "draw").values.reshape(-1)
        return stack_draws(worlds["eta"].sel(scenario=base)) + np.log(v0) * np.exp(-np.outer(beta, g))
    a = worlds["a_new"].sel(scenario=base).transpose("chain", "draw").values.reshape(-1, 1)
    gam = result.posterior["gamma"].transpose("chain", "draw").values.reshape(-1, 1)
    return np.log(v0 ** (1.0 - gam) + (1.0 - gam) * a * g[None, :]) / (1.0 - gam)


def inoculum_worlds(inocula: Mapping[str, float], grid: Sequence[float], log_threshold: float, horizon: float,
                    epsilon: float, *, law: str = "reduced_gompertz", validated_until: float = float("inf")) -> Any:
    """Operate function: a new mouse in each inoculum world (:func:`vvuq_twin.operations.replicate`).

    ``law`` is the calibrated twin's growth law (one of :data:`INOCULUM_LAWS`); the first
    inoculum is the calibrated one. Each world's row says whether its time-to-threshold's 95%
    quantile lies after ``validated_until`` (the last held-back reading day): extrapolating.
    """
    if law not in INOCULUM_LAWS:
        raise ValueError(f"inoculum_worlds: law must be one of {list(INOCULUM_LAWS)}, got {law!r}.")
    g = np.asarray(grid, float)

    def operate(result: Any, seed: int) -> dict[str, Any]:
        import functools

        from vvuq_twin.operations import Scenario, replicate

        names = list(inocula)
        scen = {name: (None if i == 0 else Scenario(modify=functools.partial(_with_inoculum, v0=v0, law=law)))
                for i, (name, v0) in enumerate(inocula.items())}
        worlds = replicate(result, scen, g, unit="new", rng=int(seed) % (2**31), include_y=False)
        base, v_base = names[0], float(inocula[names[0]])
        rows, err = [], 0.0
        for name, v0 in inocula.items():
            T = crossing_times(stack_draws(worlds["zeta"].sel(scenario=name)), g, log_threshold, horizon)
            d = imaging_day(T, epsilon, float(g[1]), horizon, rng=int(seed) % (2**31))
            # closed form of the law in this world, from the same new-mouse draws
            rel = v0 / v_base if law == "reduced_gompertz" else v0
            expected = _closed_form_log_volume(law, worlds, result, name, base, rel, g)
            err = max(err, float(np.max(np.abs(stack_draws(worlds["eta"].sel(scenario=name)) - expected))))
            q95 = float(np.quantile(T, 0.95))
            rows.append({"world": name, "v0_mm3": float(v0), "T_median": float(np.median(T)),
                         "T_q05": float(np.quantile(T, 0.05)), "T_q95": q95,
                         "first_imaging_day": float(d.day), "p_violation": float(d.p_violation),
                         "extrapolates": bool(q95 > validated_until)})
        return {"law": law, "worlds": rows, "closed_form_error": err, "validated_until": float(validated_until)}

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
