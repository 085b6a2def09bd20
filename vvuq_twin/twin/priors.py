"""Typed prior specifications.

A prior is a small frozen dataclass that validates its arguments when it is created (before any
model is compiled), knows its mean (used to check the simulator before sampling), can describe
itself for the declaration hash, builds the PyMC distribution by name and dims, and evaluates
its log-density in numpy (:meth:`Prior.logpdf`, vectorised over draws; the same density as
PyMC's, checked in the tests).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Union

import numpy as np
import pymc as pm
from scipy import stats

from ..exceptions import TwinSpecificationError

__all__ = [
    "Prior",
    "Normal",
    "HalfNormal",
    "LogNormal",
    "Uniform",
    "Gamma",
    "InverseGamma",
    "Exponential",
    "StudentT",
    "HalfCauchy",
    "Beta",
    "NormalPrior",
    "StudentTPrior",
    "LogNormalPrior",
    "PriorLike",
    "as_prior",
]


def _positive(cls: str, **kw: float) -> None:
    for k, v in kw.items():
        if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)):
            raise TwinSpecificationError(
                f"{cls}: `{k}` must be a finite number, got {v!r}."
            )
        if v <= 0:
            raise TwinSpecificationError(
                f"{cls}: `{k}` must be positive, got {k}={v}. A scale of a prior must be > 0; "
                f"use e.g. {cls}({k}=1.0), or a fixed float instead of a prior if the value is known."
            )


def _finite(cls: str, **kw: float) -> None:
    for k, v in kw.items():
        if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)):
            raise TwinSpecificationError(f"{cls}: `{k}` must be a finite number, got {v!r}.")


@dataclass(frozen=True)
class Prior:
    """Base class of prior specifications."""

    support: ClassVar[str] = "real"

    def dist(self, name: str, **kwargs: Any):  # pragma: no cover - overridden
        """Register the distribution in the current PyMC model."""
        raise TypeError(f"{type(self).__name__} cannot build a distribution.")

    def mean(self) -> float:  # pragma: no cover - overridden
        """Prior mean (median where the mean does not exist)."""
        raise TypeError(f"{type(self).__name__} has no mean.")

    def spec(self) -> dict[str, Any]:
        """Canonical description (used for hashing and provenance)."""
        return {"prior": type(self).__name__, **{k: float(v) for k, v in asdict(self).items()}}

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] = ()) -> np.ndarray:
        """Draw from the prior with numpy (no model needed)."""
        return pm.draw(self.dist_unregistered(), draws=int(np.prod(size)) if size else 1,
                       random_seed=rng).reshape(size)

    def dist_unregistered(self):  # pragma: no cover - overridden
        raise TypeError

    def logpdf(self, x: Any) -> np.ndarray:
        """Log prior density at ``x`` (numpy, elementwise; ``-inf`` outside the support).

        The density of the distribution :meth:`dist` registers, so a twin's log prior can be
        evaluated on posterior draws without a PyMC model.
        """
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.asarray(self._logpdf(x), dtype=float)
        return np.where(np.isnan(out) & ~np.isnan(x), -np.inf, out)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise TypeError(f"{type(self).__name__} has no log-density.")


@dataclass(frozen=True)
class Normal(Prior):
    """Normal(mu, sigma)."""

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _finite("Normal", mu=self.mu)
        _positive("Normal", sigma=self.sigma)

    def dist(self, name: str, **kw: Any):
        return pm.Normal(name, mu=self.mu, sigma=self.sigma, **kw)

    def dist_unregistered(self):
        return pm.Normal.dist(mu=self.mu, sigma=self.sigma)

    def _logpdf(self, x):
        return stats.norm.logpdf(x, loc=self.mu, scale=self.sigma)

    def mean(self) -> float:
        return float(self.mu)


@dataclass(frozen=True)
class StudentT(Prior):
    """StudentT(nu, mu, sigma)."""

    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _positive("StudentT", nu=self.nu, sigma=self.sigma)
        _finite("StudentT", mu=self.mu)

    def dist(self, name: str, **kw: Any):
        return pm.StudentT(name, nu=self.nu, mu=self.mu, sigma=self.sigma, **kw)

    def dist_unregistered(self):
        return pm.StudentT.dist(nu=self.nu, mu=self.mu, sigma=self.sigma)

    def _logpdf(self, x):
        return stats.t.logpdf(x, df=self.nu, loc=self.mu, scale=self.sigma)

    def mean(self) -> float:
        return float(self.mu)


@dataclass(frozen=True)
class HalfNormal(Prior):
    """HalfNormal(sigma), support (0, inf)."""

    support: ClassVar[str] = "positive"
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _positive("HalfNormal", sigma=self.sigma)

    def dist(self, name: str, **kw: Any):
        return pm.HalfNormal(name, sigma=self.sigma, **kw)

    def dist_unregistered(self):
        return pm.HalfNormal.dist(sigma=self.sigma)

    def _logpdf(self, x):
        return stats.halfnorm.logpdf(x, scale=self.sigma)

    def mean(self) -> float:
        return float(self.sigma * math.sqrt(2 / math.pi))


@dataclass(frozen=True)
class HalfCauchy(Prior):
    """HalfCauchy(beta), support (0, inf). Its mean does not exist; the median is used."""

    support: ClassVar[str] = "positive"
    beta: float = 1.0

    def __post_init__(self) -> None:
        _positive("HalfCauchy", beta=self.beta)

    def dist(self, name: str, **kw: Any):
        return pm.HalfCauchy(name, beta=self.beta, **kw)

    def dist_unregistered(self):
        return pm.HalfCauchy.dist(beta=self.beta)

    def _logpdf(self, x):
        return stats.halfcauchy.logpdf(x, scale=self.beta)

    def mean(self) -> float:
        return float(self.beta)


@dataclass(frozen=True)
class LogNormal(Prior):
    """LogNormal(mu, sigma) of a positive quantity (mu, sigma on the log scale)."""

    support: ClassVar[str] = "positive"
    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _finite("LogNormal", mu=self.mu)
        _positive("LogNormal", sigma=self.sigma)

    def dist(self, name: str, **kw: Any):
        return pm.LogNormal(name, mu=self.mu, sigma=self.sigma, **kw)

    def dist_unregistered(self):
        return pm.LogNormal.dist(mu=self.mu, sigma=self.sigma)

    def _logpdf(self, x):
        return stats.lognorm.logpdf(x, s=self.sigma, scale=math.exp(self.mu))

    def mean(self) -> float:
        return float(math.exp(self.mu + self.sigma**2 / 2))


@dataclass(frozen=True)
class Uniform(Prior):
    """Uniform(lower, upper)."""

    support: ClassVar[str] = "interval"
    lower: float = 0.0
    upper: float = 1.0

    def __post_init__(self) -> None:
        _finite("Uniform", lower=self.lower, upper=self.upper)
        if not self.lower < self.upper:
            raise TwinSpecificationError(
                f"Uniform: need lower < upper, got lower={self.lower}, upper={self.upper}."
            )

    def dist(self, name: str, **kw: Any):
        return pm.Uniform(name, lower=self.lower, upper=self.upper, **kw)

    def dist_unregistered(self):
        return pm.Uniform.dist(lower=self.lower, upper=self.upper)

    def _logpdf(self, x):
        return stats.uniform.logpdf(x, loc=self.lower, scale=self.upper - self.lower)

    def mean(self) -> float:
        return 0.5 * (self.lower + self.upper)


@dataclass(frozen=True)
class Gamma(Prior):
    """Gamma(alpha, beta) with rate beta."""

    support: ClassVar[str] = "positive"
    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        _positive("Gamma", alpha=self.alpha, beta=self.beta)

    def dist(self, name: str, **kw: Any):
        return pm.Gamma(name, alpha=self.alpha, beta=self.beta, **kw)

    def dist_unregistered(self):
        return pm.Gamma.dist(alpha=self.alpha, beta=self.beta)

    def _logpdf(self, x):
        return stats.gamma.logpdf(x, a=self.alpha, scale=1.0 / self.beta)

    def mean(self) -> float:
        return float(self.alpha / self.beta)


@dataclass(frozen=True)
class InverseGamma(Prior):
    """InverseGamma(alpha, beta); the mode is used as the reference value when alpha <= 1."""

    support: ClassVar[str] = "positive"
    alpha: float = 3.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        _positive("InverseGamma", alpha=self.alpha, beta=self.beta)

    def dist(self, name: str, **kw: Any):
        return pm.InverseGamma(name, alpha=self.alpha, beta=self.beta, **kw)

    def dist_unregistered(self):
        return pm.InverseGamma.dist(alpha=self.alpha, beta=self.beta)

    def _logpdf(self, x):
        return stats.invgamma.logpdf(x, a=self.alpha, scale=self.beta)

    def mean(self) -> float:
        if self.alpha > 1:
            return float(self.beta / (self.alpha - 1))
        return float(self.beta / (self.alpha + 1))


@dataclass(frozen=True)
class Exponential(Prior):
    """Exponential(lam)."""

    support: ClassVar[str] = "positive"
    lam: float = 1.0

    def __post_init__(self) -> None:
        _positive("Exponential", lam=self.lam)

    def dist(self, name: str, **kw: Any):
        return pm.Exponential(name, lam=self.lam, **kw)

    def dist_unregistered(self):
        return pm.Exponential.dist(lam=self.lam)

    def _logpdf(self, x):
        return stats.expon.logpdf(x, scale=1.0 / self.lam)

    def mean(self) -> float:
        return float(1 / self.lam)


@dataclass(frozen=True)
class Beta(Prior):
    """Beta(alpha, beta) on (0, 1)."""

    support: ClassVar[str] = "unit"
    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        _positive("Beta", alpha=self.alpha, beta=self.beta)

    def dist(self, name: str, **kw: Any):
        return pm.Beta(name, alpha=self.alpha, beta=self.beta, **kw)

    def dist_unregistered(self):
        return pm.Beta.dist(alpha=self.alpha, beta=self.beta)

    def _logpdf(self, x):
        return stats.beta.logpdf(x, a=self.alpha, b=self.beta)

    def mean(self) -> float:
        return float(self.alpha / (self.alpha + self.beta))


PriorLike = Union[Prior, float, int]

# Names that say they are priors (``vt.Normal`` and the observation model ``vt.Gaussian`` are the
# same distribution in two roles; ``vt.StudentT`` was the observation model). The classes keep
# their names, so declaration hashes do not change.
NormalPrior = Normal
StudentTPrior = StudentT
LogNormalPrior = LogNormal


def as_prior(value: PriorLike, where: str, *, positive: bool = False) -> Prior | float:
    """Validate a 'prior or fixed value' argument.

    A float means the quantity is known (fixed); a :class:`Prior` means it is inferred.
    """
    if isinstance(value, Prior):
        if positive and value.support not in ("positive", "unit"):
            raise TwinSpecificationError(
                f"{where}: a positive quantity needs a prior on (0, inf) such as HalfNormal, "
                f"LogNormal, Gamma or Exponential; got {type(value).__name__}."
            )
        return value
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        v = float(value)
        if not math.isfinite(v):
            raise TwinSpecificationError(f"{where}: a fixed value must be finite, got {v}.")
        if positive and v <= 0:
            raise TwinSpecificationError(
                f"{where}: must be positive, got {v}. Pass a positive number or a prior such as "
                "HalfNormal(1.0)."
            )
        return v
    raise TwinSpecificationError(
        f"{where}: expected a Prior (e.g. HalfNormal(1.0)) or a fixed number, got "
        f"{type(value).__name__}."
    )


def prior_spec(value: Prior | float) -> Any:
    """Hashable description of a prior-or-fixed value."""
    return value.spec() if isinstance(value, Prior) else {"fixed": float(value)}
