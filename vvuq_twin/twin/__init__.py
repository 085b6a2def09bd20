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
from .observation import Gaussian, LogNormalObs, NegativeBinomial, ObservationModel, Poisson, StudentT
from .priors import (
    Beta,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    InverseGamma,
    LogNormal,
    Normal,
    Prior,
    Uniform,
)
from .priors import StudentT as StudentTPrior
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
    "NoDiscrepancy", "Gaussian", "LogNormalObs", "ObservationModel", "StudentT", "Beta",
    "Exponential", "Gamma", "HalfCauchy", "HalfNormal", "InverseGamma", "LogNormal", "Normal",
    "Prior", "Uniform", "StudentTPrior", "BlackBoxSimulator", "ODESimulator", "PytensorSimulator",
    "Simulator", "SurrogateSimulator", "Poisson", "NegativeBinomial",
]
