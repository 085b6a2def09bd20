"""Design declared on a twin: closed forms of linear-Gaussian twins, posterior-predictive utilities.

Known answers: the issue's EIG = 1.03972 nats for X = [[1,0],[0,1],[1,1]], sigma = 1, standard
normal prior (through a declared twin); the conjugate posterior's EIG, goal-oriented EIG about a
linear QoI (-0.5 log(1 - rho^2)) and the EVSI of a two-action decision (Gaussian preposterior
closed form) after calibration, each within its reported standard error.
"""

import numpy as np
import pytest
import torch
from scipy import stats

import vvuq_twin as vt
from vvuq_twin.design import (
    BudgetError,
    DesignError,
    EstimatorNotApplicableError,
    eig,
    twin_design_problem,
    twin_design_utilities,
    twin_eig_closed_form,
    twin_linear_gaussian,
)

SIGMA = 0.5
PRIOR_SD = 1.0


def _plane_twin():
    sim = vt.PytensorSimulator(lambda X, p: p["t1"] * X[:, 0] + p["t2"] * X[:, 1], name="plane")
    return vt.Twin("plane", sim, [vt.Parameter("t1", vt.Normal(0, 1)), vt.Parameter("t2", vt.Normal(0, 1))],
                   observation=vt.Gaussian(sigma=1.0))


def _line_twin():
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + p["b"] * X[:, 0], name="line")
    return vt.Twin("line_design", sim,
                   [vt.Parameter("a", vt.Normal(0, PRIOR_SD)), vt.Parameter("b", vt.Normal(0, PRIOR_SD))],
                   observation=vt.Gaussian(sigma=SIGMA))


def test_issue_closed_form_through_a_twin():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    twin = _plane_twin()
    val = twin_eig_closed_form(twin, X, batches=[[0, 1, 2]])
    assert val[0] == pytest.approx(1.03972, abs=1e-5)
    # the same twin as a torch DesignProblem: closed form and nested MC agree
    # the whole design at once is spelled batches="all"
    assert twin_eig_closed_form(twin, X, batches="all")[0] == val[0]
    prob = twin_design_problem(twin, bounds=[[-2.0, -1.0], [2.0, 3.0]])  # (2, d) like DesignProblem
    assert prob.bounds.tolist() == [[-2.0, -1.0], [2.0, 3.0]]
    with pytest.warns(DeprecationWarning, match="bounds=\\(2, d\\)"):
        old = twin_design_problem(twin, [[-2.0, 2.0], [-1.0, 3.0]])  # the (d, 2) spelling
    assert old.bounds.tolist() == prob.bounds.tolist()
    with pytest.raises(DesignError, match="must be \\(2, d\\)"):
        twin_design_problem(twin, bounds=[[-2.0, 2.0], [-1.0, 3.0], [0.0, 1.0]])  # (d, 2) by mistake
    d = torch.as_tensor(X)
    cf = eig(prob, d, method="closed_form")
    assert cf.estimate == pytest.approx(1.03972, abs=1e-5)
    nmc = eig(prob, d, method="nmc", n_outer=4000, n_inner=400, rng=1)
    assert abs(nmc.estimate - 1.03972) < 4 * nmc.se + 0.01


def test_linearity_check_refuses_nonlinear_twins():
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * pt_exp(p["b"] * X[:, 0]), name="exp")
    twin = vt.Twin("nl", sim, [vt.Parameter("a", vt.Normal(0, 1)), vt.Parameter("b", vt.Normal(0, 1))],
                   observation=vt.Gaussian(sigma=1.0))
    with pytest.raises(EstimatorNotApplicableError, match="not linear in its parameters"):
        twin_linear_gaussian(twin, np.linspace(0, 1, 3))
    noisy = vt.Twin("unk", _line_twin().simulator, _line_twin().parameters, observation=vt.Gaussian(sigma=vt.HalfNormal(1)))
    with pytest.raises(EstimatorNotApplicableError, match="known float sigma"):
        twin_eig_closed_form(noisy, np.linspace(0, 1, 3))


def pt_exp(v):
    import pytensor.tensor as pt

    return pt.exp(v)


