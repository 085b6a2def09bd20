"""Posteriors of sequential design on a torch :class:`DesignProblem` (design -> measure -> assimilate).

The loop is :func:`vvuq_twin.design.steer` (:mod:`vvuq_twin.design.steering`, the one steering
loop of the package); this module is its design-problem backend. The loop keeps a posterior -- :class:`ParticlePosterior` (weighted particles
updated by the package's SMC engine, :func:`vvuq_twin.assimilation.smc_update`) for any problem, or
:class:`GaussianPosterior` (exact) for a linear-Gaussian one -- and at every step

1. designs the next measurement(s) under the current posterior (the problem's prior is replaced
   by the posterior): the best of a candidate set, a botorch-optimised continuous design, a
   uniformly random design (a baseline), or any callable;
2. measures: ``measure(design) -> y`` is the real system, a held-back dataset, or a synthetic
   truth (:func:`synthetic_measurement`);
3. assimilates ``y`` into the posterior;

and records the chosen designs, observations, utilities and posterior summaries per step in an
xarray Dataset.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Literal, Protocol, Union

import numpy as np
import torch
import xarray as xr
from torch.distributions import Distribution, MultivariateNormal, constraints

from .._rng import RNGLike, as_generator, seed_int
from .estimators import _gaussian_prior_moments
from .optimize import optimize_design, select_greedy
from .problem import DesignError, DesignProblem, EstimatorNotApplicableError, ObservationModelError, torch_seed

__all__ = [
    "Posterior",
    "ParticlePosterior",
    "GaussianPosterior",
    "WeightedParticles",
    "synthetic_measurement",
]


class Posterior(Protocol):
    """What the steering loop needs of a posterior."""

    def update(self, design: torch.Tensor, y: torch.Tensor) -> None: ...

    def as_distribution(self) -> Distribution: ...

    def summary(self) -> dict[str, np.ndarray | float]: ...


class WeightedParticles(Distribution):
    """A weighted empirical distribution (sampling resamples particles by weight).

    Used as the "prior" of the design problem in later steps of a sequential design. It has no
    density, so estimators that need ``log_prob`` (Laplace, the posterior bound) refuse it.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, particles: torch.Tensor, log_weights: torch.Tensor) -> None:
        self.particles = particles
        self.weights = torch.softmax(log_weights, 0)
        super().__init__(batch_shape=torch.Size(), event_shape=particles.shape[-1:], validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        n = int(np.prod(sample_shape)) if len(sample_shape) else 1
        idx = torch.multinomial(self.weights, n, replacement=True)
        return self.particles[idx].reshape(*sample_shape, -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("A weighted-particle posterior has no density; use a sample-based estimator.")


def _weighted_summary(th: torch.Tensor, w: torch.Tensor) -> dict[str, Any]:
    mean = (w[:, None] * th).sum(0)
    c = th - mean
    cov = (w[:, None, None] * c[:, :, None] * c[:, None, :]).sum(0)
    p = th.shape[1]
    ld = torch.linalg.slogdet(cov + 1e-12 * torch.eye(p, dtype=th.dtype, device=th.device))[1]
    return {"mean": mean.cpu().numpy(), "sd": torch.sqrt(torch.diagonal(cov)).cpu().numpy(),
            "entropy": float(0.5 * (ld + p * math.log(2 * math.pi * math.e))),
            "ess": float(1.0 / (w**2).sum())}


def _support_transform(prior: Distribution) -> Any:
    """The unconstrained-space transform of a torch prior's support (one for the whole vector)."""
    sup = prior.support
    while isinstance(sup, constraints.independent):
        sup = sup.base_constraint
    if sup is constraints.positive:
        return "log"
    if isinstance(sup, constraints.interval):
        lo, hi = torch.as_tensor(sup.lower_bound), torch.as_tensor(sup.upper_bound)
        if lo.numel() == 1 and hi.numel() == 1:
            return ("interval", float(lo), float(hi))
    return None


class ParticlePosterior:
    """Posterior as weighted particles, updated by the package's SMC engine.

    The particles are a :class:`vvuq_twin.assimilation.ParticlePosterior` (the one particle class
    of the package) holding the parameter vector ``theta`` (n, p); each :meth:`update` runs
    :func:`vvuq_twin.assimilation.smc_update`: reweighting by the new observations, adaptive
    tempering, and when the ESS falls below ``ess_threshold * n_particles`` resampling and moves
    in unconstrained space (kernel chosen automatically; MALA uses the torch gradient of the
    prior and the likelihood) until the particles decorrelate. The update reports are kept in
    :attr:`reports`.

    Parameters
    ----------
    problem : DesignProblem
        Its prior must have a ``log_prob`` (for the moves).
    n_particles : int
    ess_threshold : float in (0, 1]
    n_moves : int
        Least number of move steps per stage (more are taken until the particles decorrelate,
        at most ``max_moves``).
    max_moves : int
    kernel : str
        Rejuvenation kernel (see :func:`vvuq_twin.assimilation.smc_update`), default ``"auto"``.
    rng : Generator, int or None
    """

    def __init__(self, problem: DesignProblem, n_particles: int = 4000, *, ess_threshold: float = 0.5,
                 n_moves: int = 1, max_moves: int = 30, kernel: str = "auto", rng: RNGLike = None) -> None:
        from ..assimilation.smc import ParticlePosterior as _Particles

        if n_particles < 10:
            raise ValueError(f"ParticlePosterior needs n_particles >= 10; got {n_particles}.")
        if not 0 < ess_threshold <= 1:
            raise ValueError(f"ess_threshold must lie in (0, 1]; got {ess_threshold}.")
        self.problem = problem
        self.prior = problem.prior
        self.n_moves = int(n_moves)
        self.max_moves = int(max_moves)
        self.kernel = kernel
        self.ess_threshold = float(ess_threshold)
        self._rng = as_generator(rng)
        with torch_seed(self._rng, problem.device):
            th = problem.sample_prior(n_particles)
        self.state = _Particles({"theta": th.detach().cpu().numpy().astype(float)})
        self.past: list[dict[str, np.ndarray]] = []
        self.designs: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []
        self.acceptance: list[float] = []
        self.reports: list[Any] = []
        self._transform = _support_transform(self.prior)

    # natural-scale densities for the engine (numpy in, numpy out; torch inside) ---------------
    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, float), dtype=self.problem.dtype, device=self.problem.device)

    def _log_prior_t(self, th: torch.Tensor) -> torch.Tensor:
        ok = self.prior.support.check(th)
        if ok.ndim > 1:
            ok = ok.all(-1)
        safe = torch.where(ok[:, None], th, self.particles.mean(0)[None, :].to(th))
        lp = self.prior.log_prob(safe)
        return torch.where(ok, lp, torch.full_like(lp, -math.inf))

    def _log_lik_t(self, th: torch.Tensor, data: dict[str, np.ndarray]) -> torch.Tensor:
        x, y = self._t(data["design"]), self._t(data["y"])
        return self.problem.log_likelihood(y, th, x[None])

    def _log_prior(self, theta: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return self._log_prior_t(self._t(theta["theta"])).cpu().numpy()

    def _log_lik(self, theta: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return self._log_lik_t(self._t(theta["theta"]), data).cpu().numpy()

    def _grad(self, fn: Callable[[torch.Tensor], torch.Tensor], theta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        th = self._t(theta["theta"]).requires_grad_(True)
        with torch.enable_grad():
            out = fn(th)
            (g,) = torch.autograd.grad(out.sum(), th)
        return {"theta": torch.nan_to_num(g).cpu().numpy()}

    def _model(self):
        from ..assimilation.targets import CallableModel

        p = self.problem.n_params
        return CallableModel(
            self._log_lik, self._log_prior, {"theta": (p,)},
            None if self._transform is None else {"theta": self._transform},
            grad_log_likelihood=lambda th, d: self._grad(lambda t: self._log_lik_t(t, d), th),
            grad_log_prior=lambda th: self._grad(self._log_prior_t, th),
        )

    @property
    def particles(self) -> torch.Tensor:
        return self._t(self.state.values["theta"])

    @property
    def log_weights(self) -> torch.Tensor:
        return self._t(self.state.log_weights)

    def update(self, design: torch.Tensor, y: torch.Tensor) -> None:
        """Assimilate observations ``y`` (n_obs,) taken at ``design`` (n_obs, d)."""
        from ..assimilation.smc import smc_update

        batch = {"design": design.detach().cpu().numpy().astype(float),
                 "y": y.detach().cpu().numpy().astype(float).reshape(-1)}
        ll = self._log_lik(self.state.values, batch)
        if np.isnan(ll).any():
            raise ObservationModelError("The log-likelihood of the new observation is NaN for some particles; "
                                        "the observation model is undefined at this design.")
        self.state, rep = smc_update(
            self.state, batch, self._model(), past_data=self.past,
            resample_threshold=self.ess_threshold, kernel=self.kernel, n_mcmc_steps=self.n_moves,
            max_mcmc_steps=self.max_moves, batch_index=len(self.reports), rng=self._rng)
        self.past.append(batch)
        self.designs.append(design)
        self.ys.append(y)
        self.reports.append(rep)
        if rep.acceptance:
            self.acceptance.append(float(np.mean(rep.acceptance)))

    def as_distribution(self) -> Distribution:
        """The current posterior as a weighted-particle distribution."""
        return WeightedParticles(self.particles, self.log_weights)

    def summary(self) -> dict[str, Any]:
        """Posterior mean, sd, Gaussian-approximation entropy (an upper bound) and ESS."""
        return _weighted_summary(self.particles, torch.softmax(self.log_weights, 0))

    def expected(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """Posterior expectation of ``fn(theta)``."""
        return float((torch.softmax(self.log_weights, 0) * fn(self.particles)).sum())


class GaussianPosterior:
    """Exact Gaussian posterior of a linear-Gaussian problem (conjugate update)."""

    def __init__(self, problem: DesignProblem) -> None:
        if problem.linear_gaussian is None:
            raise EstimatorNotApplicableError("GaussianPosterior needs a problem with `linear_gaussian`; use "
                                              "ParticlePosterior.")
        self.problem = problem
        self.mean, self.cov = _gaussian_prior_moments(problem)

    def update(self, design: torch.Tensor, y: torch.Tensor) -> None:
        """Conjugate update with observations ``y`` at ``design``."""
        X, sigma = self.problem.linear_gaussian(design)
        X = X.to(self.problem.dtype)
        S = X @ self.cov @ X.T + sigma**2 * torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
        K = self.cov @ X.T @ torch.linalg.inv(S)
        self.mean = self.mean + K @ (y.to(X.dtype) - X @ self.mean)
        self.cov = self.cov - K @ X @ self.cov
        self.cov = 0.5 * (self.cov + self.cov.T)

    def as_distribution(self) -> Distribution:
        """The posterior ``N(mean, cov)``."""
        return MultivariateNormal(self.mean, covariance_matrix=self.cov)

    def summary(self) -> dict[str, Any]:
        """Posterior mean, sd and (exact) entropy."""
        p = self.mean.shape[0]
        ld = torch.linalg.slogdet(self.cov)[1]
        return {"mean": self.mean.cpu().numpy(), "sd": torch.sqrt(torch.diagonal(self.cov)).cpu().numpy(),
                "entropy": float(0.5 * (ld + p * math.log(2 * math.pi * math.e))), "ess": float("nan")}

    def expected(self, fn: Callable[[torch.Tensor], torch.Tensor], n: int = 4000) -> float:
        """Posterior expectation of ``fn(theta)`` by Monte Carlo."""
        th = self.as_distribution().sample((n,))
        return float(fn(th).mean())


def synthetic_measurement(problem: DesignProblem, truth: Any, *, rng: RNGLike = None
                          ) -> Callable[[np.ndarray], np.ndarray]:
    """A ``measure(design) -> y`` callable that simulates from the problem at the true parameters."""
    g = as_generator(rng)
    th = torch.as_tensor(np.asarray(truth, dtype=float), dtype=problem.dtype, device=problem.device)
    if th.shape != (problem.n_params,):
        raise ValueError(f"truth must have shape ({problem.n_params},); got {tuple(th.shape)}.")

    def measure(design: np.ndarray) -> np.ndarray:
        x = problem.check_design(design)
        with torch_seed(g, problem.device), torch.no_grad():
            return problem.simulate(th, x).cpu().numpy()

    return measure


Designer = Union[Literal["candidates", "random", "botorch"], Callable[[DesignProblem, int, np.random.Generator], Any]]


class _ProblemSteering:
    """The design-problem backend of :func:`vvuq_twin.design.steer` (the one steering loop).

    Chooses designs under the current posterior (the problem's prior replaced by it), measures
    through ``measure(design) -> y`` and updates the posterior; records its stage summaries.
    """

    def __init__(self, problem: DesignProblem, measure: Callable[[np.ndarray], Any], *, designer: Designer,
                 candidates: Any, n_obs_per_step: int, posterior: Posterior | None, n_particles: int,
                 method: str, budget: dict[str, Any] | None, truth: Any,
                 error_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
                 gen: np.random.Generator) -> None:
        if not (designer in ("candidates", "random", "botorch") or callable(designer)):
            raise ValueError("The 'designer' parameter of steer must be 'candidates', 'random', 'botorch' or a "
                             f"callable; got {designer!r}.")
        self.problem, self.measure_fn, self.designer, self.g = problem, measure, designer, gen
        self.n_obs_per_step, self.method, self.budget = n_obs_per_step, method, dict(budget or {})
        if designer == "candidates":
            if candidates is None:
                raise DesignError("designer='candidates' needs a `candidates` array of shape "
                                  "(n_candidates, design_dim).")
            self.C = problem.check_design(candidates)
        if posterior is None:
            posterior = (GaussianPosterior(problem) if problem.linear_gaussian is not None
                         else ParticlePosterior(problem, n_particles, rng=seed_int(gen)))
        self.posterior = posterior
        self.truth_t = None
        if truth is not None:
            self.truth_t = torch.as_tensor(np.asarray(truth, dtype=float), dtype=problem.dtype, device=problem.device)
            self.error_fn = error_fn or (lambda th, tr: ((th - tr) ** 2).sum(-1))
        self.summaries: list[dict[str, Any]] = []
        self.errors: list[float] = []

    def observe(self) -> None:
        self.summaries.append(self.posterior.summary())
        if self.truth_t is not None:
            self.errors.append(self.posterior.expected(lambda th: self.error_fn(th, self.truth_t)))

    def choose(self, step: int) -> tuple[torch.Tensor, float, float]:
        problem, g, designer = self.problem, self.g, self.designer
        cur = problem.with_prior(self.posterior.as_distribution())
        u, se = np.nan, np.nan
        if designer == "random":
            lo, hi = problem.bounds[0].cpu().numpy(), problem.bounds[1].cpu().numpy()
            x = lo + g.random((self.n_obs_per_step, problem.design_dim)) * (hi - lo)
        elif designer == "candidates":
            sel = select_greedy(cur, self.C, self.n_obs_per_step, method=self.method, rng=seed_int(g), **self.budget)
            x, u, se = sel["design"].values, float(sel["utility"]), float(sel["se"])
        elif designer == "botorch":
            res = optimize_design(cur, self.n_obs_per_step, method=self.method, rng=seed_int(g), **self.budget)
            x, u, se = res["best_design"].values, float(res["best_utility"]), float("nan")
        else:
            x = np.asarray(designer(cur, step, g), dtype=float)
        return problem.check_design(x), u, se

    def measure(self, xt: torch.Tensor, step: int) -> np.ndarray:
        y = np.asarray(self.measure_fn(xt.cpu().numpy()), dtype=float).reshape(-1)
        if y.shape != (xt.shape[0],) or not np.isfinite(y).all():
            raise ObservationModelError(
                f"measure() must return {xt.shape[0]} finite observation(s) for a design of {xt.shape[0]} "
                f"measurement(s); got {y.tolist()} at step {step}.")
        return y

    def update(self, xt: torch.Tensor, y: np.ndarray) -> None:
        problem = self.problem
        with torch.no_grad():
            self.posterior.update(xt, torch.as_tensor(y, dtype=problem.dtype, device=problem.device))

    def dataset(self, steps: dict[str, list[Any]], n_steps: int, t0: float) -> xr.Dataset:
        problem, designer, summaries = self.problem, self.designer, self.summaries
        designs = [xt.cpu().numpy() for xt in steps["choice"]]
        ds = xr.Dataset(
            {
                "design": (("step", "obs", "design_dim"), np.stack(designs)),
                "y": (("step", "obs"), np.stack(steps["y"])),
                "utility": ("step", np.array(steps["utility"], dtype=float)),
                "utility_se": ("step", np.array(steps["utility_se"], dtype=float)),
                "posterior_mean": (("stage", "param"), np.stack([s["mean"] for s in summaries])),
                "posterior_sd": (("stage", "param"), np.stack([s["sd"] for s in summaries])),
                "posterior_entropy": ("stage", np.array([s["entropy"] for s in summaries])),
                "ess": ("stage", np.array([s["ess"] for s in summaries])),
            },
            coords={"step": np.arange(1, n_steps + 1), "stage": np.arange(n_steps + 1),
                    "obs": np.arange(designs[0].shape[0]),
                    "design_dim": list(problem.design_names), "param": list(problem.parameter_names)},
            attrs={"designer": designer if isinstance(designer, str) else getattr(designer, "__name__", "callable"),
                   "method": self.method, "target": problem.target.kind, "problem": problem.name,
                   "wall_time": time.perf_counter() - t0},
        )
        if self.truth_t is not None:
            ds["posterior_error"] = ("stage", np.array(self.errors))
            ds["truth"] = ("param", self.truth_t.cpu().numpy())
        return ds
