"""Declaration, bad input, hashes, simulators, observation models, save/load."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
import scipy.stats as st

import vvuq_twin as vt
from vvuq_twin.exceptions import (
    CalibrationError,
    DataValidationError,
    DiagnosticsWarning,
    SamplerChoiceWarning,
    SimulatorError,
    TwinSpecificationError,
)


def line_twin(**kw):
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + p["b"] * X[:, 0], name="line")
    return vt.Twin("line", sim, [vt.Parameter("a", vt.Normal(0, 2)), vt.Parameter("b", vt.Normal(0, 2))],
                   observation=vt.Gaussian(sigma=0.5), **kw)


def line_data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-2, 2, n)
    return vt.TwinData(x=x, y=1 + 2 * x + rng.normal(0, 0.5, n))


# ----------------------------------------------------------------------------- bad input
def test_nan_inf_in_data_named():
    with pytest.raises(DataValidationError, match=r"`y` has NaN at rows \[3\].*missing='mask'"):
        vt.TwinData(x=np.arange(5.0), y=[1, 2, 3, np.nan, 5])
    with pytest.raises(DataValidationError, match="`x` has 1 non-finite.*row 2"):
        vt.TwinData(x=[0, 1, np.inf], y=[1, 2, 3])
    with pytest.raises(DataValidationError, match="infinite values at rows \\[0\\]"):
        vt.TwinData(x=[0, 1], y=[np.inf, 2])


def test_shape_mismatch_named():
    with pytest.raises(DataValidationError, match="`x` has 4 rows but `y` has 3 values"):
        vt.TwinData(x=np.arange(4.0), y=[1, 2, 3])
    with pytest.raises(DataValidationError, match="`unit` must give one label per observation"):
        vt.TwinData(x=np.arange(3.0), y=[1, 2, 3], unit=["a", "b"])


def test_unknown_unit_is_an_error_before_compiling():
    twin = vt.Twin("h", vt.PytensorSimulator(lambda X, p: p["k"] * X[:, 0]),
                   [vt.Parameter("k", vt.Normal(0, 1), per_unit=True)],
                   observation=vt.Gaussian(sigma=1.0), hierarchy=vt.Hierarchy(units=["A", "B"]))
    data = vt.TwinData(x=[1.0, 2.0, 3.0], y=[1.0, 2.0, 3.0], unit=["A", "B", "C"])
    with pytest.raises(DataValidationError, match=r"unit\(s\) \['C'\] that the hierarchy does not know"):
        vt.calibrate(twin, data)
    with pytest.raises(DataValidationError, match="no unit labels"):
        twin.check(vt.TwinData(x=[1.0], y=[1.0]))


def test_non_positive_prior_scale():
    with pytest.raises(TwinSpecificationError, match="Normal: `sigma` must be positive, got sigma=0"):
        vt.Normal(0.0, 0.0)
    with pytest.raises(TwinSpecificationError, match="HalfNormal: `sigma` must be positive"):
        vt.HalfNormal(-1.0)
    with pytest.raises(TwinSpecificationError, match="positive quantity needs a prior on"):
        vt.Gaussian(sigma=vt.Normal(0, 1))
    with pytest.raises(TwinSpecificationError, match="per unit.*must be Normal or StudentT"):
        vt.Parameter("k", vt.HalfNormal(1.0), per_unit=True)
    with pytest.raises(TwinSpecificationError, match="no hierarchy"):
        vt.Twin("x", vt.PytensorSimulator(lambda X, p: p["k"] * X[:, 0]),
                [vt.Parameter("k", vt.Normal(0, 1), per_unit=True)])


def test_simulator_wrong_shape_or_nan_at_prior_mean():
    wrong = vt.Twin("w", vt.PytensorSimulator(lambda X, p: p["a"] * X), [vt.Parameter("a", vt.Normal(1, 1))])
    d = vt.TwinData(x=np.column_stack([np.arange(4.0), np.ones(4)]), y=np.ones(4))
    with pytest.raises(SimulatorError, match=r"returned shape \(4, 2\) for 4 input rows"):
        vt.calibrate(wrong, d)
    nan = vt.Twin("n", vt.PytensorSimulator(lambda X, p: pt.log(p["a"] - 1.0) * X[:, 0]),
                  [vt.Parameter("a", vt.Normal(0.0, 1.0))])
    with pytest.raises(SimulatorError, match=r"non-finite values at rows \[0, 1, 2\].*'a': 0.0"):
        nan.check(vt.TwinData(x=[1.0, 2.0, 3.0], y=[1.0, 1.0, 1.0]))


def test_method_and_budget_errors():
    with pytest.raises(ValueError, match="`method` must be one of"):
        vt.calibrate(line_twin(), line_data(), method="hmc")
    with pytest.raises(ValueError, match="`draws` must be >= 1"):
        vt.calibrate(line_twin(), line_data(), draws=0)


# ----------------------------------------------------------------------------- identity
def test_declaration_hash_stable_and_sensitive():
    assert line_twin().hash == line_twin().hash
    other = vt.Twin("line", line_twin().simulator,
                    [vt.Parameter("a", vt.Normal(0, 3)), vt.Parameter("b", vt.Normal(0, 2))],
                    observation=vt.Gaussian(sigma=0.5))
    assert other.hash != line_twin().hash
    sim2 = vt.PytensorSimulator(lambda X, p: p["a"] - p["b"] * X[:, 0], name="line")
    t3 = vt.Twin("line", sim2, line_twin().parameters, observation=vt.Gaussian(sigma=0.5))
    assert t3.hash != line_twin().hash
    comps_a, comps_b = line_twin().component_hashes(), other.component_hashes()
    assert comps_a["simulator"] == comps_b["simulator"] and comps_a["parameters"] != comps_b["parameters"]
    assert line_data().hash == line_data().hash != line_data(seed=1).hash


# ----------------------------------------------------------------------------- simulators
def test_ode_simulator_dopri5_matches_closed_form_with_order_five():
    ts = np.array([0.5, 1.0, 2.0, 4.0])
    errs = []
    for max_step in (0.5, 0.25, 0.125, 0.0625):
        sim = vt.ODESimulator(rhs=lambda t, y, p: -p["k"] * y,
                              y0=lambda p: pt.as_tensor_variable(np.array([3.0])), max_step=max_step)
        out = sim(pt.as_tensor_variable(ts[:, None]), {"k": pt.as_tensor_variable(2.0)}).eval()
        errs.append(np.max(np.abs(out - 3.0 * np.exp(-2.0 * ts))))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    # observed order approaches the theoretical order 5 of the propagated Dormand-Prince solution
    assert abs(orders[-1] - 5) < 0.3, orders
    assert np.all(orders > 4.5), orders
    assert errs[-1] < 3e-8


def test_ode_gradient_flows():
    sim = vt.ODESimulator(rhs=lambda t, y, p: -p["k"] * y, y0=lambda p: pt.as_tensor_variable(np.array([1.0])),
                          n_steps=20)
    k = pt.dscalar("k")
    out = sim(pt.as_tensor_variable(np.array([[1.0], [2.0]])), {"k": k})
    g = pt.grad(out.sum(), k).eval({k: 0.5})
    exact = -(1.0 * np.exp(-0.5) + 2.0 * np.exp(-1.0))
    assert abs(g - exact) < 1e-6


def test_blackbox_without_gradient_uses_smc_and_reports_failures():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 15)
    y = 2.0 * x + rng.normal(0, 0.1, x.size)
    bb = vt.BlackBoxSimulator(lambda X, p: p["b"] * X[:, 0], parameter_names=["b"])
    twin = vt.Twin("bb", bb, [vt.Parameter("b", vt.Normal(0, 1))], observation=vt.Gaussian(sigma=0.1))
    with pytest.warns(SamplerChoiceWarning, match="no `jacobian`.*SMC"):
        res = vt.calibrate(twin, vt.TwinData(x=x, y=y), draws=400, chains=2, rng=1, warn=False)
    # conjugate: posterior of b is Gaussian
    prec = np.sum(x**2) / 0.01 + 1.0
    mean = np.sum(x * y) / 0.01 / prec
    b = res.posterior["b"].values.ravel()
    assert abs(b.mean() - mean) < 4 * np.sqrt(1 / prec) / np.sqrt(200)
    assert res.info["sampler"] == "smc"
    with pytest.raises(CalibrationError, match="NUTS needs gradients"):
        vt.calibrate(twin, vt.TwinData(x=x, y=y), method="nuts")

    def fragile(X, p):
        if p["b"] > 1.5:
            raise FloatingPointError("solver diverged")
        return p["b"] * X[:, 0]

    bad = vt.Twin("bad", vt.BlackBoxSimulator(fragile, parameter_names=["b"]),
                  [vt.Parameter("b", vt.Normal(0, 1))], observation=vt.Gaussian(sigma=0.1))
    with pytest.raises(CalibrationError, match=r"raised FloatingPointError: solver diverged at parameters \{'b': "):
        vt.calibrate(bad, vt.TwinData(x=x, y=y), method="smc", draws=200, chains=1, rng=2)


# ----------------------------------------------------------------------------- observation
def _logp_y(model, point):
    f = model.compile_logp(vars=[model["y"]], sum=True)
    return float(f(point))


def test_observation_models_logp_match_scipy():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.2, 1.9, 3.3])
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0])
    base = dict(name="o", simulator=sim, parameters=[vt.Parameter("a", vt.Normal(1, 1))])
    pt_ = {"a": 1.1}
    m = vt.Twin(**base, observation=vt.StudentT(sigma=0.3, nu=5.0)).build_model(vt.TwinData(x=x, y=y))
    assert _logp_y(m, pt_) == pytest.approx(st.t(5, loc=1.1 * x, scale=0.3).logpdf(y).sum(), rel=1e-6)
    m = vt.Twin(**base, observation=vt.LogNormalObs(sigma=0.2)).build_model(vt.TwinData(x=x, y=y))
    assert _logp_y(m, pt_) == pytest.approx(st.lognorm(0.2, scale=1.1 * x).logpdf(y).sum(), rel=1e-6)
    sd = np.array([0.1, 0.2, 0.3])
    m = vt.Twin(**base, observation=vt.Gaussian(sigma=0.2)).build_model(vt.TwinData(x=x, y=y, y_sd=sd))
    assert _logp_y(m, pt_) == pytest.approx(st.norm(1.1 * x, np.sqrt(0.04 + sd**2)).logpdf(y).sum(), rel=1e-6)
    with pytest.raises(TwinSpecificationError, match="LogNormalObs needs positive observations"):
        vt.Twin(**base, observation=vt.LogNormalObs(sigma=0.2)).check(vt.TwinData(x=x, y=[1, -1, 2]))


def test_missing_observations_masked_and_predicted():
    x = np.linspace(-2, 2, 20)
    y = 1 + 2 * x + np.random.default_rng(3).normal(0, 0.5, 20)
    y[[4, 9]] = np.nan
    data = vt.TwinData(x=x, y=y, missing="mask")
    model = line_twin().build_model(data)
    assert model["y"].eval().shape == (18,)
    assert list(model.coords["obs_observed"]) == [i for i in range(20) if i not in (4, 9)]


# ----------------------------------------------------------------------------- results
def test_calibrate_save_load_and_diagnostics(tmp_path):
    twin, data = line_twin(), line_data()
    res = vt.calibrate(twin, data, rng=7, draws=500, tune=500, chains=2)
    res2 = vt.calibrate(twin, data, rng=7, draws=500, tune=500, chains=2)
    np.testing.assert_array_equal(res.posterior["a"].values, res2.posterior["a"].values)
    assert res2.info["compile_time_s"] == 0.0  # compiled model reused from the cache
    p = res.to_netcdf(tmp_path / "r.nc")
    back = vt.load_result(p, twin=twin, data=data)
    np.testing.assert_array_equal(back.posterior["a"].values, res.posterior["a"].values)
    assert back.declaration_hash == twin.hash and back.data_hash == data.hash
    assert back.diagnostics.passed == res.diagnostics.passed
    assert back.ledger.entries[0].name == "sampler_diagnostics"
    with pytest.raises(DataValidationError, match="computed with declaration"):
        vt.load_result(p, twin=vt.Twin("other", twin.simulator, twin.parameters))
    # a too-small budget fails the diagnostics loudly
    with pytest.warns(DiagnosticsWarning, match="ess_bulk"):
        small = vt.calibrate(twin, data, rng=1, draws=15, tune=15, chains=2)
    assert not small.diagnostics.passed


def test_predictions_carry_extrapolation_flags():
    twin, data = line_twin(), line_data()
    res = vt.calibrate(twin, data, rng=7, draws=500, tune=500, chains=2)
    with pytest.warns(vt.ExtrapolationWarning):
        pred = vt.predict(res, np.array([0.0, 1.5, 3.0]), rng=1)
    np.testing.assert_array_equal(pred["out_of_domain"].values, [False, False, True])
    assert float(pred["extrapolation"].isel(obs=2)) > float(pred["extrapolation"].isel(obs=1))
    # posterior predictive of the line at x=0 matches the conjugate closed form mean a
    A = np.column_stack([np.ones(data.n), data.x[:, 0]])
    cov = np.linalg.inv(A.T @ A / 0.25 + np.eye(2) / 4)
    mean = cov @ (A.T @ data.y / 0.25)
    assert abs(float(pred["zeta"].isel(obs=0).mean()) - mean[0]) < 0.05


def test_declaration_hash_covers_data_the_simulator_closes_over():
    """Same simulator code driven by different arrays (e.g. forcing) -> different hashes."""
    import numpy as np
    import vvuq_twin as vt

    def make(forcing):
        f = np.asarray(forcing, float)
        return vt.Twin("closure", vt.PytensorSimulator(lambda X, p: p["a"] * f[:1] * X[:, 0], name="s"),
                       [vt.Parameter("a", vt.Normal(0, 1))], observation=vt.Gaussian(sigma=1.0))

    a, b, c = make([1.0, 2.0]), make([1.0, 2.5]), make([1.0, 2.0])
    assert a.hash != b.hash
    assert a.hash == c.hash
