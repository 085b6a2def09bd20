"""Surrogates (emulators) of expensive simulators: GP (gpytorch) and sparse PCE (chaospy).

Every surrogate exposes ``posterior(X) -> (mean, var)`` (numpy) and ``to_pytensor(X) ->
(mean, var)`` (pytensor expressions), so it can stand in for a simulator in a twin
(:class:`vvuq_twin.SurrogateSimulator`) with its predictive variance carried into calibration.
:func:`train_surrogate` reports training cost and verification (hold-out / LOO Q^2, coverage).
"""

from .gp import GPSurrogate
from .pce import PCESurrogate
from .training import draw_design, run_design, train_surrogate, verify_surrogate

__all__ = [
    "GPSurrogate",
    "PCESurrogate",
    "draw_design",
    "run_design",
    "train_surrogate",
    "verify_surrogate",
]
