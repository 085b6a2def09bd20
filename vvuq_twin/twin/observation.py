"""Observation models y | zeta: Gaussian, Student-t, log-normal.

Noise may be known (a float) or inferred (a prior). Heteroscedastic noise is supported in two
ways that combine in quadrature: a known per-observation measurement sd (``TwinData.y_sd``) and
a component proportional to the true process (``relative``). A surrogate simulator's predictive
variance is added as well (``extra_var``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..exceptions import TwinSpecificationError
from .priors import HalfNormal, Prior, PriorLike, as_prior, prior_spec

__all__ = ["ObservationModel", "Gaussian", "StudentT", "LogNormalObs"]


def _value(v, name):
    return v.dist(name) if isinstance(v, Prior) else pt.as_tensor_variable(float(v))


@dataclass
class ObservationModel(abc.ABC):
    """Base class of observation models."""

    sigma: PriorLike = field(default_factory=lambda: HalfNormal(1.0))
    relative: PriorLike | None = None

    #: whether the true process must be positive (log-normal)
    positive: bool = False

    def __post_init__(self) -> None:
        self.sigma = as_prior(self.sigma, f"{type(self).__name__}.sigma", positive=True)
        if self.relative is not None:
            self.relative = as_prior(self.relative, f"{type(self).__name__}.relative", positive=True)

    def register_noise(self) -> dict[str, pt.TensorVariable]:
        """Create the noise parameters in the current model (call once)."""
        out = {"sigma": _value(self.sigma, "sigma_obs")}
        if self.relative is not None:
            out["relative"] = _value(self.relative, "sigma_rel")
        return out

    def scale(self, noise, zeta, y_sd=None, extra_var=None):
        var = noise["sigma"] ** 2
        if "relative" in noise:
            base = pt.log(zeta) if self.positive else zeta
            var = var + (noise["relative"] * pt.abs(base)) ** 2
        if y_sd is not None:
            var = var + pt.as_tensor_variable(np.asarray(y_sd, float)) ** 2
        if extra_var is not None:
            var = var + extra_var
        return pt.sqrt(var)

    @abc.abstractmethod
    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        """Register the observation distribution."""

    def spec(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "sigma": prior_spec(self.sigma),
            "relative": None if self.relative is None else prior_spec(self.relative),
        }


@dataclass
class Gaussian(ObservationModel):
    """y ~ Normal(zeta, sd), sd^2 = sigma^2 + (relative*|zeta|)^2 + y_sd^2 (+ surrogate var)."""

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.Normal(name, mu=zeta, sigma=sd, observed=observed, dims=dims)


@dataclass
class StudentT(ObservationModel):
    """y ~ StudentT(nu, zeta, sd): robust to outliers. ``nu`` fixed or a prior."""

    nu: PriorLike = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nu = as_prior(self.nu, "StudentT.nu", positive=True)

    def register_noise(self):
        out = super().register_noise()
        out["nu"] = _value(self.nu, "nu_obs")
        self._nu = out["nu"]
        return out

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.StudentT(name, nu=self._nu, mu=zeta, sigma=sd, observed=observed, dims=dims)

    def spec(self):
        return {**super().spec(), "nu": prior_spec(self.nu)}


@dataclass
class LogNormalObs(ObservationModel):
    """y ~ LogNormal(log zeta, sd): multiplicative error for positive quantities.

    ``sigma`` (and ``y_sd``) are on the log scale; the true process zeta is the median of y.
    """

    positive: bool = True

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.LogNormal(name, mu=pt.log(zeta), sigma=sd, observed=observed, dims=dims)

    def check_observed(self, y: np.ndarray) -> None:
        bad = np.flatnonzero(np.isfinite(y) & (y <= 0))
        if bad.size:
            raise TwinSpecificationError(
                f"LogNormalObs needs positive observations; y <= 0 at rows {bad[:10].tolist()}. "
                "Use Gaussian/StudentT, or remove/shift those values."
            )


# Names that say they are observation models (the priors are NormalPrior, StudentTPrior, ...).
GaussianObs = Gaussian
StudentTObs = StudentT
__all__ += ["GaussianObs", "StudentTObs"]
