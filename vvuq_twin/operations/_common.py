"""Helpers shared by the twin operations (not public)."""

from __future__ import annotations

from typing import Any

from ..exceptions import DataValidationError, OperationError
from ..inference.results import TwinResult

__all__ = ["OperationError", "require_result"]


def require_result(result: Any, op: str) -> TwinResult:
    """Check that ``result`` is a TwinResult with its twin and data attached."""
    if not isinstance(result, TwinResult):
        raise OperationError(
            f"{op}: expected a TwinResult from vvuq_twin.calibrate, got {type(result).__name__}."
        )
    if result.twin is None or result.data is None:
        raise DataValidationError(
            f"{op}: the result has no twin/data attached (loaded from disk?). Load it with "
            "load_result(path, twin=..., data=...)."
        )
    return result


def param_signature(twin: Any) -> list[dict[str, Any]]:
    """The parameterisation of a twin: names, priors, per-unit flags and links."""
    return [p.spec() for p in twin.parameters]
