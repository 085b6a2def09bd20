"""The tumor case's summary and report, from the loop's typed step results.

:func:`case_summary` collects the case's figures from the :class:`vvuq_twin.loop.LoopResult`
(step values, never report text) next to the independent fits; :func:`write` renders the loop's
report (:meth:`LoopResult.report`), adds the case figures - each with labelled axes and one
sentence on what to conclude - and writes ``report.html``, ``summary.json`` (the
report's) and ``case_summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vvuq_twin.loop.status import jsonable

from .steps import choose_twin  # noqa: F401  (re-exported: the rule by which the loop chooses its twin)

__all__ = ["case_summary", "choose_twin", "write", "PROSE", "EXTRAPOLATION_NOTE"]

#: What a growth law without a carrying capacity means for the decisions (shown in the report and summary).
EXTRAPOLATION_NOTE = {
    "power_law": "The power law dV/dt = a V^gamma has no carrying capacity: every forecast grows without bound, so "
                 "every mouse eventually crosses the threshold and a tumor that would level off below it cannot be "
                 "represented. Its forecasts were validated on the held-back readings only, up to the last held-back "
                 "day; an imaging day or a time-to-threshold after that day rests on the law's extrapolation and is "
                 "flagged 'extrapolates' (for a tumor that saturates, the unbounded law forecasts early crossings: "
                 "conservative imaging days, not late ones).",
    "reduced_gompertz": "The reduced Gompertz law levels off at its carrying capacity K: a mouse whose plateau lies "
                        "below the threshold never crosses (censored at the horizon). Forecasts after the last "
                        "held-back day rest on the law's extrapolation and are flagged 'extrapolates'.",
}

PROSE = {
    "verify": "The growth law is evaluated in closed form, so there is no discretisation to verify; the step says "
              "so instead of verifying an integrator the calibration never runs.",
    "sbc": "Simulation-based calibration of the chosen twin's own parameters on the calibration design (the real "
           "days, mice and missing pattern).",
    "validate": "The hold-out is every reading after the decision day (1-11 days ahead): a forecast check. The "
                "median-bias statistic is the fraction of held-back readings above the predictive median; a twin "
                "that forecasts too low leaves the band. The same hold-out chose the twin (selection loop), so this "
                "validation is not an independent test of the choice.",
    "decisions": "Every mouse gets a decision at the decision day: 'image by day d' (the latest day with "
                 "P(threshold passed before d) <= epsilon), 'image now' or 'already exceeded' when no day meets the "
                 "constraint. The realised violation rate of the open decisions, read from the mouse's readings "
                 "(log-linear between readings), is judged against its binomial band. An imaging day after the "
                 "last held-back reading is flagged 'extrapolates'.",
    "assimilate": "The steered reading is assimilated by SMC with the library's default rejuvenation (no forced "
                  "resampling); the move diagnostics are in the table.",
}


def _vals(res: Any, step: str) -> dict[str, Any]:
    return jsonable(res.results[step].values) if step in res.results else {}


def _q(x: Any) -> dict[str, float]:
    v = np.asarray(x, float).ravel()
    lo, med, hi = np.quantile(v, [0.05, 0.5, 0.95])
    return {"median": float(med), "q05": float(lo), "q95": float(hi)}


def case_summary(res: Any, sel: Any, *, kind: str, comparison: str, ds: Any, prov: Any, split: dict, plain: dict,
                 fits: dict, quick: bool, dataset: str, vaghi_r2: float, power_fit: dict) -> dict[str, Any]:
    """The case's JSON summary (typed step values of both loops plus independent fits); no volatile fields."""
    from .run import GROWTH_LAWS, SBC_QUANTITIES

    post = res.objects["calibrate"].posterior
    law = GROWTH_LAWS[kind]
    a_i, b_i = fits["alpha"], fits["beta"]
    val, val2 = _vals(res, "validate"), _vals(res, "validate_after")
    cal, dec = _vals(res, "calibrate"), _vals(res, "decisions")
    ver, sbc = res.results["verify"], _vals(res, "sbc")
    assim = _vals(res, "assimilate")
    batches = assim.get("batches", [])
    d0, d1 = _vals(res, "decide"), _vals(res, "decide_after")
    op = _vals(res, "operate")
    choice = _vals(sel, "choose")
    twins = choice["twins"]
    dc = _vals(res, f"decisions_{comparison}")
    params = {q: _q(post[q].values) for q in SBC_QUANTITIES[kind] if q in post}
    if law == "power_law":  # the population growth rate on the natural scale
        params["a_population"] = _q(np.exp(post["a_mu"].values))
    else:
        params["K_mm3"] = _q(np.exp(post["k"].values))
    return {
        "case": "tumor", "quick": bool(quick), "dataset": dataset, "seed": int(res.meta["seed"]),
        "status": res.status.value, "provisional_steps": res.provisional_steps,
        "t_now": float(split["t_now"]), "n_train": int(split["calibration"].n), "n_holdout": int(split["holdout"].n),
        "loop_twin": kind, "loop_twin_label": twins[kind]["twin"], "growth_law": law,
        "carrying_capacity": law != "power_law", "extrapolation_note": EXTRAPOLATION_NOTE[law],
        "validated_until_day": dec.get("validated_until"), "n_extrapolating": dec.get("n_extrapolating"),
        "verification_status": ver.status.value, "verification_order": ver.values.get("observed_order"),
        "sbc_passed": bool(sbc.get("passed", False)), "sbc_failed": sbc.get("failed_quantities", []),
        "sbc_n_sims": sbc.get("n_sims"), "sbc_quantities": list(SBC_QUANTITIES[kind]),
        "diagnostics_passed": res.results["calibrate"].status.value == "PASS",
        "diagnostics": {n: c["value"] for n, c in cal.get("checks", {}).items()},
        "validation_status": val.get("status"),
        "coverage": val["coverage"]["value"], "coverage_band": val["coverage"]["band"],
        "median_bias": val["median_bias"]["value"], "median_bias_band": val["median_bias"]["band"],
        "median_bias_status": val["median_bias"]["status"],
        "pit_ks_p": val["pit_uniformity"]["p_value"], "pit_status": val["pit_uniformity"]["status"],
        "coverage_after": val2.get("coverage", {}).get("value"),
        "coverage_after_band": val2.get("coverage", {}).get("band"),
        "median_bias_after": val2.get("median_bias", {}).get("value"),
        "validation_after_status": val2.get("status"),
        "twins": twins, "twin_choice": {k: choice[k] for k in ("choice", "ranking", "eligible", "passing_validation",
                                                               "rule")}
        | {"loop_twin": kind, "loop_twin_is_choice": choice["choice"] == kind, "comparison_twin": comparison},
        "crps": val["crps"], "parameters": params,
        "gamma_least_squares": float(power_fit["gamma"]),
        "K_no_discrepancy_fit_mm3": plain["K_mm3"], "k_no_discrepancy_fit": plain["k"],
        "alpha_beta_r2": float(np.corrcoef(b_i, a_i)[0, 1] ** 2), "vaghi_r2_min": float(vaghi_r2),
        "vaghi_population_values": "not found: the abstract of Vaghi et al. 2020 gives the structural correlation "
                                   "(R² > 0.92), not population estimates, and the authors' plumky repository holds "
                                   "the data and Monolix model files only; the twins are compared with independent "
                                   "least-squares fits of the same laws instead (K_no_discrepancy_fit_mm3, "
                                   "gamma_least_squares)",
        "k_through_origin": float((a_i @ b_i) / (b_i @ b_i)),
        "decisions": dec.get("mice", []), "decision_counts": dec.get("decision_counts"),
        "decisions_comparison": {"twin": comparison, **{k: dc.get(k) for k in ("decision_counts", "realised",
                                                                                "n_extrapolating")}},
        "realised_exceedance": dec.get("realised"), "decisions_status": res.results["decisions"].status.value,
        "focus_mouse": dec.get("focus"), "focus_utility": dec.get("focus_utility"),
        "focus_utility_se": dec.get("focus_utility_se"), "widest_interval_mouse": dec.get("widest_interval_mouse"),
        "focus_multimodality": dec.get("focus_multimodality"),
        "sensitivity_top": _vals(res, "sensitivity").get("top"),
        "decision": d0.get("decision"), "imaging_day": d0.get("imaging_day"),
        "imaging_day_closed_form": d0.get("closed_form_day"), "p_violation": d0.get("p_violation"),
        "decision_extrapolates": d0.get("extrapolates"),
        "next_measurement": _vals(res, "steer").get("best_label"),
        "next_measurement_utility": (_vals(res, "steer").get("utility") or [None])[_vals(res, "steer").get("best", 0)],
        "assimilation": batches[0] if batches else None,
        "decision_after": d1.get("decision"), "imaging_day_after": d1.get("imaging_day"),
        "p_violation_after": d1.get("p_violation"), "decision_after_extrapolates": d1.get("extrapolates"),
        "scenario_law": op.get("law"),
        "scenario_worlds": op.get("worlds"), "scenario_closed_form_error": op.get("closed_form_error"),
        "provenance": {"file": prov.file, "sha256": prov.sha256, "checksum_verified": bool(prov.checksum_verified)},
        "selection": {k: v for k, v in sel.summary().items() if k != "volatile"},
        "loop": {k: v for k, v in res.summary().items() if k != "volatile"},
    }


