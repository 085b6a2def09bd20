"""The straight-line twin y = theta x + e (theta 1.5, noise sd 0.1) shared by the loop tests."""

import numpy as np

import vvuq_twin as vt

THETA, SD = 1.5, 0.1


def line_data(x, seed, shift=0.0):
    """Measurements of the line at ``x`` (noise from ``seed``), optionally shifted (a bias)."""
    y = THETA * x + shift + np.random.default_rng(seed).normal(0, SD, x.size)
    return vt.TwinData(x=x, y=y, input_names=["x"])


def line_twin():
    """The correctly specified twin of the line: theta ~ N(0, 2), sd ~ HalfNormal(1)."""
    return vt.Twin("line", vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0], name="theta*x"),
                   [vt.Parameter("theta", vt.NormalPrior(0.0, 2.0))],
                   observation=vt.GaussianObs(sigma=vt.HalfNormal(1.0)))
