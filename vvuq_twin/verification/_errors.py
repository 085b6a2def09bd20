"""Exceptions and warnings of :mod:`vvuq_twin.verification` (defined in :mod:`vvuq_twin.exceptions`, re-exported here)."""

from __future__ import annotations

from ..exceptions import (  # noqa: F401 - re-exported
    VerificationError,
    RefinementError,
    ManufacturedSolutionError,
    SBCError,
    ConvergenceWarning,
    SBCWarning,
)

__all__ = [
    "VerificationError",
    "RefinementError",
    "ManufacturedSolutionError",
    "SBCError",
    "ConvergenceWarning",
    "SBCWarning",
]
