"""Ensembles on a Dask LocalCluster (loopback): identical to serial, failures recorded."""

import numpy as np
import pytest

from vvuq_twin.ensembles import evaluate
from vvuq_twin.sensitivity import QoIEvaluationError, sensitivity
from vvuq_twin.testing.problems_sa import ishigami, ishigami_crashing, ishigami_space

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def executor():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client.get_executor()
    finally:
        client.close()
        cluster.close()


def test_dask_sobol_equals_serial(executor):
    space = ishigami_space()
    serial = sensitivity(ishigami, inputs=space, method="sobol", n=128, rng=11)
    dask = sensitivity(ishigami, inputs=space, method="sobol", n=128, rng=11, executor=executor)
    np.testing.assert_array_equal(dask["estimate"].values, serial["estimate"].values)
    np.testing.assert_array_equal(dask["ci_lower"].values, serial["ci_lower"].values)
    assert dask.attrs["n_runs"] == serial.attrs["n_runs"] == 128 * 5
    assert dask.attrs["seed"] == serial.attrs["seed"]


def test_dask_pce_equals_serial(executor):
    space = ishigami_space()
    serial = sensitivity(ishigami, inputs=space, method="pce", n=64, rng=2, n_boot=20)
    dask = sensitivity(ishigami, inputs=space, method="pce", n=64, rng=2, n_boot=20,
                       executor=executor)
    np.testing.assert_array_equal(dask["estimate"].values, serial["estimate"].values)


def test_dask_failing_run_recorded_with_inputs(executor):
    X = ishigami_space().sample(40, rng=0)
    res = evaluate(ishigami_crashing, X, executor=executor)
    bad = np.where(X[:, 0] > 2.5)[0]
    assert len(bad) > 0
    assert [f.index for f in res.failures] == bad.tolist()
    for f in res.failures:
        np.testing.assert_array_equal(f.inputs, X[f.index])
        assert "solver diverged" in f.error
    assert np.all(np.isnan(res.outputs[bad]))
    np.testing.assert_array_equal(res.outputs[res.ok], ishigami(X[res.ok]))
    # through sensitivity: the failure becomes an error that names the inputs
    with pytest.raises(QoIEvaluationError, match=r"x1=2\.[5-9].*solver diverged"):
        sensitivity(ishigami_crashing, inputs=ishigami_space(), method="sobol", n=32, rng=0,
                    executor=executor)
