"""Value of information from the twin's draws: EVPI and EVSI (preposterior analysis).

All functions take a *loss matrix* ``L[i, a]``: the loss of action ``a`` under posterior draw
``i`` (lower is better). For continuous decisions, discretise the action set (or use the
optimal-decision loss from :func:`vvuq_twin.decisions.solve`).

* ``EVPI = min_a E[L_a] - E[min_a L_a]``.
* ``EVSI = min_a E[L_a] - E_y[min_a E[L_a | y]]`` for a proposed measurement ``y``. This
  formula is implemented once, in :func:`preposterior_terms` (the per-outcome terms from the
  posterior expected losses ``P[i, a] = E[L_a | y_i]``); the estimators differ only in how
  they get ``P``, and every EVSI of the package goes through it -- :func:`evsi_importance`
  (self-normalised importance weights of the draws by the likelihood of each simulated
  outcome, the estimator behind :func:`vvuq_twin.design.evsi` and
  :func:`vvuq_twin.design.twin_design_utilities`), :func:`evsi_regression`, :func:`evsi_nested`.
  :func:`evsi_regression` estimates ``E[L_a | y]`` by regressing the losses on the simulated data
  (Strong, Oakley, Brennan & Breeze 2015, here with a polynomial basis), from joint draws
  ``(theta_i, y_i)`` of the prior predictive -- one simulated measurement per draw, no nested
  loop; :func:`evsi_nested` takes a user posterior-update function (e.g. a recalibration of
  the twin) and runs it for each simulated measurement through
  :func:`vvuq_twin.ensembles.evaluate`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr
from scipy import stats

from ..ensembles import evaluate
from ..exceptions import EnsembleError, SimulatorError
from .spec import DecisionSpecificationError

__all__ = ["ValueOfInformation", "evpi", "preposterior_terms", "posterior_expected_losses", "evsi_importance",
           "evsi_regression", "evsi_nested", "evsi"]


@dataclass(frozen=True)
class ValueOfInformation:
    """An EVPI/EVSI estimate.

    Attributes
    ----------
    measure : str
        ``"evpi"`` or ``"evsi"``.
    estimate, se : float
        Value (in loss units, >= 0 up to Monte Carlo error) and its standard error (outer
        Monte Carlo error; regression error is not included).
    ci_low, ci_high : float
        Normal interval at ``confidence``.
    prior_action : str or int
        Best action without further information.
    expected_loss_prior : float
        ``min_a E[L_a]``.
    expected_loss_informed : float
        Expected loss when deciding after the information.
    n_samples : int
    """

    measure: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    prior_action: Any
    expected_loss_prior: float
    expected_loss_informed: float
    n_samples: int
    confidence: float = 0.95
    details: dict[str, Any] = field(default_factory=dict)

    def to_xarray(self) -> xr.Dataset:
        """NetCDF-saveable Dataset."""
        return xr.Dataset(
            {
                "estimate": self.estimate,
                "se": self.se,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "expected_loss_prior": self.expected_loss_prior,
                "expected_loss_informed": self.expected_loss_informed,
            },
            attrs={"measure": self.measure, "prior_action": str(self.prior_action),
                   "n_samples": self.n_samples, "confidence": self.confidence},
        )


def _loss_matrix(losses: Any, action_dim: str, sample_dims: Sequence[str] | str | None) -> tuple[np.ndarray, list[Any]]:
    if isinstance(losses, xr.DataArray):
        if action_dim not in losses.dims:
            raise DecisionSpecificationError(
                f"The loss DataArray has dims {tuple(losses.dims)} but no action dim {action_dim!r}; "
                "pass action_dim naming the dimension that indexes actions."
            )
        other = [d for d in losses.dims if d != action_dim]
        if sample_dims is None:
            sample_dims = other
        dims = (sample_dims,) if isinstance(sample_dims, str) else tuple(sample_dims)
        if set(dims) != set(other):
            raise DecisionSpecificationError(
                f"Loss dims other than the action dim must all be sample dims; got sample_dims={dims}, "
                f"other dims {tuple(other)}."
            )
        # plain Python values (str, int), not numpy scalars such as np.str_
        actions = losses[action_dim].values.tolist() if action_dim in losses.coords else list(range(losses.sizes[action_dim]))
        L = losses.stack(__s__=dims).transpose("__s__", action_dim).values
    else:
        L = np.asarray(losses, dtype=float)
        if L.ndim != 2:
            raise DecisionSpecificationError(
                f"The loss matrix must have shape (n_samples, n_actions); got {L.shape}."
            )
        actions = list(range(L.shape[1]))
    L = np.asarray(L, dtype=float)
    if L.shape[0] < 2 or L.shape[1] < 2:
        raise DecisionSpecificationError(
            f"Value of information needs >= 2 samples and >= 2 actions; got loss matrix shape {L.shape}."
        )
    if not np.isfinite(L).all():
        raise DecisionSpecificationError(
            f"The loss matrix contains {int((~np.isfinite(L)).sum())} NaN/inf value(s)."
        )
    return L, actions


def _finish(measure, psi, prior_best, actions, prior_loss, informed, n, confidence, details):
    se = float(np.std(psi, ddof=1) / math.sqrt(len(psi)))
    est = float(np.mean(psi))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return ValueOfInformation(measure, est, se, est - z * se, est + z * se, actions[prior_best],
                              prior_loss, informed, n, confidence, details)


def evpi(
    losses: Any,
    *,
    action_dim: str = "action",
    sample_dims: Sequence[str] | str | None = None,
    confidence: float = 0.95,
) -> ValueOfInformation:
    """Expected value of perfect information ``min_a E[L_a] - E[min_a L_a]``.

    Parameters
    ----------
    losses : array_like (n_samples, n_actions) or DataArray
        Loss of each action under each posterior draw.
    action_dim : str
        Name of the action dimension of a DataArray.
    sample_dims : str or sequence, optional
        Sample dims of a DataArray (default: all dims but ``action_dim``).
    confidence : float
        Interval level.

    Returns
    -------
    ValueOfInformation
    """
    L, actions = _loss_matrix(losses, action_dim, sample_dims)
    means = L.mean(axis=0)
    a0 = int(np.argmin(means))
    psi = L[:, a0] - L.min(axis=1)
    return _finish("evpi", psi, a0, actions, float(means[a0]), float(L.min(axis=1).mean()),
                   L.shape[0], confidence, {})


def preposterior_terms(prior_losses: np.ndarray, posterior_losses: np.ndarray, *,
                       paired: bool = False) -> tuple[np.ndarray, int, np.ndarray]:
    """The EVSI formula, once: per-outcome terms of ``min_a E[L_a] - E_y[min_a E[L_a | y]]``.

    Parameters
    ----------
    prior_losses : ndarray, shape (n, n_actions)
        Losses of each action under draws of the current belief (the no-information decision
        is ``a0 = argmin_a mean_i prior_losses[i, a]``).
    posterior_losses : ndarray, shape (m, n_actions)
        ``P[i, a]``: the posterior expected loss of action ``a`` after simulated outcome ``y_i``.
    paired : bool
        ``False``: term ``i`` is ``mean_j L[j, a0] - min_a P[i, a]``. ``True`` (for an estimator
        whose ``P`` averages to the prior means, as a regression with intercept):
        ``P[i, a0] - min_a P[i, a]`` (>= 0 term by term, same mean, lower variance).

    Returns
    -------
    (terms, a0, prior_means)
        EVSI is ``terms.mean()``, its outer Monte Carlo standard error ``terms.std(ddof=1) /
        sqrt(m)``.
    """
    L = np.asarray(prior_losses, dtype=float)
    P = np.asarray(posterior_losses, dtype=float)
    if L.ndim != 2 or P.ndim != 2 or P.shape[1] != L.shape[1]:
        raise DecisionSpecificationError(
            f"preposterior_terms needs prior losses (n, n_actions) and posterior expected losses (m, n_actions) "
            f"with the same actions; got shapes {L.shape} and {P.shape}."
        )
    means = L.mean(axis=0)
    a0 = int(np.argmin(means))
    ref = P[:, a0] if paired else means[a0]
    return ref - P.min(axis=1), a0, means


def posterior_expected_losses(log_lik: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P[i, a] = sum_j w_ij L[j, a]`` with self-normalised weights ``w_ij ~ exp(log_lik[i, j])``.

    ``log_lik[i, j] = log p(y_i | draw j)`` for simulated outcomes ``y_i`` and equally weighted
    draws ``j`` of the current belief; ``losses`` is (n_draws, n_actions). Returns ``(P, ess)``
    with the effective sample size of each outcome's weights.
    """
    ll = np.asarray(log_lik, dtype=float)
    L = np.asarray(losses, dtype=float)
    if ll.ndim != 2 or L.ndim != 2 or ll.shape[1] != L.shape[0]:
        raise DecisionSpecificationError(
            f"log_lik must be (n_outcomes, n_draws) and losses (n_draws, n_actions); got {ll.shape} and {L.shape}."
        )
    if not np.isfinite(ll.max(axis=1)).all():
        bad = np.flatnonzero(~np.isfinite(ll.max(axis=1)))
        raise DecisionSpecificationError(
            f"The log-likelihood of simulated outcomes {bad[:10].tolist()} is -inf/NaN under every draw: "
            "the measurement model cannot have produced them; check the likelihood."
        )
    W = np.exp(ll - ll.max(axis=1, keepdims=True))
    W /= W.sum(axis=1, keepdims=True)
    return W @ L, 1.0 / np.sum(W**2, axis=1)