@pytest.fixture(scope="module")
def line_fit():
    rng = np.random.default_rng(11)
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    y = 0.3 + 0.8 * x + rng.normal(0, SIGMA, x.size)
    data = vt.TwinData(x=x, y=y)
    twin = _line_twin()
    res = vt.calibrate(twin, data, rng=3, draws=1500, tune=500, chains=2, warn=False)
    lg = twin_linear_gaussian(twin, x)
    m, S = lg.posterior(lg.J, y, lg.offset)
    return twin, data, res, m, S


CANDIDATES = np.linspace(-3, 3, 7)


def test_parameter_eig_matches_conjugate_closed_form(line_fit):
    twin, data, res, m, S = line_fit
    u = twin_design_utilities(res, CANDIDATES, rng=5)
    exact = twin_eig_closed_form(twin, CANDIDATES, data=data)
    # hand check of the closed form: 0.5 log(1 + j S j / sigma^2)
    J = np.column_stack([np.ones_like(CANDIDATES), CANDIDATES])
    hand = 0.5 * np.log1p(np.einsum("ij,jk,ik->i", J, S, J) / SIGMA**2)
    np.testing.assert_allclose(exact, hand, rtol=1e-10)
    err = np.abs(u["utility"].values - exact)
    # MC error plus the O(1/N) downward bias of the contrastive bound (N = 2000 draws)
    assert np.all(err < 4 * u["utility_se"].values + 0.02), (u["utility"].values, exact)
    assert u.attrs["best"] in (0, len(CANDIDATES) - 1)  # the ends of the range
    assert u.attrs["target"] == "parameters" and u.attrs["n_draws"] == 2000


def test_goal_oriented_design_differs_and_matches_closed_form(line_fit):
    twin, data, res, m, S = line_fit
    post = res.posterior
    q = post["a"]  # QoI: the intercept, i.e. the true process at x = 0
    u = twin_design_utilities(res, CANDIDATES, target=q, rng=6)
    J = np.column_stack([np.ones_like(CANDIDATES), CANDIDATES])
    jq = np.array([1.0, 0.0])
    cov_yq = J @ S @ jq
    var_y = np.einsum("ij,jk,ik->i", J, S, J) + SIGMA**2
    rho2 = cov_yq**2 / (var_y * (jq @ S @ jq))
    exact = -0.5 * np.log1p(-rho2)
    assert np.all(np.abs(u["utility"].values - exact) < 4 * u["utility_se"].values + 0.02)
    assert int(np.argmax(exact)) == 3 and u.attrs["best"] == 3  # measure at x = 0
    u_par = twin_design_utilities(res, CANDIDATES, rng=6)
    assert u_par.attrs["best"] != u.attrs["best"]  # parameters and QoI call for different designs


def test_evsi_of_two_action_decision(line_fit):
    twin, data, res, m, S = line_fit
    post = res.posterior
    xs = 2.0
    q = (post["a"] + xs * post["b"] - 1.5).values  # act (gain q) or not (0)
    loss = np.stack([np.zeros_like(q), -q], axis=-1)
    u = twin_design_utilities(res, CANDIDATES, target={"loss": loss}, rng=7)
    J = np.column_stack([np.ones_like(CANDIDATES), CANDIDATES])
    jq = np.array([1.0, xs])
    mu = float(jq @ m) - 1.5
    s2 = (J @ S @ jq) ** 2 / (np.einsum("ij,jk,ik->i", J, S, J) + SIGMA**2)
    s = np.sqrt(s2)
    exact = mu * stats.norm.cdf(mu / s) + s * stats.norm.pdf(mu / s) - max(mu, 0.0)
    assert np.all(u["utility"].values > -3 * u["utility_se"].values)
    assert np.all(np.abs(u["utility"].values - exact) < 4 * u["utility_se"].values + 0.01), (u["utility"].values, exact)


def test_batches_and_reproducibility(line_fit):
    twin, data, res, m, S = line_fit
    b = [[0, 6], [2, 4], [3]]
    u1 = twin_design_utilities(res, CANDIDATES, batches=b, rng=9, n_draws=800)
    u2 = twin_design_utilities(res, CANDIDATES, batches=b, rng=9, n_draws=800)
    np.testing.assert_array_equal(u1["utility"].values, u2["utility"].values)
    exact = twin_eig_closed_form(twin, CANDIDATES, data=data, batches=b)
    assert np.all(np.abs(u1["utility"].values - exact) < 4 * u1["utility_se"].values + 0.03)
    assert u1["label"].values[0] == "x=-3+x=3"


