"""Known-answer problems of streaming assimilation, reused by tests and benchmarks.

* :func:`linear_gaussian_model` - a linear-Gaussian state-space model (damped rotation), where the
  Kalman filter is exact and ensemble filters must approach it as the ensemble grows;
* :func:`lorenz96_model` / :func:`lorenz96_truth` - the Lorenz-96 system in the Sakov et al. (2008)
  setup reproduced by DAPPER (``dapper/mods/Lorenz96/sakov2008.py``: 40 variables, F = 8,
  dt = 0.05, RK4, every variable observed at every step with R = I);
* :class:`ConjugateNormalMean` - a normal mean with known noise sd and a normal prior, whose
  batch-by-batch conjugate update equals the batch posterior exactly;
* :class:`ExponentialDecay` - ``y = a exp(-b t) + N(0, sigma^2)``, a nonlinear two-parameter model
  with a vectorised log-likelihood and a dense-quadrature reference posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import xarray as xr
from scipy import stats

from .._rng import RNGLike, as_generator
from ..assimilation.filters import StateSpaceModel

__all__ = [
    "linear_gaussian_model",
    "simulate_state_space",
    "lorenz96_tendency",
    "lorenz96_step",
    "lorenz96_model",
    "lorenz96_truth",
    "SAKOV2008_RMSE",
    "ConjugateNormalMean",
    "ExponentialDecay",
]

#: Time-averaged analysis RMSE of the square-root EnKF (N=24, inflation 1.013) in the Sakov et al.
#: (2008) Lorenz-96 setup, as listed by DAPPER (``mods/Lorenz96/sakov2008.py``, Table 1 there).
SAKOV2008_RMSE = 0.18


# --------------------------------------------------------------------------------------------
# Linear-Gaussian state-space model
# --------------------------------------------------------------------------------------------
def linear_gaussian_model(
    *, angle: float = 0.3, damping: float = 0.95, process_sd: float = 0.3, obs_sd: float = 0.5,
    observe: str = "first",
) -> StateSpaceModel:
    """A 2-D damped-rotation state-space model ``x_t = F x_{t-1} + w``, ``y_t = H x_t + v``.

    Parameters
    ----------
    angle, damping : float
        ``F = damping * [[cos a, -sin a], [sin a, cos a]]``.
    process_sd, obs_sd : float
        Standard deviations of the process noise ``w`` (each component) and observation noise.
    observe : {"first", "all"}
        Observe only the first component (the second is inferred through the dynamics) or both.
    """
    c, s = np.cos(angle), np.sin(angle)
    F = damping * np.array([[c, -s], [s, c]])
    H = np.array([[1.0, 0.0]]) if observe == "first" else np.eye(2)
    if observe not in ("first", "all"):
        raise ValueError(f"`observe` must be 'first' or 'all', got {observe!r}.")
    return StateSpaceModel(
        state_names=("x1", "x2"),
        forward=lambda x, theta, t: x @ F.T,
        transition_matrix=F,
        obs_operator=H,
        obs_cov=obs_sd**2 * np.eye(H.shape[0]),
        process_cov=process_sd**2 * np.eye(2),
        x0_mean=np.zeros(2),
        x0_cov=np.eye(2),
    )


def simulate_state_space(
    model: StateSpaceModel, n_steps: int, *, rng: RNGLike = None, theta: np.ndarray | None = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Simulate a truth trajectory and its observations from ``model``.

    Returns
    -------
    truth : DataArray (time, state)
    observations : DataArray (time, obs_dim)
    """
    g = as_generator(rng)
    nx = model.n_state
    x = g.multivariate_normal(model.x0_mean, model.x0_cov)[None, :]
    th = np.zeros((1, 0)) if theta is None else np.atleast_2d(np.asarray(theta, float))
    xs, ys = [], []
    Lq = None if model.process_cov is None else np.linalg.cholesky(model.process_cov)
    Lr = np.linalg.cholesky(model.obs_cov)
    for k in range(n_steps):
        x = model.forward(x, th, float(k))
        if Lq is not None:
            x = x + g.standard_normal((1, nx)) @ Lq.T
        xs.append(x[0].copy())
        ys.append(model.observe(x)[0] + Lr @ g.standard_normal(model.n_obs))
    t = np.arange(1, n_steps + 1, dtype=float)
    truth = xr.DataArray(np.array(xs), dims=("time", "state"),
                         coords={"time": t, "state": list(model.state_names)}, name="truth")
    obs = xr.DataArray(np.array(ys), dims=("time", "obs_dim"), coords={"time": t}, name="y")
    return truth, obs