def evsi_importance(
    losses: Any,
    log_lik: Any,
    *,
    action_dim: str = "action",
    sample_dims: Sequence[str] | str | None = None,
    confidence: float = 0.95,
) -> ValueOfInformation:
    """EVSI by preposterior analysis with self-normalised importance weights.

    ``EVSI = min_a mean_j L[j, a] - mean_i min_a sum_j w_ij L[j, a]``, ``w_ij ~ p(y_i | draw j)``:
    the draws of the current belief are reweighted by the likelihood of each simulated outcome
    ``y_i`` (drawn from the prior predictive of the proposed measurement). Biased upward by
    O(1/n_draws) (the min over noisy posterior losses is optimistic); the standard error is the
    outer Monte Carlo error over the outcomes.

    Parameters
    ----------
    losses : array_like (n_draws, n_actions) or DataArray
        ``L[j, a]`` under draw ``j`` of the current belief.
    log_lik : array_like (n_outcomes, n_draws)
        ``log p(y_i | draw j)``.
    action_dim, sample_dims, confidence
        As in :func:`evpi`.

    Returns
    -------
    ValueOfInformation
        ``details`` holds the 5% quantile of the weights' effective sample size ``ess_q05``.
    """
    L, actions = _loss_matrix(losses, action_dim, sample_dims)
    ll = np.asarray(log_lik.values if isinstance(log_lik, xr.DataArray) else log_lik, dtype=float)
    if ll.ndim != 2 or ll.shape[1] != L.shape[0] or ll.shape[0] < 2:
        raise DecisionSpecificationError(
            f"log_lik must have shape (n_outcomes >= 2, n_draws = {L.shape[0]}): one row per simulated outcome, "
            f"one column per loss draw; got {ll.shape}."
        )
    P, ess = posterior_expected_losses(ll, L)
    psi, a0, means = preposterior_terms(L, P)
    return _finish("evsi", psi, a0, actions, float(means[a0]), float(P.min(axis=1).mean()), ll.shape[0],
                   confidence, {"ess_q05": float(np.quantile(ess, 0.05)), "estimator": "importance"})


