"""Case-local loop steps of the tumor twin: per-mouse imaging decisions, the focus mouse.

The tumor loop decides, at a common decision day ``t_now`` when no mouse has yet passed the
burden threshold, for every mouse the latest next imaging day ``d`` with
``P(T < d) <= epsilon`` (``T``: the mouse's time-to-threshold of its true volume). A mouse for
which no day meets the constraint gets a decision, not NaN: *image now* (the constraint is
violated already at ``t_now``) or *already exceeded* (its volume has passed the threshold with
probability > 1/2). The realised exceedance rate of the decisions - the mouse's readings show the
threshold passed before the recommended day - is judged against its binomial band.

The focus mouse (the one whose decision the sensitivity, steering and re-decision study) is the
mouse whose next measurement carries the largest goal-oriented utility: the expected entropy
reduction of its own time-to-threshold (:func:`vvuq_twin.design.twin_design_utilities`), not
the widest interval. Its draws are diagnosed for multimodality (censoring at the horizon - for a
law with a carrying capacity, when the plateau lies below the threshold - and Sarle's bimodality
coefficient). A decision whose day lies after the last held-back reading (``validated_until``)
is flagged *extrapolating*: the twin's forecasts were never checked that far ahead.

The twin the decisions use is chosen by a stated rule (:func:`choose_twin`, step
:class:`ChooseTwin` of the selection loop) among candidate twins calibrated and judged on the
same split (:class:`CompareTwin`); :class:`Adopt` brings a candidate's calibration into the main
loop as a comparison without calibrating it again.

Steps here subclass the library steps; the QoI of the focus is set when the decision step has
run (its name carries the mouse), so resume fingerprints need no change in the library.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from vvuq_twin.loop import Decide, QoI, Sensitivity, Status, Steer, Step, Validate

from .loop import crossing_times, imaging_day, stack_draws

__all__ = ["bimodality_coefficient", "exceedance_band", "render_decision", "observed_crossing",
           "time_to_threshold_qoi", "imaging_rule", "MouseDecisions", "FocusSensitivity",
           "FocusSteer", "FocusDecide", "ValidateRest", "CompareTwin", "choose_twin", "twin_row",
           "ChooseTwin", "Adopt", "CHOICE_RULE"]


def _notes(caught: Sequence[Any]) -> list[str]:
    """Messages of the caught warnings about the twin and its data, sorted and unique.

    Warnings about the process's environment (PyTensor's BLAS notice, emitted once per process)
    are left out: they would make two runs with the same seed differ by the order they ran in.
    """
    return sorted({str(w.message) for w in caught if w.category.__name__ != "BLASWarning"})


def bimodality_coefficient(x: Any) -> float:
    """Sarle's bimodality coefficient ``(g^2 + 1) / (kappa + 3 (n-1)^2 / ((n-2)(n-3)))``.

    ``g`` is the sample skewness and ``kappa`` the sample excess kurtosis (bias-corrected). A
    normal sample gives about 1/3, a uniform 5/9; values above 5/9 point to two modes (a
    balanced two-point mixture tends to 1).
    """
    v = np.asarray(x, float).ravel()
    n = v.size
    if n < 4:
        raise ValueError(f"bimodality_coefficient needs at least 4 values, got {n}.")
    if np.ptp(v) == 0:
        return float("nan")
    g = stats.skew(v, bias=False)
    k = stats.kurtosis(v, bias=False)
    return float((g**2 + 1.0) / (k + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def exceedance_band(n: int, epsilon: float, alpha: float = 0.05) -> tuple[float, float]:
    """Central ``1 - alpha`` band of the realised violation rate of ``n`` decisions at level ``epsilon``.

    Under a calibrated twin each decision is violated with probability at most ``epsilon``; the
    number of violations is then (at most) Binomial(n, epsilon): its quantiles divided by ``n``.
    """
    if n < 1:
        raise ValueError("exceedance_band needs at least one judged decision.")
    return (float(stats.binom.ppf(alpha / 2, n, epsilon)) / n, float(stats.binom.ppf(1 - alpha / 2, n, epsilon)) / n)


def render_decision(p_now: float, feasible: bool, day: float) -> str:
    """The decision of one mouse as words: ``image by day d``, ``image now`` or ``already exceeded``."""
    if feasible:
        return f"image by day {day:.1f}"
    return "already exceeded" if p_now > 0.5 else "image now"


def observed_crossing(t: Any, v: Any, threshold: float) -> float:
    """First time the readings ``(t, v)`` pass ``threshold`` (log-linear interpolation between readings).

    NaN when no reading exceeds the threshold (not observed to cross); the first reading's time
    when it already exceeds it.
    """
    t, v = np.asarray(t, float), np.asarray(v, float)
    o = np.argsort(t)
    t, z = t[o], np.log(v[o])
    lt = np.log(threshold)
    above = np.flatnonzero(z >= lt)
    if above.size == 0:
        return float("nan")
    j = int(above[0])
    if j == 0:
        return float(t[0])
    return float(t[j - 1] + (lt - z[j - 1]) / (z[j] - z[j - 1]) * (t[j] - t[j - 1]))


def time_to_threshold_qoi(mouse: str, grid: Sequence[float], log_threshold: float, horizon: float) -> QoI:
    """The time-to-threshold of ``mouse``'s true log volume, one value per posterior draw."""
    g = np.asarray(grid, float)

    def fn(result: Any, seed: int) -> np.ndarray:
        from vvuq_twin import predict

        pred = predict(result, g, unit=[mouse] * g.size, rng=seed, include_y=False)
        z = pred["zeta"].transpose("chain", "draw", "obs").values
        return crossing_times(z, g, log_threshold, horizon)

    return QoI(f"T[{mouse}]", fn, f"days until mouse {mouse}'s true volume reaches exp({log_threshold:.3g}) mm³")