# --------------------------------------------------------------------------------------------
# Lorenz-96
# --------------------------------------------------------------------------------------------
def lorenz96_tendency(x: np.ndarray, forcing: np.ndarray | float = 8.0) -> np.ndarray:
    """dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, along the last axis (periodic)."""
    return (np.roll(x, -1, axis=-1) - np.roll(x, 2, axis=-1)) * np.roll(x, 1, axis=-1) - x + forcing


def lorenz96_step(x: np.ndarray, dt: float = 0.05, forcing: np.ndarray | float = 8.0) -> np.ndarray:
    """One classical RK4 step of Lorenz-96 for a batch of states ``x`` (..., n_var)."""
    k1 = lorenz96_tendency(x, forcing)
    k2 = lorenz96_tendency(x + 0.5 * dt * k1, forcing)
    k3 = lorenz96_tendency(x + 0.5 * dt * k2, forcing)
    k4 = lorenz96_tendency(x + dt * k3, forcing)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def lorenz96_model(
    n_var: int = 40, *, forcing: float = 8.0, dt: float = 0.05, obs_sd: float = 1.0,
    estimate_forcing: bool = False, forcing_prior: tuple[float, float] = (7.0, 1.0),
    forcing_jitter: float = 0.0,
) -> StateSpaceModel:
    """Lorenz-96 as a :class:`StateSpaceModel` in the Sakov et al. (2008) setup.

    With ``estimate_forcing=True`` the forcing F is an unknown parameter appended to the state
    (joint state-parameter estimation by augmentation), with prior ``N(forcing_prior)``.
    """
    names = tuple(f"x{i}" for i in range(n_var))
    x0 = np.eye(n_var)[0]  # DAPPER: x0(M) = eye(M)[0], X0 = N(x0, 0.001 I)

    if estimate_forcing:
        def forward(x, theta, t):
            return lorenz96_step(x, dt, theta[:, :1])

        return StateSpaceModel(
            state_names=names, forward=forward, obs_operator=np.eye(n_var),
            obs_cov=obs_sd**2 * np.eye(n_var), x0_mean=x0, x0_cov=1e-3 * np.eye(n_var),
            param_names=("F",), theta0_mean=np.array([forcing_prior[0]]),
            theta0_cov=np.array([[forcing_prior[1] ** 2]]), param_jitter=forcing_jitter,
        )
    return StateSpaceModel(
        state_names=names, forward=lambda x, theta, t: lorenz96_step(x, dt, forcing),
        obs_operator=np.eye(n_var), obs_cov=obs_sd**2 * np.eye(n_var), x0_mean=x0,
        x0_cov=1e-3 * np.eye(n_var),
    )


