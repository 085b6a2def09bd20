"""The climate case's pieces for the library loop (:mod:`vvuq_twin.loop`), read by :mod:`.run`.

Everything here is computed from a calibrated or assimilated twin (a
:class:`~vvuq_twin.TwinResult`) through the declaration (:func:`.declaration.build_twin`):

- :class:`Forcing` -- the forcing worlds and the decision year;
- :func:`discrepancy_draws` -- the discrepancy of every posterior draw at any years, from its
  *posterior* process (the HSGP basis coefficients and hyperparameters of the draw; the
  declaration's :meth:`~vvuq_twin.twin.discrepancy.HSGPDiscrepancy.delta_numpy`);
- :class:`Warming2100` -- 2100 warming ``w(s) = w0 + s w1 + delta_2100`` per draw, affine in the
  scale ``s`` of the post-2022 forcing change;
- :func:`warming_qoi`, :func:`critical_scale_qoi` -- the loop's quantities of interest: 2100
  warming on SSP2-4.5 (ranked by the Sensitivity step) and, per draw, the largest path scale
  that keeps that draw below the threshold (the Decide step's input: ``P(w(s) > T) =
  P(s_i < s)``);
- :func:`path_decision` -- the chance-constrained decision: the largest ``s`` with
  ``P(w(s) > T) <= max_prob`` (exact for the sample: an order statistic of ``s_i``);
- :func:`discrepancy_growth`, :func:`sensitivity_contraction`, :func:`scenario_worlds` -- the
  Operate steps: the discrepancy's spread against the horizon, prior-to-posterior contraction
  of ECS and TCR with their consistency with the IPCC AR6 assessment, and the SSP worlds;
- :class:`AssimilateBatches` -- the library's Assimilate step on chosen batches of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from vvuq_twin.loop import Assimilate, LoopContext, LoopSpecError, QoI

from . import emulator as E
from .declaration import F2X

__all__ = ["Forcing", "forcing_path", "discrepancy_draws", "Warming2100", "warming_qoi",
           "critical_scale_qoi", "path_decision", "discrepancy_growth", "sensitivity_contraction",
           "scenario_worlds", "tcr", "AssimilateBatches", "ECS_LIKELY", "TCR_LIKELY",
           "THRESHOLD_C", "MAX_PROB", "S_BOUNDS", "HORIZONS"]

#: IPCC AR6 WG1 likely ranges (K) of equilibrium climate sensitivity and transient response.
ECS_LIKELY = (2.5, 4.0)
TCR_LIKELY = (1.4, 2.2)
#: Warming threshold (°C vs 1850-1900) and the allowed probability of exceeding it in 2100.
THRESHOLD_C = 2.0
MAX_PROB = 0.33
#: Bounds of the forcing-path scale ``s``.
S_BOUNDS = (-1.0, 1.5)
#: Years at which the discrepancy's spread is reported.
HORIZONS = (2022, 2030, 2040, 2050, 2075, 2100)


@dataclass(frozen=True)
class Forcing:
    """Forcing worlds from 1750 to 2100 and the decision year.

    Attributes
    ----------
    years : ndarray
    worlds : dict of ndarray
        Scenario name -> effective radiative forcing (W m^-2) per year.
    now : int
        Decision year (the last observed year): the path changes after it.
    base : str
        The scenario whose post-``now`` change the decision scales.
    """

    years: np.ndarray
    worlds: Mapping[str, np.ndarray]
    now: int = 2022
    base: str = "ssp245"

    @property
    def i_now(self) -> int:
        return int(np.flatnonzero(self.years == self.now)[0])

    @property
    def f(self) -> np.ndarray:
        return np.asarray(self.worlds[self.base], float)


def forcing_path(base_forcing: np.ndarray, i_now: int, s: float) -> np.ndarray:
    """Forcing with the change after index ``i_now`` scaled by ``s`` (``s = 1``: the scenario)."""
    f = np.array(base_forcing, dtype=float)
    f[i_now + 1:] = f[i_now] + s * (f[i_now + 1:] - f[i_now])
    return f


def _draws(twin: Any, result: Any) -> dict[str, np.ndarray]:
    return twin.draws_from(result.posterior, twin.free_variable_names())


def discrepancy_draws(twin: Any, result: Any, years: Sequence[float]) -> np.ndarray:
    """Discrepancy of each posterior draw at ``years``, shape (n_draws, len(years)).

    The posterior process: each draw's own basis coefficients and hyperparameters, through the
    declaration's HSGP (basis fixed to cover 1800-2150), not a fresh draw from the prior.
    """
    X = np.asarray(years, float).reshape(-1, 1)
    return np.asarray(twin.discrepancy.delta_numpy(_draws(twin, result), X, None, 0), float)


@dataclass(frozen=True)
class Warming2100:
    """2100 warming per draw as ``w(s) = w0 + s * w1 + delta``, affine in the path scale ``s``."""

    w0: np.ndarray
    w1: np.ndarray
    delta: np.ndarray

    @classmethod
    def from_result(cls, twin: Any, result: Any, forcing: Forcing) -> "Warming2100":
        p = E.draws_dict(result.posterior)
        a0 = E.anomaly_at(forcing.years, forcing_path(forcing.f, forcing.i_now, 0.0), p, 2100)[:, 0]
        a1 = E.anomaly_at(forcing.years, forcing_path(forcing.f, forcing.i_now, 1.0), p, 2100)[:, 0]
        return cls(a0, a1 - a0, discrepancy_draws(twin, result, [2100.0])[:, 0])

    def at(self, s: float) -> np.ndarray:
        """2100 warming of every draw on path ``s``."""
        return self.w0 + s * self.w1 + self.delta

    def critical_scale(self, threshold: float) -> np.ndarray:
        """Per draw, the ``s`` at which its 2100 warming reaches ``threshold``."""
        if np.any(self.w1 <= 0):
            raise ValueError("The forcing change must warm every draw (w1 > 0).")
        return (threshold - self.w0 - self.delta) / self.w1


def warming_qoi(twin: Any, forcing: Forcing) -> QoI:
    """2100 warming (°C vs 1850-1900) on the base scenario, EBM + posterior discrepancy."""
    def fn(result: Any, seed: int) -> np.ndarray:
        return Warming2100.from_result(twin, result, forcing).at(1.0)

    return QoI("warming_2100_ssp245", fn, "2100 warming on SSP2-4.5 (EBM + discrepancy), °C")


def critical_scale_qoi(twin: Any, forcing: Forcing, threshold: float = THRESHOLD_C) -> QoI:
    """Per draw, the largest post-2022 path scale keeping 2100 warming below ``threshold``."""
    def fn(result: Any, seed: int) -> np.ndarray:
        return Warming2100.from_result(twin, result, forcing).critical_scale(threshold)

    return QoI("critical_path_scale", fn,
               f"path scale s at which the draw's 2100 warming reaches {threshold} °C")


def path_decision(max_prob: float = MAX_PROB, bounds: tuple[float, float] = S_BOUNDS):
    """Decide function: the largest ``s`` in ``bounds`` with ``P(w(s) > T) <= max_prob``.

    Draw ``i`` exceeds the threshold iff ``s > s_i``, so the largest admissible ``s`` is the
    ``(k+1)``-th smallest ``s_i``, ``k = floor(max_prob n)`` (exact for the sample).
    """
    if not 0.0 < max_prob < 1.0:
        raise LoopSpecError(f"max_prob must lie in (0, 1), got {max_prob}.")

    def decide(s_i: np.ndarray, seed: int) -> dict[str, Any]:
        s_sorted = np.sort(np.asarray(s_i, float))
        n = s_sorted.size
        k = int(np.floor(max_prob * n + 1e-12))
        lo, hi = bounds
        s_star = float(min(s_sorted[k], hi)) if k < n else float(hi)
        feasible = s_star >= lo
        p = float(np.mean(s_sorted < s_star)) if feasible else float("nan")
        return {"path_scale": s_star if feasible else float("nan"), "feasible": bool(feasible),
                "p_exceed": p, "max_prob": float(max_prob), "at_upper_bound": bool(feasible and s_star >= hi),
                "n_draws": int(n),
                "decision": (f"scale the post-2022 SSP2-4.5 forcing change by s = {s_star:.3f}" if feasible
                             else "no admissible path")}

    decide.__qualname__ = f"path_decision({max_prob!r}, {bounds!r})"
    return decide


def tcr(p: Mapping[str, np.ndarray]) -> np.ndarray:
    """Transient climate response: mean warming in years 61-80 of a 1 %/yr CO2 ramp (F = F2x t/70)."""
    F = F2X * np.arange(1, 81) / 70.0
    q = dict(p, kappa=np.ones_like(np.asarray(p["lam"], float)))
    return E.ensemble(F, q)["T"][:, 60:80].mean(axis=1)


def _q(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(np.asarray(x, float), [0.05, 0.5, 0.95])]


def discrepancy_growth(twin: Any, horizons: Sequence[int] = HORIZONS, *, n_prior: int = 4000):
    """Operate function: the posterior discrepancy's spread against the horizon.

    Returns, per year in ``horizons`` (the first is the last data year) and for every year
    2000-2100 (for the figure), the sd and 5-95 % interval of the discrepancy over the
    posterior draws, the sd of its drift ``delta(t) - delta(horizons[0])`` (zero at the last
    data year, growing as the process decorrelates from its present value), and the prior
    marginal sd (``sqrt(E eta^2)``) for comparison.
    """
    def fn(result: Any, seed: int) -> dict[str, Any]:
        years = np.arange(2000, 2101)
        d = discrepancy_draws(twin, result, years)
        sd = d.std(axis=0, ddof=1)
        lo, hi = np.quantile(d, [0.05, 0.95], axis=0)
        eta = twin.discrepancy.eta  # the declaration's prior (or value) of the marginal sd
        eta_draws = eta.sample(np.random.default_rng(seed), n_prior) if hasattr(eta, "sample") else np.array([eta])
        prior_sd = float(np.sqrt(np.mean(np.asarray(eta_draws, float) ** 2)))
        idx = [int(np.flatnonzero(years == h)[0]) for h in horizons]
        # drift of the model error away from its value at the last data year: what the data
        # cannot pin down grows with the horizon (the GP correlation decays)
        i0 = idx[0]
        drift = (d - d[:, [i0]]).std(axis=0, ddof=1)
        return {"horizons": [int(h) for h in horizons], "sd": [float(sd[i]) for i in idx],
                "drift_sd": [float(drift[i]) for i in idx],
                "q05": [float(lo[i]) for i in idx], "q95": [float(hi[i]) for i in idx],
                "prior_marginal_sd": prior_sd,
                "curve": {"year": years.tolist(), "sd": sd.tolist(), "drift_sd": drift.tolist(), "q05": lo.tolist(),
                          "q95": hi.tolist(), "median": np.median(d, axis=0).tolist()}}

    return fn


def sensitivity_contraction(twin: Any, *, n_prior: int = 20000):
    """Operate function: ECS and TCR, their prior-to-posterior contraction, consistency with AR6.

    Contraction ``1 - Var_post / Var_prior`` (Schad, Betancourt & Vasishth 2021) of ECS, log ECS
    and TCR, with the prior from the declaration's parameter priors; the ratio of the 5-95 %
    widths; whether the posterior median lies in the AR6 likely range (a consistency check with
    an external assessment, not a validation: the priors are centred near CMIP5 values).
    """
    def fn(result: Any, seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        prior = {p.name: p.prior.sample(rng, n_prior) for p in twin.parameters}
        post = E.draws_dict(result.posterior)
        out: dict[str, Any] = {}
        for name, f, rng_ in (("ecs", lambda d: F2X / d["lam"], ECS_LIKELY), ("tcr", tcr, TCR_LIKELY)):
            a, b = np.asarray(f(prior), float), np.asarray(f(post), float)
            qa, qb = _q(a), _q(b)
            out[name] = {"posterior_q": qb, "prior_q": qa, "median": qb[1],
                         "contraction": float(1 - np.var(b) / np.var(a)),
                         "contraction_log": float(1 - np.var(np.log(b)) / np.var(np.log(a))),
                         "width_ratio_90": float((qb[2] - qb[0]) / (qa[2] - qa[0])),
                         "ar6_likely": list(rng_),
                         "consistent_with_ar6": bool(rng_[0] <= qb[1] <= rng_[1])}
        return out

    return fn


def scenario_worlds(twin: Any, forcing: Forcing, threshold: float = THRESHOLD_C):
    """Operate function: 2100 warming in every forcing world (EBM + posterior discrepancy)."""
    def fn(result: Any, seed: int) -> dict[str, Any]:
        p = E.draws_dict(result.posterior)
        d = discrepancy_draws(twin, result, [2100.0])[:, 0]
        out = {}
        for name, f in forcing.worlds.items():
            w = E.anomaly_at(forcing.years, f, p, 2100)[:, 0] + d
            q = _q(w)
            out[name] = {"p5": q[0], "median": q[1], "p95": q[2],
                         "p_exceed": float(np.mean(w > threshold))}
        return {"worlds": out, "threshold": float(threshold)}

    return fn


class AssimilateBatches(Assimilate):
    """The library's :class:`~vvuq_twin.loop.Assimilate` on the stream batches ``batches`` only.

    Two such steps in a row assimilate a stream in stages, so that the twin can be re-validated
    between them (on the years after the first stage) and decide from all data at the end.
    """

    def __init__(self, name: str, *, batches: Sequence[int], **kw: Any) -> None:
        super().__init__(name, **kw)
        self.batch_ids = tuple(int(b) for b in batches)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "batches": list(self.batch_ids)}

    def _batches(self, ctx: LoopContext) -> list[tuple[str, Any]]:
        n = len(ctx.split.stream)
        bad = [b for b in self.batch_ids if not 0 <= b < n]
        if bad:
            raise LoopSpecError(f"Step {self.name!r}: stream batches {bad} do not exist (the stream has {n}).")
        return [(f"stream[{b}]", ctx.split.stream[b]) for b in self.batch_ids]
