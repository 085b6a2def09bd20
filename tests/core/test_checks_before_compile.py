"""Checks before compilation and named simulator failures (issue 17, #5 calibration part and #6).

On the old main: colliding parameter names failed only at model build with PyMC's "Variable
name already exists"; ``calibrate(draws=1.5)`` failed after the compile; a NaN written into the
caller's array after ``TwinData`` was built changed the data; unit labels None/NaN became
"None"/"nan" units; ``superquantile(alpha=0.9999)`` on 1000 draws returned se = 0; a black-box
simulator returning NaN ended SMC with "cannot convert float NaN to integer".
"""

from __future__ import annotations

import importlib
import re
import warnings

import numpy as np
import pytest
from scipy import stats

import vvuq_twin as vt
from vvuq_twin.exceptions import (
    CalibrationError,
    DataValidationError,
    SimulatorError,
    TwinSpecificationError,
)
from vvuq_twin.risk import TailSampleWarning, quantile, superquantile
from vvuq_twin.testing.problems_core import bo2014_data, bo2014_twin
from vvuq_twin.twin._names import builder_names

calibrate_mod = importlib.import_module("vvuq_twin.inference.calibrate")


def _lin():
    return vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0], name="lin")


# ------------------------------------------------------------------------- reserved names
@pytest.mark.parametrize("name, obs", [
    ("sigma_rel", vt.Gaussian(sigma=vt.HalfNormal(1.0), relative=vt.HalfNormal(0.1))),
    ("nu_obs", vt.StudentT(sigma=1.0, nu=vt.Gamma(2.0, 0.1))),
    ("sigma_obs_extra", None),  # the hand check still applies
    ("y_observed", vt.Gaussian(sigma=1.0)),
    ("eta_new", vt.Gaussian(sigma=1.0)),
    ("zeta_new", vt.Gaussian(sigma=1.0)),
    ("y_new", vt.Gaussian(sigma=1.0)),
])
def test_parameter_names_the_builder_creates_fail_at_declaration(name, obs):
    params = [vt.Parameter("a", vt.Normal(0, 1))]
    with pytest.raises(TwinSpecificationError, match=rf"{name}.*reserved"):
        params.append(vt.Parameter(name, vt.Normal(0, 1)))
        vt.Twin("t", _lin(), params, observation=obs or vt.Gaussian(sigma=1.0))


def test_population_names_of_a_per_unit_parameter_are_reserved():
    for other in ("a_mu", "a_sigma", "a_z"):
        with pytest.raises(TwinSpecificationError,
                           match=rf"'{other}' is reserved: the builder also creates '{other}' for "
                                 "per-unit parameter 'a'"):
            vt.Twin("h", _lin(), [vt.Parameter(other, vt.Normal(0, 1)),
                                  vt.Parameter("a", vt.Normal(0, 1), per_unit=True)],
                    hierarchy=vt.Hierarchy(), observation=vt.Gaussian(sigma=1.0))
    # with a discrepancy too, the clash is found by building, whatever creates the name
    with pytest.raises(TwinSpecificationError, match="'sigma_rel' is reserved"):
        vt.Twin("g", _lin(),
                [vt.Parameter("a", vt.Normal(0, 1)), vt.Parameter("sigma_rel", vt.Normal(0, 1))],
                discrepancy=vt.HSGPDiscrepancy(m=5), observation=vt.Gaussian(
                    sigma=vt.HalfNormal(1.0), relative=vt.HalfNormal(0.1)))


def test_builder_names_match_the_real_model():
    twin, data = bo2014_twin(), bo2014_data(seed=1)
    real = set(map(str, twin.build_model(data).named_vars)) - set(twin.parameter_names)
    assert real <= builder_names(twin)
    assert {"delta_ls", "delta_eta", "y_observed", "eta_new", "y_new"} <= builder_names(twin)
    # a valid twin declares without error and keeps its hash
    assert bo2014_twin().hash == twin.hash


