"""Small-matrix stages (posterior predictive, predict) run with one BLAS thread.

Known answer: inside ``small_matrix_threads(n)`` threadpoolctl reports one BLAS thread for
n below ``LARGE_MATRIX_N`` and leaves the count as it was for larger n; the limit is lifted on
exit. Fails when the limit is not applied or not restored.
"""

from __future__ import annotations

from threadpoolctl import threadpool_info, threadpool_limits

from vvuq_twin.inference._threads import LARGE_MATRIX_N, small_matrix_threads


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_one_blas_thread_for_small_matrices_and_restored_after():
    import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before, "no BLAS library found by threadpoolctl"
        with small_matrix_threads(11):
            assert _blas_threads() == [1] * len(before)
        assert _blas_threads() == before
        with small_matrix_threads(LARGE_MATRIX_N):
            assert _blas_threads() == before
