"""Run the benchmarks side by side: ``python -m benchmarks [--quick] [NAME ...]``.

Each ``bench_<name>.py`` exposes ``main(quick: bool) -> dict`` and writes
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)])
                   if m.name.startswith("bench_"))
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(names)})")
    ap.add_argument("--quick", action="store_true", help="short budgets (< 2 min each)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {names}")
    timings = {}
    for name in args.names or names:
        print(f"=== benchmark {name} ({'quick' if args.quick else 'full'}) ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").main(quick=args.quick)
        timings[name] = time.perf_counter() - t0
    print(json.dumps({"wall_time_s": timings}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
