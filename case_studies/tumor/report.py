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

__all__ = ["case_summary", "choose_twin", "write", "PROSE"]

PROSE = {
    "verify": "The growth law is evaluated in closed form (the Gompertz solution), so there is no "
              "discretisation to verify; the step says so instead of verifying an integrator the "
              "calibration never runs.",
    "validate": "The hold-out is every reading after the decision day (1-11 days ahead): a forecast "
                "check. The median-bias statistic is the fraction of held-back readings above the "
                "predictive median; a twin whose carrying capacity is confounded with its discrepancy "
                "forecasts too low and leaves the band.",
    "compare_hsgp": "The same reduced-Gompertz twin with a shared HSGP discrepancy over time, unconstrained: it "
                    "can take over part of the growth law, and K moves.",
    "compare_orthogonal": "The HSGP discrepancy made orthogonal, on the calibration days, to the growth law's "
                          "sensitivity directions d log V / d k and d log V / d log beta at the least-squares fit "
                          "(Plumlee 2017): it cannot explain what a change of K or of the growth rate explains, so "
                          "K stays identified.",
    "decisions": "Every mouse gets a decision at the decision day: 'image by day d' (the latest day "
                 "with P(threshold passed before d) <= epsilon), 'image now' or 'already exceeded' "
                 "when no day meets the constraint. The realised violation rate of the open decisions, "
                 "read from the mouse's readings (log-linear between readings), is judged against its "
                 "binomial band.",
    "assimilate": "The steered reading is assimilated by SMC with the library's default rejuvenation "
                  "(no forced resampling); the move diagnostics are in the table.",
}


def choose_twin(twins: dict[str, dict[str, Any]], k_fit: float) -> dict[str, Any]:
    """The twin the decision should use, by the evidence of the sampler and of the hold-out.

    A twin is *eligible* when its sampler diagnostics pass and its physical parameter stays
    identified: the independent least-squares ``k`` (no discrepancy) lies in its 90% interval of
    ``k`` (not applicable to a growth law without a carrying capacity, ``k_90`` None). Among the eligible twins, those whose hold-out validation passes are preferred; the
    choice is the one with the lowest hold-out CRPS. The hold-out that judges the twins also
    chooses between them, so the chosen twin's validation is not an independent test of the
    choice (said in the summary).
    """
    elig = sorted(n for n, t in twins.items() if t["diagnostics_passed"]
                  and (t["k_90"] is None or t["k_90"][0] <= k_fit <= t["k_90"][1]))
    passing = [n for n in elig if twins[n]["validation_status"] == "PASS"]
    pool = passing or elig or sorted(twins)
    choice = min(pool, key=lambda n: (twins[n]["crps"], n))
    return {"choice": choice, "eligible": elig, "passing_validation": passing,
            "rule": "sampler diagnostics PASS and the least-squares k inside the twin's 90% interval of k; "
                    "then validation PASS preferred; then the lowest hold-out CRPS (the same hold-out "
                    "judges and chooses)"}


def _twin_row(label: str, k_q: Any, val: dict[str, Any], diag_passed: bool, crps: float) -> dict[str, Any]:
    """One twin's figures; ``k_q`` = 5%, 50%, 95% quantiles of its posterior ``k`` (None: no K)."""
    lo, med, hi = (float(v) for v in k_q) if k_q is not None else (None, None, None)
    mb = val["median_bias"]
    return {"twin": label, "K_median_mm3": None if med is None else float(np.exp(med)),
            "K_90_mm3": None if lo is None else [float(np.exp(lo)), float(np.exp(hi))],
            "k_90": None if lo is None else [lo, hi], "diagnostics_passed": bool(diag_passed),
            "validation_status": val["status"], "median_bias": mb["value"], "median_bias_band": mb["band"],
            "median_bias_status": mb["status"], "coverage": val["coverage"]["value"],
            "pit_ks_p": val["pit_uniformity"]["p_value"], "crps": float(crps)}


