"""Known-answer problems of the core, reused by tests, the validation suite and the CLI default.

Brynjarsdottir & O'Hagan (2014), "Learning about physical parameters: the importance of model
discrepancy": reality zeta(x) = theta x / (1 + x/a) with theta = 0.65, a = 20; simulator
eta(x, theta) = theta x; 11 equally spaced points on [0.4, 4]; observation noise sd 0.01;
prior theta ~ N(0.5, 0.5^2).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BO2014_THETA", "bo2014_reality", "bo2014_data", "bo2014_twin"]

#: true physical parameter of the Brynjarsdottir & O'Hagan example
BO2014_THETA = 0.65


def bo2014_reality(x: np.ndarray, theta: float = BO2014_THETA, a: float = 20.0) -> np.ndarray:
    """Reality zeta(x) = theta x / (1 + x / a)."""
    x = np.asarray(x, dtype=float)
    return theta * x / (1 + x / a)


def bo2014_data(seed: int = 1):
    """Synthetic observations of reality at 11 points on [0.4, 4] with noise sd 0.01."""
    import vvuq_twin as vt

    x = np.linspace(0.4, 4.0, 11)
    y = bo2014_reality(x) + np.random.default_rng(seed).normal(0.0, 0.01, x.size)
    return vt.TwinData(x=x, y=y, input_names=["x"])


def bo2014_twin(discrepancy=None):
    """The twin eta = theta x with the given discrepancy (default: constrained GP)."""
    import vvuq_twin as vt

    if discrepancy is None:
        discrepancy = vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0),
                                       constraint="value_and_slope")
    return vt.Twin(
        "bo2014",
        vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0], name="eta=theta*x"),
        [vt.Parameter("theta", vt.NormalPrior(0.5, 0.5))],
        discrepancy=discrepancy,
        observation=vt.GaussianObs(sigma=0.01),
    )
