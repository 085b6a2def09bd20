"""Declaring a decision under uncertainty: variables, loss, risk objective and constraints.

A loss (or constraint function) is a callable ``f(d, xi) -> ndarray (n,)`` of the decision
vector ``d`` (shape ``(k,)``) and the predictive draws ``xi`` (shape ``(n, ...)``), one value per
draw. When it is affine in ``d`` -- ``f(d, xi) = C(xi) @ d + c(xi)`` -- declare it with
:class:`AffineInDecision` so that the solver can use the Rockafellar--Uryasev linear program.

Constraint functions follow the reliability convention *failure when* ``g(d, xi) > 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence, Union

import numpy as np
from scipy.optimize import LinearConstraint

from ..exceptions import DecisionSpecificationError, InfeasibleDecisionError

__all__ = [
    "DecisionSpecificationError",
    "InfeasibleDecisionError",
    "DecisionVariable",
    "AffineInDecision",
    "ChanceConstraint",
    "BufferedConstraint",
    "SuperquantileConstraint",
    "Decision",
]


@dataclass(frozen=True)
class DecisionVariable:
    """A decision variable with finite bounds ``lower <= d <= upper``.

    Parameters
    ----------
    name : str
        Name (becomes a coordinate of the result).
    lower, upper : float
        Finite bounds, ``lower < upper``. Every variable needs them: the solvers (LP, SLSQP,
        differential evolution, Bayesian optimisation) search a bounded box.
    """

    name: str
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DecisionSpecificationError(f"A decision variable needs a non-empty string name; got {self.name!r}.")
        lo, hi = self.lower, self.upper
        if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            raise DecisionSpecificationError(
                f"Decision variable {self.name!r} has no finite bounds (lower={lo!r}, upper={hi!r}). "
                f"Every decision variable needs finite bounds, e.g. "
                f"DecisionVariable({self.name!r}, lower=0.0, upper=10.0)."
            )
        if not float(lo) < float(hi):
            raise DecisionSpecificationError(
                f"Decision variable {self.name!r} needs lower < upper; got lower={lo!r}, upper={hi!r}."
            )
        object.__setattr__(self, "lower", float(lo))
        object.__setattr__(self, "upper", float(hi))


@dataclass(frozen=True)
class AffineInDecision:
    """A per-draw function affine in the decision: ``f(d, xi) = coef(xi) @ d + offset(xi)``.

    Parameters
    ----------
    coef : callable
        ``coef(xi) -> ndarray (n, k)``.
    offset : callable, optional
        ``offset(xi) -> ndarray (n,)`` (zero when omitted).
    """

    coef: Callable[[np.ndarray], np.ndarray]
    offset: Callable[[np.ndarray], np.ndarray] | None = None

    def matrices(self, xi: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(C, c)`` with shapes ``(n, k)`` and ``(n,)`` for draws ``xi``."""
        n = len(xi)
        C = np.asarray(self.coef(xi), dtype=float)
        if C.ndim == 1 and k == 1:
            C = C[:, None]
        if C.shape != (n, k):
            raise DecisionSpecificationError(
                f"AffineInDecision.coef must return shape (n_draws, n_variables) = ({n}, {k}); "
                f"got {C.shape}."
            )
        c = np.zeros(n) if self.offset is None else np.asarray(self.offset(xi), dtype=float).reshape(-1)
        if c.shape != (n,):
            raise DecisionSpecificationError(
                f"AffineInDecision.offset must return shape (n_draws,) = ({n},); got {c.shape}."
            )
        return C, c

    def __call__(self, d: np.ndarray, xi: np.ndarray) -> np.ndarray:
        C, c = self.matrices(xi, len(np.atleast_1d(d)))
        return C @ np.atleast_1d(d) + c


LossFn = Union[Callable[[np.ndarray, np.ndarray], np.ndarray], AffineInDecision]


def _check_level(value: float, name: str, owner: str) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise DecisionSpecificationError(
            f"The '{name}' parameter of {owner} must be in the open interval (0, 1); got {value!r}."
        )
    return v


@dataclass(frozen=True)
class ChanceConstraint:
    """``P(g(d, xi) > 0) <= epsilon``.

    Parameters
    ----------
    g : callable or AffineInDecision
        Constraint function; failure when ``g > 0``.
    epsilon : float
        Allowed violation probability in (0, 1).
    name : str
        Label in the results.
    confidence : float, optional
        If given, the sample-average problem uses the tightened level ``epsilon'`` -- the
        largest ``k/n`` whose Clopper--Pearson upper bound at this confidence is ``<= epsilon``
        -- so that the true violation probability is below ``epsilon`` with that confidence
        (for the solution evaluated on fresh draws).
    """

    g: LossFn
    epsilon: float
    name: str = "chance"
    confidence: float | None = None
    kind: str = field(default="probability", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_level(self.epsilon, "epsilon", "ChanceConstraint"))
        if self.confidence is not None:
            object.__setattr__(self, "confidence", _check_level(self.confidence, "confidence", "ChanceConstraint"))


