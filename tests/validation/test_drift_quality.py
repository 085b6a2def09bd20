"""Tests of the validation domain, drift detection and the data-quality gate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from vvuq_twin.exceptions import ExtrapolationWarning
from vvuq_twin.validation import (
    CusumDetector,
    DataQualityError,
    DataQualityGate,
    MetricInputError,
    ValidationDomain,
    ValidationDomainError,
    calibrate_cusum,
    simulate_performance,
)


# ------------------------------------------------------------------------ validation domain
def test_domain_one_input_ranges_and_warning():
    dom = ValidationDomain.from_inputs(np.linspace(10.0, 20.0, 11), names=["T"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = dom.assess(np.array([10.0, 15.0, 20.0]))
    assert not ds.flag.any()
    with pytest.warns(ExtrapolationWarning, match=r"2 of 3 .*rows \[0, 2\]"):
        ds = dom.assess(np.array([5.0, 15.0, 25.0]))
    np.testing.assert_array_equal(ds.flag.values, [True, False, True])
    # range excess in units of the range width: (10 - 5)/10 and (25 - 20)/10
    np.testing.assert_allclose(ds.range_excess.sel(input="T").values, [0.5, 0.0, 0.5])


def test_domain_hull_flags_points_inside_box_outside_hull():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(400, 2))
    pts = pts[pts.sum(axis=1) <= 1.0]  # validated on the lower-left triangle only
    dom = ValidationDomain.from_inputs(pts, ["a", "b"])
    corner = np.array([[0.8, 0.8], [0.2, 0.2]])
    ds = dom.assess(corner, warn=False)
    assert not ds.outside_range.values[0]  # inside the per-input ranges ...
    np.testing.assert_array_equal(ds.in_hull.values, [False, True])  # ... but not the hull
    np.testing.assert_array_equal(ds.flag.values, [True, False])
    by_range = ValidationDomain.from_inputs(pts, ["a", "b"], criterion="range")
    assert not by_range.assess(corner, warn=False).flag.any()
    # the extrapolation measure grows with distance from the data
    far = dom.assess(np.array([[0.3, 0.3], [2.0, 2.0], [5.0, 5.0]]), warn=False)
    assert np.all(np.diff(far.extrapolation.values) > 0)
    assert far.extrapolation.values[0] < 1.0 < far.extrapolation.values[1]


def test_domain_roundtrip_json_and_netcdf(tmp_path):
    rng = np.random.default_rng(1)
    dom = ValidationDomain.from_inputs(rng.normal(size=(50, 3)), ["x", "y", "z"])
    q = rng.normal(scale=2.0, size=(40, 3))
    ref = dom.assess(q, warn=False)
    dom_j = ValidationDomain.from_json(dom.to_json(tmp_path / "dom.json"))
    dom_j2 = ValidationDomain.from_json(tmp_path / "dom.json")
    dom.to_dataset().to_netcdf(tmp_path / "dom.nc")
    dom_n = ValidationDomain.from_dataset(xr.open_dataset(tmp_path / "dom.nc"))
    for d in (dom_j, dom_j2, dom_n):
        xr.testing.assert_allclose(d.assess(q, warn=False), ref)
    assert 0 < int(ref.flag.sum()) < 40


def test_domain_bad_input():
    dom = ValidationDomain.from_inputs(np.random.default_rng(2).normal(size=(20, 2)))
    with pytest.raises(ValidationDomainError, match="2 input\\(s\\) but the new inputs have 3"):
        dom.assess(np.zeros((4, 3)))
    with pytest.raises(ValidationDomainError, match="NaN/inf"):
        dom.assess(np.array([[0.0, np.nan]]))
    with pytest.raises(ValidationDomainError, match="at least 2 validation points"):
        ValidationDomain.from_inputs(np.zeros((1, 2)))
    with pytest.raises(ValidationDomainError, match="criterion must be one of"):
        ValidationDomain(np.zeros((3, 1)) + np.arange(3)[:, None], criterion="box")


# ----------------------------------------------------------------------------------- drift
@pytest.fixture(scope="module")
def detector():
    return calibrate_cusum(horizon=200, false_alarm=0.05, k=0.5, n_sim=20_000, rng=123)


def test_cusum_false_alarm_rate_and_step_detection(detector):
    perf = simulate_performance(detector, shift=1.0, change_point=100, n_streams=400, rng=7)
    far = float(perf.false_alarm_rate)
    se = np.sqrt(0.05 * 0.95 / 400)
    assert abs(far - 0.05) <= 3 * se  # within the binomial error of the nominal level
    assert float(perf.detection_rate) >= 0.95  # the 1-sd step is detected
    assert 5.0 < float(perf.mean_delay) < 30.0
    big = simulate_performance(detector, shift=2.0, change_point=100, n_streams=400, rng=8)
    assert float(big.mean_delay) < float(perf.mean_delay)
    assert float(big.detection_rate) == 1.0


def test_uncalibrated_threshold_breaks_false_alarm_rate():
    # the failure case: a threshold picked by hand (h = 3) alarms on most in-control streams
    bad = CusumDetector(k=0.5, h=3.0, false_alarm=0.05, horizon=200)
    perf = simulate_performance(bad, n_streams=400, rng=9)
    assert float(perf.false_alarm_rate) > 0.05 + 10 * float(perf.false_alarm_se)


def test_cusum_threshold_reproducible_and_near_known_value():
    a = calibrate_cusum(horizon=100, false_alarm=0.1, n_sim=4000, rng=5)
    b = calibrate_cusum(horizon=100, false_alarm=0.1, n_sim=4000, rng=5)
    assert a == b and a.seed == 5
    # independent check: the empirical false-alarm rate at h on new streams
    perf = simulate_performance(a, n_streams=2000, rng=6)
    assert abs(float(perf.false_alarm_rate) - 0.1) < 3 * np.sqrt(0.09 / 2000) + 0.01


def test_cusum_on_pit_stream_alarms_after_shift(detector):
    rng = np.random.default_rng(10)
    z = rng.normal(size=200)
    z[120:] += 1.5  # the system drifts: observations sit 1.5 sd above the predictive
    u = stats.norm.cdf(z)  # PIT values under the (now wrong) N(0, 1) predictive
    ds = detector.run(u, kind="pit")
    assert ds.attrs["drift_detected"] == 1
    assert 120 <= ds.attrs["alarm_time"] < 160
    clean = detector.run(rng.normal(size=200), kind="residual")
    assert clean.attrs["drift_detected"] == 0 and clean.attrs["alarm_time"] == -1
    # the statistic is the CUSUM recursion, checked by hand on the first steps
    zc = clean.z.values
    s1 = max(0.0, zc[0] - 0.5)
    assert clean.s_upper.values[0] == pytest.approx(s1)
    assert clean.s_upper.values[1] == pytest.approx(max(0.0, s1 + zc[1] - 0.5))
    assert clean.s_upper.dims == ("time",)


def test_drift_bad_input():
    with pytest.raises(MetricInputError, match="use n_sim >= 2000"):
        calibrate_cusum(horizon=50, false_alarm=0.01, n_sim=500)
    det = CusumDetector(k=0.5, h=5.0)
    with pytest.raises(MetricInputError, match="kind='residual'"):
        det.run(np.array([0.5, 1.7]), kind="pit")
    with pytest.raises(MetricInputError, match="NaN/inf"):
        det.run(np.array([0.0, np.nan]), kind="residual")


# ---------------------------------------------------------------------------- quality gate
def _clean(n=60, seed=11):
    rng = np.random.default_rng(seed)
    mu = 20.0 + np.sin(np.arange(n) / 5.0)
    return mu, mu + 0.5 * rng.normal(size=n)


def test_gate_accepts_clean_data():
    mu, y = _clean()
    v = DataQualityGate(lower=0.0, upper=100.0).check(y, (mu, 0.5))
    assert v.accepted and v.reasons == [] and bool(v)
    v.raise_if_rejected()  # does not raise
    assert "ACCEPTED" in v.summary()


def test_gate_detects_stuck_sensor_with_indices():
    mu, y = _clean()
    y[30:42] = y[30]
    v = DataQualityGate(max_run=5).check(y)
    assert not v.accepted
    assert any("stuck sensor: 12 identical consecutive values" in r and "index 30-41" in r
               for r in v.reasons)
    np.testing.assert_array_equal(np.flatnonzero(v.flags.stuck.values), np.arange(30, 42))


def test_gate_detects_impossible_values_and_nan_without_dropping():
    mu, y = _clean()
    y[5] = -3.0
    y[7] = np.nan
    y[9] = np.inf
    v = DataQualityGate(lower=0.0).check(y)
    assert not v.accepted
    text = " | ".join(v.reasons)
    assert "2 NaN/inf value(s) at index 7, 9" in text
    assert "1 impossible value(s) below the physical lower bound 0.0 at index 5" in text
    assert v.flags.sizes["obs"] == y.size  # nothing dropped
    np.testing.assert_array_equal(v.flags.y.values, y)
    with pytest.raises(DataQualityError, match="not assimilated"):
        v.raise_if_rejected()


def test_gate_detects_sudden_offset_against_predictive():
    mu, y = _clean()
    y[40:] += 2.0  # a 4-sd calibration offset from index 40
    rng = np.random.default_rng(12)
    samples = mu[None] + 0.5 * rng.normal(size=(4000, mu.size))
    v = DataQualityGate().check(y, samples)
    assert not v.accepted
    assert any("sudden offset" in r for r in v.reasons)
    first = int(np.flatnonzero(v.flags.offset.values)[0])
    assert 36 <= first <= 41
    # the same data without the offset pass
    _, y0 = _clean()
    assert DataQualityGate().check(y0, samples).accepted


def test_gate_bad_input():
    with pytest.raises(MetricInputError, match="lower < upper"):
        DataQualityGate(lower=1.0, upper=0.0)
    with pytest.raises(MetricInputError, match="1-D"):
        DataQualityGate().check(np.zeros((3, 2)))
    with pytest.raises(MetricInputError, match="describes 3 observations, y has 4"):
        DataQualityGate().check(np.zeros(4), (np.zeros(3), np.ones(3)))


def test_domain_annotates_a_prediction_dataset():
    from vvuq_twin import TwinData

    data = TwinData(x=np.linspace(0.0, 2.0, 30), y=np.zeros(30))
    dom = ValidationDomain.from_data(data)
    assert dom.names == ("x0",)
    pred = xr.Dataset(
        {"y": (("chain", "draw", "obs"), np.zeros((1, 5, 3)))},
        coords={"obs": [0, 1, 2], "x0": ("obs", [1.0, 2.5, -1.0])},
    )
    with pytest.warns(ExtrapolationWarning, match="2 of 3"):
        out = dom.annotate(pred)
    np.testing.assert_array_equal(out.out_of_domain.values, [False, True, True])
    assert out.extrapolation.dims == ("obs",)
    with pytest.raises(ValidationDomainError, match=r"no input coordinate\(s\) \['x0'\]"):
        dom.annotate(pred.drop_vars("x0"))


def test_results_roundtrip_netcdf(tmp_path, detector):
    run = detector.run(np.random.default_rng(20).uniform(size=100))
    perf = simulate_performance(detector, n_streams=50, rng=21)
    v = DataQualityGate().check(np.arange(10.0))
    for name, ds in (("run", run), ("perf", perf), ("gate", v.flags)):
        ds.to_netcdf(tmp_path / f"{name}.nc")
        xr.testing.assert_identical(xr.load_dataset(tmp_path / f"{name}.nc"), ds)
