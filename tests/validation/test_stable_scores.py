"""Scores that cannot lie: stable CRPS / energy score, checked against scoringrules and closed
forms, and refused on non-finite, absurd or flagged predictive draws (issue 20)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from vvuq_twin.validation import MetricInputError, crps, crps_gaussian, energy_score, interval_coverage

sr = pytest.importorskip("scoringrules")


def _crps_reference(x: np.ndarray, y: float, fair: bool) -> float:
    """O(m^2) CRPS with exactly rounded sums (math.fsum) of every |x_i - y| and |x_i - x_j|."""
    m = x.size
    t1 = math.fsum(abs(float(v) - y) for v in x) / m
    pairs = math.fsum(abs(float(a) - float(b)) for a in x for b in x)
    return t1 - 0.5 * pairs / (m * (m - 1) if fair else m * m)


def test_crps_matches_scoringrules_both_estimators():
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 1.5, size=(800, 9))
    y = rng.gamma(2.0, 1.5, size=9)
    np.testing.assert_allclose(crps(X, y, estimator="fair"),
                               sr.crps_ensemble(y, X.T, estimator="fair"), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(crps(X, y, estimator="biased"),
                               sr.crps_ensemble(y, X.T, estimator="nrg"), rtol=1e-12, atol=1e-14)


def test_crps_converges_to_gaussian_closed_form():
    rng = np.random.default_rng(1)
    y = np.array([-2.0, 0.0, 0.3, 3.5])
    X = rng.normal(1.0, 2.0, size=(200_000, y.size))
    exact = crps_gaussian(1.0, 2.0, y)
    # Monte Carlo error of the fair estimator is ~ sd(|X - y|) / sqrt(m) ~ 5e-3 here
    np.testing.assert_allclose(crps(X, y), exact, atol=0.02)


def test_crps_exact_on_extreme_but_finite_draws():
    # 2 % of the draws 3e7 away (a heavy tail, not yet absurd): the textbook difference of two
    # large means and the stable sum of non-negative terms must agree with the exact reference
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, 400)
    x[:8] = rng.choice([-3e7, 3e7], 8) + rng.normal(0, 1, 8)
    y = 0.4
    for fair in (True, False):
        ref = _crps_reference(x, y, fair)
        got = float(crps(x[:, None], np.array([y]), estimator="fair" if fair else "biased")[0])
        assert got == pytest.approx(ref, rel=1e-12)
        assert got > 1e3  # a heavy tail costs: never a spurious perfect score
    # a common offset of 1e9 does not change the score beyond float resolution of the offset
    base = rng.normal(0, 1, 300)
    s0 = float(crps(base[:, None], np.array([0.2]))[0])
    s1 = float(crps((base + 1e9)[:, None], np.array([0.2 + 1e9]))[0])
    assert abs(s1 - s0) < 1e-5


def test_crps_refuses_absurd_draws_of_an_unstable_integrator():
    # the failure: 25 of 1000 draws at -4e133 gave CRPS exactly 0.0 ("perfect")
    rng = np.random.default_rng(3)
    X = rng.normal(5.0, 0.5, size=(1000, 3))
    X[:25, :] = -4e133
    y = np.array([5.1, 4.8, 5.3])
    with pytest.raises(MetricInputError, match="absurd draw"):
        crps(X, y)
    with pytest.raises(MetricInputError, match="absurd draw"):
        interval_coverage(X, y)
    X[0, 0] = np.inf
    with pytest.raises(MetricInputError, match="NaN/inf"):
        crps(X, y)


def test_scores_refuse_draws_flagged_by_predict():
    rng = np.random.default_rng(4)
    vals = rng.normal(size=(2, 50, 3))
    flag = np.zeros_like(vals, dtype=bool)
    flag[1, 7, 2] = True
    pred = xr.DataArray(vals, dims=("chain", "draw", "obs"),
                        coords={"simulator_unreliable": (("chain", "draw", "obs"), flag)})
    obs = xr.DataArray(np.zeros(3), dims="obs")
    with pytest.raises(MetricInputError, match="flagged `simulator_unreliable`"):
        crps(pred, obs)
    ok = pred.assign_coords(simulator_unreliable=(("chain", "draw", "obs"), np.zeros_like(flag)))
    np.testing.assert_allclose(crps(ok, obs).values,
                               crps(vals.reshape(100, 3), np.zeros(3)), rtol=1e-12)


def test_energy_score_matches_scoringrules_and_reduces_to_crps():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 6, 3))
    y = rng.normal(size=(6, 3))
    np.testing.assert_allclose(energy_score(X, y), sr.es_ensemble(y, np.moveaxis(X, 0, 1), estimator="fair"),
                               rtol=1e-12)
    np.testing.assert_allclose(energy_score(X, y, estimator="biased"),
                               sr.es_ensemble(y, np.moveaxis(X, 0, 1), estimator="nrg"), rtol=1e-12)
    # d = 1: the energy score is the CRPS
    np.testing.assert_allclose(energy_score(X[..., :1], y[..., :1]), crps(X[..., 0], y[..., 0]), rtol=1e-12)
    X[3, 2, 1] = 1e140
    with pytest.raises(MetricInputError, match="absurd draw"):
        energy_score(X, y)
