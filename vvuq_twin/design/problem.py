"""Declaring a Bayesian experimental-design problem.

A :class:`DesignProblem` is the one small interface the estimators, optimisers and the steering
loop see. It holds

* ``prior`` -- a :class:`torch.distributions.Distribution` over the parameter vector (event shape
  ``(n_params,)``); after data arrive the steering loop swaps in the current posterior;
* ``observation`` -- ``observation(theta, design) -> Distribution``: how a design changes the
  observation model. ``theta`` has shape ``(..., n_params)``, ``design`` has shape
  ``(..., n_obs, design_dim)``; leading dims broadcast and the returned distribution has batch
  shape ``(..., n_obs)`` (or event shape ``(n_obs,)``). Written in torch, so it is
  differentiable in ``theta`` and ``design``;
* ``bounds`` -- lower/upper bounds of each design coordinate;
* ``target`` -- what is to be learnt: :class:`AllParameters`, :class:`ParameterSubset`,
  :class:`QoI` (a function of the parameters) or :class:`DecisionLoss` (goal-oriented).

A problem whose observation model is linear-Gaussian in the parameters may also declare
``linear_gaussian(design) -> (X, sigma)`` so that the closed form can be used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch
from torch.distributions import Distribution

from .._rng import RNGLike, seed_int
from ..exceptions import (
    BudgetError,
    DesignError,
    EstimatorNotApplicableError,
    ObservationModelError,
)

__all__ = [
    "DesignError",
    "ObservationModelError",
    "EstimatorNotApplicableError",
    "BudgetError",
    "AllParameters",
    "ParameterSubset",
    "QoI",
    "DecisionLoss",
    "Target",
    "DesignProblem",
    "torch_seed",
]


@dataclass(frozen=True)
class AllParameters:
    """Learn all parameters: the utility is the EIG about the full parameter vector."""

    kind: str = field(default="all", init=False)


@dataclass(frozen=True)
class ParameterSubset:
    """Learn a subset of the parameters (the others are nuisance, marginalised out).

    The nested estimator draws the nuisance parameters from their prior marginal independently of
    the subset, which is exact only when the prior factorises between subset and nuisance
    (declare ``DesignProblem(factorised_prior=True)``).
    """

    names: tuple[str, ...]
    kind: str = field(default="subset", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if len(self.names) == 0:
            raise ValueError("ParameterSubset needs at least one parameter name; got an empty list.")


@dataclass(frozen=True)
class QoI:
    """Learn a quantity of interest ``fn(theta) -> (..., k)`` (e.g. a predicted time-to-failure).

    Parameters
    ----------
    fn : callable
        Maps a parameter tensor ``(..., n_params)`` to ``(...,)`` or ``(..., k)``.
    name : str
        Label used in results.
    linear : array_like, optional
        When the QoI is ``c @ theta`` (``c`` of shape ``(n_params,)`` or ``(k, n_params)``), give
        ``c`` so the linear-Gaussian closed form can be used.
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    name: str = "qoi"
    linear: Any = None
    kind: str = field(default="qoi", init=False)