def imaging_rule(lower: float, epsilon: float, horizon: float, validated_until: float = float("inf")) -> Any:
    """Decision function for :class:`vvuq_twin.loop.Decide`: the chance-constrained imaging day.

    ``extrapolates`` is true when the day lies after ``validated_until`` (the last held-back
    reading): the forecast it rests on was never validated that far ahead.
    """

    def decide(q: np.ndarray, seed: int) -> dict[str, Any]:
        dec = imaging_day(q, epsilon, lower, horizon, rng=seed)
        p_now = float(np.mean(q <= lower))
        return {"lower": float(lower), "epsilon": float(epsilon), "imaging_day": float(dec.day),
                "closed_form_day": float(dec.closed_form_day), "feasible": bool(dec.feasible),
                "p_violation": float(dec.p_violation), "p_exceeded_now": p_now,
                "validated_until": float(validated_until),
                "extrapolates": bool(dec.feasible and dec.day > validated_until),
                "decision": render_decision(p_now, dec.feasible, dec.day)}

    return decide


class MouseDecisions(Step):
    """Imaging decision for every mouse at ``t_now``; realised violations; the focus mouse.

    Parameters
    ----------
    t_now : float
        The decision day (every calibration reading is at or before it).
    threshold, epsilon : float
        Burden threshold (mm³) and allowed probability of passing it before imaging.
    grid : sequence of float
        Time grid of the crossing times; ``horizon`` censors them.
    candidates : TwinData
        The next (held-back) reading of each mouse: where its goal-oriented utility is computed.
    readings : mapping of str to (times, volumes)
        Readings of each mouse (calibration and held back), from which the crossing of the
        threshold is read (log-linear interpolation) to judge the decisions.
    n_design_draws : int
        Posterior draws of the design utilities.
    validated_until : float
        Last day of the held-back readings: decisions after it are flagged ``extrapolates``.
    comparison : bool
        The decisions of a comparison twin: status RECORD (reported only), the realised rate's
        judgement kept in ``realised.status``.
    """

    kind = "decision"

    def __init__(self, name: str = "decisions", *, t_now: float, threshold: float, epsilon: float,
                 grid: Sequence[float], horizon: float, candidates: Any,
                 readings: Mapping[str, tuple[Sequence[float], Sequence[float]]], n_design_draws: int = 400,
                 source: str = "calibrate", needs: Sequence[str] | None = None,
                 validated_until: float = float("inf"), comparison: bool = False) -> None:
        super().__init__(name, needs=(source, "validate") if needs is None else needs)
        self.validated_until, self.comparison = float(validated_until), bool(comparison)
        self.t_now, self.threshold, self.epsilon = float(t_now), float(threshold), float(epsilon)
        self.grid, self.horizon = np.asarray(grid, float), float(horizon)
        self.candidates, self.readings, self.source = candidates, dict(readings), source
        self.n_design_draws = int(n_design_draws)

    def config(self) -> dict[str, Any]:
        return {"t_now": self.t_now, "threshold": self.threshold, "epsilon": self.epsilon,
                "grid": [float(self.grid[0]), float(self.grid[-1]), int(self.grid.size)], "horizon": self.horizon,
                "candidates": self.candidates.hash, "n_design_draws": self.n_design_draws,
                "validated_until": self.validated_until, "comparison": self.comparison, "readings": {m: [list(map(float, t)), list(map(float, v))] for m, (t, v) in sorted(self.readings.items())}}

    def run(self, ctx: Any) -> tuple[Any, Any]:
        import warnings

        from vvuq_twin import predict
        from vvuq_twin.design import twin_design_utilities

        res = ctx.output(self.source)
        seed = ctx.step_seed(self.name)
        g = np.random.default_rng(seed)
        mice = [str(u) for u in dict.fromkeys(np.asarray(res.data.unit).astype(str).tolist())]
        ng = self.grid.size
        pred = predict(res, np.tile(self.grid, len(mice)), unit=list(np.repeat(mice, ng)),
                       rng=int(g.integers(2**31)), include_y=False)
        n_chain, n_draw = int(res.posterior.sizes["chain"]), int(res.posterior.sizes["draw"])
        z = stack_draws(pred["zeta"]).reshape(n_chain * n_draw, len(mice), ng)
        T = crossing_times(z, self.grid, float(np.log(self.threshold)), self.horizon)
        cand_unit = np.asarray(self.candidates.unit).astype(str)
        rows, violations, notes = [], [], set()
        for j, m in enumerate(mice):
            dec = imaging_day(T[:, j], self.epsilon, self.t_now, self.horizon, rng=int(g.integers(2**31)))
            p_now = float(np.mean(T[:, j] <= self.t_now))
            t_obs = observed_crossing(*self.readings[m], self.threshold) if m in self.readings else float("nan")
            last = float(np.max(self.readings[m][0])) if m in self.readings else float("nan")
            # judged when the readings say whether the threshold was passed before the day
            judged = bool(dec.feasible and (np.isfinite(t_obs) or last >= dec.day))
            violated = bool(judged and np.isfinite(t_obs) and t_obs < dec.day)
            if judged:
                violations.append(violated)
            censored = float(np.mean(T[:, j] >= self.horizon))
            row = {"mouse": m, "decision": render_decision(p_now, dec.feasible, dec.day),
                   "feasible": bool(dec.feasible), "imaging_day": float(dec.day) if dec.feasible else None,
                   "extrapolates": bool(dec.feasible and dec.day > self.validated_until),
                   "p_violation": float(dec.p_violation), "p_exceeded_now": p_now,
                   "T_q05": float(np.quantile(T[:, j], 0.05)), "T_median": float(np.median(T[:, j])),
                   "T_q95": float(np.quantile(T[:, j], 0.95)), "T_censored_fraction": censored,
                   "T_bimodality": bimodality_coefficient(T[:, j]),
                   "observed_crossing": t_obs, "judged": judged, "violated": violated, "utility": None}
            k = np.flatnonzero(cand_unit == m)
            if dec.feasible and k.size and np.var(T[:, j]) > 0:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    u = twin_design_utilities(res, np.asarray(self.candidates.x, float)[k[:1]], unit=[m],
                                              target=T[:, j].reshape(n_chain, n_draw),
                                              n_draws=min(self.n_design_draws, n_chain * n_draw),
                                              rng=int(g.integers(2**31)))
                notes.update(f"mouse {m}: {msg}" for msg in _notes(caught))
                row["utility"] = float(u["utility"].values[0])
                row["utility_se"] = float(u["utility_se"].values[0])
            rows.append(row)
        open_rows = [r for r in rows if r["utility"] is not None]
        if not open_rows:
            raise RuntimeError(f"No mouse has an open decision at day {self.t_now:g}: every tumor is "
                               "already past the threshold; decide earlier or raise the threshold.")
        focus_row = max(open_rows, key=lambda r: (r["utility"], r["mouse"]))
        widest = max(open_rows, key=lambda r: (r["T_q95"] - r["T_q05"], r["mouse"]))
        n_j, n_v = len(violations), int(sum(violations))
        band = exceedance_band(n_j, self.epsilon) if n_j else (float("nan"), float("nan"))
        rate = n_v / n_j if n_j else float("nan")
        ok = bool(n_j and band[0] <= rate <= band[1])
        counts = {lab: sum(r["decision"].startswith(lab) for r in rows)
                  for lab in ("image by day", "image now", "already exceeded")}
        n_extra = sum(r["extrapolates"] for r in rows)
        vals = {"t_now": self.t_now, "threshold": self.threshold, "epsilon": self.epsilon, "mice": rows,
                "decision_counts": counts, "n_open": len(open_rows), "notes": sorted(notes),
                "validated_until": self.validated_until, "n_extrapolating": int(n_extra),
                "realised": {"n_judged": n_j, "n_violated": n_v, "rate": rate, "band": list(band),
                             "nominal": self.epsilon, "status": "PASS" if ok else ("FAIL" if n_j else "NOT INFORMATIVE")},
                "focus": focus_row["mouse"], "focus_utility": focus_row["utility"],
                "focus_utility_se": focus_row["utility_se"], "widest_interval_mouse": widest["mouse"],
                "focus_multimodality": {"bimodality_coefficient": focus_row["T_bimodality"],
                                        "censored_fraction": focus_row["T_censored_fraction"],
                                        "bimodal": bool(focus_row["T_bimodality"] > 5 / 9
                                                        or 0.02 < focus_row["T_censored_fraction"] < 0.98)}}
        st = Status.PASS if ok else (Status.FAIL if n_j else Status.NOT_INFORMATIVE)
        st = Status.RECORD if self.comparison else st
        why = (f"{counts['image by day']} open decisions, {counts['image now']} 'image now', "
               f"{counts['already exceeded']} 'already exceeded' at day {self.t_now:g}; realised violation "
               f"rate {n_v}/{n_j} against the binomial band [{band[0]:.2f}, {band[1]:.2f}] of epsilon = "
               f"{self.epsilon:g}; {n_extra} imaging days after the last validated day {self.validated_until:g} "
               f"(extrapolating); focus mouse {focus_row['mouse']} (largest goal-oriented utility).")
        return self._result(st, why, vals), {"focus": focus_row["mouse"]}

    def load(self, directory: Any, ctx: Any, result: Any) -> Any:
        return {"focus": result.values["focus"]}


