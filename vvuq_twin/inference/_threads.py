"""BLAS threads for the small-matrix stages (posterior predictive, predict, GP conditionals).

Posterior-predictive sampling and prediction run thousands of small linear-algebra calls
(Cholesky factors and triangular solves of n x n covariances, one per draw). OpenBLAS' worker
threads cost more than they save there, and on a loaded machine their spinning is ruinous:
measured on 2 cores, an 11 x 11 triangular solve took 1.7 us with 1 thread and 5-22 us with 2,
and a profile of the README job spent 39.8 s of 70 s in 16,000 such solves. These stages
therefore run with one BLAS thread unless the matrices are large enough to gain from more.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["small_matrix_threads", "LARGE_MATRIX_N"]

#: matrices of at least this order keep the process' BLAS thread count
LARGE_MATRIX_N = 1000


@contextlib.contextmanager
def small_matrix_threads(n: int) -> Iterator[None]:
    """One BLAS thread inside the block when the largest matrix order ``n`` is small."""
    if int(n) >= LARGE_MATRIX_N:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
