"""Known-answer tests of vvuq_twin.validation.metrics and .vv20."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats

from vvuq_twin.validation import (
    MetricInputError,
    area_metric,
    area_metric_u_pooling,
    crps,
    crps_gaussian,
    energy_score,
    input_uncertainty,
    interval_coverage,
    loo_pit,
    pit,
    pit_uniformity,
    ppc_pvalue,
    vv20_comparison,
    vv20_from_predictive,
)


# ------------------------------------------------------------------------------------- CRPS
@pytest.mark.parametrize("mu,sigma,y", [(0.0, 1.0, 0.0), (0.3, 1.2, 1.0), (-2.0, 0.5, 1.5)])
def test_crps_gaussian_closed_form_matches_quadrature(mu, sigma, y):
    # CRPS = int (F(x) - 1{x >= y})^2 dx, integrated independently
    f = stats.norm(mu, sigma)
    direct = (integrate.quad(lambda t: f.cdf(t) ** 2, -np.inf, y)[0]
              + integrate.quad(lambda t: f.sf(t) ** 2, y, np.inf)[0])
    assert crps_gaussian(mu, sigma, y) == pytest.approx(direct, rel=1e-8, abs=1e-10)


def test_crps_gaussian_known_value_at_mean():
    # z = 0: CRPS = sigma (2 phi(0) - 1/sqrt(pi)) = sigma (sqrt(2) - 1)/sqrt(pi)
    assert crps_gaussian(1.0, 2.0, 1.0) == pytest.approx(2 * (np.sqrt(2) - 1) / np.sqrt(np.pi))


def test_sample_crps_converges_to_closed_form():
    rng = np.random.default_rng(0)
    exact = crps_gaussian(0.3, 1.2, 1.0)
    errs = []
    for n in (200, 50_000):
        x = rng.normal(0.3, 1.2, size=(n, 1))
        errs.append(abs(crps(x, np.array([1.0]))[0] - exact))
    assert errs[1] < 0.01
    assert errs[1] < errs[0] + 0.01


def test_fair_crps_is_unbiased_and_biased_estimator_is_not():
    # m = 5 member ensembles from N(0,1): the fair estimator averages to the closed form, the
    # biased one exceeds it by E|X - X'| / (2 m) = (2/sqrt(pi)) / 10.
    rng = np.random.default_rng(1)
    m, n = 5, 40_000
    x = rng.normal(size=(m, n))
    y = rng.normal(size=n)
    exact = float(np.mean(crps_gaussian(0.0, 1.0, y)))
    fair = float(np.mean(crps(x, y)))
    biased = float(np.mean(crps(x, y, estimator="biased")))
    assert fair == pytest.approx(exact, abs=0.006)
    assert biased - exact == pytest.approx(2 / np.sqrt(np.pi) / (2 * m), abs=0.006)


def test_crps_sorted_pairs_equal_bruteforce():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 3))
    y = rng.normal(size=3)
    brute = (np.abs(x - y).mean(0)
             - np.abs(x[:, None] - x[None]).sum((0, 1)) / (2 * 7 * 6))
    np.testing.assert_allclose(crps(x, y), brute, rtol=1e-12)


def test_crps_xarray_wrapper_keeps_obs_coords():
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(2, 300, 4))
    pred = xr.DataArray(vals, dims=("chain", "draw", "obs"),
                        coords={"obs": ["a", "b", "c", "d"]})
    obs = xr.DataArray(np.zeros(4), dims="obs", coords={"obs": ["a", "b", "c", "d"]})
    out = crps(pred, obs)
    assert out.dims == ("obs",) and list(out.obs.values) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(out.values, crps(vals.reshape(600, 4), np.zeros(4)))


# ------------------------------------------------------------------------------ energy score
def test_energy_score_one_dimension_equals_crps():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 3, 1))
    y = rng.normal(size=(3, 1))
    np.testing.assert_allclose(energy_score(x, y), crps(x[..., 0], y[:, 0]), rtol=1e-10)


def test_energy_score_bivariate_standard_normal_closed_form():
    # ES(N(0, I2), 0) = E||X|| - E||X - X'|| / 2 = sqrt(pi/2) - sqrt(pi)/2
    x = np.random.default_rng(5).normal(size=(4000, 2))
    assert energy_score(x, np.zeros(2)) == pytest.approx(
        np.sqrt(np.pi / 2) - np.sqrt(np.pi) / 2, abs=0.02)


def test_energy_score_prefers_correct_correlation():
    rng = np.random.default_rng(6)
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    ys = rng.multivariate_normal([0, 0], cov, size=200)
    ys = ys[:100]
    good = rng.multivariate_normal([0, 0], cov, size=(300,))
    bad = rng.normal(size=(300, 2))  # misses the correlation
    pred_g = np.broadcast_to(good[:, None, :], (300, 100, 2))
    pred_b = np.broadcast_to(bad[:, None, :], (300, 100, 2))
    assert energy_score(pred_g, ys).mean() < energy_score(pred_b, ys).mean() - 0.02


def test_energy_score_dataarray_var_dim():
    rng = np.random.default_rng(7)
    pred = xr.DataArray(rng.normal(size=(1, 300, 5, 2)), dims=("chain", "draw", "site", "var"))
    obs = xr.DataArray(np.zeros((5, 2)), dims=("site", "var"))
    out = energy_score(pred, obs, var_dim="var")
    assert out.dims == ("site",)


# ---------------------------------------------------------------------------- coverage, PIT
def _gauss(n_obs, sd, seed, n_samples=2000):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-2, 2, n_obs)
    y = mu + rng.normal(size=n_obs)
    return mu[None] + sd * rng.normal(size=(n_samples, n_obs)), y


def test_coverage_nominal_within_binomial_error():
    pred, y = _gauss(2000, 1.0, 8)
    ds = interval_coverage(pred, y, 0.9)
    se = np.sqrt(0.9 * 0.1 / 2000)
    assert abs(float(ds.coverage) - 0.9) < 3 * se
    assert float(ds.p_value) > 1e-3
    assert ds.inside.dims == ("obs",) and int(ds.n) == 2000


def test_coverage_underdispersed_predictive_flagged():
    pred, y = _gauss(2000, 0.5, 8)
    ds = interval_coverage(pred, y, 0.9)
    # true coverage of a half-width interval: 2 Phi(0.5 * 1.645) - 1 = 0.589
    assert float(ds.coverage) == pytest.approx(2 * stats.norm.cdf(0.5 * 1.6449) - 1, abs=0.04)
    assert float(ds.p_value) < 1e-6


def test_pit_known_midrank_values():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert pit(x, np.array([1.5]))[0] == pytest.approx(2.5 / 5)
    assert pit(x, np.array([1.0]))[0] == pytest.approx((1 + 0.5 + 0.5) / 5)  # tie counts half
    assert pit(x, np.array([-9.0]))[0] == pytest.approx(0.5 / 5)


def test_pit_uniform_for_correct_model_and_not_for_overdispersed():
    pred, y = _gauss(1000, 1.0, 9, n_samples=1000)
    u = pit(pred, y)
    assert pit_uniformity(u, method="ks").passed
    assert pit_uniformity(u, method="ecdf").passed
    pred2, y2 = _gauss(1000, 2.0, 9, n_samples=1000)
    u2 = pit(pred2, y2)
    ks = pit_uniformity(u2, method="ks")
    band = pit_uniformity(u2, method="ecdf")
    assert not ks.passed and ks.p_value < 1e-6
    assert not band.passed and band.n_outside > 10


# ----------------------------------------------------------------------------- area metric
@pytest.mark.parametrize("y", [0.0, 0.7, -2.3])
def test_area_metric_single_observation_against_quadrature(y):
    direct = (integrate.quad(lambda t: abs(stats.norm.cdf(t) - (t >= y)), -np.inf, y)[0]
              + integrate.quad(lambda t: abs(stats.norm.cdf(t) - (t >= y)), y, np.inf)[0])
    closed = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y)  # E|X - y|
    got = area_metric(stats.norm(0, 1), [y])
    assert got == pytest.approx(direct, abs=1e-7)
    assert got == pytest.approx(closed, abs=1e-9)


def test_area_metric_many_observations_against_direct_quadrature():
    ys = np.sort(np.random.default_rng(17).normal(0.3, 1.0, 25))
    ecdf = lambda t: np.searchsorted(ys, t, side="right") / ys.size  # noqa: E731
    direct = (integrate.quad(stats.norm.cdf, -np.inf, ys[0])[0]
              + integrate.quad(stats.norm.sf, ys[-1], np.inf)[0]
              + sum(integrate.quad(lambda t: abs(stats.norm.cdf(t) - ecdf(t)), ys[i], ys[i + 1],
                                   limit=200)[0] for i in range(ys.size - 1)))
    assert area_metric(stats.norm(0, 1), ys) == pytest.approx(direct, abs=1e-9)
    # without a ppf the per-segment fallback integrates the kink with the same rule
    class CdfOnly:
        def cdf(self, t):
            return stats.norm.cdf(t)

    assert area_metric(CdfOnly(), ys) == pytest.approx(direct, abs=1e-4)


def test_area_metric_samples_converge_and_shift_gives_shift():
    rng = np.random.default_rng(10)
    a = rng.normal(size=300)
    assert area_metric(a, a + 0.37) == pytest.approx(0.37, abs=1e-12)
    big = rng.normal(size=200_000)
    closed = 0.7 * (2 * stats.norm.cdf(0.7) - 1) + 2 * stats.norm.pdf(0.7)
    assert area_metric(big, [0.7]) == pytest.approx(closed, abs=0.01)
    # predictive N(0,1) vs data from N(1,1): area -> 1 (a pure shift)
    assert area_metric(stats.norm(0, 1), rng.normal(1.0, 1.0, 2000)) == pytest.approx(1.0,
                                                                                    abs=0.08)
    assert area_metric(stats.norm(0, 1), rng.normal(0.0, 1.0, 2000)) < 0.08


def test_area_u_pooling_exact_and_detects_miscalibration():
    # one u = 0.5: int_0^0.5 u du + int_0.5^1 (1 - u) du = 0.25
    assert area_metric_u_pooling([0.5]) == pytest.approx(0.25)
    assert area_metric_u_pooling([0.0, 1.0]) == pytest.approx(0.25)
    rng = np.random.default_rng(11)
    assert area_metric_u_pooling(rng.uniform(size=2000)) < 0.03
    pred, y = _gauss(1000, 2.0, 12, n_samples=500)
    assert area_metric_u_pooling(pit(pred, y)) > 0.08


# -------------------------------------------------------------------------------- LOO-PIT
def _conjugate_idata(sigma_model, seed=13, n=150, draws=800):
    import arviz as az

    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1, n)
    mu = rng.normal(y.mean(), sigma_model / np.sqrt(n), size=(2, draws))
    yrep = mu[..., None] + sigma_model * rng.normal(size=(2, draws, n))
    ll = stats.norm.logpdf(y, mu[..., None], sigma_model)
    return az.from_dict(posterior={"mu": mu}, posterior_predictive={"y": yrep},
                        log_likelihood={"y": ll}, observed_data={"y": y},
                        dims={"y": ["obs"]})


def test_loo_pit_through_arviz_uniform_and_overdispersed():
    u = loo_pit(_conjugate_idata(1.0))
    assert u.dims == ("obs",) and u.size == 150
    assert pit_uniformity(u).passed
    assert not pit_uniformity(loo_pit(_conjugate_idata(3.0))).passed


def test_loo_pit_without_log_likelihood_says_how_to_fix():
    idata = _conjugate_idata(1.0)
    del idata.log_likelihood
    with pytest.raises(MetricInputError, match="compute_log_likelihood"):
        loo_pit(idata)


# ------------------------------------------------------------------------------- PPC p-value
def test_ppc_pvalue_mean_statistic_matches_analytic():
    # T = mean; y_rep ~ N(0, 1)^n so T(y_rep) ~ N(0, 1/n): p = 1 - Phi(T_obs sqrt(n))
    rng = np.random.default_rng(14)
    n = 50
    y = rng.normal(0.2, 1.0, n)
    pred = rng.normal(size=(40_000, n))
    ds = ppc_pvalue(pred, y, "mean")
    assert float(ds.p_value) == pytest.approx(stats.norm.sf(y.mean() * np.sqrt(n)), abs=0.01)


def test_ppc_pvalue_flags_overdispersed_data():
    rng = np.random.default_rng(15)
    y = rng.normal(0, 2.0, 100)
    pred = rng.normal(size=(4000, 100))
    assert float(ppc_pvalue(pred, y, "sd").p_value) < 0.01
    assert 0.01 < float(ppc_pvalue(pred, rng.normal(size=100), "sd").p_value) < 0.99
    with pytest.raises(MetricInputError, match="valid names are"):
        ppc_pvalue(pred, y, "kurtosis")


# ---------------------------------------------------------------------------------- V&V 20
def test_vv20_comparison_budget():
    ds = vv20_comparison(10.0, 9.0, u_num=0.3, u_input=0.4, u_data=1.2, k=2.0)
    assert float(ds.E) == pytest.approx(1.0)
    assert float(ds.u_val) == pytest.approx(1.3)
    assert (float(ds.lower), float(ds.upper)) == pytest.approx((-1.6, 3.6))
    assert not bool(ds.error_resolved)
    ds2 = vv20_comparison(np.array([10.0, 20.0]), np.array([9.0, 15.0]), u_data=1.0)
    assert ds2.E.dims == ("point",)
    np.testing.assert_array_equal(ds2.error_resolved.values, [False, True])


def test_vv20_input_uncertainty_and_predictive():
    assert input_uncertainty([1.0, 2.0], [0.1, 0.1]) == pytest.approx(np.sqrt(0.05))
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert input_uncertainty([1.0, 2.0], [0.1, 0.1], corr) == pytest.approx(np.sqrt(0.07))
    rng = np.random.default_rng(16)
    draws = xr.DataArray(rng.normal(5.0, 0.4, size=(4, 500, 3)), dims=("chain", "draw", "obs"))
    ds = vv20_from_predictive(draws, np.array([4.0, 5.0, 6.0]), u_num=0.1, u_data=0.2)
    np.testing.assert_allclose(ds.u_input, draws.std(("chain", "draw"), ddof=1))
    np.testing.assert_allclose(ds.u_val, np.sqrt(0.01 + 0.04 + ds.u_input**2))


def test_vv20_rejects_negative_uncertainty():
    with pytest.raises(MetricInputError, match="u_data.*must be >= 0"):
        vv20_comparison(1.0, 1.0, u_data=-0.1)


# ------------------------------------------------------------------------------- bad input
def test_metric_shape_mismatch_message():
    with pytest.raises(MetricInputError, match=r"observed must have shape \(3,\), got \(4,\)"):
        crps(np.zeros((10, 3)), np.zeros(4))


def test_metric_nan_message():
    y = np.zeros(3)
    y[1] = np.nan
    with pytest.raises(MetricInputError, match=r"`observed` contains 1 NaN/inf.*index \(1,\)"):
        interval_coverage(np.random.default_rng(0).normal(size=(10, 3)), y)
    x = np.zeros((10, 3))
    x[2, 0] = np.inf
    with pytest.raises(MetricInputError, match="`predictive` contains 1 NaN/inf"):
        pit(x, np.zeros(3))


def test_metric_missing_sample_dims_and_bad_dims():
    pred = xr.DataArray(np.zeros((5, 3)), dims=("sample", "obs"))
    with pytest.raises(MetricInputError, match=r"sample dim\(s\) \['chain', 'draw'\]"):
        crps(pred, np.zeros(3))
    assert crps(pred + np.arange(5)[:, None], xr.DataArray(np.zeros(3), dims="obs"),
                sample_dims="sample").dims == ("obs",)
    with pytest.raises(MetricInputError, match="do not match the observation dims"):
        crps(pred, xr.DataArray(np.zeros(3), dims="time"), sample_dims="sample")


def test_bad_options_listed():
    with pytest.raises(MetricInputError, match=r"prob must be in \(0, 1\)"):
        interval_coverage(np.zeros((5, 2)), np.zeros(2), prob=1.5)
    with pytest.raises(MetricInputError, match="'ks', 'ecdf'"):
        pit_uniformity(np.linspace(0.1, 0.9, 10), method="chi2")
    with pytest.raises(MetricInputError, match="Did you pass residuals"):
        pit_uniformity(np.linspace(-1, 2, 10))


def test_simulated_band_reproducible_with_seed():
    u = np.random.default_rng(18).uniform(size=200)
    a = pit_uniformity(u, method="ecdf", band_method="simulated", rng=3)
    b = pit_uniformity(u, method="ecdf", band_method="simulated", rng=3)
    np.testing.assert_array_equal(a.details["lower"], b.details["lower"])
    assert a.passed == b.passed
