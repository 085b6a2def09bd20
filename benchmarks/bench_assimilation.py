"""Benchmark: cost of one streaming SMC update as past batches accumulate vs a full NUTS refit.

Problem: the exponential-decay twin ``y = a exp(-b t) + N(0, 0.1^2)`` of
:mod:`vvuq_twin.testing.problems_assim`, batches of 5 observations. At each k = 1..K the new batch is
assimilated by :func:`vvuq_twin.assimilation.smc_update` (2000 particles); at selected k the peer,
a full NUTS refit with nutpie on the PyMC model of all data so far (4 chains x 1000 draws, 1000
tuning steps), runs in the same process. The refit is timed as compile + sample (what refitting
from scratch costs) and as sampling alone (a refit that reuses a compiled model). At the final k
the two posteriors are compared with each other and with a dense-quadrature reference. The same
stream also runs through the twin API (:func:`vvuq_twin.calibrate` on batch 1, then
:func:`vvuq_twin.assimilation.assimilate` per batch, whose likelihood is compiled from the twin's
PyMC model for each new data set), timed per update.

Run: ``python -m benchmarks.bench_assimilation [--quick]``; writes
``benchmarks/results/assimilation.json``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from vvuq_twin.assimilation import ParticlePosterior, concat_data, smc_update
from vvuq_twin.testing.problems_assim import ExponentialDecay

RESULTS = Path(__file__).resolve().parent / "results" / "assimilation.json"


def _nuts_refit(model: ExponentialDecay, data: dict, seed: int) -> tuple[dict, float, float]:
    import nutpie
    import pymc as pm

    t0 = time.perf_counter()
    with pm.Model() as pm_model:
        a = pm.LogNormal("a", model.prior_a[0], model.prior_a[1])
        b = pm.LogNormal("b", model.prior_b[0], model.prior_b[1])
        pm.Normal("y", a * pm.math.exp(-b * data["time"]), model.sigma, observed=data["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = nutpie.compile_pymc_model(pm_model)
    t1 = time.perf_counter()
    idata = nutpie.sample(compiled, chains=4, draws=1000, tune=1000, seed=seed, progress_bar=False)
    t2 = time.perf_counter()
    post = idata.posterior
    draws = {k: post[k].stack(s=("chain", "draw")).values for k in ("a", "b")}
    return draws, t1 - t0, t2 - t1


def main(quick: bool = False) -> dict:
    """Run the benchmark; returns (and writes) the results dict."""
    n_batches = 10 if quick else 50
    refit_at = [1, 10] if quick else [1, 10, 25, 50]
    n_particles = 2000
    model = ExponentialDecay()
    batches = model.simulate(n_batches, 5, rng=1)
    g = np.random.default_rng(0)
    post = ParticlePosterior(model.sample_prior(n_particles, rng=g))
    past: dict = {}
    rows = []
    nuts_draws = None
    # the same update through the twin API: calibrate on batch 1, then assimilate(result, batch)
    from vvuq_twin import calibrate
    from vvuq_twin.assimilation import assimilate

    twin = model.twin()
    twin_state = None
    for k, ds in enumerate(batches, start=1):
        t0 = time.perf_counter()
        if twin_state is None:
            twin_state = calibrate(twin, model.twin_data([ds]), draws=1000, chains=2, rng=0,
                                   posterior_predictive=False, warn=False)
        else:
            twin_state = assimilate(twin_state, model.twin_data([ds]), time_input="time", rng=k)
        t_twin = time.perf_counter() - t0
        batch = {"time": ds["time"].values, "y": ds["y"].values}
        t0 = time.perf_counter()
        post, rep = smc_update(post, batch, model.log_likelihood, model.log_prior, past_data=past,
                               n_mcmc_steps=10, batch_index=k - 1, rng=g)
        t_smc = time.perf_counter() - t0
        past = concat_data([past, batch])
        row = {"k": k, "smc_seconds": t_smc, "twin_assimilate_seconds": t_twin if k > 1 else None, "smc_status": rep.status, "smc_stages": len(rep.phis),
               "ess_final": rep.ess_final}
        if k in refit_at:
            nuts_draws, t_comp, t_samp = _nuts_refit(model, past, seed=k)
            row.update(nuts_compile_seconds=t_comp, nuts_sample_seconds=t_samp,
                       nuts_total_seconds=t_comp + t_samp)
        rows.append(row)

    smc_t = np.array([r["smc_seconds"] for r in rows])
    window = 5 if quick else 10
    last = rows[-1]
    # posterior agreement at the final k: SMC vs NUTS vs quadrature
    ref = model.grid_posterior(batches)
    smc_draws = post.resample(4000, rng=1)
    agreement = {}
    for j, name in enumerate(("a", "b")):
        nd = nuts_draws[name]
        m_smc, s_smc = float(post.mean()[name]), float(post.sd()[name])
        m_nuts, s_nuts = float(nd.mean()), float(nd.std())
        se = np.sqrt(s_smc**2 / post.ess + s_nuts**2 / 1000.0)  # nutpie ESS ~ 1000+ for 4000 draws
        agreement[name] = {
            "smc_mean": m_smc, "nuts_mean": m_nuts, "quadrature_mean": float(ref["mean"][j]),
            "smc_sd": s_smc, "nuts_sd": s_nuts, "quadrature_sd": float(ref["sd"][j]),
            "mean_diff_in_mc_se": abs(m_smc - m_nuts) / se,
            "ks_pvalue_smc_vs_nuts": float(stats.ks_2samp(smc_draws[name], nd).pvalue),
        }
    twin_t = np.array([r["twin_assimilate_seconds"] for r in rows[1:]])
    twin_mean = {k: float(twin_state.particles.mean()[k]) for k in ("a", "b")}
    # the amortised per-update cost over the last window (a refit is needed at every k)
    smc_last = float(smc_t[-window:].mean())
    result = {
        "problem": "exponential decay y = a exp(-b t) + N(0, 0.1^2), 5 observations per batch",
        "n_particles": n_particles,
        "n_batches": n_batches,
        "quick": quick,
        "rows": rows,
        "smc_mean_seconds_first_window": float(smc_t[:window].mean()),
        "smc_mean_seconds_last_window": smc_last,
        "smc_max_seconds_last_window": float(smc_t[-window:].max()),
        "smc_cost_growth_last_vs_first_window": float(smc_t[-window:].mean() / smc_t[:window].mean()),
        "ratio_refit_total_vs_smc_at_final_k": last["nuts_total_seconds"] / smc_last,
        "ratio_refit_sampling_only_vs_smc_at_final_k": last["nuts_sample_seconds"] / smc_last,
        "twin_assimilate_mean_seconds_last_window": float(twin_t[-window:].mean()),
        "ratio_refit_total_vs_twin_assimilate_at_final_k": last["nuts_total_seconds"] / float(twin_t[-window:].mean()),
        "twin_assimilate_final_mean": twin_mean,
        "posterior_agreement_final_k": agreement,
        "agree_within_mc_error": bool(all(v["mean_diff_in_mc_se"] < 4 and v["ks_pvalue_smc_vs_nuts"] > 0.001
                                          for v in agreement.values())),
    }
    print(f"{'k':>3} {'SMC s':>8} {'status':>14} {'twin assimilate s':>18} {'NUTS compile+sample s':>22} {'NUTS sample s':>14}")
    for r in rows:
        if r["k"] in refit_at or r["k"] % window == 0:
            nt = f"{r['nuts_total_seconds']:.3f}" if "nuts_total_seconds" in r else "-"
            ns = f"{r['nuts_sample_seconds']:.3f}" if "nuts_sample_seconds" in r else "-"
            tw = "-" if r["twin_assimilate_seconds"] is None else f"{r['twin_assimilate_seconds']:.3f}"
            print(f"{r['k']:>3} {r['smc_seconds']:8.4f} {r['smc_status']:>14} {tw:>18} {nt:>22} {ns:>14}")
    print(f"SMC mean cost per update, last {window} batches: {smc_last:.4f} s "
          f"(x{result['smc_cost_growth_last_vs_first_window']:.2f} vs the first {window})")
    print(f"At k={n_batches}: refit (compile+sample) / SMC update = "
          f"{result['ratio_refit_total_vs_smc_at_final_k']:.1f}x; sampling only = "
          f"{result['ratio_refit_sampling_only_vs_smc_at_final_k']:.1f}x")
    print(f"Through the twin API (assimilate(result, TwinData), likelihood compiled from the PyMC "
          f"model per batch): {result['twin_assimilate_mean_seconds_last_window']:.3f} s per update; "
          f"refit (compile+sample) / assimilate = {result['ratio_refit_total_vs_twin_assimilate_at_final_k']:.1f}x; "
          f"final means a={twin_mean['a']:.4f}, b={twin_mean['b']:.4f}")
    for name, v in agreement.items():
        print(f"{name}: SMC {v['smc_mean']:.4f}+-{v['smc_sd']:.4f}  NUTS {v['nuts_mean']:.4f}+-"
              f"{v['nuts_sd']:.4f}  quadrature {v['quadrature_mean']:.4f}+-{v['quadrature_sd']:.4f}  "
              f"|diff|/se={v['mean_diff_in_mc_se']:.2f}  KS p={v['ks_pvalue_smc_vs_nuts']:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