class _FocusMixin:
    """Sets the step's QoI to the focus mouse's time-to-threshold when it runs."""

    def _focus_qoi(self, ctx: Any) -> QoI:
        d = ctx.results[self.focus_step].values
        return time_to_threshold_qoi(d["focus"], self.grid, float(np.log(d["threshold"])), self.horizon)


def _placeholder() -> QoI:
    return QoI("T[focus]", None, "time-to-threshold of the focus mouse (chosen by the decisions step)")


class FocusSensitivity(_FocusMixin, Sensitivity):
    """:class:`~vvuq_twin.loop.Sensitivity` of the focus mouse's time-to-threshold."""

    def __init__(self, name: str = "sensitivity", *, grid: Sequence[float], horizon: float,
                 focus_step: str = "decisions", **kw: Any) -> None:
        kw.setdefault("needs", ("calibrate", focus_step))
        super().__init__(name, qoi=_placeholder(), **kw)
        self.grid, self.horizon, self.focus_step = np.asarray(grid, float), float(horizon), focus_step

    def run(self, ctx: Any) -> tuple[Any, Any]:
        self.qoi = self._focus_qoi(ctx)
        return super().run(ctx)


class FocusSteer(_FocusMixin, Steer):
    """:class:`~vvuq_twin.loop.Steer` about the focus mouse's time-to-threshold."""

    def __init__(self, name: str = "steer", *, candidates: Any, grid: Sequence[float], horizon: float,
                 focus_step: str = "decisions", n_draws: int = 400) -> None:
        super().__init__(name, candidates=candidates, qoi=_placeholder(), n_draws=n_draws,
                         needs=("calibrate", "validate", focus_step))
        self.grid, self.horizon, self.focus_step = np.asarray(grid, float), float(horizon), focus_step

    def run(self, ctx: Any) -> tuple[Any, Any]:
        self.qoi = self._focus_qoi(ctx)
        return super().run(ctx)


