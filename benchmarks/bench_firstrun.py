"""The README main job as a new user meets it: ``vvuq-twin run --out DIR``, cold and warm.

``python -m benchmarks firstrun`` runs the job in fresh processes, each pair (first run, second
run) with every cache pointed at a new empty directory, as on a fresh venv:

- numba's cache (``NUMBA_CACHE_DIR``), PyTensor's compiledir (``PYTENSOR_FLAGS=compiledir=``),
  the project's compile cache (``VVUQ_TWIN_CACHE_DIR``) and JAX's compilation cache
  (``JAX_COMPILATION_CACHE_DIR``);
- the first run starts with them empty (cold), the second in a new process reuses them (warm).

It records wall time, CPU time of the child (user and system; load inflates it less than wall
time) and the 1-minute load average before each run, and checks that the two runs wrote
identical posterior draws and predictions (same seed). Results go to
``benchmarks/results/firstrun.json``. ``--quick`` runs one pair, the full run three (median
reported). ``VVUQ_TWIN_BACKEND`` selects nutpie's backend for a run (default: the project's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "run_job"]

ROOT = Path(__file__).resolve().parents[1]


def _cache_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    for sub in ("numba", "pytensor", "vvuq", "jax", "xdg"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    env["NUMBA_CACHE_DIR"] = str(base / "numba")
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("compiledir")]
    env["PYTENSOR_FLAGS"] = ",".join([*flags, f"compiledir={base / 'pytensor'}"])
    env["VVUQ_TWIN_CACHE_DIR"] = str(base / "vvuq")
    env["JAX_COMPILATION_CACHE_DIR"] = str(base / "jax")
    env["XDG_CACHE_HOME"] = str(base / "xdg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.setdefault("VVUQ_TWIN_PROGRESS", "0")
    return env


def run_job(out: Path, env: dict[str, str], seed: int = 1) -> dict:
    """One ``python -m vvuq_twin run`` in a new process: wall, CPU user/sys, load, summary."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vvuq_twin", "run", "--out", str(out),
                             "--no-progress", "--seed", str(seed)],
                            env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close(), proc.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"vvuq-twin run failed (exit {rc}):\n{stderr[-3000:]}")
    summary = json.loads((out / "default_summary.json").read_text())
    info = summary["info"]
    return {"wall_s": wall, "cpu_user_s": ru.ru_utime, "cpu_sys_s": ru.ru_stime,
            "load_1min_before": load, "compile_time_s": info.get("compile_time_s"),
            "sample_time_s": info.get("sample_time_s"), "calibrate_total_s": info.get("total_time_s"),
            "compile_cache_hit": info.get("compile_cache_hit"), "backend": info.get("backend"),
            "theta_mean": summary["theta_mean"]}


def same_outputs(a: Path, b: Path) -> dict[str, bool]:
    """Whether two runs wrote the same posterior draws, posterior predictive and predictions."""
    import xarray as xr

    out = {}
    for group in ("posterior", "posterior_predictive"):
        with xr.open_dataset(a / "default_result.nc", group=group) as da, \
                xr.open_dataset(b / "default_result.nc", group=group) as db:
            out[group] = all(np.array_equal(da[v].values, db[v].values) for v in da.data_vars)
    with xr.open_dataset(a / "default_prediction.nc") as pa, xr.open_dataset(b / "default_prediction.nc") as pb:
        out["prediction"] = all(np.array_equal(pa[v].values, pb[v].values) for v in pa.data_vars)
    return out


def main(quick: bool = False, pairs: int | None = None) -> dict:
    n = pairs if pairs is not None else (1 if quick else 3)
    rows = []
    for i in range(n):
        with tempfile.TemporaryDirectory(prefix="vvuq_firstrun_") as tmp:
            base = Path(tmp)
            env = _cache_env(base / "caches")
            cold = run_job(base / "run1", env)
            warm = run_job(base / "run2", env)
            same = same_outputs(base / "run1", base / "run2")
        rows.append({"cold": cold, "warm": warm, "identical_outputs": same})
        print(f"pair {i + 1}/{n}: cold {cold['wall_s']:.1f} s wall ({cold['cpu_user_s']:.1f} s user CPU, "
              f"load {cold['load_1min_before']:.1f}), warm {warm['wall_s']:.1f} s wall "
              f"({warm['cpu_user_s']:.1f} s user, load {warm['load_1min_before']:.1f}), "
              f"compile cold {cold['compile_time_s']:.1f} s / warm {warm['compile_time_s']:.2f} s "
              f"(cache hit {warm['compile_cache_hit']}), identical outputs {same}", flush=True)

    def med(kind, key):
        return float(np.median([r[kind][key] for r in rows]))

    res = {
        "job": "python -m vvuq_twin run --out DIR --no-progress --seed 1 (README main job)",
        "backend": rows[0]["cold"]["backend"],
        "pairs": n,
        "cpu_count": os.cpu_count(),
        "median": {k: {m: med(k, m) for m in ("wall_s", "cpu_user_s", "cpu_sys_s", "load_1min_before",
                                                 "compile_time_s", "sample_time_s")}
                   for k in ("cold", "warm")},
        "targets": {"cold_wall_s": 30.0, "warm_wall_s": 6.0},
        "all_identical": all(all(r["identical_outputs"].values()) for r in rows),
        "rows": rows,
    }
    path = Path(__file__).parent / "results" / "firstrun.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    m = res["median"]
    print(f"median cold {m['cold']['wall_s']:.1f} s wall / {m['cold']['cpu_user_s']:.1f} s user "
          f"(target 30 s), warm {m['warm']['wall_s']:.1f} s / {m['warm']['cpu_user_s']:.1f} s user "
          f"(target 6 s); outputs identical: {res['all_identical']} -> {path}")
    return res


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", type=int)
    a = ap.parse_args()
    main(quick=a.quick, pairs=a.pairs)
