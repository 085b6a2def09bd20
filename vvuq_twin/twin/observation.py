"""Observation models y | zeta: Gaussian, Student-t, log-normal, Poisson, negative binomial.

Noise may be known (a float) or inferred (a prior). Heteroscedastic noise is supported in two
ways that combine in quadrature: a known per-observation measurement sd (``TwinData.y_sd``) and
a component proportional to the true process (``relative``). A surrogate simulator's predictive
variance is added as well (``extra_var``).

How the discrepancy enters the true process (``ObservationModel.combine``), so that zeta stays
in the support of the observation model:

* ``Gaussian``, ``StudentT``: zeta = eta + delta (any real).
* ``LogNormalObs``: zeta = eta * exp(delta) with the default ``discrepancy_scale="log"``
  (positive whenever eta is; delta is a log-scale, relative model error). ``"additive"``
  (zeta = eta + delta) can reach <= 0, where the likelihood is NaN, so it is refused at
  declaration together with any discrepancy other than ``NoDiscrepancy``.
* ``Poisson``, ``NegativeBinomial``: zeta = eta * exp(delta), the expected count; delta is on
  the log rate.

For the multiplicative models the simulator output eta must itself be positive (checked at
the prior reference values before compilation).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..exceptions import TwinSpecificationError
from .priors import Gamma, HalfNormal, Prior, PriorLike, as_prior, prior_spec

__all__ = ["ObservationModel", "Gaussian", "StudentT", "LogNormalObs", "Poisson", "NegativeBinomial"]


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

    # how the discrepancy enters zeta: "additive" (eta + delta) or "log" (eta * exp(delta))
    discrepancy_scale: ClassVar[str] = "additive"

    def combine(self, eta, delta):
        """The true process zeta from simulator output and discrepancy (see the module table)."""
        if self.discrepancy_scale == "log":
            return eta * pt.exp(delta)
        return eta + delta

    def check_discrepancy(self, discrepancy: Any) -> None:
        """Refuse, at declaration, a discrepancy that can push zeta out of the support."""
        from .discrepancy import NoDiscrepancy

        if self.positive and self.discrepancy_scale == "additive" and not isinstance(discrepancy, NoDiscrepancy):
            raise TwinSpecificationError(
                f"{type(self).__name__} needs a positive true process, but an additive "
                f"{type(discrepancy).__name__} lets zeta = eta + delta reach <= 0, where the "
                "likelihood is NaN. Put the discrepancy on the log scale, "
                f"{type(self).__name__}(discrepancy_scale='log') (zeta = eta * exp(delta)), or use "
                "NoDiscrepancy()."
            )


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

    Parameters
    ----------
    discrepancy_scale : {"log", "additive"}
        ``"log"`` (default): zeta = eta * exp(delta), positive whenever the simulator output is,
        and delta is a relative (log-scale) model error. ``"additive"``: zeta = eta + delta,
        allowed only without a discrepancy (it could reach <= 0; refused at declaration).
    """

    positive: bool = True
    discrepancy_scale: Literal["log", "additive"] = "log"  # type: ignore[misc]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.discrepancy_scale not in ("log", "additive"):
            raise TwinSpecificationError(
                f"LogNormalObs.discrepancy_scale must be 'log' or 'additive', got {self.discrepancy_scale!r}."
            )

    def spec(self):
        return {**super().spec(), "discrepancy_scale": self.discrepancy_scale}

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.LogNormal(name, mu=pt.log(zeta), sigma=sd, observed=observed, dims=dims)

    def check_observed(self, y: np.ndarray) -> None:
        bad = np.flatnonzero(np.isfinite(y) & (y <= 0))
        if bad.size:
            raise TwinSpecificationError(
                f"LogNormalObs needs positive observations; y <= 0 at rows {bad[:10].tolist()}. "
                "Use Gaussian/StudentT, or remove/shift those values."
            )