def _vals(res: Any, step: str) -> dict[str, Any]:
    return jsonable(res.results[step].values) if step in res.results else {}


def case_summary(res: Any, *, ds: Any, prov: Any, split: dict, plain: dict, fits: dict, quick: bool,
                 dataset: str, vaghi_r2: float) -> dict[str, Any]:
    """The case's JSON summary (typed step values plus independent fits); no volatile fields."""
    post = res.objects["calibrate"].posterior
    k = post["k"].values.ravel()
    k_q = np.quantile(k, [0.05, 0.5, 0.95])
    beta_pop = np.exp(post["beta_mu"].values.ravel())
    a_i, b_i = fits["alpha"], fits["beta"]
    val, val2 = _vals(res, "validate"), _vals(res, "validate_after")
    cal, dec = _vals(res, "calibrate"), _vals(res, "decisions")
    ver, sbc = res.results["verify"], _vals(res, "sbc")
    assim = _vals(res, "assimilate")
    batches = assim.get("batches", [])
    d0, d1 = _vals(res, "decide"), _vals(res, "decide_after")
    op = _vals(res, "operate")
    from .run import DISCREPANCIES, TWIN_LABELS

    kind = next(n for n in DISCREPANCIES if f"compare_{n}" not in res.results)
    twins = {kind: _twin_row(TWIN_LABELS[kind], k_q, val, res.results["calibrate"].status.value == "PASS", val["crps"])}
    for n in (*DISCREPANCIES, "power_law"):
        c = _vals(res, f"compare_{n}")
        if c:
            k3 = None if c["k_90"] is None else [c["k_90"][0], np.log(c["K_median_mm3"]), c["k_90"][1]]
            twins[n] = _twin_row(c["twin"], k3, c["validation"], c["diagnostics_passed"], c["crps"])
    choice = choose_twin(twins, plain["k"])
    return {
        "case": "tumor", "quick": bool(quick), "dataset": dataset, "seed": int(res.meta["seed"]),
        "status": res.status.value, "provisional_steps": res.provisional_steps,
        "t_now": float(split["t_now"]), "n_train": int(split["calibration"].n), "n_holdout": int(split["holdout"].n),
        "verification_status": ver.status.value, "verification_order": ver.values.get("observed_order"),
        "sbc_passed": bool(sbc.get("passed", False)), "sbc_failed": sbc.get("failed_quantities", []),
        "sbc_n_sims": sbc.get("n_sims"),
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
        "discrepancy": kind, "twins": twins, "twin_choice": {**choice, "loop_twin": kind,
                                                              "loop_twin_is_choice": choice["choice"] == kind},
        "crps": val["crps"],
        "k_median": float(k_q[1]), "k_90": [float(k_q[0]), float(k_q[2])], "K_median_mm3": float(np.exp(k_q[1])),
        "beta_median": float(np.median(beta_pop)),
        "K_no_discrepancy_fit_mm3": plain["K_mm3"], "k_no_discrepancy_fit": plain["k"],
        "K_ratio_to_no_discrepancy_fit": float(np.exp(k_q[1]) / plain["K_mm3"]),
        "alpha_beta_r2": float(np.corrcoef(b_i, a_i)[0, 1] ** 2), "vaghi_r2_min": float(vaghi_r2),
        "vaghi_population_values": "not found: the abstract of Vaghi et al. 2020 gives the structural correlation "
                                   "(R² > 0.92), not population estimates, and the authors' plumky repository holds "
                                   "the data and Monolix model files only; K is compared with an independent "
                                   "least-squares fit of the same reduced Gompertz instead (K_no_discrepancy_fit_mm3)",
        "k_through_origin": float((a_i @ b_i) / (b_i @ b_i)),
        "decisions": dec.get("mice", []), "decision_counts": dec.get("decision_counts"),
        "decisions_power_law": {k: _vals(res, "decisions_power_law").get(k) for k in ("decision_counts", "realised")},
        "realised_exceedance": dec.get("realised"), "decisions_status": res.results["decisions"].status.value,
        "focus_mouse": dec.get("focus"), "focus_utility": dec.get("focus_utility"),
        "focus_utility_se": dec.get("focus_utility_se"), "widest_interval_mouse": dec.get("widest_interval_mouse"),
        "focus_multimodality": dec.get("focus_multimodality"),
        "sensitivity_top": _vals(res, "sensitivity").get("top"),
        "decision": d0.get("decision"), "imaging_day": d0.get("imaging_day"),
        "imaging_day_closed_form": d0.get("closed_form_day"), "p_violation": d0.get("p_violation"),
        "next_measurement": _vals(res, "steer").get("best_label"),
        "next_measurement_utility": (_vals(res, "steer").get("utility") or [None])[_vals(res, "steer").get("best", 0)],
        "assimilation": batches[0] if batches else None,
        "decision_after": d1.get("decision"), "imaging_day_after": d1.get("imaging_day"),
        "p_violation_after": d1.get("p_violation"),
        "scenario_worlds": op.get("worlds"), "scenario_closed_form_error": op.get("closed_form_error"),
        "provenance": {"file": prov.file, "sha256": prov.sha256, "checksum_verified": bool(prov.checksum_verified)},
        "loop": {k: v for k, v in res.summary().items() if k != "volatile"},
    }


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
    ax.set_yticks(range(len(rows)), [f"{r['mouse']}: {r['decision']}" for r in rows], fontsize=6)
    ax.set_xlabel("days after injection (grey: 90% interval of the time-to-threshold; triangle: imaging "
                  "day; x: crossing read from the readings)", fontsize=7)
    ax.set_ylabel("mouse and decision")
    fig.tight_layout()
    return fig


