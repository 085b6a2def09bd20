"""Observation models y | zeta: Gaussian, Student-t, log-normal.

Noise may be known (a float) or inferred (a prior). Heteroscedastic noise is supported in two
ways that combine in quadrature: a known per-observation measurement sd (``TwinData.y_sd``) and
a component proportional to the true process (``relative``). A surrogate simulator's predictive
variance is added as well (``extra_var``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from typing import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

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

    #: noise attribute -> name of its variable in the model (the names are defined here only)
    NOISE_VARS: ClassVar[dict[str, str]] = {"sigma": "sigma_obs", "relative": "sigma_rel"}

    def __post_init__(self) -> None:
        self.sigma = as_prior(self.sigma, f"{type(self).__name__}.sigma", positive=True)
        if self.relative is not None:
            self.relative = as_prior(self.relative, f"{type(self).__name__}.relative", positive=True)

    def _noise_specs(self) -> dict[str, Any]:
        """Noise attribute -> its prior or fixed value (attributes that are set)."""
        return {k: getattr(self, k) for k in self.NOISE_VARS if getattr(self, k, None) is not None}

    def register_noise(self) -> dict[str, pt.TensorVariable]:
        """Create the noise parameters in the current model (call once)."""
        return {k: _value(v, self.NOISE_VARS[k]) for k, v in self._noise_specs().items()}

    # ------------------------------------------------------------ numpy answers
    def noise_names(self) -> tuple[str, ...]:
        """Names of the inferred noise variables in the model (those with a prior)."""
        return tuple(self.NOISE_VARS[k] for k, v in self._noise_specs().items() if isinstance(v, Prior))

    def noise_priors(self) -> dict[str, Prior]:
        """Model variable name -> prior of each inferred noise variable."""
        return {self.NOISE_VARS[k]: v for k, v in self._noise_specs().items() if isinstance(v, Prior)}

    def noise_values(self, draws: Mapping[str, Any], n: int | None = None) -> dict[str, np.ndarray]:
        """Noise attribute -> value per draw, read by model name from ``draws`` (fixed ones filled).

        ``draws`` maps model variable names to arrays with a leading draw axis; ``n`` (the
        number of draws) is needed only when every noise value is fixed.
        """
        out = {}
        for k, v in self._noise_specs().items():
            if isinstance(v, Prior):
                name = self.NOISE_VARS[k]
                if name not in draws:
                    raise KeyError(f"The draws have no {name!r} (the {type(self).__name__} noise "
                                   f"{k!r}); pass every variable of Twin.free_variable_names().")
                out[k] = np.asarray(draws[name], dtype=float).reshape(-1)
        m = n if n is not None else (next(iter(out.values())).size if out else 1)
        for k, v in self._noise_specs().items():
            if not isinstance(v, Prior):
                out[k] = np.full(m, float(v))
        return out

    def scale_numpy(self, noise: Mapping[str, np.ndarray], zeta: np.ndarray, y_sd: Any = None,
                    extra_var: Any = None) -> np.ndarray:
        """:meth:`scale` in numpy: ``noise`` values per draw (shape (n,)), ``zeta`` (n, m)."""
        zeta = np.asarray(zeta, dtype=float)
        sig = np.asarray(noise["sigma"], float).reshape(-1, *([1] * (zeta.ndim - 1)))
        var = sig**2 * np.ones_like(zeta)
        if "relative" in noise:
            rel = np.asarray(noise["relative"], float).reshape(sig.shape)
            with np.errstate(divide="ignore", invalid="ignore"):
                base = np.log(zeta) if self.positive else zeta
            var = var + (rel * np.abs(base)) ** 2
        if y_sd is not None:
            var = var + np.asarray(y_sd, float) ** 2
        if extra_var is not None:
            var = var + np.asarray(extra_var, float)
        return np.sqrt(var)

    def _per_draw(self, noise: Mapping[str, np.ndarray], key: str, like: np.ndarray) -> np.ndarray:
        v = np.asarray(noise[key], float)
        return v.reshape(-1, *([1] * (np.ndim(like) - 1))) if v.ndim == 1 and np.ndim(like) > 1 else v

    def logpdf(self, y: Any, zeta: Any, sd: Any, noise: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Elementwise log-density of ``y`` given the true process ``zeta`` and measurement ``sd``.

        numpy, broadcasting (draws along the first axis); ``noise`` holds the other noise values
        per draw (e.g. ``nu`` of the Student-t), as from :meth:`noise_values`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no numpy log-density; implement logpdf(y, zeta, sd, noise)."
        )

    def sample(self, zeta: Any, sd: Any, noise: Mapping[str, np.ndarray] | None,
               rng: np.random.Generator) -> np.ndarray:
        """Draw measurements ``y | zeta`` (numpy, shape of ``zeta``)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot sample in numpy; implement sample(zeta, sd, noise, rng)."
        )

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

    def logpdf(self, y, zeta, sd, noise=None):
        return stats.norm.logpdf(y, loc=zeta, scale=sd)

    def sample(self, zeta, sd, noise, rng):
        zeta = np.asarray(zeta, float)
        return zeta + sd * rng.standard_normal(zeta.shape)


@dataclass
class StudentT(ObservationModel):
    """y ~ StudentT(nu, zeta, sd): robust to outliers. ``nu`` fixed or a prior."""

    nu: PriorLike = 4.0

    NOISE_VARS: ClassVar[dict[str, str]] = {**ObservationModel.NOISE_VARS, "nu": "nu_obs"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nu = as_prior(self.nu, "StudentT.nu", positive=True)

    def register_noise(self):
        out = super().register_noise()
        self._nu = out["nu"]
        return out

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.StudentT(name, nu=self._nu, mu=zeta, sigma=sd, observed=observed, dims=dims)

    def logpdf(self, y, zeta, sd, noise=None):
        nu = self._per_draw(noise, "nu", zeta) if noise else float(self.nu)
        return stats.t.logpdf(y, df=nu, loc=zeta, scale=sd)

    def sample(self, zeta, sd, noise, rng):
        zeta = np.asarray(zeta, float)
        nu = self._per_draw(noise, "nu", zeta) if noise else float(self.nu)
        return zeta + sd * rng.standard_t(np.broadcast_to(nu, zeta.shape))

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

    def logpdf(self, y, zeta, sd, noise=None):
        y = np.asarray(y, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = stats.norm.logpdf(np.log(y), loc=np.log(zeta), scale=sd) - np.log(y)
        return np.where(y > 0, out, -np.inf)

    def sample(self, zeta, sd, noise, rng):
        zeta = np.asarray(zeta, float)
        return np.exp(np.log(zeta) + sd * rng.standard_normal(zeta.shape))

    def check_observed(self, y: np.ndarray) -> None:
        bad = np.flatnonzero(np.isfinite(y) & (y <= 0))
        if bad.size:
            raise TwinSpecificationError(
                f"LogNormalObs needs positive observations; y <= 0 at rows {bad[:10].tolist()}. "
                "Use Gaussian/StudentT, or remove/shift those values."
            )
