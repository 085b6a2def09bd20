"""Airframe case-study run: Virkler crack growth -> hierarchical Paris-law twin -> inspection interval.

The loop of issue 8, as far as the modules allow today:

1. load the Virkler et al. (1979) crack-growth data (68 replicate 2024-T3 panels) with their
   provenance; the latest quarter of each specimen's record (the longest cracks) is held back;
2. declare the twin: cycles-to-reach-length ``N(a)`` from the Paris law with Feddersen's
   finite-width correction (:mod:`case_studies.airframe.model`), per-specimen ``log10 C`` and
   ``m`` partially pooled across specimens, a shared smooth discrepancy over crack length
   (HSGP) and Gaussian measurement error on cycles;
3. verify the integrator (observed order of the Simpson/RK4 quadrature against the
   infinite-plate closed form);
4. calibrate (NUTS) and validate on the held-back longest cracks (coverage, CRPS, PIT,
   extrapolation flag);
6. decide under risk: the longest inspection interval for a *new* panel such that
   P(crack reaches the critical length before the next inspection) <= 1e-4, estimated by
   subset simulation on the posterior predictive of a new specimen's Paris parameters, cross-
   checked by importance sampling, with the superquantile of the crack size at the interval.

Not done here (said in the report): SBC of the inference, sensitivity, design/steering and
assimilation (steps 3b, 5, 7, 8).

Run: ``python -m case_studies.airframe.run --quick --seed 1 --out out/airframe --data DIR``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from vvuq_twin import (
    Gaussian,
    HalfNormal,
    Hierarchy,
    HSGPDiscrepancy,
    LogNormal,
    Normal,
    Parameter,
    Twin,
    TwinData,
    calibrate,
    predict,
)
from vvuq_twin.report import Metric, Report
from vvuq_twin.risk import (
    RareEventError,
    TailSampleWarning,
    failure_probability,
    importance_sampling,
    subset_simulation,
    superquantile,
)
from vvuq_twin.validation import ValidationDomain, crps, interval_coverage, pit
from vvuq_twin.verification import observed_order

from .data import VIRKLER_CONDITIONS, load_virkler
from .model import cycles_to_length, cycles_to_length_infinite, paris_cycles_simulator

__all__ = ["build_twin", "run", "main", "COVERAGE_LEVEL", "DELTA_K_REF", "TARGET_PF"]

#: Nominal coverage of the predictive interval checked on the hold-out data.
COVERAGE_LEVEL = 0.9
#: Reference stress-intensity range (MPa m^0.5): log10_C is the growth rate (m/cycle) there.
DELTA_K_REF = 12.0
#: Chance constraint of the inspection decision.
TARGET_PF = 1.0e-4
#: Cycles are calibrated in units of 1e5.
CYCLES_SCALE = 1.0e5
#: Published range of the Paris exponent m for 2024-T3 used for comparison (see report).
M_LITERATURE = (2.9, 4.0)

_W = float(VIRKLER_CONDITIONS["width_mm"])
_DS = float(VIRKLER_CONDITIONS["stress_range_mpa"])
_A0 = float(VIRKLER_CONDITIONS["initial_half_length_mm"])


def _progress(msg: str, t0: float) -> None:
    print(f"[airframe {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def build_twin(*, quick: bool = True) -> Twin:
    """The hierarchical Paris-law twin of cycles-to-reach-length (in 1e5 cycles).

    ``N_obs(a) = N(a; log10C_s, m_s) + delta(a) + eps``: per-specimen ``log10_C`` (rate at
    ``DELTA_K_REF``, m/cycle) and ``m`` pooled across specimens (non-centred), a shared HSGP
    discrepancy over crack half-length, and Gaussian error on the cycle count.
    """
    return Twin(
        name="airframe_paris_virkler",
        simulator=paris_cycles_simulator(a0_mm=_A0, stress_range=_DS, width_mm=_W,
                                         n_steps=8 if quick else 32, delta_k_ref=DELTA_K_REF,
                                         cycles_scale=CYCLES_SCALE),
        parameters=[
            # rate at dK = 12 MPa m^0.5 for 2024-T3 is of order 1e-7 m/cycle
            Parameter("log10_C", Normal(-7.0, 0.5), per_unit=True, pop_scale=HalfNormal(0.1)),
            Parameter("m", Normal(3.0, 0.7), per_unit=True, pop_scale=HalfNormal(0.3)),
        ],
        discrepancy=HSGPDiscrepancy(m=6 if quick else 16, eta=HalfNormal(0.05),
                                    ls=LogNormal(float(np.log(10.0)), 0.4)),
        observation=Gaussian(sigma=HalfNormal(0.02)),
        hierarchy=Hierarchy(dim="specimen"),
    )


def _select(ds, specimens: list[str], thin: int):
    """Rows of the chosen specimens, every ``thin``-th crack length (a0 rows dropped)."""
    spec = ds["specimen"].values
    keep = np.zeros(spec.size, dtype=bool)
    for s in specimens:
        idx = np.flatnonzero(spec == s)
        keep[idx[::thin]] = True
    keep &= ds["cycles"].values > 0
    return ds.isel(obs=np.flatnonzero(keep))


def _twin_data(sub) -> TwinData:
    return TwinData(x=sub["crack_half_length"].values, y=sub["cycles"].values / CYCLES_SCALE,
                    unit=sub["specimen"].values, input_names=["crack_half_length_mm"],
                    obs=sub["obs"].values)


def _verify_quadrature() -> Any:
    """Observed order of the Simpson (= RK4) quadrature of N(a) vs the infinite-plate closed form."""
    a = np.array([20.0, 35.0, 49.8])
    exact = cycles_to_length_infinite(a, _A0, -7.0, 3.2, _DS, delta_k_ref=DELTA_K_REF).eval()
    steps = [4, 8, 16, 32]
    errs = []
    for n in steps:
        num = cycles_to_length(a, _A0, -7.0, 3.2, _DS, None, n_steps=n, delta_k_ref=DELTA_K_REF).eval()
        errs.append(float(np.max(np.abs(num - exact) / exact)))
    return observed_order([1.0 / n for n in steps], errs, theoretical_order=4, tol=0.3)


def _paris_secant_fit(sub) -> tuple[float, float]:
    """Independent estimate: ASTM E647 secant rates, log-log least squares of da/dN vs dK.

    Returns ``(m, log10_C)`` with C in (m/cycle)/(MPa m^0.5)^m (Feddersen-corrected dK).
    """
    xs, ys = [], []
    for s in np.unique(sub["specimen"].values):
        g = sub.isel(obs=np.flatnonzero(sub["specimen"].values == s))
        a = g["crack_half_length"].values
        n = g["cycles"].values
        da, dn = np.diff(a), np.diff(n)
        ok = dn > 0
        am = 0.5 * (a[1:] + a[:-1])
        dk = _DS * np.sqrt(np.pi * am * 1e-3) * np.sqrt(1.0 / np.cos(np.pi * am / _W))
        xs.append(np.log10(dk[ok]))
        ys.append(np.log10(da[ok] * 1e-3 / dn[ok]))
    x, y = np.concatenate(xs), np.concatenate(ys)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


class _LifeLimitState:
    """g(theta) = N(a_crit; log10_C, m) - interval (cycles); failure when g <= 0.

    ``theta = (log10_C, m, eps)`` in standard-normal coordinates are mapped by ``transform``;
    ``eps`` is the predictive noise of the cycle count (model discrepancy + measurement).
    """

    def __init__(self, a_crit: float, interval: float, n_steps: int) -> None:
        self.a_crit, self.interval, self.n_steps = float(a_crit), float(interval), int(n_steps)
        self._f = None

    def _compile(self):
        lc, m = pt.dvector("lc"), pt.dvector("m")
        out = cycles_to_length(pt.as_tensor_variable(np.float64(self.a_crit)) + 0.0 * lc, _A0, lc, m,
                               _DS, _W, n_steps=self.n_steps, delta_k_ref=DELTA_K_REF)
        return pytensor.function([lc, m], out)

    def life(self, lc: np.ndarray, m: np.ndarray) -> np.ndarray:
        if self._f is None:
            self._f = self._compile()
        return self._f(np.atleast_1d(lc).astype(float), np.atleast_1d(m).astype(float))

    def __call__(self, theta: np.ndarray) -> float:
        life = float(self.life(theta[:1], theta[1:2])[0]) + float(theta[2]) * CYCLES_SCALE
        return (life - self.interval) / CYCLES_SCALE

    def __getstate__(self):  # the compiled function stays in this process
        d = dict(self.__dict__)
        d["_f"] = None
        return d


class _HierarchicalTransform:
    """Standard-normal ``u`` (9-D) -> ``theta = (log10_C, m, eps)`` of a new panel.

    The posterior of the population is approximated by a Gaussian in unconstrained coordinates
    ``h = (log10_C_mu, m_mu, log log10_C_sigma, log m_sigma, delta(a_crit), log sigma_obs)``
    (``h = mean + L u[:6]``); the new panel then draws its own effects as in the twin:
    ``log10_C = h0 + e^h2 u6``, ``m = h1 + e^h3 u7`` and the cycle error
    ``eps = h4 + e^h5 u8`` (discrepancy at a_crit plus measurement error, 1e5 cycles).
    """

    dim = 9

    def __init__(self, mean: np.ndarray, chol: np.ndarray) -> None:
        self.mean, self.chol = mean, chol

    def batch(self, U: np.ndarray) -> np.ndarray:
        H = self.mean + np.atleast_2d(U)[:, :6] @ self.chol.T
        Z = np.atleast_2d(U)[:, 6:]
        return np.column_stack([H[:, 0] + np.exp(H[:, 2]) * Z[:, 0],
                                H[:, 1] + np.exp(H[:, 3]) * Z[:, 1],
                                H[:, 4] + np.exp(H[:, 5]) * Z[:, 2]])

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return self.batch(u)[0]

    @classmethod
    def from_draws(cls, h: np.ndarray) -> "_HierarchicalTransform":
        return cls(h.mean(axis=0), np.linalg.cholesky(np.cov(h, rowvar=False) + 1e-12 * np.eye(h.shape[1])))


def _crack_size_at(lc: np.ndarray, m: np.ndarray, cycles: float, life_fn, a_grid: np.ndarray) -> np.ndarray:
    """Crack half-length after ``cycles`` for each (lc, m): invert N(a) on a grid (mm).

    Panels whose crack would pass the last grid point get the last grid value (>= critical).
    """
    lcg = np.repeat(lc, a_grid.size)
    mg = np.repeat(m, a_grid.size)
    ag = np.tile(a_grid, lc.size)
    n = life_fn(ag, lcg, mg).reshape(lc.size, a_grid.size)
    out = np.empty(lc.size)
    for i in range(lc.size):
        out[i] = a_grid[-1] if n[i, -1] <= cycles else np.interp(cycles, n[i], a_grid)
    return out


def run(
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "out/airframe",
    seed: int = 1,
    quick: bool = True,
    *,
    n_specimens: int = 8,
    thin: int = 8,
    a_crit_mm: float = 49.8,
) -> dict[str, Any]:
    """Run the airframe case study and write its report.

    Parameters
    ----------
    data_dir : path, optional
        Data directory with ``virkler_crack_growth.csv`` (default ``$VVUQ_TWIN_DATA``).
    out : path
        Output directory (``report.html``, ``summary.json``, NetCDF draws).
    seed : int
        Seed of the whole run (same seed, same numbers).
    quick : bool
        Short sampling and small rare-event budgets (CI, <= 2 minutes on 2 cores).
    n_specimens : int
        Number of specimens in the hierarchy (evenly spread over the 68).
    thin : int
        Keep every ``thin``-th crack length of each specimen.
    a_crit_mm : float
        Critical crack half-length (mm); default the longest measured, 49.8 mm.

    Returns
    -------
    dict
        Summary numbers (posterior of m, hold-out coverage/CRPS, decision, risk) and ``paths``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not 2 <= int(n_specimens) <= 68:
        raise ValueError(f"n_specimens must be in 2..68, got {n_specimens}.")
    if int(thin) < 1:
        raise ValueError(f"thin must be >= 1, got {thin}.")
    if not _A0 < a_crit_mm < _W / 2:
        raise ValueError(f"a_crit_mm must lie between a0 = {_A0} mm and W/2 = {_W / 2} mm, got {a_crit_mm}.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ds, prov = load_virkler(data_dir)
    all_specs = sorted(set(ds["specimen"].values.tolist()), key=int)
    pick = np.unique(np.linspace(0, len(all_specs) - 1, int(n_specimens)).round().astype(int))
    specimens = [all_specs[i] for i in pick]
    sub = _select(ds, specimens, int(thin))
    hold = sub["holdout"].values
    train, test = sub.isel(obs=np.flatnonzero(~hold)), sub.isel(obs=np.flatnonzero(hold))
    data = _twin_data(train)
    _progress(f"loaded {prov.file}: {len(specimens)} specimens {specimens}, {train.sizes['obs']} "
              f"calibration rows, {test.sizes['obs']} held out (longest cracks)", t0)

    # ---- verify
    order = _verify_quadrature()
    _progress(f"quadrature observed order {order.order:.2f} (theory 4): "
              f"{'PASS' if order.passed else 'FAIL'}", t0)

    # ---- calibrate
    twin = build_twin(quick=quick)
    draws, tune, chains = (200, 250, 2) if quick else (1000, 1000, 4)
    res = calibrate(twin, data, draws=draws, tune=tune, chains=chains, rng=seed, warn=False)
    diag = res.diagnostics
    _progress(f"calibrated ({res.info['sampler']}, {res.info['total_time_s']:.0f}s); diagnostics "
              f"passed: {diag.passed}", t0)
    post = res.posterior
    m_pop = post["m_mu"].values.ravel()
    lc_pop = post["log10_C_mu"].values.ravel()
    # C in the usual units (m/cycle)/(MPa m^0.5)^m: log10 C = log10 C_ref - m log10(dK_ref)
    log10C_std = lc_pop - m_pop * np.log10(DELTA_K_REF)
    m_spec = post["m"]  # (chain, draw, specimen)

    # ---- validate on the longest cracks
    pred = predict(res, test["crack_half_length"].values, unit=test["specimen"].values, rng=seed + 1)
    y_test = test["cycles"].values / CYCLES_SCALE
    cov_ds = interval_coverage(pred["y"], y_test, COVERAGE_LEVEL)
    coverage = float(cov_ds["coverage"])
    crps_val = float(np.mean(crps(pred["y"], y_test)))
    pit_vals = np.asarray(pit(pred["y"], y_test))
    n_test = y_test.size
    sd = np.sqrt(COVERAGE_LEVEL * (1 - COVERAGE_LEVEL) / n_test)
    band = (max(0.0, COVERAGE_LEVEL - 2.58 * sd), min(1.0, COVERAGE_LEVEL + 2.58 * sd))
    domain = ValidationDomain.from_data(data, criterion="range")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dom = domain.assess(test["crack_half_length"].values[:, None])
    frac_extrap = float(dom["flag"].values.mean())
    _progress(f"hold-out: {COVERAGE_LEVEL:.0%} coverage {coverage:.3f} (band {band[0]:.2f}-"
              f"{band[1]:.2f}), CRPS {crps_val:.4f} x1e5 cycles, {frac_extrap:.0%} of hold-out "
              "points beyond the calibrated crack lengths", t0)

    # ---- decide under risk: new panel, interval with P(N(a_crit) < interval) <= 1e-4
    rng_pred, rng_ss, rng_is = (int(s) for s in rng.integers(0, 2**31 - 1, size=3))
    new = predict(res, np.array([a_crit_mm]), unit="new", rng=rng_pred)
    hyper = np.column_stack([
        post["log10_C_mu"].values.ravel(), post["m_mu"].values.ravel(),
        np.log(post["log10_C_sigma"].values.ravel()), np.log(post["m_sigma"].values.ravel()),
        new["delta"].values.ravel(), np.log(post["sigma_obs"].values.ravel()),
    ])
    transform = _HierarchicalTransform.from_draws(hyper)
    n_steps = 8 if quick else 32
    life_ls = _LifeLimitState(a_crit_mm, 0.0, n_steps)
    # exact posterior predictive draws of a new panel's life (for the Monte Carlo cross-check)
    lc_new = new["log10_C_new"].values.ravel()
    m_new = new["m_new"].values.ravel()
    life_draws = life_ls.life(lc_new, m_new) + (new["y"] - new["eta"]).values.ravel() * CYCLES_SCALE
    life_med = float(np.median(life_draws))

    n_level = 1000 if quick else 4000
    # longest intervals first: the first that meets the constraint is the decision (cost of
    # inspections ~ 1 / interval, so the longest feasible interval is the cheapest)
    candidates = life_med * np.geomspace(0.95, 0.2, 12 if quick else 24)
    pfs, pf_hi, covs, chosen, ss_chosen = [], [], [], None, None
    for k, interval in enumerate(candidates):
        ls = _LifeLimitState(a_crit_mm, float(interval), n_steps)
        try:
            r = subset_simulation(ls, transform.dim, n_per_level=n_level, p0=0.1, transform=transform,
                                  rng=rng_ss + k, max_levels=8)
        except RareEventError:  # below 1e-8: feasible, estimate not resolved
            pfs.append(0.1 ** 8)
            pf_hi.append(0.1 ** 8)
            covs.append(float("nan"))
            chosen, ss_chosen = float(interval), None
            break
        pfs.append(r.pf)
        pf_hi.append(r.ci_high)
        covs.append(r.cov)
        if r.pf <= TARGET_PF:
            chosen, ss_chosen = float(interval), r
            break
    decision_ok = chosen is not None
    if chosen is None:
        chosen = float(candidates[-1])
    ls_chosen = _LifeLimitState(a_crit_mm, chosen, n_steps)
    is_res = importance_sampling(ls_chosen, transform.dim, method="form", n_samples=2000 if quick else 10000,
                                 transform=transform, rng=rng_is)
    _progress(f"inspection interval {chosen:,.0f} cycles: subset simulation pf "
              f"{(ss_chosen.pf if ss_chosen else float('nan')):.2e}, importance sampling pf "
              f"{is_res.pf:.2e}", t0)

    # superquantile of crack size at the chosen interval (posterior predictive of a new panel)
    a_t, lc_t, m_t = pt.dvector("a"), pt.dvector("lc"), pt.dvector("m")
    life_at = pytensor.function([a_t, lc_t, m_t], cycles_to_length(
        a_t, _A0, lc_t, m_t, _DS, _W, n_steps=n_steps, delta_k_ref=DELTA_K_REF))
    a_grid = np.linspace(_A0 + 0.1, 0.45 * _W, 120)
    th = transform.batch(np.random.default_rng(rng_is + 1).standard_normal((4000 if quick else 20000, transform.dim)))
    a_at = _crack_size_at(th[:, 0], th[:, 1], chosen, life_at, a_grid)
    # Monte Carlo cross-check on the exact posterior predictive draws (resolves pf >~ 1/n only)
    with warnings.catch_warnings():  # few tail draws expected: this check only bounds pf
        warnings.simplefilter("ignore", TailSampleWarning)
        mc_fail = failure_probability(-(life_draws - chosen), 0.0)
    cvar = superquantile(a_at, 0.99)
    _progress(f"crack size at the interval: median {np.median(a_at):.1f} mm, CVaR_0.99 "
              f"{cvar.estimate:.1f} mm", t0)

    # ---- report
    m_q = np.quantile(m_pop, [0.05, 0.5, 0.95])
    c_q = np.quantile(log10C_std, [0.05, 0.5, 0.95])
    m_fit, c_fit = _paris_secant_fit(train)
    rep = Report("Airframe fatigue-crack twin — Virkler 2024-T3 panels", seed=seed,
                 subtitle=f"case_studies.airframe.run(quick={quick}, seed={seed})")
    diag_metrics = []
    for k, c in diag.checks.items():
        comp = ">=" if ("ess" in k or "ebfmi" in k) else "<="
        diag_metrics.append(Metric(k, float(c["value"]), float(c["threshold"]), comp))
    rep.add_summary(
        assumptions=[
            "Paris law da/dN = C dK^m with dK = dsigma sqrt(pi a) sqrt(sec(pi a/W)) (Feddersen), "
            f"W = {_W} mm, dsigma = {_DS} MPa, a0 = {_A0} mm (test conditions as restated in the "
            "literature, not checked against the 1979 paper)",
            f"per-specimen log10 C (at dK = {DELTA_K_REF} MPa m^0.5) and m, normal across specimens",
            "shared smooth discrepancy of the cycle count over crack length (HSGP, ExpQuad)",
            "Gaussian measurement error on the cycle count, one scale for all specimens",
            f"quick run: {len(specimens)} of 68 specimens ({specimens}), every {thin}th crack length",
            "decision: the population posterior approximated by a Gaussian in unconstrained "
            "coordinates (for the rare-event estimators); a new panel then draws its own log10 C, m "
            "and cycle error from that population, as in the twin",
        ],
        data_provenance=[prov],
        verification=[
            Metric("Simpson/RK4 observed order of N(a) (vs infinite-plate closed form)",
                   order.order, (3.7, 4.3), "within"),
            "SBC of the inference: not run (not done in this case study yet)",
        ],
        validation=[
            Metric(f"{COVERAGE_LEVEL:.0%} predictive-interval coverage (hold-out, n={n_test})",
                   coverage, band, "within", note="binomial 99% band around the nominal level"),
            Metric("mean CRPS of cycles (hold-out)", crps_val, None, unit="1e5 cycles"),
            Metric("fraction of hold-out crack lengths beyond the calibrated range", frac_extrap,
                   None, note="the hold-out is an extrapolation in crack length by design"),
        ],
        diagnostics=diag_metrics,
        sensitivity="not computed (sensitivity step not done in this case study yet)",
        risk=[
            Metric(f"P(crack reaches {a_crit_mm} mm before next inspection), subset simulation",
                   ss_chosen.pf if ss_chosen else float("nan"), TARGET_PF, "<="),
            Metric("same, importance sampling at the FORM design point (cross-check)", is_res.pf,
                   None),
            Metric(f"same, plain Monte Carlo on {life_draws.size} exact posterior predictive draws "
                   "(upper 95% bound; resolves only pf >~ 1/n)", mc_fail.ci_high, None),
            Metric("superquantile CVaR_0.99 of crack half-length at the interval", cvar.estimate,
                   None, unit="mm"),
        ],
        decision=(f"inspect a new panel every {chosen:,.0f} cycles (largest interval on the grid "
                  f"with P(failure before next inspection) <= {TARGET_PF:g})"
                  if decision_ok else "no interval on the grid meets the constraint"),
        next_measurement="not computed (design/steering step not done in this case study yet)",
    )
    rep.add_table("Comparison with published values", {
        "quantity": ["Paris exponent m (population)", "log10 C, C in (m/cycle)/(MPa m^0.5)^m"],
        "this twin, median": [m_q[1], c_q[1]],
        "this twin, 5%": [m_q[0], c_q[0]],
        "this twin, 95%": [m_q[2], c_q[2]],
        "secant + log-log LSQ, same rows": [m_fit, c_fit],
        "literature, 2024-T3": [f"{M_LITERATURE[0]}-{M_LITERATURE[1]}", "about -11 to -10"],
    }, "Population Paris parameters vs an independent fit and the literature range")
    in_range = M_LITERATURE[0] <= m_q[1] <= M_LITERATURE[1]
    rep.add_text("Comparison with published values", (
        f"The literature range of m for 2024-T3 aluminium at R around 0.1-0.2 quoted here "
        f"({M_LITERATURE[0]}-{M_LITERATURE[1]}) is the range stated in the project's case-study "
        "brief (issue 8), which restates common handbook values; it was not re-checked against a "
        "primary source in this run, and the C range follows from it at these dK. The independent "
        "check is an ASTM E647-style secant fit of log(da/dN) against log(dK) on the same "
        f"calibration rows. The twin's population median m = {m_q[1]:.2f} "
        f"{'lies inside' if in_range else 'lies OUTSIDE'} that range. Differences from the secant "
        "fit are expected: the twin fits cycles (the measured variable) rather than differenced "
        "rates, pools specimens, and absorbs part of the curvature of the Virkler da/dN curve into "
        "the discrepancy."))

    # figures
    fig, ax = plt.subplots(figsize=(8, 4.5))
    grid = np.linspace(_A0 + 0.2, float(sub["crack_half_length"].max()), 40)
    show = specimens[:4]
    pr_all = predict(res, np.tile(grid, len(show)), unit=np.repeat(show, grid.size), rng=seed + 10)
    q_all = pr_all["y"].quantile([0.05, 0.5, 0.95], dim=("chain", "draw")).values
    for j, s in enumerate(show):
        q = q_all[:, j * grid.size:(j + 1) * grid.size]
        line, = ax.plot(q[1], grid, lw=1)
        ax.fill_betweenx(grid, q[0], q[2], alpha=0.2, color=line.get_color())
        sel = sub["specimen"].values == s
        h = sub["holdout"].values[sel]
        xs, ys = sub["cycles"].values[sel] / CYCLES_SCALE, sub["crack_half_length"].values[sel]
        ax.plot(xs[~h], ys[~h], "o", ms=3, color=line.get_color(), label=f"specimen {s}")
        ax.plot(xs[h], ys[h], "s", ms=4, mfc="none", color=line.get_color())
    ax.set_xlabel("cycles (1e5)")
    ax.set_ylabel("crack half-length a (mm)")
    ax.legend(fontsize=7)
    rep.add_figure("Calibration and validation", fig, "Posterior predictive 90% bands of cycles to "
                   "reach each crack length for four specimens; dots: calibration data, open "
                   "squares: held-out longest cracks")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.hist(pit_vals, bins=10, range=(0, 1), edgecolor="k")
    a1.axhline(n_test / 10, color="r", lw=1)
    a1.set_xlabel("PIT of held-out cycles")
    a2.hist(m_spec.values.reshape(-1, m_spec.shape[-1]), bins=30, histtype="step")
    a2.axvspan(*M_LITERATURE, color="g", alpha=0.1, label="literature range")
    a2.set_xlabel("per-specimen Paris exponent m")
    a2.legend(fontsize=7)
    rep.add_figure("Calibration and validation", fig, "Left: PIT of the held-out cycles (flat if "
                   "calibrated). Right: posterior of each specimen's m with the literature range")
    fig, (b1, b2) = plt.subplots(1, 2, figsize=(10, 3.5))
    b1.semilogy(candidates[: len(pfs)], np.maximum(pfs, 1e-12), "o-", label="subset simulation")
    b1.axhline(TARGET_PF, color="r", ls="--", label="constraint 1e-4")
    b1.axvline(chosen, color="k", lw=0.8)
    b1.set_xlabel("inspection interval (cycles)")
    b1.set_ylabel("P(failure before next inspection)")
    b1.legend(fontsize=7)
    b2.hist(a_at, bins=40)
    b2.axvline(cvar.estimate, color="r", label="CVaR 0.99")
    b2.axvline(a_crit_mm, color="k", ls="--", label="critical")
    b2.set_xlabel("crack half-length at the interval (mm)")
    b2.legend(fontsize=7)
    rep.add_figure("Decision under risk", fig, "Left: failure probability against the inspection "
                   "interval (rare-event estimates). Right: predictive crack size of a new panel at "
                   "the chosen interval with its superquantile")
    rep.add_table("Decision under risk", {
        "interval (cycles)": candidates[: len(pfs)], "pf (subset simulation)": pfs,
        "CoV": covs, "pf upper 95%": pf_hi,
    }, "Subset-simulation estimates on the interval grid (stops at the first violation)")
    rep.add_text("Not done in this run", (
        "SBC of the inference, sensitivity of the decision quantity, goal-oriented design of the "
        "next inspection, and assimilation of a new measurement (loop steps 3b, 5, 7, 8) are not "
        "part of this case study yet. The rare-event estimates use a Gaussian approximation of "
        "the new panel's posterior predictive parameters. The critical length is the longest "
        "measured crack, not a residual-strength calculation."))
    rep.add_dataset("posterior", res.idata.posterior)
    rep.add_dataset("holdout_predictive", pred)
    paths = rep.write(out)
    _progress(f"report written to {paths['html']}", t0)
    return {
        "case": "airframe",
        "seed": int(seed),
        "specimens": specimens,
        "n_train": int(train.sizes["obs"]),
        "n_holdout": int(n_test),
        "m_median": float(m_q[1]),
        "m_90": (float(m_q[0]), float(m_q[2])),
        "log10_C_median": float(c_q[1]),
        "m_secant_fit": m_fit,
        "verification_order": float(order.order),
        "diagnostics_passed": bool(diag.passed),
        "coverage": coverage,
        "coverage_band": band,
        "crps": crps_val,
        "fraction_extrapolated": frac_extrap,
        "life_median_cycles": life_med,
        "interval_cycles": chosen,
        "decision_feasible": bool(decision_ok),
        "pf_subset": float(ss_chosen.pf) if ss_chosen else float("nan"),
        "pf_importance": float(is_res.pf),
        "crack_cvar99_mm": float(cvar.estimate),
        "pf_mc_upper": float(mc_fail.ci_high),
        "paths": {k: str(v) for k, v in paths.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m case_studies.airframe.run [--quick] [--seed S] [--out DIR] [--data DIR]``."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="data directory (default $VVUQ_TWIN_DATA)")
    ap.add_argument("--out", default="out/airframe")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    run(a.data, a.out, a.seed, a.quick)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
