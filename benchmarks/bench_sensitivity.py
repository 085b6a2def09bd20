"""Model runs and wall time to reach worst absolute error <= 0.01 over all S1 and ST indices.

Problems (closed-form indices in :mod:`vvuq_twin.testing.problems_sa`): Ishigami (a=7, b=0.1)
and the Sobol G-function with a = (0, 1, 4.5, 9, 99, 99, 99, 99). Side by side, in one run:

* SALib Saltelli sampling + ``sobol.analyze`` (scrambled Sobol base samples, N = 2^k);
* sparse PCE (chaospy basis, LARS, LOO-selected degree) on a scrambled Sobol design, indices
  from the coefficients;
* GP surrogate (gpytorch exact GP, ARD squared exponential) on an LHS design, indices by SALib
  Saltelli on the GP mean with 2^14 base samples (emulator runs are free; only simulator runs
  count).

For each seed the whole budget ladder is run; two budgets are recorded with their runs and wall
time (sampling + simulator + fitting + analysis, at that budget): the "first reach" (the first
budget whose worst absolute error over all first and total indices is <= 0.01) and the "stays
below" budget (the smallest from which every larger budget on the ladder is also <= 0.01; an
error can dip below the target by chance and rise again). Reported: median and 90th percentile over seeds, and the ratio of
median runs of Saltelli to each path (goal: best path <= 500 runs on Ishigami, >= 10x fewer).
A path that never reaches the target on its ladder is recorded as ``inf``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vvuq_twin.sensitivity.analysis import _gp_indices
from vvuq_twin.surrogates import GPSurrogate, PCESurrogate
from vvuq_twin.testing.problems_sa import (
    ishigami,
    ishigami_indices,
    ishigami_space,
    sobol_g,
    sobol_g_indices,
    sobol_g_space,
)

TARGET = 0.01
RESULTS = Path(__file__).resolve().parent / "results" / "sensitivity.json"

PROBLEMS = {
    "ishigami": (ishigami, ishigami_indices, ishigami_space),
    "g_function": (sobol_g, sobol_g_indices, sobol_g_space),
}
LADDERS = {
    "saltelli": {"ishigami": [2**k for k in range(8, 17)], "g_function": [2**k for k in range(8, 17)]},
    "pce": {"ishigami": [40, 60, 80, 100, 150, 200, 300, 400, 500],
            "g_function": [200, 300, 400, 500, 700, 1000]},
    "gp": {"ishigami": [60, 80, 100, 150, 200, 250, 300, 400, 500],
           "g_function": [100, 200, 300, 400, 600, 800]},
}


def _err(S1, ST, ref) -> float:
    return float(max(np.abs(S1 - ref["S1"]).max(), np.abs(ST - ref["ST"]).max()))


def _saltelli(fn, space, ref, N, seed):
    from SALib.analyze import sobol as sa
    from SALib.sample import sobol as ss

    prob = space._unit_problem()
    U = ss.sample(prob, N, calc_second_order=False, seed=seed)
    y = fn(space.transform(U))
    r = sa.analyze(prob, y, calc_second_order=False, num_resamples=2, seed=seed)
    return _err(r["S1"], r["ST"], ref), U.shape[0]


def _pce(fn, space, ref, n, seed):
    X = space.sample(n, rng=seed, method="sobol")
    s = PCESurrogate(space, max_order=12).fit(X, fn(X)).sobol_indices()
    return _err(s["S1"], s["ST"], ref), n


def _gp(fn, space, ref, n, seed):
    X = space.sample(n, rng=seed, method="lhs")
    sur = GPSurrogate(rng=seed, sparse=False).fit(X, fn(X))
    est, _ = _gp_indices(sur, space, 2**14, seed, 2, 0.95)
    return _err(est[:, 0], est[:, 1], ref), n


RUNNERS = {"saltelli": _saltelli, "pce": _pce, "gp": _gp}


def _climb(runner, fn, space, ref, ladder, seed):
    """Climb the whole ladder: the "first reach" and the "stays below" budget.

    ``first reach``: the first budget whose worst error is <= TARGET (runs, wall time, error);
    ``stays below``: the smallest budget from which every larger budget on the ladder is also
    <= TARGET (an error can dip below the target by chance and rise again). ``inf`` when none.
    """
    errs, runs_l, walls = [], [], []
    for b in ladder:
        t0 = time.perf_counter()
        err, runs = runner(fn, space, ref, b, seed)
        walls.append(time.perf_counter() - t0)
        errs.append(err)
        runs_l.append(runs)
    ok = np.asarray(errs) <= TARGET
    first = int(np.argmax(ok)) if ok.any() else None
    stay = None
    for i in range(len(ok) - 1, -1, -1):
        if not ok[i]:
            break
        stay = i
    res = {"errors": [float(e) for e in errs], "runs": [int(r) for r in runs_l]}
    res["first_runs"] = float(runs_l[first]) if first is not None else float("inf")
    res["first_wall"] = float(walls[first]) if first is not None else float("nan")
    res["stay_runs"] = float(runs_l[stay]) if stay is not None else float("inf")
    res["stay_wall"] = float(walls[stay]) if stay is not None else float("nan")
    return res


def main(quick: bool = False) -> dict:
    """Run the benchmark; ``quick`` uses 2 seeds, Ishigami only for the surrogates' full ladders."""
    seeds = list(range(2 if quick else 10))
    out: dict = {"target_abs_error": TARGET, "seeds": len(seeds), "quick": quick, "problems": {}}
    for pname, (fn, ref_fn, space_fn) in PROBLEMS.items():
        ref, space = ref_fn(), space_fn()
        rows = {}
        for method, runner in RUNNERS.items():
            ladder = LADDERS[method][pname]
            if quick and pname == "g_function" and method != "saltelli":
                ladder = ladder[:3]
            climbs = [_climb(runner, fn, space, ref, ladder, 1000 + s) for s in seeds]
            runs_a = np.array([c["first_runs"] for c in climbs], float)
            walls_a = np.array([c["first_wall"] for c in climbs], float)
            stay_a = np.array([c["stay_runs"] for c in climbs], float)
            stay_w = np.array([c["stay_wall"] for c in climbs], float)
            runs = runs_a.tolist()
            rows[method] = {
                "runs_median": float(np.median(runs_a)),
                "runs_p90": float(np.quantile(runs_a, 0.9)) if np.all(np.isfinite(runs_a)) else float("inf"),
                "wall_median_s": float(np.nanmedian(walls_a)) if np.any(np.isfinite(walls_a)) else float("nan"),
                "wall_p90_s": float(np.nanquantile(walls_a, 0.9)) if np.any(np.isfinite(walls_a)) else float("nan"),
                "reached": int(np.isfinite(runs_a).sum()),
                "runs_per_seed": [float(r) for r in runs],
                "stays_below_runs_median": float(np.median(stay_a)),
                "stays_below_runs_p90": float(np.quantile(stay_a, 0.9)) if np.all(np.isfinite(stay_a)) else float("inf"),
                "stays_below_wall_median_s": float(np.nanmedian(stay_w)) if np.any(np.isfinite(stay_w)) else float("nan"),
                "stays_below_reached": int(np.isfinite(stay_a).sum()),
                "stays_below_runs_per_seed": [float(r) for r in stay_a],
                "ladder": [int(b) for b in ladder],
                "errors_per_seed": [c["errors"] for c in climbs],
            }
        base = rows["saltelli"]["runs_median"]
        base_stay = rows["saltelli"]["stays_below_runs_median"]
        for m in rows:
            rows[m]["ratio_vs_saltelli"] = float(base / rows[m]["runs_median"])
            rows[m]["stays_below_ratio_vs_saltelli"] = float(base_stay / rows[m]["stays_below_runs_median"])
        out["problems"][pname] = rows
    print(f"\nRuns to worst |error| <= {TARGET} over all S1, ST ({len(seeds)} seeds)")
    print("first reach: first budget on the ladder at or below the target; stays below: the budget "
          "from which every larger one is too")
    print(f"{'problem':<11} {'method':<9} {'1st med':>8} {'1st p90':>8} {'1st wall':>9} "
          f"{'reached':>8} {'x fewer':>8} {'stay med':>9} {'stay p90':>9} {'stay wall':>10} {'stays':>6} {'x fewer':>8}")
    for pname, rows in out["problems"].items():
        for m, r in rows.items():
            print(f"{pname:<11} {m:<9} {r['runs_median']:>8.0f} {r['runs_p90']:>8.0f} "
                  f"{r['wall_median_s']:>8.2f}s "
                  f"{r['reached']:>5}/{len(seeds)} {r['ratio_vs_saltelli']:>8.1f} "
                  f"{r['stays_below_runs_median']:>9.0f} {r['stays_below_runs_p90']:>9.0f} "
                  f"{r['stays_below_wall_median_s']:>9.2f}s {r['stays_below_reached']:>3}/{len(seeds)} "
                  f"{r['stays_below_ratio_vs_saltelli']:>8.1f}")
    ish = out["problems"]["ishigami"]
    best = min(("pce", "gp"), key=lambda m: ish[m]["runs_median"])
    out["goal"] = {
        "best_path_ishigami": best,
        "best_runs_median": ish[best]["runs_median"],
        "runs_le_500": bool(ish[best]["runs_median"] <= 500),
        "ratio_ge_10": bool(ish[best]["ratio_vs_saltelli"] >= 10),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
