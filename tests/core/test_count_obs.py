"""Count observation models and positivity-safe discrepancies.

Known answers: the Gamma-Poisson conjugate posterior of a rate; a negative-binomial posterior
by one-dimensional quadrature; closed-form log-likelihoods against scipy.
"""

import numpy as np
import pymc as pm
import pytest
import scipy.stats as st

import vvuq_twin as vt
from vvuq_twin.exceptions import SimulatorError, TwinSpecificationError

RNG = np.random.default_rng(0)
N = 12
X = np.arange(N, dtype=float)
Y_POIS = RNG.poisson(4.0, N).astype(float)
Y_NB = st.nbinom(5.0, 5.0 / (5.0 + 6.0)).rvs(N, random_state=RNG).astype(float)
A, B = 2.0, 0.5  # Gamma prior of the rate (shape, rate)


def _rate_sim():
    return vt.PytensorSimulator(lambda x, p: p["lam"] * (x[:, 0] * 0.0 + 1.0), name="rate")


def _twin(obs, disc=None):
    return vt.Twin("count", _rate_sim(), [vt.Parameter("lam", vt.Gamma(A, B))], observation=obs,
                   discrepancy=disc if disc is not None else vt.NoDiscrepancy())


def _logp_y(model, point):
    return float(model.compile_logp(vars=[model["y"]], sum=True)(point))


# ----------------------------------------------------------------------------- closed forms
def test_poisson_and_negbin_loglik_match_scipy_with_log_rate_discrepancy():
    data = vt.TwinData(x=X, y=Y_NB)
    lam, b, alpha = 3.0, 0.4, 2.5
    mu = lam * np.exp(b)  # the discrepancy enters on the log rate
    m = _twin(vt.Poisson(), vt.BiasDiscrepancy()).build_model(data)
    assert _logp_y(m, {"lam_log__": np.log(lam), "delta_bias": b}) == pytest.approx(
        st.poisson.logpmf(Y_NB, mu).sum(), rel=1e-10)
    m = _twin(vt.NegativeBinomial(alpha=alpha), vt.BiasDiscrepancy()).build_model(data)
    ref = st.nbinom.logpmf(Y_NB, alpha, alpha / (alpha + mu)).sum()
    assert _logp_y(m, {"lam_log__": np.log(lam), "delta_bias": b}) == pytest.approx(ref, rel=1e-10)
    # the NumPy logpdf of each model (the interface of every ObservationModel) agrees
    assert vt.NegativeBinomial(alpha=alpha).logpdf(Y_NB, mu).sum() == pytest.approx(ref, rel=1e-12)
    assert vt.Poisson().logpdf(Y_NB, mu).sum() == pytest.approx(st.poisson.logpmf(Y_NB, mu).sum())
    # NB variance: mu + mu^2 / alpha
    with pm.Model():
        d = pm.NegativeBinomial.dist(mu=mu, alpha=alpha)
        draws = pm.draw(d, 200_000, random_seed=1)
    assert draws.var() == pytest.approx(mu + mu**2 / alpha, rel=0.02)


def test_gamma_poisson_conjugate_posterior():
    data = vt.TwinData(x=X, y=Y_POIS)
    res = vt.calibrate(_twin(vt.Poisson()), data, draws=1000, tune=1000, chains=2, rng=1)
    assert res.diagnostics.passed
    post = st.gamma(A + Y_POIS.sum(), scale=1.0 / (B + N))
    lam = res.posterior["lam"].values.ravel()
    mcse = post.std() / np.sqrt(float(res.diagnostics.checks["ess_bulk"]["value"]))
    assert abs(lam.mean() - post.mean()) < 4 * mcse
    assert lam.std() == pytest.approx(post.std(), rel=0.1)
    assert np.quantile(lam, 0.9) == pytest.approx(post.ppf(0.9), rel=0.03)
    y_rep = res.posterior_predictive["y"].values
    assert np.issubdtype(y_rep.dtype, np.integer) and y_rep.min() >= 0
    assert "sigma_obs" not in res.posterior  # a Poisson has no noise parameter


