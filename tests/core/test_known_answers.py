"""Known-answer tests of the core: Brynjarsdottir & O'Hagan 2014, conjugate linear-Gaussian,
hierarchical recovery, HSGP vs exact GP."""

import arviz as az
import numpy as np
import pytest
import scipy.stats as st

import vvuq_twin as vt

import pytensor.tensor as pt


def _mcse(da, method):
    """Monte Carlo standard error of a (chain, draw) DataArray.

    The mean uses ArviZ's MCSE; for the sd, ArviZ 0.23's ``mcse(method="sd")`` fails under
    NumPy 2.4, so the Gaussian-posterior approximation sd / sqrt(2 ESS) is used instead.
    """
    ds = da.to_dataset(name="v")
    if method == "mean":
        return float(az.mcse(ds, method="mean")["v"])
    ess = float(az.ess(ds, method="bulk")["v"])
    return float(da.std()) / np.sqrt(2 * ess)


def _interval(res, q=(2.5, 97.5)):
    return np.percentile(res.posterior["theta"].values.ravel(), q)


def test_bo14_without_discrepancy_is_confidently_wrong(bo14_results):
    lo, hi = _interval(bo14_results["none"])
    assert not (lo <= 0.65 <= hi), (lo, hi)
    assert hi < 0.65  # biased low: the linear simulator misses the curvature
    assert hi - lo < 0.02


def test_bo14_vague_gp_discrepancy_is_wide(bo14_results):
    lo_n, hi_n = _interval(bo14_results["none"])
    lo, hi = _interval(bo14_results["gp"])
    # the paper's point (b): with a vague GP the interval is wide (theta and delta confound)
    assert (hi - lo) > 5 * (hi_n - lo_n)
    assert (hi - lo) > 0.1


def test_bo14_constrained_discrepancy_covers_and_is_narrower(bo14_results):
    lo_g, hi_g = _interval(bo14_results["gp"])
    lo, hi = _interval(bo14_results["constrained"])
    assert lo <= 0.65 <= hi
    assert (hi - lo) < (hi_g - lo_g)


def test_bo14_constrained_delta_vanishes_at_origin(bo14_results):
    res = bo14_results["constrained"]
    pred = vt.predict(res, np.array([0.0, 1e-3, 2.0]), rng=3)
    d = pred["delta"]
    # delta(0) = 0 up to the covariance jitter (1e-6 variance, i.e. sd 1e-3)
    assert float(np.abs(d.isel(obs=0)).max()) < 5e-3
    assert float(np.abs(d.isel(obs=2)).mean()) > 0.05
    # the true discrepancy at x=2 is 0.65*2/(1+0.1) - 0.65*2 = -0.1182; the posterior mean of
    # zeta must match reality there within a few posterior sds
    zeta = pred["zeta"].isel(obs=2)
    truth = 0.65 * 2 / (1 + 2 / 20)
    assert abs(float(zeta.mean()) - truth) < 3 * float(zeta.std()) + 0.01


def test_posterior_predictive_separates_roles(bo14_results):
    res = bo14_results["gp"]
    pp = res.posterior_predictive
    assert {"eta", "delta", "zeta", "y"} <= set(pp.data_vars)
    np.testing.assert_allclose(pp["zeta"], pp["eta"] + pp["delta"], atol=1e-10)
    # eta = theta * x exactly
    x = res.data.x[:, 0]
    np.testing.assert_allclose(pp["eta"].values, res.posterior["theta"].values[..., None] * x,
                               rtol=1e-10)
    # y draws scatter around zeta with the known noise sd 0.01
    resid = (pp["y"] - pp["zeta"]).values.ravel()
    assert abs(resid.std() - 0.01) < 0.001


def test_conjugate_linear_gaussian_matches_closed_form():
    rng = np.random.default_rng(5)
    x = np.linspace(-2, 2, 25)
    sigma = 0.5
    y = 1.0 + 2.0 * x + rng.normal(0, sigma, x.size)
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + p["b"] * X[:, 0], name="line")
    twin = vt.Twin("lin", sim, [vt.Parameter("a", vt.Normal(0, 2)), vt.Parameter("b", vt.Normal(0, 2))],
                   observation=vt.Gaussian(sigma=sigma))
    res = vt.calibrate(twin, vt.TwinData(x=x, y=y), rng=2, draws=1000, tune=500, chains=2)
    # closed form: prior N(0, 4 I), Gaussian likelihood
    A = np.column_stack([np.ones_like(x), x])
    prec = A.T @ A / sigma**2 + np.eye(2) / 4.0
    cov = np.linalg.inv(prec)
    mean = cov @ (A.T @ y / sigma**2)
    for i, name in enumerate(("a", "b")):
        draws = res.posterior[name]
        mcse_mean = _mcse(draws, "mean")
        mcse_sd = _mcse(draws, "sd")
        assert abs(float(draws.mean()) - mean[i]) < 4 * mcse_mean
        assert abs(float(draws.std()) - np.sqrt(cov[i, i])) < 4 * mcse_sd
    assert res.diagnostics.passed


