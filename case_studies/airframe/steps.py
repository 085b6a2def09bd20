"""Case-local steps of the airframe loop (:mod:`vvuq_twin.loop` Step subclasses).

- :class:`Monotonicity` - the twin is physically possible: ``N(a)`` strictly increasing over
  all measured crack lengths, for every posterior draw, every calibrated specimen and a new
  panel drawn from the population (violations must be 0);
- :class:`PopulationValidate` - the *population* predictive (a new specimen's cycles to each
  crack length) judged on the held-out specimens: each held-out specimen is one independent
  realisation, so the count inside the 90 % interval at 49.8 mm has an exact binomial band;
- :class:`InspectionDecide` - the 1e-4 failure-probability inspection interval of a new panel
  with an independent Monte Carlo check, refusing to call a decision "in domain" when the
  critical length lies beyond the calibrated crack lengths;
- :class:`AirframeAssimilate` - :class:`vvuq_twin.loop.Assimilate` with the full move
  diagnostics of every update (kernel, acceptance, moves, mixing) and the coherence figures
  (posterior sd of the population parameters before and after).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import stats

from vvuq_twin.loop import Assimilate, LoopContext, Status, Step, StepResult

from .decision import (CYCLES_SCALE, POPULATION_NAMES, FailureProbability, LifeModel,
                       mixture_quantile, monotonicity_violations, monte_carlo_failure_probability)
from .twin import A0, SHAPE_NAMES

__all__ = ["population_theta", "NotRun", "Monotonicity", "PopulationValidate", "InspectionDecide",
           "AirframeAssimilate", "TARGET_PF", "PF_CONFIDENCE"]

#: Chance constraint of the inspection decision.
TARGET_PF = 1.0e-4
#: Confidence with which the constraint must hold against the estimator's Monte Carlo error.
PF_CONFIDENCE = 0.95


def _flat(post: Any, name: str) -> np.ndarray:
    return post[name].transpose("chain", "draw", ...).values.reshape(-1, *post[name].shape[2:])


def unit_values(post: Any, name: str) -> np.ndarray:
    """Per-specimen values (n_draws, n_units) of per-unit parameter ``name`` (identity link):
    stored as such, as the centred ``<name>_lin`` or from the non-centred ``<name>_z``."""
    if name in post:
        return _flat(post, name)
    if f"{name}_lin" in post:
        return _flat(post, f"{name}_lin")
    return _flat(post, f"{name}_mu")[:, None] + _flat(post, f"{name}_sigma")[:, None] * _flat(post, f"{name}_z")


def population_theta(result: Any) -> np.ndarray:
    """Population draws ``theta`` (n_draws, 8) in :data:`POPULATION_NAMES` order."""
    post = result.posterior
    [noise] = result.twin.observation.noise_names()
    cols = [_flat(post, k) for k in POPULATION_NAMES[:4]] + [_flat(post, k) for k in SHAPE_NAMES]
    return np.column_stack(cols + [_flat(post, noise)])


class NotRun(Step):
    """A step the loop deliberately leaves out in this mode: NOT APPLICABLE, with the reason (so
    the summary and the report say so, never a silent omission)."""

    def __init__(self, name: str, *, kind: str, reason: str) -> None:
        super().__init__(name)
        self.kind, self.why = kind, str(reason)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.why}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        return self._result(Status.NOT_APPLICABLE, self.why, {"run": False}), None


class Monotonicity(Step):
    """``N(a)`` increasing in every draw: specimens of the source's posterior and new panels."""

    kind = "verification"

    def __init__(self, name: str = "monotonicity", *, life: LifeModel, lengths: Sequence[float],
                 source: str = "calibrate", **kw: Any) -> None:
        kw.setdefault("needs", (source,))
        super().__init__(name, **kw)
        self.life, self.source = life, source
        self.lengths = np.asarray(sorted(float(a) for a in lengths if a > A0))

    def config(self) -> dict[str, Any]:
        return {"source": self.source, "lengths": self.lengths.tolist(), "n_steps": self.life.n_steps,
                "rule": self.life.rule}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        res = ctx.output(self.source)
        post, th = res.posterior, population_theta(res)
        g = np.random.default_rng(ctx.step_seed(self.name))
        lc_new = th[:, 0] + th[:, 2] * g.standard_normal(th.shape[0])
        m_new = th[:, 1] + th[:, 3] * g.standard_normal(th.shape[0])
        a = self.lengths[None, :]
        lc_s, m_s = unit_values(post, "log10_C"), unit_values(post, "m")  # (S, n_spec)
        # column 0: a new panel from the population; then every calibrated specimen
        curves = self.life.curves(self.lengths, np.column_stack([lc_new, lc_s]), np.column_stack([m_new, m_s]),
                                  th[:, 4:7])
        new, spec = curves[:, 0], curves[:, 1:]
        v_new = monotonicity_violations(new)
        v_spec = monotonicity_violations(spec.reshape(-1, a.size))
        vals = {"n_draws": int(th.shape[0]), "n_specimens": int(lc_s.shape[1]), "n_lengths": int(a.size),
                "length_range_mm": [float(a.min()), float(a.max())], "violations_new_panel": v_new,
                "violations_specimens": v_spec, "violations": v_new + v_spec,
                "min_increment_cycles": float(min(np.diff(new, axis=-1).min(), np.diff(spec, axis=-1).min()))}
        ok = vals["violations"] == 0
        why = (f"N(a) increases strictly over {a.size} crack lengths in all {th.shape[0]} draws "
               f"(new panels and {lc_s.shape[1]} specimens)." if ok else
               f"{vals['violations']} draw curves have N(a) decreasing somewhere: physically impossible.")
        return self._result(Status.PASS if ok else Status.FAIL, why, vals), None


