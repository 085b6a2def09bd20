"""Bayesian optimal experimental design: which measurement to take next, and why.

Declare a :class:`DesignProblem` (prior, torch observation model ``p(y | theta, design)``, design
bounds, and the target of learning: :class:`AllParameters`, :class:`ParameterSubset`,
:class:`QoI` or :class:`DecisionLoss`); estimate the expected information gain with
:func:`eig` (closed form, nested MC with inner-sample reuse, Laplace, PCE lower bound,
variational posterior / marginal bounds -- each with a standard error and a bias note) or the
expected value of sample information with :func:`evsi`; choose designs with
:func:`select_exhaustive`, :func:`select_greedy` (candidate sets) or :func:`optimize_design`
(botorch, continuous); and steer measurements sequentially with :func:`steer` (the one loop,
on a design problem or on a calibrated twin; :func:`steer_twin` is its deprecated twin spelling).

On a calibrated :class:`~vvuq_twin.Twin`, :func:`twin_design_utilities` scores candidate
measurements from the twin's posterior predictive (EIG about the parameters, goal-oriented
EIG about a QoI, or EVSI of a decision); :func:`twin_design_problem` turns a linear-Gaussian
twin into a torch :class:`DesignProblem` (closed form and every estimator).

Known-answer problems live in :mod:`vvuq_twin.testing.problems_design`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - the names below are loaded on first use
    from .estimators import (
        EIG_METHODS,
        UtilityEstimate,
        eig,
        eig_candidates,
        eig_closed_form,
        eig_laplace,
        eig_marginal_bound,
        eig_nmc,
        eig_pce,
        eig_posterior_bound,
    )
    from .goal import evsi, utility
    from .optimize import candidate_utilities, optimize_design, select_exhaustive, select_greedy
    from .problem import (
        AllParameters,
        BudgetError,
        DecisionLoss,
        DesignError,
        DesignProblem,
        EstimatorNotApplicableError,
        ObservationModelError,
        ParameterSubset,
        QoI,
        Target,
        torch_seed,
    )
    from .twin import (
        LinearGaussianTwin,
        preposterior_utility,
        twin_design_problem,
        twin_design_utilities,
        twin_eig_closed_form,
        twin_linear_gaussian,
    )
    from .sequential import (
        GaussianPosterior,
        ParticlePosterior,
        Posterior,
        WeightedParticles,
        synthetic_measurement,
    )
    from .steering import TwinPosterior, steer, steer_twin

# Names are loaded on first use (PEP 562): ``import vvuq_twin.design`` - and the numpy path
# through :func:`twin_design_utilities` - do not import torch, gpytorch or botorch; the torch
# estimators, :class:`DesignProblem` and the botorch optimiser load when first asked for.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "estimators": (
        "EIG_METHODS",
        "UtilityEstimate",
        "eig",
        "eig_candidates",
        "eig_closed_form",
        "eig_laplace",
        "eig_marginal_bound",
        "eig_nmc",
        "eig_pce",
        "eig_posterior_bound",
    ),
    "goal": (
        "evsi",
        "utility",
    ),
    "optimize": (
        "candidate_utilities",
        "optimize_design",
        "select_exhaustive",
        "select_greedy",
    ),
    "problem": (
        "AllParameters",
        "DecisionLoss",
        "DesignProblem",
        "ParameterSubset",
        "QoI",
        "Target",
        "torch_seed",
    ),
    "twin": (
        "preposterior_utility",
        "LinearGaussianTwin",
        "twin_design_problem",
        "twin_design_utilities",
        "twin_eig_closed_form",
        "twin_linear_gaussian",
    ),
    "sequential": (
        "GaussianPosterior",
        "ParticlePosterior",
        "Posterior",
        "WeightedParticles",
        "synthetic_measurement",
    ),
    "steering": (
        "steer",
        "steer_twin",
        "TwinPosterior",
    ),
}
# the errors are defined in vvuq_twin.exceptions (no torch needed to catch them)
_EXPORTS["vvuq_twin.exceptions"] = (
    "BudgetError", "DesignError", "EstimatorNotApplicableError", "ObservationModelError",
)
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "DesignProblem",
    "AllParameters",
    "ParameterSubset",
    "QoI",
    "DecisionLoss",
    "Target",
    "DesignError",
    "ObservationModelError",
    "EstimatorNotApplicableError",
    "BudgetError",
    "torch_seed",
    "UtilityEstimate",
    "EIG_METHODS",
    "eig",
    "eig_closed_form",
    "eig_nmc",
    "eig_pce",
    "eig_laplace",
    "eig_posterior_bound",
    "eig_marginal_bound",
    "eig_candidates",
    "evsi",
    "utility",
    "candidate_utilities",
    "select_exhaustive",
    "select_greedy",
    "optimize_design",
    "Posterior",
    "ParticlePosterior",
    "GaussianPosterior",
    "WeightedParticles",
    "synthetic_measurement",
    "steer",
    "TwinPosterior",
    "twin_design_utilities",
    "preposterior_utility",
    "twin_linear_gaussian",
    "twin_eig_closed_form",
    "twin_design_problem",
    "LinearGaussianTwin",
    "steer_twin",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        mod = _WHERE[name]
        value = getattr(importlib.import_module(mod if "." in mod else f"{__name__}.{mod}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
