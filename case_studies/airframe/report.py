"""Prose, case figures and the Paris-exponent comparison of the airframe report.

Everything here reads the loop's typed step results (:class:`vvuq_twin.loop.StepResult`
values), never report text.

Paris exponent m of 2024-T3 under Virkler's loading: no published value could be retrieved
and checked in this project's sessions. The ``search`` tool (corpora "pages", "docs", "code",
"issues"; queries on Virkler, Hillberry & Goel 1979, J. Eng. Mater. Technol. 101(2):148-153,
their report AFFDL-TR-78-43, Ostergaard & Hillberry 1983, ASTM STP 798, which fit the growth
law to each of the 68 specimens, the FAA/NASGRO database DOT/FAA/AR-05/15 and handbook values
for 2024-T3 at R = 0.2) found those publications' abstracts and title pages but no stated m;
an m read from an unread page or from memory is not cited. So :func:`m_comparison` compares
the twin's population m with an *independent computation* on all 68 specimens, the ASTM E647
secant method (da/dN from successive points, log-log least squares against the
Feddersen-corrected ΔK), and says in the summary that no published value was checked. The
range 2.9-4.0 the validation suite keeps for 2024-T3 aluminium is labelled as not verified.
The nearest published fit that could be read (:data:`PUBLISHED_RELATED`: 2024-T351 plate at
R = 0.2, m = 3.7053) is reported beside it as related context, not as a check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vvuq_twin.loop.figures import predictive_curve_figure

from .data import VIRKLER_CONDITIONS
from .decision import CYCLES_SCALE

__all__ = ["secant_paris_fit", "m_comparison", "case_figures", "case_prose", "M_RANGE_UNVERIFIED", "PUBLISHED_RELATED",
           "SBC_POWER"]

#: Handbook range of the Paris exponent of 2024-T3 aluminium (not verified in this session).
M_RANGE_UNVERIFIED = (2.9, 4.0)
#: The nearest published Paris fit that could be retrieved and read (2026-12-02, ``search``, corpus
#: "pages"): 2024-T351 plate (not Virkler's 2024-T3 sheet), constant amplitude at R = 0.2, Delta K
#: 4.85-16.9 MPa sqrt(m) (Virkler's panels span roughly 9-30), da/dN = C Delta K^m with
#: C = 1e-8 and m = 3.7053 (table "Coefficient of Paris model"; m = 3.645 at R = 0.1, 3.8712 at
#: R = 0.3). It is a related value, not a check under Virkler's loading: temper, product form,
#: specimen geometry and Delta K range differ, and its fit covers the lower Paris regime, where
#: 2024 alloys' exponents are known to be higher.
PUBLISHED_RELATED = {
    "m": 3.7053, "material": "2024-T351 plate", "stress_ratio": 0.2,
    "delta_k_range_mpa_sqrt_m": [4.85, 16.88],
    "source": ("Fatigue of Aircraft Structures (2022), doi:10.2478/fas-2022-0004, table 'Coefficient of "
               "Paris model' (R = 0.1: 3.645; 0.2: 3.7053; 0.3: 3.8712)"),
    "comparable_to_virkler": False,
}
_W = float(VIRKLER_CONDITIONS["width_mm"])
_DS = float(VIRKLER_CONDITIONS["stress_range_mpa"])


def secant_paris_fit(a_mm: np.ndarray, cycles: np.ndarray, specimen: np.ndarray) -> tuple[float, float]:
    """ASTM E647 secant rates, log-log least squares of da/dN (m/cycle) on ΔK (Feddersen).

    Returns ``(m, log10_C)`` with C in (m/cycle)/(MPa m^0.5)^m.
    """
    xs, ys = [], []
    for s in np.unique(specimen):
        sel = specimen == s
        a, n = a_mm[sel], cycles[sel]
        da, dn = np.diff(a), np.diff(n)
        ok = dn > 0
        am = 0.5 * (a[1:] + a[:-1])
        dk = _DS * np.sqrt(np.pi * am * 1e-3) * np.sqrt(1.0 / np.cos(np.pi * am / _W))
        xs.append(np.log10(dk[ok]))
        ys.append(np.log10(da[ok] * 1e-3 / dn[ok]))
    slope, intercept = np.polyfit(np.concatenate(xs), np.concatenate(ys), 1)
    return float(slope), float(intercept)


def m_comparison(ds: Any, m_median: float, m_sd: float | None = None,
                 m_90: tuple[float, float] | None = None) -> dict[str, Any]:
    """The twin's population m (posterior median, sd, 90 % interval) against the secant fit on
    all 68 specimens."""
    m_sec, c_sec = secant_paris_fit(ds["crack_half_length"].values, ds["cycles"].values,
                                    ds["specimen"].values)
    extra: dict[str, Any] = {}
    if m_sd is not None:
        extra["m_twin_sd"] = float(m_sd)
        extra["difference_in_posterior_sd"] = float((m_median - m_sec) / m_sd)
    if m_90 is not None:
        extra["secant_inside_twin_90"] = bool(m_90[0] <= m_sec <= m_90[1])
    return {"m_twin_median": m_median, "m_secant_all_specimens": m_sec, "log10_C_secant": c_sec,
            "difference": m_median - m_sec, **extra, "handbook_range_unverified": list(M_RANGE_UNVERIFIED),
            "published_value_checked": False, "published_value": None,
            "published_related": dict(PUBLISHED_RELATED),
            "difference_to_published_related": m_median - PUBLISHED_RELATED["m"],
            "searched": ["Virkler, Hillberry & Goel (1979) J. Eng. Mater. Technol. 101(2):148-153",
                         "Virkler, Hillberry & Goel (1978) AFFDL-TR-78-43",
                         "Ostergaard & Hillberry (1983) ASTM STP 798",
                         "Forman et al. (2005) DOT/FAA/AR-05/15 (NASGRO database)"],
            "note": ("no published m for 2024-T3 under Virkler's loading could be retrieved and checked (the "
                     "search found abstracts and title pages without the value); compared with an "
                     "independent secant fit on all 68 specimens instead, and with the nearest published fit "
                     "that could be read (2024-T351 plate at R = 0.2, lower Delta K: published_related), "
                     "which is related but not comparable")}


def case_figures(res: Any, ds: Any, design: Any) -> list[tuple[str, Any, str]]:
    """(section, figure, caption) of the case's figures, from typed step results."""
    out = []
    spec, a, n = ds["specimen"].values, ds["crack_half_length"].values, ds["cycles"].values
    curves = np.stack([n[spec == s] for s in design.holdout])
    for step in ("validate", "revalidate"):
        r = res.results[step]
        pl = r.values["per_length"]
        x = [p["length_mm"] for p in pl]
        fig = predictive_curve_figure(
            x, [p["lower"] for p in pl], [p["median"] for p in pl], [p["upper"] for p in pl],
            observed=curves[:, np.searchsorted(a[spec == design.holdout[0]], x)],
            xlabel="crack half-length a (mm)", ylabel="cycles to reach a", provisional=r.is_provisional,
            observed_label=f"held-out specimens ({len(design.holdout)})")
        v = r.values
        out.append((f"Validation ({step})", fig, (
            f"Population predictive of a NEW panel (90% interval, median) against the {len(design.holdout)} "
            f"held-out specimens: {v['inside_at_critical']} of {v['n_holdout_specimens']} inside at "
            f"{v['critical_length_mm']} mm (binomial 95% band {v['band_count'][0]}-{v['band_count'][1]}). "
            "A reader should conclude that the band is as wide as the specimen-to-specimen scatter "
            "where the counts lie in their bands, and too narrow/wide where they do not.")))
    return out


