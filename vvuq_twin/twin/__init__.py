"""The twin declaration: simulator, parameters, hierarchy, discrepancy, observation model."""

from .data import TwinData
from .declaration import ROLE_VARS, Hierarchy, Parameter, PredictSpec, Twin
from .discrepancy import (
    BiasDiscrepancy,
    ConstrainedExpQuad,
    Discrepancy,
    GPDiscrepancy,
    HSGPDiscrepancy,
    NoDiscrepancy,
)
from .observation import GaussianAR1Obs, GaussianObs, LogNormalObs, NegativeBinomial, ObservationModel, Poisson, StudentTObs
from .priors import (
    Beta,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    InverseGamma,
    LogNormal,
    LogNormalPrior,
    NormalPrior,
    Prior,
    StudentTPrior,
    Uniform,
)
from .simulators import (
    BlackBoxSimulator,
    ODESimulator,
    PytensorSimulator,
    Simulator,
    SurrogateSimulator,
)

__all__ = [
    "TwinData", "ROLE_VARS", "Hierarchy", "Parameter", "PredictSpec", "Twin",
    "BiasDiscrepancy", "ConstrainedExpQuad", "Discrepancy", "GPDiscrepancy", "HSGPDiscrepancy",
    "NoDiscrepancy", "GaussianAR1Obs", "GaussianObs", "LogNormalObs", "ObservationModel", "StudentTObs", "Beta",
    "Exponential", "Gamma", "HalfCauchy", "HalfNormal", "InverseGamma", "LogNormal",
    "LogNormalPrior", "NormalPrior", "Prior", "Uniform", "StudentTPrior", "BlackBoxSimulator", "ODESimulator", "PytensorSimulator",
    "Simulator", "SurrogateSimulator", "Poisson", "NegativeBinomial",
]


#: old names that did not say whether they are a prior or an observation model
DEPRECATED_NAMES = {
    "Normal": ("NormalPrior", "the prior"),
    "Gaussian": ("GaussianObs", "the observation model"),
    "StudentT": ("StudentTObs", "the observation model (the prior is StudentTPrior)"),
}


def __getattr__(name: str):
    if name in DEPRECATED_NAMES:
        import warnings

        new, what = DEPRECATED_NAMES[name]
        warnings.warn(
            f"vvuq_twin.twin.{name} is deprecated: use vvuq_twin.twin.{new} ({what}). The old name will be "
            "removed in a future release.", DeprecationWarning, stacklevel=2,
        )
        from . import observation, priors

        return getattr(priors if new.endswith("Prior") else observation, new)
    raise AttributeError(f"module 'vvuq_twin.twin' has no attribute {name!r}")
