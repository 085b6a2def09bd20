"""Tumor case study on the VVUQ loop: mouse tumor volumes -> reduced-Gompertz twin -> imaging decisions.

The Lewis lung carcinoma volumes of Benzekry et al. (2014), 20 mice. The twin decides at a
common *decision day* - the latest measurement day at which at least 85% of the mice have no
reading above the burden threshold, so that their decisions are still open - when to image each mouse next
(chance constraint on its time-to-threshold). Everything up to that day calibrates the twin,
everything after it is held back to validate the forecasts and to judge the decisions.

Loop (:class:`vvuq_twin.loop.VVUQLoop`): verify (NOT APPLICABLE: the twin's growth law is a closed form); SBC on the
calibration design; calibrate (NUTS; the gate is the sampler diagnostics); validate on the
held-back readings (coverage, median bias, PIT); the same judgement of three other twins on the
same split (unconstrained HSGP discrepancy, HSGP orthogonal to the growth law's sensitivity
directions, power law; summary ``twins`` and ``twin_choice``); per-mouse decisions (also under
the power law) with the realised
exceedance rate against its binomial band and the focus mouse by goal-oriented utility
(:mod:`.steps`); sensitivity, steering and the focus decision; assimilate the steered reading
(default SMC rejuvenation); re-validate and re-decide; inoculum scenario worlds.

Run: ``python -m vvuq_twin run tumor --quick --seed 7 --out DIR``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from vvuq_twin import GaussianObs, HalfNormal, Hierarchy, HSGPDiscrepancy, NoDiscrepancy, NormalPrior, Parameter, Twin
from vvuq_twin.inference.diagnostics import Thresholds
from vvuq_twin.loop import SBC, Assimilate, Calibrate, DataSplit, Operate, Validate, Verify, VVUQLoop

from . import report as _report
from .data import TUMOR_DATASETS, load_tumor, split_at_decision_day
from .diagnosis import forecast_bias_diagnosis
from .loop import gompertz_individual_fits
from .model import gompertz_sensitivity, growth_simulator, power_law_twin
from .scenarios import inoculum_worlds, pooled_gompertz_fit
from .steps import CompareTwin, FocusDecide, FocusSensitivity, FocusSteer, MouseDecisions, ValidateRest

__all__ = ["build_twin", "run", "main", "COVERAGE_LEVEL", "THRESHOLD_MM3", "EPSILON", "INOCULA",
           "VAGHI_R2_MIN", "SBC_QUANTITIES",
           "DISCREPANCIES", "TWIN_LABELS"]

#: Nominal level of the predictive intervals judged on the hold-out.
COVERAGE_LEVEL = 0.9
#: Tumor-burden threshold of the imaging decision (mm³).
THRESHOLD_MM3 = 1000.0
#: Allowed probability that the threshold is passed before the next imaging (chance constraint).
EPSILON = 0.1
#: The decision day is the latest day at which at least this fraction of mice are still below the threshold.
OPEN_FRACTION = 0.85
#: Days between grid points of the time-to-threshold computation.
GRID_STEP = 0.5
#: Inoculum scenarios (initial volume V(0) in mm³; 1 mm³ = 10⁶ injected cells as calibrated).
INOCULA: dict[str, float] = {"1e6 cells (as calibrated)": 1.0, "0.5e6 cells": 0.5, "2e6 cells": 2.0}
#: Quantities ranked by SBC (the joint log-likelihood is added by sbc_twin).
SBC_QUANTITIES = ("beta_mu", "beta_sigma", "k", "sigma_obs")
#: Discrepancy choices of :func:`build_twin`.
DISCREPANCIES = ("none", "hsgp", "orthogonal")
#: Names of the three twins in the summary and the report.
TWIN_LABELS = {"none": "without discrepancy", "hsgp": "with HSGP discrepancy",
               "orthogonal": "with orthogonal HSGP discrepancy"}
#: Published structural correlation of the Gompertz parameters: R² > 0.92 in all groups
#: (Vaghi et al. 2020, PLOS Comput Biol 16:e1007178, abstract).
VAGHI_R2_MIN = 0.92


def build_twin(*, discrepancy: str | bool = "none", quick: bool = True, v0: float = 1.0,
               reference: tuple[float, float] | None = None) -> Twin:
    """The hierarchical reduced-Gompertz twin on the log-volume scale.

    ``log V_obs = log V_rg(t; beta_u, k) + delta(t) + eps``: reduced Gompertz growth (Vaghi et
    al. 2020) ``dV/dt = (k beta - beta ln V) V`` from ``V(0) = v0`` mm³ (1 mm³ for 10⁶ cells,
    Benzekry et al. 2014), evaluated in closed form (so verification has no discretisation to
    check: NOT APPLICABLE); per-mouse ``beta`` pooled on the log scale, ``k = ln K`` shared;
    log-normal caliper error. ``discrepancy``:

    - ``"none"`` (or False): no discrepancy;
    - ``"hsgp"`` (or True): a shared HSGP discrepancy over time (``eta ~ HalfNormal(0.1)``); on
      these data it is confounded with the carrying capacity (K lower, forecasts biased further low);
    - ``"orthogonal"``: the same HSGP made orthogonal, on the calibration times, to the growth
      law's sensitivity directions ``d log V / d k`` and ``d log V / d log beta`` at ``reference``
      ``= (k, beta)`` (:func:`.model.gompertz_sensitivity`; Plumlee 2017), so that it cannot take
      over what a change of K or of the growth rate explains.
    """
    kind = {False: "none", True: "hsgp"}.get(discrepancy, discrepancy) if isinstance(discrepancy, bool) else discrepancy
    if kind not in DISCREPANCIES:
        raise ValueError(f"discrepancy must be one of {list(DISCREPANCIES)}, got {discrepancy!r}.")
    if kind == "orthogonal" and reference is None:
        raise ValueError("discrepancy='orthogonal' needs reference=(k, beta): the parameters at which the "
                         "sensitivity directions are computed (e.g. the least-squares fit without discrepancy).")
    m = 8 if quick else 16
    if kind == "none":
        disc: Any = NoDiscrepancy()
    elif kind == "hsgp":
        disc = HSGPDiscrepancy(m=m, eta=HalfNormal(0.1))
    else:
        k_ref, b_ref = (float(v) for v in reference)  # type: ignore[union-attr]
        disc = HSGPDiscrepancy(m=m, eta=HalfNormal(0.1), orthogonal_to=functools.partial(
            gompertz_sensitivity, k=k_ref, beta=b_ref, log_v0=float(np.log(v0))))
    return Twin(
        name="tumor_reduced_gompertz_log" + {"none": "_nodisc", "hsgp": "", "orthogonal": "_orthdisc"}[kind],
        simulator=growth_simulator("reduced_gompertz", v0=float(v0), log_output=True),
        parameters=[
            Parameter("beta", NormalPrior(float(np.log(0.1)), 1.0), per_unit=True, link="log",
                      pop_scale=HalfNormal(0.5)),
            Parameter("k", NormalPrior(8.5, 1.5)),
        ],
        discrepancy=disc,
        observation=GaussianObs(sigma=HalfNormal(0.5)),
        hierarchy=Hierarchy(dim="mouse"),
    )


def _check_inputs(seed: Any, dataset: str, threshold_mm3: float, epsilon: float, sbc_sims: int | None,
                  discrepancy: Any = "none") -> None:
    if not isinstance(discrepancy, bool) and discrepancy not in DISCREPANCIES:
        raise ValueError(f"discrepancy must be one of {list(DISCREPANCIES)}, got {discrepancy!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if dataset not in TUMOR_DATASETS:
        raise ValueError(f"Unknown tumor dataset {dataset!r}. Known datasets: {sorted(TUMOR_DATASETS)}.")
    if not np.isfinite(threshold_mm3) or not 50.0 <= float(threshold_mm3) <= 5000.0:
        raise ValueError(f"threshold_mm3 must lie between 50 and 5000 mm³ (the range of tumor burdens in "
                         f"these experiments), got {threshold_mm3!r}.")
    if not 0.0 < float(epsilon) <= 0.5:
        raise ValueError(f"epsilon (allowed probability of passing the threshold before imaging) must be in "
                         f"(0, 0.5], got {epsilon!r}.")
    if sbc_sims is not None and int(sbc_sims) < 2:
        raise ValueError(f"sbc_sims must be >= 2, got {sbc_sims!r}.")


def run(data_dir: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] = "out/tumor", seed: int = 1,
        quick: bool = True, *, dataset: str = "lung", threshold_mm3: float = THRESHOLD_MM3,
        epsilon: float = EPSILON, sbc_sims: int | None = None, discrepancy: str | bool = "none",
        progress: bool = True) -> dict[str, Any]:
    """Run the tumor loop, write its report and summary, return the summary.

    Parameters
    ----------
    data_dir : path, optional
        Data directory (default ``$VVUQ_TWIN_DATA``).
    out : path
        Output directory (``report.html``, ``summary.json``, the loop's saved steps).
    seed : int
        Seed of the whole run (same seed, same numbers).
    quick : bool
        Short chains and small SBC/design budgets.
    dataset : {"lung", "breast"}
    threshold_mm3, epsilon : float
        Burden threshold and allowed probability of passing it before the next imaging.
    sbc_sims : int, optional
        SBC replications (default 10 quick, 40 full).
    discrepancy : {"none", "hsgp", "orthogonal"}
        Discrepancy of the loop's twin (:func:`build_twin`). The default is the twin that the
        validation evidence chooses (summary ``twin_choice``, :func:`.report.choose_twin`); the
        two other twins are calibrated on the same split and judged beside it (steps
        ``compare_<kind>``).
    progress : bool
        One line per step on stdout.

    Returns
    -------
    dict
        Case figures (top level), the loop summary (``"loop"``) and ``"volatile"`` (timings,
        paths): two runs with the same seed agree on everything outside ``"volatile"``.
    """
    _check_inputs(seed, dataset, threshold_mm3, epsilon, sbc_sims, discrepancy)
    seed = int(seed)
    ds, prov = load_tumor(data_dir, dataset=dataset)
    split = split_at_decision_day(ds, threshold_mm3, OPEN_FRACTION)
    cal, hold, t_now = split["calibration"], split["holdout"], split["t_now"]
    horizon = float(max(40.0, np.ceil(float(np.max(hold.x))) + 16.0))
    grid = np.arange(0.0, horizon + 1e-9, GRID_STEP)
    # reference of the orthogonal discrepancy and independent fits: calibration rows only
    plain = pooled_gompertz_fit(cal.x[:, 0], cal.y, cal.unit)
    fits = gompertz_individual_fits(cal.x[:, 0], cal.y, cal.unit)
    ref = (plain["k"], plain["beta_geomean"])
    kind = {False: "none", True: "hsgp"}[discrepancy] if isinstance(discrepancy, bool) else str(discrepancy)
    twin = build_twin(discrepancy=kind, quick=quick, reference=ref)
    draws, tune = (1000, 1000) if quick else (2000, 1500)
    n_sbc = int(sbc_sims) if sbc_sims is not None else (10 if quick else 40)
    steps = [
        Verify(),
        SBC(n_sims=n_sbc, draws=200 if quick else 400, tune=300 if quick else 500, var_names=list(SBC_QUANTITIES),
            prob=1.0 - 0.05 / (len(SBC_QUANTITIES) + 1)),
        Calibrate(draws=draws, tune=tune, chains=2, mass_matrix="low_rank", target_accept=0.95,
                  thresholds=Thresholds(ess_per_chain_min=200.0)),  # bulk and tail ESS >= 400
        Validate(level=COVERAGE_LEVEL),
        *[CompareTwin(f"compare_{other}", twin=build_twin(discrepancy=other, quick=quick, reference=ref),
                      label=TWIN_LABELS[other], level=COVERAGE_LEVEL, draws=draws, tune=tune, chains=2,
                      mass_matrix="low_rank", target_accept=0.95)
          for other in DISCREPANCIES if other != kind],
        # growth-law check: a law with more late growth (every twin at the loop twin's budget)
        CompareTwin("compare_power_law", twin=power_law_twin(), label="power law, no discrepancy",
                    level=COVERAGE_LEVEL, draws=draws, tune=tune, chains=2, mass_matrix="low_rank", target_accept=0.95),
        *[MouseDecisions(name, source=source, needs=needs, t_now=t_now, threshold=threshold_mm3, epsilon=epsilon,
                         grid=grid, horizon=horizon, candidates=split["candidates"], readings=split["readings"],
                         n_design_draws=300 if quick else 800)
          for name, source, needs in (("decisions", "calibrate", None),  # the same decisions under the power law
                                      ("decisions_power_law", "compare_power_law", ("compare_power_law",)))],
        FocusSensitivity(grid=grid, horizon=horizon, num_resamples=10 if quick else 50),
        FocusDecide("decide", source="calibrate", epsilon=epsilon, grid=grid, horizon=horizon),
        FocusSteer(candidates=split["candidates"], grid=grid, horizon=horizon, n_draws=300 if quick else 800),
        Assimilate(steer="steer", time_input="time"),
        ValidateRest(source="assimilate", level=COVERAGE_LEVEL, needs=("assimilate",)),
        FocusDecide("decide_after", source="assimilate", epsilon=epsilon, grid=grid, horizon=horizon, steer="steer",
                    needs=("assimilate", "validate_after")),
        Operate(fn=inoculum_worlds(INOCULA, grid, float(np.log(threshold_mm3)), horizon, epsilon)),
    ]
    out = Path(out)
    loop = VVUQLoop(twin, DataSplit(cal, hold), steps, seed=seed, on_fail="flag", out=out / "loop",
                    name="tumor", progress=progress)
    res = loop.run()
    summary = _report.case_summary(res, ds=ds, prov=prov, split=split, plain=plain, fits=fits, quick=quick,
                                   dataset=dataset, vaghi_r2=VAGHI_R2_MIN)
    # why the forecast is biased: point fits of other laws / error models on the same split
    summary["forecast_bias_diagnosis"] = forecast_bias_diagnosis(cal, hold)
    paths = _report.write(res, summary, out, split=split, grid=grid)
    summary["volatile"] = {"loop": res.volatile, "paths": {k: str(v) for k, v in paths.items()}}
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m case_studies.tumor.run [--quick] [--seed S] [--out DIR] [--data DIR]``."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="data directory (default $VVUQ_TWIN_DATA)")
    ap.add_argument("--out", default="out/tumor")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dataset", default="lung", choices=sorted(TUMOR_DATASETS))
    ap.add_argument("--threshold", type=float, default=THRESHOLD_MM3, help="burden threshold (mm³)")
    ap.add_argument("--epsilon", type=float, default=EPSILON)
    a = ap.parse_args(argv)
    s = run(a.data, a.out, a.seed, a.quick, dataset=a.dataset, threshold_mm3=a.threshold, epsilon=a.epsilon)
    print(json.dumps({k: v for k, v in s.items() if k not in ("loop", "volatile")}, indent=1, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
