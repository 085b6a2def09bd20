"""The AR(1) Gaussian observation model (GaussianAR1Obs): autocorrelated residuals.

Known answers: the joint log-density of a stationary AR(1) record is the multivariate normal
with covariance ``s^2 / (1 - phi^2) phi^|i-j|`` (scipy), for the NumPy ``logpdf``, the
declaration's ``Twin.log_likelihood`` and the compiled PyMC model alike; phi = 0 is the iid
Gaussian; draws have lag-one autocorrelation phi and marginal variance s^2 / (1 - phi^2).
Failure cases: a non-stationary phi, a prior outside [-1, 1], a prior phi without its values.
"""

import numpy as np
import pymc as pm
import pytest
import scipy.stats as st

import vvuq_twin as vt
from vvuq_twin.exceptions import TwinSpecificationError

N = 15
X = np.arange(N, dtype=float)
RNG = np.random.default_rng(3)
Y = 0.5 + np.cumsum(RNG.normal(0, 0.2, N)) * 0.5


def _cov(s: float, phi: float, n: int = N) -> np.ndarray:
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return s**2 / (1 - phi**2) * phi**lag


def _twin(obs):
    sim = vt.PytensorSimulator(lambda x, p: p["mu"] + 0.0 * x[:, 0], name="level")
    return vt.Twin("ar1", sim, [vt.Parameter("mu", vt.NormalPrior(0.0, 1.0))], observation=obs,
                   discrepancy=vt.NoDiscrepancy())


def test_logpdf_is_the_stationary_ar1_multivariate_normal():
    s, phi, mu = 0.3, 0.6, 0.4
    obs = vt.GaussianAR1Obs(sigma=s, phi=phi)
    got = obs.logpdf(Y, np.full(N, mu), np.full(N, s)).sum()
    ref = st.multivariate_normal(np.full(N, mu), _cov(s, phi)).logpdf(Y)
    assert got == pytest.approx(ref, rel=1e-12)
    # per draw (leading axis), phi from the noise values; negative phi too
    phis = np.array([0.6, -0.4, 0.0])
    lp = vt.GaussianAR1Obs(sigma=s, phi=vt.Beta(2, 2)).logpdf(
        Y[None, :], np.full((3, N), mu), np.full((3, N), s), {"phi": phis}).sum(axis=1)
    refs = [st.multivariate_normal(np.full(N, mu), _cov(s, p)).logpdf(Y) for p in phis]
    np.testing.assert_allclose(lp, refs, rtol=1e-12)
    # phi = 0 is the iid Gaussian; phi != 0 is not (the test can fail)
    assert lp[2] == pytest.approx(st.norm.logpdf(Y, mu, s).sum(), rel=1e-12)
    assert abs(lp[0] - st.norm.logpdf(Y, mu, s).sum()) > 0.5


def test_declaration_and_compiled_model_agree_with_the_closed_form():
    s, mu, phi = 0.25, 0.3, 0.7
    twin = _twin(vt.GaussianAR1Obs(sigma=vt.HalfNormal(0.5), phi=vt.Beta(2.0, 2.0)))
    assert set(twin.observation.noise_names()) == {"sigma_obs", "phi_obs"}
    data = vt.TwinData(x=X, y=Y)
    draws = {"mu": np.array([mu]), "sigma_obs": np.array([s]), "phi_obs": np.array([phi])}
    ref = st.multivariate_normal(np.full(N, mu), _cov(s, phi)).logpdf(Y)
    assert float(twin.log_likelihood(draws, data)[0]) == pytest.approx(ref, rel=1e-10)
    m = twin.build_model(data)
    point = {"mu": mu, "sigma_obs_log__": np.log(s), "phi_obs_logodds__": np.log(phi / (1 - phi))}
    got = float(m.compile_logp(vars=[m["y"]], sum=True)(point))
    assert got == pytest.approx(ref, rel=1e-10)
    # the prior of phi enters Twin.log_prior
    lp = twin.log_prior(draws)
    lp0 = twin.log_prior({**draws, "phi_obs": np.array([0.5])})
    assert float(np.ravel(lp - lp0)[0]) == pytest.approx(st.beta(2, 2).logpdf(phi) - st.beta(2, 2).logpdf(0.5), rel=1e-10)


def test_draws_have_the_ar1_moments_numpy_and_pymc():
    s, phi = 0.2, 0.65
    obs = vt.GaussianAR1Obs(sigma=s, phi=phi)
    e = obs.sample(np.zeros((4000, 60)), np.full((4000, 60), s), None, np.random.default_rng(1))
    var = s**2 / (1 - phi**2)
    assert e.var() == pytest.approx(var, rel=0.03)
    r1 = np.mean(e[:, 1:] * e[:, :-1]) / e.var()
    assert r1 == pytest.approx(phi, abs=0.02)
    assert np.mean(e[:, 2:] * e[:, :-2]) / e.var() == pytest.approx(phi**2, abs=0.02)
    # the PyMC model's random generator (prior predictive of y) is the same process
    twin = _twin(vt.GaussianAR1Obs(sigma=s, phi=phi))
    m = twin.build_model(vt.TwinData(x=np.arange(40.0), y=np.zeros(40)))
    with m:
        idata = pm.sample_prior_predictive(2000, var_names=["y", "mu"], random_seed=2)
    r = idata.prior_predictive["y"].values[0] - idata.prior["mu"].values[0][:, None]
    assert r.var() == pytest.approx(var, rel=0.06)
    assert np.mean(r[:, 1:] * r[:, :-1]) / r.var() == pytest.approx(phi, abs=0.04)


def test_bad_phi_is_refused_with_a_fix():
    with pytest.raises(TwinSpecificationError, match=r"\(-1, 1\)"):
        vt.GaussianAR1Obs(sigma=0.1, phi=1.0)
    with pytest.raises(TwinSpecificationError, match="inside \\[-1, 1\\]"):
        vt.GaussianAR1Obs(sigma=0.1, phi=vt.NormalPrior(0.5, 0.2))
    with pytest.raises(TwinSpecificationError, match="inside \\[-1, 1\\]"):
        vt.GaussianAR1Obs(sigma=0.1, phi=vt.Uniform(-2.0, 1.0))
    vt.GaussianAR1Obs(sigma=0.1, phi=vt.Uniform(-0.9, 0.9))  # inside: accepted
    with pytest.raises(TypeError, match="noise_values"):
        vt.GaussianAR1Obs(sigma=0.1).logpdf(Y, Y, np.ones(N))