#: Power of the SBC rank test per quantity (band level 1 - 0.05/9, 99 ranked draws), simulated with a
#: Gaussian stand-in (400 simulated SBC runs per entry, 2026-12-02): rank ~ Binomial(99, u) with
#: u = Phi(z / k) for a posterior k times too wide/narrow, u = Phi(z - b) for a bias of b sd.
SBC_POWER = {
    20: ("Power of the rank test (simulated, per quantity, band 1 - 0.05/9, 400 runs each): at 20 replications "
         "it detects a posterior twice too narrow with probability about 0.60, one 1.5 times too narrow with 0.15, "
         "a bias of one posterior sd with 0.85 and of half a sd with 0.19, a posterior twice too wide only with "
         "0.03; false alarm 0.005. So a PASS here rules out gross errors only."),
    30: ("Power of the rank test (simulated, per quantity, band 1 - 0.05/9, 400 runs each): at 30 replications "
         "it detects a posterior twice too narrow with probability about 0.84, a bias of one posterior sd with "
         "0.97 and of half a sd with 0.32, a posterior twice too wide only with 0.15; false alarm 0.01."),
}


def case_prose(res: Any, design: Any, prov: Any) -> dict[str, str]:
    """A paragraph per step, from the typed results."""
    r = res.results
    mono, dec = r["monotonicity"].values, r["decide"].values
    asm = r["assimilate"].values
    sd = asm["population_sd"]
    sbc = r["sbc"]
    sbc_text = (f"SBC {sbc.status.value}: {sbc.reason}" if sbc.status.value == "NOT APPLICABLE" else (
        f"SBC on the calibration design ({sbc.values['n_sims']} replications, each calibrated with the "
        f"calibration's sampler, settings and budget): {sbc.status.value}. {sbc.reason} " + SBC_POWER.get(
            int(sbc.values["n_sims"]), "The power of the rank test was not simulated for this number of replications.")))
    m = res.objects["calibrate"].posterior["m_mu"].values.ravel()
    m_lo, m_hi = np.quantile(m, [0.05, 0.95])
    return {
        "sbc": sbc_text,
        "calibrate": (f"{len(design.calibration)} of 68 specimens calibrate the twin, {len(design.stream)} arrive "
                      f"later as new specimens, {len(design.holdout)} are held out. Data: {prov.citation}. "
                      f"Population Paris exponent m: median {np.median(m):.3g} (90% {m_lo:.3g}-{m_hi:.3g}). No "
                      "published m for 2024-T3 under Virkler's loading could be retrieved and checked (searched: "
                      "Virkler, Hillberry & Goel 1979; AFFDL-TR-78-43; Ostergaard & Hillberry 1983, ASTM STP 798; "
                      "DOT/FAA/AR-05/15), so the summary compares m with an independent secant fit on all 68 "
                      "specimens (m_published). The nearest published fit that could be read, 2024-T351 plate at "
                      f"R = 0.2 over Delta K 4.9-16.9 MPa sqrt(m), gives m = {PUBLISHED_RELATED['m']:.4g} "
                      f"({PUBLISHED_RELATED['source']}): a different temper, product form and Delta K range, so "
                      "a reader should read it as context (2024 alloys' exponents lie near 3-4), not as a check."),
        "monotonicity": (f"Cycles increase with crack length in every draw ({mono['violations']} violations over "
                         f"{mono['n_draws']} draws x ({mono['n_specimens']} specimens + a new panel) x "
                         f"{mono['n_lengths']} lengths): the discrepancy acts on the log growth rate and is "
                         "integrated, so the twin cannot make a crack shrink."),
        "decide": (f"Inspection interval {dec['interval']:,.0f} cycles for P(failure) <= {dec['target_pf']:g} at "
                   f"{dec['confidence']:.0%} confidence; critical length {dec['a_crit_mm']} mm "
                   + ("inside" if dec["inside_calibrated_domain"] else "OUTSIDE (extrapolation)")
                   + f" the calibrated crack lengths (up to {dec['calibrated_max_length_mm']} mm)."),
        "assimilate": ("Each new specimen is assimilated by SMC with moves (status per batch: "
                       f"{asm['statuses']}); sd(m_mu) {sd['m_mu']['before']:.3g} -> {sd['m_mu']['after']:.3g}, "
                       f"sd(log10_C_mu) {sd['log10_C_mu']['before']:.3g} -> {sd['log10_C_mu']['after']:.3g}; "
                       f"interval {dec['interval']:,.0f} -> {r['decide_after'].values['interval']:,.0f} cycles."),
    }
