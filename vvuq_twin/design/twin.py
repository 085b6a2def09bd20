"""Experimental design declared on a calibrated twin: which measurement to take next.

The design problems of :mod:`vvuq_twin.design.problem` are written in torch; a
:class:`~vvuq_twin.Twin` is written in PyMC/pytensor, with a hierarchy, a discrepancy and an
observation model. This module connects the two without rewriting the twin:

* :func:`twin_design_utilities` scores candidate measurements (an input ``x`` of a unit, or a
  batch of them) from the twin's **posterior predictive**: the twin's own
  :func:`~vvuq_twin.predict` gives the true process ``zeta`` (simulator + discrepancy) at every
  candidate for every posterior draw, the observation model gives the measurement density, and
  the utility follows by preposterior analysis over the same draws. The target of learning is
  all parameters (expected information gain), a quantity of interest given as draws
  (goal-oriented), or a decision given as a loss per draw and action (expected value of sample
  information, EVSI).
* :func:`twin_linear_gaussian` / :func:`twin_eig_closed_form` recognise a linear-Gaussian twin
  (simulator linear in its parameters, normal priors, no discrepancy, known Gaussian noise) and
  give the closed-form EIG ``0.5 log det(I + J S J^T / sigma^2)``; :func:`twin_design_problem`
  turns such a twin into a torch :class:`~vvuq_twin.design.DesignProblem` for every estimator
  of :func:`~vvuq_twin.design.eig` and the optimisers.

Estimators (``N`` posterior draws, outcome ``y_i`` drawn from draw ``i``, ``L_ij = log p(y_i |
draw j)``):

* parameters: ``u_i = L_ii - log mean_j exp(L_ij)``, the prior-contrastive estimate of Foster et
  al. (2020) with every other draw as a contrastive sample. It is a *lower bound* in expectation
  (bias <= 0, shrinking like 1/N) and cannot exceed ``log N``.
* QoI ``q``: ``u_i = 0.5 log(Var(q) / Var_{w_i}(q))`` with self-normalised importance weights
  ``w_ij ~ exp(L_ij)``: the expected entropy reduction of ``q`` under a Gaussian approximation of
  its posterior (exact for a linear-Gaussian twin and a linear QoI); importance weights bias
  it by O(1/ESS), and the 5% quantile of the weights' ESS is reported.
* decision loss ``l_{ja}``: EVSI ``= min_a mean_j l_ja - mean_i min_a sum_j w_ij l_ja``.

Each utility carries the Monte Carlo standard error of its outer average.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import xarray as xr
from scipy import special

from .._rng import RNGLike, as_generator, seed_int
from ..exceptions import BudgetError, DesignError, EstimatorNotApplicableError
from ..progress import with_progress

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.results import TwinResult
    from ..twin.data import TwinData
    from ..twin.declaration import Twin
    from .problem import DesignProblem

__all__ = [
    "preposterior_utility",
    "twin_design_utilities",
    "twin_linear_gaussian",
    "twin_eig_closed_form",
    "twin_design_problem",
    "LinearGaussianTwin",
]

_SAMPLE_DIMS = ("chain", "draw")


# ------------------------------------------------------------------ helpers
def _n_draws(result: "TwinResult") -> tuple[int, int]:
    post = result.idata.posterior
    return int(post.sizes["chain"]), int(post.sizes["draw"])


def _as_draw_array(arr: Any, n_chain: int, n_draw: int, what: str, ndim_extra: int) -> np.ndarray:
    """Flatten a (chain, draw, ...) or (n, ...) array/DataArray of per-draw values to (n, ...)."""
    if isinstance(arr, xr.DataArray):
        if all(d in arr.dims for d in _SAMPLE_DIMS):
            other = [d for d in arr.dims if d not in _SAMPLE_DIMS]
            arr = arr.transpose(*_SAMPLE_DIMS, *other).values
        else:
            arr = arr.values
    a = np.asarray(arr, dtype=float)
    n = n_chain * n_draw
    if a.ndim == 2 + ndim_extra and a.shape[:2] == (n_chain, n_draw):
        a = a.reshape((n,) + a.shape[2:])
    if a.ndim != 1 + ndim_extra or a.shape[0] != n:
        want = "(chain, draw)" if ndim_extra == 0 else "(chain, draw, n_actions)"
        raise DesignError(
            f"The {what} must hold one value per posterior draw, shape {want} = "
            f"({n_chain}, {n_draw}{', n_actions' if ndim_extra else ''}) or ({n}{', n_actions' if ndim_extra else ''}), "
            f"got shape {np.shape(arr)}. Compute it from result.posterior in (chain, draw) order."
        )
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a.reshape(n, -1)).all(axis=1))
        raise DesignError(f"The {what} is NaN/inf at draws {bad[:10].tolist()}; fix the QoI/loss function.")
    return a


def _noise(result: "TwinResult", idx: np.ndarray, n_chain: int, n_draw: int) -> dict[str, np.ndarray]:
    """Per-draw noise values of the observation model (natural scale), as the twin names them."""
    obs = result.twin.observation
    post = result.idata.posterior
    draws = {name: _as_draw_array(post[name], n_chain, n_draw, name, 0)[idx] for name in obs.noise_names()}
    return obs.noise_values(draws, n=idx.size)


def _check_batches(batches: Any, n_rows: int) -> list[tuple[int, ...]]:
    if batches is None:
        return [(i,) for i in range(n_rows)]
    out = []
    for k, b in enumerate(batches):
        t = tuple(int(i) for i in np.atleast_1d(b))
        if len(t) == 0:
            raise DesignError(f"Batch {k} is empty; every candidate batch needs at least one row of `x`.")
        bad = [i for i in t if not 0 <= i < n_rows]
        if bad:
            raise DesignError(f"Batch {k} refers to rows {bad} of `x`, which has {n_rows} rows.")
        out.append(t)
    if not out:
        raise DesignError("`batches` is empty: give at least one candidate batch.")
    return out


# ------------------------------------------------------------------ the estimators
def preposterior_utility(L: np.ndarray, *, qoi: np.ndarray | None = None,
                         loss: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Per-outcome utility terms from ``L[i, j] = log p(y_i | draw j)`` (``y_i`` simulated from draw ``i``).

    The estimators of the module docstring on ``N`` equally weighted posterior draws: without a
    target the prior-contrastive EIG term ``L_ii - log mean_j exp(L_ij)``; with ``qoi`` (one
    value per draw) the Gaussian entropy reduction ``0.5 log(Var q / Var_{w_i} q)``; with
    ``loss`` (draws x actions) the EVSI term ``min_a mean_j l_ja - min_a sum_j w_ij l_ja``,
    ``w_ij ~ exp(L_ij)`` self-normalised. Used by :func:`twin_design_utilities` and by callers
    with their own measurement model (a quantity ``predict`` does not produce).

    Returns
    -------
    (u, ess_q05)
        The utility term of every simulated outcome, shape (N,) (the utility is its mean, the
        standard error its sd / sqrt(N)), and the 5% quantile of the importance weights' ESS.
    """
    L = np.asarray(L, dtype=float)
    n = L.shape[0]
    if L.ndim != 2 or L.shape[1] != n:
        raise DesignError(f"L must be a square (outcome, draw) matrix of log-likelihoods; got shape {L.shape}.")
    W = np.exp(L - L.max(axis=1, keepdims=True))
    W /= W.sum(axis=1, keepdims=True)
    ess_q05 = float(np.quantile(1.0 / np.sum(W**2, axis=1), 0.05))
    if qoi is None and loss is None:
        u = np.diag(L) - (special.logsumexp(L, axis=1) - np.log(n))
    elif loss is None:
        q = np.asarray(qoi, dtype=float)
        m = W @ q
        v = np.maximum(W @ q**2 - m**2, 1e-300)
        u = 0.5 * (np.log(np.var(q)) - np.log(v))
    else:
        from ..decisions.voi import preposterior_terms

        # the one EVSI formula of the package (vvuq_twin.decisions.voi)
        u, _, _ = preposterior_terms(np.asarray(loss, dtype=float), W @ np.asarray(loss, dtype=float))
    return u, ess_q05