def _band(b: Any) -> str:
    return "n/a" if not b else f"[{b[0]:.2f}, {b[1]:.2f}]"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _decisions_figure(s: dict) -> Any:
    plt = _plt()
    rows = s["decisions"]
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for i, r in enumerate(rows):
        ax.plot([r["T_q05"], r["T_q95"]], [i, i], color="0.6", lw=3)
        ax.plot(r["T_median"], i, "k|", ms=10)
        if r["feasible"]:
            ax.plot(r["imaging_day"], i, "v", color="C3" if r["violated"] else "C0", ms=7)
        if r["observed_crossing"] is not None:
            ax.plot(r["observed_crossing"], i, "x", color="k", ms=6)
    ax.axvline(s["t_now"], color="purple", ls="--", lw=1)
    if s.get("validated_until_day") is not None:  # imaging days right of this line extrapolate
        ax.axvline(s["validated_until_day"], color="C1", ls=":", lw=1.2)
    ax.set_yticks(range(len(rows)), [f"{r['mouse']}: {r['decision']}" for r in rows], fontsize=6)
    ax.set_xlabel("days after injection (grey: 90% interval of the time-to-threshold; triangle: imaging day; "
                  "x: crossing read from the readings;\npurple: decision day; orange: last held-back reading, "
                  "later days extrapolate)", fontsize=7)
    ax.set_ylabel("mouse and decision")
    fig.tight_layout()
    return fig