def _capacity_figure(s: dict) -> Any:
    plt = _plt()
    tw = s["twins"]
    rows = [(t["twin"] + (" (loop twin)" if n == s["discrepancy"] else ""), t["K_median_mm3"], t["K_90_mm3"],
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
    rep = res.report(f"Tumor growth twin ({summary['dataset']} data)", prose=PROSE)
    real = summary["realised_exceedance"] or {}
    rep.add_figure("decisions (decision)", _decisions_figure(summary),
                   caption=(f"Decisions at day {summary['t_now']:g}: a reader should check that the imaging "
                            "days (triangles) fall before the crossings read from the mouse's readings (x); "
                            f"{real.get('n_violated')} of {real.get('n_judged')} judged decisions were late "
                            f"(band {real.get('band')})."))
    tw, ch = summary["twins"], summary["twin_choice"]
    hs, orth, no = tw.get("hsgp", {}), tw.get("orthogonal", {}), tw.get("none", {})
    rep.add_figure("compare_hsgp (validation)", _capacity_figure(summary),
                   caption=(f"Carrying capacity and forecast bias of the three twins: a reader should conclude that "
                            f"the unconstrained HSGP discrepancy is confounded with K (K {hs.get('K_median_mm3', 0):.0f} "
                            f"mm³) while the orthogonal one keeps it identified (K {orth.get('K_median_mm3', 0):.0f} mm³; "
                            f"without discrepancy {no.get('K_median_mm3', 0):.0f} mm³, least squares "
                            f"{summary['K_no_discrepancy_fit_mm3']:.0f} mm³), and that no discrepancy removes the "
                            f"forecast bias after day {summary['t_now']:g} (right panel) while the power law, a law "
                            f"with more late growth, does ({tw.get('power_law', {}).get('median_bias', float('nan')):.0%}). "
                            f"The evidence chooses {tw[ch['choice']]['twin']!r} ({ch['rule']}); the loop twin is "
                            f"{tw[ch['loop_twin']]['twin']!r}."))
    paths = dict(rep.write(out))
    paths["case_summary"] = out / "case_summary.json"
    paths["case_summary"].write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
    return paths
