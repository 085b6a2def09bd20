"""Exceptions and warnings of :mod:`vvuq_twin.validation` and the validation suite (defined in :mod:`vvuq_twin.exceptions`, re-exported here)."""

from __future__ import annotations

from ..exceptions import (  # noqa: F401 - re-exported
    MetricInputError,
    DataQualityError,
    ValidationDomainError,
    SuiteConfigError,
)

__all__ = [
    "MetricInputError",
    "DataQualityError",
    "ValidationDomainError",
    "SuiteConfigError",
]