class FocusDecide(_FocusMixin, Decide):
    """The focus mouse's imaging day (chance constraint) under the posterior of ``source``.

    With ``steer`` given, the lower bound of the day is the day of the steered measurement (time
    has moved on to it), else the decision step's ``t_now``.
    """

    def __init__(self, name: str, *, source: str, epsilon: float, grid: Sequence[float], horizon: float,
                 focus_step: str = "decisions", steer: str | None = None, needs: Sequence[str] | None = None,
                 validated_until: float = float("inf")) -> None:
        super().__init__(name, qoi=_placeholder(), decide=imaging_rule(0.0, epsilon, horizon, validated_until),
                         source=source, needs=needs, uses=("sensitivity",) + ((steer,) if steer else ()))
        self.validated_until = float(validated_until)
        self.grid, self.horizon, self.focus_step, self.steer = np.asarray(grid, float), float(horizon), focus_step, steer
        self.epsilon = float(epsilon)
        self.needs = tuple(dict.fromkeys((*self.needs, focus_step)))

    def run(self, ctx: Any) -> tuple[Any, Any]:
        self.qoi = self._focus_qoi(ctx)
        lower = float(ctx.results[self.focus_step].values["t_now"])
        if self.steer is not None and self.steer in ctx.results:
            step = next(s for s in ctx._steps if s.name == self.steer)
            best = int(ctx.results[self.steer].values["best"])
            lower = max(lower, float(np.asarray(step.candidates.x, float)[best, 0]))
        self.decide = imaging_rule(lower, self.epsilon, self.horizon, self.validated_until)
        return super().run(ctx)


