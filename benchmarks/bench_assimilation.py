"""Benchmark: streaming SMC updates of the airframe twin vs NUTS refits, agreement and cost.

Problem: the hierarchical Paris-law twin of the airframe case study
(:func:`case_studies.airframe.run.build_twin`, quick simulator) on the real Virkler crack-growth
data: 6 specimens (per-specimen ``log10_C`` and ``m``, non-centred, with unknown population
scales), a 6-term HSGP discrepancy with unknown amplitude and length scale, unknown noise: 25
free dimensions. Rows (every 4th crack length) are ordered by crack length; the shortest 60 are
the calibration data (nutpie NUTS, 4 x 500 draws, thinned to 1000 particles), the rest arrive in
``K = 50`` batches (in order of crack length, so each specimen's series moves forward).

At each k the batch is assimilated by :func:`vvuq_twin.assimilation.assimilate` (default options:
automatic kernel, moves until the start/end rank correlation of every coordinate is below the
criterion). At k = 5, 20, 50 a NUTS refit on all data so far runs in the same process
(:func:`vvuq_twin.calibrate`, nutpie, 4 chains x 1000 draws, 1000 tuning steps, compile cache
cleared so that compile + sample is what a refit from scratch costs; sampling alone is what a
refit reusing a compiled model would cost). At k = 5 a second, independent NUTS run gives the
reference value of the energy distance between two exact samplers.

Agreement at k = 5 (and reported at 20, 50): every parameter's mean within 3 combined MC
standard errors (NUTS MCSE from ArviZ, SMC ``sd / sqrt(ESS)``), every sd within 15 %, and the
energy distance between standardised SMC and NUTS draws compared with that between the two NUTS
runs. Per update: kernel, acceptance, moves, unique particles, mixing (max rank correlation),
likelihood calls, particle evaluations, compiles and seconds.

Run: ``python -m benchmarks assimilation [--quick]`` (``--quick``: K = 5, shorter NUTS); writes
``benchmarks/results/assimilation.json``. Timings are wall-clock on whatever machine runs it.

``python -m benchmarks.bench_assimilation --cost-at-k`` (:func:`cost_at_k`) measures the update at
each of k = 50, 5, 20 on a stream's state (a NUTS posterior on the first k - 2 batches, then
batch k - 1 assimilated: that first call pays the stream's one-time set-up and is reported
separately), side by side with a NUTS refit on the same data (cost and agreement), without
streaming through all k updates; writes ``benchmarks/results/assimilation_cost_at_k.json``.

``python -m benchmarks.bench_assimilation --sufficient`` (:func:`sufficient_cost`) measures, on a
twin with replicate rows, one update with and without the sufficient-statistic reduction of the
past chunks (:mod:`vvuq_twin.assimilation.sufficient`), side by side from the same particles and
random stream: row evaluations and seconds (the first call, with compiles and the exactness
check, and a second, warm call); writes ``benchmarks/results/assimilation_sufficient.json``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "assimilation.json"
#: Particles carried by the stream (thinned from the 2000 calibration draws).
N_PARTICLES = 1000


def _energy_distance(a: np.ndarray, b: np.ndarray, chunk: int = 500) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| between two draw sets (rows)."""
    def mean_dist(x, y):
        tot = 0.0
        for i in range(0, x.shape[0], chunk):
            d = np.sqrt(np.maximum(((x[i:i + chunk, None, :] - y[None, :, :]) ** 2).sum(-1), 0.0))
            tot += d.sum()
        return tot / (x.shape[0] * y.shape[0])
    return float(2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b))


def _flat_draws(post, names) -> tuple[np.ndarray, list[str]]:
    cols, labels = [], []
    for n in names:
        v = post[n].stack(s=("chain", "draw")).transpose("s", ...).values
        v = v.reshape(v.shape[0], -1)
        cols.append(v)
        labels += [n] if v.shape[1] == 1 else [f"{n}[{j}]" for j in range(v.shape[1])]
    return np.hstack(cols), labels


