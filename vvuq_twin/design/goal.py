"""Goal-oriented design utilities: information about a QoI, and the expected value of sample
information (EVSI) of a measurement for a decision.

EVSI is the preposterior value ``min_a E[L_a] - E_y[min_a E[L_a | y, design]]``: the expected
reduction in Bayes risk from deciding after the measurement. :func:`evsi` simulates from the
problem (torch) and hands the numbers to the one EVSI implementation of the package,
:mod:`vvuq_twin.decisions.voi`: the posterior expected losses by self-normalised importance
weighting of prior draws with the design's likelihood
(:func:`~vvuq_twin.decisions.posterior_expected_losses` and
:func:`~vvuq_twin.decisions.preposterior_terms`, ``method="nested"``), or the regression
estimator :func:`vvuq_twin.decisions.evsi_regression` (``method="regression"``).
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch

from .._rng import RNGLike
from ..decisions.voi import evsi_regression as _evsi_regression
from ..decisions.voi import posterior_expected_losses, preposterior_terms
from .estimators import UtilityEstimate, _check_budget, _check_finite, _finish, eig
from .problem import DecisionLoss, DesignProblem, EstimatorNotApplicableError, torch_seed

__all__ = ["evsi", "utility"]

_EVSI_NOTE = {
    "nested": ("preposterior nested estimate with self-normalised importance weights over n_inner prior "
               "draws; biased upward by O(1/n_inner) (the min over noisy posterior losses is optimistic)"),
    "regression": ("regression (Strong et al. 2015) via vvuq_twin.decisions.evsi_regression: biased downward when the "
                   "polynomial basis cannot represent E[L_a | y]"),
}


def _losses(problem: DesignProblem, theta: torch.Tensor) -> torch.Tensor:
    L = problem.target.loss(theta)
    n_act = len(problem.target.actions)
    if L.shape != (*theta.shape[:-1], n_act):
        raise EstimatorNotApplicableError(
            f"DecisionLoss.loss must return shape (..., {n_act}) (one loss per action); got {tuple(L.shape)}.")
    if not torch.isfinite(L).all():
        raise EstimatorNotApplicableError("DecisionLoss.loss returned NaN/inf losses.")
    return L.to(problem.dtype)


def evsi(problem: DesignProblem, design: Any, *, method: Literal["nested", "regression"] = "nested",
         n_outer: int = 2000, n_inner: int = 2000, n_batches: int = 10, degree: int = 2,
         rng: RNGLike = None) -> UtilityEstimate:
    """Expected value of sample information of ``design`` for the problem's :class:`DecisionLoss`.

    Parameters
    ----------
    problem : DesignProblem
        Its ``target`` must be a :class:`DecisionLoss`.
    design : array_like, shape (n_obs, design_dim)
    method : {"nested", "regression"}
        ``"nested"``: preposterior analysis with importance weights (batch-means standard error);
        ``"regression"``: :func:`vvuq_twin.decisions.evsi_regression` on ``n_outer`` joint draws.
    n_outer, n_inner, n_batches : int
        Budgets (``n_inner`` and ``n_batches`` only for ``"nested"``).
    degree : int
        Polynomial degree for ``"regression"``.
    rng : Generator, int or None

    Returns
    -------
    UtilityEstimate
        ``quantity="evsi"`` in loss units; ``details`` holds the prior-optimal action.
    """
    t0 = time.perf_counter()
    if not isinstance(problem.target, DecisionLoss):
        raise EstimatorNotApplicableError(
            f"evsi needs a DecisionLoss target; the problem's target is {type(problem.target).__name__}. "
            "Use problem.with_target(DecisionLoss(loss, actions)).")
    x = problem.check_design(design)
    if method == "nested":
        n_batches = _check_budget("n_batches", n_batches, 2, "the standard error needs two independent batches")
        n_outer = _check_budget("n_outer", n_outer, 2 * n_batches, "at least two outer samples per batch")
        n_inner = _check_budget("n_inner", n_inner, 2, "the posterior losses need >= 2 inner samples")
        No = n_outer // n_batches
        vals, prior_losses = [], []
        with torch_seed(rng, problem.device), torch.no_grad():
            for _ in range(n_batches):
                th_out = problem.sample_prior(No)
                th_in = problem.sample_prior(n_inner)
                y = problem.simulate(th_out, x[None]).to(problem.dtype)  # (No, n_obs)
                ll = problem.log_likelihood(y[:, None, :], th_in[None], x[None])  # (No, M)
                _check_finite(ll, problem, "EVSI")
                L_in = _losses(problem, th_in).cpu().numpy()
                # the one EVSI formula (vvuq_twin.decisions.voi), on importance-weighted losses
                post, _ = posterior_expected_losses(ll.cpu().numpy(), L_in)  # (No, A)
                terms, _, prior_loss = preposterior_terms(L_in, post)
                vals.append(terms.mean())
                prior_losses.append(prior_loss)
        v = np.asarray(vals)
        pl = np.mean(prior_losses, axis=0)
        a0 = int(np.argmin(pl))
        return _finish(problem, x, v.mean(), v.std(ddof=1) / math.sqrt(len(v)), "evsi_nested", "consistent",
                       _EVSI_NOTE["nested"], n_outer, n_inner, n_batches * No * (n_inner + 1), t0,
                       details={"prior_action": str(problem.target.actions[a0]),
                                "expected_loss_prior": float(pl[a0])}, quantity="evsi")
    if method == "regression":
        n_outer = _check_budget("n_outer", n_outer, 20, "the regression needs >= 20 joint draws")
        with torch_seed(rng, problem.device), torch.no_grad():
            th = problem.sample_prior(n_outer)
            y = problem.simulate(th, x[None])
            L = _losses(problem, th)
        res = _evsi_regression(L.cpu().numpy(), y.cpu().numpy(), degree=degree)
        return _finish(problem, x, res.estimate, res.se, "evsi_regression", "approximate", _EVSI_NOTE["regression"],
                       n_outer, 0, n_outer, t0, quantity="evsi",
                       details={"prior_action": str(problem.target.actions[int(res.prior_action)]),
                                "expected_loss_prior": res.expected_loss_prior, "r2": res.details["r2"]})
    raise ValueError(f"The 'method' parameter of evsi must be 'nested' or 'regression'; got {method!r}.")


def utility(problem: DesignProblem, design: Any, *, method: str = "auto", rng: RNGLike = None,
            **budget: Any) -> UtilityEstimate:
    """The design utility for the problem's target: EVSI for a :class:`DecisionLoss`, else EIG.

    ``method`` is an :func:`evsi` method for decision targets (``"auto"`` -> ``"nested"``) and an
    :func:`~vvuq_twin.design.eig` method otherwise.
    """
    if isinstance(problem.target, DecisionLoss):
        return evsi(problem, design, method="nested" if method == "auto" else method, rng=rng, **budget)
    return eig(problem, design, method=method, rng=rng, **budget)
