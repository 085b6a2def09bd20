"""Ensembles: NaN outputs, crashed workers and odd shapes are failures with their rows (issue 17, #5).

On the old main NaN outputs counted as successes, a simulator that killed its worker lost every
finished run (``BrokenProcessPool``) without naming the row, and a first row with an odd shape
marked every correct row failed.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from vvuq_twin.ensembles import evaluate
from vvuq_twin.exceptions import EnsembleError
from vvuq_twin.testing.faults import crashing_simulator, nan_simulator, odd_first_row_simulator


def _inputs(n=24, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 3))


def _truth(X):
    return np.column_stack([X.sum(1), X.prod(1)])


def test_nan_outputs_are_failures_with_their_rows():
    X = _inputs()
    res = evaluate(nan_simulator, X, retries=1)
    bad = np.flatnonzero(X[:, 0] > 0.7)
    assert bad.size > 0
    assert [f.index for f in res.failures] == bad.tolist()
    for f in res.failures:
        np.testing.assert_array_equal(f.inputs, X[f.index])
        assert "non-finite output: 1 of 2 value(s) NaN or inf, first at flat position 1" in f.error
    ok = np.setdiff1d(np.arange(len(X)), bad)
    np.testing.assert_array_equal(res.outputs[ok], _truth(X[ok]))
    assert res.n_runs == len(X) + bad.size  # the NaN rows were retried once
    with pytest.raises(EnsembleError, match=rf"{bad.size} of {len(X)} runs failed.*row {bad[0]}"):
        evaluate(nan_simulator, X, on_failure="raise")
    # explicitly allowed NaN outputs are kept as results
    kept = evaluate(nan_simulator, X, allow_nonfinite=True)
    assert not kept.failures and np.isnan(kept.outputs[bad, 1]).all()


def test_crashed_worker_loses_no_finished_run():
    X = _inputs(30, seed=1)
    crash = np.flatnonzero(X[:, 0] > 0.8)
    assert 0 < crash.size < 10
    with ProcessPoolExecutor(max_workers=2) as ex:
        res = evaluate(crashing_simulator, X, executor=ex, chunk_size=3)
    assert [f.index for f in res.failures] == crash.tolist()
    for f in res.failures:
        np.testing.assert_array_equal(f.inputs, X[f.index])
        assert "worker process died while running this row" in f.error
        assert "BrokenProcessPool" in f.error and "killed by signal SIGKILL" in f.error
    ok = np.setdiff1d(np.arange(len(X)), crash)
    np.testing.assert_array_equal(res.outputs[ok], _truth(X[ok]))  # every other row is there
    assert np.isnan(res.outputs[crash]).all()
    assert res.worker_crashes >= 1


def test_output_shape_checked_per_row_and_a_first_odd_row_is_the_failure():
    X = _inputs(10)
    X[0, 0] = 0.0
    res = evaluate(odd_first_row_simulator, X)
    assert [f.index for f in res.failures] == [0]
    assert "output shape (3,) differs from the shape most runs return, (2,)" in res.failures[0].error
    np.testing.assert_array_equal(res.outputs[1:], _truth(X[1:]))
    # with the shape declared, rows are checked against it
    res = evaluate(odd_first_row_simulator, X, output_shape=(3,))
    assert [f.index for f in res.failures] == list(range(1, 10))
    np.testing.assert_array_equal(res.outputs[0], [X[0].sum(), 0.0, 0.0])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="retries"):
        evaluate(nan_simulator, _inputs(), retries=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        evaluate(nan_simulator, _inputs(), chunk_size=0)


def test_dask_worker_killed_by_a_row_loses_no_finished_run():
    distributed = pytest.importorskip("dask.distributed")
    import dask

    X = _inputs(16, seed=1)
    crash = np.flatnonzero(X[:, 0] > 0.8)
    assert 0 < crash.size < 6
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        client = distributed.Client(cluster)
        try:
            res = evaluate(crashing_simulator, X, executor=client.get_executor(), chunk_size=4)
        finally:
            client.close()
            cluster.close()
    assert [f.index for f in res.failures] == crash.tolist()
    assert all("KilledWorker" in f.error or "worker" in f.error for f in res.failures)
    ok = np.setdiff1d(np.arange(len(X)), crash)
    np.testing.assert_array_equal(res.outputs[ok], _truth(X[ok]))
