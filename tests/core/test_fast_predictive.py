"""The numpy posterior predictive against PyMC's forward sampler on the same model.

Known answer: at a fixed posterior point (2000 identical draws) of the README twin (constrained
GP discrepancy integrated out, Gaussian noise), the draws of ``delta``/``y`` at the data and of
``eta``/``delta``/``zeta``/``y`` at new inputs from :mod:`vvuq_twin.inference._fast_predictive`
have the means (within 5 Monte Carlo standard errors) and sds (within 12 %) of
``pm.sample_posterior_predictive`` on the model the declaration builds, an independent
computation (PyMC's MvNormal of the declaration's pytensor conditional). The check has power: the
conditional sd inside the data is a small fraction of the GP's prior sd there (closed form of
the constrained kernel; a predictive that ignored the data would fail it). Failure cases: twins outside the numpy path (missing
observations, a new unit, the switch off) get ``None``, and the caller uses PyMC's path.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr

import vvuq_twin as vt
from vvuq_twin.inference._fast_predictive import posterior_predictive_numpy, predict_numpy
from vvuq_twin.testing.problems_core import bo2014_data, bo2014_twin
from vvuq_twin.twin.declaration import PredictSpec

N = 2000
POINT = {"theta": 0.63, "delta_ls": 1.7, "delta_eta": 0.4}
X_NEW = np.array([[0.0], [1.0], [2.5], [4.0], [6.0]])


def _posterior(twin, data):
    x = np.asarray(data.x, float)[:, 0]
    v = {k: np.full((1, N), val) for k, val in POINT.items()}
    ds = xr.Dataset({k: (("chain", "draw"), a) for k, a in v.items()},
                    coords={"chain": [0], "draw": np.arange(N)})
    eta = np.broadcast_to(POINT["theta"] * x, (1, N, x.size))
    return ds.assign(eta=(("chain", "draw", "obs"), eta.copy())).assign_coords(obs=list(data.obs))


@pytest.fixture(scope="module")
def problem():
    twin, data = bo2014_twin(), bo2014_data(seed=1)
    post = _posterior(twin, data)
    assert set(twin.free_variable_names(data)) == set(POINT)
    model = twin.build_model(data, predict_at=PredictSpec(X=X_NEW, unit_idx=None, new_unit=False),
                             check=False)
    with model:
        ref = pm.sample_posterior_predictive(
            post.drop_vars("eta"), var_names=["delta", "y", "eta_new", "delta_new", "zeta_new", "y_new"],
            random_seed=11, progressbar=False, return_inferencedata=False)
    return twin, data, post, {k: np.asarray(a).reshape(N, -1) for k, a in ref.items()}


def _agree(a, b, name):
    a, b = np.asarray(a).reshape(N, -1), np.asarray(b).reshape(N, -1)
    sd = np.sqrt(0.5 * (a.var(0) + b.var(0)))
    se = np.sqrt(2.0 / N) * sd + 1e-12
    assert np.all(np.abs(a.mean(0) - b.mean(0)) <= 5 * se + 1e-9), f"{name}: means differ"
    ok = sd > 1e-9
    assert np.allclose(a.std(0)[ok], b.std(0)[ok], rtol=0.12), f"{name}: sds differ"


def test_posterior_predictive_matches_pymc(problem):
    twin, data, post, ref = problem
    got = posterior_predictive_numpy(twin, data, post, ["delta", "zeta", "y"], seed=5)
    assert got is not None and got["y"].dims == ("chain", "draw", "obs")
    _agree(got["delta"].values, ref["delta"], "delta")
    _agree(got["y"].values, ref["y"], "y")
    np.testing.assert_allclose(got["zeta"].values, post["eta"].values + got["delta"].values)
    again = posterior_predictive_numpy(twin, data, post, ["delta", "zeta", "y"], seed=5)
    assert np.array_equal(again["y"].values, got["y"].values)  # same seed, same numbers


def test_predict_matches_pymc_and_has_power(problem):
    twin, data, post, ref = problem
    got = predict_numpy(twin, data, post.drop_vars("eta"), X_NEW, None, False, True, seed=7)
    assert got is not None
    np.testing.assert_allclose(got["eta"].values[0, 0], POINT["theta"] * X_NEW[:, 0])
    for k in ("eta", "delta", "zeta", "y"):
        _agree(got[k].values, ref[f"{k}_new"], k)
    # constrained GP: delta(0) = 0; inside the data (x = 2.5) the conditional sd is a small
    # fraction of the prior sd there, eta^2 (1 - a^2 - a^2 x^2 / l^2) with a = exp(-x^2 / 2 l^2)
    assert np.abs(got["delta"].values[..., 0]).max() < 1e-2
    x, ls, eta = X_NEW[:, 0], POINT["delta_ls"], POINT["delta_eta"]
    a = np.exp(-0.5 * x**2 / ls**2)
    prior_sd = eta * np.sqrt(1 - a**2 - a**2 * x**2 / ls**2)
    sd = got["delta"].values.reshape(N, -1).std(0)
    assert 0 < sd[2] < 0.1 * prior_sd[2]
    assert sd[-1] < prior_sd[-1]


def test_outside_the_numpy_path_returns_none(problem, monkeypatch):
    twin, data, post, _ = problem
    y = np.asarray(data.y, float).copy()
    y[3] = np.nan
    gappy = vt.TwinData(x=data.x, y=y, input_names=data.input_names, missing="mask")
    assert posterior_predictive_numpy(twin, gappy, post, ["delta", "y"], seed=1) is None
    assert predict_numpy(twin, data, post, X_NEW, None, True, True, seed=1) is None
    monkeypatch.setenv("VVUQ_TWIN_FAST_PREDICTIVE", "0")
    assert posterior_predictive_numpy(twin, data, post, ["delta", "y"], seed=1) is None
    assert predict_numpy(twin, data, post, X_NEW, None, False, True, seed=1) is None


def test_batched_simulator_is_evaluated_by_binary_ufuncs_and_matches_numpy(monkeypatch):
    """A polynomial simulator (n-ary sums and products) over many draws: the batched graph has
    no n-ary Add/Mul (the Python linker evaluates those element by element) and its values
    are the closed form. Fails with PyTensor's plain FAST_COMPILE (its canonicalizers merge
    the binary nodes)."""
    import pytensor
    from pytensor.tensor.elemwise import Elemwise

    from vvuq_twin.inference import _fast_predictive as fp

    twin = vt.Twin("poly", vt.PytensorSimulator(
        lambda X, p: p["a"] + p["b"] * X[:, 0] + p["c"] * X[:, 0] ** 2 + p["a"] * p["b"] * p["c"],
        name="poly"), [vt.Parameter(k, vt.NormalPrior(0, 1)) for k in "abc"],
        observation=vt.GaussianObs(sigma=0.1))
    X = np.linspace(0.0, 2.0, 7)[:, None]
    rng = np.random.default_rng(3)
    vals = {k: rng.normal(size=500) for k in "abc"}
    nodes = []
    real_function = pytensor.function

    def spy(*a, **k):
        f = real_function(*a, **k)
        nodes.extend(f.maker.fgraph.apply_nodes)
        return f

    monkeypatch.setattr(pytensor, "function", spy)
    eta = fp.simulate_batched(twin, X, vals, None)
    a, b, c = (vals[k][:, None] for k in "abc")
    x = X[:, 0][None, :]
    np.testing.assert_allclose(eta, a + b * x + c * x**2 + a * b * c, rtol=1e-13, atol=1e-13)
    elemwise = [n for n in nodes if isinstance(n.op, Elemwise)]
    assert elemwise, "the batched graph was not compiled through pytensor.function"
    assert max(len(n.inputs) for n in elemwise) <= 2, [str(n) for n in elemwise if len(n.inputs) > 2]


def test_python_mode_splits_nary_sums_and_products_into_numpy_calls():
    """The Python linker evaluates an n-ary Add/Mul element by element (np.frompyfunc); the mode
    used for value-only and predictive functions must hold only binary ones, with the same values."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import get_mode
    from pytensor.tensor.elemwise import Elemwise

    from vvuq_twin.inference._fast_predictive import _python_mode

    a, b, c, d = (pt.dmatrix(n) for n in "abcd")
    out = pt.mul(a, b, c, d) + pt.add(a, b, c) * 2.0
    rng = np.random.default_rng(0)
    vals = [rng.normal(size=(3, 4)) for _ in range(4)]

    def nary(fn):
        return [n for n in fn.maker.fgraph.apply_nodes if isinstance(n.op, Elemwise)
                and type(n.op.scalar_op).__name__ in ("Add", "Mul") and len(n.inputs) > 2]

    fn = pytensor.function([a, b, c, d], out, mode=_python_mode())
    old = pytensor.function([a, b, c, d], out, mode=get_mode("FAST_COMPILE"))
    assert nary(old), "the failure case: FAST_COMPILE keeps the n-ary nodes"
    assert not nary(fn)
    x = vals
    expected = x[0] * x[1] * x[2] * x[3] + (x[0] + x[1] + x[2]) * 2.0
    np.testing.assert_array_equal(fn(*vals), old(*vals))
    np.testing.assert_allclose(fn(*vals), expected, rtol=1e-15, atol=0)
