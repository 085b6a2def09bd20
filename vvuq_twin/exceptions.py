"""Exceptions and warnings of vvuq_twin, all in one place.

Messages state what was expected, what arrived, where, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "VVUQError",
    "TwinSpecificationError",
    "DataValidationError",
    "SimulatorError",
    "CalibrationError",
    "EnsembleError",
    "DiagnosticsWarning",
    "SamplerChoiceWarning",
    "ExtrapolationWarning",
]


class VVUQError(Exception):
    """Base class of all vvuq_twin errors."""


class TwinSpecificationError(VVUQError, ValueError):
    """A twin declaration (simulator, parameters, hierarchy, discrepancy, observation) is invalid."""


class DataValidationError(VVUQError, ValueError):
    """Data handed to a twin are malformed (NaN/inf, shape or coord mismatch, unknown unit, ...)."""


class SimulatorError(VVUQError, RuntimeError):
    """The simulator failed, returned the wrong shape, or returned non-finite values."""


class CalibrationError(VVUQError, RuntimeError):
    """Calibration could not run (e.g. the sampler failed)."""


class EnsembleError(VVUQError, RuntimeError):
    """Ensemble runs failed and the caller asked for failures to raise."""


class DiagnosticsWarning(UserWarning):
    """Sampler diagnostics (R-hat, ESS, divergences, E-BFMI) failed their thresholds."""


class SamplerChoiceWarning(UserWarning):
    """The requested sampler cannot be used and another one was chosen (the message says why)."""


class ExtrapolationWarning(UserWarning):
    """A prediction lies outside the domain where the twin was validated."""
