"""Optimal designs: D-optimal quadratic regression, botorch on noisy utilities, and goal-oriented
designs (QoI information, EVSI) that differ from the parameter-optimal one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vvuq_twin.design import (
    BudgetError,
    DecisionLoss,
    DesignError,
    EstimatorNotApplicableError,
    ParameterSubset,
    QoI,
    candidate_utilities,
    eig_closed_form,
    eig_nmc,
    evsi,
    optimize_design,
    select_exhaustive,
    select_greedy,
    utility,
)
from vvuq_twin.testing.problems_design import linear_gaussian_problem, quadratic_regression_problem

GRID = np.linspace(-1, 1, 11)[:, None]

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test machine's cores are shared; one intra-op thread avoids OpenMP spin contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



def test_d_optimal_quadratic_regression_exhaustive():
    pr = quadratic_regression_problem()
    three = select_exhaustive(pr, GRID, 3)
    assert sorted(three["design"].values.ravel()) == pytest.approx([-1, 0, 1])
    six = select_exhaustive(pr, GRID, 6)
    assert six.attrs["n_combinations"] == math.comb(16, 6)
    w = six["weight"].to_series()
    x = six["candidates"].values.ravel()
    assert {round(float(v), 6) for v in x[w.values > 0]} == {-1.0, 0.0, 1.0}
    assert w.values[w.values > 0] == pytest.approx([1 / 3] * 3)
    # independent check: under the vague prior the utility is the D-criterion 0.5 log det(F^T F / s^2)
    # + 0.5 log det(prior cov), and det M(xi*) = 4/27 per observation for weights 1/3 on {-1,0,1}
    F = np.column_stack([np.ones(6), six["design"].values.ravel(), six["design"].values.ravel() ** 2])
    d_crit = 0.5 * np.linalg.slogdet(F.T @ F)[1] + 0.5 * 3 * math.log(100.0**2)
    assert float(six["utility"]) == pytest.approx(d_crit, abs=1e-3)
    assert np.linalg.det(F.T @ F / 6) == pytest.approx(4 / 27)


def test_d_optimal_greedy_reaches_weights_one_third():
    pr = quadratic_regression_problem()
    g = select_greedy(pr, GRID, 6)
    assert g["candidate_utility"].dims == ("step", "candidate")
    assert np.all(np.diff(g["step_utility"].values) > 0)
    assert sorted(g["design"].values.ravel()) == pytest.approx([-1, -1, 0, 0, 1, 1])


def test_exhaustive_refuses_huge_search_and_empty_choices():
    pr = quadratic_regression_problem()
    with pytest.raises(BudgetError, match="use select_greedy"):
        select_exhaustive(pr, np.linspace(-1, 1, 101)[:, None], 6)
    with pytest.raises(DesignError, match="distinct"):
        select_greedy(pr, GRID[:2], 3, replacement=False)
    with pytest.raises(DesignError, match="outside its bounds"):
        select_greedy(pr, np.array([[0.0], [1.5]]), 1)


def test_botorch_continuous_design_noisy_utility():
    # one measurement x in [-2, 2]^2 for the linear-Gaussian problem: the optimum is a corner,
    # EIG = 0.5 log 9; the utility seen by the optimiser is a noisy PCE estimate
    pr = linear_gaussian_problem()
    res = optimize_design(pr, 1, method="pce", n_initial=6, n_iterations=4, q=2, num_restarts=2,
                          raw_samples=64, rng=3, n_outer=400, n_inner=400, n_batches=4)
    assert res["design"].dims == ("evaluation", "obs", "design_dim")
    assert res.sizes["evaluation"] == 6 + 4 * 2
    assert np.all(res["se"].values > 0)
    best = eig_closed_form(pr, res["best_design"].values).estimate
    assert best > 0.9 * 0.5 * math.log(9), res["best_design"].values
    # better than the median initial random design
    init = [eig_closed_form(pr, d).estimate for d in res["design"].values[:6]]
    assert best > np.median(init)


@pytest.mark.slow
def test_botorch_quadratic_regression_three_points():
    pr = quadratic_regression_problem()
    res = optimize_design(pr, 3, method="closed_form", n_initial=8, n_iterations=10, q=2, num_restarts=2,
                          raw_samples=128, rng=1)
    opt = float(select_exhaustive(pr, GRID, 3)["utility"])
    best = eig_closed_form(pr, res["best_design"].values).estimate
    assert best > opt - 0.05
    assert np.sort(res["best_design"].values.ravel()) == pytest.approx([-1, 0, 1], abs=0.2)


# ------------------------------------------------------------------ goal-oriented
CANDS = np.array([[2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])


def test_parameter_and_qoi_optimal_designs_differ():
    pr = linear_gaussian_problem()
    u_all, _ = candidate_utilities(pr, CANDS[:, None, :], method="closed_form")
    assert u_all == pytest.approx([0.5 * math.log(9), 0.5 * math.log(5), 0.5 * math.log(5), 0.5 * math.log(3)])
    sub = pr.with_target(ParameterSubset(["theta_0"]))
    u_sub, _ = candidate_utilities(sub, CANDS[:, None, :], method="closed_form")
    assert u_sub == pytest.approx([0.5 * math.log(9 / 5), 0.5 * math.log(5), 0.0, 0.5 * math.log(3 / 2)])
    qoi = pr.with_target(QoI(lambda th: th[..., 0], name="theta_0", linear=[1.0, 0.0]))
    u_q, _ = candidate_utilities(qoi, CANDS[:, None, :], method="closed_form")
    assert u_q == pytest.approx(u_sub)
    assert int(np.argmax(u_all)) == 0 and int(np.argmax(u_sub)) == 1
    # the nested estimators pick the same designs and agree with the closed forms
    mc_all, se_all = candidate_utilities(pr, CANDS[:, None, :], method="nmc", n_outer=2000, n_inner=2000, rng=1)
    mc_sub, se_sub = candidate_utilities(sub, CANDS[:, None, :], method="nmc", n_outer=2000, n_inner=1000, rng=1)
    qoi_nl = pr.with_target(QoI(lambda th: th[..., 0], name="theta_0"))  # kernel-weighted (no linear form)
    mc_q, se_q = candidate_utilities(qoi_nl, CANDS[:, None, :], method="nmc", n_outer=2000, n_inner=2000, rng=1)
    assert int(np.argmax(mc_all)) == 0 and int(np.argmax(mc_sub)) == 1 and int(np.argmax(mc_q)) == 1
    assert np.all(np.abs(mc_all - u_all) < 4 * se_all + 0.01)
    assert np.all(np.abs(mc_sub - u_sub) < 4 * se_sub + 0.01)
    assert np.all(np.abs(mc_q - u_q) < 4 * se_q + 0.08)  # kernel bandwidth bias


def _decision_problem():
    # act (gain theta_0) or do nothing; EVSI of y with posterior-mean variance s^2 is s / sqrt(2 pi)
    loss = DecisionLoss(lambda th: torch.stack([-th[..., 0], torch.zeros_like(th[..., 0])], -1), ["act", "skip"])
    return linear_gaussian_problem().with_target(loss)


def test_evsi_known_answer_and_choice():
    pr = _decision_problem()
    post_var = np.array([5 / 9, 1 / 5, 1.0, 2 / 3])
    truth = np.sqrt(1 - post_var) / math.sqrt(2 * math.pi)
    est = [evsi(pr, c[None], n_outer=4000, n_inner=2000, rng=2) for c in CANDS]
    for e, t in zip(est, truth):
        assert e.quantity == "evsi" and "biased upward" in e.bias_note
        assert abs(e.estimate - t) < 4 * e.se + 0.01, (e.estimate, t)
    u, _ = candidate_utilities(pr, CANDS[:, None, :], n_outer=2000, n_inner=1000, rng=2)
    assert int(np.argmax(u)) == 1  # EVSI picks (2, 0) while parameter EIG picks (2, 2)
    reg = evsi(pr, CANDS[1][None], method="regression", n_outer=4000, rng=2)
    assert abs(reg.estimate - truth[1]) < 4 * reg.se + 0.02
    assert utility(pr, CANDS[2][None], n_outer=1000, n_inner=500, rng=0).estimate == pytest.approx(0.0, abs=0.02)


def test_goal_oriented_bad_input():
    pr = _decision_problem()
    with pytest.raises(EstimatorNotApplicableError, match="DecisionLoss"):
        eig_nmc(pr, CANDS[:1], rng=0)
    with pytest.raises(EstimatorNotApplicableError, match="needs a DecisionLoss"):
        evsi(linear_gaussian_problem(), CANDS[:1], rng=0)
    with pytest.raises(ValueError, match="not parameters"):
        linear_gaussian_problem(target=ParameterSubset(["nope"]))
    bad = linear_gaussian_problem().with_target(DecisionLoss(lambda th: th, ["a", "b", "c"]))
    with pytest.raises(EstimatorNotApplicableError, match=r"shape \(\.\.\., 3\)"):
        evsi(bad, CANDS[:1], n_outer=100, n_inner=10, rng=0)


def test_target_declaration_errors():
    from torch.distributions import MultivariateNormal

    lg = linear_gaussian_problem()
    corr = MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                              covariance_matrix=torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64))
    sub = lg.with_prior(corr).with_target(ParameterSubset(["theta_0"]))
    object.__setattr__(sub, "factorised_prior", False)
    with pytest.raises(EstimatorNotApplicableError, match="factorises"):
        eig_nmc(sub, CANDS[:1], n_outer=100, n_inner=10, rng=0)
    with pytest.raises(EstimatorNotApplicableError, match="PCE"):
        candidate_utilities(lg.with_target(QoI(lambda th: th[..., 0])), CANDS[:, None, :], method="pce",
                            n_outer=100, n_inner=10, rng=0)
    with pytest.raises(ValueError, match=r"event shape \(n_params,\) = \(3,\)"):
        type(lg)(lg.prior, lg.observation, lg.bounds.numpy(), ["a", "b", "c"])
