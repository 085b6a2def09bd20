"""Decisions under uncertainty: known optima, chance constraints, BO, value of information."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, optimize, stats

from vvuq_twin.risk import TailSampleWarning, buffered_failure_probability
from vvuq_twin.decisions import (
    AffineInDecision,
    BufferedConstraint,
    ChanceConstraint,
    Decision,
    DecisionSpecificationError,
    DecisionVariable,
    InfeasibleDecisionError,
    SuperquantileConstraint,
    evpi,
    evsi,
    evsi_regression,
    evsi_nested,
    optimize_bo,
    solve,
    tightened_epsilon,
)

# Rockafellar & Uryasev (2000), Section 3: three assets (S&P 500, government bonds, small cap)
RU_MU = np.array([0.0101110, 0.0043532, 0.0137058])
RU_COV = np.array(
    [
        [0.00324625, 0.00022983, 0.00420395],
        [0.00022983, 0.00049937, 0.00019247],
        [0.00420395, 0.00019247, 0.00764097],
    ]
)
RU_MINVAR = np.array([0.452013, 0.115573, 0.432414])  # published minimum-variance portfolio
C95 = stats.norm.pdf(stats.norm.ppf(0.95)) / 0.05


def _ru_decision():
    return Decision(
        [DecisionVariable(n, 0.0, 1.0) for n in ("sp500", "bonds", "small_cap")],
        AffineInDecision(lambda r: -r),  # loss = -return
        risk="superquantile",
        alpha=0.95,
        linear_constraints=[
            optimize.LinearConstraint(np.ones((1, 3)), 1.0, 1.0),
            optimize.LinearConstraint(RU_MU[None, :], 0.011, np.inf),
        ],
    )


def _gauss_cvar(x):
    return -RU_MU @ x + C95 * np.sqrt(x @ RU_COV @ x)


def test_ru_portfolio_lp_matches_published_optimum():
    # independent computation: for Gaussian returns min-CVaR = min-variance at the return target
    A = np.vstack([np.ones(3), RU_MU])
    K = np.block([[2 * RU_COV, A.T], [A, np.zeros((2, 2))]])
    x_star = np.linalg.solve(K, np.r_[0, 0, 0, 1.0, 0.011])[:3]
    np.testing.assert_allclose(x_star, RU_MINVAR, atol=2e-6)
    R = np.random.default_rng(0).multivariate_normal(RU_MU, RU_COV, size=10_000)
    res = solve(_ru_decision(), R)
    x = res.decision.values
    assert res.method == "lp"
    assert list(res.decision["variable"].values) == ["sp500", "bonds", "small_cap"]
    assert x.sum() == pytest.approx(1.0, abs=1e-8) and RU_MU @ x >= 0.011 - 1e-9
    np.testing.assert_allclose(x, RU_MINVAR, atol=0.08)  # the CVaR surface is flat near x*
    # true CVaR of the SAA portfolio is within 1% of the optimum CVaR 0.11591
    assert _gauss_cvar(x_star) == pytest.approx(0.115908, abs=1e-5)
    assert 0 <= _gauss_cvar(x) - _gauss_cvar(x_star) < 0.01 * _gauss_cvar(x_star)
    assert abs(res.objective.estimate - _gauss_cvar(x_star)) < 4 * res.objective.se
    # independent solver on the same draws: SLSQP on the non-smooth sample CVaR agrees with the LP
    res2 = solve(_ru_decision(), R, method="slsqp")
    np.testing.assert_allclose(res2.decision.values, x, atol=1e-4)
    assert res2.objective.estimate == pytest.approx(res.objective.estimate, rel=1e-6)


def test_ru_portfolio_too_few_samples_is_worse():
    # failure case: 60 scenarios (3 in the 5% tail) -> the SAA portfolio is clearly suboptimal
    gaps = []
    for s in range(5):
        R = np.random.default_rng(100 + s).multivariate_normal(RU_MU, RU_COV, size=60)
        with pytest.warns(TailSampleWarning, match="3.0 of 60 draws"):  # the report flags it
            gaps.append(_gauss_cvar(solve(_ru_decision(), R).decision.values))
    assert np.mean(gaps) - 0.115908 > 0.01 * 0.115908


def test_newsvendor_critical_fractile():
    c, p = 1.0, 3.0
    demand = stats.gamma(4.0, scale=5.0)
    D = demand.rvs(size=20_000, random_state=np.random.default_rng(1))
    dec = Decision([DecisionVariable("order", 0.0, 100.0)], lambda d, xi: c * d[0] - p * np.minimum(d[0], xi))
    res = solve(dec, D)
    q_star = demand.ppf((p - c) / p)  # critical fractile
    se_q = np.sqrt((2 / 3) * (1 / 3) / D.size) / demand.pdf(q_star)
    assert abs(float(res.decision[0]) - q_star) < 4 * se_q
    # the SAA optimum is the empirical critical-fractile quantile (independent computation)
    assert float(res.decision[0]) == pytest.approx(np.quantile(D, 2 / 3), abs=0.15)
    exact = c * q_star - p * integrate.quad(demand.sf, 0, q_star)[0]
    assert abs(res.objective.estimate - exact) < 4 * res.objective.se


def test_gaussian_chance_constraint_deterministic_equivalent():
    # max d s.t. P(d + xi > b) <= eps, xi ~ N(mu, sigma): d* = b - (mu + z_{1-eps} sigma)
    mu, sigma, b, eps = 1.0, 2.0, 5.0, 0.05
    xi = np.random.default_rng(2).normal(mu, sigma, 20_000)
    dec = Decision(
        [DecisionVariable("d", -20.0, 20.0)],
        lambda d, x: -d[0] * np.ones(len(x)),
        constraints=[ChanceConstraint(lambda d, x: d[0] + x - b, eps, name="overload")],
    )
    res = solve(dec, xi)
    d_star = b - (mu + stats.norm.ppf(1 - eps) * sigma)
    se = sigma * np.sqrt(eps * (1 - eps) / xi.size) / stats.norm.pdf(stats.norm.ppf(1 - eps))
    assert abs(float(res.decision[0]) - d_star) < 4 * se
    row = res.constraints.sel(constraint="overload")
    assert str(row["kind"].values) == "probability" and float(row["estimate"]) <= eps
    # Clopper-Pearson bound and the in-sample caveat: at the SAA optimum the constraint is active
    k = int(row["n_violations"])
    assert float(row["upper_bound"]) == pytest.approx(stats.beta.ppf(0.95, k + 1, xi.size - k))
    assert 0.3 < float(row["prob_satisfied"]) < 0.7
    # with confidence=0.95 the tightened SAA level certifies the constraint on fresh draws
    dec95 = Decision(dec.variables, dec.loss, constraints=[
        ChanceConstraint(lambda d, x: d[0] + x - b, eps, name="overload", confidence=0.95)])
    fresh = np.random.default_rng(3).normal(mu, sigma, 200_000)
    res95 = solve(dec95, xi, validation_samples=fresh)
    assert float(res95.decision[0]) < float(res.decision[0])
    true_violation = stats.norm.sf(b - float(res95.decision[0]), mu, sigma)
    assert true_violation <= eps
    assert not res95.in_sample and float(res95.constraints["estimate"][0]) < eps


def test_chance_constraint_two_dimensional_socp_equivalent():
    # min -(d1 + 2 d2) s.t. P(xi . d > 10) <= 0.1 with xi ~ N(m, S): the deterministic equivalent
    # m.d + z_0.9 sqrt(d' S d) <= 10 solved independently
    m = np.array([1.0, 2.0])
    S = np.array([[1.0, 0.3], [0.3, 0.5]])
    xi = np.random.default_rng(4).multivariate_normal(m, S, 20_000)
    vs = [DecisionVariable("d1", 0.0, 5.0), DecisionVariable("d2", 0.0, 5.0)]
    dec = Decision(vs, lambda d, x: -(d[0] + 2 * d[1]) * np.ones(len(x)),
                   constraints=[ChanceConstraint(lambda d, x: x @ d - 10.0, 0.1)])
    res = solve(dec, xi, rng=0)
    z = stats.norm.ppf(0.9)
    ref = optimize.minimize(
        lambda d: -(d[0] + 2 * d[1]), [1.0, 1.0], bounds=[(0, 5)] * 2, method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda d: 10.0 - m @ d - z * np.sqrt(d @ S @ d)}],
    )
    d = res.decision.values
    assert -(d[0] + 2 * d[1]) == pytest.approx(ref.fun, rel=0.02)
    assert m @ d + z * np.sqrt(d @ S @ d) == pytest.approx(10.0, rel=0.02)


def test_buffered_and_superquantile_constraints_lp_closed_form():
    # bPOF(d + xi - b) <= eps  <=>  CVaR_{1-eps}(xi) <= b - d : d* = b - mu - sigma phi(z)/eps
    mu, sigma, b, eps = 1.0, 2.0, 5.0, 0.05
    xi = np.random.default_rng(5).normal(mu, sigma, 20_000)
    ones = AffineInDecision(lambda x: np.ones((len(x), 1)), lambda x: x - b)
    dec = Decision([DecisionVariable("d", -20.0, 20.0)], AffineInDecision(lambda x: -np.ones((len(x), 1))),
                   constraints=[BufferedConstraint(ones, eps)])
    res = solve(dec, xi)
    assert res.method == "lp"
    d_star = b - mu - sigma * stats.norm.pdf(stats.norm.ppf(1 - eps)) / eps
    assert float(res.decision[0]) == pytest.approx(b - np.sort(xi)[-1000:].mean(), abs=1e-6)
    assert abs(float(res.decision[0]) - d_star) < 4 * sigma * 0.026  # CVaR_0.95 SE of N(0,1) at n=2e4 ~ 0.026
    row = res.constraints.isel(constraint=0)
    assert float(row["estimate"]) == pytest.approx(eps, abs=1e-6)
    # buffered implies the chance constraint: violation probability below eps
    assert stats.norm.sf(b - float(res.decision[0]), mu, sigma) < eps
    # same problem as a superquantile bound, and via SLSQP (independent solver)
    dec2 = Decision(dec.variables, dec.loss, constraints=[SuperquantileConstraint(ones, 0.95, 0.0)])
    assert float(solve(dec2, xi).decision[0]) == pytest.approx(float(res.decision[0]), abs=1e-6)
    assert float(solve(dec2, xi, method="slsqp").decision[0]) == pytest.approx(float(res.decision[0]), abs=1e-4)


def test_differential_evolution_reproducible_and_agrees():
    xi = np.random.default_rng(11).normal(1.0, 2.0, 500)
    dec = Decision([DecisionVariable("d", -20.0, 20.0)], lambda d, x: -d[0] * np.ones(len(x)),
                   constraints=[ChanceConstraint(lambda d, x: d[0] + x - 5.0, 0.1)])
    a = solve(dec, xi, method="differential_evolution", rng=3)
    b = solve(dec, xi, method="differential_evolution", rng=3)
    assert float(a.decision[0]) == float(b.decision[0])
    # SAA optimum: b minus the 450th order statistic (at most 50 of 500 draws may violate)
    assert float(a.decision[0]) == pytest.approx(5.0 - np.sort(xi)[449], abs=1e-3)
    assert float(solve(dec, xi).decision[0]) == pytest.approx(5.0 - np.sort(xi)[449], abs=1e-6)


def test_draws_from_xarray_and_dataset_roundtrip(tmp_path):
    xi = np.random.default_rng(6).normal(1.0, 2.0, (4, 2500))
    da = xr.DataArray(xi, dims=("chain", "draw"))
    dec = Decision([DecisionVariable("d", -20.0, 20.0)], lambda d, x: -d[0] * np.ones(len(x)),
                   constraints=[ChanceConstraint(lambda d, x: d[0] + x - 5.0, 0.05)])
    r1 = solve(dec, da)
    r2 = solve(dec, xi.ravel())
    assert float(r1.decision[0]) == pytest.approx(float(r2.decision[0]))
    ds = r1.to_dataset()
    ds.to_netcdf(tmp_path / "decision.nc")
    back = xr.load_dataset(tmp_path / "decision.nc")
    assert float(back["decision"].sel(variable="d")) == pytest.approx(float(r1.decision[0]))


def test_infeasible_chance_constraint_reports_smallest_risk():
    xi = np.random.default_rng(7).standard_normal(5000)
    dec = Decision([DecisionVariable("d", 0.0, 1.0)], lambda d, x: -d[0] * np.ones(len(x)),
                   constraints=[ChanceConstraint(lambda d, x: d[0] + x, 0.05, name="c1")])
    with pytest.raises(InfeasibleDecisionError, match="smallest achievable violation probability is 0.4") as ei:
        solve(dec, xi, rng=0)
    # the truth on these draws: the violation fraction is smallest at d = 0
    assert np.mean(xi > 0) == pytest.approx(0.487, abs=1e-3)
    assert ei.value.smallest_risk["c1"] == pytest.approx(np.mean(xi > 0), abs=2e-3)
    assert ei.value.argmin["c1"][0] == pytest.approx(0.0, abs=1e-3)
    # buffered version through the LP: min bPOF of d + xi over d in [0, 1] is bPOE(0) of N(0,1) = 1
    decb = Decision([DecisionVariable("d", 0.0, 1.0)], AffineInDecision(lambda x: -np.ones((len(x), 1))),
                    constraints=[BufferedConstraint(AffineInDecision(lambda x: np.ones((len(x), 1)), lambda x: x), 0.05)])
    with pytest.raises(InfeasibleDecisionError, match="smallest achievable buffered failure probability is 0.99") as eb:
        solve(decb, xi, rng=0)
    assert eb.value.smallest_risk["buffered"] == pytest.approx(buffered_failure_probability(xi, 0.0).estimate)


def test_bad_declarations():
    with pytest.raises(DecisionSpecificationError, match="'x' has no finite bounds .*DecisionVariable\\('x', lower=0.0, upper=10.0\\)"):
        DecisionVariable("x")
    with pytest.raises(DecisionSpecificationError, match="no finite bounds"):
        DecisionVariable("x", 0.0, np.inf)
    with pytest.raises(DecisionSpecificationError, match="lower < upper"):
        DecisionVariable("x", 1.0, 0.0)
    v = DecisionVariable("x", 0.0, 1.0)
    with pytest.raises(DecisionSpecificationError, match="'epsilon' parameter of ChanceConstraint must be in the open interval"):
        ChanceConstraint(lambda d, x: x, 1.5)
    with pytest.raises(DecisionSpecificationError, match="needs alpha"):
        Decision([v], lambda d, x: x, risk="superquantile")
    with pytest.raises(DecisionSpecificationError, match="unique"):
        Decision([v, v], lambda d, x: x)
    dec = Decision([v], lambda d, x: -d[0] * np.ones(len(x)), constraints=[ChanceConstraint(lambda d, x: x, 0.1)])
    with pytest.raises(DecisionSpecificationError, match="method='lp' needs"):
        solve(dec, np.ones(10), method="lp")
    with pytest.raises(DecisionSpecificationError, match="contain 1 NaN"):
        solve(dec, np.array([1.0, np.nan]))
    with pytest.raises(DecisionSpecificationError, match="one value per draw"):
        solve(Decision([v], lambda d, x: np.ones(3)), np.ones(10))
    with pytest.raises(DecisionSpecificationError, match="at least n=59 draws"):
        tightened_epsilon(0.05, 30, 0.95)


class _NewsvendorSim:
    """Objective needing fresh simulator runs: mean cost over 400 simulated demands at order q."""

    def __call__(self, d):
        rng = np.random.default_rng([7, int(abs(d[0]) * 1e6)])
        demand = rng.gamma(4.0, 5.0, size=400)
        return float(np.mean(d[0] - 3.0 * np.minimum(d[0], demand)))


def _nv_exact(q):
    g = stats.gamma(4.0, scale=5.0)
    return q - 3.0 * integrate.quad(g.sf, 0, q)[0]


def test_bayesian_optimisation_newsvendor():
    torch = pytest.importorskip("torch")
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = optimize_bo([DecisionVariable("order", 0.0, 60.0)], _NewsvendorSim(), n_iterations=8, rng=0,
                        num_restarts=4, raw_samples=64, mc_samples=64)
        r0 = optimize_bo([DecisionVariable("order", 0.0, 60.0)], _NewsvendorSim(), n_initial=2,
                         n_iterations=0, rng=0)
    # global torch state untouched (threads restored, RNG forked)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)
    q_star = stats.gamma(4.0, scale=5.0).ppf(2 / 3)
    q = float(r.decision[0])
    gap = _nv_exact(q) - _nv_exact(q_star)
    assert 0 <= gap < 0.01 * abs(_nv_exact(q_star))
    assert abs(q - q_star) < 4.0
    assert r.n_evaluations == 4 + 8 and r.history.sizes["evaluation"] == 12
    # the GP's figure at the decision agrees with the exact expected cost within its noise
    assert abs(r.objective_mean - _nv_exact(q)) < 4 * max(r.objective_sd, 0.2)
    # failure case: the two-point design alone is much worse
    assert _nv_exact(float(r0.decision[0])) - _nv_exact(q_star) > 5 * gap


# ---------------------------------------------------------------- value of information

MU0, S0, SIG, NOBS = 0.2, 1.0, 2.0, 4


def _conjugate_draws(n, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(MU0, S0, n)
    ybar = rng.normal(theta, SIG / np.sqrt(NOBS))
    losses = np.column_stack([np.zeros(n), -theta])  # action 1 gains theta
    return theta, ybar, losses


def _closed_form(s):
    # E[max(M, 0)] - max(mu0, 0) for M ~ N(mu0, s^2): value of deciding after the information
    return MU0 * stats.norm.cdf(MU0 / s) + s * stats.norm.pdf(MU0 / s) - max(MU0, 0.0)


S_PRE = np.sqrt(S0**4 / (S0**2 + SIG**2 / NOBS))  # sd of the preposterior mean


def test_evpi_and_evsi_conjugate_normal_closed_form():
    theta, ybar, L = _conjugate_draws(40_000, 8)
    e = evpi(L)
    assert abs(e.estimate - _closed_form(S0)) < 4 * e.se and e.prior_action == 1
    v = evsi_regression(L, ybar)
    assert _closed_form(S_PRE) == pytest.approx(0.19330, abs=1e-4)
    assert abs(v.estimate - _closed_form(S_PRE)) < 4 * v.se
    assert v.estimate < e.estimate
    # labelled input
    da = xr.DataArray(L, dims=("sample", "action"), coords={"action": ["hold", "invest"]})
    assert evpi(da).prior_action == "invest"


def test_evsi_nested_preposterior():
    theta, ybar, L = _conjugate_draws(20_000, 9)

    v = evsi_nested(L, ybar[:4000], _ConjugateUpdate())
    assert abs(v.estimate - _closed_form(S_PRE)) < 4 * v.se


class _ConjugateUpdate:
    def __call__(self, y):
        prec = 1 / S0**2 + NOBS / SIG**2
        m = (MU0 / S0**2 + NOBS * y[0] / SIG**2) / prec
        return np.array([0.0, -m])


def test_evsi_bad_summary_statistic_understates():
    # failure case: a linear fit on ybar**3 misses E[theta | y] -> EVSI far below the truth
    theta, ybar, L = _conjugate_draws(40_000, 10)
    assert evsi_regression(L, ybar**3, degree=1).estimate < 0.5 * _closed_form(S_PRE)
    # uninformative "measurement": EVSI ~ 0
    noise = np.random.default_rng(0).standard_normal(40_000)
    assert abs(evsi_regression(L, noise).estimate) < 0.01


def test_voi_bad_input():
    with pytest.raises(DecisionSpecificationError, match="shape \\(n_samples, n_actions\\)"):
        evpi(np.ones(5))
    with pytest.raises(DecisionSpecificationError, match="one row per loss sample"):
        evsi_regression(np.ones((10, 2)), np.ones(3))
    with pytest.raises(DecisionSpecificationError, match="no action dim 'action'"):
        evpi(xr.DataArray(np.ones((5, 2)), dims=("sample", "choice")))


def test_decisions_evsi_is_a_deprecated_alias_of_evsi_regression():
    rng = np.random.default_rng(0)
    L = rng.normal(size=(400, 2))
    y = L[:, 0] + rng.normal(size=400)
    with pytest.warns(DeprecationWarning, match="evsi_regression"):
        old = evsi(L, y)
    assert old == evsi_regression(L, y)


# ---------------------------------------------------------------- one EVSI implementation

def _normal_normal_loglik(seed, n_out=2000, n_draws=4000, sig=SIG):
    """Draws of the belief, simulated outcomes from separate prior draws, L[i, j] = log p(ybar_i | theta_j)."""
    _, _, L = _conjugate_draws(n_draws, seed)
    theta_in = -L[:, 1]
    _, ybar_out, _ = _conjugate_draws(n_out, seed + 1)
    ll = stats.norm.logpdf(ybar_out[:, None], loc=theta_in[None, :], scale=sig / np.sqrt(NOBS))
    return L, ll


def test_evsi_importance_normal_normal_closed_form():
    """Preposterior analysis of the normal-normal two-action decision: EVSI = E[max(M, 0)] -
    max(mu0, 0), M ~ N(mu0, S_pre^2) (0.19330), by importance weighting of the belief's draws."""
    from vvuq_twin.decisions import evsi_importance

    L, ll = _normal_normal_loglik(30)
    v = evsi_importance(L, ll)
    assert abs(v.estimate - _closed_form(S_PRE)) < 4 * v.se + 0.005, (v.estimate, v.se)
    assert v.prior_action == 1 and v.measure == "evsi" and 100 < v.details["ess_q05"] < 4000
    # the same estimate as the regression and the user-update estimators, within their errors
    _, ybar, Lr = _conjugate_draws(40_000, 8)
    r = evsi_regression(Lr, ybar)
    assert abs(v.estimate - r.estimate) < 4 * np.hypot(v.se, r.se) + 0.005