def test_negative_binomial_posterior_matches_quadrature():
    alpha = 5.0
    data = vt.TwinData(x=X, y=Y_NB)
    res = vt.calibrate(_twin(vt.NegativeBinomial(alpha=alpha)), data, method="smc", draws=1000,
                       chains=2, rng=3)
    assert res.diagnostics.passed, res.diagnostics
    grid = np.linspace(1e-3, 30, 30001)
    logpost = st.gamma(A, scale=1 / B).logpdf(grid) + np.array(
        [st.nbinom.logpmf(Y_NB, alpha, alpha / (alpha + g)).sum() for g in grid])
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    mean = float(np.sum(w * grid))
    sd = float(np.sqrt(np.sum(w * (grid - mean) ** 2)))
    lam = res.posterior["lam"].values.ravel()
    assert abs(lam.mean() - mean) < 4 * sd / np.sqrt(500)
    assert lam.std() == pytest.approx(sd, rel=0.12)
    # the log marginal likelihood of SMC agrees with the quadrature (grid spacing dx)
    log_ml = logpost.max() + np.log(np.exp(logpost - logpost.max()).sum() * (grid[1] - grid[0]))
    assert np.all(np.abs(res.idata.sample_stats["log_marginal_likelihood"].values - log_ml) < 0.3)


# ----------------------------------------------------------------------------- bad input
def test_count_models_refuse_bad_input_before_compiling():
    twin = _twin(vt.Poisson())
    with pytest.raises(TwinSpecificationError, match=r"non-negative integers. y at rows \[1, 2\]"):
        twin.check(vt.TwinData(x=[0.0, 1.0, 2.0], y=[1.0, 2.5, -1.0]))
    with pytest.raises(TwinSpecificationError, match="Poisson has no noise scale.*NegativeBinomial"):
        vt.Poisson(sigma=1.0)
    with pytest.raises(TwinSpecificationError, match="NegativeBinomial.alpha: must be positive"):
        vt.NegativeBinomial(alpha=-1.0)
    with pytest.raises(TwinSpecificationError, match="no per-observation measurement sd"):
        twin.build_model(vt.TwinData(x=X, y=Y_POIS, y_sd=np.ones(N)))
    neg = vt.Twin("neg", vt.PytensorSimulator(lambda x, p: p["lam"] - 10.0 + 0 * x[:, 0]),
                  [vt.Parameter("lam", vt.Gamma(A, B))], observation=vt.Poisson(),
                  discrepancy=vt.BiasDiscrepancy())
    with pytest.raises(SimulatorError, match="Poisson observation model, which needs a positive simulator output"):
        neg.check(vt.TwinData(x=X, y=Y_POIS))


# ----------------------------------------------------------------------------- positivity
def test_lognormal_additive_discrepancy_refused_at_declaration():
    sim = vt.PytensorSimulator(lambda x, p: p["a"] * x[:, 0])
    par = [vt.Parameter("a", vt.LogNormal(0.0, 0.5))]
    for disc in (vt.GPDiscrepancy(), vt.HSGPDiscrepancy(m=10), vt.BiasDiscrepancy()):
        with pytest.raises(TwinSpecificationError,
                           match=r"additive .* lets zeta = eta \+ delta reach <= 0.*discrepancy_scale='log'"):
            vt.Twin("ln", sim, par, discrepancy=disc,
                    observation=vt.LogNormalObs(sigma=0.1, discrepancy_scale="additive"))
    # without a discrepancy "additive" is allowed (zeta = eta)
    vt.Twin("ln", sim, par, observation=vt.LogNormalObs(sigma=0.1, discrepancy_scale="additive"))
    with pytest.raises(TwinSpecificationError, match="must be 'log' or 'additive'"):
        vt.LogNormalObs(discrepancy_scale="logit")