# ---------------------------------------------------------------- arguments before compile
@pytest.fixture()
def no_compile(monkeypatch):
    """Any model build or compile fails the test."""
    def boom(*a, **k):
        raise AssertionError("a model was built or compiled before the arguments were checked")

    monkeypatch.setattr(vt.Twin, "build_model", boom)
    monkeypatch.setattr(calibrate_mod, "_nutpie_compiled", boom)


@pytest.mark.parametrize("kw, pattern", [
    ({"draws": 1.5}, r"`draws` must be a whole number >= 1, got 1.5"),
    ({"draws": 0}, r"`draws` must be >= 1, got 0"),
    ({"tune": -1}, r"`tune` must be >= 0"),
    ({"chains": "4"}, r"`chains` must be a whole number >= 1, got '4'"),
    ({"draws": True}, r"`draws` must be a whole number"),
    ({"cores": 0.5}, r"`cores` must be a whole number"),
    ({"rng": -3}, r"`rng` seed must be >= 0"),
    ({"rng": "seed"}, r"`rng` must be None, a non-negative int seed"),
    ({"target_accept": 1.0}, r"`target_accept` must be a number in \(0, 1\)"),
    ({"method": "hmc"}, r"`method` must be one of"),
    ({"posterior_predictive": "yes"}, r"`posterior_predictive` must be True or False"),
    ({"thresholds": {"r_hat": 1.01}}, r"`thresholds` must be a Thresholds"),
])
def test_calibrate_arguments_checked_before_any_compile(no_compile, kw, pattern):
    twin, data = bo2014_twin(), bo2014_data(seed=1)
    with pytest.raises((ValueError, TypeError), match=pattern):
        vt.calibrate(twin, data, **kw)


def test_calibrate_and_predict_reject_wrong_objects_before_building(no_compile):
    with pytest.raises(DataValidationError, match="`data` must be a TwinData"):
        vt.calibrate(bo2014_twin(), {"x": [1], "y": [2]})
    with pytest.raises(DataValidationError, match="`result` must be a TwinResult"):
        vt.predict("result.nc", [1.0])
    from vvuq_twin.testing.faults import synthetic_result

    res = synthetic_result(0)
    with pytest.raises(TypeError, match="`include_y` must be True or False"):
        vt.predict(res, [1.0], include_y="no")
    with pytest.raises(ValueError, match="`rng` seed must be >= 0"):
        vt.predict(res, [1.0], rng=-1)


# --------------------------------------------------------------------- TwinData owns arrays
def test_twindata_copies_and_freezes_its_arrays():
    x = np.linspace(0, 1, 5)
    y = 2 * x
    sd = np.full(5, 0.1)
    d = vt.TwinData(x=x, y=y, y_sd=sd)
    h = d.hash
    y[2] = np.nan  # the caller's array changes after validation ...
    x[0] = 99.0
    sd[:] = 0.0
    assert np.isfinite(d.y).all() and d.x[0, 0] == 0.0 and np.all(d.y_sd == 0.1)  # ... not the data
    assert d.hash == h and d.observed_mask.all()
    for arr in (d.x, d.y, d.y_sd):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = np.nan
    sub = d.subset([0, 1])
    assert sub.n == 2 and not sub.y.flags.writeable


@pytest.mark.parametrize("bad", [None, float("nan"), np.nan, ""])
def test_missing_unit_labels_rejected(bad):
    with pytest.raises(DataValidationError, match=r"`unit` has 1 missing label\(s\) .* at rows \[1\]"):
        vt.TwinData(x=[1.0, 2.0, 3.0], y=[1.0, 2.0, 3.0], unit=["A", bad, "B"])
    pd = pytest.importorskip("pandas")
    with pytest.raises(DataValidationError, match="missing label"):
        vt.TwinData(x=[1.0, 2.0], y=[1.0, 2.0], unit=pd.Series(["A", None]))
    ok = vt.TwinData(x=[1.0, 2.0], y=[1.0, 2.0], unit=[1, 2])  # numbers are labels
    assert ok.units == ("1", "2")


