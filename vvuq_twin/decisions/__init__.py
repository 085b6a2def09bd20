"""Decisions under uncertainty from the twin's predictive draws.

Declare a :class:`Decision` (bounded :class:`DecisionVariable` s, a loss, a risk objective and
chance / buffered / superquantile constraints), solve it by sample average approximation with
:func:`solve` (CVaR linear program or SciPy), or by Bayesian optimisation with
:func:`optimize_bo` when each evaluation needs new simulator runs; quantify the value of
information with :func:`evpi`, :func:`evsi_importance`, :func:`evsi_regression` and
:func:`evsi_nested` (one EVSI formula, :func:`preposterior_terms`, behind all of them and behind
:func:`vvuq_twin.design.evsi`).
"""

from __future__ import annotations

from .bo import BOResult, optimize_bo
from .saa import DecisionResult, as_draws, solve, tightened_epsilon
from .spec import (
    AffineInDecision,
    BufferedConstraint,
    ChanceConstraint,
    Decision,
    DecisionSpecificationError,
    DecisionVariable,
    InfeasibleDecisionError,
    SuperquantileConstraint,
)
from .voi import (
    ValueOfInformation,
    evpi,
    evsi,
    evsi_importance,
    evsi_nested,
    evsi_regression,
    posterior_expected_losses,
    preposterior_terms,
)

__all__ = [
    "DecisionVariable",
    "AffineInDecision",
    "ChanceConstraint",
    "BufferedConstraint",
    "SuperquantileConstraint",
    "Decision",
    "DecisionSpecificationError",
    "InfeasibleDecisionError",
    "DecisionResult",
    "solve",
    "as_draws",
    "tightened_epsilon",
    "BOResult",
    "optimize_bo",
    "ValueOfInformation",
    "evpi",
    "evsi",
    "evsi_importance",
    "evsi_nested",
    "evsi_regression",
    "posterior_expected_losses",
    "preposterior_terms",
]