def lorenz96_truth(
    n_steps: int, *, n_var: int = 40, forcing: float = 8.0, dt: float = 0.05, obs_sd: float = 1.0,
    rng: RNGLike = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """A Lorenz-96 truth started from ``N(e_0, 0.001 I)`` (as DAPPER) and its observations.

    Returns ``truth`` (time, state) and ``observations`` (time, obs_dim) at t = dt, 2 dt, ...
    """
    g = as_generator(rng)
    x = np.eye(n_var)[0] + np.sqrt(1e-3) * g.standard_normal(n_var)
    xs = np.empty((n_steps, n_var))
    for k in range(n_steps):
        x = lorenz96_step(x, dt, forcing)
        xs[k] = x
    ys = xs + obs_sd * g.standard_normal(xs.shape)
    t = dt * np.arange(1, n_steps + 1)
    truth = xr.DataArray(xs, dims=("time", "state"),
                         coords={"time": t, "state": [f"x{i}" for i in range(n_var)]}, name="truth")
    obs = xr.DataArray(ys, dims=("time", "obs_dim"), coords={"time": t}, name="y")
    return truth, obs


# --------------------------------------------------------------------------------------------
# Static-parameter models for the SMC update
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConjugateNormalMean:
    """``y_i ~ N(mu, sigma^2)`` with known ``sigma`` and prior ``mu ~ N(m0, s0^2)``."""

    sigma: float = 1.0
    m0: float = 0.0
    s0: float = 10.0

    def posterior(self, y: np.ndarray, prior: tuple[float, float] | None = None) -> tuple[float, float]:
        """Exact posterior (mean, sd) of ``mu`` given all of ``y`` (from ``prior`` if given)."""
        m, s = prior if prior is not None else (self.m0, self.s0)
        y = np.asarray(y, float)
        prec = 1.0 / s**2 + y.size / self.sigma**2
        mean = (m / s**2 + y.sum() / self.sigma**2) / prec
        return float(mean), float(np.sqrt(1.0 / prec))

    def update(self, prior: tuple[float, float], y_batch: np.ndarray) -> tuple[float, float]:
        """One conjugate update: the posterior after ``y_batch`` from ``prior`` (mean, sd)."""
        return self.posterior(y_batch, prior=prior)

    def log_likelihood(self, theta: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vectorised log-likelihood of a batch for particles ``theta['mu']`` (n,)."""
        mu = np.asarray(theta["mu"])[:, None]
        y = np.asarray(batch["y"])[None, :]
        return stats.norm.logpdf(y, mu, self.sigma).sum(axis=1)

    def log_prior(self, theta: Mapping[str, np.ndarray]) -> np.ndarray:
        return stats.norm.logpdf(np.asarray(theta["mu"]), self.m0, self.s0)

    def sample_prior(self, n: int, *, rng: RNGLike = None) -> dict[str, np.ndarray]:
        return {"mu": as_generator(rng).normal(self.m0, self.s0, n)}


@dataclass(frozen=True)
class ExponentialDecay:
    """``y = a exp(-b t) + N(0, sigma^2)`` with priors ``a ~ LogNormal(log 2, 0.5)``,
    ``b ~ LogNormal(log 0.5, 0.5)`` and known ``sigma``."""

    a: float = 2.0
    b: float = 0.3
    sigma: float = 0.1
    prior_a: tuple[float, float] = (float(np.log(2.0)), 0.5)
    prior_b: tuple[float, float] = (float(np.log(0.5)), 0.5)

    def simulate(
        self, n_batches: int, batch_size: int, *, dt: float = 0.5, t0: float = 0.0,
        rng: RNGLike = None,
    ) -> list[xr.Dataset]:
        """Batches as Datasets with coord ``time`` and variable ``y`` (attrs units)."""
        g = as_generator(rng)
        out = []
        for k in range(n_batches):
            t = t0 + dt * (k * batch_size + np.arange(1, batch_size + 1)) / batch_size
            y = self.a * np.exp(-self.b * t) + self.sigma * g.standard_normal(batch_size)
            ds = xr.Dataset({"y": ("time", y, {"units": "mm"})},
                            coords={"time": ("time", t, {"units": "s"})})
            out.append(ds)
        return out

    def log_likelihood(self, theta: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vectorised log-likelihood (n,) of a batch dict with ``time`` and ``y``."""
        a = np.asarray(theta["a"])[:, None]
        b = np.asarray(theta["b"])[:, None]
        t = np.asarray(batch["time"])[None, :]
        r = (np.asarray(batch["y"])[None, :] - a * np.exp(-b * t)) / self.sigma
        return -0.5 * np.sum(r * r, axis=1) - r.shape[1] * (np.log(self.sigma) + 0.5 * np.log(2 * np.pi))

    def log_prior(self, theta: Mapping[str, np.ndarray]) -> np.ndarray:
        a = np.asarray(theta["a"])
        b = np.asarray(theta["b"])
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = (stats.lognorm.logpdf(a, self.prior_a[1], scale=np.exp(self.prior_a[0]))
                  + stats.lognorm.logpdf(b, self.prior_b[1], scale=np.exp(self.prior_b[0])))
        return np.where(np.isfinite(lp), lp, -np.inf)

    def sample_prior(self, n: int, *, rng: RNGLike = None) -> dict[str, np.ndarray]:
        g = as_generator(rng)
        return {"a": np.exp(g.normal(*self.prior_a, n)), "b": np.exp(g.normal(*self.prior_b, n))}

    def twin(self) -> Any:
        """The same model declared as a vvuq_twin :class:`~vvuq_twin.Twin` (input ``time``)."""
        import pytensor.tensor as pt

        from ..twin import GaussianObs as Gaussian, LogNormal, Parameter, PytensorSimulator, Twin

        return Twin(
            name="exponential_decay",
            simulator=PytensorSimulator(lambda x, p: p["a"] * pt.exp(-p["b"] * x[:, 0])),
            parameters=[Parameter("a", LogNormal(*self.prior_a)), Parameter("b", LogNormal(*self.prior_b))],
            observation=Gaussian(sigma=self.sigma),
        )

    @staticmethod
    def twin_data(batches: list[xr.Dataset]) -> Any:
        """Batches as one :class:`~vvuq_twin.TwinData` (input ``time``)."""
        from ..twin import TwinData

        return TwinData(x=np.concatenate([d["time"].values for d in batches]),
                        y=np.concatenate([d["y"].values for d in batches]), input_names=["time"])

    def grid_posterior(
        self, batches: list[xr.Dataset], *, n_grid: int = 400, width: float = 8.0,
    ) -> dict[str, np.ndarray]:
        """Reference posterior by dense quadrature on an (a, b) grid around the mode.

        Returns the grid axes ``a``, ``b``, the normalised density ``p`` (on the grid, sums to 1
        times cell area), posterior ``mean`` and ``sd`` of (a, b), and the marginal CDFs.
        """
        data = {"time": np.concatenate([d["time"].values for d in batches]),
                "y": np.concatenate([d["y"].values for d in batches])}
        # locate the mode on a coarse prior-wide grid, then zoom in
        lo_a, hi_a = np.exp(self.prior_a[0] - 4 * self.prior_a[1]), np.exp(self.prior_a[0] + 4 * self.prior_a[1])
        lo_b, hi_b = np.exp(self.prior_b[0] - 4 * self.prior_b[1]), np.exp(self.prior_b[0] + 4 * self.prior_b[1])
        for _ in range(3):
            A, B, lp = self._grid(data, lo_a, hi_a, lo_b, hi_b, 200)
            w = np.exp(lp - lp.max())
            w /= w.sum()
            ma, mb = (w * A).sum(), (w * B).sum()
            sa = np.sqrt((w * (A - ma) ** 2).sum())
            sb = np.sqrt((w * (B - mb) ** 2).sum())
            lo_a, hi_a = max(ma - width * sa, 1e-9), ma + width * sa
            lo_b, hi_b = max(mb - width * sb, 1e-9), mb + width * sb
        A, B, lp = self._grid(data, lo_a, hi_a, lo_b, hi_b, n_grid)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        ma, mb = (w * A).sum(), (w * B).sum()
        return {
            "a": A[:, 0], "b": B[0, :], "weights": w,
            "mean": np.array([ma, mb]),
            "sd": np.array([np.sqrt((w * (A - ma) ** 2).sum()), np.sqrt((w * (B - mb) ** 2).sum())]),
        }

    def _grid(self, data, lo_a, hi_a, lo_b, hi_b, n):
        a = np.linspace(lo_a, hi_a, n)
        b = np.linspace(lo_b, hi_b, n)
        A, B = np.meshgrid(a, b, indexing="ij")
        theta = {"a": A.ravel(), "b": B.ravel()}
        lp = self.log_likelihood(theta, data) + self.log_prior(theta)
        return A, B, lp.reshape(A.shape)

    def sample_grid_posterior(self, ref: dict[str, np.ndarray], n: int, *, rng: RNGLike = None) -> np.ndarray:
        """Draws (n, 2) from the quadrature posterior (uniform jitter within a grid cell)."""
        g = as_generator(rng)
        w = ref["weights"].ravel()
        idx = g.choice(w.size, size=n, p=w)
        ia, ib = np.unravel_index(idx, ref["weights"].shape)
        da, db = ref["a"][1] - ref["a"][0], ref["b"][1] - ref["b"][0]
        return np.column_stack([ref["a"][ia] + da * (g.random(n) - 0.5),
                                ref["b"][ib] + db * (g.random(n) - 0.5)])
