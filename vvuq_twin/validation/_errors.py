"""Exceptions and warnings of :mod:`vvuq_twin.validation` and the validation suite."""

from __future__ import annotations

from ..exceptions import DataValidationError, VVUQError

__all__ = [
    "MetricInputError",
    "DataQualityError",
    "ValidationDomainError",
    "SuiteConfigError",
]


class MetricInputError(DataValidationError):
    """Inputs of a validation metric are malformed (shape mismatch, NaN/inf, missing dims)."""


class DataQualityError(DataValidationError):
    """The data-quality gate refused a batch of observations (the message lists the reasons)."""


class ValidationDomainError(DataValidationError):
    """Inputs used to build or query a validation domain are malformed."""


class SuiteConfigError(VVUQError, ValueError):
    """A validation-suite case file is malformed (unknown key, missing threshold, bad value)."""
