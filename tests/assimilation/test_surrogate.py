"""Surrogate-trajectory HMC: the leapfrog follows the gradient of a cheap approximation of the
past likelihood (thinned past data), the accept step uses the exact target.

Known answers:

* ``thin_chunk`` keeps every r-th row of each unit, end to end, and the weight is exactly n/m;
* the kernel leaves the exact target invariant even when the surrogate is biased (shifted and
  too wide): exact draws of a correlated Gaussian stay exact draws (mean, sd, correlation, KS);
  the same steps accepted on the surrogate instead would not (the test can fail);
* a conjugate hierarchical normal with a large calibration chunk and 6 batches, assimilated with
  the thinned-data surrogate (HMC): the exact Gaussian posterior, at a fraction of the rows
  evaluated per leapfrog step.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vvuq_twin.assimilation import ParticlePosterior, concat_data, smc_update
from vvuq_twin.assimilation.kernels import Evaluation, MoveState, hmc_step
from vvuq_twin.assimilation.targets import thin_chunk

from test_rejuvenation import HierNormal  # noqa: E402 - same directory (rootdir-relative import)


def test_thin_chunk_keeps_every_rth_row_per_unit_and_weights_n_over_m():
    unit = np.r_[np.zeros(10, int), np.ones(7, int), np.full(1, 2)]
    d = {"unit": unit, "y": np.arange(unit.size, dtype=float)}
    t, w = thin_chunk(d, 4)
    # unit 0: rows 2, 6; unit 1 (rows 10..16): 12, 16; unit 2 (one row): kept
    np.testing.assert_array_equal(t["y"], [2, 6, 12, 16, 17])
    np.testing.assert_array_equal(t["unit"], [0, 0, 1, 1, 2])
    assert w == pytest.approx(18 / 5, rel=1e-15)
    t1, w1 = thin_chunk({"y": np.arange(9.0)}, 3)
    np.testing.assert_array_equal(t1["y"], [1, 4, 7])
    assert w1 == 3.0
    t2, w2 = thin_chunk(d, 1)
    np.testing.assert_array_equal(t2["y"], d["y"]) and w2 == 1.0
    with pytest.raises(ValueError, match="positive integer"):
        thin_chunk(d, 0)


def _gauss_eval(P, z):
    lp = -0.5 * np.einsum("ni,ij,nj->n", z, P, z)
    return Evaluation(lp, np.zeros(z.shape[0]), np.zeros(z.shape[0]), -z @ P, np.zeros_like(z))


def test_surrogate_hmc_is_exact_with_a_biased_surrogate():
    """Exact target N(0, S) (correlation 0.8); surrogate N(0.5 sd, 1.69 S): wrong mean and scale.
    Starting from exact draws, 15 surrogate-HMC steps must keep them exact draws."""
    S = np.array([[1.0, 0.8], [0.8, 1.0]])
    P = np.linalg.inv(S)
    L = np.linalg.cholesky(S)
    shift = np.array([0.5, 0.5])
    Ps = P / 1.69

    def evaluate(z, grad):
        ev = _gauss_eval(P, z)
        return ev if grad else ev._replace(grad_base=None, grad_new=None)

    def surrogate(z, phi):
        return np.ones(z.shape[0], bool), -(z - shift) @ Ps

    g = np.random.default_rng(5)
    n = 4000
    z = g.standard_normal((n, 2)) @ L.T
    state = MoveState(z, evaluate(z, False))
    acc = []
    for _ in range(15):
        state, info = hmc_step(g, state, evaluate, 1.0, 0.4, L, 5, surrogate)
        acc.append(info.acceptance)
    zf = state.z
    assert 0.2 < np.mean(acc) < 0.98  # the surrogate's error shows in the acceptance
    np.testing.assert_array_less(np.abs(zf.mean(0)), 4 * np.sqrt(4.0 / n))  # inefficiency <= 4
    np.testing.assert_allclose(zf.std(0), 1.0, rtol=0.06)
    assert np.corrcoef(zf.T)[0, 1] == pytest.approx(0.8, abs=0.03)
    assert stats.kstest(zf[:, 0], "norm").pvalue > 1e-3
    # the carried evaluation is the exact density at the moved particles
    np.testing.assert_allclose(state.ev.log_prior, _gauss_eval(P, zf).log_prior, rtol=1e-12)

    # failure case: the same trajectories accepted on the surrogate's own energy drift towards
    # the surrogate (mean 0.5, sd 1.3) - what the exact correction prevents
    def surrogate_eval(z, grad):
        lp = -0.5 * np.einsum("ni,ij,nj->n", z - shift, Ps, z - shift)
        ev = Evaluation(lp, np.zeros(z.shape[0]), np.zeros(z.shape[0]))
        return ev

    g = np.random.default_rng(5)
    z = g.standard_normal((n, 2)) @ L.T
    wrong = MoveState(z, surrogate_eval(z, False))
    for _ in range(15):
        wrong, _ = hmc_step(g, wrong, surrogate_eval, 1.0, 0.4, L, 5, surrogate)
    assert np.abs(wrong.z.mean(0) - shift).max() < 0.1
    assert np.abs(wrong.z.mean(0)).min() > 0.3


@pytest.fixture(scope="module")
def big_calibration_case():
    m = HierNormal(n_units=4, tau=1.0, sigma=0.5)
    g = np.random.default_rng(21)
    theta = g.normal(1.5, 1.0, m.J)
    cal_unit = np.repeat(np.arange(m.J), 40)  # one large chunk (160 rows): thinned by the surrogate
    cal = {"unit": cal_unit, "y": g.normal(theta[cal_unit], m.sigma)}
    batches = []
    for _ in range(6):
        unit = np.repeat(np.arange(m.J), 2)
        batches.append({"unit": unit, "y": g.normal(theta[unit], m.sigma)})
    return m, cal, batches


def _draws_given(m, d, n, rng):
    mean, cov = m.exact(d)
    x = rng.multivariate_normal(mean, cov, n)
    return {"mu": x[:, 0], "z": x[:, 1:]}


@pytest.mark.parametrize("thin", [4, None])
def test_hierarchical_normal_with_thinned_surrogate_matches_exact_posterior(big_calibration_case, thin):
    m, cal, batches = big_calibration_case
    N = 2000
    g = np.random.default_rng(2)
    start = _draws_given(m, cal, N, g)
    post = ParticlePosterior(start, None, m.log_likelihood(start, cal))
    past, reports = [cal], []
    for i, b in enumerate(batches):
        # informative batches: resample-move at every update (ESS threshold 1)
        post, rep = smc_update(post, b, m.model(), past_data=past, kernel="hmc", batch_index=i,
                               resample_threshold=1.0, surrogate_thin=thin, rng=g)
        past.append(b)
        reports.append(rep)
    mean, cov = m.exact(concat_data(past))
    sd = np.sqrt(np.diag(cov))
    got_m = np.r_[post.mean()["mu"], post.mean()["z"]]
    got_s = np.r_[post.sd()["mu"], post.sd()["z"]]
    np.testing.assert_array_less(np.abs(got_m - mean), 4 * sd / np.sqrt(N / 4))
    np.testing.assert_allclose(got_s, sd, rtol=0.1)
    np.testing.assert_allclose(post.log_likelihood, m.log_likelihood(post.values, concat_data(past)), rtol=1e-9)
    moved = [r for r in reports if r.status == "resample-move"]
    assert len(moved) == len(batches)
    assert all(0.2 < a < 0.95 for r in moved for a in r.acceptance)
    for r in moved:
        assert r.rows_exact == 160 + 8 * (r.batch_index + 1)
        if thin is None:
            assert r.rows_surrogate == 0 and r.n_surrogate_row_evals == 0
        else:
            # 160 rows thinned to 40, the small batch chunks enter exactly
            assert r.rows_surrogate == 40 + 8 * (r.batch_index + 1)
            assert r.n_surrogate_row_evals > 0


def test_fitted_correction_recovers_the_exact_past_likelihood_when_the_error_is_in_its_span(big_calibration_case):
    """With 40 rows per unit thinned to 10 (weight exactly 4 for every unit), the surrogate's
    error L_past - 4 L_thin of the hierarchical normal is linear in (mu, z): the fitted
    correction (features 1, u, u^2) must reproduce the exact past log-likelihood to round-off,
    while the uncorrected surrogate is off by several nats."""
    from vvuq_twin.assimilation.targets import TemperedTarget

    m, cal, batches = big_calibration_case
    model = m.model()
    g = np.random.default_rng(9)
    start = _draws_given(m, cal, 600, g)
    z = model.to_unconstrained(start)
    tc, w = thin_chunk(cal, 4)
    assert w == 4.0
    target = TemperedTarget(model, [cal], batches[0], [(w, tc)])
    ll_past = m.log_likelihood(start, cal)
    raw = ll_past - w * m.log_likelihood(start, tc)
    assert raw.std() > 1.0
    resid = target.fit_surrogate(z, ll_past)
    assert resid < 1e-8 * max(1.0, np.abs(ll_past).mean())
    # the surrogate gradient is then the exact gradient of the tempered target
    ok, gs = target.surrogate_grad(z, 0.3)
    ev = target(z, True)
    assert ok.all()
    np.testing.assert_allclose(gs, ev.grad(0.3), rtol=1e-6, atol=1e-6)
    assert target.n_surrogate_row_evals == 600 * 40 + 600 * (40 + 8)
