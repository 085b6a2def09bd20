"""The collapsed form of an HSGP twin (vvuq_twin.twin.collapsed): coefficients integrated out.

Known answers, each an independent dense computation: the collapsed marginal log-likelihood
(numpy, and the compiled PyMC potential, both the constant-sd fast path and the per-observation
sd path) equals ``scipy.stats.multivariate_normal`` with covariance
``Phi S Phi' + Sigma_noise`` (AR(1): ``s^2 / (1 - phi^2) phi^|i-j|``; Gaussian with a known
``y_sd``: diagonal); the coefficients' conditional mean and covariance equal the dense Gaussian
conditioning formulas; the collapsed model's log density differs from the latent model's with the
coefficients integrated out numerically (a 1-coefficient case, quadrature). Failure cases: twins
without a collapsed form are refused (Student-t noise, a per-unit discrepancy), SMC with
``collapse_discrepancy`` is refused, and a wrong covariance (the noise without the discrepancy)
does not match.
"""

import numpy as np
import pytest
import scipy.stats as st
from pymc.model.transform.conditioning import remove_value_transforms

import vvuq_twin as vt
from vvuq_twin.exceptions import TwinSpecificationError
from vvuq_twin.twin.collapsed import (COLLAPSED_LIKELIHOOD, collapsed_loglik_numpy, collapsed_model,
                                      collapsible, draw_coefficients)
from vvuq_twin.twin.discrepancy import _hsgp_basis, _psd_np

N = 24
X = np.arange(N, dtype=float)
RNG = np.random.default_rng(11)
Y = 0.3 + 0.02 * X + 0.2 * np.sin(X / 4.0) + RNG.normal(0, 0.1, N)
M = 8


def _twin(obs, m=M, **disc):
    sim = vt.PytensorSimulator(lambda x, p: p["a"] + p["b"] * x[:, 0], name="line")
    return vt.Twin("collapsed", sim, [vt.Parameter("a", vt.NormalPrior(0.0, 1.0)),
                                      vt.Parameter("b", vt.NormalPrior(0.0, 0.1))],
                   discrepancy=vt.HSGPDiscrepancy(m=m, kernel="Matern32", ls=vt.LogNormal(np.log(5.0), 0.5),
                                                  eta=vt.HalfNormal(0.3), **disc),
                   observation=obs)


def _dense_cov(twin, data, ls, amp, noise_cov):
    phi, omega = _hsgp_basis(twin.discrepancy, data.x)
    S = amp**2 * _psd_np(twin.discrepancy.kernel, omega, np.array([ls]))[0]
    return phi, S, (phi * S) @ phi.T + noise_cov


def _ar1_cov(s, p, n=N):
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return s**2 / (1 - p**2) * p**lag


POINT = {"a": 0.25, "b": 0.03, "delta_ls": 4.0, "delta_eta": 0.25, "sigma_obs": 0.08, "phi_obs": 0.6}


def _draws(pt_, keys):
    return {k: np.array([pt_[k]]) for k in keys}


def _potential(model, point):
    """The collapsed likelihood term at a natural-scale point (compiled PyMC)."""
    m = remove_value_transforms(model)
    pot = [p for p in m.potentials if p.name == COLLAPSED_LIKELIHOOD][0]
    [pot] = m.replace_rvs_by_values([pot])
    fn = m.compile_fn(pot, inputs=m.value_vars, on_unused_input="ignore")
    return float(fn({v.name: np.asarray(point[v.name], float) for v in m.value_vars}))


def test_ar1_marginal_likelihood_is_the_dense_multivariate_normal():
    twin = _twin(vt.GaussianAR1Obs(sigma=vt.HalfNormal(0.2), phi=vt.Beta(2, 2)))
    assert collapsible(twin) == (True, "")
    data = vt.TwinData(x=X, y=Y)
    p = POINT
    eta = p["a"] + p["b"] * X
    _, _, C = _dense_cov(twin, data, p["delta_ls"], p["delta_eta"], _ar1_cov(p["sigma_obs"], p["phi_obs"]))
    ref = st.multivariate_normal(eta, C).logpdf(Y)
    got = collapsed_loglik_numpy(twin, data, _draws(p, p), eta[None])
    assert got[0] == pytest.approx(ref, rel=1e-10)
    # the compiled model (constant-sd fast path: precomputed m x m matrices)
    assert _potential(collapsed_model(twin, data), p) == pytest.approx(ref, rel=1e-9)
    # the noise alone (no discrepancy) is a different density: the test can fail
    wrong = st.multivariate_normal(eta, _ar1_cov(p["sigma_obs"], p["phi_obs"])).logpdf(Y)
    assert abs(got[0] - wrong) > 1.0


