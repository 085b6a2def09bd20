"""Global sensitivity analysis: Sobol, Morris, FAST, RBD-FAST, DGSM (SALib), PCE and GP
surrogate-based Sobol indices, and Shapley effects for dependent (e.g. posterior) inputs.

Start with :func:`sensitivity`; describe inputs with :class:`UncertainInput` and
:class:`ParameterSpace`, or pass posterior draws (:func:`posterior_inputs`).
"""

from .analysis import METHODS, plot_indices, posterior_inputs, sensitivity, shapley_effects
from .errors import (
    DependentInputsError,
    InputSpecificationError,
    QoIEvaluationError,
    UnsupportedDistributionError,
)
from ..spaces import ParameterSpace, PosteriorSpace, UncertainInput, as_space

__all__ = [
    "METHODS",
    "sensitivity",
    "shapley_effects",
    "posterior_inputs",
    "plot_indices",
    "UncertainInput",
    "ParameterSpace",
    "PosteriorSpace",
    "as_space",
    "DependentInputsError",
    "InputSpecificationError",
    "QoIEvaluationError",
    "UnsupportedDistributionError",
]
