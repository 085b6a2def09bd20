"""Exceptions of :mod:`vvuq_twin.sensitivity` and :mod:`vvuq_twin.surrogates`."""

from __future__ import annotations

from ..exceptions import SimulatorError, VVUQError

__all__ = [
    "InputSpecificationError",
    "UnsupportedDistributionError",
    "DependentInputsError",
    "QoIEvaluationError",
]


class InputSpecificationError(VVUQError, ValueError):
    """An uncertain input or parameter space is malformed (bounds, names, correlation)."""


class UnsupportedDistributionError(InputSpecificationError):
    """A distribution cannot be represented by chaospy (or by SALib where SALib is needed)."""


class DependentInputsError(VVUQError, ValueError):
    """A method that assumes independent inputs (Sobol, FAST, Morris, PCE) got dependent ones."""


class QoIEvaluationError(SimulatorError):
    """The quantity of interest failed or returned NaN/inf on part of the design."""