def _poly_features(Y: np.ndarray, degree: int) -> np.ndarray:
    Z = (Y - Y.mean(axis=0)) / np.where(Y.std(axis=0) > 0, Y.std(axis=0), 1.0)
    cols = [np.ones(len(Z))]
    for deg in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(Z.shape[1]), deg):
            cols.append(np.prod(Z[:, combo], axis=1))
    return np.column_stack(cols)


def evsi_regression(
    losses: Any,
    data: Any,
    *,
    degree: int = 2,
    action_dim: str = "action",
    sample_dims: Sequence[str] | str | None = None,
    confidence: float = 0.95,
) -> ValueOfInformation:
    """Expected value of sample information by regression on simulated data.

    Parameters
    ----------
    losses : array_like (n, n_actions) or DataArray
        ``L[i, a]`` under prior (current posterior) draw ``theta_i``.
    data : array_like (n,) or (n, p)
        A simulated measurement (or its summary statistic) ``y_i ~ p(y | theta_i)`` for each draw,
        e.g. from the twin's posterior predictive for the proposed experiment.
    degree : int
        Degree of the polynomial basis for ``E[L_a | y]`` (with interactions). Too low a degree
        for a non-linear relation under-states EVSI; a good summary statistic matters more.
    action_dim, sample_dims, confidence
        As in :func:`evpi`.

    Returns
    -------
    ValueOfInformation
        ``details`` holds the regression ``r2`` per action.
    """
    L, actions = _loss_matrix(losses, action_dim, sample_dims)
    Y = np.asarray(data.values if isinstance(data, xr.DataArray) else data, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != L.shape[0]:
        raise DecisionSpecificationError(
            f"data must have one row per loss sample: expected shape ({L.shape[0]},) or "
            f"({L.shape[0]}, p); got {Y.shape}."
        )
    if not np.isfinite(Y).all():
        raise DecisionSpecificationError("data contains NaN/inf values.")
    if not isinstance(degree, (int, np.integer)) or degree < 1:
        raise DecisionSpecificationError(f"The 'degree' parameter of evsi_regression must be an integer >= 1; got {degree!r}.")
    X = _poly_features(Y, int(degree))
    if X.shape[1] >= L.shape[0] // 5:
        raise DecisionSpecificationError(
            f"evsi_regression: {X.shape[1]} regression terms for {L.shape[0]} samples is too many; lower the "
            "degree or use more samples."
        )
    coef, *_ = np.linalg.lstsq(X, L, rcond=None)
    fitted = X @ coef
    # fitted means equal sample means (intercept in the basis): the paired terms
    psi, a0, means = preposterior_terms(L, fitted, paired=True)
    resid = L - fitted
    r2 = 1 - resid.var(axis=0) / np.where(L.var(axis=0) > 0, L.var(axis=0), 1.0)
    return _finish("evsi", psi, a0, actions, float(means[a0]), float(fitted.min(axis=1).mean()),
                   L.shape[0], confidence, {"r2": r2.tolist(), "degree": int(degree)})


def evsi(losses: Any, data: Any, **kwargs: Any) -> ValueOfInformation:
    """Deprecated name of :func:`evsi_regression` (one ``evsi`` is :func:`vvuq_twin.design.evsi`)."""
    warnings.warn(
        "vvuq_twin.decisions.evsi is deprecated: call evsi_regression(losses, data) (the same "
        "estimator); vvuq_twin.design.evsi is the EVSI of a design problem.",
        DeprecationWarning,
        stacklevel=2,
    )
    return evsi_regression(losses, data, **kwargs)


def evsi_nested(
    losses: Any,
    data_draws: Any,
    posterior_expected_loss: Callable[[np.ndarray], np.ndarray],
    *,
    executor: Executor | None = None,
    action_dim: str = "action",
    sample_dims: Sequence[str] | str | None = None,
    confidence: float = 0.95,
) -> ValueOfInformation:
    """EVSI by preposterior analysis with a user-supplied posterior update.

    ``EVSI = min_a mean_i L[i, a] - mean_j min_a posterior_expected_loss(y_j)[a]``.

    Parameters
    ----------
    losses : array_like (n, n_actions) or DataArray
        Losses under the current draws (for the no-information decision).
    data_draws : array_like (m, p)
        Simulated measurements from the prior predictive of the proposed experiment.
    posterior_expected_loss : callable
        ``f(y) -> (n_actions,)``: expected loss of each action after observing ``y`` (e.g.
        recalibrate the twin on ``y`` and average the losses over the new posterior draws).
        Picklable when a process executor is used.
    executor : Executor, optional
        Runs the ``m`` posterior updates (:func:`vvuq_twin.ensembles.evaluate`).
    action_dim, sample_dims, confidence
        As in :func:`evpi`.

    Returns
    -------
    ValueOfInformation
        The standard error combines the outer (``m``) and prior (``n``) Monte Carlo errors.
    """
    L, actions = _loss_matrix(losses, action_dim, sample_dims)
    Y = np.asarray(data_draws, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    try:
        res = evaluate(posterior_expected_loss, Y, executor=executor, on_failure="raise")
    except EnsembleError as exc:
        raise SimulatorError(f"evsi_nested: a posterior update failed: {exc}") from exc
    P = np.asarray(res.outputs, dtype=float).reshape(len(Y), -1)
    if P.shape[1] != L.shape[1]:
        raise DecisionSpecificationError(
            f"posterior_expected_loss must return {L.shape[1]} values (one per action); got {P.shape[1]}."
        )
    psi, a0, means = preposterior_terms(L, P)
    informed = P.min(axis=1)
    est = float(psi.mean())
    se = float(math.sqrt(informed.var(ddof=1) / len(Y) + L[:, a0].var(ddof=1) / L.shape[0]))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return ValueOfInformation("evsi", est, se, est - z * se, est + z * se, actions[a0],
                              float(means[a0]), float(informed.mean()), len(Y), confidence,
                              {"n_updates": len(Y), "wall_time": res.wall_time})
