"""First tumor case-study run: data -> hierarchical twin -> calibration -> hold-out validation -> report.

This is the first part of the full loop of the tumor case (issue 8): it loads the mouse
tumor-volume series with their provenance, declares a hierarchical Gompertz twin (per-mouse
growth parameters pooled on the log scale, a shared HSGP discrepancy over time on the
log-volume scale, and a log-normal measurement error, i.e. Gaussian on log volume), calibrates
it on the early part of each series, validates it on the held-back latest measurements, checks
the simulator's RK4 order, and writes a report. Sensitivity, risk, design and assimilation are
added by the lead as those modules land.

Run: ``python -m case_studies.tumor.run --quick --seed 1 --out out/tumor``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pytensor.tensor as pt

from vvuq_twin import (
    Gaussian,
    HalfNormal,
    Hierarchy,
    HSGPDiscrepancy,
    Normal,
    Parameter,
    Twin,
    calibrate,
    predict,
)
from vvuq_twin.report import Metric, Report
from vvuq_twin.verification import observed_order

from .data import load_tumor, tumor_twin_data
from .model import growth_simulator

__all__ = ["build_twin", "run"]

#: Nominal coverage of the predictive interval checked on the hold-out data.
COVERAGE_LEVEL = 0.9


def _progress(msg: str, t0: float) -> None:
    print(f"[tumor {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def build_twin(*, quick: bool = True) -> Twin:
    """The hierarchical reduced-Gompertz twin on the log-volume scale.

    ``log V_obs = log V_rg(t; beta_u, k) + delta(t) + eps``, ``eps ~ N(0, sigma)`` (log-normal
    measurement error on V), with the reduced Gompertz model of Vaghi et al. (2020): Gompertz
    growth ``dV/dt = (alpha - beta ln V) V`` from V(0) = 1 mm³ at injection (10⁶ cells,
    Benzekry et al. 2014) with ``alpha = k beta`` (k = ln K, K the population carrying capacity
    in mm³; the full Gompertz alpha and beta are so correlated across animals that one
    individual parameter suffices). Per-mouse ``beta`` is pooled on the log scale; ``k`` is a
    population parameter.
    """
    return Twin(
        name="tumor_reduced_gompertz_log",
        simulator=growth_simulator("reduced_gompertz", v0=1.0, log_output=True),
        parameters=[
            Parameter("beta", Normal(float(np.log(0.08)), 1.0), per_unit=True, link="log",
                      pop_scale=HalfNormal(0.5)),
            Parameter("k", Normal(9.0, 2.0)),
        ],
        discrepancy=HSGPDiscrepancy(m=8 if quick else 20, eta=HalfNormal(0.2)),
        observation=Gaussian(sigma=HalfNormal(0.5)),
        hierarchy=Hierarchy(dim="mouse"),
    )


def _crps(draws: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Empirical CRPS of each observation from predictive draws (dims: draw x obs)."""
    d = np.sort(draws, axis=0)
    n = d.shape[0]
    term1 = np.mean(np.abs(d - obs[None, :]), axis=0)
    # E|X - X'| from sorted samples: 2/n^2 sum_i (2i - n - 1) x_(i)
    i = np.arange(1, n + 1)[:, None]
    term2 = np.sum((2 * i - n - 1) * d, axis=0) / (n * n)
    return term1 - term2


def _rk4_order(t_end: float) -> tuple[float, bool]:
    p = {"beta": pt.as_tensor_variable(np.float64(0.08)), "k": pt.as_tensor_variable(np.float64(9.0))}
    x = pt.as_tensor_variable(np.array([[t_end]]))
    exact = growth_simulator("reduced_gompertz", log_output=True)(x, p).eval()
    steps = [40, 80, 160]
    errs = [float(np.abs(growth_simulator("reduced_gompertz", method="rk4", n_steps=n, log_output=True)(x, p).eval()
                         - exact).max()) for n in steps]
    res = observed_order([t_end / n for n in steps], errs, theoretical_order=4, tol=0.3)
    return res.order, bool(res.passed)