class PopulationValidate(Step):
    """The population predictive of a new specimen against held-out specimens.

    ``holdout`` is (n_specimens, n_lengths) in 1e5 cycles at ``lengths``. The gate is the
    judgement (:func:`vvuq_twin.validation.judge_predictive`, exact binomial band) at the last
    length (the decision's critical length): coverage of the 90 % interval, median bias, PIT
    uniformity. Coverage at every length is reported with its binomial band.
    """

    kind = "validation"

    def __init__(self, name: str = "validate", *, holdout: np.ndarray, lengths: Sequence[float],
                 specimens: Sequence[str], source: str = "calibrate", level: float = 0.9,
                 alpha: float = 0.05, **kw: Any) -> None:
        kw.setdefault("needs", (source,))
        super().__init__(name, **kw)
        self.holdout, self.lengths = np.asarray(holdout, float), [float(a) for a in lengths]
        self.specimens, self.source, self.level, self.alpha = list(specimens), source, float(level), float(alpha)

    def config(self) -> dict[str, Any]:
        return {"holdout": self.holdout.round(8).tolist(), "lengths": self.lengths, "specimens": self.specimens,
                "source": self.source, "level": self.level, "alpha": self.alpha}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from vvuq_twin import predict
        from vvuq_twin.validation.judge import judge_predictive

        seed = ctx.step_seed(self.name)
        # domain=None: the lengths lie inside the calibrated ones (checked by the decision step);
        # the unit is a new specimen, so no per-specimen domain applies
        pred = predict(ctx.output(self.source), np.asarray(self.lengths), unit="new", rng=seed, domain=None)
        d = pred["y"].stack(s=("chain", "draw")).transpose("s", "obs").values  # (S, n_len)
        g = np.random.default_rng(seed)
        n_spec, S = self.holdout.shape[0], d.shape[0]
        # each held-out specimen is an independent new panel: its own (permuted) predictive draws
        cols = np.stack([d[g.permutation(S), -1] for _ in range(n_spec)], axis=1)
        j = judge_predictive(self.holdout[:, -1], cols, level=self.level, alpha=self.alpha, band="binomial", rng=seed)
        lo, hi = np.quantile(d, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
        inside = (self.holdout >= lo) & (self.holdout <= hi)
        k_lo, k_hi = (stats.binom.ppf(q, n_spec, self.level) for q in (self.alpha / 2, 1 - self.alpha / 2))
        per_length = [{"length_mm": a, "inside": int(inside[:, i].sum()), "n": n_spec,
                       "coverage": float(inside[:, i].mean()), "lower": float(lo[i] * CYCLES_SCALE),
                       "median": float(np.median(d[:, i]) * CYCLES_SCALE), "upper": float(hi[i] * CYCLES_SCALE),
                       "in_band": bool(k_lo <= inside[:, i].sum() <= k_hi)} for i, a in enumerate(self.lengths)]
        vals = {**j.to_dict(), "n_holdout_specimens": n_spec, "level": self.level, "critical_length_mm": self.lengths[-1],
                "inside_at_critical": int(inside[:, -1].sum()), "coverage_at_critical": float(inside[:, -1].mean()),
                "band_count": [int(k_lo), int(k_hi)], "band": [float(k_lo / n_spec), float(k_hi / n_spec)],
                "coverage_all_lengths": float(inside.mean()), "per_length": per_length,
                "lengths_in_band": int(sum(r["in_band"] for r in per_length)),
                "points": {"y": (self.holdout[:, -1] * CYCLES_SCALE).tolist(), "pit": j.pit.tolist(),
                           **{k: [per_length[-1][k]] * n_spec for k in ("lower", "median", "upper")}}}
        st = {"PASS": Status.PASS, "FAIL": Status.FAIL}.get(j.status, Status.NOT_INFORMATIVE)
        reason = (f"{vals['inside_at_critical']} of {n_spec} held-out specimens inside the {self.level:.0%} "
                  f"population interval at {self.lengths[-1]} mm (binomial 95% band {int(k_lo)}-{int(k_hi)}); "
                  f"{j.coverage.note} {j.bias.note} PIT uniformity (KS) {j.uniformity['status']}.")
        if st is Status.FAIL:
            vals["failures"] = [c.note for c in (j.coverage, j.bias) if c.status == "FAIL"] + (
                ["PIT values are not uniform (KS)"] if j.uniformity["status"] == "FAIL" else [])
            vals["advice"] = ["revise the population model (between-specimen scatter, C-m correlation) "
                              "and recalibrate; do not decide from this twin"]
        return self._result(st, reason, vals), d


class InspectionDecide(Step):
    """The longest inspection interval (multiple of 1000 cycles) with
    ``P(crack reaches a_crit before it) <= TARGET_PF`` at ``PF_CONFIDENCE``.

    The failure probability is the exact-draw quadrature (mean over posterior draws of
    :func:`conditional_failure_probability`) with its Monte Carlo standard error over draws;
    the chosen interval is checked by plain Monte Carlo (:func:`monte_carlo_failure_probability`).
    The step WARNs loudly when ``a_crit`` lies beyond the calibrated crack lengths.
    """

    kind = "decision"

    def __init__(self, name: str = "decide", *, life: LifeModel, a_crit: float, source: str = "calibrate",
                 validate: str = "validate", n_mc: int = 2_000_000, stress_ranges: dict[str, float] | None = None,
                 **kw: Any) -> None:
        kw.setdefault("needs", (source, validate))
        super().__init__(name, **kw)
        self.life, self.a_crit, self.source, self.n_mc = life, float(a_crit), source, int(n_mc)
        self.stress_ranges = dict(stress_ranges or {})

    def config(self) -> dict[str, Any]:
        return {"a_crit": self.a_crit, "source": self.source, "n_mc": self.n_mc, "n_steps": self.life.n_steps,
                "rule": self.life.rule,
                "stress_ranges": self.stress_ranges, "target": TARGET_PF}

    def interval(self, th: np.ndarray, stress_range: float | None = None) -> dict[str, float]:
        kw = {} if stress_range is None else {"stress_range": stress_range}
        fp = FailureProbability(th, self.life, self.a_crit, **kw)  # the Paris quadrature once
        t_exact = mixture_quantile(TARGET_PF, fp)
        z = stats.norm.ppf(PF_CONFIDENCE)
        t = np.floor(t_exact / 1000.0) * 1000.0
        while True:  # largest multiple of 1000 whose upper bound meets the target
            pf = fp(t)
            p, se = float(pf.mean()), float(pf.std(ddof=1) / np.sqrt(pf.size))
            if p + z * se <= TARGET_PF or t <= 1000.0:
                return {"interval": float(t), "interval_point": float(t_exact), "pf": p, "pf_se": se,
                        "pf_upper": p + z * se}
            t -= 1000.0

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        res = ctx.output(self.source)
        th = population_theta(res)
        d = self.interval(th)
        p_mc, se_mc = monte_carlo_failure_probability(d["interval"], th, self.life, self.a_crit, n=self.n_mc,
                                                      rng=ctx.step_seed(self.name))
        a_cal = float(np.max(np.asarray(res.data.x, float)))
        inside = self.a_crit <= a_cal + 1e-9
        z_mc = (p_mc - d["pf"]) / np.hypot(se_mc, d["pf_se"])
        g = np.random.default_rng(ctx.step_seed(self.name) + 1)
        i = g.integers(th.shape[0], size=20000)
        lc = th[i, 0] + th[i, 2] * g.standard_normal(i.size)
        m = th[i, 1] + th[i, 3] * g.standard_normal(i.size)
        life = self.life(self.a_crit, lc, m, th[i, 4:7]) + CYCLES_SCALE * th[i, 7] * g.standard_normal(i.size)
        worlds = {k: self.interval(th, v)["interval"] for k, v in self.stress_ranges.items()}
        vals = {**d, "target_pf": TARGET_PF, "confidence": PF_CONFIDENCE, "a_crit_mm": self.a_crit,
                "calibrated_max_length_mm": a_cal, "inside_calibrated_domain": bool(inside),
                "pf_mc": p_mc, "pf_mc_se": se_mc, "pf_mc_z": float(z_mc), "n_mc": self.n_mc,
                "life_median": float(np.median(life)), "life_q05": float(np.quantile(life, 0.05)),
                "life_q95": float(np.quantile(life, 0.95)), "world_intervals": worlds,
                "decision": f"inspect every {d['interval']:,.0f} cycles"}
        if not inside:
            return self._result(Status.WARN, (
                f"EXTRAPOLATES: the critical length {self.a_crit} mm lies beyond the calibrated crack lengths "
                f"(up to {a_cal} mm); the interval {d['interval']:,.0f} cycles rests on the Paris law outside "
                "the data."), vals), vals
        ok = abs(z_mc) < 4.0
        why = (f"Inspect every {d['interval']:,.0f} cycles: P(failure) {d['pf']:.2e} (upper {PF_CONFIDENCE:.0%} "
               f"{d['pf_upper']:.2e}) <= {TARGET_PF:g}; Monte Carlo check {p_mc:.2e} +- {se_mc:.1e} "
               f"({'agrees' if ok else 'DISAGREES'}); a_crit inside the calibrated lengths.")
        return self._result(Status.RECORD if ok else Status.WARN, why, vals), vals


class AirframeAssimilate(Assimilate):
    """:class:`vvuq_twin.loop.Assimilate` (every update's report, move diagnostics included)
    plus the airframe's coherence figures: posterior mean and sd of the population parameters
    before and after, and a summary of the moves (statuses, acceptance range, ESS after moves).
    A batch that was only reweighted (no resample-move) makes the step WARN."""

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        res, result = super().run(ctx)
        if res.status is Status.NOT_APPLICABLE:
            return res, result
        before, after = ctx.output(self.source).posterior, result.posterior
        names = list(POPULATION_NAMES[:4]) + list(SHAPE_NAMES)
        sd = {n: {"before": float(before[n].std()), "after": float(after[n].std()),
                  "mean_before": float(before[n].mean()), "mean_after": float(after[n].mean())} for n in names}
        reports = [r for r in res.values["batches"] if not r.get("rejected")]
        statuses = [r.get("status") for r in reports]
        moved = bool(reports) and all(st == "resample-move" for st in statuses)
        acc = [a for r in reports for a in (r.get("acceptance") or [])]
        n_part = len(before.chain) * len(before.draw) if "n_particles" not in self.kw else int(self.kw["n_particles"])
        vals = {**res.values, "statuses": statuses, "all_moved": moved,
                "mixing_ok": not res.values["unmixed_batches"],
                "acceptance_min": float(min(acc)) if acc else None, "acceptance_max": float(max(acc)) if acc else None,
                "n_particles": n_part,
                "ess_ok": all((r.get("ess_final") or 0) >= 0.5 * n_part for r in reports if r.get("status") == "resample-move"),
                "population_sd": sd}
        st, why = res.status, res.reason
        if not moved and st is Status.PASS:
            st, why = Status.WARN, why + f" Not every batch was moved (statuses {statuses}): the particles degenerate."
        return self._result(st, why, vals), result
