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
    "SimulatorCalibrationError",
    "IntegrityError",
    "ResultFileError",
    "LedgerIntegrityError",
    "CheckpointIntegrityError",
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


class SimulatorCalibrationError(SimulatorError, CalibrationError):
    """The simulator failed while calibrating (raised, returned NaN/inf or the wrong shape).

    Calibration stops (whatever the sampler: a failing simulator is an error, not a rejected
    proposal); the message names the parameter values. Both ``except SimulatorError`` and
    ``except CalibrationError`` catch it.
    """


class EnsembleError(VVUQError, RuntimeError):
    """Ensemble runs failed and the caller asked for failures to raise."""


class IntegrityError(VVUQError, ValueError):
    """Stored content does not match the checksums written with it, or a file is incomplete.

    The checksums (SHA-256) guard against accidents and naive edits - truncated writes, flipped
    bytes, hand-edited values - not against a deliberate forger, who can recompute them: they
    are not a signature.
    """


class ResultFileError(IntegrityError):
    """A result file is partial, corrupt, not a vvuq_twin result, or its content was edited.

    The message names the file and what is missing or does not match.
    """


class LedgerIntegrityError(IntegrityError):
    """A VVUQ ledger is malformed, or its hash chain is broken (an entry forged, edited or
    removed); the message names the entry."""


class CheckpointIntegrityError(IntegrityError):
    """An assimilation checkpoint is corrupt or was edited (its per-array checksums or its
    metadata hash do not match); the message names the file and the array."""


class DiagnosticsWarning(UserWarning):
    """Sampler diagnostics (R-hat, ESS, divergences, E-BFMI) failed their thresholds."""


class SamplerChoiceWarning(UserWarning):
    """The requested sampler cannot be used and another one was chosen (the message says why)."""


class ExtrapolationWarning(UserWarning):
    """A prediction lies outside the domain where the twin was validated."""
