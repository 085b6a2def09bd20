"""Exceptions and warnings of vvuq_twin, all in one place.

Every error and warning class of the package is defined here and re-exported by the module that
raises it (``vvuq_twin.risk.RiskInputError`` is ``vvuq_twin.exceptions.RiskInputError``), so
this module is a leaf that every layer may import. The one exception is
:class:`vvuq_twin.assimilation.smc.ParticleCollapseError`, still defined next to the particle
engine; the case studies' data errors live in :mod:`case_studies._data`.

Messages state what was expected, what arrived, where, and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "VVUQError",
    "BLASWarning",
    "MixingWarning",
    "SuiteRefusedError",
    "GateError",
    "DiagnosticsGateError",
    "ValidationGateError",
    "LoopSpecError",
    "TwinSpecificationError",
    "DataValidationError",
    "SimulatorError",
    "SimulatorInstabilityError",
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
    "InputSpecificationError",
    "UnsupportedDistributionError",
    "DependentInputsError",
    "QoIEvaluationError",
    "MetricInputError",
    "DataQualityError",
    "ValidationDomainError",
    "SuiteConfigError",
    "VerificationError",
    "RefinementError",
    "ManufacturedSolutionError",
    "SBCError",
    "ConvergenceWarning",
    "SBCWarning",
    "RiskInputError",
    "RareEventError",
    "TailSampleWarning",
    "DecisionSpecificationError",
    "InfeasibleDecisionError",
    "DesignError",
    "ObservationModelError",
    "EstimatorNotApplicableError",
    "BudgetError",
    "StreamDataError",
    "LineageError",
    "OperationError",
    "ReportError",
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


# ------------------------------------------------------------ sensitivity and surrogates (parameter spaces)
class InputSpecificationError(VVUQError, ValueError):
    """An uncertain input or parameter space is malformed (bounds, names, correlation)."""


class UnsupportedDistributionError(InputSpecificationError):
    """A distribution cannot be represented by chaospy (or by SALib where SALib is needed)."""


class DependentInputsError(VVUQError, ValueError):
    """A method that assumes independent inputs (Sobol, FAST, Morris, PCE) got dependent ones."""


class QoIEvaluationError(SimulatorError):
    """The quantity of interest failed or returned NaN/inf on part of the design."""


# ------------------------------------------------------------ validation, the validation domain and the suite
class MetricInputError(DataValidationError):
    """Inputs of a validation metric are malformed (shape mismatch, NaN/inf, missing dims)."""


class DataQualityError(DataValidationError):
    """The data-quality gate refused a batch of observations (the message lists the reasons)."""


class ValidationDomainError(DataValidationError):
    """Inputs used to build or query a validation domain are malformed."""


class SuiteConfigError(VVUQError, ValueError):
    """A validation-suite case file is malformed (unknown key, missing threshold, bad value)."""


# ------------------------------------------------------------ verification
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


# ------------------------------------------------------------ risk
class RiskInputError(DataValidationError):
    """Samples, weights or a risk-measure parameter are invalid (message says which and why)."""


class RareEventError(VVUQError, RuntimeError):
    """A rare-event estimator could not finish (e.g. the failure domain was never reached)."""


class TailSampleWarning(UserWarning):
    """Too few draws lie in the tail that a risk figure depends on; its standard error is unreliable."""


# ------------------------------------------------------------ decisions
class DecisionSpecificationError(VVUQError, ValueError):
    """A decision declaration is invalid (unbounded variable, bad level, wrong shapes...)."""


class InfeasibleDecisionError(VVUQError, RuntimeError):
    """No decision within the bounds meets the risk constraints on the given samples.

    Attributes
    ----------
    smallest_risk : dict
        Constraint name -> smallest achievable value of its risk figure (violation probability,
        buffered failure probability, or superquantile) over the decision bounds.
    argmin : dict
        Constraint name -> decision that attains it.
    """

    def __init__(self, message: str, smallest_risk: dict[str, float], argmin: dict[str, np.ndarray]):
        super().__init__(message)
        self.smallest_risk = smallest_risk
        self.argmin = argmin


# ------------------------------------------------------------ design
class DesignError(VVUQError, ValueError):
    """A design has the wrong shape, is non-finite, or lies outside the declared bounds."""


class ObservationModelError(SimulatorError):
    """The observation model is undefined (NaN/inf log-likelihood, invalid distribution) at a design."""


class EstimatorNotApplicableError(VVUQError, ValueError):
    """An estimator was asked of a problem it cannot handle (e.g. Laplace on a discrete parameter)."""


class BudgetError(VVUQError, ValueError):
    """A sample budget is too small to give any estimate (or its standard error)."""


# ------------------------------------------------------------ assimilation
class StreamDataError(DataValidationError):
    """A batch failed the data checks (unknown variable or units, NaN, time order); it is
    recorded as rejected and the posterior is unchanged."""


# ------------------------------------------------------------ operations
class LineageError(VVUQError, ValueError):
    """A lineage graph is malformed (unknown node in an edge, bad JSON)."""


class OperationError(VVUQError, ValueError):
    """A twin operation was asked to combine incompatible twins, components or data."""


# ------------------------------------------------------------ report
class ReportError(VVUQError, ValueError):
    """A report was given content it cannot hold (unknown field, bad name, bad table)."""


class SuiteRefusedError(SuiteConfigError):
    """A case names a callable that a suite may not run (see "What a suite may run")."""


# ------------------------------------------------------------ loop
class LoopSpecError(VVUQError, ValueError):
    """A loop is assembled wrongly (unknown or later step named in ``needs``, duplicate names)."""


class GateError(VVUQError, RuntimeError):
    """A step refused to run because a step it consumes failed its gate.

    Attributes
    ----------
    step : str
        The step that refused to run.
    blocked_by : str
        The failed step.
    failures : list of str
        What failed.
    advice : list of str
        What to do about it.
    """

    def __init__(self, step: str, blocked_by: str, failures: list[str], advice: list[str]) -> None:
        self.step, self.blocked_by = step, blocked_by
        self.failures, self.advice = list(failures), list(advice)
        msg = (f"Step {step!r} consumes the output of step {blocked_by!r}, which failed its gate: "
               + "; ".join(failures or ["(no detail)"]) + ". ")
        if advice:
            msg += "What to do: " + "; ".join(advice) + ". "
        msg += ("The completed steps are saved. To run on anyway and mark every number derived "
                "from it PROVISIONAL, start the loop with on_fail='flag'.")
        super().__init__(msg)


class DiagnosticsGateError(GateError):
    """A step consumes draws of a calibration that failed its sampler diagnostics."""


class ValidationGateError(GateError):
    """A decision or design step consumes a twin that failed validation."""


class SimulatorWarning(UserWarning):
    """Some predictive draws met unreliable simulator outputs (non-finite, absurd or outside the
    integrator's tolerance); they are counted and flagged (``simulator_unreliable``)."""


class MarginalizationWarning(UserWarning):
    """The GP discrepancy cannot be integrated out analytically and is sampled as a latent GP
    (the message says why and what it costs)."""


# ------------------------------------------------------------ assimilation (rejuvenation)
class MixingWarning(UserWarning):
    """The rejuvenation moves did not decorrelate the particles (the posterior may be too narrow)."""


# ------------------------------------------------------------ environment
class BLASWarning(UserWarning):
    """PyTensor found no BLAS library to link its C matrix products against (typical of a pip
    install); the message says what it costs and how to fix or silence it. Shown once."""
