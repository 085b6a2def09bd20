"""Observation models y | zeta: Gaussian, Gaussian AR(1), Student-t, log-normal, Poisson, negative binomial.

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
from typing import Any, ClassVar, Literal, Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from ..exceptions import TwinSpecificationError
from .priors import Beta, Gamma, HalfNormal, Prior, PriorLike, as_prior, prior_spec

__all__ = ["ObservationModel", "Gaussian", "GaussianAR1Obs", "StudentT", "LogNormalObs", "Poisson", "NegativeBinomial"]


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

    @abc.abstractmethod
    def logpdf(self, y: Any, zeta: Any, sd: Any, noise: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Elementwise log-density of ``y`` given the true process ``zeta`` and measurement ``sd``.

        numpy, broadcasting (draws along the first axis); ``noise`` holds the other noise values
        per draw (e.g. ``nu`` of the Student-t), as from :meth:`noise_values`. Every
        observation model implements it (the declaration's numpy answers rest on it).
        """

    @abc.abstractmethod
    def sample(self, zeta: Any, sd: Any, noise: Mapping[str, np.ndarray] | None,
               rng: np.random.Generator) -> np.ndarray:
        """Draw measurements ``y | zeta`` (numpy, shape of ``zeta``)."""

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

    def combine_numpy(self, eta: Any, delta: Any) -> np.ndarray:
        """:meth:`combine` in numpy (draws along the first axis)."""
        eta, delta = np.asarray(eta, float), np.asarray(delta, float)
        if self.discrepancy_scale == "log":
            return eta * np.exp(delta)
        return eta + delta

    def check_discrepancy(self, discrepancy: Any, *, is_null: bool) -> None:
        """Refuse, at declaration, a discrepancy that can push zeta out of the support.

        ``is_null``: the discrepancy is identically zero (``NoDiscrepancy``).
        """
        if self.positive and self.discrepancy_scale == "additive" and not is_null:
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

    def logpdf(self, y, zeta, sd, noise=None):
        return stats.norm.logpdf(y, loc=zeta, scale=sd)

    def sample(self, zeta, sd, noise, rng):
        zeta = np.asarray(zeta, float)
        return zeta + sd * rng.standard_normal(zeta.shape)


def _ar1_check_phi(phi: Any) -> None:
    if isinstance(phi, Prior):
        lo, hi = (float(getattr(phi, "lower", 0.0)), float(getattr(phi, "upper", 1.0))) \
            if phi.support == "interval" else (0.0, 1.0)
        if phi.support not in ("unit", "interval") or not (-1.0 <= lo and hi <= 1.0):
            raise TwinSpecificationError(
                f"GaussianAR1Obs.phi needs a prior inside [-1, 1] (Beta, or Uniform(lower, upper) with "
                f"-1 <= lower < upper <= 1); got {type(phi).__name__} (support {phi.support!r}).")
        return
    if not -1.0 < float(phi) < 1.0:
        raise TwinSpecificationError(
            f"GaussianAR1Obs.phi must lie in (-1, 1) (a stationary AR(1) process), got {phi}. "
            "Give a value inside, or a prior on it (e.g. Beta(2, 2) for positive persistence)."
        )


