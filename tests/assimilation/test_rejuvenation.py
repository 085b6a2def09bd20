"""Rejuvenation kernels of the SMC update, against posteriors known in closed form or by quadrature.

* a conjugate hierarchical normal (unit means theta_j = mu + tau z_j, tau known) assimilated in
  10 batches: the exact Gaussian posterior of (mu, z);
* a bimodal posterior (y ~ N(a^2, s)) where the independent Gaussian proposal alone does not
  decorrelate the particles (and says so) while the automatically chosen kernel does and gets the
  mode weights of a quadrature right;
* proposals outside the support are refused on the prior without calling the likelihood.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from vvuq_twin.assimilation import MixingWarning, ParticlePosterior, concat_data, smc_update
from vvuq_twin.assimilation.kernels import fit_gaussian_mixture, rank_correlation
from vvuq_twin.assimilation.targets import CallableModel


# --------------------------------------------------------------------------------------------
# conjugate hierarchical normal
# --------------------------------------------------------------------------------------------
class HierNormal:
    """y_i ~ N(mu + tau z_{u_i}, sigma), mu ~ N(0, s_mu), z_j ~ N(0, 1); tau, sigma known."""

    def __init__(self, n_units=4, tau=1.0, sigma=0.5, s_mu=3.0):
        self.J, self.tau, self.sigma, self.s_mu = n_units, tau, sigma, s_mu

    def design(self, unit):
        X = np.zeros((unit.size, 1 + self.J))
        X[:, 0] = 1.0
        X[np.arange(unit.size), 1 + unit] = self.tau
        return X

    def log_likelihood(self, th, d):
        mean = th["mu"][:, None] + self.tau * th["z"][:, d["unit"]]
        return stats.norm.logpdf(d["y"][None, :], mean, self.sigma).sum(1)

    def grad_log_likelihood(self, th, d):
        r = (d["y"][None, :] - th["mu"][:, None] - self.tau * th["z"][:, d["unit"]]) / self.sigma**2
        gz = np.zeros_like(th["z"])
        for j in range(self.J):
            gz[:, j] = self.tau * r[:, d["unit"] == j].sum(1)
        return {"mu": r.sum(1), "z": gz}

    def log_prior(self, th):
        return stats.norm.logpdf(th["mu"], 0, self.s_mu) + stats.norm.logpdf(th["z"]).sum(1)

    def grad_log_prior(self, th):
        return {"mu": -th["mu"] / self.s_mu**2, "z": -th["z"]}

    def sample_prior(self, n, rng):
        return {"mu": rng.normal(0, self.s_mu, n), "z": rng.standard_normal((n, self.J))}

    def exact(self, d):
        X = self.design(d["unit"])
        P = np.diag([1 / self.s_mu**2] + [1.0] * self.J) + X.T @ X / self.sigma**2
        cov = np.linalg.inv(P)
        return cov @ X.T @ d["y"] / self.sigma**2, cov

    def model(self, with_grad=True):
        shapes = {"mu": (), "z": (self.J,)}
        kw = dict(grad_log_likelihood=self.grad_log_likelihood, grad_log_prior=self.grad_log_prior) if with_grad else {}
        return CallableModel(self.log_likelihood, self.log_prior, shapes, **kw)


@pytest.fixture(scope="module")
def hier_case():
    m = HierNormal()
    g = np.random.default_rng(42)
    theta = g.normal(1.5, 1.0, m.J)
    batches = []
    for b in range(10):
        unit = np.repeat(np.arange(m.J), 2)
        batches.append({"unit": unit, "y": g.normal(theta[unit], m.sigma)})
    return m, batches


def _stream(model, prior_draws, batches, rng, **kw):
    post = ParticlePosterior(prior_draws)
    past, reports = [], []
    dens = (model,) if isinstance(model, CallableModel) else (model.log_likelihood, model.log_prior)
    for i, b in enumerate(batches):
        post, rep = smc_update(post, b, *dens, past_data=past, batch_index=i, rng=rng, **kw)
        past.append(b)
        reports.append(rep)
    return post, reports


@pytest.mark.parametrize("kernel", ["auto", "mala"])
def test_hierarchical_normal_matches_exact_posterior(hier_case, kernel):
    m, batches = hier_case
    N = 2000
    g = np.random.default_rng(1)
    post, reports = _stream(m.model(), m.sample_prior(N, g), batches, g, kernel=kernel)
    mean, cov = m.exact(concat_data(batches))
    sd = np.sqrt(np.diag(cov))
    got_m = np.r_[post.mean()["mu"], post.mean()["z"]]
    got_s = np.r_[post.sd()["mu"], post.sd()["z"]]
    # MC standard error of a resample-move SMC mean ~ sd / sqrt(N / inefficiency); with an
    # inefficiency up to 4 and 4 standard errors:
    np.testing.assert_array_less(np.abs(got_m - mean), 4 * sd / np.sqrt(N / 4))
    np.testing.assert_allclose(got_s, sd, rtol=0.1)
    # the posterior correlation of mu and z (strong, negative) is reproduced
    draws = np.c_[post.values["mu"], post.values["z"]]
    rho_exact = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert np.corrcoef(draws[:, 0], draws[:, 1])[0, 1] == pytest.approx(rho_exact, abs=0.06)
    moved = [r for r in reports if r.status == "resample-move"]
    assert moved and all(r.mixing_ok for r in moved)
    assert all(max(r.mixing.values()) <= r.mixing_threshold for r in moved)
    if kernel == "mala":
        assert all(set(r.kernel) == {"mala"} for r in moved)
        assert all(0.3 < a < 0.9 for r in moved for a in r.acceptance)
    # the carried cumulative log-likelihood equals a fresh evaluation on all data
    np.testing.assert_allclose(post.log_likelihood, m.log_likelihood(post.values, concat_data(batches)),
                               rtol=1e-9)
    # cost accounting: every move evaluates all chunks seen so far
    for r in moved:
        assert r.n_chunks == r.batch_index + 1
        assert r.n_point_evals >= 2000 * r.n_chunks * sum(r.n_moves)
        assert r.seconds > 0


def test_a_kernel_that_cannot_mix_warns_and_reports_it(hier_case):
    """Failure case: one random-walk step with a tiny step size leaves the particles correlated
    with their start; the update warns and the report says which parameters did not mix."""
    m, batches = hier_case
    g = np.random.default_rng(3)
    post = ParticlePosterior(m.sample_prior(1000, g))
    with pytest.warns(MixingWarning, match="did NOT decorrelate"):
        out, rep = smc_update(post, batches[0], m.model(with_grad=False), kernel="rwm", max_mcmc_steps=2,
                              target_acceptance=0.99, rng=g)
    assert rep.mixing_ok is False and "did NOT decorrelate" in rep.reason
    assert max(rep.mixing.values()) > rep.mixing_threshold


# --------------------------------------------------------------------------------------------
# bimodal posterior
# --------------------------------------------------------------------------------------------
class Bimodal:
    """y ~ N(a^2, s), a ~ N(0.3, 1), log s ~ N(log 0.3, 0.5): modes at a = +-sqrt(mean y)."""

    def log_likelihood(self, th, d):
        return stats.norm.logpdf(d["y"][None, :], th["a"][:, None] ** 2, th["s"][:, None]).sum(1)

    def log_prior(self, th):
        with np.errstate(divide="ignore", invalid="ignore"):
            return stats.norm.logpdf(th["a"], 0.3, 1.0) + stats.lognorm.logpdf(th["s"], 0.5, scale=0.3)

    def sample_prior(self, n, rng):
        return {"a": rng.normal(0.3, 1.0, n), "s": 0.3 * np.exp(0.5 * rng.standard_normal(n))}

    def quadrature(self, d):
        a = np.linspace(-2.5, 2.5, 2001)
        ls = np.linspace(np.log(0.05), np.log(1.5), 301)
        A, LS = np.meshgrid(a, ls, indexing="ij")
        th = {"a": A.ravel(), "s": np.exp(LS.ravel())}
        lp = self.log_prior(th) + self.log_likelihood(th, d) + LS.ravel()  # density in (a, log s)
        w = np.exp(lp - logsumexp(lp))
        return {"p_pos": float(w[th["a"] > 0].sum()), "abs_a": float(w @ np.abs(th["a"])),
                "s": float(w @ th["s"])}


@pytest.fixture(scope="module")
def bimodal_case():
    g = np.random.default_rng(7)
    batches = [{"y": g.normal(1.2**2, 0.3, 3)} for _ in range(8)]
    return Bimodal(), batches


def test_independent_gaussian_fails_on_two_modes_and_auto_kernel_does_not(bimodal_case):
    bm, batches = bimodal_case
    ref = bm.quadrature(concat_data(batches))
    assert 0.2 < ref["p_pos"] < 0.8  # both modes carry mass: a real bimodal test
    N = 2000
    tr = {"s": "log"}

    g = np.random.default_rng(11)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post_i, rep_i = _stream(bm, bm.sample_prior(N, g), batches, g, kernel="independent", transforms=tr,
                                max_mcmc_steps=10)
    bad = [r for r in rep_i if r.mixing_ok is False]
    assert bad and any(issubclass(w.category, MixingWarning) for w in caught)
    assert min(min(r.acceptance) for r in rep_i if r.acceptance) < 0.1

    g = np.random.default_rng(11)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixingWarning)
        post_a, rep_a = _stream(bm, bm.sample_prior(N, g), batches, g, kernel="auto", transforms=tr)
    moved = [r for r in rep_a if r.status == "resample-move"]
    assert moved and all(r.mixing_ok for r in moved)
    assert "mixture" in {k for r in moved for k in r.kernel}
    w = np.exp(post_a.log_weights)
    p_pos = float(w @ (post_a.values["a"] > 0))
    # binomial MC error with an inefficiency of up to 4
    assert p_pos == pytest.approx(ref["p_pos"], abs=4 * np.sqrt(ref["p_pos"] * (1 - ref["p_pos"]) / (N / 4)))
    assert float(w @ np.abs(post_a.values["a"])) == pytest.approx(ref["abs_a"], abs=0.01)
    assert float(w @ post_a.values["s"]) == pytest.approx(ref["s"], rel=0.05)


def test_gaussian_mixture_fit_finds_two_components():
    g = np.random.default_rng(0)
    z = np.r_[g.normal(-3, 0.2, (500, 2)), g.normal(3, 0.2, (300, 2))]
    gm = fit_gaussian_mixture(z, max_components=3, rng=g)
    assert gm.n_components == 2
    order = np.argsort(gm.means[:, 0])
    np.testing.assert_allclose(gm.means[order], [[-3, -3], [3, 3]], atol=0.05)
    np.testing.assert_allclose(np.sort(np.exp(gm.log_weights - logsumexp(gm.log_weights))), [0.375, 0.625], atol=0.01)
    one = fit_gaussian_mixture(g.standard_normal((800, 3)), max_components=3, rng=g)
    assert one.n_components == 1  # BIC does not split a single Gaussian
    # rank correlation: 1 for identical, ~0 for independent clouds
    assert rank_correlation(z, z) == pytest.approx(1.0)
    assert np.all(np.abs(rank_correlation(z[:, :1], g.standard_normal((800, 1)))) < 0.15)


# --------------------------------------------------------------------------------------------
# support
# --------------------------------------------------------------------------------------------
def test_proposals_outside_support_are_not_evaluated():
    """The likelihood raises for s <= 0 (as a PyMC ParameterValueError would); with natural-scale
    random-walk moves many proposals fall there and must be refused on the prior alone."""
    g = np.random.default_rng(5)
    y = g.normal(0.0, 0.1, 30)
    seen = []

    def loglik(th, d):
        if np.any(th["s"] <= 0):
            raise ValueError("s must be positive")  # would kill the whole batch
        seen.append(th["s"].size)
        return stats.norm.logpdf(d["y"][None, :], th["m"][:, None], th["s"][:, None]).sum(1)

    def logprior(th):
        with np.errstate(divide="ignore"):
            return stats.norm.logpdf(th["m"]) + stats.halfnorm.logpdf(th["s"])

    post = ParticlePosterior({"m": g.standard_normal(500), "s": np.abs(g.standard_normal(500))})
    out, rep = smc_update(post, {"y": y}, loglik, logprior, kernel="rwm", n_mcmc_steps=3, rng=1)
    assert rep.n_outside_support > 0 and rep.status == "resample-move"
    assert np.all(out.values["s"] > 0)
    assert float(out.mean()["s"]) == pytest.approx(0.1, abs=0.03)

    # a likelihood that fails for a few in-support particles: those get -inf, the rest go on
    def flaky(th, d):
        if np.any(th["s"] > 2.5):
            raise FloatingPointError("overflow")
        return loglik(th, d)

    out2, rep2 = smc_update(post, {"y": y[:3]}, flaky, logprior, rng=2, transforms={"s": "log"})
    assert np.all(out2.values["s"] <= 2.5)
    with pytest.raises(ValueError, match="Transform of 's' must be"):
        smc_update(post, {"y": y}, loglik, logprior, transforms={"s": "exp"})


def test_update_report_with_mixing_and_cost_roundtrips_through_json(hier_case):
    import json

    from vvuq_twin.assimilation import UpdateReport

    m, batches = hier_case
    g = np.random.default_rng(9)
    _, rep = smc_update(ParticlePosterior(m.sample_prior(500, g)), batches[0], m.model(), rng=g)
    back = UpdateReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert back.kernel == rep.kernel and back.mixing == rep.mixing and back.n_moves == rep.n_moves
    assert back.n_point_evals == rep.n_point_evals > 0 and back.mixing_ok == rep.mixing_ok
    assert back.seconds == pytest.approx(rep.seconds)


# --------------------------------------------------------------------------------------------
# hand-over judged from measured progress
# --------------------------------------------------------------------------------------------
def test_measured_progress_extrapolates_the_measured_decay():
    """The rule behind the hand-over: a log-linear fit of the last 5 steps, extrapolated."""
    from vvuq_twin.assimilation.kernels import measured_progress

    # geometric decay by 0.8 per step: 0.5 x 0.8^(4 + 20) = 0.0024 < 0.1 -> can meet it
    geo = [(0.5 * 0.8 ** t, 0.0) for t in range(5)]
    assert measured_progress(geo, 20, 0.1, 0.01) is None
    # the same decay with only 3 steps left: 0.205 x 0.8^3 = 0.105 > 0.1 -> hand over
    msg = measured_progress(geo, 3, 0.1, 0.01)
    assert msg is not None and "rank correlation" in msg and "x0.800" in msg
    # a plateau (an independent proposal that accepts in the bulk only): no decay at all
    flat = [(0.18, 0.0), (0.17, 0.0), (0.19, 0.0), (0.18, 0.0), (0.18, 0.0)]
    msg = measured_progress(flat, 25, 0.157, 0.01)
    assert msg is not None and "x1.000" in msg and "0.18" in msg
    # stuck particles that stop being freed are judged alike
    stuck = [(0.05, s) for s in (0.10, 0.095, 0.094, 0.094, 0.093)]
    msg = measured_progress(stuck, 25, 0.157, 0.01)
    assert msg is not None and "stuck fraction" in msg and "rank correlation" not in msg
    # fewer than 5 measured steps: no verdict yet
    assert measured_progress(flat[:4], 25, 0.157, 0.01) is None


def _heavy_tailed_moves(**kw):
    """:func:`rejuvenate` (``kernel="auto"``, 30 moves at most) on a product of Student-t (1.5 dof,
    d = 4), 1000 particles drawn from it, seed 1."""
    from vvuq_twin.assimilation.kernels import Evaluation, MoveState, rejuvenate

    d, nu, n = 4, 1.5, 1000

    def evaluate(z, grad=False):
        zero = np.zeros(z.shape[0])
        g = -(nu + 1) * z / (nu + z * z) if grad else None
        return Evaluation(stats.t.logpdf(z, nu).sum(1), zero, zero, g, np.zeros_like(z) if grad else None)

    rng = np.random.default_rng(1)
    z0 = stats.t.rvs(nu, size=(n, d), random_state=rng)
    with np.errstate(over="ignore", invalid="ignore"):
        return rejuvenate(rng, MoveState(z0, evaluate(z0, True)), evaluate, 1.0, kernel="auto",
                          has_gradient=True, max_steps=30, **kw)


def test_independent_proposal_that_levels_off_hands_over_on_its_measured_progress():
    """Heavy tails (product of Student-t, 1.5 dof, d = 4): the pilot picks the Gaussian-mixture
    independent proposal (acceptance ~0.14), whose (1 - acceptance) projection says it would
    decorrelate in time, but the particles in the tails are rarely accepted: the measured decay of
    the stuck fraction says it will not, the rule hands over to a local kernel, and the criterion
    is met (before this rule the proposal ran all 30 moves)."""
    res = _heavy_tailed_moves()
    assert "pilot (independent" in res.kernel_reason and "mixture" in res.kernel_reason
    assert "switched mixture -> " in res.kernel_reason and "measured stuck fraction" in res.kernel_reason
    assert res.kernel in ("mala", "hmc")
    assert res.acceptance[0] < 0.2  # the independent proposal's
    assert res.converged and res.stuck_fraction <= 0.01 and np.max(np.abs(res.rank_correlation)) <= res.criterion
    assert res.n_steps < 30


def test_mala_that_falls_short_hands_over_to_hmc_on_its_measured_progress():
    """Heavy tails (product of Student-t, 1.5 dof, d = 4) with the independent proposals excluded
    (handed over in an earlier stage): the pilot picks MALA, whose diffusive steps decorrelate too
    slowly - before this rule it ran all 30 moves and ended at rank correlation 0.165 > 0.11, not
    converged. Judged by its measured decay it hands over to HMC, which meets the criterion."""
    res = _heavy_tailed_moves(exclude=("independent", "mixture"))
    assert "pilot (mala" in res.kernel_reason
    assert "switched mala -> hmc: measured rank correlation" in res.kernel_reason
    assert res.kernel == "hmc" and "mala" in res.handed_over
    assert res.converged and np.max(np.abs(res.rank_correlation)) <= res.criterion
    assert res.n_steps < 30