def test_evsi_importance_failure_cases():
    from vvuq_twin.decisions import evsi_importance

    L, ll = _normal_normal_loglik(31)
    # a likelihood that ignores the data: nothing is learnt, EVSI ~ 0 (far from 0.193)
    flat = evsi_importance(L, np.zeros_like(ll))
    assert abs(flat.estimate) < 1e-12
    # a noise sd stated 10x too large understates the value of the measurement
    _, ll_wide = _normal_normal_loglik(31, sig=10 * SIG)
    assert evsi_importance(L, ll_wide).estimate < 0.5 * _closed_form(S_PRE)
    with pytest.raises(DecisionSpecificationError, match="one column per loss draw"):
        evsi_importance(L, ll[:, :10])
    bad = ll.copy()
    bad[3] = -np.inf
    with pytest.raises(DecisionSpecificationError, match="simulated outcomes \\[3\\]"):
        evsi_importance(L, bad)


def test_every_evsi_goes_through_one_formula():
    """design.twin_design_utilities' EVSI terms and design.evsi's nested estimate are the
    decisions module's evsi_importance on the same numbers (to rounding)."""
    import torch

    from vvuq_twin.decisions import evsi_importance
    from vvuq_twin.design import DecisionLoss, evsi, preposterior_utility, torch_seed
    from vvuq_twin.testing.problems_design import linear_gaussian_problem

    rng = np.random.default_rng(5)
    n = 400
    theta = rng.normal(MU0, S0, n)
    y = rng.normal(theta, SIG / np.sqrt(NOBS))
    ll = stats.norm.logpdf(y[:, None], loc=theta[None, :], scale=SIG / np.sqrt(NOBS))
    loss = np.column_stack([np.zeros(n), -theta])
    u, _ = preposterior_utility(ll, loss=loss)
    assert u.mean() == pytest.approx(evsi_importance(loss, ll).estimate, rel=1e-12)

    pr = linear_gaussian_problem().with_target(
        DecisionLoss(lambda th: torch.stack([-th[..., 0], torch.zeros_like(th[..., 0])], -1), ["act", "skip"]))
    x = pr.check_design([[2.0, 0.0]])
    est = evsi(pr, x, n_outer=400, n_inner=300, n_batches=4, rng=7)
    vals = []
    with torch_seed(7, pr.device), torch.no_grad():
        for _ in range(4):
            th_out, th_in = pr.sample_prior(100), pr.sample_prior(300)
            yy = pr.simulate(th_out, x[None])
            lli = pr.log_likelihood(yy[:, None, :], th_in[None], x[None]).numpy()
            vals.append(evsi_importance(pr.target.loss(th_in).numpy(), lli).estimate)
    assert est.estimate == pytest.approx(np.mean(vals), rel=1e-10)
    assert est.se == pytest.approx(np.std(vals, ddof=1) / 2, rel=1e-8)
