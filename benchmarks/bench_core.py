"""Core calibration benchmarks (issue: core twin declaration and calibration).

1. ESS per second (bulk, minimum over parameters) after compilation, compile time reported
   separately: the default path (nutpie NUTS) vs plain ``pm.sample`` on the same hierarchical
   twin with a GP discrepancy. Goal: >= 3x.
2. Calibration time vs n for the discrepancy: exact GP vs HSGP at n = 200, 1000, 5000 (time per
   log-density gradient measured for all; exact GP above n = 200 projected, see ``gp_vs_hsgp``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

import vvuq_twin as vt
from vvuq_twin.inference.calibrate import clear_compile_cache

OUT = Path(__file__).parent / "results"


def hierarchical_gp_twin(n_units: int = 6, n_per: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    units = [f"U{i}" for i in range(n_units)]
    k = np.exp(np.log(0.5) + 0.3 * rng.normal(size=n_units))
    t = np.tile(np.linspace(0.3, 5, n_per), n_units)
    lab = np.repeat(units, n_per)
    y = 10 * np.exp(-np.repeat(k, n_per) * t) + 0.4 * np.sin(t) + rng.normal(0, 0.2, t.size)
    twin = vt.Twin(
        "decay_gp",
        vt.PytensorSimulator(lambda X, p: 10 * pt.exp(-p["k"] * X[:, 0]), name="decay"),
        [vt.Parameter("k", vt.Normal(np.log(0.5), 1.0), per_unit=True, link="log",
                      pop_scale=vt.HalfNormal(0.5))],
        discrepancy=vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 0.5), eta=vt.HalfNormal(0.5)),
        observation=vt.Gaussian(sigma=vt.HalfNormal(0.5)),
        hierarchy=vt.Hierarchy(),
    )
    return twin, vt.TwinData(x=t, y=y, unit=lab)


def _min_ess(idata, names):
    ess = az.ess(idata.posterior[names], method="bulk")
    return float(min(float(ess[v].min()) for v in names))


def ess_per_second(draws: int, tune: int, chains: int = 2, seed: int = 1) -> dict:
    twin, data = hierarchical_gp_twin()
    names = ["k", "k_mu", "k_sigma", "sigma_obs", "delta_ls", "delta_eta"]
    clear_compile_cache()
    res = vt.calibrate(twin, data, method="nutpie", draws=draws, tune=tune, chains=chains,
                       rng=seed, warn=False, posterior_predictive=False)
    nut = {"compile_s": res.info["compile_time_s"], "sample_s": res.info["sample_time_s"],
           "min_ess_bulk": _min_ess(res.idata, names)}
    # plain PyMC on the same model: compile separately from sampling
    model = twin.build_model(data)
    t0 = time.perf_counter()
    with model:
        step = pm.NUTS()  # compiles logp/dlogp
    compile_pm = time.perf_counter() - t0
    t0 = time.perf_counter()
    with model:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=chains, step=step,
                          random_seed=seed, progressbar=False, compute_convergence_checks=False)
    sample_pm = time.perf_counter() - t0
    pmc = {"compile_s": compile_pm, "sample_s": sample_pm, "min_ess_bulk": _min_ess(idata, names)}
    for d in (nut, pmc):
        d["ess_per_s"] = d["min_ess_bulk"] / d["sample_s"]
    return {"nutpie": nut, "pymc": pmc, "ratio_ess_per_s": nut["ess_per_s"] / pmc["ess_per_s"],
            "draws": draws, "tune": tune, "chains": chains, "n_obs": data.n}


def _gp_twin(n: int, kind: str):
    rng = np.random.default_rng(n)
    x = np.sort(rng.uniform(0, 4, n))
    y = 0.7 * x + 0.3 * np.sin(2 * x) + rng.normal(0, 0.1, n)
    data = vt.TwinData(x=x, y=y)
    sim = vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0], name="linear")
    disc = (vt.GPDiscrepancy(ls=vt.LogNormal(np.log(0.6), 0.3), eta=vt.HalfNormal(0.5))
            if kind == "exact" else
            vt.HSGPDiscrepancy(m=30, c=1.5, ls=vt.LogNormal(np.log(0.6), 0.3), eta=vt.HalfNormal(0.5)))
    twin = vt.Twin(f"{kind}{n}", sim, [vt.Parameter("theta", vt.Normal(0, 1))],
                   discrepancy=disc, observation=vt.Gaussian(sigma=vt.HalfNormal(0.5)))
    return twin, data


def _gradient_seconds(twin, data, repeats: int) -> tuple[float, float]:
    """Compile time and time of one log-density + gradient evaluation (numba backend, as nutpie)."""
    import pytensor
    from threadpoolctl import threadpool_limits

    model = twin.build_model(data)
    vals = model.value_vars
    lp = model.logp()
    t0 = time.perf_counter()
    fn = pytensor.function(vals, [lp, *pt.grad(lp, vals)], mode="NUMBA")
    args = [model.initial_point()[v.name] for v in vals]
    with threadpool_limits(1, user_api="blas"):  # one core, as one chain of a parallel run
        fn(*args)  # numba compiles lazily: the first call is part of compilation
        compile_s = time.perf_counter() - t0
        ts = []
        for _ in range(repeats):
            t1 = time.perf_counter()
            fn(*args)
            ts.append(time.perf_counter() - t1)
    return compile_s, float(min(ts))


def _n_gradients(idata, draws: int, tune: int) -> float:
    """Gradient evaluations of a run: leapfrog steps of the kept draws, scaled to warm-up too."""
    st = idata.sample_stats
    if "n_steps" not in st:
        return float("nan")
    return float(st["n_steps"].sum()) * (draws + tune) / draws


def gp_vs_hsgp(ns, draws: int, tune: int, exact_max_n: int) -> list[dict]:
    """Calibration time vs n, exact GP vs HSGP discrepancy.

    Every configuration gets its measured time per log-density gradient (the cost NUTS pays per
    leapfrog step). Full calibrations run for HSGP at every n and for the exact GP up to
    ``exact_max_n``; above it, the exact GP's calibration time is *projected*: its measured time
    per gradient times the gradient evaluations the exact GP needed at the smallest n (same
    model, same budget) -- a run of hours to days on this machine, marked as a projection.
    """
    rows = []
    n_grad_exact = None
    for n in ns:
        for kind in ("exact", "hsgp"):
            twin, data = _gp_twin(n, kind)
            repeats = 1 if (kind == "exact" and n > 2000) else 5
            comp_s, grad_s = _gradient_seconds(twin, data, repeats)
            row = {"n": n, "discrepancy": kind, "grad_compile_s": comp_s, "grad_s": grad_s}
            if kind == "exact" and n > exact_max_n:
                if n_grad_exact is None:
                    row.update(status="not run (no smaller exact run to project from)")
                else:
                    row.update(status="projected", n_gradients=n_grad_exact,
                               sample_s=grad_s * n_grad_exact)
                rows.append(row)
                print(f"  n={n:>5} {kind:>5}: gradient {grad_s * 1e3:.3g} ms -> projected "
                      f"{row.get('sample_s', float('nan')) / 3600:.1f} h", flush=True)
                continue
            res = vt.calibrate(twin, data, draws=draws, tune=tune, chains=2, rng=1, warn=False,
                               posterior_predictive=False)
            ng = _n_gradients(res.idata, draws, tune)
            if kind == "exact" and n_grad_exact is None:
                n_grad_exact = ng
            row.update(status="measured", compile_s=res.info["compile_time_s"],
                       sample_s=res.info["sample_time_s"], n_gradients=ng,
                       theta_mean=float(res.posterior["theta"].mean()),
                       theta_sd=float(res.posterior["theta"].std()),
                       min_ess_bulk=_min_ess(res.idata, ["theta"]),
                       diagnostics_passed=bool(res.diagnostics.passed))
            rows.append(row)
            print(f"  n={n:>5} {kind:>5}: gradient {grad_s * 1e3:.3g} ms, sampled in "
                  f"{row['sample_s']:.1f} s ({ng:.0f} gradients)", flush=True)
    return rows


def main(quick: bool = False) -> dict:
    draws, tune = (300, 300) if quick else (1000, 1000)
    out = {"ess": ess_per_second(draws, tune)}
    out["gp_vs_hsgp"] = gp_vs_hsgp([200, 1000] if quick else [200, 1000, 5000],
                                   draws=200 if quick else 500, tune=200 if quick else 500,
                                   exact_max_n=200)
    e = out["ess"]
    print(f"ESS/s (min bulk): nutpie {e['nutpie']['ess_per_s']:.1f} vs pm.sample "
          f"{e['pymc']['ess_per_s']:.1f} -> ratio {e['ratio_ess_per_s']:.2f}x; compile nutpie "
          f"{e['nutpie']['compile_s']:.1f}s, pymc {e['pymc']['compile_s']:.1f}s")
    import os

    out["machine"] = {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    for r in out["gp_vs_hsgp"]:
        t = r.get("sample_s", float("nan"))
        print(f"n={r['n']:>5} {r['discrepancy']:>5}: {r['status']:>9}, gradient "
              f"{r['grad_s'] * 1e3:10.3g} ms, sampling {t:12.1f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "core.json").write_text(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
