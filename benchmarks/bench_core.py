"""Core calibration benchmarks (issue: core twin declaration and calibration).

1. ESS per second (bulk, minimum over parameters) after compilation, compile time reported
   separately: the default path (nutpie NUTS) vs plain ``pm.sample`` on the same hierarchical
   twin with a GP discrepancy. Goal: >= 3x.
2. Calibration time vs n for the discrepancy: exact GP vs HSGP at n = 200, 1000, 5000 (time per
   log-density gradient measured for all; exact GP above n = 200 projected, see ``gp_vs_hsgp``).
3. Against numpyro (``vs_numpyro``): the same hierarchical twin written in numpyro (same priors,
   same marginalised GP), ESS/s over paired seeds (median and spread) for nutpie's numba backend
   (diagonal and low-rank mass matrix), nutpie's JAX backend and numpyro's NUTS; compile times
   of each, cold and from the on-disk cache; the same on the tumor case-study twin
   (``vs_numpyro_case``, built through ``case_studies.tumor`` public functions).
4. The README main job (``vvuq-twin run``) as a new user meets it (``readme_job``): a first run
   with empty PyTensor and vvuq_twin caches, then a second run in a new process.
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


def _ess_summary(rows, names):
    """ESS/s over the paired seeds per sampler (median, min, max) and each nutpie variant's
    ratio to numpyro's ESS/s on the same seed (median, min, max)."""
    summary = {}
    base = np.array([r["numpyro"]["ess_per_s"] for r in rows])
    for name in (*names, "numpyro"):
        v = np.array([r[name]["ess_per_s"] for r in rows])
        summary[name] = {"ess_per_s_median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}
        if name != "numpyro":
            ratio = v / base
            summary[name].update(ratio_to_numpyro_median=float(np.median(ratio)),
                                 ratio_to_numpyro_min=float(ratio.min()), ratio_to_numpyro_max=float(ratio.max()))
    return summary


def _nutpie_rows(twin, data, seed, kw, ess_names, variants):
    """One calibration per nutpie variant ``(name, calibrate options)`` at ``seed``: sampling
    time, minimum bulk ESS over ``ess_names``, ESS/s and divergences by name, and the last
    variant's result (whose posterior the agreement check reads)."""
    rows = {}
    r = None
    for name, extra in variants:
        r = vt.calibrate(twin, data, rng=seed, **kw, **extra)
        if r.info["sampler"] != "nutpie":
            raise RuntimeError(f"{name}: calibrate fell back to {r.info['sampler']}; not comparable")
        ess = _min_ess(r.idata, ess_names)
        rows[name] = {"sample_s": r.info["sample_time_s"], "min_ess_bulk": ess,
                      "ess_per_s": ess / r.info["sample_time_s"],
                      "divergences": int(r.idata.sample_stats["diverging"].sum())}
    return rows, r


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
    import os

    draws, tune = (300, 300) if quick else (1000, 1000)
    # BENCH_CORE_ONLY=vs_numpyro_centred,vs_numpyro_tumor runs only those sections
    only = {v for v in os.environ.get("BENCH_CORE_ONLY", "").split(",") if v}
    sections = {"readme_job": readme_job, "vs_numpyro": lambda: vs_numpyro(draws, tune),
                "vs_numpyro_centred": lambda: vs_numpyro_centred(draws, tune),
                "vs_numpyro_tumor": lambda: vs_numpyro_case(draws, tune),
                "ess": lambda: ess_per_second(draws, tune)}
    if "flow_funnel" in only:  # minutes (the flow is trained): only when asked for
        sections["flow_funnel"] = flow_funnel
    unknown = only - set(sections) - {"gp_vs_hsgp"}
    if unknown:
        raise ValueError(f"BENCH_CORE_ONLY names unknown sections {sorted(unknown)}; known: "
                         f"{[*sections, 'gp_vs_hsgp']}")
    out = {name: f() for name, f in sections.items() if not only or name in only}
    if only and "gp_vs_hsgp" not in only:
        out["machine"] = {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
        OUT.mkdir(exist_ok=True)
        (OUT / ("core_" + "_".join(sorted(only)) + ".json")).write_text(json.dumps(out, indent=2, default=float))
        return out
    out["gp_vs_hsgp"] = gp_vs_hsgp([200, 1000] if quick else [200, 1000, 5000],
                                   draws=200 if quick else 500, tune=200 if quick else 500,
                                   exact_max_n=200)
    e = out.get("ess")
    if e:
        print(f"ESS/s (min bulk): nutpie {e['nutpie']['ess_per_s']:.1f} vs pm.sample "
              f"{e['pymc']['ess_per_s']:.1f} -> ratio {e['ratio_ess_per_s']:.2f}x; compile nutpie "
              f"{e['nutpie']['compile_s']:.1f}s, pymc {e['pymc']['compile_s']:.1f}s")
    out["machine"] = {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    for r in out["gp_vs_hsgp"]:
        t = r.get("sample_s", float("nan"))
        print(f"n={r['n']:>5} {r['discrepancy']:>5}: {r['status']:>9}, gradient "
              f"{r['grad_s'] * 1e3:10.3g} ms, sampling {t:12.1f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "core.json").write_text(json.dumps(out, indent=2, default=float))
    return out


def flow_funnel(draws: int = 500, tune: int = 500, seed: int = 1) -> dict:
    """nutpie's normalising-flow adaptation (what ``calibrate(..., mass_matrix="flow")`` passes:
    ``transform_adapt=True`` on the JAX backend) against its diagonal mass matrix on Neal's funnel
    (``v ~ N(0, 3)``, nine ``x_i ~ N(0, exp(v/2))``): bulk ESS and sd of ``v`` (known: 3),
    divergences, wall time. ``BENCH_CORE_ONLY=flow_funnel python -m benchmarks core``; needs the
    ``flow`` extra."""
    import importlib.util

    if importlib.util.find_spec("flowjax") is None:
        return {"status": "skipped: flowjax not installed (pip install -e '.[flow]')"}
    import nutpie

    with pm.Model() as m:
        v = pm.Normal("v", 0, 3)
        pm.Normal("x", 0, pm.math.exp(v / 2), shape=9)
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(m, backend="jax", gradient_backend="jax")
    out: dict = {"compile_s": time.perf_counter() - t0, "draws": draws, "seed": seed}
    for name, kw in (("diag", {"tune": tune}), ("flow", {"tune": 2 * tune, "transform_adapt": True})):
        t0 = time.perf_counter()
        tr = nutpie.sample(compiled, draws=draws, chains=2, seed=seed, progress_bar=False, **kw)
        out[name] = {"wall_s": time.perf_counter() - t0, "tune": kw["tune"],
                     "ess_bulk_v": float(az.ess(tr, var_names=["v"])["v"]),
                     "sd_v": float(tr.posterior["v"].std()), "mean_v": float(tr.posterior["v"].mean()),
                     "divergences": int(tr.sample_stats["diverging"].sum())}
        print(f"  funnel {name}: ESS(v) {out[name]['ess_bulk_v']:.0f}, sd(v) {out[name]['sd_v']:.2f} (3), "
              f"divergences {out[name]['divergences']}, {out[name]['wall_s']:.1f} s", flush=True)
    return out


# --------------------------------------------------------------------------- vs numpyro
ESS_NAMES = ["k", "k_mu", "k_sigma", "sigma_obs", "delta_ls", "delta_eta"]


def numpyro_hierarchical_gp(data, centered: bool = False):
    """The twin of :func:`hierarchical_gp_twin` in numpyro: same priors, same marginalised GP.

    k_u = exp(k_mu + k_sigma z_u); y ~ MvNormal(10 exp(-k_u t), eta^2 ExpQuad(ls) + (1e-6 +
    sigma^2) I), as ``Twin.build_model`` builds it (the GP discrepancy's jitter is 1e-6).
    ``centered``: log k_u ~ N(k_mu, k_sigma) sampled directly (``Parameter(centered=True)``).
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    t = jnp.asarray(np.asarray(data.x)[:, 0])
    labels = np.asarray(data.unit).astype(str)
    units = list(dict.fromkeys(labels.tolist()))
    uidx = jnp.asarray([units.index(u) for u in labels])
    n, U = t.shape[0], len(units)
    d2 = (t[:, None] - t[None, :]) ** 2

    def model(y=None):
        k_mu = numpyro.sample("k_mu", dist.Normal(np.log(0.5), 1.0))
        k_sigma = numpyro.sample("k_sigma", dist.HalfNormal(0.5))
        with numpyro.plate("unit", U):
            if centered:
                lin = numpyro.sample("k_lin", dist.Normal(k_mu, k_sigma))
            else:
                lin = k_mu + k_sigma * numpyro.sample("k_z", dist.Normal(0.0, 1.0))
        k = numpyro.deterministic("k", jnp.exp(lin))
        ls = numpyro.sample("delta_ls", dist.LogNormal(0.0, 0.5))
        eta = numpyro.sample("delta_eta", dist.HalfNormal(0.5))
        sigma = numpyro.sample("sigma_obs", dist.HalfNormal(0.5))
        mu = 10.0 * jnp.exp(-k[uidx] * t)
        K = eta**2 * jnp.exp(-0.5 * d2 / ls**2) + (1e-6 + sigma**2) * jnp.eye(n)
        numpyro.sample("y", dist.MultivariateNormal(mu, covariance_matrix=K), obs=y)

    return model


def _numpyro_run(mcmc, seed: int, y) -> tuple[float, dict]:
    import jax

    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), y=y)
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - t0, mcmc.get_samples(group_by_chain=True)


def _ess_from_samples(samples: dict) -> float:
    post = az.from_dict(posterior={k: np.asarray(v) for k, v in samples.items() if k in ESS_NAMES})
    return _min_ess(post, ESS_NAMES)


def _agreement(post, samples: dict) -> dict:
    """|mean difference| / combined MCSE per scalar parameter, nutpie (jax run) vs numpyro."""
    other = az.from_dict(posterior={k: np.asarray(v) for k, v in samples.items() if k in ESS_NAMES}).posterior
    out = {}
    for v in ("k_mu", "k_sigma", "sigma_obs", "delta_ls", "delta_eta"):
        m1 = float(post[v].mean())
        m2 = float(other[v].mean())
        s1 = float(az.mcse(post[[v]], method="mean")[v])
        s2 = float(az.mcse(other[[v]], method="mean")[v])
        out[v] = abs(m1 - m2) / np.hypot(s1, s2)
    return out


def _numpyro(chains: int):
    """numpyro's ``(MCMC, NUTS)`` set up for ``chains`` parallel float64 chains on host devices,
    or a ``{"status": "skipped: ..."}`` dict when the ``bench`` extra is not installed."""
    import os

    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={chains}")
    try:
        import jax
        import numpyro
        from numpyro.infer import MCMC, NUTS
    except ImportError as exc:
        return {"status": f"skipped: {exc} (pip install -e '.[bench]')"}
    jax.config.update("jax_enable_x64", True)
    numpyro.set_host_device_count(chains)
    return MCMC, NUTS


def vs_numpyro(draws: int, tune: int, seeds=(1, 2, 3, 4, 5), chains: int = 2) -> dict:
    """Paired seeds: nutpie (numba diag / numba low-rank / jax) vs numpyro NUTS, same twin.

    ESS/s = minimum bulk ESS over the parameters / sampling wall time of that run (compile
    apart). numpyro compiles inside its first ``run``; its JIT time is the first run minus the
    median of its later runs (the same shapes reuse the compiled kernel).
    """
    import os

    peer = _numpyro(chains)
    if isinstance(peer, dict):
        return peer
    MCMC, NUTS = peer

    twin, data = hierarchical_gp_twin()
    kw = dict(method="nutpie", draws=draws, tune=tune, chains=chains, warn=False,
              posterior_predictive=False)
    out: dict = {"draws": draws, "tune": tune, "chains": chains, "seeds": list(seeds),
                 "load_average_1min_start": os.getloadavg()[0]}
    # compile times: cold (no disk cache), from disk, jax backend
    import tempfile

    old = os.environ.get("VVUQ_TWIN_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VVUQ_TWIN_CACHE_DIR"] = tmp
        clear_compile_cache()
        r = vt.calibrate(twin, data, rng=0, **kw)
        out["nutpie_numba_compile_cold_s"] = r.info["compile_time_s"]
        clear_compile_cache()
        r = vt.calibrate(twin, data, rng=0, **kw)
        out["nutpie_numba_compile_from_disk_s"] = r.info["compile_time_s"]
        out["nutpie_numba_disk_hit"] = r.info["compile_cache_hit"]
    if old is None:
        os.environ.pop("VVUQ_TWIN_CACHE_DIR", None)
    else:
        os.environ["VVUQ_TWIN_CACHE_DIR"] = old
    r = vt.calibrate(twin, data, rng=0, backend="jax", **kw)
    out["nutpie_jax_compile_s"] = r.info["compile_time_s"]
    model = numpyro_hierarchical_gp(data)
    mcmc = MCMC(NUTS(model, target_accept_prob=0.8), num_warmup=tune, num_samples=draws,
                num_chains=chains, chain_method="parallel", progress_bar=False)
    first_s, _ = _numpyro_run(mcmc, 0, np.asarray(data.y))
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        nut, r = _nutpie_rows(twin, data, seed, kw, ESS_NAMES,
                              (("nutpie_numba", {}), ("nutpie_numba_low_rank", {"mass_matrix": "low_rank"}),
                               ("nutpie_jax", {"backend": "jax"})))
        row.update(nut)
        s, samp = _numpyro_run(mcmc, seed, np.asarray(data.y))
        ess = _ess_from_samples(samp)
        row["numpyro"] = {"sample_s": s, "min_ess_bulk": ess, "ess_per_s": ess / s,
                          "divergences": int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())}
        if seed == seeds[0]:
            out["posterior_agreement_z"] = _agreement(r.idata.posterior, samp)
        row["load_average_1min"] = os.getloadavg()[0]
        rows.append(row)
        print(f"  seed {seed}: ESS/s numba {row['nutpie_numba']['ess_per_s']:.1f}, low-rank "
              f"{row['nutpie_numba_low_rank']['ess_per_s']:.1f}, jax {row['nutpie_jax']['ess_per_s']:.1f}, "
              f"numpyro {row['numpyro']['ess_per_s']:.1f} (load {row['load_average_1min']:.1f})", flush=True)
    out["rows"] = rows
    out["numpyro_jit_s"] = first_s - float(np.median([r["numpyro"]["sample_s"] for r in rows]))
    out["summary"] = _ess_summary(rows, ("nutpie_numba", "nutpie_numba_low_rank", "nutpie_jax"))
    out["load_average_1min_end"] = os.getloadavg()[0]
    return out


def centred_twin(twin, centered=True):
    """``twin`` with every per-unit parameter declared ``Parameter(centered=centered)``
    (``True``, ``False`` or ``"auto"``: chosen from the twin and the data, see
    :mod:`vvuq_twin.twin._parametrization`)."""
    import dataclasses

    return dataclasses.replace(twin, parameters=[
        dataclasses.replace(p, centered=centered) if p.per_unit else p for p in twin.parameters])


def _paired_vs_numpyro(variants, peers, data, seeds, kw, ess_names, agree_names, label):
    """Paired seeds, side by side: each nutpie variant ``(name, twin[, calibrate options])`` and each numpyro peer
    ``(name, model)`` at every seed. Compiles (nutpie) and JITs (numpyro) outside the timed runs.
    Ratios are to numpyro with the same parametrisation as the peer's default model
    (``numpyro``, non-centred) and to ``numpyro_centred``, seed by seed."""
    import os

    MCMC, NUTS = _numpyro(kw["chains"])
    out: dict = {"draws": kw["draws"], "tune": kw["tune"], "chains": kw["chains"], "seeds": list(seeds),
                 "load_average_1min_start": os.getloadavg()[0]}
    variants = [(v[0], v[1], v[2] if len(v) > 2 else {}) for v in variants]
    for name, tw, extra in variants:
        r = vt.calibrate(tw, data, rng=0, **kw, **extra)  # compile (or load) outside the timed runs
        out[f"{name}_compile_s"] = r.info["compile_time_s"]
        out[f"{name}_parametrization"] = r.info.get("parametrization")
    mcmcs = {}
    for name, model in peers:
        mcmcs[name] = MCMC(NUTS(model, target_accept_prob=0.8), num_warmup=kw["tune"],
                           num_samples=kw["draws"], num_chains=kw["chains"], chain_method="parallel",
                           progress_bar=False)
        first_s, _ = _numpyro_run(mcmcs[name], 0, np.asarray(data.y))
        out[f"{name}_first_run_s"] = first_s
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        posts = {}
        for name, tw, extra in variants:
            nut, r = _nutpie_rows(tw, data, seed, kw, ess_names, ((name, extra),))
            row.update(nut)
            posts[name] = r.idata.posterior
        for name, mcmc in mcmcs.items():
            s, samp = _numpyro_run(mcmc, seed, np.asarray(data.y))
            post = az.from_dict(posterior={k: np.asarray(v) for k, v in samp.items() if k in ess_names})
            ess = _min_ess(post, ess_names)
            row[name] = {"sample_s": s, "min_ess_bulk": ess, "ess_per_s": ess / s,
                         "divergences": int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())}
            posts[name] = post.posterior
        if seed == seeds[0]:  # posteriors agree: |mean difference| / combined MCSE
            z = {}
            for a_name, *_ in variants:
                for b_name, _ in peers:
                    z[f"{a_name}_vs_{b_name}"] = {
                        v: abs(float(posts[a_name][v].mean()) - float(posts[b_name][v].mean())) / np.hypot(
                            float(az.mcse(posts[a_name][[v]], method="mean")[v]),
                            float(az.mcse(posts[b_name][[v]], method="mean")[v]))
                        for v in agree_names}
            out["posterior_agreement_z"] = z
        row["load_average_1min"] = os.getloadavg()[0]
        rows.append(row)
        print(f"  {label} seed {seed}: ESS/s " + ", ".join(
            f"{n} {row[n]['ess_per_s']:.1f}" for n in [*(v[0] for v in variants), *mcmcs])
            + f" (load {row['load_average_1min']:.1f})", flush=True)
    out["rows"] = rows
    names = [v[0] for v in variants]
    out["summary"] = _ess_summary(rows, (*names, *[n for n in mcmcs if n != "numpyro"]))
    if "numpyro_centred" in mcmcs:
        base = np.array([r["numpyro_centred"]["ess_per_s"] for r in rows])
        for name in names:
            ratio = np.array([r[name]["ess_per_s"] for r in rows]) / base
            out["summary"][name].update(ratio_to_numpyro_centred_median=float(np.median(ratio)),
                                        ratio_to_numpyro_centred_min=float(ratio.min()),
                                        ratio_to_numpyro_centred_max=float(ratio.max()))
    out["load_average_1min_end"] = os.getloadavg()[0]
    return out


def vs_numpyro_centred(draws: int = 1000, tune: int = 1000, seeds=(1, 2, 3, 4, 5),
                       chains: int = 2) -> dict:
    """Paired seeds, side by side in one run on the benchmark twin: nutpie's numba backend with
    the per-unit parameter declared non-centred (``centered=False``) and ``centered="auto"``
    (the choice from the twin and the data, recorded as ``nutpie_numba_auto_parametrization``),
    the latter also with nutpie's low-rank mass-matrix adaptation, against numpyro non-centred
    (the peer's model of :func:`vs_numpyro`) and centred."""
    if isinstance(_numpyro(chains), dict):
        return _numpyro(chains)
    twin, data = hierarchical_gp_twin()
    kw = dict(method="nutpie", draws=draws, tune=tune, chains=chains, warn=False,
              posterior_predictive=False)
    return _paired_vs_numpyro(
        (("nutpie_numba", centred_twin(twin, False)), ("nutpie_numba_auto", centred_twin(twin, "auto")),
         ("nutpie_numba_auto_low_rank", centred_twin(twin, "auto"), {"mass_matrix": "low_rank"})),
        (("numpyro", numpyro_hierarchical_gp(data)), ("numpyro_centred", numpyro_hierarchical_gp(data, centered=True))),
        data, seeds, kw, ESS_NAMES, ("k_mu", "k_sigma", "sigma_obs", "delta_ls", "delta_eta"), "benchmark twin")


# --------------------------------------------------------------------------- case-study twin
def tumor_twin_and_data():
    """The tumor case study's twin and training data, through its public functions.

    ``case_studies.tumor.run.build_twin(quick=True)`` (hierarchical reduced Gompertz on the log
    scale: per-mouse beta pooled on the log scale, shared k, Gaussian error on log volume, no
    discrepancy by default) on ``tumor_twin_data(load_tumor(), "train")`` (``$VVUQ_TWIN_DATA``).
    """
    from case_studies.tumor.data import load_tumor, tumor_twin_data
    from case_studies.tumor.run import build_twin

    loaded = load_tumor()
    ds = loaded[0] if isinstance(loaded, tuple) else loaded
    return build_twin(quick=True), tumor_twin_data(ds, "train")


def _tumor_ess_names(twin):
    return ["beta", "beta_mu", "beta_sigma", "k", *twin.discrepancy.hyperparameter_names(), "sigma_obs"]


def numpyro_tumor(twin, data, centered: bool = False):
    """The tumor twin in numpyro: same priors (and the same HSGP basis when it has one).

    log V = log V_rg(t; beta_u, k) with V(0) = 1 (reduced Gompertz: k (1 - exp(-beta t))),
    log beta_u = beta_mu + beta_sigma z_u (``centered``: log beta_u ~ N(beta_mu, beta_sigma)
    sampled directly, as ``beta_lin``), [delta = phi (coeffs * eta sqrt(S_ls(omega)))],
    y ~ Normal(log V + delta, sigma_obs). Checked against ``Twin.log_prior + Twin.log_likelihood``
    at random points by :func:`_check_numpyro_density`.
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from vvuq_twin.twin.discrepancy import HSGPDiscrepancy, NoDiscrepancy

    disc = twin.discrepancy
    if not isinstance(disc, (HSGPDiscrepancy, NoDiscrepancy)):
        raise TypeError(f"numpyro_tumor: discrepancy {type(disc).__name__} is not written in numpyro here.")
    if getattr(twin.simulator, "v0", 1.0) not in (1.0, None):
        raise ValueError("numpyro_tumor assumes V(0) = 1 (build_twin's default v0).")
    X = np.asarray(data.x, float)
    has_gp = isinstance(disc, HSGPDiscrepancy)
    if has_gp:
        from vvuq_twin.twin.discrepancy import _default_ls, _hsgp_basis

        phi, omega = _hsgp_basis(disc, X)
        ls_prior = disc.ls if disc.ls is not None else _default_ls(X, disc._cols(X))
        phi_j, om = jnp.asarray(phi), jnp.asarray(omega[:, 0])
    t = jnp.asarray(X[:, 0])
    uidx, units = twin.unit_index(data)
    uidx = jnp.asarray(uidx)
    beta_p = next(p for p in twin.parameters if p.name == "beta")
    k_p = next(p for p in twin.parameters if p.name == "k")

    def model(y=None):
        beta_mu = numpyro.sample("beta_mu", dist.Normal(beta_p.prior.mu, beta_p.prior.sigma))
        beta_sigma = numpyro.sample("beta_sigma", dist.HalfNormal(beta_p.pop_scale.sigma))
        with numpyro.plate("mouse", len(units)):
            if centered:
                lin = numpyro.sample("beta_lin", dist.Normal(beta_mu, beta_sigma))
            else:
                lin = beta_mu + beta_sigma * numpyro.sample("beta_z", dist.Normal(0.0, 1.0))
        beta = numpyro.deterministic("beta", jnp.exp(lin))
        k = numpyro.sample("k", dist.Normal(k_p.prior.mu, k_p.prior.sigma))
        delta = 0.0
        if has_gp:
            ls = numpyro.sample("delta_ls", dist.LogNormal(ls_prior.mu, ls_prior.sigma))
            eta = numpyro.sample("delta_eta", dist.HalfNormal(disc.eta.sigma))
            coeffs = numpyro.sample("delta_hsgp_coeffs", dist.Normal(0.0, 1.0).expand([phi.shape[1]]))
            sqrt_psd = eta * jnp.sqrt(jnp.sqrt(2 * jnp.pi) * ls * jnp.exp(-0.5 * om**2 * ls**2))
            delta = phi_j @ (coeffs * sqrt_psd)
        sigma = numpyro.sample("sigma_obs", dist.HalfNormal(twin.observation.sigma.sigma))
        log_v = k * (1.0 - jnp.exp(-beta[uidx] * t))
        numpyro.sample("y", dist.Normal(log_v + delta, sigma), obs=y)

    return model


def _check_numpyro_density(twin, data, model, centered: bool = False, n: int = 5, seed: int = 0) -> float:
    """max |numpyro log joint - (Twin.log_prior + Twin.log_likelihood)| at prior-ish points
    (``twin`` written with the same parametrisation as ``model``)."""
    from numpyro.infer.util import log_density

    rng = np.random.default_rng(seed)
    uidx, units = twin.unit_index(data)
    worst = 0.0
    for _ in range(n):
        pt_ = {"beta_mu": rng.normal(np.log(0.08), 0.3), "beta_sigma": abs(rng.normal(0, 0.3)),
               "k": rng.normal(9, 0.5), "sigma_obs": abs(rng.normal(0.3, 0.1))}
        if centered:
            pt_["beta_lin"] = rng.normal(np.log(0.08), 0.3, size=len(units))
        else:
            pt_["beta_z"] = rng.normal(size=len(units))
        if "delta_ls" in twin.free_variable_names(data):
            pt_.update({"delta_ls": np.exp(rng.normal(1.5, 0.3)), "delta_eta": abs(rng.normal(0, 0.2)),
                        "delta_hsgp_coeffs": rng.normal(size=int(np.prod(twin.discrepancy.m)))})
        lj, _ = log_density(model, (), {"y": np.asarray(data.y)}, pt_)
        draws = {k: np.asarray(v, float)[None, ...] for k, v in pt_.items()}
        ours = twin.log_prior(draws, data)[0] + twin.log_likelihood(draws, data)[0]
        worst = max(worst, abs(float(lj) - float(ours)))
    return worst


def vs_numpyro_case(draws: int = 1000, tune: int = 1000, seeds=(1, 2, 3, 4, 5), chains: int = 2) -> dict:
    """Paired seeds on the tumor case-study twin, side by side in one run: nutpie's numba
    backend with per-mouse beta declared non-centred (as the case study declares it today) and
    ``centered="auto"``, each with the diagonal (default) and the low-rank mass matrix (the
    case study's setting), against numpyro non-centred and centred (same priors; both numpyro
    densities checked against the declaration's numpy log density first).

    ESS/s = minimum bulk ESS over beta, beta_mu, beta_sigma, k, sigma_obs (and the
    discrepancy's hyperparameters, if any) / sampling wall time, compile and JIT apart; NUTS
    at target acceptance 0.8 on both sides, numpyro with its default diagonal mass matrix.
    """
    if isinstance(_numpyro(chains), dict):
        return _numpyro(chains)
    try:
        twin, data = tumor_twin_and_data()
    except Exception as exc:  # noqa: BLE001 - data missing or the case study changed
        return {"status": f"skipped: tumor case study unavailable ({type(exc).__name__}: {exc})"}
    kw = dict(method="nutpie", draws=draws, tune=tune, chains=chains, warn=False,
              posterior_predictive=False)
    nc, auto = centred_twin(twin, False), centred_twin(twin, "auto")
    peers = (("numpyro", numpyro_tumor(twin, data)), ("numpyro_centred", numpyro_tumor(twin, data, centered=True)))
    dens = {"numpyro": _check_numpyro_density(nc, data, peers[0][1]),
            "numpyro_centred": _check_numpyro_density(centred_twin(twin, True), data, peers[1][1], centered=True)}
    low = {"mass_matrix": "low_rank"}  # the case study's own calibration uses it
    out = _paired_vs_numpyro((("nutpie_numba", nc), ("nutpie_numba_auto", auto),
                              ("nutpie_numba_low_rank", nc, low), ("nutpie_numba_auto_low_rank", auto, low)),
                             peers, data, seeds, kw,
                             _tumor_ess_names(twin), [v for v in _tumor_ess_names(twin) if v != "beta"], "tumor")
    out.update(twin=twin.name, n_obs=int(data.n), numpyro_density_max_abs_diff=dens)
    return out


# --------------------------------------------------------------------------- README job
def readme_job(seed: int = 1, root: str | Path | None = None) -> dict:
    """``vvuq-twin run --out DIR`` twice in new processes, the first with empty caches.

    PyTensor's compile directory and vvuq_twin's compile cache point to a fresh temporary
    directory (as on a fresh install); BLAS thread variables set by this package are removed,
    as a user's shell would not have them. Wall and CPU (user + sys) seconds of each run, and
    whether the two runs wrote the same draws.
    """
    import os
    import resource
    import subprocess
    import sys
    import tempfile

    import xarray as xr

    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")}
        env["PYTENSOR_FLAGS"] = f"base_compiledir={tmp}/pytensor"
        env["VVUQ_TWIN_CACHE_DIR"] = f"{tmp}/vvuq"
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
        for run in ("first", "second"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "vvuq_twin", "run", "--out", f"{tmp}/{run}",
                                   "--no-progress", "--seed", str(seed)], env=env, cwd=str(root),
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                return {"status": "failed", "stderr": proc.stderr[-2000:]}
            info = json.loads(Path(f"{tmp}/{run}/default_summary.json").read_text())["info"]
            rows.append({"run": run, "wall_s": wall,
                         "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                         "compile_s": info["compile_time_s"], "sample_s": info["sample_time_s"],
                         "compile_cache": info.get("compile_cache"),
                         "load_average_1min": os.getloadavg()[0]})
            print(f"  README job, {run} run: {wall:.1f} s wall, {rows[-1]['cpu_s']:.1f} s CPU "
                  f"(compile {info['compile_time_s']:.1f} s, {info.get('compile_cache')})", flush=True)
        a = xr.open_dataset(f"{tmp}/first/default_result.nc", group="posterior")
        b = xr.open_dataset(f"{tmp}/second/default_result.nc", group="posterior")
        same = all(np.array_equal(a[v].values, b[v].values) for v in a.data_vars)
        a.close()
        b.close()
    return {"runs": rows, "second_run_draws_identical": bool(same)}


if __name__ == "__main__":
    main()