def _capacity_figure(s: dict) -> Any:
    plt = _plt()
    tw = s["twins"]
    rows = [(t["twin"] + (" (loop twin)" if n == s["loop_twin"] else ""), t["K_median_mm3"], t["K_90_mm3"],
             t["median_bias"]) for n, t in tw.items()]
    rows = [r if r[1] is not None else (r[0] + " (no K)", None, None, r[3]) for r in rows]
    rows.append(("least squares, no discrepancy", s["K_no_discrepancy_fit_mm3"], None, None))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.4, 2.8), gridspec_kw={"width_ratios": [2, 1]}, sharey=True)
    for i, (lab, med, iv, mb) in enumerate(rows):
        if iv is not None:
            ax.plot(list(iv), [i, i], color="0.6", lw=4)
        if med is not None:
            ax.plot(med, i, "ko")
        if mb is not None:
            bx.plot(mb, i, "ks")
    band = s["median_bias_band"]
    bx.axvspan(band[0], band[1], color="C2", alpha=0.2, lw=0)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("carrying capacity K (mm³): median and 90% interval")
    ax.set_ylabel("twin")
    bx.set_xlabel("held-back readings above the\npredictive median (green: band)", fontsize=8)
    bx.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def write(res: Any, summary: dict, out: Path, *, split: dict, grid: Any) -> dict[str, Path]:
    """Render the loop's report with the case figures; write it and ``case_summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep = res.report(f"Tumor growth twin ({summary['dataset']} data, {summary['loop_twin_label']})", prose=PROSE)
    real = summary["realised_exceedance"] or {}
    rep.add_figure("decisions (decision)", _decisions_figure(summary),
                   caption=(f"Decisions at day {summary['t_now']:g}: a reader should check that the imaging "
                            "days (triangles) fall before the crossings read from the mouse's readings (x); "
                            f"{real.get('n_violated')} of {real.get('n_judged')} judged decisions were late "
                            f"(band {_band(real.get('band'))}); {summary['n_extrapolating']} imaging days lie after the last "
                            f"held-back reading (day {summary['validated_until_day']:g}) and extrapolate."))
    tw, ch = summary["twins"], summary["twin_choice"]
    hs, orth, no = tw.get("hsgp", {}), tw.get("orthogonal", {}), tw.get("none", {})
    sec = "twin choice (selection loop)"
    rep.add_text(sec, f"Four candidate twins were calibrated on the same split and judged on the same hold-out "
                      f"(selection loop, out/selection). Rule: {ch['rule']}. The evidence chooses "
                      f"{tw[ch['choice']]['twin']!r}; the main loop's twin is {tw[ch['loop_twin']]['twin']!r}, the "
                      f"comparison twin {tw[ch['comparison_twin']]['twin']!r}. {summary['extrapolation_note']}")
    rep.add_table(sec, [{"rank": i + 1, "candidate": n, "twin": tw[n]["twin"], "sampler": "PASS" if
                         tw[n]["diagnostics_passed"] else "FAIL", "K median (mm³)": tw[n]["K_median_mm3"],
                         "validation": tw[n]["validation_status"], "above median": tw[n]["median_bias"],
                         "coverage": tw[n]["coverage"], "PIT KS p": tw[n]["pit_ks_p"], "CRPS": tw[n]["crps"]}
                        for i, n in enumerate(ch["ranking"])], caption="Candidate twins in the order of the rule")
    rep.add_figure(sec, _capacity_figure(summary),
                   caption=(f"Carrying capacity and forecast bias of the candidate twins: a reader should conclude that "
                            f"the unconstrained HSGP discrepancy is confounded with K (K {hs.get('K_median_mm3', 0):.0f} "
                            f"mm³) while the orthogonal one keeps it identified (K {orth.get('K_median_mm3', 0):.0f} mm³; "
                            f"without discrepancy {no.get('K_median_mm3', 0):.0f} mm³, least squares "
                            f"{summary['K_no_discrepancy_fit_mm3']:.0f} mm³), that no discrepancy removes the reduced "
                            f"Gompertz's forecast bias after day {summary['t_now']:g} (right panel) while the power law, "
                            f"a law without carrying capacity and with more late growth, does "
                            f"({tw.get('power_law', {}).get('median_bias', float('nan')):.0%}); the loop decides with "
                            f"{tw[ch['loop_twin']]['twin']!r}."))
    cmp_ = summary["decisions_comparison"]
    cr = cmp_.get("realised") or {}
    rep.add_text(f"decisions_{ch['comparison_twin']} (decision)",
                 f"The same decisions under the comparison twin {tw[ch['comparison_twin']]['twin']!r} (reported only): "
                 f"{cr.get('n_violated')} of {cr.get('n_judged')} judged decisions were late, band {_band(cr.get('band'))} "
                 f"({cr.get('status')}); under the loop twin {real.get('n_violated')} of {real.get('n_judged')} "
                 f"({real.get('status')}).")
    # the choice comes first: every later section is about the chosen twin
    rep.sections = {sec: rep.sections[sec], **{k: v for k, v in rep.sections.items() if k != sec}}
    paths = dict(rep.write(out))
    paths["case_summary"] = out / "case_summary.json"
    paths["case_summary"].write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
    return paths
