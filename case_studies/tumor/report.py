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

__all__ = ["case_summary", "write", "PROSE"]

PROSE = {
    "verify": "The growth law is evaluated in closed form (the Gompertz solution), so there is no "
              "discretisation to verify; the step says so instead of verifying an integrator the "
              "calibration never runs.",
    "validate": "The hold-out is every reading after the decision day (1-11 days ahead): a forecast "
                "check. The median-bias statistic is the fraction of held-back readings above the "
                "predictive median; a twin whose carrying capacity is confounded with its discrepancy "
                "forecasts too low and leaves the band.",
    "decisions": "Every mouse gets a decision at the decision day: 'image by day d' (the latest day "
                 "with P(threshold passed before d) <= epsilon), 'image now' or 'already exceeded' "
                 "when no day meets the constraint. The realised violation rate of the open decisions, "
                 "read from the mouse's readings (log-linear between readings), is judged against its "
                 "binomial band.",
    "assimilate": "The steered reading is assimilated by SMC with the library's default rejuvenation "
                  "(no forced resampling); the move diagnostics are in the table.",
}


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
    from vvuq_twin import NoDiscrepancy

    has_disc = not isinstance(res.objects["calibrate"].twin.discrepancy, NoDiscrepancy)
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
        "discrepancy": "HSGP (eta ~ HalfNormal(0.1))" if has_disc else "none",
        "comparison": _vals(res, "compare_discrepancy"),
        "k_median": float(k_q[1]), "k_90": [float(k_q[0]), float(k_q[2])], "K_median_mm3": float(np.exp(k_q[1])),
        "beta_median": float(np.median(beta_pop)),
        "K_no_discrepancy_fit_mm3": plain["K_mm3"], "k_no_discrepancy_fit": plain["k"],
        "K_ratio_to_no_discrepancy_fit": float(np.exp(k_q[1]) / plain["K_mm3"]),
        "alpha_beta_r2": float(np.corrcoef(b_i, a_i)[0, 1] ** 2), "vaghi_r2_min": float(vaghi_r2),
        "k_through_origin": float((a_i @ b_i) / (b_i @ b_i)),
        "decisions": dec.get("mice", []), "decision_counts": dec.get("decision_counts"),
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
    c = s["comparison"]
    rows = [("loop twin (no discrepancy)", s["K_median_mm3"], np.exp(s["k_90"])),
            (c["twin"], c["K_median_mm3"], c["K_90_mm3"]),
            ("least squares, no discrepancy", s["K_no_discrepancy_fit_mm3"], None)]
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    for i, (lab, med, iv) in enumerate(rows):
        if iv is not None:
            ax.plot(list(iv), [i, i], color="0.6", lw=4)
        ax.plot(med, i, "ko")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("carrying capacity K (mm³): median and 90% interval")
    ax.set_ylabel("fit")
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
    c = summary["comparison"]
    rep.add_figure("compare_discrepancy (validation)", _capacity_figure(summary),
                   caption=(f"Carrying capacity with and without the HSGP discrepancy: a reader should conclude "
                            f"that the discrepancy pulls K down ({c['K_median_mm3']:.0f} vs "
                            f"{summary['K_median_mm3']:.0f} mm³; least squares without discrepancy "
                            f"{summary['K_no_discrepancy_fit_mm3']:.0f} mm³) - it is confounded with K - and "
                            f"forecasts worse ({c['validation']['median_bias']['value']:.0%} vs "
                            f"{summary['median_bias']:.0%} of held-back readings above the predictive median)."))
    paths = dict(rep.write(out))
    paths["case_summary"] = out / "case_summary.json"
    paths["case_summary"].write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
    return paths