def test_per_observation_sd_path_and_gaussian_noise():
    y_sd = np.linspace(0.02, 0.1, N)
    data = vt.TwinData(x=X, y=Y, y_sd=y_sd)
    p = POINT
    eta = p["a"] + p["b"] * X
    # Gaussian noise with a known per-observation sd: diagonal noise covariance
    tg = _twin(vt.GaussianObs(sigma=vt.HalfNormal(0.2)))
    _, _, C = _dense_cov(tg, data, p["delta_ls"], p["delta_eta"], np.diag(p["sigma_obs"] ** 2 + y_sd**2))
    ref = st.multivariate_normal(eta, C).logpdf(Y)
    assert collapsed_loglik_numpy(tg, data, _draws(p, p), eta[None])[0] == pytest.approx(ref, rel=1e-10)
    assert _potential(collapsed_model(tg, data), p) == pytest.approx(ref, rel=1e-9)
    # AR(1) with varying innovation sd: Sigma = B^-1 D^2 B^-T, built densely
    ta = _twin(vt.GaussianAR1Obs(sigma=vt.HalfNormal(0.2), phi=vt.Beta(2, 2)))
    sd = np.sqrt(p["sigma_obs"] ** 2 + y_sd**2)
    B = np.eye(N) - p["phi_obs"] * np.eye(N, k=-1)
    D = np.diag(np.r_[sd[0] / np.sqrt(1 - p["phi_obs"] ** 2), sd[1:]])
    Binv = np.linalg.inv(B)
    _, _, C = _dense_cov(ta, data, p["delta_ls"], p["delta_eta"], Binv @ D @ D @ Binv.T)
    ref = st.multivariate_normal(eta, C).logpdf(Y)
    assert collapsed_loglik_numpy(ta, data, _draws(p, p), eta[None])[0] == pytest.approx(ref, rel=1e-10)
    assert _potential(collapsed_model(ta, data), p) == pytest.approx(ref, rel=1e-9)


def test_integrating_the_latent_coefficient_out_numerically():
    """m = 1: the collapsed likelihood is the latent likelihood integrated over beta ~ N(0, 1)."""
    twin = _twin(vt.GaussianAR1Obs(sigma=vt.HalfNormal(0.2), phi=vt.Beta(2, 2)), m=1)
    data = vt.TwinData(x=X, y=Y)
    p = POINT
    eta = p["a"] + p["b"] * X
    phi, omega = _hsgp_basis(twin.discrepancy, X)
    s1 = p["delta_eta"] * np.sqrt(_psd_np("Matern32", omega, np.array([p["delta_ls"]]))[0, 0])
    obs = twin.observation
    b = np.linspace(-8, 8, 4001)
    ll = np.array([obs.logpdf(Y, eta + phi[:, 0] * s1 * bb, p["sigma_obs"], {"phi": p["phi_obs"]}).sum()
                   for bb in b])
    ref = np.log(np.trapezoid(np.exp(ll - ll.max()) * st.norm.pdf(b), b)) + ll.max()
    got = collapsed_loglik_numpy(twin, data, _draws(p, p), eta[None])[0]
    assert got == pytest.approx(ref, abs=1e-6)


class _FixedNormals:
    def __init__(self, z):
        self.z = z

    def standard_normal(self, shape):
        assert shape == self.z.shape
        return self.z


