"""Validation of a digital twin against observations.

- Metrics (:mod:`.metrics`): central-interval coverage, PIT and its uniformity test, CRPS (fair
  sample estimator and the Gaussian closed form), energy score, the area validation metric of
  Ferson, Oberkampf & Ginzburg (2008) with u-pooling, LOO-PIT through ArviZ, posterior
  predictive check p-values. NumPy arrays (samples on axis 0) or DataArrays (sample dims
  ``("chain", "draw")`` by default).
- ASME V&V 20 (:mod:`.vv20`): comparison error ``E = S - D`` and validation uncertainty
  ``u_val = sqrt(u_num^2 + u_input^2 + u_D^2)``.
- Validation domain (:mod:`.domain`): where the twin was validated; extrapolation measure and
  flag (with :class:`~vvuq_twin.exceptions.ExtrapolationWarning`) for new inputs.
- Drift (:mod:`.drift`): CUSUM on PIT values with a threshold calibrated by simulation for a
  stated false-alarm probability.
- Data quality (:mod:`.quality`): a gate that refuses corrupt data and says why.
"""

from ._errors import DataQualityError, MetricInputError, SuiteConfigError, ValidationDomainError
from .domain import ValidationDomain
from .drift import CusumDetector, calibrate_cusum, pit_to_z, simulate_performance
from .metrics import (
    DEFAULT_SAMPLE_DIMS,
    UniformityTest,
    area_metric,
    area_metric_u_pooling,
    crps,
    crps_gaussian,
    energy_score,
    interval_coverage,
    loo_pit,
    pit,
    pit_uniformity,
    ppc_pvalue,
)
from .judge import BandCheck, PredictiveJudgement, coverage_test, judge_predictive, median_bias_test
from .quality import DataQualityGate, QualityVerdict
from .vv20 import input_uncertainty, vv20_comparison, vv20_from_predictive

#: alias of :func:`interval_coverage` (the name newcomers guess first)
coverage = interval_coverage

__all__ = [
    "BandCheck",
    "PredictiveJudgement",
    "coverage_test",
    "judge_predictive",
    "median_bias_test",
    "coverage",
    "DataQualityError",
    "MetricInputError",
    "SuiteConfigError",
    "ValidationDomainError",
    "ValidationDomain",
    "CusumDetector",
    "calibrate_cusum",
    "pit_to_z",
    "simulate_performance",
    "DEFAULT_SAMPLE_DIMS",
    "UniformityTest",
    "area_metric",
    "area_metric_u_pooling",
    "crps",
    "crps_gaussian",
    "energy_score",
    "interval_coverage",
    "loo_pit",
    "pit",
    "pit_uniformity",
    "ppc_pvalue",
    "DataQualityGate",
    "QualityVerdict",
    "input_uncertainty",
    "vv20_comparison",
    "vv20_from_predictive",
]


#: other common guesses -> the function that does it
_GUESSES = {
    "pit_test": "pit_uniformity", "uniformity": "pit_uniformity", "crps_score": "crps",
    "energy": "energy_score", "area_validation_metric": "area_metric", "loo": "loo_pit",
    "ppc": "ppc_pvalue", "cusum": "CusumDetector", "domain": "ValidationDomain",
    "vv20": "vv20_comparison", "quality_gate": "DataQualityGate",
}


def __getattr__(name: str):
    import difflib

    hint = [_GUESSES[name]] if name in _GUESSES else difflib.get_close_matches(name, __all__, n=3, cutoff=0.5)
    more = f" Did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
    raise AttributeError(f"module 'vvuq_twin.validation' has no attribute {name!r}.{more}")