def run(
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "out/tumor",
    seed: int = 1,
    quick: bool = True,
    *,
    dataset: str = "lung",
) -> dict[str, Path]:
    """Run the tumor case study and write its report.

    Parameters
    ----------
    data_dir : path, optional
        Data directory (default ``$VVUQ_TWIN_DATA``).
    out : path
        Output directory for ``report.html``, ``summary.json`` and ``posterior.nc``.
    seed : int
        Seed of the whole run (same seed, same numbers).
    quick : bool
        Short sampling (CI); the full run uses more draws and basis functions.
    dataset : {"lung", "breast"}
        Which experiment.

    Returns
    -------
    dict
        Paths of the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    ds, prov = load_tumor(data_dir, dataset=dataset)
    keep = ~ds["below_detection"].values
    ds = ds.isel(obs=np.flatnonzero(keep))
    train = ds.isel(obs=np.flatnonzero(~ds["holdout"].values))
    test = ds.isel(obs=np.flatnonzero(ds["holdout"].values))
    _progress(f"loaded {prov.file} ({ds.sizes['obs']} obs, {prov.holdout['n_subjects']} mice; "
              f"{test.sizes['obs']} held out)", t0)

    data = tumor_twin_data(ds, "train")
    twin = build_twin(quick=quick)
    order, order_ok = _rk4_order(float(ds["time"].max()))
    _progress(f"RK4 observed order on the reduced Gompertz ODE: {order:.2f}", t0)

    draws, tune, chains = (300, 300, 2) if quick else (1000, 1000, 4)
    res = calibrate(twin, data, draws=draws, tune=tune, chains=chains, rng=seed, warn=False)
    _progress(f"calibrated ({res.info.get('sampler', 'sampler')}); diagnostics passed: "
              f"{res.diagnostics.passed if res.diagnostics else 'n/a'}", t0)

    pred = predict(res, test["time"].values, unit=test["subject"].values, rng=seed + 1)
    yd = pred["y"].stack(sample=("chain", "draw")).transpose("sample", "obs").values
    y_obs = np.log(test["volume"].values)
    lo, hi = np.quantile(yd, [(1 - COVERAGE_LEVEL) / 2, (1 + COVERAGE_LEVEL) / 2], axis=0)
    inside = (y_obs >= lo) & (y_obs <= hi)
    coverage = float(inside.mean())
    crps = float(_crps(yd, y_obs).mean())
    pit = (yd < y_obs[None, :]).mean(axis=0)
    # 90 % interval coverage of n hold-out points: accept within a binomial 99 % band
    n_test = y_obs.size
    sd = np.sqrt(COVERAGE_LEVEL * (1 - COVERAGE_LEVEL) / n_test)
    band = (max(0.0, COVERAGE_LEVEL - 2.58 * sd), min(1.0, COVERAGE_LEVEL + 2.58 * sd))
    _progress(f"hold-out: {COVERAGE_LEVEL:.0%} coverage {coverage:.3f}, CRPS {crps:.3f} (log mm³)", t0)

    rep = Report(f"Tumor growth twin — {dataset} data", seed=seed,
                 subtitle=f"case_studies.tumor.run(quick={quick}, seed={seed})")
    post = res.posterior
    summ = {}
    for name, vals in (("beta", np.exp(post["beta_mu"]).values.ravel()),
                       ("K", np.exp(post["k"]).values.ravel())):
        summ[name] = (float(np.median(vals)), *np.quantile(vals, [0.05, 0.95]).tolist())
    diag = res.diagnostics
    diag_metrics = []
    if diag is not None:
        for k, c in diag.checks.items():
            comp = ">=" if ("ess" in k or "ebfmi" in k) else "<="
            diag_metrics.append(Metric(k, float(c["value"]), float(c["threshold"]), comp))
    rep.add_summary(
        assumptions=[
            "reduced Gompertz growth (Vaghi et al. 2020): dV/dt = (k beta - beta ln V) V from V(0) = 1 mm³ at "
            "injection (Benzekry et al. 2014)",
            "per-mouse beta log-normally pooled across mice (non-centred); k (= ln K) shared",
            "shared smooth discrepancy over time on the log-volume scale (HSGP, ExpQuad)",
            "log-normal measurement error with one scale for all mice (Gaussian on log V)",
            f"{int((~keep).sum())} measurement(s) of 0 mm³ (not palpable) left out",
        ],
        data_provenance=[prov],
        verification=[Metric("RK4 observed order (reduced Gompertz, vs closed form)", order, (3.7, 4.3), "within")],
        validation=[
            Metric(f"{COVERAGE_LEVEL:.0%} predictive-interval coverage (hold-out, n={n_test})", coverage, band,
                   "within", note="binomial 99% band around the nominal level"),
            Metric("mean CRPS on log volume (hold-out)", crps, None, unit="log mm³"),
        ],
        diagnostics=diag_metrics or "not available",
        sensitivity="not computed in this first run (sensitivity module pending)",
        risk="not computed in this first run",
        decision="not computed in this first run",
        next_measurement="not computed in this first run",
    )
    rep.add_table("Calibration", {
        "parameter": ["beta population median (1/day)", "carrying capacity K = exp(k) (mm³)"],
        "median": [summ["beta"][0], summ["K"][0]],
        "5%": [summ["beta"][1], summ["K"][1]],
        "95%": [summ["beta"][2], summ["K"][2]],
    }, "Population-level reduced-Gompertz parameters (posterior)")

    # figure: per-mouse data and predictive bands
    mice = list(dict.fromkeys(ds["subject"].values.tolist()))
    show = mice[: min(8, len(mice))]
    fig, axes = plt.subplots(2, 4, figsize=(12, 5.5), sharex=True, sharey=True)
    tgrid = np.linspace(max(1.0, float(ds["time"].min()) - 2), float(ds["time"].max()) + 2, 40)
    pr = predict(res, np.tile(tgrid, len(show)), unit=np.repeat(show, tgrid.size), rng=seed + 2)
    qall = pr["y"].quantile([0.05, 0.5, 0.95], dim=("chain", "draw")).values
    for j, (ax, m) in enumerate(zip(axes.ravel(), show)):
        q = qall[:, j * tgrid.size:(j + 1) * tgrid.size]
        ax.fill_between(tgrid, np.exp(q[0]), np.exp(q[2]), alpha=0.3, label="90% predictive")
        ax.plot(tgrid, np.exp(q[1]), lw=1)
        sel = ds["subject"].values == m
        hold = ds["holdout"].values[sel]
        tt, vv = ds["time"].values[sel], ds["volume"].values[sel]
        ax.plot(tt[~hold], vv[~hold], "ko", ms=3, label="calibration")
        ax.plot(tt[hold], vv[hold], "rs", ms=4, label="held out")
        ax.set_yscale("log")
        ax.set_title(f"mouse {m}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("days after injection")
    fig.supylabel("tumor volume (mm³)")
    rep.add_figure("Calibration", fig, "Per-mouse posterior predictive 90% bands with calibration data "
                   "(black) and held-out latest measurements (red)")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.hist(pit, bins=10, range=(0, 1), edgecolor="k")
    a1.axhline(n_test / 10, color="r", lw=1)
    a1.set_xlabel("PIT of held-out log volume")
    a1.set_ylabel("count")
    dq = res.posterior_predictive["delta"].quantile([0.05, 0.5, 0.95], dim=("chain", "draw"))
    order_t = np.argsort(data.x[:, 0])
    a2.fill_between(data.x[order_t, 0], dq.values[0][order_t], dq.values[2][order_t], alpha=0.3)
    a2.plot(data.x[order_t, 0], dq.values[1][order_t])
    a2.axhline(0, color="k", lw=0.5)
    a2.set_xlabel("days after injection")
    a2.set_ylabel("discrepancy delta (log volume)")
    rep.add_figure("Validation", fig, "Left: PIT histogram of the held-out measurements (uniform if "
                   "calibrated). Right: posterior of the shared discrepancy over time (90% band).")
    rep.add_dataset("posterior", res.idata.posterior)
    rep.add_dataset("holdout_predictive", pred)
    paths = rep.write(out)
    _progress(f"report written to {paths['html']}", t0)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m case_studies.tumor.run [--quick] [--seed S] [--out DIR] [--data DIR]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data directory (default $VVUQ_TWIN_DATA)")
    ap.add_argument("--out", default="out/tumor")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dataset", default="lung", choices=["lung", "breast"])
    a = ap.parse_args(argv)
    run(a.data, a.out, a.seed, a.quick, dataset=a.dataset)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