@dataclass(frozen=True)
class DecisionLoss:
    """Learn what matters for a decision: utility = expected value of sample information.

    Parameters
    ----------
    loss : callable
        ``loss(theta) -> (..., n_actions)``: loss of every action under parameters ``theta``.
    actions : sequence
        Action labels (length ``n_actions``).
    """

    loss: Callable[[torch.Tensor], torch.Tensor]
    actions: tuple[Any, ...]
    kind: str = field(default="decision", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", tuple(self.actions))
        if len(self.actions) < 2:
            raise ValueError(f"DecisionLoss needs >= 2 actions; got {len(self.actions)}.")


Target = Union[AllParameters, ParameterSubset, QoI, DecisionLoss]


@contextlib.contextmanager
def torch_seed(rng: RNGLike, device: torch.device | str = "cpu") -> Iterator[torch.Generator]:
    """Seed torch's global generator(s) from ``rng`` inside a context that restores their state.

    torch.distributions sample from the global generator; this keeps them reproducible without
    leaving the global state changed. Yields a seeded :class:`torch.Generator` on ``device``.
    """
    device = torch.device(device)
    seed = seed_int(rng)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        yield gen


def _is_discrete(dist: Distribution) -> bool:
    support = getattr(dist, "support", None)
    if support is None:
        return False
    try:
        return bool(support.is_discrete)
    except (AttributeError, NotImplementedError):
        return False


@dataclass(frozen=True)
class DesignProblem:
    """A Bayesian experimental-design problem.

    Parameters
    ----------
    prior : torch.distributions.Distribution
        Prior (or current posterior) over the parameter vector, event shape ``(n_params,)``.
    observation : callable
        ``observation(theta, design) -> Distribution`` with batch shape ``(..., n_obs)``; see the
        module docstring for the broadcasting contract.
    bounds : array_like, shape (2, design_dim)
        Lower and upper bounds of each design coordinate.
    parameter_names : sequence of str
        Names of the parameter vector's entries.
    target : Target
        What is to be learnt (default: all parameters).
    design_names : sequence of str, optional
        Names of the design coordinates (default ``xi_0, xi_1, ...``).
    linear_gaussian : callable, optional
        ``design -> (X, sigma)`` with ``y ~ N(X theta, sigma^2 I)``; enables the closed form (the
        prior must then be Gaussian).
    factorised_prior : bool
        Whether the prior factorises over the parameters (needed for :class:`ParameterSubset`).
    dtype, device
        Where the computations run (float64 on CPU by default; pass ``device="cuda"`` for GPU).
    name : str
        Label used in results.
    """

    prior: Distribution
    observation: Callable[[torch.Tensor, torch.Tensor], Distribution]
    bounds: Any
    parameter_names: Sequence[str]
    target: Target = AllParameters()
    design_names: Sequence[str] | None = None
    linear_gaussian: Callable[[torch.Tensor], tuple[torch.Tensor, float]] | None = None
    factorised_prior: bool = False
    dtype: torch.dtype = torch.float64
    device: Any = "cpu"
    name: str = "design_problem"

    def __post_init__(self) -> None:
        dev = torch.device(self.device)
        object.__setattr__(self, "device", dev)
        b = torch.as_tensor(np.asarray(self.bounds, dtype=float), dtype=self.dtype, device=dev)
        if b.ndim != 2 or b.shape[0] != 2:
            raise DesignError(
                f"Expected `bounds` of shape (2, design_dim) (a row of lower and a row of upper "
                f"bounds); got shape {tuple(b.shape)}."
            )
        if not torch.all(b[0] < b[1]):
            raise DesignError(f"Every lower bound must be below its upper bound; got bounds {b.tolist()}.")
        object.__setattr__(self, "bounds", b)
        names = tuple(self.parameter_names)
        object.__setattr__(self, "parameter_names", names)
        ev = tuple(self.prior.event_shape)
        if ev != (len(names),):
            raise ValueError(
                f"The prior must have event shape (n_params,) = ({len(names)},) matching "
                f"parameter_names {names}; got event shape {ev}. Wrap independent priors with "
                "torch.distributions.Independent(..., 1)."
            )
        dn = self.design_names
        dn = tuple(f"xi_{i}" for i in range(b.shape[1])) if dn is None else tuple(dn)
        if len(dn) != b.shape[1]:
            raise DesignError(f"Got {len(dn)} design_names for {b.shape[1]} design coordinates.")
        object.__setattr__(self, "design_names", dn)
        if isinstance(self.target, ParameterSubset):
            unknown = [n for n in self.target.names if n not in names]
            if unknown:
                raise ValueError(f"ParameterSubset names {unknown} are not parameters; known: {names}.")

    # ------------------------------------------------------------------ properties
    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self.parameter_names)

    @property
    def design_dim(self) -> int:
        """Number of coordinates of one measurement's design."""
        return int(self.bounds.shape[1])

    @property
    def is_discrete(self) -> bool:
        """Whether the prior is over a discrete parameter space."""
        return _is_discrete(self.prior)

    def with_prior(self, prior: Distribution) -> "DesignProblem":
        """A copy with another prior (e.g. the current posterior in a sequential loop)."""
        return replace(self, prior=prior)

    def with_target(self, target: Target) -> "DesignProblem":
        """A copy with another learning target."""
        return replace(self, target=target)

    # ------------------------------------------------------------------ validation
    def check_design(self, design: Any, *, batch: bool = False) -> torch.Tensor:
        """Return ``design`` as a tensor of shape ``(n_obs, design_dim)`` (``(B, n_obs, d)`` if
        ``batch``), raising :class:`DesignError` if it is malformed or outside the bounds."""
        x = torch.as_tensor(np.asarray(design.detach().cpu() if isinstance(design, torch.Tensor) else design,
                                       dtype=float), dtype=self.dtype, device=self.device)
        want = 3 if batch else 2
        if x.ndim == want - 1 and self.design_dim == 1 and not batch:
            x = x[:, None]
        elif x.ndim == want - 1 and batch:
            x = x[..., None] if self.design_dim == 1 else x[:, None, :]
        if x.ndim != want or x.shape[-1] != self.design_dim or x.shape[-2] < 1:
            shape = "(n_designs, n_obs, design_dim)" if batch else "(n_obs, design_dim)"
            raise DesignError(
                f"Expected a design of shape {shape} with design_dim={self.design_dim} "
                f"({', '.join(self.design_names)}); got shape {tuple(x.shape)}."
            )
        if not torch.isfinite(x).all():
            raise DesignError("The design contains NaN/inf values.")
        lo, hi = self.bounds[0], self.bounds[1]
        bad = (x < lo) | (x > hi)
        if bad.any():
            idx = torch.nonzero(bad)[0].tolist()
            j = idx[-1]
            raise DesignError(
                f"Design coordinate {self.design_names[j]!r} = {float(x[tuple(idx)]):.6g} at index "
                f"{tuple(idx[:-1])} lies outside its bounds [{float(lo[j]):.6g}, {float(hi[j]):.6g}]; "
                "clip the design or widen DesignProblem.bounds."
            )
        return x

    # ------------------------------------------------------------------ model pieces
    def sample_prior(self, n: int) -> torch.Tensor:
        """``n`` prior draws, shape ``(n, n_params)`` (uses torch's global RNG; seed via
        :func:`torch_seed`)."""
        th = self.prior.sample((n,))
        return th.to(dtype=self.dtype, device=self.device) if th.is_floating_point() else th.to(self.device)

    def _dist(self, theta: torch.Tensor, design: torch.Tensor) -> Distribution:
        try:
            return self.observation(theta, design)
        except (ValueError, RuntimeError) as exc:
            raise ObservationModelError(
                f"The observation model of {self.name!r} could not be built at this design "
                f"(shape {tuple(design.shape)}): {exc}"
            ) from exc

    def log_likelihood(self, y: torch.Tensor, theta: torch.Tensor, design: torch.Tensor) -> torch.Tensor:
        """``log p(y | theta, design)`` summed over the measurements, broadcasting leading dims."""
        dist = self._dist(theta, design)
        try:
            lp = dist.log_prob(y)
        except (ValueError, RuntimeError) as exc:
            raise ObservationModelError(f"log_prob of the observation model of {self.name!r} failed: {exc}") from exc
        if lp.ndim >= 1 and lp.shape[-1] == y.shape[-1] and len(dist.event_shape) == 0:
            lp = lp.sum(-1)
        return lp

    def simulate(self, theta: torch.Tensor, design: torch.Tensor) -> torch.Tensor:
        """Draw ``y ~ p(y | theta, design)``; shape ``(..., n_obs)`` (global RNG)."""
        dist = self._dist(theta, design)
        try:
            y = dist.sample()
        except (ValueError, RuntimeError) as exc:
            raise ObservationModelError(
                f"Sampling the observation model of {self.name!r} failed at a design of shape "
                f"{tuple(design.shape)}: {exc}. The model is undefined there."
            ) from exc
        if y.is_floating_point() and not torch.isfinite(y).all():
            raise ObservationModelError(
                f"The observation model of {self.name!r} produced NaN/inf observations at a design "
                f"of shape {tuple(design.shape)}; the model is undefined there."
            )
        return y

    def qoi_values(self, theta: torch.Tensor) -> torch.Tensor:
        """The target's quantity, shape ``(..., k)``."""
        t = self.target
        if isinstance(t, QoI):
            q = t.fn(theta)
            return q[..., None] if q.ndim == theta.ndim - 1 else q
        if isinstance(t, ParameterSubset):
            idx = [self.parameter_names.index(n) for n in t.names]
            return theta[..., idx]
        return theta
