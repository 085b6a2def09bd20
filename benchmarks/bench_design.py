"""EIG error vs wall time: vvuq_twin.design against pyro.contrib.oed, side by side in one run.

Problems (from :mod:`vvuq_twin.testing.problems_design`):

* linear-Gaussian, ``X = [[1,0],[0,1],[1,1]]``, sigma = 1, standard-normal prior: exact EIG
  ``½ log 8 = 1.03972`` nats;
* location finding (Foster et al. 2021: 2 sources in 2-D, b = 0.1, m = 1e-4, noise 0.5), one
  measurement at ``xi = (0.5, 0.5)``: reference = our nested MC at a very high budget (its own
  standard error is reported; pyro's nested MC converges to the same quantity).

Estimators, at matched model-evaluation budgets (one evaluation = one ``log p(y | theta, design)``
for one (theta, y) pair, or one simulated draw for the variational bounds):

* nested MC: ``vvuq_twin.design.eig_nmc(n_outer=N, n_inner=M)`` (our default sample-based
  estimator; inner samples reused, batch-means standard error) vs ``pyro.contrib.oed.eig.nmc_eig(N, M)``
  -- both ``N * M`` likelihood evaluations;
* marginal (upper) bound: ``vvuq_twin.design.eig_marginal_bound`` (Gaussian ``q(y)`` fitted in closed
  form) vs ``pyro.contrib.oed.eig.marginal_eig`` (the same Gaussian family trained by SVI/Adam, at
  25 and 100 SVI steps: fewer steps are faster and more biased) -- both given the same number of
  simulated draws.

For each budget, ``reps`` seeded repetitions give the RMSE against the reference and the median wall
time. Both run in float64 on the CPU with ``torch.set_num_threads(1)`` (restored afterwards).
Ratios: ``time_ratio = pyro_time / our_time`` and ``rmse_ratio = pyro_rmse / our_rmse`` (> 1 means we
are better). Goal: same error at >= 5x less time, or lower error at equal time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from vvuq_twin.design import eig, eig_marginal_bound, eig_nmc
from vvuq_twin.testing.problems_design import (
    LINEAR_GAUSSIAN_EIG,
    LINEAR_GAUSSIAN_X,
    linear_gaussian_problem,
    location_finding_problem,
)

RESULTS = Path(__file__).resolve().parent / "results" / "design.json"


# ------------------------------------------------------------------ pyro models (benchmark only)
def _pyro_models():
    import pyro
    import pyro.distributions as pdist
    from torch.distributions import constraints

    def linear_model(design):
        batch = design.shape[:-2]
        with pyro.plate_stack("plates", batch):
            theta = pyro.sample("theta", pdist.Normal(torch.zeros(2, dtype=design.dtype), 1.0).to_event(1))
            mean = (design * theta[..., None, :]).sum(-1)
            return pyro.sample("y", pdist.Normal(mean, 1.0).to_event(1))

    def location_model(design):
        batch = design.shape[:-2]
        with pyro.plate_stack("plates", batch):
            theta = pyro.sample("theta", pdist.Normal(torch.zeros(4, dtype=design.dtype), 1.0).to_event(1))
            th = theta.reshape(*theta.shape[:-1], 1, 2, 2)
            d2 = ((th - design[..., :, None, :]) ** 2).sum(-1)
            mu = 0.1 + (1.0 / (1e-4 + d2)).sum(-1)
            return pyro.sample("y", pdist.Normal(torch.log(mu), 0.5).to_event(1))

    def marginal_guide(design, observation_labels, target_labels):
        n_obs = design.shape[-2]
        mu = pyro.param("q_mu", torch.zeros(n_obs, dtype=design.dtype))
        tril = pyro.param("q_tril", torch.eye(n_obs, dtype=design.dtype), constraint=constraints.lower_cholesky)
        with pyro.plate_stack("plates", design.shape[:-2]):
            pyro.sample("y", pdist.MultivariateNormal(mu, scale_tril=tril))

    return linear_model, location_model, marginal_guide


def _timed(fn):
    t0 = time.perf_counter()
    v = fn()
    return float(v), time.perf_counter() - t0


def _nmc_rows(problem, design, pyro_model, truth, budgets, reps, seed0):
    import pyro
    from pyro.contrib.oed.eig import nmc_eig

    rows = []
    d_t = torch.as_tensor(np.asarray(design, dtype=float), dtype=torch.float64)
    for N, M in budgets:
        ours, theirs, t_ours, t_theirs, ses = [], [], [], [], []
        for r in range(reps):
            seed = seed0 + 1000 * r + M

            def run_ours():
                res = eig_nmc(problem, design, n_outer=N, n_inner=M, n_batches=10, rng=seed)
                ses.append(res.se)
                return res.estimate

            v, t = _timed(run_ours)
            ours.append(v)
            t_ours.append(t)
            with torch.random.fork_rng(devices=[]):
                pyro.set_rng_seed(seed)
                pyro.clear_param_store()
                v, t = _timed(lambda: nmc_eig(pyro_model, d_t, "y", "theta", N=N, M=M))
            theirs.append(v)
            t_theirs.append(t)
        rows.append(_row("nmc", "pyro.nmc_eig", N * M, N, M, ours, theirs, t_ours, t_theirs, truth, ses))
    return rows


#: pyro's SVI step counts for ``marginal_eig`` (the trade-off between training time and bias)
SVI_STEPS = (25, 100)


def _marginal_rows(problem, design, pyro_model, guide, truth, budgets, reps, seed0, svi_steps=SVI_STEPS):
    """Our closed-form marginal bound vs pyro's SVI-trained one at each SVI step count.

    pyro gets the same number of simulated draws for training (``n_train``, spread over its
    ``steps`` SVI steps) and for the final estimate (``n_eval``); one row per (budget, steps).
    """
    import pyro
    from pyro.contrib.oed.eig import marginal_eig

    rows = []
    d_t = torch.as_tensor(np.asarray(design, dtype=float), dtype=torch.float64)
    for n_train, n_eval in budgets:
        ours, t_ours, ses = [], [], []
        for r in range(reps):
            seed = seed0 + 1000 * r + n_train

            def run_ours():
                res = eig_marginal_bound(problem, design, n_outer=n_eval, n_train=n_train, rng=seed)
                ses.append(res.se)
                return res.estimate

            v, t = _timed(run_ours)
            ours.append(v)
            t_ours.append(t)
        for steps in svi_steps:
            per_step = max(1, n_train // steps)
            theirs, t_theirs = [], []
            for r in range(reps):
                seed = seed0 + 1000 * r + n_train
                with torch.random.fork_rng(devices=[]):
                    pyro.set_rng_seed(seed)
                    pyro.clear_param_store()
                    optim = pyro.optim.Adam({"lr": 0.05})
                    v, t = _timed(lambda: marginal_eig(pyro_model, d_t, "y", "theta", num_samples=per_step,
                                                       num_steps=steps, guide=guide, optim=optim,
                                                       final_num_samples=n_eval))
                theirs.append(v)
                t_theirs.append(t)
            row = _row("marginal", f"pyro.marginal_eig (SVI {steps} steps)", n_train + n_eval, n_train,
                       n_eval, ours, theirs, t_ours, t_theirs, truth, ses)
            row["svi_steps"] = int(steps)
            row["svi_samples_per_step"] = int(per_step)
            rows.append(row)
    return rows


def _row(ours_name, peer, evals, a, b, ours, theirs, t_ours, t_theirs, truth, ses):
    ours, theirs = np.array(ours), np.array(theirs)
    rmse_o = float(np.sqrt(np.mean((ours - truth) ** 2)))
    rmse_p = float(np.sqrt(np.mean((theirs - truth) ** 2)))
    to, tp = float(np.median(t_ours)), float(np.median(t_theirs))
    return {"estimator": ours_name, "peer": peer, "evaluations": int(evals), "budget": [int(a), int(b)],
            "ours_mean": float(ours.mean()), "peer_mean": float(theirs.mean()),
            "ours_rmse": rmse_o, "peer_rmse": rmse_p, "ours_mean_se": float(np.mean(ses)),
            "ours_time_s": to, "peer_time_s": tp, "time_ratio": tp / to, "rmse_ratio": rmse_p / rmse_o}


def main(quick: bool = False) -> dict:
    """Run the benchmark, print a table, write ``benchmarks/results/design.json``."""
    import pyro

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        linear_model, location_model, guide = _pyro_models()
        reps = 3 if quick else 10
        nmc_budgets = [(500, 50), (2000, 200)] if quick else [(500, 50), (1000, 100), (2000, 200), (4000, 400), (8000, 800)]
        marg_budgets = [(1000, 1000)] if quick else [(1000, 1000), (4000, 4000), (16000, 16000)]
        lg = linear_gaussian_problem()
        lf = location_finding_problem()
        xi = np.array([[0.5, 0.5]])
        t0 = time.perf_counter()
        ref_budget = (8000, 8000) if quick else (40_000, 20_000)
        ref = eig_nmc(lf, xi, n_outer=ref_budget[0], n_inner=ref_budget[1], n_batches=20, rng=12345)
        ref_time = time.perf_counter() - t0
        out = {"problems": {}, "pyro_version": pyro.__version__, "torch_version": torch.__version__,
               "threads": 1, "reps": reps, "quick": quick}
        t0 = time.perf_counter()
        cf = eig(lg, LINEAR_GAUSSIAN_X)  # method="auto" -> the closed form for a linear-Gaussian problem
        out["linear_gaussian_default"] = {"method": cf.method, "estimate": cf.estimate,
                                          "abs_error": abs(cf.estimate - LINEAR_GAUSSIAN_EIG),
                                          "time_s": time.perf_counter() - t0}
        out["problems"]["linear_gaussian"] = {
            "truth": LINEAR_GAUSSIAN_EIG, "truth_kind": "closed form",
            "rows": _nmc_rows(lg, LINEAR_GAUSSIAN_X, linear_model, LINEAR_GAUSSIAN_EIG, nmc_budgets, reps, 1)
            + _marginal_rows(lg, LINEAR_GAUSSIAN_X, linear_model, guide, LINEAR_GAUSSIAN_EIG, marg_budgets, reps, 2)}
        out["problems"]["location_finding"] = {
            "truth": ref.estimate, "truth_se": ref.se, "truth_kind": f"our NMC at N={ref_budget[0]}, M={ref_budget[1]}",
            "reference_time_s": ref_time,
            "rows": _nmc_rows(lf, xi, location_model, ref.estimate, nmc_budgets, reps, 3)
            + _marginal_rows(lf, xi, location_model, guide, ref.estimate, marg_budgets, reps, 4)}
    finally:
        torch.set_num_threads(threads)
    hdr = (f"{'problem':<17}{'est':<9}{'evals':>10}{'SVI steps':>10}{'ours rmse':>11}{'pyro rmse':>11}{'ours s':>9}"
           f"{'pyro s':>9}{'t ratio':>9}{'rmse ratio':>11}")
    print(hdr)
    for name, prob in out["problems"].items():
        for r in prob["rows"]:
            steps = str(r.get("svi_steps", "-"))
            print(f"{name:<17}{r['estimator']:<9}{r['evaluations']:>10}{steps:>10}{r['ours_rmse']:>11.4f}{r['peer_rmse']:>11.4f}"
                  f"{r['ours_time_s']:>9.4f}{r['peer_time_s']:>9.4f}{r['time_ratio']:>9.2f}{r['rmse_ratio']:>11.2f}")
    print(f"pyro's marginal_eig is trained by SVI (Adam, lr 0.05) for {' and '.join(map(str, SVI_STEPS))} "
          "steps on the same number of simulated draws as our closed-form fit (column 'SVI steps').")
    d = out["linear_gaussian_default"]
    print(f"linear-Gaussian default (eig(method='auto') -> {d['method']}): {d['estimate']:.6f}, "
          f"|error| {d['abs_error']:.1e}, {d['time_s'] * 1e3:.2f} ms")
    print(f"location-finding reference EIG = {out['problems']['location_finding']['truth']:.4f} "
          f"± {out['problems']['location_finding']['truth_se']:.4f} (se)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(quick=True)