# ------------------------------------------------------------------ the twin utilities
@with_progress("design utilities")
def twin_design_utilities(
    result: "TwinResult",
    x: Any,
    *,
    unit: str | Sequence[str] | None = None,
    target: Any = "parameters",
    batches: Sequence[Sequence[int]] | None = None,
    y_sd: Any = None,
    labels: Sequence[str] | None = None,
    n_draws: int | None = None,
    rng: RNGLike = None,
    min_ess: float = 20.0,
) -> xr.Dataset:
    """Utility of each candidate measurement, from a calibrated twin's posterior predictive.

    Parameters
    ----------
    result : TwinResult or TwinAssimilation
        A calibrated twin (:func:`~vvuq_twin.calibrate`) or the state after
        :func:`~vvuq_twin.assimilation.assimilate`; its posterior is the current knowledge.
    x : array_like, shape (n_rows,) or (n_rows, d)
        Candidate measurement inputs (same columns as the calibration inputs).
    unit : str, sequence of str or "new", optional
        Unit of each row, as in :func:`~vvuq_twin.predict` (required for per-unit parameters).
    target : "parameters", array_like or dict
        What the measurement should teach: ``"parameters"`` (expected information gain about
        all parameters), an array of QoI values per posterior draw, shape ``(chain, draw)`` (or
        ``{"qoi": array}``) for goal-oriented design, or ``{"loss": array}`` with the loss of
        each action per draw, shape ``(chain, draw, n_actions)`` (or a 3-D array directly): the
        expected value of sample information.
    batches : sequence of sequences of int, optional
        Candidate batches of several rows measured together (default: each row alone).
    y_sd : array_like, optional
        Known measurement sd of each row (heteroscedastic designs), added in quadrature.
    labels : sequence of str, optional
        Label of each candidate (default ``"x=..."`` / ``"unit:x=..."``).
    n_draws : int, optional
        Use a random subset of this many posterior draws (cost is O(n_draws^2) per candidate).
        Default: all draws, at most 2000.
    rng : Generator, int or None
        Seed of the predictive draws, the subset and the simulated outcomes.
    progressbar : bool or None
        Progress lines on stderr (on by default, see :mod:`vvuq_twin.progress`).
    min_ess : float
        Warn when, for 5% of the simulated outcomes, the importance weights have an effective
        sample size below this (the QoI/EVSI estimates are then unreliable: use more draws).

    Returns
    -------
    xarray.Dataset
        Dim ``candidate``: ``utility``, ``utility_se``, ``weight_ess_q05`` (QoI/decision targets:
        5% quantile over simulated outcomes of the importance weights' effective sample size),
        ``extrapolation`` (largest extrapolation measure of the candidate's rows, <= 1 inside the
        calibration domain). Attributes: ``target`` (kind), ``best`` (index of the largest
        utility), ``best_label``, ``n_draws``, ``estimator``, ``bias_note``.

    Raises
    ------
    DesignError
        Malformed candidates, batches, QoI or loss arrays (raised before any prediction).
    BudgetError
        Fewer than 20 draws.
    EstimatorNotApplicableError
        Twins whose measurement density is not available in closed form (surrogate simulators
        with predictive variance, unknown observation models).
    """
    from ..inference.predict import predict
    from ..twin.observation import ObservationModel
    from ..twin.simulators import Simulator

    if hasattr(result, "to_result") and not hasattr(result, "idata"):  # a TwinAssimilation
        result = result.to_result(rng=rng)
    if result.twin is None or result.data is None:
        raise DesignError("This result has no twin/data attached; load it with load_result(path, twin=, data=).")
    twin = result.twin
    if type(twin.simulator).predictive_variance is not Simulator.predictive_variance:
        raise EstimatorNotApplicableError(
            f"The simulator of twin {twin.name!r} ({type(twin.simulator).__name__}) adds a predictive "
            "variance to the measurement density; twin_design_utilities needs the exact density. "
            "Design on the twin with the full simulator, or on a torch DesignProblem."
        )
    obs = twin.observation
    if type(obs).logpdf is ObservationModel.logpdf or type(obs).sample is ObservationModel.sample:
        raise EstimatorNotApplicableError(
            f"twin_design_utilities needs the measurement density and sampler in numpy; the "
            f"observation model {type(obs).__name__} has no logpdf/sample. Implement them "
            "(see vvuq_twin.twin.observation.ObservationModel)."
        )
    X = np.asarray(x, dtype=float)
    n_rows = X.shape[0] if X.ndim >= 1 else 0
    if X.ndim not in (1, 2) or n_rows == 0:
        raise DesignError(f"`x` must be an array of candidate inputs, shape (n,) or (n, d); got {np.shape(x)}.")
    if not np.all(np.isfinite(X)):
        raise DesignError(f"`x` has NaN/inf at rows {np.flatnonzero(~np.isfinite(X.reshape(n_rows, -1)).all(1))[:10].tolist()}.")
    groups = _check_batches(batches, n_rows)
    ysd = None
    if y_sd is not None:
        ysd = np.broadcast_to(np.asarray(y_sd, float), (n_rows,)).copy()
        if np.any(~np.isfinite(ysd)) or np.any(ysd < 0):
            raise DesignError("`y_sd` must be finite and >= 0 for every candidate row.")
    n_chain, n_draw = _n_draws(result)
    n_total = n_chain * n_draw
    # target, checked before any prediction
    qoi = loss = None
    if isinstance(target, str):
        if target != "parameters":
            raise DesignError(f"`target` must be 'parameters', a QoI array or {{'loss': array}}; got {target!r}.")
        tkind = "parameters"
    elif isinstance(target, dict):
        if set(target) == {"qoi"}:
            qoi, tkind = _as_draw_array(target["qoi"], n_chain, n_draw, "QoI", 0), "qoi"
        elif set(target) == {"loss"}:
            loss, tkind = _as_draw_array(target["loss"], n_chain, n_draw, "loss", 1), "decision"
        else:
            raise DesignError(f"A dict `target` must be {{'qoi': array}} or {{'loss': array}}; got keys {sorted(target)}.")
    else:
        arr = target.values if isinstance(target, xr.DataArray) else np.asarray(target)
        if arr.ndim == 3 or (arr.ndim == 2 and arr.shape != (n_chain, n_draw)):
            loss, tkind = _as_draw_array(target, n_chain, n_draw, "loss", 1), "decision"
        else:
            qoi, tkind = _as_draw_array(target, n_chain, n_draw, "QoI", 0), "qoi"
    if loss is not None and loss.shape[1] < 2:
        raise DesignError("A decision needs at least two actions (loss shape (..., n_actions >= 2)).")
    if qoi is not None and np.var(qoi) <= 0:
        raise DesignError("The QoI is constant over the posterior draws: there is nothing to learn about it.")
    if labels is not None and len(labels) != len(groups):
        raise DesignError(f"`labels` has {len(labels)} entries for {len(groups)} candidates.")
    n_use = min(n_total, 2000) if n_draws is None else int(n_draws)
    if n_use < 20:
        raise BudgetError(f"Need at least 20 posterior draws for a design utility, got n_draws={n_use}.")
    if n_use > n_total:
        raise BudgetError(f"n_draws={n_use} exceeds the {n_total} posterior draws of the result.")

    gen = as_generator(rng)
    seed_pred = seed_int(gen)
    idx = np.sort(gen.choice(n_total, size=n_use, replace=False)) if n_use < n_total else np.arange(n_total)
    pred = predict(result, X, unit=unit, rng=seed_pred, include_y=False)
    zeta = pred["zeta"].transpose("chain", "draw", "obs").values.reshape(n_total, n_rows)[idx]
    extrap = np.asarray(pred["extrapolation"].values, float) if "extrapolation" in pred else np.full(n_rows, np.nan)
    noise = _noise(result, idx, n_chain, n_draw)
    # measurement sd per draw and row (ObservationModel.scale in numpy)
    sd = obs.scale_numpy(noise, zeta, None if ysd is None else ysd[None, :])
    # the other noise values of draw j, along the second axis of L[i, j]
    noise_j = {k: v[None, :] for k, v in noise.items()}
    if obs.positive and np.any(zeta <= 0):
        raise DesignError("The predicted true process is <= 0 at some candidate: a log-normal measurement is undefined there.")
    if qoi is not None:
        qoi = qoi[idx]
    if loss is not None:
        loss = loss[idx]

    util, se, ess_min, ext = [], [], [], []
    for g in groups:
        cols = list(g)
        z, s = zeta[:, cols], sd[:, cols]
        y = obs.sample(z, s, noise, gen)  # (N, k): outcome i simulated from draw i
        # L[i, j] = log p(y_i | draw j), summed over the rows of the batch
        L = np.zeros((n_use, n_use))
        for c in range(len(cols)):
            L += obs.logpdf(y[:, c][:, None], z[:, c][None, :], s[:, c][None, :], noise_j)
        u, ess = preposterior_utility(L, qoi=qoi, loss=loss)
        ess_min.append(np.nan if tkind == "parameters" else ess)
        util.append(float(np.mean(u)))
        se.append(float(np.std(u, ddof=1) / np.sqrt(n_use)))
        ext.append(float(np.nanmax(extrap[cols])) if np.any(np.isfinite(extrap[cols])) else np.nan)
    if tkind != "parameters" and np.nanmin(ess_min) < min_ess:
        warnings.warn(
            f"For 5% of the simulated outcomes the importance weights have an effective sample size "
            f"below {np.nanmin(ess_min):.1f} < {min_ess}: the {tkind} utilities are unreliable for "
            "some candidates (a very informative measurement relative to the number of draws). Use more "
            "posterior draws (n_draws) or a longer calibration.",
            RuntimeWarning,
            stacklevel=2,
        )
    if labels is None:
        ulab = None if unit is None else (np.asarray([unit] * n_rows) if isinstance(unit, str) else np.asarray(unit).astype(str))
        def _lab(i: int) -> str:
            xs = ",".join(f"{v:g}" for v in np.atleast_1d(X[i]))
            return f"{ulab[i]}:x={xs}" if ulab is not None else f"x={xs}"
        labels = ["+".join(_lab(i) for i in g) for g in groups]
    best = int(np.argmax(util))
    notes = {
        "parameters": "prior-contrastive lower bound (Foster et al. 2020) with all other draws as "
                      "contrasts: biased low by O(1/n_draws), capped at log(n_draws)",
        "qoi": "Gaussian-entropy approximation of the QoI posterior with self-normalised "
               "importance weights (exact for linear-Gaussian twins and linear QoIs); bias O(1/ESS)",
        "decision": "EVSI by preposterior analysis with self-normalised importance weights; "
                    "bias O(1/ESS)",
    }
    return xr.Dataset(
        {
            "utility": ("candidate", np.asarray(util)),
            "utility_se": ("candidate", np.asarray(se)),
            "weight_ess_q05": ("candidate", np.asarray(ess_min)),
            "extrapolation": ("candidate", np.asarray(ext)),
        },
        coords={"candidate": np.arange(len(groups)), "label": ("candidate", list(labels))},
        attrs={
            "target": tkind,
            "best": best,
            "best_label": str(labels[best]),
            "n_draws": int(n_use),
            "estimator": {"parameters": "eig_pce_reuse", "qoi": "qoi_entropy_reduction",
                          "decision": "evsi_preposterior"}[tkind],
            "units": "nats" if tkind != "decision" else "loss units",
            "bias_note": notes[tkind],
            "declaration_hash": result.declaration_hash,
            "data_hash": result.data_hash,
        },
    )


