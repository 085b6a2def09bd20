"""Risk measures, rare-event estimation and known-answer risk problems.

Layers: :mod:`~vvuq_twin.risk._array` (NumPy/SciPy estimators and influence functions) ->
:mod:`~vvuq_twin.risk.measures` (public functions on NumPy samples or xarray draws) and
:mod:`~vvuq_twin.risk.rare_events` (subset simulation, importance sampling, FORM, all running the
limit state through :func:`vvuq_twin.ensembles.evaluate`).
"""

from __future__ import annotations

from .errors import RareEventError, RiskInputError, TailSampleWarning
from .problems import LinearLimitState
from .rare_events import FormResult, RareEventResult, form, importance_sampling, subset_simulation
from .measures import (
    RiskEstimate,
    buffered_failure_probability,
    conditional_value_at_risk,
    entropic_risk,
    expected_loss,
    failure_probability,
    quantile,
    superquantile,
    value_at_risk,
)

__all__ = [
    "RiskEstimate",
    "RiskInputError",
    "RareEventError",
    "TailSampleWarning",
    "quantile",
    "value_at_risk",
    "superquantile",
    "conditional_value_at_risk",
    "buffered_failure_probability",
    "failure_probability",
    "expected_loss",
    "entropic_risk",
    "RareEventResult",
    "FormResult",
    "form",
    "subset_simulation",
    "importance_sampling",
    "LinearLimitState",
]
