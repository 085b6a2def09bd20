"""Command line: ``vvuq-twin run [CASE]``, ``vvuq-twin validate [PATH]`` (also ``python -m vvuq_twin``).

The face of the package: it only calls public functions and reads results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "default_twin"]


def default_twin():
    """The embedded default: Brynjarsdottir & O'Hagan (2014) with a constrained GP discrepancy.

    Reality zeta(x) = 0.65 x / (1 + x/20), simulator eta(x, theta) = theta x, 11 points on
    [0.4, 4], noise sd 0.01 (synthetic data from the paper's known-truth setup, data seed 1 as in
    the tests); see :mod:`vvuq_twin.testing.problems_core`.
    """
    from .testing.problems_core import bo2014_data, bo2014_twin

    return bo2014_twin(), bo2014_data(seed=1)


def _run_default(args) -> int:
    import numpy as np
    from tqdm import tqdm

    import vvuq_twin as vt

    from .testing.problems_core import bo2014_reality

    from .inference._overlap import expect_netcdf_write

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expect_netcdf_write()  # the writer's imports are made while the sampler runs
    steps = tqdm(total=4, desc="default twin", disable=args.no_progress, file=sys.stderr)
    twin, data = default_twin()
    steps.set_postfix_str("calibrate (NUTS via nutpie)")
    res = vt.calibrate(twin, data, rng=args.seed, draws=1000, tune=1000, chains=4,
                       target_accept=0.95, progressbar=False if args.no_progress else None)
    steps.update()
    steps.set_postfix_str("predict")
    x_new = np.linspace(0.0, 6.0, 13)
    pred = vt.predict(res, x_new, rng=args.seed + 1, progressbar=False if args.no_progress else None)
    steps.update()
    theta = res.posterior["theta"].values.ravel()
    lo, hi = np.percentile(theta, [2.5, 97.5])
    truth = bo2014_reality(x_new)
    zq = pred["zeta"].quantile([0.025, 0.975], dim=("chain", "draw")).values
    covered = float(np.mean((zq[0] <= truth) & (truth <= zq[1])))
    steps.set_postfix_str("write results")
    path = res.to_netcdf(out / "default_result.nc")
    from ._io import atomic_write_text, write_netcdf

    write_netcdf(pred, out / "default_prediction.nc", engine="h5netcdf")
    summary = {
        "twin": twin.name,
        "declaration_hash": res.declaration_hash,
        "data_hash": res.data_hash,
        "seed": args.seed,
        "theta_mean": float(theta.mean()),
        "theta_95": [float(lo), float(hi)],
        "theta_true": 0.65,
        "theta_covered": bool(lo <= 0.65 <= hi),
        "prediction_coverage_of_reality_95": covered,
        "prediction_points_out_of_domain": int(pred["out_of_domain"].sum()),
        "diagnostics": res.diagnostics.to_dict(),
        "info": res.info,
    }
    atomic_write_text(out / "default_summary.json", json.dumps(summary, indent=2, default=float))
    steps.update(2)
    steps.close()
    print(f"Twin {twin.name} (declaration {res.declaration_hash[:12]}, data {res.data_hash[:12]})")
    print(res.summary().to_string())
    print(res.diagnostics)
    print(f"theta 95% interval [{lo:.4f}, {hi:.4f}] (truth 0.65: {'covered' if lo <= 0.65 <= hi else 'NOT covered'})")
    print(f"95% bands of the true process cover reality at {covered:.0%} of 13 points on [0, 6]; "
          f"{int(pred['out_of_domain'].sum())} of them lie outside the calibrated domain [0.4, 4] "
          "(flagged as extrapolation)")
    print(res.ledger.summary(twin, data.hash))
    print(f"Results written to {path}, {out / 'default_prediction.nc'}, {out / 'default_summary.json'}")
    return 0


def _run_case(args) -> int:
    import importlib

    try:
        from case_studies import CASES
    except ImportError as exc:  # pragma: no cover - case_studies ships with the package
        print(f"case studies unavailable: {exc}", file=sys.stderr)
        return 2
    if args.case not in CASES:
        print(f"Unknown case {args.case!r}; known cases: default, {', '.join(sorted(CASES))}",
              file=sys.stderr)
        return 2
    try:
        mod = importlib.import_module(f"case_studies.{args.case}.run")
    except ModuleNotFoundError:
        print(f"Case {args.case!r} has no runner yet (case_studies/{args.case}/run.py).", file=sys.stderr)
        return 2
    out = Path(args.out) / args.case
    summary = mod.run(data_dir=args.data, out=str(out), seed=args.seed, quick=args.quick)
    print(json.dumps(summary, indent=2, default=str)[:4000])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vvuq-twin`` command.

    Called as the command (``argv`` None: the console script, ``python -m vvuq_twin``), the
    process ends right after the job, so the objects it made are frozen out of the garbage
    collector (:func:`gc.freeze`) before returning: Python's shutdown then skips one more walk
    over the PyTensor / numba / ArviZ object graphs (0.5-1 s of CPU on 2 cores, issue #18).
    ``atexit`` handlers and module teardown still run; every output file is closed by then.
    """
    rc = _main(argv)
    if argv is None:
        import gc

        gc.freeze()
    return rc


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="vvuq-twin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="calibrate a twin end to end (default, or a case study)")
    p_run.add_argument("case", nargs="?", default="default",
                       help="'default' (embedded twin) or a case study: tumor, airframe, climate")
    p_run.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p_run.add_argument("--out", default="results", help="output directory (default ./results)")
    p_run.add_argument("--quick", action="store_true", help="case studies: quick mode")
    p_run.add_argument("--data", default=None, help="data directory (or set VVUQ_TWIN_DATA)")
    p_run.add_argument("--no-progress", action="store_true",
                       help="hide progress (bars in a terminal, periodic lines otherwise)")
    p_val = sub.add_parser("validate", help="run a validation suite (exit 1 when a case fails)")
    p_val.add_argument("rest", nargs=argparse.REMAINDER)
    if argv is None:
        argv = sys.argv[1:]
    argv = list(argv)
    if argv[:1] == ["validate"]:
        from .suite import main as suite_main

        return int(suite_main(argv[1:]))
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.case == "default":
        return _run_default(args)
    return _run_case(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