# ------------------------------------------------------------------------- tail measures
def test_superquantile_with_too_few_tail_draws_is_flagged_never_se_zero():
    x = np.random.default_rng(0).standard_normal(1000)
    with pytest.warns(TailSampleWarning, match="only about 0.1 of 1000 draws"):
        r = superquantile(x, 0.9999)
    assert r.flags == ("insufficient tail draws",) and r.insufficient_tail
    assert np.isnan(r.se) and np.isnan(r.ci_low) and np.isnan(r.ci_high)
    assert r.estimate == x.max()  # the estimate itself is still the sample CVaR
    with pytest.warns(TailSampleWarning):
        q = quantile(x, 0.9995)
    assert q.insufficient_tail and np.isnan(q.se)
    # at the documented minimum (10 tail draws) the se is finite and positive; CVaR_0.95 of
    # N(0, 1) is phi(z_0.95) / 0.05 = 2.0627
    x = np.random.default_rng(1).standard_normal(200_000)
    r = superquantile(x, 0.95)
    truth = stats.norm.pdf(stats.norm.ppf(0.95)) / 0.05
    assert not r.flags and r.se > 0 and abs(r.estimate - truth) < 4 * r.se
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TailSampleWarning)
        ds = superquantile(xr.DataArray(x[:1000].reshape(2, 500), dims=("chain", "draw")), 0.9999)
    assert ds.attrs["flags"] == "insufficient tail draws" and np.isnan(float(ds["se"]))


# -------------------------------------------------------------- simulator NaN in calibration
def test_blackbox_nan_during_smc_is_a_simulator_error_naming_the_parameters():
    def sim(X, p):
        if p["theta"] > 1.2:  # undefined there
            return np.full(X.shape[0], np.nan)
        return p["theta"] * X[:, 0]

    twin = vt.Twin("nan_sim", vt.BlackBoxSimulator(sim, parameter_names=["theta"]),
                   [vt.Parameter("theta", vt.Normal(0.5, 0.5))], observation=vt.Gaussian(sigma=0.1))
    x = np.linspace(0.1, 1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SimulatorError, match=r"returned 10 non-finite value\(s\) \(NaN/inf\)") as info:
            vt.calibrate(twin, vt.TwinData(x=x, y=0.5 * x), method="smc", draws=100, chains=1, rng=1)
    assert isinstance(info.value, CalibrationError)  # old `except CalibrationError` still works
    theta = float(re.search(r"\{'theta': ([-0-9.e]+)\}", str(info.value)).group(1))
    assert theta > 1.2  # the named parameter value is one where the simulator is undefined
    assert "cannot convert float NaN" not in str(info.value)


def test_blackbox_nan_during_nuts_is_an_error_not_a_rejected_proposal():
    # documented choice: with NUTS too a non-finite simulator output ends calibration
    def sim(X, p):
        return np.full(X.shape[0], np.nan) if p["theta"] > 0.55 else p["theta"] * X[:, 0]

    twin = vt.Twin("nan_nuts", vt.BlackBoxSimulator(sim, parameter_names=["theta"],
                                                    jacobian=lambda X, p: X[:, :1]),
                   [vt.Parameter("theta", vt.Normal(0.5, 0.5))], observation=vt.Gaussian(sigma=0.01))
    x = np.linspace(0.1, 1, 10)  # the data want theta = 0.7, where the simulator is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SimulatorError, match="with pymc stopped: .* non-finite") as info:
            vt.calibrate(twin, vt.TwinData(x=x, y=0.7 * x), method="pymc", draws=50, tune=50,
                         chains=1, rng=1)
    theta = float(re.search(r"\{'theta': ([-0-9.e]+)\}", str(info.value)).group(1))
    assert theta > 0.55