# ------------------------------------------------------------------ linear-Gaussian twins
class LinearGaussianTwin:
    """A twin recognised as linear-Gaussian at given inputs: ``y = J theta + e``, ``e ~ N(0, sigma^2 I)``.

    Attributes
    ----------
    names : list of str
        Parameter names (order of the columns of ``J``).
    J : ndarray, shape (n_rows, n_params)
        Sensitivity of the simulator output to the parameters (constant: the simulator is linear).
    offset : ndarray, shape (n_rows,)
        Simulator output at ``theta = 0``.
    sigma : float
        Known measurement sd.
    prior_mean, prior_cov : ndarray
        Normal prior of the parameters.
    """

    def __init__(self, names, J, offset, sigma, prior_mean, prior_cov) -> None:
        self.names, self.J, self.offset, self.sigma = list(names), J, offset, float(sigma)
        self.prior_mean, self.prior_cov = prior_mean, prior_cov

    def posterior(self, J_data: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conjugate posterior mean and covariance after observing ``y`` at rows with sensitivity ``J_data``."""
        P0 = np.linalg.inv(self.prior_cov)
        P = P0 + J_data.T @ J_data / self.sigma**2
        S = np.linalg.inv(P)
        m = S @ (P0 @ self.prior_mean + J_data.T @ (y - offset) / self.sigma**2)
        return m, S


def _simulator_function(twin: "Twin", n_cols: int):
    import pytensor
    import pytensor.tensor as pt

    Xs = pt.dmatrix("x")
    th = pt.dvector("theta")
    params = {p.name: th[i] for i, p in enumerate(twin.parameters)}
    return pytensor.function([Xs, th], twin.simulator(Xs, params))


def twin_linear_gaussian(twin: "Twin", x: Any, *, rtol: float = 1e-8, rng: RNGLike = 0) -> LinearGaussianTwin:
    """Recognise a linear-Gaussian twin and return its sensitivity matrix at inputs ``x``.

    Requirements (each failure is an :class:`EstimatorNotApplicableError` naming the fix): no
    hierarchy, no discrepancy, every parameter scalar with a ``Normal`` prior and identity link,
    a ``Gaussian`` observation model with a known (float) ``sigma`` and no relative noise, and a
    simulator that is linear in the parameters (checked numerically at random parameter values:
    ``eta(theta) = eta(0) + J theta`` to relative tolerance ``rtol``).
    """
    from ..twin.discrepancy import NoDiscrepancy
    from ..twin.observation import Gaussian
    from ..twin.priors import Normal, Prior

    why = []
    if twin.hierarchy is not None:
        why.append("it has a hierarchy over units")
    if not isinstance(twin.discrepancy, NoDiscrepancy):
        why.append(f"it has a discrepancy ({type(twin.discrepancy).__name__})")
    bad = [p.name for p in twin.parameters if not isinstance(p.prior, Normal) or p.link != "identity" or p.per_unit]
    if bad:
        why.append(f"parameters {bad} are not scalar Normal-prior, identity-link, global parameters")
    obs = twin.observation
    if type(obs) is not Gaussian or isinstance(obs.sigma, Prior) or obs.relative is not None:
        why.append("its observation model is not Gaussian with a known float sigma and no relative noise")
    if why:
        raise EstimatorNotApplicableError(
            f"Twin {twin.name!r} is not linear-Gaussian: {'; '.join(why)}. Use "
            "twin_design_utilities (posterior-predictive estimators) instead of the closed form."
        )
    X = np.asarray(x, float)
    X = X[:, None] if X.ndim == 1 else X
    f = _simulator_function(twin, X.shape[1])
    k = len(twin.parameters)
    offset = np.asarray(f(X, np.zeros(k)), float)
    J = np.column_stack([np.asarray(f(X, np.eye(k)[i]), float) - offset for i in range(k)])
    gen = as_generator(rng)
    for _ in range(3):
        th = gen.normal(0.0, 3.0, size=k)
        lin = offset + J @ th
        out = np.asarray(f(X, th), float)
        if not np.allclose(out, lin, rtol=rtol, atol=rtol * (1 + np.abs(lin).max())):
            raise EstimatorNotApplicableError(
                f"The simulator of twin {twin.name!r} is not linear in its parameters (at theta = "
                f"{np.round(th, 3).tolist()} it differs from its linearisation by "
                f"{np.abs(out - lin).max():.3g}). Use twin_design_utilities instead of the closed form."
            )
    mean = np.array([p.prior.mu for p in twin.parameters], float)
    cov = np.diag([p.prior.sigma**2 for p in twin.parameters])
    return LinearGaussianTwin([p.name for p in twin.parameters], J, offset, float(obs.sigma), mean, cov)


def twin_eig_closed_form(
    twin: "Twin",
    x: Any,
    *,
    data: "TwinData | None" = None,
    batches: Sequence[Sequence[int]] | str | None = None,
) -> np.ndarray:
    """Closed-form EIG (nats) of each candidate (batch) of a linear-Gaussian twin.

    ``EIG = 0.5 log det(I + J_b S J_b^T / sigma^2)`` with ``S`` the prior covariance, or the
    conjugate posterior covariance after ``data`` when given.

    ``batches``: None scores every row of ``x`` on its own; ``"all"`` scores the whole design
    (all rows measured together, one value); a list of row-index lists scores those batches.
    """
    X = np.asarray(x, float)
    X = X[:, None] if X.ndim == 1 else X
    lg = twin_linear_gaussian(twin, X)
    S = lg.prior_cov
    if data is not None:
        twin.check(data)
        mask = np.asarray(data.observed_mask)
        lgd = twin_linear_gaussian(twin, np.asarray(data.x, float)[mask])
        _, S = lg.posterior(lgd.J, np.asarray(data.y, float)[mask], lgd.offset)
    out = []
    if isinstance(batches, str):
        if batches != "all":
            raise DesignError(f"`batches` must be None, 'all' or a list of row-index lists; got {batches!r}.")
        batches = [list(range(X.shape[0]))]
    for g in _check_batches(batches, X.shape[0]):
        Jb = lg.J[list(g)]
        M = np.eye(len(g)) + Jb @ S @ Jb.T / lg.sigma**2
        out.append(0.5 * np.linalg.slogdet(M)[1])
    return np.asarray(out)


def twin_design_problem(
    twin: "Twin",
    design_bounds: Any = None,
    *,
    bounds: Any = None,
    data: "TwinData | None" = None,
    target: Any = None,
) -> "DesignProblem":
    """A torch :class:`~vvuq_twin.design.DesignProblem` for a linear-Gaussian twin.

    The design variable is the measurement input ``x``; ``bounds`` has shape ``(2, d)`` (row 0
    lower, row 1 upper bounds of each input column), the convention of
    :class:`~vvuq_twin.design.DesignProblem` and botorch. (The positional ``design_bounds`` of
    shape ``(d, 2)`` still works, with a DeprecationWarning.) The prior is the twin's normal prior, or its conjugate
    posterior after ``data``. The observation model evaluates the twin's simulator (linear in the
    parameters, so ``eta(x, theta) = eta(x, 0) + J(x) theta``) through its compiled pytensor
    function for ``J(x)`` and declares ``linear_gaussian`` so that every estimator of
    :func:`~vvuq_twin.design.eig`, the closed form included, and the optimisers apply.
    """
    import torch
    from torch.distributions import MultivariateNormal, Normal as TNormal

    from .problem import AllParameters, DesignProblem

    if (bounds is None) == (design_bounds is None):
        raise DesignError("Pass the design bounds once, as bounds=(2, d) (lower row, upper row).")
    if design_bounds is not None:
        warnings.warn(
            "twin_design_problem(twin, design_bounds) with (d, 2) bounds is deprecated: pass "
            "bounds=(2, d) (lower row, upper row), the convention of DesignProblem.",
            DeprecationWarning,
            stacklevel=2,
        )
        b = np.asarray(design_bounds, float)
        b = b[None, :] if b.ndim == 1 else b
        if b.ndim != 2 or b.shape[1] != 2 or np.any(b[:, 0] >= b[:, 1]):
            raise DesignError(f"`design_bounds` must be (d, 2) with lower < upper, got {np.asarray(design_bounds).tolist()}.")
    else:
        bt = np.asarray(bounds, float)
        bt = bt[:, None] if bt.ndim == 1 else bt
        if bt.ndim != 2 or bt.shape[0] != 2 or np.any(bt[0] >= bt[1]):
            raise DesignError(f"`bounds` must be (2, d): a row of lower and a row of upper bounds, lower < upper; "
                              f"got {np.asarray(bounds).tolist()}.")
        b = bt.T
    probe = twin_linear_gaussian(twin, b[:, 0][None, :])
    mean, cov = probe.prior_mean, probe.prior_cov
    if data is not None:
        mask = np.asarray(data.observed_mask)
        lgd = twin_linear_gaussian(twin, np.asarray(data.x, float)[mask])
        mean, cov = probe.posterior(lgd.J, np.asarray(data.y, float)[mask], lgd.offset)
    f = _simulator_function(twin, b.shape[0])
    k = len(probe.names)

    def _jac(design: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = design.detach().reshape(-1, b.shape[0]).cpu().numpy().astype(float)
        off = np.asarray(f(flat, np.zeros(k)), float)
        J = np.column_stack([np.asarray(f(flat, np.eye(k)[i]), float) - off for i in range(k)])
        shape = design.shape[:-1]
        return (torch.as_tensor(J, dtype=torch.float64).reshape(*shape, k),
                torch.as_tensor(off, dtype=torch.float64).reshape(shape))

    sigma = probe.sigma

    def observation(theta: torch.Tensor, design: torch.Tensor):
        J, off = _jac(design)
        mu = off + (J * theta.unsqueeze(-2)).sum(-1)
        return TNormal(mu, sigma)

    def linear_gaussian(design: torch.Tensor):
        J, off = _jac(design)
        return J, sigma

    prior = MultivariateNormal(torch.as_tensor(mean, dtype=torch.float64),
                               covariance_matrix=torch.as_tensor(cov, dtype=torch.float64))
    return DesignProblem(
        prior=prior, observation=observation, bounds=torch.as_tensor(b.T, dtype=torch.float64),
        target=target if target is not None else AllParameters(), parameter_names=probe.names,
        linear_gaussian=linear_gaussian,
    )