def test_bad_input_is_refused_before_prediction(line_fit):
    twin, data, res, m, S = line_fit
    with pytest.raises(DesignError, match="one value per posterior draw"):
        twin_design_utilities(res, CANDIDATES, target=np.ones(7))
    with pytest.raises(DesignError, match="constant"):
        twin_design_utilities(res, CANDIDATES, target=np.ones((2, 1500)))
    with pytest.raises(DesignError, match="refers to rows"):
        twin_design_utilities(res, CANDIDATES, batches=[[0, 9]])
    with pytest.raises(BudgetError, match="at least 20"):
        twin_design_utilities(res, CANDIDATES, n_draws=5)
    with pytest.raises(DesignError, match="NaN"):
        twin_design_utilities(res, np.array([0.0, np.nan]))
    with pytest.raises(DesignError, match="at least two actions"):
        twin_design_utilities(res, CANDIDATES, target={"loss": np.zeros((2, 1500, 1))})


def _conjugate(twin, data, xs, ys):
    lg = twin_linear_gaussian(twin, CANDIDATES)
    J = np.vstack([twin_linear_gaussian(twin, data.x[:, 0]).J, lg.J[list(xs)]]) if len(xs) else \
        twin_linear_gaussian(twin, data.x[:, 0]).J
    y = np.concatenate([data.y, np.asarray(ys, float)])
    return lg.posterior(J, y, np.zeros(y.size))


def test_steering_loop_on_a_twin_matches_conjugate_updates(line_fit):
    """Known answer of the one loop (vvuq_twin.design.steer) on a conjugate linear-Gaussian twin:
    at every step the utility of every candidate left in the pool is the closed-form EIG
    0.5 log(1 + j S_t j / sigma^2) under the conjugate posterior S_t of the data so far, the
    chosen candidate is the closed-form best, and the final posterior is the conjugate update."""
    from vvuq_twin.design import TwinPosterior, steer

    twin, data, res, m, S = line_fit
    noise = np.random.default_rng(99).normal(0, SIGMA, CANDIDATES.size)
    truth = 0.3 + 0.8 * CANDIDATES + noise
    post = TwinPosterior(res)
    rec = steer(res, lambda i: truth[i], n_steps=3, candidates=CANDIDATES, posterior=post, rng=4)
    final = post.result
    chosen = rec["chosen"].values
    assert len(set(chosen.tolist())) == 3
    assert np.isnan(rec["utility"].values[1, chosen[0]])  # measured candidates leave the pool
    J = np.column_stack([np.ones_like(CANDIDATES), CANDIDATES])
    for t in range(3):
        _, St = _conjugate(twin, data, chosen[:t], truth[chosen[:t]])
        exact = 0.5 * np.log1p(np.einsum("ij,jk,ik->i", J, St, J) / SIGMA**2)
        pool = np.setdiff1d(np.arange(CANDIDATES.size), chosen[:t])
        u = rec["utility"].values[t]
        assert np.all(np.isnan(np.delete(u, pool)))
        # MC error, the O(1/N) bias of the contrastive bound (N = 1000) and the SMC approximation
        assert np.all(np.abs(u[pool] - exact[pool]) < 4 * rec["chosen_utility_se"].values[t] + 0.04), (t, u, exact)
        assert exact[chosen[t]] > exact[pool].max() - 0.04  # the closed-form best (up to MC ties)
        assert rec["chosen_utility"].values[t] == u[chosen[t]]
    assert chosen[0] in (0, 6)
    # the final posterior is the conjugate update with the chosen measurements
    mf, Sf = _conjugate(twin, data, chosen, truth[chosen])
    p = final.idata.posterior
    for i, name in enumerate("ab"):
        sd = np.sqrt(Sf[i, i])
        assert abs(float(p[name].mean()) - mf[i]) < 0.15 * sd, name
        assert abs(float(p[name].std()) / sd - 1) < 0.15, name
        np.testing.assert_allclose(rec[f"{name}_sd"].values[-1], float(p[name].std()))
    # the posterior sd of the slope shrinks at every step
    assert np.all(np.diff(rec["b_sd"].values) < 0)


