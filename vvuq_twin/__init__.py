"""vvuq_twin: verification, validation and uncertainty quantification for Bayesian digital twins.

Declare a twin once (:class:`Twin`: simulator, parameters, hierarchy, discrepancy, observation
model), calibrate it (:func:`calibrate`), predict (:func:`predict`), and hand the same
declaration and results to the verification, validation, sensitivity, risk, design,
assimilation and operations modules.

Top-level names are imported lazily (PEP 562), so ``import vvuq_twin`` - and the pytest plugin
that ships with it - stays cheap until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_EXPORTS = {
    "vvuq_twin.inference": (
        "Diagnostics", "Ledger", "Thresholds", "TwinResult", "calibrate", "load_result", "precompile",
        "predict", "SMCOptions",
    ),
    "vvuq_twin.twin": (
        "Beta", "BiasDiscrepancy", "BlackBoxSimulator", "Exponential", "Gamma", "GaussianAR1Obs", "GaussianObs",
        "GPDiscrepancy", "HalfCauchy", "HalfNormal", "Hierarchy", "HSGPDiscrepancy",
        "InverseGamma", "LogNormal", "LogNormalObs", "LogNormalPrior", "NegativeBinomial",
        "NoDiscrepancy", "NormalPrior", "ODESimulator", "Poisson", "Parameter",
        "PytensorSimulator", "StudentTObs", "StudentTPrior", "SurrogateSimulator", "Twin",
        "TwinData", "Uniform",
    ),
}
_EXPORTS["vvuq_twin.exceptions"] = (
    "VVUQError", "TwinSpecificationError", "DataValidationError", "SimulatorError",
    "CalibrationError", "EnsembleError", "DiagnosticsWarning", "SamplerChoiceWarning",
    "ExtrapolationWarning", "SimulatorInstabilityError", "SimulatorWarning",
    "MarginalizationWarning",
)
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_WHERE)]


#: deprecated top-level names (prior vs observation model): old -> new
_DEPRECATED = {"Normal": "NormalPrior", "Gaussian": "GaussianObs", "StudentT": "StudentTObs"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        import warnings

        new = _DEPRECATED[name]
        warnings.warn(
            f"vvuq_twin.{name} is deprecated: use vvuq_twin.{new} "
            f"({'the prior' if new.endswith('Prior') else 'the observation model'}; priors end in "
            "'Prior' where a name could be either, observation models in 'Obs'). The old name "
            "will be removed in a future release.",
            DeprecationWarning, stacklevel=2,
        )
        return __getattr__(new)
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    import difflib

    hint = difflib.get_close_matches(name, __all__, n=3, cutoff=0.6)
    more = f". Did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
    raise AttributeError(f"module 'vvuq_twin' has no attribute {name!r}{more}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
