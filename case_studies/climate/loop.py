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
- :class:`AssimilateBatches` -- the library's Assimilate step on chosen batches of the stream;
- :func:`ar1_forecast` and :class:`ForecastValidate` -- the forecast from the last observed year
  (the origin) with the AR(1) state there propagated (``e_t = phi e_{t-1} + sd w_t`` from the
  origin's residual), judged like :class:`~vvuq_twin.loop.Validate`, with per-year CRPS;
- :func:`paired_crps` and :class:`CompareCRPS` -- CRPS after minus before on the same target
  years, its mean, the standard error over years and the Monte Carlo error of the CRPS
  estimates, and a one-sided test that the forecast got worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vvuq_twin.loop import Assimilate, LoopContext, LoopSpecError, QoI, Status, Step, Validate

from . import emulator as E
from .declaration import F2X

__all__ = ["Forcing", "forcing_path", "discrepancy_draws", "Warming2100", "warming_qoi",
           "critical_scale_qoi", "path_decision", "discrepancy_growth", "sensitivity_contraction",
           "scenario_worlds", "tcr", "AssimilateBatches", "ar1_forecast", "ar1_paths", "ForecastValidate",
           "paired_crps", "CompareCRPS", "noise_and_enso", "min_informative_n",
           "rolling_origin_crps", "lfo_resample", "ROLLING_ORIGINS", "ECS_LIKELY", "TCR_LIKELY",
           "THRESHOLD_C", "MAX_PROB", "S_BOUNDS", "HORIZONS"]

#: IPCC AR6 WG1 likely ranges (K) of equilibrium climate sensitivity and transient response.
ECS_LIKELY = (2.5, 4.0)
TCR_LIKELY = (1.4, 2.2)
#: Warming threshold (°C vs 1850-1900) and the allowed probability of exceeding it in 2100.
THRESHOLD_C = 2.0
MAX_PROB = 0.33
#: Bounds of the forcing-path scale ``s``.
S_BOUNDS = (-1.0, 1.5)
#: Forecast origins of the rolling-origin evaluation inside the calibration record: the twin
#: at ``o - 5`` (before) and at ``o`` (after) forecast ``o+1 .. o+5``.
ROLLING_ORIGINS = (1992, 1997, 2002, 2007)
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
                "n_draws": int(n), "n_at_scale": int(np.sum(s_sorted == s_star)),
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


def noise_and_enso(twin: Any):
    """Operate function: posterior of the ENSO regression coefficient and the AR(1) noise.

    ``beta_enso`` (°C of global temperature per °C of the lagged Niño-3.4 index; absent without
    the regressor), ``phi_obs`` and ``sigma_obs`` (innovation sd): mean, sd and 5/50/95 %.
    """
    def fn(result: Any, seed: int) -> dict[str, Any]:
        post = result.posterior
        out: dict[str, Any] = {}
        regressors = [n for n in twin.parameter_names if n not in E.EBM_PARAMS]
        for k in (*regressors, *twin.observation.NOISE_VARS.values()):
            if k in post:
                v = np.asarray(post[k].values, float).ravel()
                out[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "q": _q(v)}
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


# --------------------------------------------------------------------------- forecasts
def _latent_and_noise(twin: Any, result: Any, x: np.ndarray, seed: int):
    """Posterior draws of the noise-free temperature ``zeta`` (S, len(x)) at the years ``x``, the
    observation model's noise values and scale per draw, and the AR(1) coefficient per draw
    (zeros for independent noise)."""
    from vvuq_twin.inference import predict

    pred = predict(result, x, include_y=False, rng=seed, domain=None, progressbar=False)
    zeta = pred["zeta"].stack(s=("chain", "draw")).transpose("s", ...).values.reshape(-1, x.size)
    n = zeta.shape[0]
    draws = twin.draws_from(result.posterior, twin.free_variable_names())
    noise = twin.observation.noise_values(draws, n)
    sd = twin.observation.scale_numpy(noise, zeta, None, None)
    phi = np.asarray(noise.get("phi", np.zeros(n)), float).reshape(-1)
    return zeta, noise, sd, phi


def ar1_forecast(result: Any, years: Sequence[float], seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Predictive draws of the observations at ``years`` from the last observed year before them.

    With AR(1) residuals the predictive conditions on the state at the forecast origin: the
    origin ``t0`` is the last year of ``result.data`` before the first target year, its residual
    ``e_0 = y_{t0} - zeta_{t0}`` per draw, and ``e_t = phi e_{t-1} + sd w_t`` is simulated to the
    last target (``zeta`` = EBM + regressors + the draw's discrepancy, from
    :func:`vvuq_twin.predict`). With independent noise (no ``phi``) the origin has no effect.

    Returns
    -------
    y : ndarray, shape (n_draws, len(years))
    info : dict
        ``origin`` (year), ``origin_residual`` (posterior mean and sd), ``phi`` (posterior mean).
    """
    twin, hist = result.twin, result.data
    years = np.asarray(years, float).ravel()
    xh = np.asarray(hist.x, float)[:, 0]
    before = np.flatnonzero(xh < years.min())
    if before.size == 0:
        raise LoopSpecError(f"No observed year before the forecast years (first {years.min():g}) in the twin's data.")
    i0 = int(before[np.argmax(xh[before])])
    t0, y0 = float(xh[i0]), float(np.asarray(hist.y, float)[i0])
    path = np.arange(t0, years.max() + 1.0)
    if not np.all(np.isin(years, path)):
        raise LoopSpecError("ar1_forecast needs whole calendar years after the origin.")
    zeta, noise, sd, phi = _latent_and_noise(twin, result, path, seed)
    e0 = y0 - zeta[:, 0]
    e = ar1_paths(e0, phi, sd[:, 1:], np.random.default_rng(seed))
    y = zeta[:, 1:] + e
    cols = np.searchsorted(path[1:], years)
    return y[:, cols], {"origin": int(t0), "origin_residual": [float(e0.mean()), float(e0.std(ddof=1))],
                        "phi": float(phi.mean())}


def ar1_paths(e0: np.ndarray, phi: np.ndarray, sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AR(1) residuals ``e_k = phi e_{k-1} + sd_k w_k`` for k = 1..K from ``e_0`` (per draw).

    ``e0``, ``phi``: shape (n,); ``sd``: (n, K). Given ``e_0``, ``e_k`` is normal with mean
    ``phi^k e_0`` and, for constant ``sd``, variance ``sd^2 (1 - phi^{2k}) / (1 - phi^2)``.
    """
    e0, phi, sd = np.asarray(e0, float), np.asarray(phi, float), np.asarray(sd, float)
    e = np.empty_like(sd)
    prev = e0
    for k in range(sd.shape[1]):
        prev = phi * prev + sd[:, k] * rng.standard_normal(e0.shape[0])
        e[:, k] = prev
    return e


class ForecastValidate(Validate):
    """:class:`~vvuq_twin.loop.Validate` of a forecast from the last observed year (:func:`ar1_forecast`).

    The library step draws AR(1) residuals from their stationary law at the first hold-out
    point; a twin with persistent residuals that knows the residual of the year before
    predicts the next years from it. Same judges and figures, plus the per-year CRPS
    (``values["crps_points"]``) and its Monte Carlo standard error (``crps_mc_se``) for
    :class:`CompareCRPS`.
    """

    def run(self, ctx: LoopContext):
        from vvuq_twin.validation import crps
        from vvuq_twin.validation.judge import judge_predictive

        data = self._data(ctx)
        res = ctx.output(self.source)
        seed = ctx.step_seed(self.name)
        x = np.asarray(data.x, float)[:, 0]
        y_obs = np.asarray(data.y, float)
        y_draws, info = ar1_forecast(res, x, seed)
        j = judge_predictive(y_obs, y_draws, level=self.level, alpha=self.alpha, deficit=self.deficit,
                             shift=self.shift, band=self.band, rng=seed)
        lo, hi = np.quantile(y_draws, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
        c = np.asarray(crps(y_draws, y_obs), float)
        c_se = _crps_mc_se(y_draws, y_obs)
        xh = np.asarray(res.data.x, float)[:, 0]
        n_out = int(np.sum((x < xh.min()) | (x > xh.max())))  # beyond the years the twin has seen
        vals = {**j.to_dict(), "n_points": int(y_obs.size), "level": self.level, "n_out_of_domain": n_out,
                "crps": float(c.mean()), "crps_points": c.tolist(), "crps_mc_se": c_se.tolist(),
                "years": [int(v) for v in x], "forecast": info,
                "points": {"y": y_obs.tolist(), "lower": lo.tolist(), "upper": hi.tolist(),
                           "median": np.median(y_draws, axis=0).tolist(), "pit": j.pit.tolist()}}
        st = {"PASS": Status.PASS, "FAIL": Status.FAIL}.get(j.status, Status.NOT_INFORMATIVE)
        parts = [f"Forecast from {info['origin']} with its AR(1) residual propagated", j.coverage.note,
                 j.bias.note, f"PIT uniformity (KS) {j.uniformity['status']}"]
        if n_out:
            parts.append(f"{n_out} of {y_obs.size} points lie after the twin's data (a forecast: extrapolation in time)")
        reason = " ".join(p if p.endswith(".") else p + "." for p in parts)
        if st is Status.FAIL:
            vals["failures"] = [c_.note for c_ in (j.coverage, j.bias) if c_.status == "FAIL"] + (
                ["PIT values are not uniform (KS)"] if j.uniformity["status"] == "FAIL" else [])
        return self._result(st, reason, vals), j


def _crps_mc_se(y_draws: np.ndarray, y_obs: np.ndarray, n_split: int = 10) -> np.ndarray:
    """Monte Carlo standard error of each point's CRPS estimate (batch means over draw splits)."""
    from vvuq_twin.validation import crps

    parts = np.array_split(np.arange(y_draws.shape[0]), n_split)
    b = np.array([np.asarray(crps(y_draws[p], y_obs), float) for p in parts])
    return b.std(axis=0, ddof=1) / np.sqrt(n_split)


def paired_crps(before: Sequence[float], after: Sequence[float], *, mc_se_before: Sequence[float] | None = None,
                mc_se_after: Sequence[float] | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """CRPS after minus before on the same target years: mean, standard error, one-sided test.

    ``d_t = CRPS_after(t) - CRPS_before(t)``; the mean's standard error over years is
    ``sd(d) / sqrt(n)`` (years treated as exchangeable; with AR(1) residuals of lag-one
    correlation ~0.3 it is somewhat optimistic), and the Monte Carlo error of the CRPS
    estimates adds ``sqrt(sum(se_b^2 + se_a^2)) / n``. The forecast is judged *worse* when the
    lower ``1 - alpha`` one-sided bound of the mean difference (Student t, n - 1 d.o.f.) is
    above 0, and *no worse* otherwise; ``upper`` is the matching upper bound (how much worse
    it could be).
    """
    from scipy import stats

    b, a = np.asarray(before, float), np.asarray(after, float)
    if b.shape != a.shape or b.ndim != 1 or b.size < 2:
        raise ValueError(f"before and after must be 1-D of the same length >= 2, got {b.shape} and {a.shape}.")
    d = a - b
    n = d.size
    se_years = float(d.std(ddof=1) / np.sqrt(n))
    se_mc = 0.0
    if mc_se_before is not None and mc_se_after is not None:
        se_mc = float(np.sqrt(np.sum(np.asarray(mc_se_before, float) ** 2 + np.asarray(mc_se_after, float) ** 2)) / n)
    se = float(np.hypot(se_years, se_mc))
    q = float(stats.t.ppf(1 - alpha, n - 1))
    mean = float(d.mean())
    lower, upper = mean - q * se, mean + q * se
    return {"differences": d.tolist(), "mean_difference": mean, "se": se, "se_years": se_years, "se_mc": se_mc,
            "lower": lower, "upper": upper, "alpha": float(alpha), "n": int(n),
            "ratio": float(a.mean() / b.mean()), "worse": bool(lower > 0.0),
            "t": float(mean / se) if se > 0 else float("inf")}


class CompareCRPS(Step):
    """CRPS after assimilation against before, on the same target years (:func:`paired_crps`).

    FAIL when the forecast is significantly worse (lower one-sided ``1 - alpha`` bound of the
    mean paired difference above 0); otherwise WARN when the point ratio of the mean CRPS
    after/before exceeds ``max_ratio`` (a difference the years cannot resolve, reported, not
    hidden) and PASS when it does not. The reason states the upper bound too: how much worse
    the forecast could be without the test noticing (with five target years, a lot).
    """

    kind = "validation"

    def __init__(self, name: str = "crps_before_after", *, before: str = "validate_late",
                 after: str = "revalidate", alpha: float = 0.05, max_ratio: float = 1.05,
                 needs: Sequence[str] = ("calibrate", "assimilate")) -> None:
        # gated by the posteriors the two forecasts come from; the two validations are only read
        # (their coverage judgement, NOT INFORMATIVE on 5 points, does not bear on the CRPS)
        super().__init__(name, needs=tuple(needs), uses=(before, after))
        self.before, self.after, self.alpha, self.max_ratio = before, after, float(alpha), float(max_ratio)

    def config(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "alpha": self.alpha, "max_ratio": self.max_ratio}

    def run(self, ctx: LoopContext):
        vb, va = ctx.results[self.before].values, ctx.results[self.after].values
        if vb.get("years") != va.get("years"):
            raise LoopSpecError(f"Step {self.name!r}: {self.before!r} and {self.after!r} judge different years.")
        out = {**paired_crps(vb["crps_points"], va["crps_points"], mc_se_before=vb["crps_mc_se"],
                             mc_se_after=va["crps_mc_se"], alpha=self.alpha),
               "years": vb["years"], "crps_before": vb["crps"], "crps_after": va["crps"],
               "max_ratio": self.max_ratio}
        st = (Status.FAIL if out["worse"] else Status.WARN if out["ratio"] > self.max_ratio else Status.PASS)
        why = (f"CRPS of {vb['years'][0]}-{vb['years'][-1]}: {vb['crps']:.4f} before, {va['crps']:.4f} after "
               f"(ratio {out['ratio']:.3f}, limit {self.max_ratio}); mean paired difference "
               f"{out['mean_difference']:+.4f} +- {out['se']:.4f} (SE over {out['n']} years and Monte Carlo), "
               f"one-sided {1 - self.alpha:.0%} bounds [{out['lower']:+.4f}, {out['upper']:+.4f}]: "
               + ("significantly worse." if out["worse"] else
                  f"not significantly worse (the {out['n']} years cannot exclude a degradation up to "
                  f"{out['upper']:+.4f}, {out['upper'] / vb['crps']:.0%} of the CRPS before)."))
        return self._result(st, why, out), out


def min_informative_n(level: float = 0.9, alpha: float = 0.05, deficit: float = 0.2, shift: float = 0.25,
                      n_max: int = 500) -> int:
    """Smallest hold-out size from which the binomial coverage and median-bias bands of
    :mod:`vvuq_twin.validation.judge` are informative for every larger size (independent points).

    Coverage: the lower ``alpha/2`` binomial quantile of ``n`` points at ``level``, over ``n``,
    exceeds ``level - deficit``; median bias: the central ``1 - alpha`` binomial band at 0.5
    lies inside ``(0.5 - shift, 0.5 + shift)``. Correlated points (AR(1) residuals, a shared
    discrepancy) need more.
    """
    from scipy import stats

    def ok(n: int) -> bool:
        cov = stats.binom.ppf(alpha / 2, n, level) / n > level - deficit
        lo, hi = stats.binom.ppf(alpha / 2, n, 0.5) / n, stats.binom.ppf(1 - alpha / 2, n, 0.5) / n
        return bool(cov and lo > 0.5 - shift and hi < 0.5 + shift)

    flags = [ok(n) for n in range(1, int(n_max) + 1)]
    if not flags[-1]:
        raise ValueError(f"The bands are not informative even with {n_max} points.")
    n0 = int(n_max)
    while n0 > 1 and flags[n0 - 2]:
        n0 -= 1
    return n0


def rolling_origin_crps(twin: Any, origins: Sequence[int] = ROLLING_ORIGINS, *, block: int = 5,
                        k_max: float = 0.7):
    """Operate function: CRPS before/after assimilation at earlier forecast origins (PSIS-LFO).

    Approximate leave-future-out (Bürkner, Gabry & Vehtari 2020): the posterior given the
    record up to year ``c`` is the calibration posterior reweighted by
    ``1 / p(y_{c+1..end} | theta)`` (the AR(1) conditional densities of the declaration's
    observation model, whose sum over a record is its joint density), Pareto-smoothed
    (:func:`arviz.psislw`) and resampled. For each origin ``o``, the twin at ``o - block``
    (before) and at ``o`` (after assimilating ``o-block+1 .. o``) forecast ``o+1 .. o+block``
    from their last observed year with the AR(1) state propagated (:func:`ar1_paths`); the
    pair is used only when both Pareto k-hat are at most ``k_max`` (else a refit would be
    needed, and the pair is reported as dropped).
    """
    def fn(result: Any, seed: int) -> dict[str, Any]:
        from vvuq_twin.validation import crps

        data = result.data
        x = np.asarray(data.x, float)[:, 0]
        y = np.asarray(data.y, float)
        zeta, noise, sd, phi = _latent_and_noise(twin, result, x, seed)
        ll = np.asarray(twin.observation.logpdf(y, zeta, sd, noise), float)
        rng = np.random.default_rng(seed)
        pairs, dropped = [], []
        for o in origins:
            tgt = np.flatnonzero((x > o) & (x <= o + block))
            if tgt.size != block:
                raise LoopSpecError(f"Rolling origin {o}: the calibration record lacks {o + 1}-{o + block}.")
            stat: dict[str, Any] = {}
            for name, c in (("before", o - block), ("after", o)):
                idx, k, ess = lfo_resample(ll[:, x > c], rng)
                i0 = int(np.flatnonzero(x == c)[0])
                e0 = y[i0] - zeta[idx, i0]
                k_path = np.arange(i0 + 1, tgt[-1] + 1)
                e = ar1_paths(e0, phi[idx], sd[idx][:, k_path], rng)
                yd = zeta[idx][:, k_path] + e
                yd = yd[:, np.searchsorted(k_path, tgt)]
                stat[name] = {"k_hat": k, "crps": np.asarray(crps(yd, y[tgt]), float).tolist(), "ess": ess}
            rec = {"origin": int(o), "years": [int(v) for v in x[tgt]],
                   **{f"{a}_{b}": stat[a][b] for a in ("before", "after") for b in ("k_hat", "crps", "ess")}}
            (pairs if max(stat["before"]["k_hat"], stat["after"]["k_hat"]) <= k_max else dropped).append(rec)
        pooled = None
        if pairs:
            pooled = paired_crps([v for p in pairs for v in p["before_crps"]],
                                 [v for p in pairs for v in p["after_crps"]]) if len(pairs) * block >= 2 else None
        return {"pairs": pairs, "dropped": dropped, "pooled": pooled, "k_max": float(k_max), "block": int(block),
                "method": "PSIS leave-future-out from the calibration posterior (Buerkner et al. 2020)"}

    return fn


def lfo_resample(ll_future: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Draws of the posterior without the future years, by Pareto-smoothed importance sampling.

    ``ll_future`` (n_draws, n_future): each draw's log-density of the years to remove; the
    log weights are ``-sum``, smoothed by :func:`arviz.psislw`. Returns the resampled draw
    indices, Pareto k-hat (reliable at <= 0.7) and the effective sample size of the weights.
    """
    import arviz as az

    raw = -np.asarray(ll_future, float).sum(axis=1)
    if np.ptp(raw) < 1e-12:  # nothing to remove: equal weights (psislw cannot fit a constant tail)
        return rng.choice(raw.size, size=raw.size), 0.0, float(raw.size)
    lw, k = az.psislw(raw)
    w = np.exp(lw - lw.max())
    w = w / w.sum()
    n = w.size
    return rng.choice(n, size=n, p=w), float(k), float(1.0 / np.sum(w**2))