@dataclass(frozen=True)
class BufferedConstraint:
    """Buffered failure probability ``bPOF(g(d, xi)) <= epsilon``.

    Equivalent to ``CVaR_{1-epsilon}(g) <= 0`` (Rockafellar & Royset 2010), hence convex in
    ``d`` when ``g`` is, and a linear program when ``g`` is affine in ``d``. It implies the
    chance constraint ``P(g > 0) <= epsilon``.
    """

    g: LossFn
    epsilon: float
    name: str = "buffered"
    kind: str = field(default="buffered", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_level(self.epsilon, "epsilon", "BufferedConstraint"))


@dataclass(frozen=True)
class SuperquantileConstraint:
    """``CVaR_alpha(g(d, xi)) <= bound``."""

    g: LossFn
    alpha: float
    bound: float = 0.0
    name: str = "superquantile"
    kind: str = field(default="superquantile", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _check_level(self.alpha, "alpha", "SuperquantileConstraint"))
        if not math.isfinite(float(self.bound)):
            raise DecisionSpecificationError(f"SuperquantileConstraint bound must be finite; got {self.bound!r}.")


Constraint = Union[ChanceConstraint, BufferedConstraint, SuperquantileConstraint]


@dataclass(frozen=True)
class Decision:
    """A decision problem: minimise a risk of the loss subject to risk constraints.

    Parameters
    ----------
    variables : sequence of DecisionVariable
        The decision vector, each with finite bounds.
    loss : callable or AffineInDecision
        ``loss(d, xi) -> (n,)`` loss per predictive draw.
    risk : {"expected", "superquantile"}
        Objective: expected loss, or ``CVaR_alpha`` of the loss.
    alpha : float, optional
        Level of the superquantile objective.
    constraints : sequence
        :class:`ChanceConstraint`, :class:`BufferedConstraint`, :class:`SuperquantileConstraint`.
    linear_constraints : sequence of scipy.optimize.LinearConstraint
        Deterministic constraints ``lb <= A d <= ub`` (e.g. a budget ``sum(d) == 1``).
    """

    variables: Sequence[DecisionVariable]
    loss: LossFn
    risk: Literal["expected", "superquantile"] = "expected"
    alpha: float | None = None
    constraints: Sequence[Constraint] = ()
    linear_constraints: Sequence[LinearConstraint] = ()

    def __post_init__(self) -> None:
        vs = tuple(self.variables)
        if not vs:
            raise DecisionSpecificationError("A Decision needs at least one DecisionVariable.")
        for v in vs:
            if not isinstance(v, DecisionVariable):
                raise DecisionSpecificationError(
                    f"Decision variables must be DecisionVariable(name, lower, upper); got {v!r}."
                )
        names = [v.name for v in vs]
        if len(set(names)) != len(names):
            raise DecisionSpecificationError(f"Decision variable names must be unique; got {names}.")
        if self.risk not in ("expected", "superquantile"):
            raise DecisionSpecificationError(
                f"The 'risk' parameter of Decision must be 'expected' or 'superquantile'; got {self.risk!r}."
            )
        if self.risk == "superquantile":
            if self.alpha is None:
                raise DecisionSpecificationError("Decision(risk='superquantile') needs alpha, e.g. alpha=0.95.")
            object.__setattr__(self, "alpha", _check_level(self.alpha, "alpha", "Decision"))
        cons = tuple(self.constraints)
        for c in cons:
            if not isinstance(c, (ChanceConstraint, BufferedConstraint, SuperquantileConstraint)):
                raise DecisionSpecificationError(
                    "Decision constraints must be ChanceConstraint, BufferedConstraint or "
                    f"SuperquantileConstraint; got {type(c).__name__}. Deterministic linear "
                    "constraints go in linear_constraints."
                )
        cnames = [c.name for c in cons]
        if len(set(cnames)) != len(cnames):
            raise DecisionSpecificationError(f"Constraint names must be unique; got {cnames}.")
        lcs = tuple(self.linear_constraints)
        for lc in lcs:
            if not isinstance(lc, LinearConstraint):
                raise DecisionSpecificationError(
                    f"linear_constraints must hold scipy.optimize.LinearConstraint objects; got {type(lc).__name__}."
                )
            A = np.atleast_2d(lc.A)
            if A.shape[1] != len(vs):
                raise DecisionSpecificationError(
                    f"A LinearConstraint has {A.shape[1]} columns but the decision has {len(vs)} variables."
                )
        object.__setattr__(self, "variables", vs)
        object.__setattr__(self, "constraints", cons)
        object.__setattr__(self, "linear_constraints", lcs)

    @property
    def names(self) -> list[str]:
        """Variable names."""
        return [v.name for v in self.variables]

    @property
    def bounds(self) -> np.ndarray:
        """Array ``(k, 2)`` of lower and upper bounds."""
        return np.array([[v.lower, v.upper] for v in self.variables])

    @property
    def is_linear(self) -> bool:
        """Whether the problem is a linear program after the Rockafellar--Uryasev reformulation."""
        return isinstance(self.loss, AffineInDecision) and all(
            isinstance(c.g, AffineInDecision) and c.kind != "probability" for c in self.constraints
        )