def test_hierarchical_recovery():
    rng = np.random.default_rng(3)
    units = [f"U{i}" for i in range(6)]
    mu_true, tau_true = np.log(0.5), 0.3
    k_true = np.exp(mu_true + tau_true * rng.normal(size=len(units)))
    t = np.tile(np.linspace(0.5, 5, 8), len(units))
    lab = np.repeat(units, 8)
    kk = np.repeat(k_true, 8)
    y = 10 * np.exp(-kk * t) + rng.normal(0, 0.2, t.size)
    sim = vt.PytensorSimulator(lambda X, p: 10 * pt.exp(-p["k"] * X[:, 0]), name="decay")
    twin = vt.Twin(
        "decay", sim,
        [vt.Parameter("k", vt.Normal(np.log(0.5), 1.0), per_unit=True, link="log",
                      pop_scale=vt.HalfNormal(0.5))],
        observation=vt.Gaussian(sigma=vt.HalfNormal(1.0)),
        hierarchy=vt.Hierarchy(dim="unit"),
    )
    res = vt.calibrate(twin, vt.TwinData(x=t, y=y, unit=lab), rng=4, draws=800, tune=800, chains=2)
    post = res.posterior["k"]
    assert list(post.coords["unit"].values) == units
    for u, kt in zip(units, k_true):
        lo, hi = np.percentile(post.sel(unit=u).values.ravel(), [5, 95])
        assert lo <= kt <= hi, (u, lo, kt, hi)
    lo, hi = np.percentile(res.posterior["k_mu"].values.ravel(), [5, 95])
    assert lo <= mu_true <= hi
    sig = res.posterior["sigma_obs"].values.ravel()
    assert np.percentile(sig, 5) < 0.2 < np.percentile(sig, 95)
    # prediction for a new unit spreads over the population; for a known unit it is tight
    p_new = vt.predict(res, np.array([2.0]), unit="new", rng=1)
    p_u0 = vt.predict(res, np.array([2.0]), unit="U0", rng=1)
    assert float(p_new["zeta"].std()) > 2 * float(p_u0["zeta"].std())
    assert "k_new" in p_new


def _gp_closed_form(x_train, y, x_test, ls, eta, sigma, prior_sd_theta):
    """Exact posterior mean/sd of zeta = theta*x + delta with theta ~ N(0, s^2), delta ~ GP."""
    def k(a, b):
        return (prior_sd_theta**2) * np.outer(a, b) + eta**2 * np.exp(-0.5 * (a[:, None] - b[None, :]) ** 2 / ls**2)

    C = k(x_train, x_train) + sigma**2 * np.eye(x_train.size)
    L = np.linalg.cholesky(C)
    Ks = k(x_test, x_train)
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
    mean = Ks @ alpha
    V = np.linalg.solve(L, Ks.T)
    var = np.diag(k(x_test, x_test)) - np.sum(V**2, axis=0)
    return mean, np.sqrt(var)


@pytest.mark.slow
def test_hsgp_large_n_and_exact_gp_match_closed_form():
    rng = np.random.default_rng(9)
    n = 2000
    x = np.sort(rng.uniform(0, 4, n))
    ls, eta, sigma = 0.6, 0.3, 0.1
    y = 0.7 * x + 0.3 * np.sin(2 * x) + rng.normal(0, sigma, n)
    sim = vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0], name="linear")
    params = [vt.Parameter("theta", vt.Normal(0.0, 1.0))]
    x_test = np.linspace(0.2, 3.8, 7)

    hsgp = vt.Twin("h", sim, params, discrepancy=vt.HSGPDiscrepancy(m=40, c=1.5, ls=ls, eta=eta),
                   observation=vt.Gaussian(sigma=sigma))
    res_h = vt.calibrate(hsgp, vt.TwinData(x=x, y=y), rng=1, draws=500, tune=500, chains=2)
    pred_h = vt.predict(res_h, x_test, rng=2)["zeta"]
    mean_ref, sd_ref = _gp_closed_form(x, y, x_test, ls, eta, sigma, 1.0)
    mcse = np.array([_mcse(pred_h.isel(obs=i), "mean") for i in range(x_test.size)])
    # within MC error, plus a small allowance for the HSGP approximation (m=40 basis functions)
    assert np.all(np.abs(pred_h.mean(("chain", "draw")).values - mean_ref) < 4 * mcse + 0.1 * sd_ref)
    np.testing.assert_allclose(pred_h.std(("chain", "draw")).values, sd_ref, rtol=0.25)

    # exact GP on a subsample where it runs
    sub = rng.choice(n, 150, replace=False)
    exact = vt.Twin("e", sim, params, discrepancy=vt.GPDiscrepancy(ls=ls, eta=eta),
                    observation=vt.Gaussian(sigma=sigma))
    hs_sub = vt.Twin("hs", sim, params, discrepancy=vt.HSGPDiscrepancy(m=40, c=1.5, ls=ls, eta=eta),
                     observation=vt.Gaussian(sigma=sigma))
    d_sub = vt.TwinData(x=x[sub], y=y[sub])
    mean_s, sd_s = _gp_closed_form(x[sub], y[sub], x_test, ls, eta, sigma, 1.0)
    preds = {}
    for name, tw in (("exact", exact), ("hsgp", hs_sub)):
        r = vt.calibrate(tw, d_sub, rng=3, draws=500, tune=500, chains=2)
        preds[name] = vt.predict(r, x_test, rng=4)["zeta"]
    for name, p in preds.items():
        m = p.mean(("chain", "draw")).values
        mc = np.array([_mcse(p.isel(obs=i), "mean") for i in range(x_test.size)])
        tol = 4 * mc + (0.0 if name == "exact" else 0.1 * sd_s)
        assert np.all(np.abs(m - mean_s) < tol), (name, m, mean_s)
    diff = preds["hsgp"].mean(("chain", "draw")) - preds["exact"].mean(("chain", "draw"))
    assert float(np.abs(diff).max()) < float(0.25 * sd_s.min() + 0.02)
