"""Benchmarks of vvuq_twin, run by ``python -m benchmarks [--quick] [NAME ...]``.

BLAS/LAPACK run single-threaded in every benchmark (``OPENBLAS_NUM_THREADS=1`` etc., set here
before NumPy loads, so that PyMC's worker processes inherit it too): the samplers compared run
their chains in parallel, and multi-threaded BLAS in each chain oversubscribes the cores for
both sides alike. Override by setting the variables before running.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
