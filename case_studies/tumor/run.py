"""Tumor case study on the VVUQ loop: mouse tumor volumes -> the twin the evidence chooses -> imaging decisions.

The Lewis lung carcinoma volumes of Benzekry et al. (2014), 20 mice. The twin decides at a
common *decision day* - the latest measurement day at which at least 85% of the mice have no
reading above the burden threshold, so that their decisions are still open - when to image each mouse next
(chance constraint on its time-to-threshold). Everything up to that day calibrates the twin,
everything after it is held back to validate the forecasts and to judge the decisions.

Two loops (:class:`vvuq_twin.loop.VVUQLoop`), both resumable:

1. *selection* (``out/selection``): four candidate twins calibrated on the same split and judged
   on the held-back readings (:class:`.steps.CompareTwin`) - reduced Gompertz without
   discrepancy, with an unconstrained HSGP discrepancy, with the HSGP orthogonal to the growth
   law's sensitivity directions, and a power law - then :class:`.steps.ChooseTwin` applies the
   stated rule :data:`.steps.CHOICE_RULE` (summary ``twins``, ``twin_choice``);
2. *main* (``out/loop``) on the chosen twin: verify (NOT APPLICABLE: closed-form growth law);
   SBC of the chosen twin's own parameters on the calibration design; calibrate (the gate is the
   sampler diagnostics); validate; the runner-up twin adopted as a comparison (no recalibration)
   with its decisions; per-mouse decisions with the realised exceedance rate against its
   binomial band, the focus mouse by goal-oriented utility, decisions after the last validated
   day flagged as extrapolating (:mod:`.steps`); sensitivity, steering and the focus decision;
   assimilate the steered reading (default SMC rejuvenation); re-validate and re-decide;
   inoculum scenario worlds of the chosen growth law.

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
from .diagnosis import TWIN_VARIANT, forecast_bias_diagnosis, power_law_fit
from .loop import gompertz_individual_fits
from .model import gompertz_sensitivity, growth_simulator, power_law_twin
from .scenarios import inoculum_worlds, pooled_gompertz_fit
from .steps import (Adopt, ChooseTwin, CompareTwin, FocusDecide, FocusSensitivity, FocusSteer, MouseDecisions,
                    ValidateRest)

__all__ = ["build_twin", "candidate_twin", "run", "main", "COVERAGE_LEVEL", "THRESHOLD_MM3", "EPSILON", "INOCULA",
           "VAGHI_R2_MIN", "SBC_QUANTITIES", "DISCREPANCIES", "TWIN_KINDS", "TWIN_LABELS", "GROWTH_LAWS"]

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
#: Discrepancy choices of :func:`build_twin` (reduced Gompertz twins).
DISCREPANCIES = ("none", "hsgp", "orthogonal")
#: Candidate twins of the loop (:func:`candidate_twin`), judged on the same split.
TWIN_KINDS = (*DISCREPANCIES, "power_law")
#: Names of the candidate twins in the summary and the report.
TWIN_LABELS = {"none": "without discrepancy", "hsgp": "with HSGP discrepancy",
               "orthogonal": "with orthogonal HSGP discrepancy", "power_law": "power law, no discrepancy"}
#: Growth law of each candidate (its inoculum worlds and its point-fit variant).
GROWTH_LAWS = TWIN_VARIANT  # the one mapping, also used by the forecast-bias diagnosis
#: Quantities ranked by SBC for each candidate: its own parameters (sbc_twin adds the joint log-likelihood).
SBC_QUANTITIES = {**{k: ("beta_mu", "beta_sigma", "k", "sigma_obs") for k in DISCREPANCIES},
                  "power_law": ("a_mu", "a_sigma", "gamma", "sigma_obs")}
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


def candidate_twin(kind: str, *, quick: bool = True, v0: float = 1.0,
                   reference: tuple[float, float] | None = None) -> Twin:
    """Candidate twin ``kind`` (one of :data:`TWIN_KINDS`): a reduced Gompertz twin
    (:func:`build_twin`) or the power law (:func:`.model.power_law_twin`, no carrying capacity)."""
    if kind not in TWIN_KINDS:
        raise ValueError(f"twin must be one of {list(TWIN_KINDS)} (or None: the one the evidence chooses), "
                         f"got {kind!r}.")
    return power_law_twin(v0) if kind == "power_law" else build_twin(discrepancy=kind, quick=quick, v0=v0,
                                                                     reference=reference)


def _check_inputs(seed: Any, dataset: str, threshold_mm3: float, epsilon: float, sbc_sims: int | None,
                  twin: Any = None) -> None:
    if twin is not None and twin not in TWIN_KINDS:
        raise ValueError(f"twin must be one of {list(TWIN_KINDS)} (or None: the one the evidence chooses), "
                         f"got {twin!r}.")
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
        epsilon: float = EPSILON, sbc_sims: int | None = None, twin: str | None = None,
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
    twin : {None, "none", "hsgp", "orthogonal", "power_law"}
        The main loop's twin. None (default): the one the evidence chooses by the rule
        :data:`.steps.CHOICE_RULE` among the four candidates calibrated and judged in the
        selection loop (summary ``twin_choice``); a name forces that candidate (a comparison
        study; ``twin_choice.loop_twin_is_choice`` then says whether it is the evidence's).
    progress : bool
        One line per step on stdout.

    Returns
    -------
    dict
        Case figures (top level), the summaries of the main loop (``"loop"``) and of the
        selection loop (``"selection"``), and ``"volatile"`` (timings, paths): two runs with the
        same seed agree on everything outside ``"volatile"``.
    """
    _check_inputs(seed, dataset, threshold_mm3, epsilon, sbc_sims, twin)
    seed = int(seed)
    ds, prov = load_tumor(data_dir, dataset=dataset)
    split = split_at_decision_day(ds, threshold_mm3, OPEN_FRACTION)
    cal, hold, t_now = split["calibration"], split["holdout"], split["t_now"]
    horizon = float(max(40.0, np.ceil(float(np.max(hold.x))) + 16.0))
    grid = np.arange(0.0, horizon + 1e-9, GRID_STEP)
    validated_until = float(np.max(hold.x))  # the last held-back reading: forecasts checked up to here
    # reference of the orthogonal discrepancy and independent fits: calibration rows only
    plain = pooled_gompertz_fit(cal.x[:, 0], cal.y, cal.unit)
    fits = gompertz_individual_fits(cal.x[:, 0], cal.y, cal.unit)
    ref = (plain["k"], plain["beta_geomean"])
    cands = {k: candidate_twin(k, quick=quick, reference=ref) for k in TWIN_KINDS}
    draws, tune = (1000, 1000) if quick else (2000, 1500)
    # every twin at the same budget and the same gate (bulk and tail ESS >= 400)
    cal_kw = dict(draws=draws, tune=tune, chains=2, mass_matrix="low_rank", target_accept=0.95,
                  thresholds=Thresholds(ess_per_chain_min=200.0))
    out = Path(out)
    split_obj = DataSplit(cal, hold)
    # 1. selection: every candidate calibrated and judged on the same split, then the stated rule
    sel_steps: list[Any] = [CompareTwin(f"candidate_{k}", twin=cands[k], label=TWIN_LABELS[k], level=COVERAGE_LEVEL,
                                        **cal_kw) for k in TWIN_KINDS]
    sel_steps.append(ChooseTwin("choose", candidates={k: f"candidate_{k}" for k in TWIN_KINDS}, k_fit=plain["k"]))
    sel = VVUQLoop(cands["none"], split_obj, sel_steps, seed=seed, on_fail="flag", out=out / "selection",
                   name="tumor_selection", progress=progress).run()
    choice = sel["choose"].values
    kind = choice["choice"] if twin is None else str(twin)
    comp = next(k for k in choice["ranking"] if k != kind)  # the best-ranked other twin: the comparison
    n_sbc = int(sbc_sims) if sbc_sims is not None else (10 if quick else 40)
    dec_kw = dict(t_now=t_now, threshold=threshold_mm3, epsilon=epsilon, grid=grid, horizon=horizon,
                  candidates=split["candidates"], readings=split["readings"], n_design_draws=300 if quick else 800,
                  validated_until=validated_until)
    focus_kw = dict(epsilon=epsilon, grid=grid, horizon=horizon, validated_until=validated_until)
    # 2. the main loop on the chosen twin
    steps = [
        Verify(),
        SBC(n_sims=n_sbc, draws=200 if quick else 400, tune=300 if quick else 500, var_names=list(SBC_QUANTITIES[kind]),
            prob=1.0 - 0.05 / (len(SBC_QUANTITIES[kind]) + 1)),
        Calibrate(**cal_kw),
        Validate(level=COVERAGE_LEVEL),
        Adopt(f"compare_{comp}", loop=sel, step=f"candidate_{comp}", twin=cands[comp]),
        MouseDecisions("decisions", **dec_kw),
        MouseDecisions(f"decisions_{comp}", source=f"compare_{comp}", needs=(f"compare_{comp}",), comparison=True,
                       **dec_kw),
        FocusSensitivity(grid=grid, horizon=horizon, num_resamples=10 if quick else 50),
        FocusDecide("decide", source="calibrate", **focus_kw),
        FocusSteer(candidates=split["candidates"], grid=grid, horizon=horizon, n_draws=300 if quick else 800),
        Assimilate(steer="steer", time_input="time"),
        ValidateRest(source="assimilate", level=COVERAGE_LEVEL, needs=("assimilate",)),
        FocusDecide("decide_after", source="assimilate", steer="steer", needs=("assimilate", "validate_after"),
                    **focus_kw),
        Operate(fn=inoculum_worlds(INOCULA, grid, float(np.log(threshold_mm3)), horizon, epsilon,
                                   law=GROWTH_LAWS[kind], validated_until=validated_until)),
    ]
    loop = VVUQLoop(cands[kind], split_obj, steps, seed=seed, on_fail="flag", out=out / "loop",
                    name="tumor", progress=progress)
    res = loop.run()
    summary = _report.case_summary(res, sel, kind=kind, comparison=comp, ds=ds, prov=prov, split=split, plain=plain,
                                   fits=fits, quick=quick, dataset=dataset, vaghi_r2=VAGHI_R2_MIN,
                                   power_fit=power_law_fit(cal.x[:, 0], cal.y, cal.unit))
    # why the reduced-Gompertz forecasts are biased: point fits of other laws / error models on the same split
    summary["forecast_bias_diagnosis"] = forecast_bias_diagnosis(cal, hold)
    paths = _report.write(res, summary, out, split=split, grid=grid)
    summary["volatile"] = {"loop": res.volatile, "selection": sel.volatile,
                           "paths": {k: str(v) for k, v in paths.items()}}
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