@dataclass
class GaussianAR1Obs(ObservationModel):
    """Gaussian noise that is autocorrelated in observation order: a stationary AR(1) process.

    ``y_i = zeta_i + e_i`` with ``e_i = phi e_{i-1} + sd_i w_i``, ``w_i ~ N(0, 1)`` and the first
    residual from the stationary law ``e_0 ~ N(0, sd_0^2 / (1 - phi^2))``. ``sd`` (from
    ``sigma``, ``relative``, ``y_sd`` in quadrature, as for :class:`Gaussian`) is the
    *innovation* sd; with constant ``sd`` the marginal sd is ``sd / sqrt(1 - phi^2)`` and the
    correlation at lag ``k`` is ``phi**k``. Internal variability of a climate record (ENSO) is
    the typical use: residuals that persist from year to year.

    The observations must be ordered in time and equally spaced (the lag is the row distance);
    missing rows are skipped (the observed rows are taken as consecutive). The elementwise
    log-density (:meth:`logpdf`) is the sequence of conditional densities
    ``log p(y_0) , log p(y_i | y_{i-1})``, whose sum over a record is its joint log-density; a
    record split into batches (assimilation) restarts the process from its stationary law at
    the start of each batch.

    Parameters
    ----------
    sigma : prior or float
        Innovation sd (model variable ``sigma_obs``).
    phi : prior or float
        Lag-one autocorrelation in (-1, 1) (model variable ``phi_obs``); default ``Beta(2, 2)``
        (positive persistence).
    """

    phi: PriorLike = field(default_factory=lambda: Beta(2.0, 2.0))

    NOISE_VARS: ClassVar[dict[str, str]] = {**ObservationModel.NOISE_VARS, "phi": "phi_obs"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.phi = as_prior(self.phi, "GaussianAR1Obs.phi")
        _ar1_check_phi(self.phi)

    def register_noise(self):
        out = super().register_noise()
        self._phi = out["phi"]
        return out

    def spec(self):
        return {**super().spec(), "phi": prior_spec(self.phi)}

    def _phi_value(self, noise, like):
        if noise and "phi" in noise:
            return self._per_draw(noise, "phi", like)
        if isinstance(self.phi, Prior):
            raise TypeError("GaussianAR1Obs.logpdf/sample need noise={'phi': ...} (phi is a prior): "
                            "pass Twin.observation.noise_values(draws).")
        return float(self.phi)

    # -------------------------------------------------------------- numpy
    def logpdf(self, y, zeta, sd, noise=None):
        """Conditional log-densities along the last axis (their sum is the joint log-density)."""
        y, zeta = np.asarray(y, float), np.asarray(zeta, float)
        r = y - zeta
        sd = np.broadcast_to(np.asarray(sd, float), r.shape)
        phi = np.asarray(self._phi_value(noise, r), float)
        phi = phi if phi.ndim == 0 else phi.reshape(phi.shape[0], *([1] * (r.ndim - 1)))
        mean = np.concatenate([np.zeros_like(r[..., :1]), phi * r[..., :-1]], axis=-1)
        first = np.sqrt(1.0 - phi**2) * np.ones_like(r[..., :1])
        scale = sd / np.concatenate([first, np.ones_like(r[..., 1:])], axis=-1)
        return stats.norm.logpdf(r, loc=mean, scale=scale)

    def sample(self, zeta, sd, noise, rng):
        zeta = np.asarray(zeta, float)
        sd = np.broadcast_to(np.asarray(sd, float), zeta.shape)
        phi = np.asarray(self._phi_value(noise, zeta), float)
        phi = np.broadcast_to(phi if phi.ndim == 0 else phi.reshape(phi.shape[0], *([1] * (zeta.ndim - 2))),
                              zeta.shape[:-1]) if zeta.ndim > 1 else phi
        w = rng.standard_normal(zeta.shape)
        e = np.empty_like(zeta)
        e[..., 0] = sd[..., 0] * w[..., 0] / np.sqrt(1.0 - phi**2)
        for i in range(1, zeta.shape[-1]):
            e[..., i] = phi * e[..., i - 1] + sd[..., i] * w[..., i]
        return zeta + e

    # -------------------------------------------------------------- PyMC
    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        sd = pt.as_tensor_variable(sd)
        sd_vec = sd if sd.ndim == 1 else pt.ones_like(zeta) * sd

        def logp(value, mu, s, phi):
            r = value - mu
            mean = phi * pt.concatenate([pt.zeros_like(r[:1]), r[:-1]])
            first = pt.eq(pt.arange(r.shape[0]), 0)
            scale = s / pt.switch(first, pt.sqrt(1.0 - phi**2), 1.0)
            return -0.5 * ((r - mean) / scale) ** 2 - pt.log(scale) - 0.5 * np.log(2.0 * np.pi)

        def random(mu, s, phi, rng=None, size=None):
            mu = np.asarray(mu, float)
            shape = mu.shape if size is None else tuple(np.atleast_1d(size))
            mu = np.broadcast_to(mu, shape)
            return self.sample(mu, np.broadcast_to(np.asarray(s, float), shape), {"phi": np.asarray(phi, float)}
                               if np.ndim(phi) == 0 else {"phi": np.asarray(phi, float)}, rng)

        return pm.CustomDist(name, zeta, sd_vec, self._phi, logp=logp, random=random,
                             observed=observed, dims=dims)


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
    NOISE_VARS: ClassVar[dict[str, str]] = {}

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

    def scale_numpy(self, noise, zeta, y_sd=None, extra_var=None):
        self.scale(noise, None, y_sd, extra_var)  # the same refusals
        return np.zeros_like(np.asarray(zeta, dtype=float))

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

    def logpdf(self, y, zeta, sd=None, noise=None) -> np.ndarray:
        """NumPy log-probability of counts ``y`` at expected counts ``zeta`` (elementwise)."""
        return stats.poisson.logpmf(np.asarray(y), np.asarray(zeta, dtype=float))

    def sample(self, zeta, sd, noise, rng):
        return rng.poisson(np.asarray(zeta, float)).astype(float)


@dataclass
class NegativeBinomial(_CountModel):
    """y ~ NegativeBinomial(mean zeta, dispersion alpha): var = zeta + zeta^2 / alpha.

    zeta = eta * exp(delta) (the discrepancy on the log mean). ``alpha`` is fixed (float) or a
    prior (model variable ``alpha_obs``); large alpha approaches the Poisson. Default prior
    ``Gamma(2, 0.1)`` (mean 20).
    """

    alpha: PriorLike = field(default_factory=lambda: Gamma(2.0, 0.1))

    NOISE_VARS: ClassVar[dict[str, str]] = {"alpha": "alpha_obs"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha = as_prior(self.alpha, "NegativeBinomial.alpha", positive=True)

    def register_noise(self):
        self._alpha = _value(self.alpha, "alpha_obs")
        return {"alpha": self._alpha}

    def likelihood(self, name, zeta, sd, *, observed=None, dims=None):
        return pm.NegativeBinomial(name, mu=zeta, alpha=self._alpha, observed=observed, dims=dims)

    def _alpha_value(self, noise, zeta):
        if noise and "alpha" in noise:
            return self._per_draw(noise, "alpha", zeta)
        if isinstance(self.alpha, Prior):
            raise TypeError("NegativeBinomial.logpdf/sample need noise={'alpha': ...} (alpha is a prior).")
        return float(self.alpha)

    def logpdf(self, y, zeta, sd=None, noise=None) -> np.ndarray:
        """NumPy log-probability of counts ``y`` with mean ``zeta`` and dispersion ``alpha``
        (from ``noise["alpha"]`` per draw, or the fixed value)."""
        mu = np.asarray(zeta, dtype=float)
        alpha = np.asarray(self._alpha_value(noise, mu), dtype=float)
        return stats.nbinom.logpmf(np.asarray(y), alpha, alpha / (alpha + mu))

    def sample(self, zeta, sd, noise, rng):
        mu = np.asarray(zeta, dtype=float)
        alpha = np.broadcast_to(np.asarray(self._alpha_value(noise, mu), dtype=float), mu.shape)
        return rng.negative_binomial(alpha, alpha / (alpha + mu)).astype(float)

    def spec(self):
        return {**super().spec(), "alpha": prior_spec(self.alpha)}


# Names that say they are observation models (the priors are NormalPrior, StudentTPrior, ...).
GaussianObs = Gaussian
StudentTObs = StudentT
__all__ += ["GaussianObs", "StudentTObs"]
