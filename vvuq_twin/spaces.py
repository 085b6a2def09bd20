"""Typed input specifications: :class:`UncertainInput`, :class:`ParameterSpace`, :class:`PosteriorSpace`.

A :class:`ParameterSpace` holds independent marginals (optionally tied by a Gaussian copula with
a given correlation matrix). It exports a SALib ``problem`` (:meth:`ParameterSpace.to_salib`) and
a chaospy joint distribution (:attr:`ParameterSpace.joint`). A :class:`PosteriorSpace` wraps
posterior draws of a calibrated twin (e.g. ``result.idata.posterior``); its inputs are dependent.

Both offer the two operations that Shapley effects need: joint sampling and conditional sampling
``X_free | X_given``. Conditionals use a Gaussian copula: marginals are mapped to normal scores,
and the normal-score conditional is closed form. For Gaussian marginals with a correlation
matrix this is the exact multivariate-normal conditional. For posterior draws the marginals are
the empirical distributions (linear interpolation of the sorted draws) and the copula
correlation is the correlation of the draws' normal scores: exact when the posterior is a
(transformed) Gaussian, an approximation otherwise (documented in :func:`shapley_effects`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import chaospy
import numpy as np
import xarray as xr
from scipy import stats
from scipy.stats import qmc

from ._rng import RNGLike, as_generator
from .exceptions import DependentInputsError, InputSpecificationError, UnsupportedDistributionError

__all__ = ["UncertainInput", "ParameterSpace", "PosteriorSpace", "as_space"]

_EPS = 1e-12


def _to_chaospy(name: str, dist: Any) -> tuple[chaospy.Distribution, dict | None]:
    """Map a distribution spec to (chaospy distribution, SALib entry or None)."""
    from .twin import priors as P

    if isinstance(dist, tuple) and len(dist) == 2:
        lo, hi = (float(v) for v in dist)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputSpecificationError(
                f"Input {name!r}: bounds must be finite, got lower={lo}, upper={hi}."
            )
        if not lo < hi:
            raise InputSpecificationError(
                f"Input {name!r}: need lower < upper, got lower={lo}, upper={hi}. "
                "Swap the bounds or widen the interval."
            )
        return chaospy.Uniform(lo, hi), {"bounds": [lo, hi], "dists": "unif"}
    if isinstance(dist, chaospy.Distribution):
        if len(dist) != 1:
            raise InputSpecificationError(
                f"Input {name!r}: expected a univariate chaospy distribution, got one of "
                f"dimension {len(dist)}. Declare one UncertainInput per variable."
            )
        return dist, None
    if isinstance(dist, P.Uniform):
        return _to_chaospy(name, (dist.lower, dist.upper))
    if isinstance(dist, P.Normal):
        return chaospy.Normal(dist.mu, dist.sigma), {"bounds": [dist.mu, dist.sigma], "dists": "norm"}
    if isinstance(dist, P.LogNormal):
        return (chaospy.LogNormal(dist.mu, dist.sigma),
                {"bounds": [dist.mu, dist.sigma], "dists": "lognorm"})
    if isinstance(dist, P.HalfNormal):
        return (chaospy.TruncNormal(lower=0.0, upper=np.inf, mu=0.0, sigma=dist.sigma),
                {"bounds": [0.0, np.inf, 0.0, dist.sigma], "dists": "truncnorm"})
    if isinstance(dist, P.Beta):
        return chaospy.Beta(dist.alpha, dist.beta), None
    if isinstance(dist, P.Gamma):
        return chaospy.Gamma(dist.alpha, scale=1.0 / dist.beta), None
    if isinstance(dist, P.Exponential):
        return chaospy.Exponential(scale=1.0 / dist.lam), None
    if isinstance(dist, P.StudentT):
        return chaospy.StudentT(dist.nu, dist.mu, dist.sigma), None
    raise UnsupportedDistributionError(
        f"Input {name!r}: cannot represent {type(dist).__name__} ({dist!r}) as a chaospy "
        "distribution. Use a (lower, upper) tuple, a chaospy distribution, or one of the "
        "vvuq_twin priors Uniform, Normal, LogNormal, HalfNormal, Beta, Gamma, Exponential, "
        "StudentT."
    )


@dataclass(frozen=True)
class UncertainInput:
    """One uncertain input of a model.

    Parameters
    ----------
    name : str
        Input name (used as coordinate of the ``input`` dimension in results).
    distribution : tuple, chaospy.Distribution or vvuq_twin prior
        ``(lower, upper)`` means uniform; a vvuq_twin prior (``Normal``, ``Uniform``, ...)
        or any univariate chaospy distribution.
    """

    name: str
    distribution: Any

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputSpecificationError(f"UncertainInput needs a non-empty str name, got {self.name!r}.")
        _to_chaospy(self.name, self.distribution)  # validates early

    @property
    def chaospy(self) -> chaospy.Distribution:
        """The chaospy marginal."""
        return _to_chaospy(self.name, self.distribution)[0]

    @property
    def salib(self) -> dict | None:
        """SALib ``bounds``/``dists`` entry, or None when SALib cannot represent it."""
        return _to_chaospy(self.name, self.distribution)[1]


class _CopulaSpace:
    """Shared sampling code: marginals tied by a Gaussian copula with correlation ``corr``."""

    names: list[str]
    corr: np.ndarray | None

    @property
    def dim(self) -> int:
        """Number of inputs."""
        return len(self.names)

    @property
    def dependent(self) -> bool:
        """Whether the inputs are dependent (a non-diagonal copula correlation)."""
        return self.corr is not None and not np.allclose(self.corr, np.eye(self.dim))

    def _inv(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise TypeError

    def _cdf(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise TypeError

    def transform(self, u: np.ndarray) -> np.ndarray:
        """Map points of the unit hypercube (independent uniforms) to the input distribution."""
        u = np.clip(np.asarray(u, float), _EPS, 1 - _EPS)
        if self.dependent:
            z = stats.norm.ppf(u) @ np.linalg.cholesky(self.corr).T
            u = np.clip(stats.norm.cdf(z), _EPS, 1 - _EPS)
        return self._inv(u)

    def sample(self, n: int, *, rng: RNGLike = None, method: str = "random") -> np.ndarray:
        """Draw ``n`` points, shape ``(n, dim)``.

        Parameters
        ----------
        n : int
            Number of points.
        rng : Generator, int or None
            Seed.
        method : {"random", "lhs", "sobol"}
            Plain Monte Carlo, Latin hypercube or scrambled Sobol (``scipy.stats.qmc``).
        """
        gen = as_generator(rng)
        if n < 1:
            raise ValueError(f"Expected n >= 1 points, got n={n}.")
        if method == "random":
            u = gen.random((n, self.dim))
        elif method == "lhs":
            u = qmc.LatinHypercube(d=self.dim, seed=gen).random(n)
        elif method == "sobol":
            with warnings.catch_warnings():  # n need not be a power of two for designs
                warnings.filterwarnings("ignore", message=".*balance properties.*")
                u = qmc.Sobol(d=self.dim, scramble=True, seed=gen).random(n)
        else:
            raise ValueError(f"`method` must be 'random', 'lhs' or 'sobol', got {method!r}.")
        return self.transform(u)

    def conditional_sample(
        self, given: Sequence[int], x_given: np.ndarray, n: int, *, rng: RNGLike = None
    ) -> np.ndarray:
        """Draw ``X_free | X_given = x_given`` through the Gaussian copula.

        Parameters
        ----------
        given : sequence of int
            Indices of the conditioning inputs.
        x_given : ndarray, shape (m, len(given))
            Conditioning values (one row per outer sample).
        n : int
            Draws per conditioning row.

        Returns
        -------
        ndarray, shape (m, n, dim)
            Full input rows (given columns held at ``x_given``).
        """
        gen = as_generator(rng)
        g = list(given)
        f = [k for k in range(self.dim) if k not in g]
        x_given = np.atleast_2d(np.asarray(x_given, float))
        m = x_given.shape[0]
        out = np.empty((m, n, self.dim))
        out[:, :, g] = x_given[:, None, :]
        if not f:
            return out
        R = self.corr if self.corr is not None else np.eye(self.dim)
        z_free = gen.standard_normal((m, n, len(f)))
        if g:
            full = np.zeros((m, self.dim))
            full[:, g] = x_given
            ug = np.clip(self._cdf(full)[:, g], _EPS, 1 - _EPS)
            zg = stats.norm.ppf(ug)
            Rgg, Rfg = R[np.ix_(g, g)], R[np.ix_(f, g)]
            W = np.linalg.solve(Rgg, Rfg.T).T  # (f, g)
            mean = zg @ W.T
            cov = R[np.ix_(f, f)] - W @ Rfg.T
        else:
            mean = np.zeros((m, len(f)))
            cov = R[np.ix_(f, f)]
        L = np.linalg.cholesky(cov + 1e-12 * np.eye(len(f)))
        z = mean[:, None, :] + z_free @ L.T
        uf = np.clip(stats.norm.cdf(z), _EPS, 1 - _EPS)
        tmp = np.zeros((m * n, self.dim))
        tmp[:, f] = uf.reshape(m * n, len(f))
        tmp[:, g] = 0.5
        out[:, :, f] = self._inv(tmp)[:, f].reshape(m, n, len(f))
        return out


class ParameterSpace(_CopulaSpace):
    """Uncertain inputs with independent marginals, optionally tied by a Gaussian copula.

    Parameters
    ----------
    inputs : sequence of UncertainInput
        The inputs, in the column order the QoI expects.
    correlation : ndarray, optional
        Normal-score (Gaussian copula) correlation matrix; for ``Normal`` marginals it is the
        Pearson correlation. ``None`` means independent inputs.
    """

    def __init__(self, inputs: Sequence[UncertainInput], correlation: np.ndarray | None = None):
        inputs = list(inputs)
        if not inputs:
            raise InputSpecificationError("ParameterSpace needs at least one UncertainInput.")
        for k, inp in enumerate(inputs):
            if not isinstance(inp, UncertainInput):
                raise InputSpecificationError(
                    f"ParameterSpace inputs must be UncertainInput objects; item {k} is "
                    f"{type(inp).__name__}."
                )
        names = [i.name for i in inputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputSpecificationError(f"Duplicate input names: {dup}.")
        self.inputs = inputs
        self.names = names
        self._marg = [i.chaospy for i in inputs]
        if correlation is not None:
            R = np.asarray(correlation, float)
            d = len(inputs)
            if R.shape != (d, d):
                raise InputSpecificationError(
                    f"`correlation` must have shape ({d}, {d}) for {d} inputs, got {R.shape}."
                )
            if not np.allclose(R, R.T) or not np.allclose(np.diag(R), 1.0):
                raise InputSpecificationError(
                    "`correlation` must be symmetric with a unit diagonal."
                )
            if np.linalg.eigvalsh(R).min() <= 0:
                raise InputSpecificationError("`correlation` must be positive definite.")
            correlation = R
        self.corr = correlation

    def __repr__(self) -> str:
        return f"ParameterSpace({self.names}, dependent={self.dependent})"

    @property
    def joint(self) -> chaospy.Distribution:
        """chaospy joint distribution (``chaospy.J`` of the marginals, or a Nataf copula)."""
        J = chaospy.J(*self._marg)
        if self.dependent:
            return chaospy.Nataf(J, self.corr)
        return J

    @property
    def independent_joint(self) -> chaospy.Distribution:
        """chaospy product of the marginals (ignores any correlation)."""
        return chaospy.J(*self._marg)

    def to_salib(self) -> dict:
        """SALib ``problem`` dict (``num_vars``, ``names``, ``bounds``, ``dists``).

        Raises
        ------
        DependentInputsError
            If the inputs are dependent (SALib's Sobol/FAST/Morris assume independence).
        UnsupportedDistributionError
            If a marginal has no SALib equivalent.
        """
        if self.dependent:
            raise DependentInputsError(
                "SALib methods assume independent inputs, but this ParameterSpace has a "
                "correlation matrix. Use Shapley effects: sensitivity(..., method='shapley')."
            )
        bounds, dists = [], []
        for inp in self.inputs:
            s = inp.salib
            if s is None:
                raise UnsupportedDistributionError(
                    f"Input {inp.name!r}: SALib has no equivalent of {inp.distribution!r}; "
                    "use uniform, normal, lognormal or half-normal inputs for SALib methods, "
                    "or method='pce'/'gp'."
                )
            bounds.append(s["bounds"])
            dists.append(s["dists"])
        return {"num_vars": self.dim, "names": list(self.names), "bounds": bounds, "dists": dists}

    def _unit_problem(self) -> dict:
        return {"num_vars": self.dim, "names": list(self.names), "bounds": [[0.0, 1.0]] * self.dim}

    def _inv(self, u: np.ndarray) -> np.ndarray:
        return np.column_stack([np.asarray(m.inv(u[:, k]), float) for k, m in enumerate(self._marg)])

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.asarray(m.cdf(x[:, k]), float) for k, m in enumerate(self._marg)])


class PosteriorSpace(_CopulaSpace):
    """Posterior draws of a calibrated twin as a (dependent) input distribution.

    Parameters
    ----------
    draws : ndarray, shape (n_draws, dim)
        Joint draws.
    names : sequence of str
        Input names.

    Notes
    -----
    Joint samples are rows of ``draws`` (resampled with replacement). Conditional samples use a
    Gaussian copula fitted to the draws: empirical marginals (interpolated sorted draws) and the
    correlation of the normal scores ``Phi^{-1}(rank / (n + 1))``.
    """

    def __init__(self, draws: np.ndarray, names: Sequence[str]):
        D = np.asarray(draws, float)
        if D.ndim != 2 or D.shape[1] != len(names):
            raise InputSpecificationError(
                f"Expected draws of shape (n_draws, {len(names)}), got {D.shape}."
            )
        if D.shape[0] < 20:
            raise InputSpecificationError(f"Need at least 20 posterior draws, got {D.shape[0]}.")
        if not np.all(np.isfinite(D)):
            raise InputSpecificationError("Posterior draws contain NaN or inf.")
        self.draws = D
        self.names = list(names)
        self._sorted = np.sort(D, axis=0)
        n = D.shape[0]
        self._p = (np.arange(1, n + 1)) / (n + 1)
        ranks = stats.rankdata(D, axis=0) / (n + 1)
        self.corr = np.corrcoef(stats.norm.ppf(ranks), rowvar=False).reshape(self.dim, self.dim)

    @classmethod
    def from_dataset(cls, posterior: xr.Dataset, var_names: Sequence[str] | None = None) -> "PosteriorSpace":
        """Build from an xarray Dataset of draws (``result.idata.posterior``).

        Scalar variables become one input each; variables with extra dims are flattened into one
        input per element, named ``var[coord]``. Sample dims are ``chain`` and ``draw`` (or
        ``sample``).
        """
        if not isinstance(posterior, xr.Dataset):
            raise InputSpecificationError(
                f"Expected an xarray.Dataset of posterior draws, got {type(posterior).__name__}."
            )
        var_names = list(var_names) if var_names is not None else list(posterior.data_vars)
        missing = [v for v in var_names if v not in posterior]
        if missing:
            raise InputSpecificationError(
                f"Variables {missing} not in the posterior; available: {list(posterior.data_vars)}."
            )
        sample_dims = [d for d in ("chain", "draw", "sample") if d in posterior.dims]
        if not sample_dims:
            raise InputSpecificationError(
                f"Posterior has no 'chain'/'draw'/'sample' dim; dims are {list(posterior.dims)}."
            )
        cols, names = [], []
        for v in var_names:
            da = posterior[v].stack(_s=sample_dims)
            other = [d for d in da.dims if d != "_s"]
            if not other:
                cols.append(da.values)
                names.append(v)
            else:
                da = da.stack(_e=other).transpose("_s", "_e")
                for k in range(da.sizes["_e"]):
                    lab = da["_e"].values[k]
                    lab = ",".join(map(str, lab)) if isinstance(lab, tuple) else str(lab)
                    cols.append(da.values[:, k])
                    names.append(f"{v}[{lab}]")
        return cls(np.column_stack(cols), names)

    def sample(self, n: int, *, rng: RNGLike = None, method: str = "random") -> np.ndarray:
        """Resample ``n`` rows of the draws (``method`` other than 'random' uses the copula)."""
        if method != "random":
            return super().sample(n, rng=rng, method=method)
        gen = as_generator(rng)
        return self.draws[gen.integers(0, self.draws.shape[0], n)]

    def to_salib(self) -> dict:
        """Always raises: posterior inputs are dependent."""
        raise DependentInputsError(
            "Posterior draws are dependent inputs; Sobol/SALib indices assume independence. "
            "Use Shapley effects: sensitivity(..., method='shapley')."
        )

    def _inv(self, u: np.ndarray) -> np.ndarray:
        return np.column_stack(
            [np.interp(u[:, k], self._p, self._sorted[:, k]) for k in range(self.dim)]
        )

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack(
            [np.interp(x[:, k], self._sorted[:, k], self._p) for k in range(self.dim)]
        )


def as_space(inputs: Any) -> ParameterSpace | PosteriorSpace:
    """Coerce ``inputs`` (a space, a list of UncertainInput, or a posterior Dataset) to a space."""
    if isinstance(inputs, (ParameterSpace, PosteriorSpace)):
        return inputs
    if isinstance(inputs, xr.Dataset):
        return PosteriorSpace.from_dataset(inputs)
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(i, UncertainInput) for i in inputs):
        return ParameterSpace(inputs)
    raise InputSpecificationError(
        "`inputs` must be a ParameterSpace, a list of UncertainInput, or an xarray Dataset of "
        f"posterior draws; got {type(inputs).__name__}."
    )
