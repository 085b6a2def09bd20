"""Core calibration benchmarks (issue: core twin declaration and calibration).

1. ESS per second (bulk, minimum over parameters) after compilation, compile time reported
   separately: the default path (nutpie NUTS) vs plain ``pm.sample`` on the same hierarchical
   twin with a GP discrepancy. Goal: >= 3x.
2. Calibration time vs n for the discrepancy: exact GP vs HSGP at n = 200, 1000, 5000.
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


def gp_vs_hsgp(ns, draws: int, tune: int, exact_max_n: int) -> list[dict]:
    rows = []
    for n in ns:
        rng = np.random.default_rng(n)
        x = np.sort(rng.uniform(0, 4, n))
        y = 0.7 * x + 0.3 * np.sin(2 * x) + rng.normal(0, 0.1, n)
        data = vt.TwinData(x=x, y=y)
        sim = vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0], name="linear")
        for kind in ("exact", "hsgp"):
            if kind == "exact" and n > exact_max_n:
                rows.append({"n": n, "discrepancy": kind, "status": f"not run: n > {exact_max_n} "
                             "(O(n^3) Cholesky per gradient)"})
                continue
            disc = (vt.GPDiscrepancy(ls=vt.LogNormal(np.log(0.6), 0.3), eta=vt.HalfNormal(0.5))
                    if kind == "exact" else
                    vt.HSGPDiscrepancy(m=30, c=1.5, ls=vt.LogNormal(np.log(0.6), 0.3), eta=vt.HalfNormal(0.5)))
            twin = vt.Twin(f"{kind}{n}", sim, [vt.Parameter("theta", vt.Normal(0, 1))],
                           discrepancy=disc, observation=vt.Gaussian(sigma=vt.HalfNormal(0.5)))
            res = vt.calibrate(twin, data, draws=draws, tune=tune, chains=2, rng=1, warn=False,
                               posterior_predictive=False)
            rows.append({"n": n, "discrepancy": kind, "status": "ok",
                         "compile_s": res.info["compile_time_s"], "sample_s": res.info["sample_time_s"],
                         "theta_mean": float(res.posterior["theta"].mean()),
                         "min_ess_bulk": _min_ess(res.idata, ["theta"])})
    return rows


def main(quick: bool = False) -> dict:
    draws, tune = (300, 300) if quick else (1000, 1000)
    out = {"ess": ess_per_second(draws, tune)}
    out["gp_vs_hsgp"] = gp_vs_hsgp([200, 500] if quick else [200, 1000, 5000],
                                   draws=200 if quick else 500, tune=200 if quick else 500,
                                   exact_max_n=500 if quick else 1000)
    e = out["ess"]
    print(f"ESS/s (min bulk): nutpie {e['nutpie']['ess_per_s']:.1f} vs pm.sample "
          f"{e['pymc']['ess_per_s']:.1f} -> ratio {e['ratio_ess_per_s']:.2f}x; compile nutpie "
          f"{e['nutpie']['compile_s']:.1f}s, pymc {e['pymc']['compile_s']:.1f}s")
    for r in out["gp_vs_hsgp"]:
        if r["status"] == "ok":
            print(f"n={r['n']:>5} {r['discrepancy']:>5}: compile {r['compile_s']:.1f}s sample {r['sample_s']:.1f}s")
        else:
            print(f"n={r['n']:>5} {r['discrepancy']:>5}: {r['status']}")
    OUT.mkdir(exist_ok=True)
    (OUT / "core.json").write_text(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