class ValidateRest(Validate):
    """:class:`~vvuq_twin.loop.Validate` on the hold-out without the reading a steer step assimilated."""

    def __init__(self, name: str = "validate_after", *, steer: str = "steer", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.steer = steer
        self.uses = (steer,)

    def _data(self, ctx: Any) -> Any:
        ho = ctx.split.holdout
        step = next(s for s in ctx._steps if s.name == self.steer)
        c = step.candidates.subset([int(ctx.results[self.steer].values["best"])])
        keep = ~((np.asarray(ho.unit).astype(str) == str(c.unit[0])) & np.isclose(np.asarray(ho.x, float)[:, 0],
                                                                                     float(np.asarray(c.x)[0, 0])))
        return ho.subset(keep)


class CompareTwin(Step):
    """Calibrate a candidate declaration ``twin`` on the loop's split and judge it as :class:`Validate` does.

    Status RECORD: the figures - carrying capacity (where the law has one), sampler diagnostics,
    hold-out judgement and CRPS - are the evidence :class:`ChooseTwin` ranks the candidates by.
    Its output is the candidate's calibration (saved and restored on resume), so that a later
    step (or another loop, through :class:`Adopt`) can decide under it.
    """

    kind = "validation"

    def __init__(self, name: str = "compare_discrepancy", *, twin: Any, label: str, level: float = 0.9,
                 **calibrate_kwargs: Any) -> None:
        super().__init__(name)
        self.twin, self.label, self.level, self.kwargs = twin, label, float(level), calibrate_kwargs

    def config(self) -> dict[str, Any]:
        return {"twin": self.twin.hash, "label": self.label, "level": self.level,
                "kwargs": {k: repr(v) for k, v in sorted(self.kwargs.items())}}

    def compile_jobs(self, ctx: Any) -> list[tuple[Any, Any, dict[str, Any]]]:
        return [(self.twin, ctx.split.calibration, dict(self.kwargs))]

    def run(self, ctx: Any) -> tuple[Any, Any]:
        import warnings

        from vvuq_twin import calibrate, predict
        from vvuq_twin.validation import crps
        from vvuq_twin.validation.judge import judge_predictive

        seed = ctx.step_seed(self.name)
        res = calibrate(self.twin, ctx.split.calibration, rng=seed, warn=False, **self.kwargs)
        ho = ctx.split.holdout
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = predict(res, ho.x, unit=[str(u) for u in np.asarray(ho.unit)], rng=seed)
        d = pred["y"].stack(s=("chain", "draw")).transpose("s", ...).values
        d = d.reshape(d.shape[0], -1)
        j = judge_predictive(np.asarray(ho.y, float), d, level=self.level, rng=seed)
        has_k = "k" in res.posterior  # a growth law without a carrying capacity has none
        k = res.posterior["k"].values.ravel() if has_k else np.full(1, np.nan)
        diag = res.diagnostics
        vals = {"twin": self.label, "K_median_mm3": float(np.exp(np.median(k))) if has_k else None,
                "K_90_mm3": [float(v) for v in np.exp(np.quantile(k, [0.05, 0.95]))] if has_k else None,
                "k_90": [float(v) for v in np.quantile(k, [0.05, 0.95])] if has_k else None,
                "diagnostics_passed": bool(diag.passed), "diagnostics_failures": list(diag.failures),
                "validation": j.to_dict(), "crps": float(np.mean(crps(d, np.asarray(ho.y, float)))),
                "notes": _notes(caught)}
        kk = f"K = {vals['K_median_mm3']:.0f} mm³" if has_k else "no carrying capacity"
        return self._result(Status.RECORD, f"{self.label}: {kk}, validation "
                                           f"{j.status} ({j.bias.value:.0%} of held-back readings above the "
                                           "predictive median).", vals), res

    def save(self, obj: Any, directory: Any, ctx: Any) -> None:
        obj.to_netcdf(directory / "comparison.nc")

    def load(self, directory: Any, ctx: Any, result: Any) -> Any:
        from vvuq_twin.inference import load_result

        return load_result(directory / "comparison.nc", twin=self.twin, data=ctx.split.calibration)


#: The rule by which the loop chooses its twin among the candidates (:func:`choose_twin`).
CHOICE_RULE = ("sampler diagnostics PASS and, for a twin with a carrying capacity, the least-squares k inside its "
               "90% interval of k; then validation PASS preferred; then the lowest hold-out CRPS (the same "
               "hold-out judges and chooses, so the chosen twin's validation is not an independent test of the choice)")


def twin_row(label: str, k_q: Any, val: Mapping[str, Any], diag_passed: bool, crps: float) -> dict[str, Any]:
    """One candidate twin's figures; ``k_q`` = 5%, 50%, 95% quantiles of its posterior ``k`` (None: no K)."""
    lo, med, hi = (float(v) for v in k_q) if k_q is not None else (None, None, None)
    mb = val["median_bias"]
    return {"twin": label, "K_median_mm3": None if med is None else float(np.exp(med)),
            "K_90_mm3": None if lo is None else [float(np.exp(lo)), float(np.exp(hi))],
            "k_90": None if lo is None else [lo, hi], "diagnostics_passed": bool(diag_passed),
            "validation_status": val["status"], "median_bias": mb["value"], "median_bias_band": mb["band"],
            "median_bias_status": mb["status"], "coverage": val["coverage"]["value"],
            "pit_ks_p": val["pit_uniformity"]["p_value"], "crps": float(crps)}


def choose_twin(twins: Mapping[str, Mapping[str, Any]], k_fit: float) -> dict[str, Any]:
    """The twin the decisions should use, by the evidence of the sampler and of the hold-out (:data:`CHOICE_RULE`).

    A twin is *eligible* when its sampler diagnostics pass and its physical parameter stays
    identified: the independent least-squares ``k`` (no discrepancy) lies in its 90% interval of
    ``k`` (not applicable to a growth law without a carrying capacity, ``k_90`` None). Eligible
    twins whose hold-out validation passes rank first, then the other eligible ones, then the
    rest; within each group by hold-out CRPS. ``ranking`` lists every twin in that order and
    ``choice`` is its first.
    """
    if not twins:
        raise ValueError("choose_twin needs at least one candidate twin.")
    elig = sorted(n for n, t in twins.items() if t["diagnostics_passed"]
                  and (t["k_90"] is None or t["k_90"][0] <= k_fit <= t["k_90"][1]))
    passing = [n for n in elig if twins[n]["validation_status"] == "PASS"]
    ranking = sorted(twins, key=lambda n: (n not in elig, n not in passing, twins[n]["crps"], n))
    return {"choice": ranking[0], "ranking": ranking, "eligible": elig, "passing_validation": passing,
            "rule": CHOICE_RULE}


class ChooseTwin(Step):
    """Choose the loop's twin among the candidates judged by earlier :class:`CompareTwin` steps.

    Parameters
    ----------
    candidates : mapping of str to str
        Candidate name -> the name of its :class:`CompareTwin` step.
    k_fit : float
        The independent least-squares ``k`` (reduced Gompertz without discrepancy) that a twin
        with a carrying capacity must keep inside its 90% interval to be eligible.
    """

    kind = "validation"

    def __init__(self, name: str = "choose", *, candidates: Mapping[str, str], k_fit: float) -> None:
        super().__init__(name, uses=tuple(candidates.values()))
        self.candidates, self.k_fit = dict(candidates), float(k_fit)

    def config(self) -> dict[str, Any]:
        return {"candidates": self.candidates, "k_fit": self.k_fit}

    def run(self, ctx: Any) -> tuple[Any, Any]:
        twins = {}
        for kind, step in self.candidates.items():
            c = ctx.results[step].values
            k3 = None if c["k_90"] is None else [c["k_90"][0], float(np.log(c["K_median_mm3"])), c["k_90"][1]]
            twins[kind] = twin_row(c["twin"], k3, c["validation"], c["diagnostics_passed"], c["crps"])
        ch = choose_twin(twins, self.k_fit)
        why = (f"The evidence chooses {twins[ch['choice']]['twin']!r} (ranking {ch['ranking']}; eligible "
               f"{ch['eligible']}, validation PASS {ch['passing_validation']}).")
        return self._result(Status.RECORD, why, {"twins": twins, **ch}), ch["choice"]

    def load(self, directory: Any, ctx: Any, result: Any) -> Any:
        return result.values["choice"]


class Adopt(Step):
    """A :class:`CompareTwin` calibration of another (finished) loop, brought in as a comparison.

    The values and the calibration are those of step ``step`` of ``loop`` (a
    :class:`vvuq_twin.loop.LoopResult`); nothing is recalibrated. Status RECORD (reported only).
    """

    kind = "validation"

    def __init__(self, name: str, *, loop: Any, step: str, twin: Any) -> None:
        super().__init__(name)
        if step not in loop.results:
            raise ValueError(f"Adopt: loop {loop.name!r} has no step {step!r} (steps: {list(loop.results)}).")
        self.loop, self.step, self.twin = loop, step, twin

    def config(self) -> dict[str, Any]:
        import hashlib
        import json

        from vvuq_twin.loop.status import jsonable

        vals = json.dumps(jsonable(self.loop.results[self.step].values), sort_keys=True, default=str)
        return {"loop": self.loop.name, "step": self.step, "twin": self.twin.hash,
                "values": hashlib.sha256(vals.encode()).hexdigest()}

    def run(self, ctx: Any) -> tuple[Any, Any]:
        r = self.loop.results[self.step]
        return (self._result(Status.RECORD, f"From step {self.step!r} of loop {self.loop.name!r}: {r.reason}",
                             r.values), self.loop.objects[self.step])

    def save(self, obj: Any, directory: Any, ctx: Any) -> None:
        obj.to_netcdf(directory / "comparison.nc")

    def load(self, directory: Any, ctx: Any, result: Any) -> Any:
        from vvuq_twin.inference import load_result

        return load_result(directory / "comparison.nc", twin=self.twin, data=ctx.split.calibration)