def test_conditional_coefficients_match_dense_gaussian_conditioning():
    twin = _twin(vt.GaussianAR1Obs(sigma=vt.HalfNormal(0.2), phi=vt.Beta(2, 2)))
    data = vt.TwinData(x=X, y=Y)
    p = POINT
    eta = p["a"] + p["b"] * X
    phi, S, C = _dense_cov(twin, data, p["delta_ls"], p["delta_eta"], _ar1_cov(p["sigma_obs"], p["phi_obs"]))
    K = phi * np.sqrt(S)  # Phi S^(1/2): cov(y, beta) = K
    mean_ref = K.T @ np.linalg.solve(C, Y - eta)
    cov_ref = np.eye(M) - K.T @ np.linalg.solve(C, K)
    one = _draws(p, p)
    mean = draw_coefficients(twin, data, one, eta[None], _FixedNormals(np.zeros((1, M))))[0]
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-8, atol=1e-10)
    # z = unit vectors: the deviations from the mean are the columns of the covariance's root
    many = {k: np.repeat(v, M) for k, v in one.items()}
    dev = draw_coefficients(twin, data, many, np.repeat(eta[None], M, 0), _FixedNormals(np.eye(M))) - mean
    np.testing.assert_allclose(dev.T @ dev, cov_ref, rtol=1e-8, atol=1e-10)
    # a posterior that ignored the data (the prior, identity covariance) would fail
    assert np.abs(cov_ref - np.eye(M)).max() > 0.05


def test_twins_without_a_collapsed_form_are_refused():
    data = vt.TwinData(x=X, y=Y)
    t = _twin(vt.StudentTObs(sigma=vt.HalfNormal(0.2)))
    ok, why = collapsible(t)
    assert not ok and "StudentT" in why
    with pytest.raises(TwinSpecificationError, match="no collapsed form"):
        collapsed_model(t, data)
    with pytest.raises(TwinSpecificationError, match="no collapsed form"):
        vt.calibrate(t, data, collapse_discrepancy=True, draws=10, tune=10, chains=1, progressbar=False)
    sim = vt.PytensorSimulator(lambda x, p: p["a"] + 0.0 * x[:, 0], name="flat")
    t2 = vt.Twin("nogp", sim, [vt.Parameter("a", vt.NormalPrior(0.0, 1.0))],
                 discrepancy=vt.BiasDiscrepancy(), observation=vt.GaussianObs(sigma=vt.HalfNormal(0.2)))
    assert not collapsible(t2)[0]
    t3 = vt.Twin("perunit", sim, [vt.Parameter("a", vt.NormalPrior(0.0, 1.0))], hierarchy=vt.Hierarchy(dim="unit"),
                 discrepancy=vt.HSGPDiscrepancy(m=4, per_unit=True), observation=vt.GaussianObs(sigma=vt.HalfNormal(0.2)))
    ok, why = collapsible(t3)
    assert not ok and "per unit" in why
    assert collapsible(_twin(vt.GaussianObs(sigma=vt.HalfNormal(0.2))))[0]
    with pytest.raises(TypeError, match="collapse_discrepancy"):
        vt.calibrate(_twin(vt.GaussianObs(sigma=vt.HalfNormal(0.2))), data, collapse_discrepancy="yes", draws=10, chains=1, progressbar=False)
    with pytest.raises(ValueError, match="needs NUTS"):
        vt.calibrate(_twin(vt.GaussianObs(sigma=vt.HalfNormal(0.2))), data, method="smc",
                     collapse_discrepancy=True, draws=10, chains=1, progressbar=False)


def test_collapsed_calibration_returns_the_latent_posterior_variables():
    twin = _twin(vt.GaussianAR1Obs(sigma=vt.HalfNormal(0.2), phi=vt.Beta(2, 2)))
    data = vt.TwinData(x=X, y=Y)
    res = vt.calibrate(twin, data, collapse_discrepancy=True, draws=200, tune=200, chains=2, rng=4,
                       progressbar=False, posterior_predictive=False, warn=False)
    post = res.idata.posterior
    assert res.info["collapse_discrepancy"] is True
    for v in ("a", "b", "delta_ls", "delta_eta", "sigma_obs", "phi_obs", "delta_hsgp_coeffs"):
        assert v in post
    assert post["delta_hsgp_coeffs"].shape[-1] == M
    # delta in the result is the discrepancy of the drawn coefficients
    flat = {k: post[k].values.reshape(400, *post[k].shape[2:]) for k in post.data_vars}
    d_ref = twin.discrepancy.delta_numpy(flat, X, None, 0)
    groups = res.idata.groups()
    d = (res.idata.posterior_predictive if "posterior_predictive" in groups and "delta" in res.idata.posterior_predictive
         else post)["delta"].values.reshape(400, N)
    np.testing.assert_allclose(d, d_ref, rtol=1e-10, atol=1e-12)
    # the log prior of the declaration is defined on the full draws (coefficients included)
    assert np.all(np.isfinite(twin.log_prior(flat, data)))