def _flat_particles(particles, names, n, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equally weighted draws (n, d), weighted means and sds (d,) of the particles."""
    vals = particles.resample(n, rng=rng)
    draws = np.hstack([vals[k].reshape(n, -1) for k in names])
    m, s = particles.mean(), particles.sd()
    return draws, np.hstack([np.ravel(m[k]) for k in names]), np.hstack([np.ravel(s[k]) for k in names])


def _airframe_stream(n_batches: int, thin: int = 4, n_cal: int = 60, n_specimens: int = 6):
    import os

    from case_studies.airframe.data import load_virkler
    from case_studies.airframe.run import CYCLES_SCALE
    from vvuq_twin import TwinData

    os.environ.setdefault("VVUQ_TWIN_DATA", "/work/shared/data")
    ds, _ = load_virkler()
    specs = sorted(set(ds["specimen"].values.tolist()), key=int)
    pick = [specs[i] for i in np.unique(np.linspace(0, len(specs) - 1, n_specimens).round().astype(int))]
    spec = ds["specimen"].values
    keep = np.zeros(spec.size, dtype=bool)
    for s in pick:
        keep[np.flatnonzero(spec == s)[::thin]] = True
    keep &= ds["cycles"].values > 0
    sub = ds.isel(obs=np.flatnonzero(keep))
    order = np.lexsort((sub["specimen"].values.astype(int), sub["crack_half_length"].values))
    x = sub["crack_half_length"].values[order]
    y = sub["cycles"].values[order] / CYCLES_SCALE
    u = sub["specimen"].values[order].astype(str)

    def td(idx):
        return TwinData(x=x[idx], y=y[idx], unit=u[idx], input_names=["crack_half_length_mm"])

    rest = np.arange(n_cal, x.size)
    parts = np.array_split(rest, n_batches)
    return pick, td(np.arange(n_cal)), [td(p) for p in parts], td


def main(quick: bool = False) -> dict:
    """Run the benchmark; returns (and writes) the results dict."""
    import arviz as az

    from case_studies.airframe.run import build_twin
    from vvuq_twin import calibrate
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.inference.calibrate import clear_compile_cache

    warnings.filterwarnings("ignore", message=".*BLAS.*")
    t_all = time.perf_counter()
    K = 5 if quick else 50
    refit_at = [5] if quick else [5, 20, 50]
    nuts_kw = dict(draws=500, tune=500, chains=4) if quick else dict(draws=1000, tune=1000, chains=4)
    specimens, cal, batches, td = _airframe_stream(K)
    twin = build_twin(quick=True)
    print(f"airframe twin: {len(specimens)} specimens {specimens}; calibration {cal.n} rows; "
          f"{K} batches of {min(b.n for b in batches)}-{max(b.n for b in batches)} rows", flush=True)
    t0 = time.perf_counter()
    res = calibrate(twin, cal, draws=500, tune=1000, chains=4, rng=0, warn=False, posterior_predictive=False)
    t_cal = time.perf_counter() - t0
    names = [n for n in res.idata.posterior.data_vars
             if n in set(v.name for v in twin.build_model(cal, check=False).free_RVs)]
    print(f"calibrated in {t_cal:.0f} s ({res.info['compile_time_s']:.0f} s compile); free variables {names}",
          flush=True)

    state, rows, agreement = res, [], {}
    all_idx_n = cal.n
    ref_second = None
    for k in range(1, K + 1):
        ncomp0 = state.density.n_compiled if k > 1 else 0
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = assimilate(state, batches[k - 1], rng=1000 + k,
                               **({"n_particles": N_PARTICLES} if k == 1 else {}))
        dt = time.perf_counter() - t0
        rep = state.reports[-1]
        mix_warn = any("did NOT decorrelate" in str(w.message) for w in caught)
        all_idx_n += batches[k - 1].n
        row = {"k": k, "n_obs_total": int(all_idx_n), "status": rep.status, "seconds": dt,
               "n_compiled": int(state.density.n_compiled - ncomp0),
               "kernel": rep.kernel, "acceptance": rep.acceptance, "n_moves": rep.n_moves,
               "phis": rep.phis, "ess_one_step": rep.ess_one_step, "ess_final": rep.ess_final,
               "unique_fraction": rep.unique_fraction, "mixing_ok": rep.mixing_ok,
               "max_rank_correlation": max(rep.mixing.values()) if rep.mixing else None,
               "mixing_threshold": rep.mixing_threshold, "mixing_warning": mix_warn,
               "n_likelihood_calls": rep.n_likelihood_evals, "n_point_evals": rep.n_point_evals,
               "n_chunks": rep.n_chunks, "update_seconds_in_smc": rep.seconds,
               "rows_exact": rep.rows_exact, "rows_surrogate": rep.rows_surrogate,
               "n_row_evals": rep.n_row_evals, "n_surrogate_row_evals": rep.n_surrogate_row_evals,
               "n_surrogate_calls": rep.n_surrogate_evals}
        print(f"k={k:2d} n={all_idx_n:3d} {rep.status:13s} {dt:6.1f}s kernels={rep.kernel} "
              f"acc={np.round(rep.acceptance, 2).tolist()} moves={rep.n_moves} "
              f"uniq={rep.unique_fraction:.2f} maxrho={row['max_rank_correlation']} ok={rep.mixing_ok} "
              f"compiles={row['n_compiled']} calls={rep.n_likelihood_evals} rows={rep.rows_exact}/{rep.rows_surrogate} "
              f"row-evals exact {rep.n_row_evals:.3g} surrogate {rep.n_surrogate_row_evals:.3g}", flush=True)
        if k in refit_at:
            all_data = state.data
            clear_compile_cache()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                nuts = calibrate(twin, all_data, rng=k, warn=False, posterior_predictive=False, **nuts_kw)
                t_nuts = time.perf_counter() - t0
            post = nuts.idata.posterior
            row.update(nuts_compile_seconds=float(nuts.info["compile_time_s"]),
                       nuts_sample_seconds=float(nuts.info["sample_time_s"]), nuts_total_seconds=t_nuts)
            nd, labels = _flat_draws(post, names)
            mcse = np.hstack([np.ravel(az.mcse(post, var_names=[n])[n].values) for n in names])
            g = np.random.default_rng(k)
            sd_draws, sm, ss = _flat_particles(state.particles, names, 2000, g)
            nm, ns = nd.mean(0), nd.std(0)
            se = np.sqrt(mcse**2 + ss**2 / state.particles.ess)
            z_mean = np.abs(sm - nm) / se
            sd_ratio = ss / ns
            sub = nd[g.choice(nd.shape[0], 2000, replace=False)]
            e_smc = _energy_distance(sd_draws / ns, sub / ns)
            a = {"mean_diff_in_mcse": dict(zip(labels, z_mean.round(3).tolist())),
                 "sd_ratio": dict(zip(labels, sd_ratio.round(4).tolist())),
                 "max_mean_diff_in_mcse": float(z_mean.max()), "max_abs_sd_error": float(np.abs(sd_ratio - 1).max()),
                 "energy_distance_smc_vs_nuts": e_smc, "nuts_min_ess_bulk": float(
                     az.ess(post, var_names=names).to_array().min())}
            if k == refit_at[0]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    nuts2 = calibrate(twin, all_data, rng=10_000 + k, warn=False, posterior_predictive=False, **nuts_kw)
                nd2, _ = _flat_draws(nuts2.idata.posterior, names)
                sub2 = nd2[g.choice(nd2.shape[0], 2000, replace=False)]
                ref_second = _energy_distance(sub2 / ns, sub / ns)
            a["energy_distance_nuts_vs_nuts"] = ref_second
            a["passed"] = bool(z_mean.max() < 3 and np.abs(sd_ratio - 1).max() < 0.15
                               and e_smc < 3 * max(ref_second, 1e-12))
            agreement[k] = a
            print(f"   NUTS refit: {t_nuts:.0f} s (compile {row['nuts_compile_seconds']:.0f} s, sample "
                  f"{row['nuts_sample_seconds']:.0f} s); max |mean diff|/MCSE {z_mean.max():.2f} "
                  f"({labels[int(z_mean.argmax())]}), max |sd ratio - 1| {np.abs(sd_ratio - 1).max():.3f} "
                  f"({labels[int(np.abs(sd_ratio - 1).argmax())]}), energy distance SMC-NUTS {e_smc:.4f} vs "
                  f"NUTS-NUTS {ref_second:.4f}", flush=True)
        rows.append(row)
        if k in refit_at:  # partial results survive an interrupted run
            _write(rows, agreement, state, K, quick, t_cal, t_all, partial=k < K)
    return _write(rows, agreement, state, K, quick, t_cal, t_all, partial=False, show=True)


def _write(rows, agreement, state, K, quick, t_cal, t_all, *, partial: bool, show: bool = False) -> dict:
    cost = []
    for r in rows:
        if "nuts_total_seconds" in r:
            # a refit is needed at every k; an SMC update's cost at k is its own time
            cost.append({"k": r["k"], "smc_update_seconds": r["seconds"],
                         "nuts_compile_plus_sample_seconds": r["nuts_total_seconds"],
                         "nuts_sample_only_seconds": r["nuts_sample_seconds"],
                         "ratio_compile_plus_sample": r["nuts_total_seconds"] / r["seconds"],
                         "ratio_sample_only": r["nuts_sample_seconds"] / r["seconds"],
                         "smc_n_likelihood_calls": r["n_likelihood_calls"],
                         "smc_n_point_evals": r["n_point_evals"], "smc_n_compiled": r["n_compiled"],
                         "smc_n_row_evals_exact": r["n_row_evals"],
                         "smc_n_row_evals_surrogate": r["n_surrogate_row_evals"]})
    moved = [r for r in rows if r["status"] == "resample-move"]
    acc = [a for r in moved for a in r["acceptance"]]
    result = {
        "problem": "airframe Paris-law twin (6 specimens, 25 free dims), Virkler data, streaming batches",
        "quick": quick, "n_batches": K, "n_particles": int(state.particles.n_particles),
        "calibration_seconds": t_cal, "rows": rows, "agreement": {str(k): v for k, v in agreement.items()},
        "cost": cost,
        "acceptance_range": [float(min(acc)), float(max(acc))] if acc else None,
        "min_unique_fraction_after_move": float(min(r["unique_fraction"] for r in moved)) if moved else None,
        "all_mixing_ok": bool(all(r["mixing_ok"] for r in moved)),
        "wall_time_s": time.perf_counter() - t_all,
        "partial": partial,
        "last_k": rows[-1]["k"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=float))
    if not show:
        return result
    print("cost (seconds)   k  SMC update  NUTS compile+sample  NUTS sample  ratio(c+s)  ratio(s)")
    for c in cost:
        print(f"              {c['k']:3d}  {c['smc_update_seconds']:10.1f}  {c['nuts_compile_plus_sample_seconds']:19.1f}"
              f"  {c['nuts_sample_only_seconds']:11.1f}  {c['ratio_compile_plus_sample']:10.1f}  {c['ratio_sample_only']:8.1f}")
    print(f"acceptance range {result['acceptance_range']}, min unique fraction after move "
          f"{result['min_unique_fraction_after_move']}, all mixing ok {result['all_mixing_ok']}")
    return result


COST_RESULTS = Path(__file__).resolve().parent / "results" / "assimilation_cost_at_k.json"


def _agreement(state, nuts_post, names, g, ref_second=None, start_ess=None):
    """Agreement of the SMC particles with a NUTS posterior. The SMC standard error of a mean is
    ``sd / sqrt(ESS)`` with ESS the weights' ESS; with ``start_ess`` (per coordinate: the ESS of
    the NUTS start draws per draw, for an update that only reweighted those draws, whose
    autocorrelation the particles keep) it is scaled by that fraction."""
    import arviz as az

    nd, labels = _flat_draws(nuts_post, names)
    mcse = np.hstack([np.ravel(az.mcse(nuts_post, var_names=[n])[n].values) for n in names])
    sd_draws, sm, ss = _flat_particles(state.particles, names, 2000, g)
    nm, ns = nd.mean(0), nd.std(0)
    ess = state.particles.ess * (np.minimum(1.0, start_ess) if start_ess is not None else 1.0)
    se = np.sqrt(mcse**2 + ss**2 / ess)
    z_mean = np.abs(sm - nm) / se
    sd_ratio = ss / ns
    sub = nd[g.choice(nd.shape[0], min(2000, nd.shape[0]), replace=False)]
    e_smc = _energy_distance(sd_draws / ns, sub / ns)
    return {"max_mean_diff_in_mcse": float(z_mean.max()), "worst_mean": labels[int(z_mean.argmax())],
            "max_abs_sd_error": float(np.abs(sd_ratio - 1).max()),
            "worst_sd": labels[int(np.abs(sd_ratio - 1).argmax())],
            "energy_distance_smc_vs_nuts": e_smc,
            "mean_diff_in_mcse": dict(zip(labels, z_mean.round(3).tolist())),
            "sd_ratio": dict(zip(labels, sd_ratio.round(4).tolist()))}, ns, sub


def _cpu() -> dict:
    """Process CPU seconds so far (user, system; this process's threads and its reaped children,
    e.g. the C compiler) and the load average, to report next to wall-clock times."""
    import os
    import resource

    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"user": me.ru_utime + ch.ru_utime, "system": me.ru_stime + ch.ru_stime,
            "load": os.getloadavg()[0]}


def _cpu_delta(a: dict, b: dict) -> dict:
    return {"user_cpu_seconds": b["user"] - a["user"], "system_cpu_seconds": b["system"] - a["system"],
            "load_before": a["load"], "load_after": b["load"]}


def cost_at_k(ks=(50, 5, 20), *, n_particles: int = 2000, max_mcmc_steps: int = 15,
              n_batches: int = 50, second_nuts: bool = True) -> dict:
    """Per-update cost of one SMC update at batch k vs a NUTS refit on the same data, side by side.

    The cost of the update at k depends on the data seen so far and the posterior, not on how
    the particles got there, so each k starts from a NUTS posterior on the calibration data and
    the first k - 2 batches (4 chains x ``max(250, n_particles / 4)`` draws, thinned to
    ``n_particles``: the particles carry that run's MC error, so more of them tighten the
    agreement at no move cost when the update only reweights; the past data are then one
    chunk, as after a merge) and assimilates batch k - 1 from it by
    :func:`vvuq_twin.assimilation.assimilate`: that first call of the stream pays its one-time
    set-up (transforms, prior, the past chunk's compiled likelihood) and is timed and reported
    on its own. Batch k is then assimilated from that state (automatic kernel, at most
    ``max_mcmc_steps`` moves per stage), as a living twin pays it per batch, and timed; then a NUTS refit
    on all k batches (4 x 1000 draws, 1000 tuning steps, compile cache cleared: compile + sample)
    runs in the same process, and the agreement of the two posteriors is computed (at the first
    k also against a second, independent NUTS run, unless ``second_nuts`` is False). Wall-clock
    seconds come with the process's user and system CPU seconds (threads and reaped child
    processes such as the C compiler) and the load average before and after each phase, since
    the machine may be shared. Writes ``results/assimilation_cost_at_k.json``.
    """
    from case_studies.airframe.run import build_twin
    from vvuq_twin import calibrate
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.inference.calibrate import clear_compile_cache

    warnings.filterwarnings("ignore", message=".*BLAS.*")
    specimens, cal, batches, td = _airframe_stream(n_batches)
    twin = build_twin(quick=True)
    out = {"problem": "airframe Paris-law twin (6 specimens, 25 free dims), Virkler data",
           "n_particles": n_particles, "max_mcmc_steps": max_mcmc_steps, "n_batches": n_batches,
           "rows_per_batch": [int(min(b.n for b in batches)), int(max(b.n for b in batches))],
           "points": []}
    names = None
    ref_second = None
    for k in ks:
        from vvuq_twin.twin import TwinData

        def join(parts):
            return TwinData(x=np.vstack([p.x for p in parts]), y=np.concatenate([p.y for p in parts]),
                            unit=np.concatenate([p.unit for p in parts]), input_names=parts[0].input_names)

        # the stream's state after k - 1 batches: a NUTS posterior on the calibration data and
        # the first k - 2 batches, then batch k - 1 assimilated from it (this first call pays the
        # stream's one-time set-up: transforms, prior, the past chunk's compiled likelihood);
        # the cost at k is the next call, on that state, as a living twin pays it per batch
        before = join([cal] + batches[:k - 2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            start = calibrate(twin, before, draws=max(250, -(-n_particles // 4)), tune=500, chains=4, rng=k, warn=False,
                              posterior_predictive=False)
            t_start = time.perf_counter() - t0
        if names is None:
            free = set(v.name for v in twin.build_model(cal, check=False).free_RVs)
            names = [n for n in start.idata.posterior.data_vars if n in free]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c0 = _cpu()
            t0 = time.perf_counter()
            state0 = assimilate(start, batches[k - 2], rng=1000 + k, n_particles=n_particles,
                                max_mcmc_steps=max_mcmc_steps)
            t_setup = time.perf_counter() - t0
            cpu_setup = _cpu_delta(c0, _cpu())
        rep0 = state0.reports[-1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c0 = _cpu()
            t0 = time.perf_counter()
            state = assimilate(state0, batches[k - 1], rng=2000 + k, max_mcmc_steps=max_mcmc_steps)
            t_smc = time.perf_counter() - t0
            cpu_smc = _cpu_delta(c0, _cpu())
        rep = state.reports[-1]
        clear_compile_cache()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c0 = _cpu()
            t0 = time.perf_counter()
            nuts = calibrate(twin, state.data, rng=k, warn=False, posterior_predictive=False,
                             draws=1000, tune=1000, chains=4)
            t_nuts = time.perf_counter() - t0
            cpu_nuts = _cpu_delta(c0, _cpu())
        g = np.random.default_rng(k)
        start_ess = None
        if rep.status == rep0.status == "reweighted":  # the particles are the start draws, reweighted
            import arviz as az

            sp = start.idata.posterior
            n_draws = sp.sizes["chain"] * sp.sizes["draw"]
            start_ess = np.hstack([np.ravel(az.ess(sp, var_names=[n])[n].values) for n in names]) / n_draws
        agree, ns, sub = _agreement(state, nuts.idata.posterior, names, g, start_ess=start_ess)
        if ref_second is None and second_nuts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nuts2 = calibrate(twin, state.data, rng=10_000 + k, warn=False, posterior_predictive=False,
                                  draws=1000, tune=1000, chains=4)
            nd2, _ = _flat_draws(nuts2.idata.posterior, names)
            ref_second = _energy_distance(nd2[g.choice(nd2.shape[0], 2000, replace=False)] / ns, sub / ns)
        agree["energy_distance_nuts_vs_nuts"] = ref_second
        agree["passed"] = bool(agree["max_mean_diff_in_mcse"] < 3 and agree["max_abs_sd_error"] < 0.15
                               and (ref_second is None or agree["energy_distance_smc_vs_nuts"] < 3 * ref_second))
        point = {"k": k, "n_obs_total": int(state.data.n), "start_nuts_seconds": t_start,
                 "stream_first_call_seconds": t_setup, "stream_first_call_cpu": cpu_setup,
                 "stream_first_call_status": rep0.status,
                 "stream_first_call_seconds_in_update": rep0.seconds,
                 "smc_update_seconds": t_smc, "smc_seconds_in_update": rep.seconds, "smc_cpu": cpu_smc,
                 "nuts_cpu": cpu_nuts, "n_particles": int(state.particles.n_particles),
                 "ratio_user_cpu_compile_plus_sample": cpu_nuts["user_cpu_seconds"] / max(cpu_smc["user_cpu_seconds"], 1e-9),
                 "smc_status": rep.status, "kernel": rep.kernel, "acceptance": rep.acceptance,
                 "n_moves": rep.n_moves, "phis": rep.phis, "mixing_ok": rep.mixing_ok,
                 "max_rank_correlation": max(rep.mixing.values()) if rep.mixing else None,
                 "unique_fraction": rep.unique_fraction, "ess_final": rep.ess_final,
                 "n_likelihood_calls": rep.n_likelihood_evals, "n_row_evals": rep.n_row_evals,
                 "rows_exact": rep.rows_exact, "n_compiled": int(state.density.n_compiled),
                 "mixing_warning": any("did NOT decorrelate" in str(w.message) for w in caught),
                 "nuts_compile_plus_sample_seconds": t_nuts,
                 "nuts_compile_seconds": float(nuts.info["compile_time_s"]),
                 "nuts_sample_seconds": float(nuts.info["sample_time_s"]),
                 "ratio_compile_plus_sample": t_nuts / t_smc,
                 "ratio_sample_only": float(nuts.info["sample_time_s"]) / t_smc,
                 "agreement": agree}
        out["points"].append(point)
        print(f"k={k} n={state.data.n}: stream's first call (batch k-1, set-up) {t_setup:.1f} s "
              f"({rep0.status}); SMC update {t_smc:.1f} s ({rep.status}, {rep.kernel}, acc "
              f"{np.round(rep.acceptance, 2).tolist()}, moves {rep.n_moves}, row-evals {rep.n_row_evals:.3g}); "
              f"NUTS compile+sample {t_nuts:.1f} s (sample {point['nuts_sample_seconds']:.1f} s): ratio "
              f"{point['ratio_compile_plus_sample']:.2f}x (sample only {point['ratio_sample_only']:.2f}x); "
              f"max |mean diff|/MCSE {agree['max_mean_diff_in_mcse']:.2f} ({agree['worst_mean']}), max |sd ratio-1| "
              f"{agree['max_abs_sd_error']:.3f} ({agree['worst_sd']}), energy SMC-NUTS "
              f"{agree['energy_distance_smc_vs_nuts']:.4f} vs NUTS-NUTS {ref_second}; user CPU SMC "
              f"{cpu_smc['user_cpu_seconds']:.1f} s vs NUTS {cpu_nuts['user_cpu_seconds']:.1f} s; load "
              f"{cpu_smc['load_before']:.1f}-{cpu_nuts['load_after']:.1f}", flush=True)
        COST_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        COST_RESULTS.write_text(json.dumps(out, indent=1, default=float))
    return out


SUFFICIENT_RESULTS = Path(__file__).resolve().parent / "results" / "assimilation_sufficient.json"


def sufficient_cost(*, n_units: int = 6, n_inputs: int = 10, n_reps: int = 8, n_past: int = 5,
                    n_particles: int = 2000, rng: int = 0) -> dict:
    """One SMC update with and without the sufficient-statistic reduction, side by side.

    Twin: hierarchical ``y = k_u sqrt(x) + N(0, 0.2^2)``, ``k_u = mu + 0.5 z_u`` (known noise and
    population sd, so that the posterior after the past chunks is Gaussian in closed form and the
    particles start as exact draws). Each chunk measures ``n_units`` units at the same
    ``n_inputs`` set-points ``n_reps`` times (replicate rows); ``n_past`` past chunks, then the
    new batch. Each variant runs twice from the same particles and seed: the first call compiles
    (and, reduced, builds and checks the reduction), the second is warm. ``resample_threshold=1``
    forces a move stage, whose cost is what the reduction changes.
    """
    import pytensor.tensor as pt

    import vvuq_twin as vt
    from vvuq_twin.assimilation import ParticlePosterior, TwinLogDensity, smc_update

    sig, tau = 0.2, 0.5
    g = np.random.default_rng(rng)
    units = tuple(f"u{i}" for i in range(n_units))
    k_true = g.normal(1.0, tau, n_units)
    xs = np.linspace(0.5, 5.0, n_inputs)

    def chunk():
        x = np.tile(np.repeat(xs, n_reps), n_units)
        u = np.repeat(np.arange(n_units), n_inputs * n_reps)
        y = k_true[u] * np.sqrt(x) + g.normal(0, sig, x.size)
        return {"x": x.reshape(-1, 1), "y": y, "unit": np.array(units)[u]}

    past = [chunk() for _ in range(n_past)]
    batch = chunk()
    twin = vt.Twin(name="replicates", simulator=vt.PytensorSimulator(lambda X, p: p["k"] * pt.sqrt(X[:, 0])),
                   parameters=[vt.Parameter("k", vt.NormalPrior(1.0, 1.0), per_unit=True, pop_scale=tau)],
                   observation=vt.GaussianObs(sigma=sig), hierarchy=vt.Hierarchy(dim="unit"))
    # closed-form posterior of (k_mu, k_z) given the past chunks
    x = np.concatenate([c["x"][:, 0] for c in past])
    y = np.concatenate([c["y"] for c in past])
    ui = np.concatenate([np.searchsorted(units, c["unit"]) for c in past])
    X = np.zeros((x.size, 1 + n_units))
    X[:, 0] = np.sqrt(x)
    X[np.arange(x.size), 1 + ui] = tau * np.sqrt(x)
    prior_m = np.r_[1.0, np.zeros(n_units)]
    cov = np.linalg.inv(np.eye(1 + n_units) + X.T @ X / sig**2)
    mean = cov @ (prior_m + X.T @ y / sig**2)
    draws = g.multivariate_normal(mean, cov, n_particles)
    vals = {"k_mu": draws[:, 0], "k_z": draws[:, 1:]}
    dens = TwinLogDensity(twin, units=units, input_names=["x"])
    dens.prepare(past[0])
    zz = dens.to_unconstrained(vals)
    ll = np.zeros(n_particles)
    for c in past:
        ll += dens.log_likelihood_z(zz, c, True)[0]  # the full chunk functions are compiled here
    post = ParticlePosterior(vals, None, ll)
    out = {"problem": {"n_units": n_units, "n_inputs": n_inputs, "n_reps": n_reps, "n_past": n_past,
                       "rows_per_chunk": int(past[0]["y"].size), "n_particles": n_particles,
                       "free_dims": int(zz.shape[1])}, "runs": []}
    res = {}
    for label, mode in (("full", False), ("reduced", True)):
        for call in ("first", "warm"):
            c0 = dens.n_compiled
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            new, rep = smc_update(post, batch, dens, past_data=past, sufficient_statistics=mode,
                                  resample_threshold=1.0, rng=rng + 1)
            row = {"variant": label, "call": call, "seconds": time.perf_counter() - t0,
                   "cpu_seconds": time.process_time() - cpu0, "seconds_in_update": rep.seconds,
                   "n_row_evals": int(rep.n_row_evals), "rows_exact": int(rep.rows_exact),
                   "rows_past": int(rep.rows_past), "rows_past_reduced": int(rep.rows_past_reduced),
                   "sufficient_statistics": bool(rep.sufficient_statistics),
                   "n_likelihood_calls": int(rep.n_likelihood_evals), "n_moves": rep.n_moves,
                   "kernel": rep.kernel, "acceptance": rep.acceptance, "status": rep.status,
                   "compiled": int(dens.n_compiled - c0), "reason": rep.sufficient_reason[:300]}
            out["runs"].append(row)
            res[(label, call)] = new
            print(f"{label:8s} {call:5s}: {row['seconds']:.2f} s (cpu {row['cpu_seconds']:.2f} s), row evals "
                  f"{row['n_row_evals']:.4g}, rows per exact evaluation {row['rows_exact']} (past "
                  f"{row['rows_past']} -> {row['rows_past_reduced']}), moves {row['n_moves']} "
                  f"{row['kernel']}, compiled {row['compiled']}", flush=True)
    a, b = res[("full", "warm")], res[("reduced", "warm")]
    out["max_abs_particle_difference"] = float(max(np.max(np.abs(a.values[k] - b.values[k])) for k in a.values))
    warm = {r["variant"]: r for r in out["runs"] if r["call"] == "warm"}
    out["ratio_row_evals"] = warm["full"]["n_row_evals"] / max(warm["reduced"]["n_row_evals"], 1)
    out["ratio_warm_seconds"] = warm["full"]["seconds"] / max(warm["reduced"]["seconds"], 1e-9)
    print(f"row evals full/reduced {out['ratio_row_evals']:.2f}x, warm seconds full/reduced "
          f"{out['ratio_warm_seconds']:.2f}x, max |particle difference| {out['max_abs_particle_difference']:.2g}")
    SUFFICIENT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    SUFFICIENT_RESULTS.write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    if "--sufficient" in sys.argv:
        import argparse

        ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_assimilation --sufficient")
        ap.add_argument("--sufficient", action="store_true")
        ap.add_argument("--n-units", type=int, default=6)
        ap.add_argument("--n-inputs", type=int, default=10)
        ap.add_argument("--n-reps", type=int, default=8)
        ap.add_argument("--n-past", type=int, default=5)
        ap.add_argument("--n-particles", type=int, default=2000)
        a = ap.parse_args()
        sufficient_cost(n_units=a.n_units, n_inputs=a.n_inputs, n_reps=a.n_reps, n_past=a.n_past,
                        n_particles=a.n_particles)
    elif "--cost-at-k" in sys.argv:
        import argparse

        ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_assimilation --cost-at-k")
        ap.add_argument("--cost-at-k", action="store_true")
        ap.add_argument("--k", type=int, nargs="+", default=[50, 5, 20], help="batches k to measure")
        ap.add_argument("--n-particles", type=int, default=2000)
        ap.add_argument("--max-mcmc-steps", type=int, default=15)
        ap.add_argument("--no-second-nuts", action="store_true",
                        help="skip the second NUTS run (the NUTS-vs-NUTS energy-distance reference)")
        a = ap.parse_args()
        cost_at_k(tuple(a.k), n_particles=a.n_particles, max_mcmc_steps=a.max_mcmc_steps,
                  second_nuts=not a.no_second_nuts)
    else:
        main(quick="--quick" in sys.argv)