def test_lognormal_log_scale_discrepancy_keeps_support():
    """The README's LogNormalObs + GP/HSGP discrepancy: zeta = eta exp(delta) > 0, finite logp."""
    x = np.linspace(0.5, 4.0, 15)
    y = 0.8 * x * np.exp(0.2 * np.sin(x))
    sim = vt.PytensorSimulator(lambda X_, p: p["a"] * X_[:, 0])
    twin = vt.Twin("ln", sim, [vt.Parameter("a", vt.LogNormal(0.0, 0.5))],
                   discrepancy=vt.HSGPDiscrepancy(m=12, ls=vt.LogNormal(0.0, 0.5), eta=vt.HalfNormal(3.0)),
                   observation=vt.LogNormalObs(sigma=0.1))
    m = twin.build_model(vt.TwinData(x=x, y=y))
    prior = pm.sample_prior_predictive(500, model=m, var_names=["eta", "delta", "zeta"], random_seed=2).prior
    eta, delta, zeta = (prior[v].values for v in ("eta", "delta", "zeta"))
    assert delta.min() < -np.abs(eta).max()  # an additive discrepancy would have gone negative
    np.testing.assert_allclose(zeta, eta * np.exp(delta), rtol=1e-12)
    assert zeta.min() > 0
    # logp is finite at the most negative prior discrepancy draws (the old NaN)
    logp = m.compile_logp()
    ip = m.initial_point()
    for k in [k for k in ip if "delta" in k and ip[k].ndim]:
        ip[k] = ip[k] - 5.0
    assert np.isfinite(logp(ip))


def test_lognormal_with_hsgp_calibrates_by_smc_where_it_used_to_give_nan():
    """Issue 21: LogNormalObs + additive discrepancy made SMC die on NaN; the log scale does not."""
    x = np.linspace(0.5, 4.0, 12)
    y = 0.8 * x * np.exp(0.1 * np.sin(2 * x))
    bb = vt.BlackBoxSimulator(lambda X_, p: p["a"] * X_[:, 0], parameter_names=["a"])
    twin = vt.Twin("ln", bb, [vt.Parameter("a", vt.LogNormal(0.0, 0.5))],
                   discrepancy=vt.HSGPDiscrepancy(m=8, ls=vt.LogNormal(0.0, 0.5), eta=vt.HalfNormal(1.0)),
                   observation=vt.LogNormalObs(sigma=0.05))
    res = vt.calibrate(twin, vt.TwinData(x=x, y=y), method="smc", draws=400, chains=2, rng=7, warn=False)
    pp = res.posterior_predictive
    assert float(pp["zeta"].min()) > 0 and float(pp["y"].min()) > 0
    np.testing.assert_allclose(pp["zeta"].values, pp["eta"].values * np.exp(pp["delta"].values), rtol=1e-10)
    # the twin reproduces the data: posterior median of zeta within 3 noise sds (log scale)
    med = np.median(np.log(pp["zeta"].values.reshape(-1, x.size)), axis=0)
    assert np.max(np.abs(med - np.log(y))) < 3 * 0.05


def test_twin_numpy_log_likelihood_of_count_models_matches_pymc():
    """Twin.log_likelihood (the declaration's numpy answer) for count models and the log-scale
    discrepancy, against PyMC's compiled log-density, on random draws."""
    data = vt.TwinData(x=X, y=Y_NB)
    g = np.random.default_rng(3)
    lam, b, alpha = g.gamma(4.0, 1.5, 5), g.normal(0, 0.3, 5), g.gamma(5.0, 2.0, 5)
    for obs in (vt.Poisson(), vt.NegativeBinomial(alpha=vt.Gamma(2.0, 0.1))):
        twin = _twin(obs, vt.BiasDiscrepancy())
        m = twin.build_model(data)
        draws = {"lam": lam, "delta_bias": b}
        if isinstance(obs, vt.NegativeBinomial):
            draws["alpha_obs"] = alpha
        got = twin.log_likelihood(draws, data)
        for i in range(5):
            pt_ = {"lam_log__": np.log(lam[i]), "delta_bias": b[i]}
            if "alpha_obs" in draws:
                pt_["alpha_obs_log__"] = np.log(alpha[i])
            assert got[i] == pytest.approx(_logp_y(m, pt_), rel=1e-8)
