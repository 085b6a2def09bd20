"""Exceptions and warnings of vvuq_twin, all in one place.

Messages state what was expected, what arrived, where, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "VVUQError",
    "TwinSpecificationError",
    "DataValidationError",
    "SimulatorError",
    "SimulatorInstabilityError",
    "CalibrationError",
    "EnsembleError",
    "DiagnosticsWarning",
    "SamplerChoiceWarning",
    "ExtrapolationWarning",
    "SimulatorWarning",
    "MarginalizationWarning",
]


class VVUQError(Exception):
    """Base class of all vvuq_twin errors."""


class TwinSpecificationError(VVUQError, ValueError):
    """A twin declaration (simulator, parameters, hierarchy, discrepancy, observation) is invalid."""


class DataValidationError(VVUQError, ValueError):
    """Data handed to a twin are malformed (NaN/inf, shape or coord mismatch, unknown unit, ...)."""


class SimulatorError(VVUQError, RuntimeError):
    """The simulator failed, returned the wrong shape, or returned non-finite values."""


class SimulatorInstabilityError(SimulatorError):
    """Posterior draws met simulator outputs that are non-finite, absurd (beyond the bound of
    :data:`vvuq_twin.inference.simcheck.ABSURD_FACTOR` times the data scale) or outside the
    integrator's error tolerance (an ODE step too long for a stiff draw).

    ``result`` holds the calibration result (so the draws can be inspected) and ``report`` the
    counts per kind of failure.
    """

    def __init__(self, message: str, *, result=None, report=None):
        super().__init__(message)
        self.result = result
        self.report = report or {}


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


class SimulatorWarning(UserWarning):
    """Some predictive draws met unreliable simulator outputs (non-finite, absurd or outside the
    integrator's tolerance); they are counted and flagged (``simulator_unreliable``)."""


class MarginalizationWarning(UserWarning):
    """The GP discrepancy cannot be integrated out analytically and is sampled as a latent GP
    (the message says why and what it costs)."""
