"""Exceptions of :mod:`vvuq_twin.sensitivity` and :mod:`vvuq_twin.surrogates` (defined in :mod:`vvuq_twin.exceptions`, re-exported here)."""

from __future__ import annotations

from ..exceptions import (  # noqa: F401 - re-exported
    InputSpecificationError,
    UnsupportedDistributionError,
    DependentInputsError,
    QoIEvaluationError,
)

__all__ = [
    "InputSpecificationError",
    "UnsupportedDistributionError",
    "DependentInputsError",
    "QoIEvaluationError",
]
