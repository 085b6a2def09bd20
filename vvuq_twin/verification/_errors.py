"""Exceptions and warnings of :mod:`vvuq_twin.verification`."""

from __future__ import annotations

from ..exceptions import DiagnosticsWarning, VVUQError

__all__ = [
    "VerificationError",
    "RefinementError",
    "ManufacturedSolutionError",
    "SBCError",
    "ConvergenceWarning",
    "SBCWarning",
]


class VerificationError(VVUQError, ValueError):
    """Base class of verification input errors."""


class RefinementError(VerificationError):
    """A refinement sequence is malformed (not monotone, too short, non-positive, non-finite)."""


class ManufacturedSolutionError(VerificationError):
    """A manufactured solution or PDE operator cannot be turned into a source term."""


class SBCError(VVUQError, RuntimeError):
    """Simulation-based calibration cannot run (improper prior, failed fits, bad fit output)."""


class ConvergenceWarning(DiagnosticsWarning):
    """A grid study is outside the asymptotic range (oscillatory or divergent convergence)."""


class SBCWarning(DiagnosticsWarning):
    """SBC ran but something weakens its conclusions (too few independent draws, ...)."""
