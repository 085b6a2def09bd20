"""Exceptions of :mod:`vvuq_twin.risk`."""

from __future__ import annotations

from ..exceptions import DataValidationError, VVUQError

__all__ = ["RiskInputError", "RareEventError", "TailSampleWarning"]


class RiskInputError(DataValidationError):
    """Samples, weights or a risk-measure parameter are invalid (message says which and why)."""


class RareEventError(VVUQError, RuntimeError):
    """A rare-event estimator could not finish (e.g. the failure domain was never reached)."""


class TailSampleWarning(UserWarning):
    """Too few draws lie in the tail that a risk figure depends on; its standard error is unreliable."""
