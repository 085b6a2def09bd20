"""Known answers, standard-error coverage, MC rate and bad input for vvuq_twin.risk measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import optimize, stats

from vvuq_twin.risk import (
    RiskEstimate,
    RiskInputError,
    TailSampleWarning,
    buffered_failure_probability,
    entropic_risk,
    expected_loss,
    failure_probability,
    quantile,
    superquantile,
)

# ---------------------------------------------------------------- known answers (published)


def test_closed_forms_used_as_truth_are_right():
    # CVaR of N(0,1) = phi(z_a)/(1-a); LN(0,1) CVaR_a = e^{1/2} Phi(1 - z_a)/(1-a)
    for a, ref in [(0.90, 1.75498), (0.95, 2.06271), (0.99, 2.66521)]:
        assert stats.norm.pdf(stats.norm.ppf(a)) / (1 - a) == pytest.approx(ref, abs=1e-5)
    assert math.exp(stats.norm.ppf(0.95)) == pytest.approx(5.1803, abs=1e-4)
    assert math.exp(0.5) * stats.norm.cdf(1 - stats.norm.ppf(0.95)) / 0.05 == pytest.approx(8.5572, abs=1e-4)
    # N(0,1): bPOE(3) = 1 - a with CVaR_a = 3
    a = optimize.brentq(lambda a: stats.norm.pdf(stats.norm.ppf(a)) / (1 - a) - 3, 0.5, 1 - 1e-12)
    assert 1 - a == pytest.approx(3.533e-3, rel=1e-3)


@pytest.mark.parametrize("alpha, truth", [(0.90, 1.75498), (0.95, 2.06271), (0.99, 2.66521)])
def test_superquantile_normal(alpha, truth):
    x = np.random.default_rng(1).standard_normal(200_000)
    r = superquantile(x, alpha)
    assert isinstance(r, RiskEstimate)
    assert abs(r.estimate - truth) < 3.5 * r.se
    assert r.se < 0.02  # a real, small SE at n = 2e5
    assert r.ci_low < truth < r.ci_high


def test_lognormal_var_cvar():
    x = np.exp(np.random.default_rng(2).standard_normal(400_000))
    q = quantile(x, 0.95)
    c = superquantile(x, 0.95)
    assert abs(q.estimate - 5.1803) < 3.5 * q.se and q.se < 0.05
    assert abs(c.estimate - 8.5572) < 3.5 * c.se and c.se < 0.1


@pytest.mark.parametrize("z", [2.0, 3.0, 5.0])
def test_bpoe_exponential(z):
    x = np.random.default_rng(3).exponential(size=400_000)
    r = buffered_failure_probability(x, z)
    truth = math.exp(1 - z)
    assert abs(r.estimate - truth) < 3.5 * r.se
    assert r.se / truth < 0.05


def test_bpoe_normal_and_duality_with_cvar():
    x = np.random.default_rng(4).standard_normal(1_000_000)
    r = buffered_failure_probability(x, 3.0)
    assert abs(r.estimate - 3.533e-3) < 3.5 * r.se
    # duality: CVaR at level 1 - bPOE equals the threshold (same sample)
    assert superquantile(x, 1 - r.estimate).estimate == pytest.approx(3.0, abs=2e-3)
    # bPOE bounds POE from above; edge cases
    assert r.estimate > failure_probability(x, 3.0).estimate
    assert buffered_failure_probability(x, -1.0).estimate == 1.0  # threshold below the mean
    with pytest.warns(TailSampleWarning, match="only about 0.0 of 1000000 draws"):
        assert buffered_failure_probability(x, x.max() + 1).estimate == 0.0


def test_bpoe_matches_direct_convex_minimisation():
    # independent computation: minimise E[(a (X - z) + 1)+] over a >= 0 numerically
    x = np.random.default_rng(5).gamma(2.0, size=3000)
    z = 6.0
    res = optimize.minimize_scalar(
        lambda a: np.mean(np.maximum(a * (x - z) + 1, 0)), bounds=(0, 50), method="bounded",
        options={"xatol": 1e-10},
    )
    assert buffered_failure_probability(x, z).estimate == pytest.approx(res.fun, rel=1e-6)


def test_entropic_expected_and_failure_probability():
    x = np.random.default_rng(6).normal(1.0, 2.0, 200_000)
    e = entropic_risk(x, theta=0.3)
    assert abs(e.estimate - (1.0 + 0.3 * 4.0 / 2)) < 3.5 * e.se
    m = expected_loss(x)
    assert abs(m.estimate - 1.0) < 3.5 * m.se
    assert m.se == pytest.approx(2.0 / math.sqrt(x.size), rel=0.02)
    p = failure_probability(x, 4.0)
    assert abs(p.estimate - stats.norm.sf(1.5)) < 3.5 * p.se


def test_weighted_samples_importance_reweighting():
    # draws from N(1, 1), weights to target N(0, 1): CVaR_0.95 of N(0,1)
    rng = np.random.default_rng(7)
    x = rng.normal(1.0, 1.0, 200_000)
    w = stats.norm.pdf(x) / stats.norm.pdf(x, loc=1.0)
    r = superquantile(x, 0.95, weights=w)
    assert abs(r.estimate - 2.06271) < 3.5 * r.se
    assert r.n_eff < x.size  # Kish ESS below n for unequal weights
    # integer weights equal repetition
    y = rng.standard_normal(500)
    k = rng.integers(1, 4, size=500)
    assert superquantile(y, 0.9, weights=k).estimate == pytest.approx(
        superquantile(np.repeat(y, k), 0.9).estimate, rel=1e-12
    )
    assert quantile(y, 0.9, weights=k).estimate == quantile(np.repeat(y, k), 0.9).estimate


def test_superquantile_equals_tail_mean():
    x = np.random.default_rng(8).standard_normal(1000)
    assert superquantile(x, 0.95).estimate == pytest.approx(np.sort(x)[-50:].mean(), rel=1e-12)


# ---------------------------------------------------------------- coverage and MC rate


def _coverage(fn, sampler, truth, reps=200, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        r = fn(sampler(rng))
        hits += r.ci_low <= truth <= r.ci_high
    return hits / reps


@pytest.mark.parametrize(
    "name, fn, n, truth",
    [
        ("cvar95", lambda x: superquantile(x, 0.95), 4000, 2.06271),
        ("var95", lambda x: quantile(x, 0.95), 2000, stats.norm.ppf(0.95)),
        ("bpoe2", lambda x: buffered_failure_probability(x, 2.0), 4000,
         1 - optimize.brentq(lambda a: stats.norm.pdf(stats.norm.ppf(a)) / (1 - a) - 2, 0.5, 0.9999)),
        ("entropic", lambda x: entropic_risk(x, 0.5), 2000, 0.25),
    ],
)
def test_reported_se_covers_truth_at_nominal_rate(name, fn, n, truth):
    cov = _coverage(fn, lambda r: r.standard_normal(n), truth)
    # 95% nominal; binomial sd over 200 reps is 0.0154 -> allow 3 sd
    assert 0.95 - 3 * 0.0154 <= cov <= min(1.0, 0.95 + 3 * 0.0154), (name, cov)


def test_too_small_sample_undercovers_far_tail():
    # failure case: CVaR_0.99 from n = 100 (one tail draw) -- the asymptotic SE undercovers
    with pytest.warns(TailSampleWarning, match="superquantile: only about 1.0 of 100 draws"):
        cov = _coverage(lambda x: superquantile(x, 0.99), lambda r: r.standard_normal(100), 2.66521)
    assert cov < 0.85


def test_mc_rate_and_se_matches_rmse():
    rng = np.random.default_rng(11)
    ns = np.array([1000, 4000, 16000, 64000])
    rmse, mean_se = [], []
    for n in ns:
        errs, ses = [], []
        for _ in range(40):
            r = superquantile(rng.standard_normal(n), 0.95)
            errs.append(r.estimate - 2.06271)
            ses.append(r.se)
        rmse.append(math.sqrt(np.mean(np.square(errs))))
        mean_se.append(np.mean(ses))
    slope = np.polyfit(np.log(ns), np.log(rmse), 1)[0]
    assert -0.65 < slope < -0.35
    assert np.allclose(np.array(mean_se) / np.array(rmse), 1.0, atol=0.35)


# ---------------------------------------------------------------- xarray / MCMC draws


def _ar1(rng, shape, phi):
    e = rng.standard_normal(shape)
    x = np.empty(shape)
    x[..., 0] = e[..., 0]
    for t in range(1, shape[-1]):
        x[..., t] = phi * x[..., t - 1] + math.sqrt(1 - phi**2) * e[..., t]
    return x


def test_xarray_reduces_over_chain_draw_and_keeps_other_dims(tmp_path):
    rng = np.random.default_rng(12)
    data = rng.standard_normal((4, 2500, 3)) * np.array([1.0, 2.0, 3.0])
    da = xr.DataArray(data, dims=("chain", "draw", "site"), coords={"site": ["a", "b", "c"]}, name="y")
    ds = superquantile(da, 0.9)
    assert isinstance(ds, xr.Dataset) and ds.attrs["se_method"] == "ess"
    assert set(ds.data_vars) == {"estimate", "se", "ci_low", "ci_high", "n_eff"}
    assert list(ds["estimate"].coords["site"].values) == ["a", "b", "c"]
    truth = 1.75498 * np.array([1.0, 2.0, 3.0])
    assert np.all(np.abs(ds["estimate"].values - truth) < 4 * ds["se"].values)
    # equals the numpy result on the flattened draws of one site
    flat = superquantile(data[:, :, 1].ravel(), 0.9)
    assert float(ds["estimate"].sel(site="b")) == pytest.approx(flat.estimate, rel=1e-12)
    path = tmp_path / "cvar.nc"
    ds.to_netcdf(path)
    assert xr.load_dataset(path)["estimate"].dims == ("site",)


def test_xarray_named_sample_dims_and_weights():
    rng = np.random.default_rng(13)
    da = xr.DataArray(rng.standard_normal((20_000, 2)), dims=("sample", "output"))
    with pytest.raises(RiskInputError, match="pass sample_dims"):
        quantile(da, 0.9)
    with pytest.raises(RiskInputError, match="missing \\['draws'\\]"):
        quantile(da, 0.9, sample_dims="draws")
    ds = failure_probability(da, 1.0, sample_dims="sample")
    assert ds.attrs["se_method"] == "iid"
    assert np.all(np.abs(ds["estimate"] - stats.norm.sf(1.0)) < 4 * ds["se"])
    w = xr.DataArray(np.ones(20_000), dims="sample")
    dsw = failure_probability(da, 1.0, sample_dims="sample", weights=w)
    np.testing.assert_allclose(dsw["estimate"], ds["estimate"])


def test_ess_se_covers_for_correlated_draws_where_iid_se_fails():
    # failure case: AR(1) phi=0.9 draws treated as iid give an SE ~ sqrt(19) too small
    rng = np.random.default_rng(14)
    hit_ess = hit_iid = 0
    reps = 100
    for _ in range(reps):
        da = xr.DataArray(_ar1(rng, (4, 1000), 0.9), dims=("chain", "draw"))
        e = expected_loss(da)
        i = expected_loss(da, se_method="iid")
        hit_ess += float(e["ci_low"]) <= 0 <= float(e["ci_high"])
        hit_iid += float(i["ci_low"]) <= 0 <= float(i["ci_high"])
    assert hit_ess / reps > 0.88
    assert hit_iid / reps < 0.6
    # ESS of AR(1) phi = 0.9 is about n (1 - phi)/(1 + phi) = 4000/19
    assert 120 < float(e["n_eff"]) < 350


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_alpha_outside_open_unit_interval(alpha):
    with pytest.raises(RiskInputError, match="'alpha' parameter of superquantile must be a float in the open interval"):
        superquantile(np.arange(10.0), alpha)
    with pytest.raises(RiskInputError, match="'alpha' parameter of quantile"):
        quantile(np.arange(10.0), alpha)


def test_empty_and_all_nan_and_partial_nan():
    with pytest.raises(RiskInputError, match="empty sample"):
        superquantile(np.array([]), 0.9)
    with pytest.raises(RiskInputError, match="all 5 values of samples are NaN"):
        expected_loss(np.full(5, np.nan))
    x = np.r_[np.random.default_rng(0).standard_normal(100), np.nan]
    with pytest.raises(RiskInputError, match="1 NaN value\\(s\\).*nan_policy='omit'"):
        quantile(x, 0.5)
    assert quantile(x, 0.5, nan_policy="omit").estimate == quantile(x[:-1], 0.5).estimate
    with pytest.raises(RiskInputError, match="all 6 values of DataArray 'y' are NaN"):
        superquantile(xr.DataArray(np.full((2, 3), np.nan), dims=("chain", "draw"), name="y"), 0.9)


def test_bad_weights():
    x = np.arange(5.0)
    with pytest.raises(RiskInputError, match="weights must be non-negative; weight at flat index 2"):
        superquantile(x, 0.5, weights=[1, 1, -1, 1, 1])
    with pytest.raises(RiskInputError, match="not normalisable"):
        superquantile(x, 0.5, weights=np.zeros(5))
    with pytest.raises(RiskInputError, match="NaN or infinite"):
        expected_loss(x, weights=[1, np.inf, 1, 1, 1])
    with pytest.raises(RiskInputError, match="do not match samples of shape"):
        expected_loss(x, weights=[1.0, 2.0])


def test_other_bad_parameters():
    with pytest.raises(RiskInputError, match="non-zero"):
        entropic_risk(np.arange(3.0), theta=0.0)
    with pytest.raises(RiskInputError, match="'threshold' parameter of failure_probability must be finite"):
        failure_probability(np.arange(3.0), threshold=np.inf)
    with pytest.raises(RiskInputError, match="NumPy samples must be 1-D"):
        superquantile(np.ones((3, 3)), 0.9)
    with pytest.raises(RiskInputError, match="must be one of 'auto', 'iid', 'ess'"):
        superquantile(np.arange(3.0), 0.5, se_method="bootstrap")
    with pytest.raises(TypeError, match="select a variable"):
        superquantile(xr.Dataset({"y": ("draw", np.arange(3.0))}), 0.5)
    with pytest.raises(RiskInputError, match="infinite"):
        expected_loss(np.array([1.0, np.inf]))


def test_roundtrip_to_xarray():
    r = superquantile(np.random.default_rng(0).standard_normal(1000), 0.9)
    ds = r.to_xarray()
    assert float(ds["estimate"]) == r.estimate and ds.attrs["alpha"] == 0.9