def _reference_steer_twin(result, x, measure, n_steps, rng, n_draws):
    """The pre-#13 body of steer_twin (parameter target, utility designer), kept here as an
    independent reference for the one loop."""
    from vvuq_twin._rng import as_generator, seed_int
    from vvuq_twin.assimilation import assimilate

    gen = as_generator(rng)
    pool, state, current = list(range(len(x))), None, result
    chosen, ys, util = [], [], np.full((n_steps, len(x)), np.nan)
    sds = [float(result.idata.posterior["b"].std())]
    for step in range(n_steps):
        rows = np.asarray(pool)
        u = twin_design_utilities(current, x[rows], n_draws=n_draws, rng=seed_int(gen))
        util[step, rows] = u["utility"].values
        idx = int(rows[int(u.attrs["best"])])
        y = float(measure(idx))
        pool.remove(idx)
        chosen.append(idx)
        ys.append(y)
        new = vt.TwinData(x=x[[idx]][:, None], y=np.array([y]), input_names=result.data.input_names)
        state = assimilate(state if state is not None else current, new, rng=seed_int(gen))
        current = state.to_result(rng=seed_int(gen))
        sds.append(float(current.idata.posterior["b"].std()))
    return np.asarray(chosen), np.asarray(ys), util, np.asarray(sds), current


def test_old_and_new_steering_entries_give_identical_records(line_fit):
    """steer_twin is a deprecated wrapper of steer: same record at the same seed, and both equal
    the pre-#13 loop body (an independent re-implementation above)."""
    from vvuq_twin.design import steer, steer_twin

    twin, data, res, m, S = line_fit
    truth = 0.3 + 0.8 * CANDIDATES
    new = steer(res, lambda i: truth[i], n_steps=2, candidates=CANDIDATES, n_draws=200, rng=21)
    with pytest.warns(DeprecationWarning, match="vvuq_twin.design.steer\\(result, measure, candidates=x"):
        old, final = steer_twin(res, CANDIDATES, lambda i: truth[i], n_steps=2, n_draws=200, rng=21)
    import xarray as xr

    xr.testing.assert_identical(new, old)
    chosen, ys, util, sds, ref_final = _reference_steer_twin(res, CANDIDATES, lambda i: truth[i], 2, 21, 200)
    np.testing.assert_array_equal(new["chosen"].values, chosen)
    np.testing.assert_array_equal(new["y"].values, ys)
    np.testing.assert_array_equal(new["utility"].values, util)
    np.testing.assert_array_equal(new["b_sd"].values, sds)
    np.testing.assert_array_equal(final.idata.posterior["b"].values, ref_final.idata.posterior["b"].values)
    # keywords that belong to the other kind of model are refused before any work
    with pytest.raises(DesignError, match="does not take \\['truth'\\]"):
        steer(res, lambda i: truth[i], n_steps=1, candidates=CANDIDATES, truth=[0.3, 0.8])
    with pytest.raises(DesignError, match="needs `candidates`"):
        steer(res, lambda i: truth[i], n_steps=1)
    with pytest.raises(DesignError, match="exceeds the 7 candidates"):
        steer(res, lambda i: truth[i], n_steps=8, candidates=CANDIDATES)
    with pytest.raises(DesignError, match="must be finite"):
        steer(res, lambda i: np.nan, n_steps=1, candidates=CANDIDATES, n_draws=50, rng=0)


def test_preposterior_utility_is_the_one_estimator():
    """The estimator shared by twin_design_utilities and the climate loop: EIG of z ~ N(h, sd)
    with h ~ N(0, s^2) is 0.5 log(1 + s^2 / sd^2); the prior-contrastive term is a lower bound
    that tightens like 1/N; a non-square L is refused."""
    from vvuq_twin.design import preposterior_utility

    rng = np.random.default_rng(0)
    n, s, sd = 2000, 1.0, 0.5
    h = rng.normal(0, s, n)
    z = h + sd * rng.standard_normal(n)
    L = stats.norm.logpdf(z[:, None], loc=h[None, :], scale=sd)
    u, ess = preposterior_utility(L)
    truth = 0.5 * np.log(1 + s**2 / sd**2)
    assert abs(u.mean() - truth) < 4 * u.std(ddof=1) / np.sqrt(n) + 0.01
    # a linear QoI (q = h): the Gaussian entropy reduction is exact in expectation
    uq, _ = preposterior_utility(L, qoi=h)
    assert abs(uq.mean() - truth) < 4 * uq.std(ddof=1) / np.sqrt(n) + 0.02
    assert 1 < ess < n
    with pytest.raises(DesignError, match="square"):
        preposterior_utility(L[:, :10])
