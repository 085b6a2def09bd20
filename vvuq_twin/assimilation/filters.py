"""Filters for dynamic twins with an evolving state: Kalman, ensemble Kalman and particle filters.

A :class:`StateSpaceModel` declares the dynamics ``x_t = f(x_{t-1}, theta, t) + w_t`` and a linear
observation ``y_t = H x_t + v_t``, ``v_t ~ N(0, R)``. Unknown static parameters ``theta`` (a
forcing, a growth rate) are estimated jointly with the state by *state augmentation*: they are
appended to the state vector, persist through the forecast (optionally with a small random-walk
jitter) and are corrected by the analysis through their ensemble correlation with the observed
state.

Filters (all return an :class:`xarray.Dataset` with dims ``time``, ``member``/``particle``,
``state``):

* :func:`kalman_filter` - the exact reference for linear-Gaussian models;
* :func:`ensemble_kalman_filter` - stochastic (perturbed-observation) EnKF or the square-root
  ensemble transform Kalman filter (ETKF, symmetric square root), with multiplicative inflation
  of the analysis anomalies and optional mean-preserving random rotation (as DAPPER's
  ``EnKF('Sqrt', rot=True)``);
* :func:`particle_filter` - the bootstrap particle filter with systematic resampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import xarray as xr
from scipy.linalg import cho_factor, cho_solve
from scipy.special import logsumexp

from .._rng import RNGLike, as_generator
from ..exceptions import DataValidationError
from .weights import effective_sample_size, normalize_log_weights, systematic_resample

__all__ = [
    "StateSpaceModel",
    "kalman_filter",
    "ensemble_kalman_filter",
    "particle_filter",
    "analysis_rmse",
]

ForwardFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class StateSpaceModel:
    """A state-space model with a linear-Gaussian observation.

    Parameters
    ----------
    state_names : sequence of str
        Names of the state components (coordinate ``state``).
    forward : callable ``(x, theta, t) -> x_next``
        Deterministic one-step dynamics for a batch: ``x`` is (N, n_state), ``theta`` is
        (N, n_params) (shape (N, 0) without parameters), ``t`` the time index of the step.
    obs_operator : array (n_obs, n_state)
        ``H``.
    obs_cov : array (n_obs, n_obs)
        ``R``.
    process_cov : array (n_state, n_state), optional
        ``Q``; ``None`` for deterministic dynamics.
    x0_mean, x0_cov : arrays
        Gaussian initial state.
    param_names : sequence of str
        Names of static parameters estimated by state augmentation.
    theta0_mean, theta0_cov : arrays, optional
        Gaussian prior of the parameters.
    param_jitter : float
        Standard deviation of the random-walk jitter added to the parameters at each forecast
        (0 keeps them static; a small value counters ensemble collapse).
    transition_matrix : array (n_state, n_state), optional
        ``F`` for linear dynamics (needed by :func:`kalman_filter`); ``forward`` must agree.
    """

    state_names: Sequence[str]
    forward: ForwardFn
    obs_operator: np.ndarray
    obs_cov: np.ndarray
    x0_mean: np.ndarray
    x0_cov: np.ndarray
    process_cov: np.ndarray | None = None
    param_names: Sequence[str] = ()
    theta0_mean: np.ndarray | None = None
    theta0_cov: np.ndarray | None = None
    param_jitter: float = 0.0
    transition_matrix: np.ndarray | None = None
    _chol_q: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_names", tuple(str(s) for s in self.state_names))
        object.__setattr__(self, "param_names", tuple(str(s) for s in self.param_names))
        nx = len(self.state_names)
        H = np.atleast_2d(np.asarray(self.obs_operator, dtype=float))
        if H.shape[1] != nx:
            raise ValueError(
                f"`obs_operator` must have shape (n_obs, {nx}) to act on the {nx} state components, "
                f"got {H.shape}."
            )
        R = np.atleast_2d(np.asarray(self.obs_cov, dtype=float))
        if R.shape != (H.shape[0], H.shape[0]):
            raise ValueError(f"`obs_cov` must have shape {(H.shape[0],) * 2}, got {R.shape}.")
        object.__setattr__(self, "obs_operator", H)
        object.__setattr__(self, "obs_cov", R)
        object.__setattr__(self, "x0_mean", np.asarray(self.x0_mean, dtype=float).reshape(nx))
        object.__setattr__(self, "x0_cov", np.asarray(self.x0_cov, dtype=float).reshape(nx, nx))
        if self.process_cov is not None:
            Q = np.asarray(self.process_cov, dtype=float).reshape(nx, nx)
            object.__setattr__(self, "process_cov", Q)
            object.__setattr__(self, "_chol_q", np.linalg.cholesky(Q))
        n_p = len(self.param_names)
        if n_p:
            if self.theta0_mean is None or self.theta0_cov is None:
                raise ValueError(
                    f"Parameters {list(self.param_names)} are estimated by state augmentation: "
                    "give their prior as `theta0_mean` and `theta0_cov`."
                )
            object.__setattr__(self, "theta0_mean", np.asarray(self.theta0_mean, float).reshape(n_p))
            object.__setattr__(self, "theta0_cov", np.asarray(self.theta0_cov, float).reshape(n_p, n_p))
        if self.param_jitter < 0:
            raise ValueError(f"`param_jitter` must be >= 0, got {self.param_jitter}.")
        if self.transition_matrix is not None:
            object.__setattr__(
                self, "transition_matrix", np.asarray(self.transition_matrix, float).reshape(nx, nx)
            )

    @property
    def n_state(self) -> int:
        return len(self.state_names)

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def n_obs(self) -> int:
        return int(self.obs_operator.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the augmented state (state components, then parameters)."""
        return tuple(self.state_names) + tuple(self.param_names)

    def observe(self, x: np.ndarray) -> np.ndarray:
        """``H x`` for a batch of physical states ``x`` (N, n_state)."""
        return x @ self.obs_operator.T

    # augmented-state helpers -------------------------------------------------------------
    def initial_ensemble(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` augmented initial states (n, n_state + n_params)."""
        x = rng.multivariate_normal(self.x0_mean, self.x0_cov, size=n, method="cholesky")
        if self.n_params:
            th = rng.multivariate_normal(self.theta0_mean, self.theta0_cov, size=n, method="cholesky")
            x = np.hstack([x, th])
        return x

    def forecast(self, z: np.ndarray, t: float, rng: np.random.Generator | None) -> np.ndarray:
        """Propagate an augmented ensemble one step (noise drawn from ``rng`` when given)."""
        nx = self.n_state
        x, th = z[:, :nx], z[:, nx:]
        x_new = np.asarray(self.forward(x, th, t), dtype=float)
        if x_new.shape != x.shape:
            raise ValueError(
                f"StateSpaceModel.forward returned shape {x_new.shape}; expected {x.shape} "
                "(members x state components)."
            )
        if rng is not None and self._chol_q is not None:
            x_new = x_new + rng.standard_normal(x.shape) @ self._chol_q.T
        if rng is not None and self.n_params and self.param_jitter > 0:
            th = th + self.param_jitter * rng.standard_normal(th.shape)
        return np.hstack([x_new, th]) if self.n_params else x_new


# ------------------------------------------------------------------------------------------
# input handling
# ------------------------------------------------------------------------------------------
def _observations(model: StateSpaceModel, observations) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(observations, xr.DataArray):
        if "time" not in observations.dims:
            raise DataValidationError(
                f"`observations` must have a 'time' dim, got dims {observations.dims}."
            )
        other = [d for d in observations.dims if d != "time"]
        if len(other) > 1:
            raise DataValidationError(
                f"`observations` must be 2-D (time, obs_dim), got dims {observations.dims}."
            )
        y = observations.transpose("time", *other).values.astype(float)
        times = np.asarray(observations["time"].values) if "time" in observations.coords else np.arange(1, y.shape[0] + 1)
    else:
        y = np.asarray(observations, dtype=float)
        times = np.arange(1, y.shape[0] + 1, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != model.n_obs:
        raise DataValidationError(
            f"`observations` must have shape (n_time, {model.n_obs}) to match the observation "
            f"operator, got {y.shape}."
        )
    if np.issubdtype(times.dtype, np.number) and np.any(np.diff(times.astype(float)) <= 0):
        bad = int(np.flatnonzero(np.diff(times.astype(float)) <= 0)[0]) + 1
        raise DataValidationError(
            f"Observation times must be strictly increasing; time[{bad}]={times[bad]} follows "
            f"time[{bad - 1}]={times[bad - 1]}. Sort the observations by time."
        )
    partial = np.flatnonzero(np.isnan(y).any(axis=1) & ~np.isnan(y).all(axis=1))
    if partial.size:
        raise DataValidationError(
            f"Observations at time steps {partial[:10].tolist()} are partly NaN. A step is either "
            "fully observed or fully missing (all NaN); drop the missing components from H instead."
        )
    if np.isinf(y).any():
        raise DataValidationError("`observations` contain infinite values.")
    return y, times


def _step_time(times: np.ndarray, k: int) -> float:
    """The time handed to ``forward`` at step k (the time coordinate if numeric, else k)."""
    return float(times[k]) if np.issubdtype(np.asarray(times).dtype, np.number) else float(k)


def _check_members(n: int, name: str) -> int:
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"`{name}` must be an integer >= 2, got {n!r}.")
    return int(n)


def _result(model, times, mean, std, fc_mean, ens, ens_dim, attrs) -> xr.Dataset:
    names = list(model.names)
    ds = xr.Dataset(
        {
            "mean": (("time", "state"), mean),
            "std": (("time", "state"), std),
            "forecast_mean": (("time", "state"), fc_mean),
        },
        coords={"time": times, "state": names},
        attrs=attrs,
    )
    if ens is not None:
        ds["ensemble"] = (("time", ens_dim, "state"), ens)
        ds = ds.assign_coords({ens_dim: np.arange(ens.shape[1])})
    return ds


# ------------------------------------------------------------------------------------------
# Kalman filter
# ------------------------------------------------------------------------------------------
def kalman_filter(model: StateSpaceModel, observations) -> xr.Dataset:
    """Exact Kalman filter for a linear-Gaussian model (the reference for ensemble filters).

    Parameters
    ----------
    model : StateSpaceModel
        Must have ``transition_matrix`` and no augmented parameters.
    observations : DataArray (time, obs_dim) or array (n_time, n_obs)
        A fully-NaN row means no observation at that step (forecast only).

    Returns
    -------
    Dataset
        ``mean``, ``std``, ``forecast_mean`` (time, state), ``cov`` (time, state, ``state_``) and
        ``log_likelihood`` (time, the log predictive density of each observation); attr
        ``log_evidence`` (their sum).
    """
    if model.transition_matrix is None or model.n_params:
        raise ValueError(
            "kalman_filter needs a linear model: give StateSpaceModel(transition_matrix=F) and no "
            "augmented parameters (use ensemble_kalman_filter for nonlinear or joint estimation)."
        )
    y, times = _observations(model, observations)
    F, H, R = model.transition_matrix, model.obs_operator, model.obs_cov
    Q = model.process_cov if model.process_cov is not None else np.zeros_like(F)
    m, P = model.x0_mean.copy(), model.x0_cov.copy()
    T, nx = y.shape[0], model.n_state
    means, covs, fcs, lls = np.empty((T, nx)), np.empty((T, nx, nx)), np.empty((T, nx)), np.zeros(T)
    for k in range(T):
        m = F @ m
        P = F @ P @ F.T + Q
        fcs[k] = m
        if not np.isnan(y[k]).all():
            S = H @ P @ H.T + R
            cS = cho_factor(S)
            innov = y[k] - H @ m
            K = cho_solve(cS, H @ P).T
            m = m + K @ innov
            P = P - K @ S @ K.T
            P = 0.5 * (P + P.T)
            lls[k] = -0.5 * (innov @ cho_solve(cS, innov) + 2 * np.log(np.diag(cS[0])).sum()
                             + innov.size * np.log(2 * np.pi))
        means[k], covs[k] = m, P
    ds = _result(model, times, means, np.sqrt(np.einsum("tii->ti", covs)), fcs, None, "member",
                 {"method": "kalman", "log_evidence": float(lls.sum())})
    ds["cov"] = (("time", "state", "state_"), covs)
    ds = ds.assign_coords(state_=list(model.names))
    ds["log_likelihood"] = ("time", lls)
    return ds


# ------------------------------------------------------------------------------------------
# Ensemble Kalman filters
# ------------------------------------------------------------------------------------------
def _random_rotation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal (n, n) matrix that keeps the ensemble mean (has 1 as eigenvector)."""
    basis, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, n - 1))]))
    U = basis[:, 1:]
    O, r = np.linalg.qr(rng.standard_normal((n - 1, n - 1)))
    O = O * np.sign(np.diag(r))
    return np.full((n, n), 1.0 / n) + U @ O @ U.T


def _enkf_analysis(z, y, model, method, rng, r_chol, r_inv_sqrt):
    """One EnKF analysis of the augmented ensemble ``z`` (N, nz) given observation ``y``."""
    N = z.shape[0]
    zbar = z.mean(axis=0)
    A = z - zbar
    hx = model.observe(z[:, : model.n_state])
    hbar = hx.mean(axis=0)
    Y = hx - hbar
    if method == "stochastic":
        D = rng.standard_normal((N, y.size)) @ r_chol.T
        D -= D.mean(axis=0)  # centred perturbations (as DAPPER's PertObs)
        Pzy = A.T @ Y / (N - 1)
        Pyy = Y.T @ Y / (N - 1) + model.obs_cov
        K = cho_solve(cho_factor(Pyy), Pzy.T).T
        return z + (y + D - hx) @ K.T
    # ETKF (symmetric square root, Hunt et al. 2007) through the thin SVD of the scaled
    # observation anomalies S = Y R^-1/2 = U diag(s) V^T, so that the cost is O(N n_obs^2):
    # [(N-1) I + S S^T]^-1/2 = U diag((N-1+s^2)^-1/2) U^T + (N-1)^-1/2 (I - U U^T)
    S = Y @ r_inv_sqrt
    U, sig, _ = np.linalg.svd(S, full_matrices=False)
    denom = (N - 1) + sig**2
    w = U @ ((U.T @ (S @ (r_inv_sqrt @ (y - hbar)))) / denom)
    shrink = np.sqrt((N - 1) / denom) - 1.0
    # zbar + (w 1^T + W) A with W = sqrt(N-1) [(N-1) I + S S^T]^-1/2 = I + U diag(shrink) U^T
    return zbar + w @ A + A + U @ (shrink[:, None] * (U.T @ A))


def ensemble_kalman_filter(
    model: StateSpaceModel,
    observations,
    *,
    n_members: int,
    method: Literal["stochastic", "etkf"] = "etkf",
    inflation: float = 1.0,
    rotate: bool = False,
    store_ensemble: bool = True,
    rng: RNGLike = None,
) -> xr.Dataset:
    """Ensemble Kalman filter (stochastic EnKF or square-root ETKF), joint state-parameter.

    Parameters
    ----------
    model : StateSpaceModel
        Dynamics and observation model; its ``param_names`` are estimated by state augmentation.
    observations : DataArray (time, obs_dim) or array (n_time, n_obs)
        A fully-NaN row means no observation at that step.
    n_members : int
        Ensemble size N (>= 2).
    method : {"stochastic", "etkf"}
        Perturbed-observation EnKF (Burgers et al. 1998) or the ensemble transform Kalman
        filter with symmetric square root (Bishop et al. 2001; Hunt et al. 2007).
    inflation : float
        Multiplicative inflation factor (>= 1) applied to the analysis anomalies,
        ``E <- mean + inflation * (E - mean)`` (DAPPER's ``infl``).
    rotate : bool
        Apply a mean-preserving random rotation to the analysis anomalies (DAPPER's ``rot``).
    store_ensemble : bool
        Keep the analysis ensemble (time, member, state) in the result.
    rng : Generator, int or None
        Randomness of the initial ensemble, process noise, perturbed observations, rotations.

    Returns
    -------
    Dataset
        ``mean``, ``std``, ``forecast_mean`` (time, state) and, if stored, ``ensemble``
        (time, member, state); attrs method, n_members, inflation, seed info.
    """
    if method not in ("stochastic", "etkf"):
        raise ValueError(f"`method` must be one of ['etkf', 'stochastic'], got {method!r}.")
    N = _check_members(n_members, "n_members")
    if not np.isfinite(inflation) or inflation < 1.0:
        raise ValueError(f"`inflation` must be a finite factor >= 1, got {inflation}.")
    g = as_generator(rng)
    y, times = _observations(model, observations)
    r_chol = np.linalg.cholesky(model.obs_cov)
    lam_r, vec_r = np.linalg.eigh(model.obs_cov)
    r_inv_sqrt = (vec_r / np.sqrt(lam_r)) @ vec_r.T
    z = model.initial_ensemble(N, g)
    T, nz = y.shape[0], z.shape[1]
    means, stds, fcs = np.empty((T, nz)), np.empty((T, nz)), np.empty((T, nz))
    ens = np.empty((T, N, nz)) if store_ensemble else None
    for k in range(T):
        z = model.forecast(z, _step_time(times, k), g)
        fcs[k] = z.mean(axis=0)
        if not np.isnan(y[k]).all():
            z = _enkf_analysis(z, y[k], model, method, g, r_chol, r_inv_sqrt)
            if inflation != 1.0 or rotate:
                zbar = z.mean(axis=0)
                A = z - zbar
                if rotate:
                    A = _random_rotation(N, g) @ A
                z = zbar + inflation * A
        if not np.all(np.isfinite(z)):
            raise FloatingPointError(
                f"The ensemble became non-finite at time step {k} (time {times[k]}): the filter "
                "diverged. Increase the ensemble size or inflation, or check the model."
            )
        means[k] = z.mean(axis=0)
        stds[k] = z.std(axis=0, ddof=1)
        if ens is not None:
            ens[k] = z
    return _result(model, times, means, stds, fcs, ens, "member",
                   {"method": f"enkf-{method}", "n_members": N, "inflation": float(inflation),
                    "rotate": int(rotate)})


# ------------------------------------------------------------------------------------------
# Bootstrap particle filter
# ------------------------------------------------------------------------------------------
def particle_filter(
    model: StateSpaceModel,
    observations,
    *,
    n_particles: int,
    resample_threshold: float = 0.5,
    store_particles: bool = True,
    rng: RNGLike = None,
) -> xr.Dataset:
    """Bootstrap particle filter (proposal = dynamics) with systematic resampling.

    Parameters
    ----------
    model : StateSpaceModel
        Needs process noise (``process_cov``) or parameter jitter; otherwise resampling leaves
        copies that never separate.
    observations : DataArray (time, obs_dim) or array (n_time, n_obs)
    n_particles : int
    resample_threshold : float in (0, 1]
        Resample when ESS / N falls below this fraction (1 resamples every step).
    store_particles : bool
        Keep ``particles`` (time, particle, state) and ``log_weight`` (time, particle).
    rng : Generator, int or None

    Returns
    -------
    Dataset
        Weighted ``mean``, ``std``, ``forecast_mean`` (time, state), ``ess`` (time),
        ``log_likelihood`` (time, estimated log predictive density), attr ``log_evidence``.
    """
    N = _check_members(n_particles, "n_particles")
    if not 0 < resample_threshold <= 1:
        raise ValueError(f"`resample_threshold` must lie in (0, 1], got {resample_threshold}.")
    if model.process_cov is None and not (model.n_params and model.param_jitter > 0):
        raise ValueError(
            "The bootstrap particle filter needs stochastic dynamics: give the model a "
            "`process_cov` (or `param_jitter` for augmented parameters)."
        )
    g = as_generator(rng)
    y, times = _observations(model, observations)
    cR = cho_factor(model.obs_cov)
    log_det_r = 2 * np.log(np.diag(cR[0])).sum()
    z = model.initial_ensemble(N, g)
    log_w = np.full(N, -np.log(N))
    T, nz = y.shape[0], z.shape[1]
    means, stds, fcs = np.empty((T, nz)), np.empty((T, nz)), np.empty((T, nz))
    ess, lls = np.empty(T), np.zeros(T)
    parts = np.empty((T, N, nz)) if store_particles else None
    lws = np.empty((T, N)) if store_particles else None
    for k in range(T):
        z = model.forecast(z, _step_time(times, k), g)
        w = np.exp(log_w)
        fcs[k] = w @ z
        if not np.isnan(y[k]).all():
            innov = y[k][None, :] - model.observe(z[:, : model.n_state])
            ll = -0.5 * (np.einsum("ij,ji->i", innov, cho_solve(cR, innov.T))
                         + log_det_r + y[k].size * np.log(2 * np.pi))
            lls[k] = float(logsumexp(log_w + ll))
            log_w = normalize_log_weights(log_w + ll)
        w = np.exp(log_w)
        means[k] = w @ z
        stds[k] = np.sqrt(np.maximum(w @ (z - means[k]) ** 2, 0.0))
        ess[k] = effective_sample_size(log_w)
        if parts is not None:
            parts[k], lws[k] = z, log_w
        if ess[k] < resample_threshold * N:
            z = z[systematic_resample(log_w, g)]
            log_w = np.full(N, -np.log(N))
    ds = _result(model, times, means, stds, fcs, None, "particle",
                 {"method": "bootstrap-pf", "n_particles": N, "log_evidence": float(lls.sum())})
    ds["ess"] = ("time", ess)
    ds["log_likelihood"] = ("time", lls)
    if parts is not None:
        ds["particles"] = (("time", "particle", "state"), parts)
        ds["log_weight"] = (("time", "particle"), lws)
        ds = ds.assign_coords(particle=np.arange(N))
    return ds


def analysis_rmse(result: xr.Dataset, truth: xr.DataArray, *, spinup: int = 0) -> xr.DataArray:
    """Root-mean-square error of the analysis mean over the state at each time.

    Parameters
    ----------
    result : Dataset
        A filter result with ``mean`` (time, state).
    truth : DataArray (time, state)
        The true trajectory (its ``state`` labels select the matching components).
    spinup : int
        Number of leading time steps to drop.

    Returns
    -------
    DataArray (time,)
        Average with ``.mean("time")`` for the time-averaged RMSE.
    """
    if "state" not in truth.dims or "time" not in truth.dims:
        raise ValueError(f"`truth` must have dims ('time', 'state'), got {truth.dims}.")
    mean = result["mean"].sel(state=truth["state"].values)
    err = (mean - truth.assign_coords(time=mean["time"].values)) ** 2
    return np.sqrt(err.mean("state")).isel(time=slice(spinup, None)).rename("rmse")
