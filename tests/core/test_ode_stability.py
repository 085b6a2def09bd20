"""ODEs that cannot silently blow up (issue 20, failure 1).

An ODESimulator with a step too long for a stiff parameter draw must either integrate it
accurately or report it: a named error in calibration, a count and a flag in prediction - and
the validation scores refuse the flagged predictive instead of calling it perfect.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytensor.tensor as pt
import pytest
import xarray as xr

import vvuq_twin as vt
from vvuq_twin.exceptions import (SimulatorError, SimulatorInstabilityError, SimulatorWarning,
                                  TwinSpecificationError)
from vvuq_twin.inference.results import TwinResult
from vvuq_twin.twin.priors import LogNormal, Normal
from vvuq_twin.validation import MetricInputError, crps, interval_coverage

DOSE, V = 4.0, 0.5


def _per_row(v):
    return v[:, None] if getattr(v, "ndim", 0) else v


def pk_rhs(t, y, p):
    ka, ke = _per_row(p["ka"]), _per_row(p["ke"])
    return pt.concatenate([-ka * y[:, :1], ka * y[:, :1] - ke * y[:, 1:]], axis=1)


def pk_closed_form(t, ka, ke):
    return DOSE * ka / (V * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t))


def pk_twin(n_steps: int = 60) -> vt.Twin:
    # written against the interface main already had (n_steps, rhs(t, y, p), y0(p))
    sim = vt.ODESimulator(rhs=pk_rhs, y0=lambda p: pt.as_tensor_variable(np.array([DOSE, 0.0])),
                          output=lambda y, p: y[:, 1] / V, n_steps=n_steps)
    return vt.Twin(
        "pk", sim,
        [vt.Parameter("ka", Normal(0.0, 0.5), per_unit=True, link="log", pop_scale=0.01),
         vt.Parameter("ke", LogNormal(np.log(0.1), 0.2))],
        observation=vt.twin.observation.Gaussian(sigma=0.3),
        hierarchy=vt.Hierarchy(dim="subject"),
    )


@pytest.fixture(scope="module")
def fake_result():
    """A 'calibrated' PK twin whose posterior puts 10 of 40 draws at ka = 30/h (stiff)."""
    twin = pk_twin()
    t = np.array([0.25, 1.0, 3.0, 8.0, 24.0])
    x = np.r_[t, t][:, None]
    y = np.r_[pk_closed_form(t, 1.0, 0.1), pk_closed_form(t, 1.1, 0.1)]
    data = vt.TwinData(x=x, y=y, unit=np.repeat(["A", "B"], t.size), input_names=("time",))
    n_draw = 40
    mu = np.where(np.arange(n_draw) < 30, 0.0, np.log(30.0))[None, :]
    post = xr.Dataset(
        {"ka_mu": (("chain", "draw"), mu),
         "ka_z": (("chain", "draw", "subject"), np.zeros((1, n_draw, 2))),
         "ka": (("chain", "draw", "subject"), np.exp(mu)[..., None] * np.ones((1, 1, 2))),
         "ke": (("chain", "draw"), np.full((1, n_draw), 0.1))},
        coords={"chain": [0], "draw": np.arange(n_draw), "subject": ["A", "B"]},
    )
    res = TwinResult(idata=az.InferenceData(posterior=post), twin=twin, data=data,
                     declaration_hash=twin.hash, data_hash=data.hash)
    return res, t


def test_stiff_new_unit_draws_are_counted_flagged_and_unscorable(fake_result):
    res, t = fake_result
    x_new = np.array([0.5, 2.0, 6.0, 12.0, 20.0, 24.0])
    with pytest.warns(SimulatorWarning, match="10 of 40 draws have unreliable simulator output"):
        pred = vt.predict(res, x_new, unit="new", rng=3, progressbar=False)
    assert pred.attrs["n_unreliable_draws"] == 10
    flag = pred["simulator_unreliable"].any("obs").values.ravel()
    np.testing.assert_array_equal(flag, np.arange(40) >= 30)  # exactly the stiff draws
    # the accurate draws are accurate: the closed form at each draw's own ka
    ka_new = pred["ka_new"].values.ravel()
    eta = pred["eta"].values.reshape(40, -1)
    exact = pk_closed_form(x_new[None, :], ka_new[:, None], 0.1)
    assert np.max(np.abs(eta[:30] - exact[:30])) < 1e-4
    # never a silent +-1e133 that scores as perfect: the scores refuse this predictive
    y_obs = xr.DataArray(pk_closed_form(x_new, 1.0, 0.1), dims="obs")
    with pytest.raises(MetricInputError, match="simulator_unreliable"):
        crps(pred["y"], y_obs)
    with pytest.raises(MetricInputError, match="simulator_unreliable"):
        interval_coverage(pred["y"], y_obs)
    # a step bounded finely enough integrates the same stiff draws accurately (no flag)
    fine = pk_twin(n_steps=2000)
    res_fine = TwinResult(idata=res.idata, twin=fine, data=res.data, declaration_hash=fine.hash,
                          data_hash=res.data_hash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SimulatorWarning)
        pf = vt.predict(res_fine, x_new, unit="new", rng=3, progressbar=False)
    assert pf.attrs["n_unreliable_draws"] == 0
    ka_f = pf["ka_new"].values.ravel()
    exact_f = pk_closed_form(x_new[None, :], ka_f[:, None], 0.1)
    assert np.max(np.abs(pf["eta"].values.reshape(40, -1) - exact_f)) < 1e-5
    assert np.isfinite(float(crps(pf["y"], y_obs).mean()))


def test_global_grid_bounds_the_step_for_late_observations():
    sim = vt.ODESimulator(rhs=lambda t, y, p: -p["k"] * y, y0=lambda p: np.array([1.0]), max_step=0.25)
    grid, idx = sim.time_grid(np.array([0.3, 24.0, 1.0]))
    assert np.max(np.diff(grid)) <= 0.25 + 1e-12
    np.testing.assert_allclose(grid[idx], [0.3, 24.0, 1.0])
    with pytest.raises(SimulatorError, match="precede t0"):
        sim.time_grid(np.array([-1.0, 2.0]))


def test_covariates_reach_rhs_and_y0():
    # dy/dt = -k y + x1 (a per-row input), y(0) = x2: y(t) = x1/k + (x2 - x1/k) e^{-kt}
    sim = vt.ODESimulator(rhs=lambda t, y, p, x: -p["k"] * y + x[:, 1:2],
                          y0=lambda p, x: x[:, 2:3], max_step=0.05)
    X = np.array([[0.5, 1.0, 0.0], [2.0, 1.0, 0.0], [1.0, 3.0, 2.0], [3.0, 0.0, 5.0]])
    out = sim(pt.as_tensor_variable(X), {"k": pt.as_tensor_variable(0.8)}).eval()
    k = 0.8
    exact = X[:, 1] / k + (X[:, 2] - X[:, 1] / k) * np.exp(-k * X[:, 0])
    np.testing.assert_allclose(out, exact, atol=1e-7)


def test_stiff_posterior_is_a_named_error_in_calibration():
    # data decay at k = 6/h; with the step bound h = 0.5 the integrator cannot follow k*h = 3
    t = np.linspace(0.5, 3.0, 6)
    rng = np.random.default_rng(0)
    y = np.exp(-6.0 * t) + rng.normal(0, 0.002, t.size)
    sim = vt.ODESimulator(rhs=lambda t_, y_, p: -p["k"] * y_, y0=lambda p: np.array([1.0]), n_steps=6)
    twin = vt.Twin("decay", sim, [vt.Parameter("k", LogNormal(0.0, 0.7))],
                   observation=vt.twin.observation.Gaussian(sigma=0.002))
    with pytest.raises(SimulatorInstabilityError, match="beyond the integrator's error tolerance") as ei:
        # SMC: no gradient graph to compile (the check is the same for every sampler)
        vt.calibrate(twin, vt.TwinData(x=t[:, None], y=y), method="smc", draws=300, chains=2,
                     rng=1, warn=False, progressbar=False)
    err = ei.value
    assert err.report["draws"] > 0 and err.report["max_accuracy"] > 1
    assert err.result is not None and "eta_accuracy" in err.result.idata.posterior_predictive
    assert "eta_accuracy" not in err.result.idata.posterior


# ---------------------------------------------------------------- graded grid (fast transients)
def _depot_input_sim(**kw):
    # central compartment only; the depot dose*exp(-ka t) enters as the absorption input
    return vt.ODESimulator(
        rhs=lambda t, y, p: p["ka"] * DOSE * pt.exp(-p["ka"] * t) - 0.1 * y,
        y0=lambda p: np.array([0.0]), output=lambda y, p: y[:, 0] / V, rtol=1e-3, atol=1e-4, **kw)


_COMPILED: dict = {}


def _eval(sim, t, ka):
    # one compiled function per grid setting, ka symbolic (compiles are slow on 2 shared cores)
    import pytensor

    key = (sim.max_step, sim.first_step, tuple(np.asarray(t)))
    if key not in _COMPILED:
        k = pt.dscalar("ka")
        X = pt.as_tensor_variable(np.asarray(t, dtype=float)[:, None])
        _COMPILED[key] = pytensor.function([k], [sim(X, {"ka": k}), sim.accuracy(X, {"ka": k})])
    eta, acc = _COMPILED[key](float(ka))
    return np.asarray(eta), np.asarray(acc)


T_OBS = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0])


def test_graded_grid_starts_at_first_step_and_grows_geometrically_to_max_step():
    sim = _depot_input_sim(max_step=0.25, first_step=1e-3, step_growth=1.2)
    grid, idx = sim.time_grid(T_OBS)
    h = np.diff(grid)
    np.testing.assert_allclose(grid[idx], T_OBS)
    assert h[0] == pytest.approx(1e-3) and h.max() <= 0.25 + 1e-12
    # the bound h(t) = min(max_step, first_step + 0.2 t) holds at every step
    assert np.all(h <= np.minimum(0.25, 1e-3 + 0.2 * grid[:-1]) + 1e-12)
    # ~log(250)/log(1.2) = 30 graded steps, then 0.25-h steps: far fewer than a uniform 1e-3 grid
    assert h.size < 150
    with pytest.raises(TwinSpecificationError, match="step_growth must be in"):
        _depot_input_sim(max_step=0.25, first_step=1e-3, step_growth=1.5)
    with pytest.raises(TwinSpecificationError, match="first_step must be a positive number"):
        _depot_input_sim(max_step=0.25, first_step=0.0)


@pytest.mark.parametrize("ka", [1.5, 36.0, 300.0])
def test_graded_grid_resolves_fast_absorption_that_a_uniform_grid_cannot(ka):
    exact = pk_closed_form(T_OBS, ka, 0.1)
    eta, acc = _eval(_depot_input_sim(max_step=0.25, first_step=1e-3), T_OBS, ka)
    assert acc.max() <= 1.0 and np.max(np.abs(eta - exact)) < 1e-4
    eta_u, acc_u = _eval(_depot_input_sim(max_step=0.25), T_OBS, ka)
    if ka >= 36:  # the uniform 0.25-h grid is wrong by > 0.5 mg/L at such rates
        assert np.max(np.abs(eta_u - exact)) > 0.5
    if ka >= 300:  # ... and its error check says so
        assert acc_u.max() > 1.0


def test_graded_grid_does_not_silence_the_stability_limit_of_a_stiff_state():
    # the depot kept as a state: ka * max_step = 25 leaves DP5's stability region for every
    # later step, so the check must still fire although the first steps are tiny
    sim = vt.ODESimulator(rhs=pk_rhs, y0=lambda p: np.array([DOSE, 0.0]),
                          output=lambda y, p: y[:, 1] / V, max_step=0.25, first_step=1e-3)
    X = pt.as_tensor_variable(T_OBS[:, None])
    P = {"ka": pt.as_tensor_variable(100.0), "ke": pt.as_tensor_variable(0.1)}
    assert not np.all(sim.accuracy(X, P).eval() <= 1.0)


def test_one_state_error_estimate_of_either_sign_is_finite():
    # regression: PyTensor rewrote sqrt(mean(sqr(r))) over a length-1 state axis into NaN for
    # r < 0, so a slow, accurately integrated one-state ODE read as 'beyond tolerance' (inf)
    for ka in (0.3, 1.1):
        eta, acc = _eval(_depot_input_sim(max_step=0.25), T_OBS, ka)
        assert np.all(np.isfinite(acc)) and acc.max() < 1e-3
        np.testing.assert_allclose(eta, pk_closed_form(T_OBS, ka, 0.1), atol=1e-5)


def test_graded_grid_changes_the_spec_only_when_set():
    plain = _depot_input_sim(max_step=0.25).spec()
    assert "first_step" not in plain
    assert _depot_input_sim(max_step=0.25, first_step=1e-3).spec()["first_step"] == 1e-3


def test_verification_refines_a_graded_grid_as_a_whole_at_order_five():
    # verification_solver scales first_step with max_step, so every step shrinks together and
    # the observed order is the scheme's 5 (with first_step held fixed the early steps would
    # not refine)
    sim = vt.ODESimulator(rhs=lambda t, y, p: -p["k"] * y, y0=lambda p: pt.ones((1,)),
                          output=lambda y, p: y[:, 0], max_step=0.4, first_step=0.02)
    twin = vt.Twin("decay", sim, [vt.Parameter("k", LogNormal(np.log(3.0), 0.1))],
                   observation=vt.twin.observation.Gaussian(sigma=0.01))
    t = np.linspace(0.25, 3.0, 12)
    data = vt.TwinData(x=t[:, None], y=np.exp(-3.0 * t), input_names=("t",))
    solve, formal = sim.verification_solver(twin, data)
    k_ref = twin.parameters[0].reference_value()
    hs = [0.2, 0.1, 0.05]
    errs = [np.max(np.abs(solve(h) - np.exp(-k_ref * t))) for h in hs]
    eff = [solve.effective_h(h) for h in hs]
    orders = np.diff(np.log(errs)) / np.diff(np.log(eff))
    assert formal == 5.0 and np.all(np.abs(orders - 5.0) < 0.5), orders