def _check_counts(kind: str, y: np.ndarray) -> None:
    y = np.asarray(y, dtype=float)
    bad = np.flatnonzero(np.isfinite(y) & ((y < 0) | (y != np.round(y))))
    if bad.size:
        raise TwinSpecificationError(
            f"{kind} observes counts: non-negative integers. y at rows {bad[:10].tolist()} "
            f"({y[bad[:5]].tolist()}) is not. Use Gaussian/LogNormalObs for continuous data."
        )


@dataclass
class _CountModel(ObservationModel):
    """Count data with a log-rate discrepancy: zeta = eta * exp(delta) is the expected count."""

    sigma: PriorLike | None = None  # type: ignore[assignment]
    relative: PriorLike | None = None
    positive: bool = True
    discrepancy_scale: ClassVar[str] = "log"

    def __post_init__(self) -> None:
        kind = type(self).__name__
        if self.sigma is not None or self.relative is not None:
            raise TwinSpecificationError(
                f"{kind} has no noise scale `sigma`/`relative`: its variance follows from its "
                "mean" + (" and `alpha`." if kind == "NegativeBinomial" else
                          ". Use NegativeBinomial(alpha=...) for overdispersed counts.")
            )

    def register_noise(self) -> dict[str, pt.TensorVariable]:
        return {}

    def scale(self, noise, zeta, y_sd=None, extra_var=None):
        kind = type(self).__name__
        if y_sd is not None:
            raise TwinSpecificationError(
                f"{kind} takes no per-observation measurement sd (TwinData.y_sd): count noise "
                "follows from the rate. Drop y_sd, or use a Gaussian observation model."
            )
        if extra_var is not None:
            raise TwinSpecificationError(
                f"{kind} cannot carry a surrogate's predictive variance (it is additive, the "
                "count model is not); use the simulator itself or a Gaussian observation model."
            )
        return pt.as_tensor_variable(np.float64(0.0))

    def check_observed(self, y: np.ndarray) -> None:
        _check_counts(type(self).__name__, y)

    def spec(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "discrepancy_scale": "log"}


@dataclass
class Poisson(_CountModel):
    """y ~ Poisson(zeta), zeta = eta * exp(delta): counts with the discrepancy on the log rate.

    The simulator returns the expected count (a positive rate times exposure); there is no
    noise parameter (variance = mean). For overdispersed counts use :class:`NegativeBinomial`.
    """

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.Poisson(name, mu=zeta, observed=observed, dims=dims)

    @staticmethod
    def logpdf(y, mu, **noise) -> np.ndarray:
        """NumPy log-probability of counts ``y`` at expected counts ``mu`` (elementwise)."""
        import scipy.stats as st

        return st.poisson.logpmf(np.asarray(y), np.asarray(mu, dtype=float))


@dataclass
class NegativeBinomial(_CountModel):
    """y ~ NegativeBinomial(mean zeta, dispersion alpha): var = zeta + zeta^2 / alpha.

    zeta = eta * exp(delta) (the discrepancy on the log mean). ``alpha`` is fixed (float) or a
    prior (model variable ``alpha_obs``); large alpha approaches the Poisson. Default prior
    ``Gamma(2, 0.1)`` (mean 20).
    """

    alpha: PriorLike = field(default_factory=lambda: Gamma(2.0, 0.1))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha = as_prior(self.alpha, "NegativeBinomial.alpha", positive=True)

    def register_noise(self):
        self._alpha = _value(self.alpha, "alpha_obs")
        return {"alpha": self._alpha}

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.NegativeBinomial(name, mu=zeta, alpha=self._alpha, observed=observed, dims=dims)

    @staticmethod
    def logpdf(y, mu, *, alpha, **noise) -> np.ndarray:
        """NumPy log-probability of counts ``y`` with mean ``mu`` and dispersion ``alpha``."""
        import scipy.stats as st

        mu = np.asarray(mu, dtype=float)
        alpha = np.asarray(alpha, dtype=float)
        return st.nbinom.logpmf(np.asarray(y), alpha, alpha / (alpha + mu))

    def spec(self):
        return {**super().spec(), "alpha": prior_spec(self.alpha)}
