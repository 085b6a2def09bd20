"""Model discrepancy delta(x) (Kennedy & O'Hagan 2001): the difference between reality and the
simulator at the best parameter values.

* :class:`NoDiscrepancy` - reality = simulator (the confidently-wrong baseline).
* :class:`BiasDiscrepancy` - a constant offset, shared or per unit.
* :class:`GPDiscrepancy` - an exact Gaussian process (``pm.gp.Latent``) for small n, shared or
  per unit, optionally constrained to delta(x0) = 0 and delta'(x0) = 0 (the remedy of
  Brynjarsdottir & O'Hagan 2014 for the theta/delta confounding when physics says the model is
  exact at x0).
* :class:`HSGPDiscrepancy` - the Hilbert-space approximate GP (``pm.gp.HSGP``) for large n,
  shared or per unit (shared basis, per-unit coefficients), optionally orthogonal to the
  simulator's sensitivity directions (``orthogonal_to``; Plumlee 2017), so that the discrepancy
  cannot take over what a change of the physical parameters explains.

Each discrepancy registers itself in the model being built and can be evaluated at new inputs
from the posterior (GP conditional, not a re-draw from the prior).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..exceptions import TwinSpecificationError
from .priors import HalfNormal, LogNormal, Normal, Prior, PriorLike, as_prior, prior_spec

__all__ = [
    "Discrepancy",
    "NoDiscrepancy",
    "BiasDiscrepancy",
    "GPDiscrepancy",
    "HSGPDiscrepancy",
    "ConstrainedExpQuad",
    "BuildContext",
    "DiscrepancyHandle",
    "Conditioning",
    "BiasState",
    "GPState",
    "HSGPState",
]

_KERNELS = {
    "ExpQuad": pm.gp.cov.ExpQuad,
    "Matern52": pm.gp.cov.Matern52,
    "Matern32": pm.gp.cov.Matern32,
    "Exponential": pm.gp.cov.Exponential,
}


@dataclass
class BuildContext:
    """What a discrepancy needs to know about the data while the model is built."""

    X: np.ndarray  # (n, d) training inputs
    unit_idx: np.ndarray | None  # (n,) integer unit index, or None without hierarchy
    n_units: int
    unit_dim: str = "unit"
    obs_dim: str = "obs"


@dataclass(frozen=True)
class Conditioning:
    """Residuals ``y - eta`` at the observed rows ``idx`` and their covariance ``Sigma``: what
    an integrated-out discrepancy is conditioned on (:meth:`DiscrepancyHandle.condition_on`)."""

    idx: np.ndarray
    Sigma: pt.TensorVariable
    resid: pt.TensorVariable


@dataclass(frozen=True)
class BiasState:
    """Build state of a :class:`BiasDiscrepancy`: its offset variable (per unit or scalar)."""

    b: pt.TensorVariable


@dataclass(frozen=True)
class GPState:
    """Build state of a :class:`GPDiscrepancy`: the latent GP (None when integrated out), its
    covariance function, the input columns it reads and the training inputs ``Z``."""

    gp: Any
    cov: Any
    cols: list[int]
    Z: np.ndarray


@dataclass(frozen=True)
class HSGPState:
    """Build state of an :class:`HSGPDiscrepancy`: the HSGP (boundary frozen at the training
    basis), its coefficients, the square root of the spectral density and the input columns."""

    gp: Any
    beta: pt.TensorVariable
    sqrt_psd: pt.TensorVariable
    cols: list[int]
    #: coefficients ``A`` (p, nb) of the orthogonal projection (``orthogonal_to``), or None
    ortho: np.ndarray | None = None


def _value(v: Prior | float, name: str):
    return v.dist(name) if isinstance(v, Prior) else pt.as_tensor_variable(float(v))


@dataclass
class DiscrepancyHandle:
    """A discrepancy registered in the model being built (what :meth:`Discrepancy.add` returns).

    Attributes
    ----------
    discrepancy : Discrepancy
    name : str
        Prefix of its variables in the model (``"delta"``).
    delta : TensorVariable or None
        delta at the training inputs, shape (n,); None when it is integrated out.
    marginal_cov : TensorVariable or None
        Prior covariance (n, n) of delta at the training inputs when it is integrated out
        (exact GP, Gaussian noise: ``y ~ MvNormal(eta, marginal_cov + S)``); else None.
    state : BiasState, GPState, HSGPState or None
        What the discrepancy registered in the model (its own typed build state).
    conditioning : Conditioning or None
        The residuals an integrated-out discrepancy is conditioned on, once recorded.
    """

    discrepancy: "Discrepancy"
    ctx: BuildContext
    name: str = "delta"
    delta: pt.TensorVariable | None = None
    marginal_cov: pt.TensorVariable | None = None
    state: Any = None
    conditioning: Conditioning | None = None

    @property
    def marginal(self) -> bool:
        """Whether delta is integrated out of the likelihood."""
        return self.marginal_cov is not None

    def at(self, X_new: np.ndarray, unit_idx_new: np.ndarray | None = None, new_unit: bool = False,
           name: str | None = None) -> pt.TensorVariable:
        """delta at new inputs given the posterior (same model, after the likelihood is added).

        For an integrated-out discrepancy this is its Gaussian conditional given the residuals
        recorded by :meth:`conditional` / :meth:`condition_on`.
        """
        if self.marginal and self.conditioning is None:
            raise TwinSpecificationError(
                "An integrated-out discrepancy is evaluated at new inputs from its conditional given "
                "the data: call handle.condition_on(resid, Sigma, idx) first."
            )
        return self.discrepancy._at(self.state, self.ctx, np.asarray(X_new), unit_idx_new, new_unit,
                                    name if name is not None else f"{self.name}_new", self.conditioning)

    def condition_on(self, resid: pt.TensorVariable, Sigma: pt.TensorVariable, idx: np.ndarray) -> None:
        """Record the residuals ``y - eta`` at the observed rows ``idx`` and their covariance."""
        if not self.marginal:
            raise TwinSpecificationError(
                f"{type(self.discrepancy).__name__} is not integrated out; it has no conditional."
            )
        self.conditioning = Conditioning(idx=np.asarray(idx), Sigma=Sigma, resid=resid)

    def conditional(self, resid: pt.TensorVariable | None = None, Sigma: pt.TensorVariable | None = None,
                    idx: np.ndarray | None = None, *, name: str | None = None, dims: Any = None) -> pt.TensorVariable:
        """delta at the training inputs drawn from its Gaussian conditional given the data.

        ``resid``, ``Sigma`` and ``idx`` are recorded first when given (see :meth:`condition_on`).
        """
        if resid is not None:
            self.condition_on(resid, Sigma, idx)
        if not self.marginal or self.conditioning is None:
            raise TwinSpecificationError("conditional() needs an integrated-out discrepancy and its residuals.")
        return self.discrepancy._marginal_conditional(
            self.state, self.state.Z, self.conditioning, name if name is not None else self.name, dims=dims)


class Discrepancy(abc.ABC):
    """Base class of discrepancy models.

    A subclass implements ``_add`` (register delta at the training inputs; return the tensor of
    shape (n,) and the subclass's typed build state) and ``_at`` (delta at new inputs in the same
    model, from that state), and, when it can be integrated out of a Gaussian likelihood,
    ``supports_marginal``, ``_add_marginal`` (prior covariance and state) and
    ``_marginal_conditional``. The state travels in the :class:`DiscrepancyHandle`, never in a
    shared dictionary.
    """

    per_unit: bool = False

    def add(self, ctx: BuildContext, name: str = "delta", *, marginal: bool = False) -> DiscrepancyHandle:
        """Register this discrepancy in the model being built; return its handle.

        With ``marginal`` (see :meth:`supports_marginal`) only the hyperparameters are
        registered and the handle carries the prior covariance ``marginal_cov`` instead of delta.
        """
        if marginal:
            K, state = self._add_marginal(ctx, name)
            return DiscrepancyHandle(self, ctx, name, marginal_cov=K, state=state)
        delta, state = self._add(ctx, name)
        return DiscrepancyHandle(self, ctx, name, delta=delta, state=state)

    def supports_marginal(self, observation: Any) -> bool:
        """Whether delta can be integrated out analytically under ``observation``."""
        return False

    def _add_marginal(self, ctx: BuildContext, name: str) -> tuple[pt.TensorVariable, Any]:
        raise TwinSpecificationError(f"{type(self).__name__} cannot be integrated out of the likelihood.")

    def _marginal_conditional(self, state: Any, Z_new: np.ndarray, cond: Conditioning, name: str,
                              dims: Any = None) -> pt.TensorVariable:
        raise TwinSpecificationError(f"{type(self).__name__} is not integrated out; it has no conditional.")

    @abc.abstractmethod
    def _add(self, ctx: BuildContext, name: str = "delta") -> tuple[pt.TensorVariable, Any]:
        """Register delta at the training inputs; return (tensor of shape (n,), build state)."""

    @abc.abstractmethod
    def _at(
        self,
        state: Any,
        ctx: BuildContext,
        X_new: np.ndarray,
        unit_idx_new: np.ndarray | None,
        new_unit: bool,
        name: str,
        cond: Conditioning | None = None,
    ) -> pt.TensorVariable:
        """delta at new inputs given the posterior (after :meth:`add`, same model, its state)."""

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """Description used in the declaration hash."""

    def validate(self, X: np.ndarray) -> None:
        """Check the discrepancy fits the data's inputs (raise TwinSpecificationError)."""

    # numpy answers, vectorised over posterior draws (``draws``: model name -> (n_draws, ...))
    def prior_terms(self, X: np.ndarray, name: str = "delta",
                    marginal: bool = False) -> dict[str, Callable[[Mapping[str, Any]], np.ndarray]]:
        """The free variables this discrepancy adds to the model built on inputs ``X``.

        Returns name -> function(draws) -> log prior density per draw, shape (n_draws,). With
        ``marginal`` the latent values are integrated out (exact GP with Gaussian noise).
        """
        return {}

    def hyperparameter_names(self, name: str = "delta") -> tuple[str, ...]:
        """Names of the inferred hyperparameters (length scale, amplitude, offset) in the model."""
        return ()

    def delta_numpy(self, draws: Mapping[str, Any], X: np.ndarray, unit_idx: np.ndarray | None,
                    n_units: int, name: str = "delta") -> np.ndarray:
        """delta at the training inputs ``X`` for every draw, shape (n_draws, n_obs)."""
        n = len(next(iter(draws.values()))) if len(draws) else 1
        return np.zeros((n, np.asarray(X).shape[0]))


@dataclass
class NoDiscrepancy(Discrepancy):
    """delta(x) = 0."""

    def _add(self, ctx, name="delta"):
        return pt.zeros((ctx.X.shape[0],)), None

    def _at(self, state, ctx, X_new, unit_idx_new, new_unit, name, cond=None):
        return pt.zeros((X_new.shape[0],))

    def spec(self):
        return {"kind": "none"}


@dataclass
class BiasDiscrepancy(Discrepancy):
    """delta(x) = b, a constant offset (per unit when ``per_unit``; then b_u ~ prior iid)."""

    prior: Prior = field(default_factory=lambda: Normal(0.0, 1.0))
    per_unit: bool = False

    def _add(self, ctx, name="delta"):
        if self.per_unit:
            if ctx.unit_idx is None:
                raise TwinSpecificationError(
                    "BiasDiscrepancy(per_unit=True) needs a hierarchy (units in the data)."
                )
            b = self.prior.dist(f"{name}_bias", dims=ctx.unit_dim)
            return b[ctx.unit_idx], BiasState(b)
        b = self.prior.dist(f"{name}_bias")
        return pt.ones((ctx.X.shape[0],)) * b, BiasState(b)

    def _at(self, state, ctx, X_new, unit_idx_new, new_unit, name, cond=None):
        b = state.b
        m = X_new.shape[0]
        if self.per_unit:
            if new_unit:
                b_new = self.prior.dist(f"{name}_bias_new")
                return pt.ones((m,)) * b_new
            return b[unit_idx_new]
        return pt.ones((m,)) * b

    def prior_terms(self, X, name="delta", marginal=False):
        return _bias_terms(self, X, name, marginal)

    def hyperparameter_names(self, name="delta"):
        return (f"{name}_bias",)

    def delta_numpy(self, draws, X, unit_idx, n_units, name="delta"):
        return _bias_delta(self, draws, X, unit_idx, n_units, name)

    def spec(self):
        return {"kind": "bias", "prior": self.prior.spec(), "per_unit": self.per_unit}


class ConstrainedExpQuad(pm.gp.cov.Covariance):
    """Squared-exponential kernel conditioned on delta(x0) = 0 and/or delta'(x0) = 0.

    For k(x, x') = eta^2 exp(-(x - x')^2 / (2 l^2)) in one input, conditioning a GP on
    a = [delta(x0), delta'(x0)] (independent under k, with variances eta^2 and eta^2 / l^2)
    gives k_c = k - k0 k0^T / eta^2 - k1 k1^T l^2 / eta^2 with k0(x) = k(x, x0) and
    k1(x) = dk(x, s)/ds at s = x0 = k(x, x0) (x - x0) / l^2.
    """

    def __init__(self, eta, ls, *, x0: float = 0.0, value: bool = True, slope: bool = True,
                 active_dims: Sequence[int] | None = None, input_dim: int = 1):
        super().__init__(input_dim, active_dims=list(active_dims) if active_dims is not None else [0])
        self.eta = eta
        self.ls = ls
        self.x0 = x0
        self.value = value
        self.slope = slope

    def _k(self, X, Xs):
        d = X[:, 0][:, None] - Xs[:, 0][None, :]
        l2 = self.ls**2
        K = self.eta**2 * pt.exp(-0.5 * d**2 / l2)
        a = pt.exp(-0.5 * (X[:, 0] - self.x0) ** 2 / l2)
        b = pt.exp(-0.5 * (Xs[:, 0] - self.x0) ** 2 / l2)
        if self.value:
            K = K - self.eta**2 * a[:, None] * b[None, :]
        if self.slope:
            u = a * (X[:, 0] - self.x0)
            v = b * (Xs[:, 0] - self.x0)
            K = K - self.eta**2 * u[:, None] * v[None, :] / l2
        return K

    def full(self, X, Xs=None):
        X, Xs = self._slice(X, Xs)
        if Xs is None:
            Xs = X
        return self._k(X, Xs)

    def diag(self, X):
        X, _ = self._slice(X, None)
        l2 = self.ls**2
        a2 = pt.exp(-((X[:, 0] - self.x0) ** 2) / l2)
        out = self.eta**2 * pt.ones_like(X[:, 0])
        if self.value:
            out = out - self.eta**2 * a2
        if self.slope:
            out = out - self.eta**2 * a2 * (X[:, 0] - self.x0) ** 2 / l2
        return out


def _default_ls(X: np.ndarray, cols: Sequence[int]) -> Prior:
    rng = float(np.max(np.ptp(X[:, list(cols)], axis=0))) or 1.0
    return LogNormal(float(np.log(rng / 3)), 0.7)


@dataclass
class GPDiscrepancy(Discrepancy):
    """Exact GP discrepancy (``pm.gp.Latent``, non-centred), for small n (a few hundred).

    Parameters
    ----------
    ls : Prior or float, optional
        Length scale (prior or fixed). Default: LogNormal centred on a third of the input range.
    eta : Prior or float
        Marginal standard deviation of delta.
    kernel : {"ExpQuad", "Matern52", "Matern32", "Exponential"}
    columns : sequence of int, optional
        Input columns delta depends on (default: all).
    per_unit : bool
        Independent GPs per unit with shared hyperparameters (block-diagonal covariance).
    constraint : {None, "value", "value_and_slope"}
        Condition delta on delta(x0) = 0 (and delta'(x0) = 0); ExpQuad, one input only.
    x0 : float
        Where the constraint holds.
    jitter : float
        Added to the covariance diagonal for numerical stability.
    marginalize : {"auto", True, False}
        Whether delta is integrated out of the likelihood analytically:
        ``y ~ MvNormal(eta, K + diag(sd^2))``, exact and cheap (NUTS sees only theta and the GP
        hyperparameters; delta is drawn from its Gaussian conditional afterwards). This needs
        a Gaussian observation model whose noise sd does not depend on delta, i.e. without a
        ``relative`` term (that term scales with the true process ``zeta = eta + delta``).
        ``"auto"`` (default) marginalises when possible and otherwise falls back to a latent GP
        - one sampled variable per observation, often 10-100x slower and with harder geometry -
        with a :class:`~vvuq_twin.exceptions.MarginalizationWarning` saying why; ``False``
        asks for the latent GP explicitly (no warning); ``True`` raises when the marginal is
        impossible. The latent GP's internal non-centred variable (``delta_gp_rotated_``) is
        kept out of the posterior group (in ``idata["latent_posterior"]``).
    """

    ls: PriorLike | None = None
    eta: PriorLike = field(default_factory=lambda: HalfNormal(1.0))
    kernel: Literal["ExpQuad", "Matern52", "Matern32", "Exponential"] = "ExpQuad"
    columns: Sequence[int] | None = None
    per_unit: bool = False
    constraint: Literal["value", "value_and_slope"] | None = None
    x0: float = 0.0
    jitter: float = 1e-6
    marginalize: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        if self.marginalize not in (True, False, "auto"):
            raise TwinSpecificationError(
                f"GPDiscrepancy: marginalize must be True, False or 'auto', got {self.marginalize!r}."
            )
        if self.kernel not in _KERNELS:
            raise TwinSpecificationError(
                f"GPDiscrepancy: unknown kernel {self.kernel!r}; choose one of {sorted(_KERNELS)}."
            )
        if self.ls is not None:
            self.ls = as_prior(self.ls, "GPDiscrepancy.ls", positive=True)
        self.eta = as_prior(self.eta, "GPDiscrepancy.eta", positive=True)
        if self.constraint not in (None, "value", "value_and_slope"):
            raise TwinSpecificationError(
                f"GPDiscrepancy: constraint must be None, 'value' or 'value_and_slope', got "
                f"{self.constraint!r}."
            )
        if self.constraint is not None and self.kernel != "ExpQuad":
            raise TwinSpecificationError(
                "GPDiscrepancy: constraints delta(x0)=0 / delta'(x0)=0 are implemented for the "
                "ExpQuad kernel; set kernel='ExpQuad'."
            )

    def _cols(self, X: np.ndarray) -> list[int]:
        return list(range(X.shape[1])) if self.columns is None else [int(c) for c in self.columns]

    def validate(self, X):
        cols = self._cols(X)
        if any(c < 0 or c >= X.shape[1] for c in cols):
            raise TwinSpecificationError(
                f"GPDiscrepancy.columns={cols} but the inputs have {X.shape[1]} column(s)."
            )
        if self.constraint is not None and len(cols) != 1:
            raise TwinSpecificationError(
                "GPDiscrepancy: a constrained discrepancy needs exactly one input column; set "
                "columns=[k]."
            )

    def _cov(self, ctx: BuildContext, name: str):
        cols = self._cols(ctx.X)
        ls_p = self.ls if self.ls is not None else _default_ls(ctx.X, cols)
        ls = _value(ls_p, f"{name}_ls")
        eta = _value(self.eta, f"{name}_eta")
        nd = len(cols)
        # per unit, the inputs carry the unit index as a last column (for the Coregion factor)
        in_dim = nd + 1 if self.per_unit else nd
        if self.constraint is not None:
            cov = ConstrainedExpQuad(eta, ls, x0=self.x0, value=True,
                                     slope=self.constraint == "value_and_slope", active_dims=[0],
                                     input_dim=in_dim)
        else:
            cov = eta**2 * _KERNELS[self.kernel](in_dim, ls=ls, active_dims=list(range(nd)))
        if self.per_unit:
            U = ctx.n_units
            coreg = pm.gp.cov.Coregion(nd + 1, W=np.zeros((U, 1)), kappa=np.ones(U), active_dims=[nd])
            cov = cov * coreg
        return cov, cols

    def supports_marginal(self, observation: Any) -> bool:
        """Integrated out under Gaussian noise without a relative term (see ``marginalize``)."""
        return self.use_marginal(observation)

    def use_marginal(self, observation: Any) -> bool:
        """Whether delta is integrated out analytically (Gaussian noise, no relative term)."""
        from .observation import Gaussian

        ok = type(observation) is Gaussian and observation.relative is None
        if self.marginalize is True and not ok:
            raise TwinSpecificationError(
                "GPDiscrepancy(marginalize=True) needs a Gaussian observation model without a "
                "`relative` noise term; use marginalize='auto' or False."
            )
        if self.marginalize == "auto" and not ok:
            import warnings

            from ..exceptions import MarginalizationWarning

            why = (f"the observation model {type(observation).__name__} is not Gaussian"
                   if type(observation) is not Gaussian else
                   "the Gaussian observation model has a `relative` noise term, whose sd scales "
                   "with the true process eta + delta, so delta cannot be integrated out")
            warnings.warn(
                f"GPDiscrepancy(marginalize='auto'): {why}. Falling back to a latent GP: one "
                "sampled variable per observation (n extra dimensions for NUTS; often 10-100x "
                "slower, with harder geometry and more divergences). To keep the analytic "
                "marginal, drop `relative` (or model it with known per-observation sds, "
                "TwinData(y_sd=...)); for large n use HSGPDiscrepancy; pass marginalize=False to "
                "choose the latent GP explicitly and silence this warning.",
                MarginalizationWarning, stacklevel=3,
            )
        return ok if self.marginalize == "auto" else bool(self.marginalize)

    def _add_marginal(self, ctx: BuildContext, name: str = "delta") -> pt.TensorVariable:
        """Register the hyperparameters only; return the prior covariance K (n, n) of delta.

        With Gaussian noise, delta is integrated out: y ~ MvNormal(eta, K + S). Its posterior
        given (theta, y) is Gaussian and is drawn in the posterior predictive.
        """
        if self.per_unit and ctx.unit_idx is None:
            raise TwinSpecificationError(
                "GPDiscrepancy(per_unit=True) needs a hierarchy (units in the data)."
            )
        cov, cols = self._cov(ctx, name)
        Z = self._inputs(ctx.X, cols, ctx.unit_idx)
        K = cov(Z) + self.jitter * np.eye(Z.shape[0])
        return K, GPState(gp=None, cov=cov, cols=cols, Z=Z)

    def _marginal_conditional(self, state, Z_new, cond, name, dims=None):
        cov = state.cov
        Z_obs = state.Z[cond.idx]
        Kx = cov(Z_obs, Z_new)
        Lc = pt.linalg.cholesky(cond.Sigma)
        A = pt.linalg.solve_triangular(Lc, Kx, lower=True)
        r = pt.linalg.solve_triangular(Lc, cond.resid, lower=True)
        mu = A.T @ r
        C = cov(Z_new) - A.T @ A
        C = 0.5 * (C + C.T) + self.jitter * pt.eye(Z_new.shape[0])
        return pm.MvNormal(name, mu=mu, cov=C, dims=dims)

    def _inputs(self, X: np.ndarray, cols: list[int], unit_idx: np.ndarray | None) -> np.ndarray:
        Z = X[:, cols].astype(float)
        if self.per_unit:
            Z = np.column_stack([Z, unit_idx.astype(float)])
        return Z

    def _add(self, ctx, name="delta"):
        if self.per_unit and ctx.unit_idx is None:
            raise TwinSpecificationError(
                "GPDiscrepancy(per_unit=True) needs a hierarchy (units in the data)."
            )
        cov, cols = self._cov(ctx, name)
        gp = pm.gp.Latent(cov_func=cov)
        Z = self._inputs(ctx.X, cols, ctx.unit_idx)
        f = gp.prior(f"{name}_gp", X=Z, dims=ctx.obs_dim, jitter=self.jitter)
        return f, GPState(gp=gp, cov=cov, cols=cols, Z=Z)

    def _at(self, state, ctx, X_new, unit_idx_new, new_unit, name, cond=None):
        gp, cov, cols = state.gp, state.cov, state.cols
        if cond is not None and not (new_unit and self.per_unit):
            return self._marginal_conditional(state, self._inputs(X_new, cols, unit_idx_new), cond, name)
        if new_unit and self.per_unit:
            Z = X_new[:, cols].astype(float)
            base = cov.factor_list[0] if hasattr(cov, "factor_list") else cov
            K = base(Z) + self.jitter * np.eye(Z.shape[0])
            return pm.MvNormal(name, mu=np.zeros(Z.shape[0]), cov=K)
        Z = self._inputs(X_new, cols, unit_idx_new)
        return gp.conditional(name, Z, jitter=self.jitter)

    def prior_terms(self, X, name="delta", marginal=False):
        return _gp_terms(self, X, name, marginal)

    def hyperparameter_names(self, name="delta"):
        return _gp_hyper(self, name)

    def delta_numpy(self, draws, X, unit_idx, n_units, name="delta"):
        return _gp_delta(self, draws, X, unit_idx, n_units, name)

    def marginal_cov_numpy(self, draws, X, unit_idx, name="delta") -> np.ndarray:
        """Prior covariance of delta at ``X`` per draw, (n_draws, n, n), jitter included."""
        return _gp_cov_np(self, draws, X, unit_idx, name)

    def spec(self):
        return {
            "kind": "gp",
            "ls": prior_spec(self.ls) if self.ls is not None else "default",
            "eta": prior_spec(self.eta),
            "kernel": self.kernel,
            "columns": None if self.columns is None else list(self.columns),
            "per_unit": self.per_unit,
            "constraint": self.constraint,
            "x0": self.x0,
            "marginalize": self.marginalize,
        }


@dataclass
class HSGPDiscrepancy(Discrepancy):
    """Hilbert-space approximate GP discrepancy (``pm.gp.HSGP``, Riutort-Mayol et al. 2023).

    Cost per gradient is O(n m) instead of O(n^3). Uses the linearised form
    delta = Phi (sqrt(S) * beta), beta ~ N(0, 1), so per-unit discrepancies share one basis.

    Parameters
    ----------
    m : int or sequence of int
        Basis functions per input dimension.
    c : float
        Boundary factor (L = c * half-range of the centred inputs); >= 1.2.
    ls, eta, kernel, columns, per_unit :
        As for :class:`GPDiscrepancy` (kernels: ExpQuad, Matern52, Matern32).
    center, L : sequence of float, optional
        Fixed basis geometry (centre of the inputs and boundary per dimension). Default: from
        the inputs the model is built on; :meth:`frozen` fixes them from the calibration inputs
        (data assimilation does this, so that new batches use the calibration basis).
    orthogonal_to : callable, optional
        ``orthogonal_to(X) -> G`` of shape (n, p): the simulator's sensitivity directions at the
        inputs ``X`` (n, d), e.g. ``d eta / d theta`` at a reference parameter value. Each basis
        function is replaced by its residual after least-squares projection on the columns of
        ``G`` over the reference inputs, ``phi~(x) = phi(x) - g(x) A`` with
        ``A = (G_r' G_r)^{-1} G_r' Phi_r``, so that every draw of delta is orthogonal to the
        directions on those inputs (the orthogonal discrepancy of Plumlee 2017, JASA 112:1274;
        the identifiability lesson of Brynjarsdottir & O'Hagan 2014). With a linear simulator
        and Gaussian noise the posterior mean of its parameters is then the least-squares
        estimate, whatever the discrepancy's hyperparameters. The directions depend on the
        reference parameters only through ``orthogonal_to``: compute them at a plug-in estimate.
    orthogonal_inputs : array, optional
        Inputs (n_r, d) of the inner product. Default: the inputs the model is built on;
        :meth:`frozen` fixes them from the calibration inputs.
    """

    m: int | Sequence[int] = 30
    c: float = 1.5
    ls: PriorLike | None = None
    eta: PriorLike = field(default_factory=lambda: HalfNormal(1.0))
    kernel: Literal["ExpQuad", "Matern52", "Matern32"] = "ExpQuad"
    columns: Sequence[int] | None = None
    per_unit: bool = False
    center: Sequence[float] | None = None
    L: Sequence[float] | None = None
    orthogonal_to: Callable[[np.ndarray], Any] | None = None
    orthogonal_inputs: Any = None
    frozen_from_data: tuple = field(default=(), repr=False)

    def frozen(self, X: np.ndarray) -> "HSGPDiscrepancy":
        """This discrepancy with its basis geometry fixed from the calibration inputs ``X``.

        The HSGP basis (centre and boundary ``L = c * max |x - centre|``) and the default
        length-scale prior are derived from the inputs the model is built on. A model built on
        other inputs (a new batch in data assimilation, all data after an update) must reuse the
        calibration geometry, or the basis coefficients change meaning. The frozen copy has the
        same declaration hash (the geometry is a function of the calibration data, which are
        hashed apart).
        """
        ortho_done = self.orthogonal_to is None or self.orthogonal_inputs is not None
        if self.frozen_from_data or (self.center is not None and self.L is not None and self.ls is not None
                                     and ortho_done):
            return self
        derived = tuple(n for n in ("center", "L", "ls") if getattr(self, n) is None)
        derived += () if ortho_done else ("orthogonal_inputs",)
        X = np.asarray(X, float)
        X = X[:, None] if X.ndim == 1 else X
        cols = self._cols(X)
        Z = X[:, cols]
        center = (Z.max(axis=0) + Z.min(axis=0)) / 2
        L = self.c * np.abs(Z - center).max(axis=0)
        return dataclasses.replace(
            self,
            center=list(map(float, center)) if self.center is None else self.center,
            L=list(map(float, L)) if self.L is None else self.L,
            ls=self.ls if self.ls is not None else _default_ls(X, cols),
            orthogonal_inputs=self.orthogonal_inputs if ortho_done else X.copy(),
            frozen_from_data=derived,
        )

    def __post_init__(self) -> None:
        if self.kernel not in ("ExpQuad", "Matern52", "Matern32"):
            raise TwinSpecificationError(
                f"HSGPDiscrepancy: kernel must be ExpQuad, Matern52 or Matern32, got {self.kernel!r}."
            )
        if self.c < 1.2:
            raise TwinSpecificationError(f"HSGPDiscrepancy: c must be >= 1.2, got {self.c}.")
        if self.ls is not None:
            self.ls = as_prior(self.ls, "HSGPDiscrepancy.ls", positive=True)
        self.eta = as_prior(self.eta, "HSGPDiscrepancy.eta", positive=True)
        if self.orthogonal_to is not None and not callable(self.orthogonal_to):
            raise TwinSpecificationError(
                "HSGPDiscrepancy.orthogonal_to must be a callable X (n, d) -> sensitivity directions "
                f"(n, p), got {type(self.orthogonal_to).__name__}."
            )
        if self.orthogonal_inputs is not None and self.orthogonal_to is None:
            raise TwinSpecificationError(
                "HSGPDiscrepancy.orthogonal_inputs is given but orthogonal_to is not: pass the "
                "sensitivity directions orthogonal_to=callable, or drop orthogonal_inputs."
            )

    def _cols(self, X):
        return list(range(X.shape[1])) if self.columns is None else [int(c) for c in self.columns]

    def directions(self, X: np.ndarray) -> np.ndarray:
        """The sensitivity directions ``orthogonal_to(X)`` as a checked (n, p) array."""
        X = np.asarray(X, float)
        X = X[:, None] if X.ndim == 1 else X
        G = np.asarray(self.orthogonal_to(X), float)
        G = G[:, None] if G.ndim == 1 else G
        if G.ndim != 2 or G.shape[0] != X.shape[0]:
            raise TwinSpecificationError(
                f"HSGPDiscrepancy.orthogonal_to returned shape {G.shape} for {X.shape[0]} inputs; it must "
                "return one row of sensitivity directions per input row, shape (n, p)."
            )
        if not np.all(np.isfinite(G)):
            raise TwinSpecificationError("HSGPDiscrepancy.orthogonal_to returned NaN or inf directions; "
                                         "check the reference parameters it is evaluated at.")
        return G

    def _ortho_coef(self, X_ref: np.ndarray, phi_ref: np.ndarray) -> np.ndarray:
        """``A = (G_r' G_r)^{-1} G_r' Phi_r``: the projection of the basis on the directions."""
        G = self.directions(X_ref)
        if np.linalg.matrix_rank(G) < G.shape[1]:
            raise TwinSpecificationError(
                f"HSGPDiscrepancy.orthogonal_to: the {G.shape[1]} sensitivity directions are linearly "
                f"dependent on the {G.shape[0]} reference inputs (rank {np.linalg.matrix_rank(G)}); drop "
                "the redundant directions (a parameter the data cannot identify needs a prior, not an "
                "orthogonality constraint)."
            )
        return np.linalg.lstsq(G, phi_ref, rcond=None)[0]

    def _ref_inputs(self, X: np.ndarray) -> np.ndarray:
        if self.orthogonal_inputs is None:
            return np.asarray(X, float)
        R = np.asarray(self.orthogonal_inputs, float)
        return R[:, None] if R.ndim == 1 else R

    def validate(self, X):
        cols = self._cols(X)
        if any(c < 0 or c >= X.shape[1] for c in cols):
            raise TwinSpecificationError(
                f"HSGPDiscrepancy.columns={cols} but the inputs have {X.shape[1]} column(s)."
            )

    def _basis(self, ctx, name="delta"):
        """Register the length scale and amplitude; return ``(gp, phi, sqrt_psd, ortho, cols)``:
        the HSGP (boundary frozen), the basis at the training inputs (n, m, orthogonalised with
        ``orthogonal_to``) and the square root of the spectral density (m,), amplitude included."""
        cols = self._cols(ctx.X)
        nd = len(cols)
        ls_p = self.ls if self.ls is not None else _default_ls(ctx.X, cols)
        ls = _value(ls_p, f"{name}_ls")
        eta = _value(self.eta, f"{name}_eta")
        cov = eta**2 * _KERNELS[self.kernel](nd, ls=ls)
        m = [int(self.m)] * nd if np.isscalar(self.m) else [int(v) for v in self.m]
        if self.L is not None:
            gp = pm.gp.HSGP(m=m, L=[float(v) for v in np.atleast_1d(self.L)], cov_func=cov)
        else:
            gp = pm.gp.HSGP(m=m, c=self.c, cov_func=cov)
        if self.center is not None:
            gp._X_center = np.asarray(self.center, float)
        Z = ctx.X[:, cols].astype(float)
        phi, sqrt_psd = gp.prior_linearized(Z)
        gp._L = gp.L.eval()  # freeze the boundary so prediction reuses the training basis
        ortho = None
        if self.orthogonal_to is not None:
            R = self._ref_inputs(ctx.X)
            phi_r = gp.prior_linearized(R[:, cols].astype(float))[0].eval()
            ortho = self._ortho_coef(R, phi_r)
            phi = phi - pt.as_tensor_variable(self.directions(ctx.X) @ ortho)
        return gp, phi, sqrt_psd, ortho, cols

    def _add(self, ctx, name="delta"):
        if self.per_unit and ctx.unit_idx is None:
            raise TwinSpecificationError(
                "HSGPDiscrepancy(per_unit=True) needs a hierarchy (units in the data)."
            )
        gp, phi, sqrt_psd, ortho, cols = self._basis(ctx, name)
        m = [int(self.m)] * len(cols) if np.isscalar(self.m) else [int(v) for v in self.m]
        nb = int(np.prod(m))
        if self.per_unit:
            beta = pm.Normal(f"{name}_hsgp_coeffs", 0.0, 1.0, shape=(ctx.n_units, nb))
            f = pt.sum(phi * (beta[ctx.unit_idx] * sqrt_psd[None, :]), axis=1)
        else:
            beta = pm.Normal(f"{name}_hsgp_coeffs", 0.0, 1.0, shape=(nb,))
            f = phi @ (beta * sqrt_psd)
        return f, HSGPState(gp=gp, beta=beta, sqrt_psd=sqrt_psd, cols=cols, ortho=ortho)

    def _at(self, state, ctx, X_new, unit_idx_new, new_unit, name, cond=None):
        gp, beta, sqrt_psd, cols = state.gp, state.beta, state.sqrt_psd, state.cols
        phi_new, _ = gp.prior_linearized(X_new[:, cols].astype(float))
        if state.ortho is not None:
            phi_new = phi_new - pt.as_tensor_variable(self.directions(X_new) @ state.ortho)
        if self.per_unit:
            if new_unit:
                b = pm.Normal(f"{name}_hsgp_coeffs_new", 0.0, 1.0, shape=(beta.shape[1],))
                return phi_new @ (b * sqrt_psd)
            return pt.sum(phi_new * (beta[unit_idx_new] * sqrt_psd[None, :]), axis=1)
        return phi_new @ (beta * sqrt_psd)

    def prior_terms(self, X, name="delta", marginal=False):
        return _hsgp_terms(self, X, name, marginal)

    def hyperparameter_names(self, name="delta"):
        return _gp_hyper(self, name)

    def delta_numpy(self, draws, X, unit_idx, n_units, name="delta"):
        return _hsgp_delta(self, draws, X, unit_idx, n_units, name)

    def spec(self):
        return {
            "kind": "hsgp",
            "m": self.m if np.isscalar(self.m) else list(self.m),
            "c": self.c,
            "ls": prior_spec(self.ls) if self.ls is not None and "ls" not in self.frozen_from_data else "default",
            "eta": prior_spec(self.eta),
            "kernel": self.kernel,
            "columns": None if self.columns is None else list(self.columns),
            "per_unit": self.per_unit,
            # a geometry fixed by the user is part of the declaration; one derived from the
            # calibration inputs (frozen) is not (the data are hashed apart)
            **{k: list(map(float, np.atleast_1d(getattr(self, k)))) for k in ("center", "L")
               if getattr(self, k) is not None and k not in self.frozen_from_data},
            **({} if self.orthogonal_to is None else {"orthogonal_to": _source_hash(self.orthogonal_to)}),
            **({} if self.orthogonal_inputs is None or "orthogonal_inputs" in self.frozen_from_data
               else {"orthogonal_inputs": np.asarray(self.orthogonal_inputs, float).tolist()}),
        }


def _source_hash(fn: Any) -> str:
    from .simulators import source_hash

    return source_hash(fn)


# ---------------------------------------------------------------------------- numpy answers
# Each discrepancy also answers, in numpy and vectorised over posterior draws, what the twin
# needs without a PyMC model: the priors of its free variables, its hyperparameter names and
# delta at the training inputs (or, for a marginalised GP, the prior covariance of delta).
# ``draws`` maps model variable names to arrays with a leading draw axis.

def _draws(draws: Any, name: str) -> np.ndarray:
    if name not in draws:
        raise KeyError(f"The draws have no {name!r}; pass every variable of Twin.free_variable_names().")
    return np.asarray(draws[name], dtype=float)


def _std_normal_sum(v: np.ndarray) -> np.ndarray:
    n = v.shape[0]
    return (-0.5 * v.reshape(n, -1) ** 2 - 0.5 * np.log(2 * np.pi)).sum(axis=1)


def _prior_sum(prior: Prior, v: np.ndarray) -> np.ndarray:
    return prior.logpdf(v).reshape(v.shape[0], -1).sum(axis=1)


def _value_np(spec: Prior | float, draws: Any, name: str, n: int) -> np.ndarray:
    return _draws(draws, name).reshape(n) if isinstance(spec, Prior) else np.full(n, float(spec))


def _kernel_np(kind: str, r2: np.ndarray) -> np.ndarray:
    """Unit-variance stationary kernel of squared scaled distance ``r2`` (PyMC's definitions)."""
    if kind == "ExpQuad":
        return np.exp(-0.5 * r2)
    r = np.sqrt(np.maximum(r2, 0.0) + 1e-12)  # PyMC's Stationary._sqrt (keeps the gradient finite)
    if kind == "Matern52":
        return (1.0 + np.sqrt(5.0) * r + 5.0 / 3.0 * r2) * np.exp(-np.sqrt(5.0) * r)
    if kind == "Matern32":
        return (1.0 + np.sqrt(3.0) * r) * np.exp(-np.sqrt(3.0) * r)
    if kind == "Exponential":
        return np.exp(-0.5 * r)
    raise TwinSpecificationError(f"Unknown kernel {kind!r}.")  # pragma: no cover - validated


def _psd_np(kind: str, omega: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """Spectral density of the unit-variance kernel at ``omega`` (nb, D) for ``ls`` (n,): (n, nb)."""
    from scipy.special import gamma

    D = omega.shape[1]
    w2 = (omega**2).sum(axis=1)[None, :] * (ls**2)[:, None]
    lsD = (ls**D)[:, None]
    if kind == "ExpQuad":
        return np.sqrt(2.0 * np.pi) ** D * lsD * np.exp(-0.5 * w2)
    if kind == "Matern52":
        p = (D + 5) / 2
        return (2**D * np.pi ** (D / 2) * gamma(p) * 5**2.5) / (0.75 * np.sqrt(np.pi)) * lsD * (5.0 + w2) ** (-p)
    if kind == "Matern32":
        p = (D + 3) / 2
        return (2**D * np.pi ** (D / 2) * gamma(p) * 3**1.5) / (0.5 * np.sqrt(np.pi)) * lsD * (3.0 + w2) ** (-p)
    raise TwinSpecificationError(f"HSGPDiscrepancy: no spectral density for kernel {kind!r}.")  # pragma: no cover


def _bias_terms(self, X, name="delta", marginal=False):
    return {f"{name}_bias": lambda d, k=f"{name}_bias": _prior_sum(self.prior, _draws(d, k))}


def _bias_delta(self, draws, X, unit_idx, n_units, name="delta"):
    b = _draws(draws, f"{name}_bias")
    if self.per_unit:
        return b.reshape(b.shape[0], -1)[:, unit_idx]
    return np.repeat(b.reshape(-1, 1), np.asarray(X).shape[0], axis=1)


def _gp_scale_terms(self, X, name):
    cols = self._cols(np.asarray(X, float))
    ls_p = self.ls if self.ls is not None else _default_ls(np.asarray(X, float), cols)
    out = {}
    if isinstance(ls_p, Prior):
        out[f"{name}_ls"] = lambda d, p=ls_p, k=f"{name}_ls": _prior_sum(p, _draws(d, k))
    if isinstance(self.eta, Prior):
        out[f"{name}_eta"] = lambda d, p=self.eta, k=f"{name}_eta": _prior_sum(p, _draws(d, k))
    return out, ls_p


def _gp_hyper(self, name="delta"):
    return tuple(f"{name}_{k}" for k in ("ls", "eta")
                 if isinstance(getattr(self, k), Prior) or (k == "ls" and self.ls is None))


def _gp_terms(self, X, name="delta", marginal=False):
    out, _ = _gp_scale_terms(self, X, name)
    if not marginal:
        out[f"{name}_gp_rotated_"] = lambda d, k=f"{name}_gp_rotated_": _std_normal_sum(_draws(d, k))
    return out


def _gp_cov_np(self, draws, X, unit_idx, name="delta") -> np.ndarray:
    """Prior covariance of delta at the training inputs per draw (n_draws, n, n), jitter added."""
    X = np.asarray(X, float)
    cols = self._cols(X)
    ls_p = self.ls if self.ls is not None else _default_ls(X, cols)
    n_draws = len(next(iter(draws.values())))
    ls = _value_np(ls_p, draws, f"{name}_ls", n_draws)[:, None, None]
    eta = _value_np(self.eta, draws, f"{name}_eta", n_draws)[:, None, None]
    Z = X[:, cols]
    if self.constraint is not None:
        x, x0 = Z[:, 0], self.x0
        d = x[:, None] - x[None, :]
        l2 = ls**2
        K = np.exp(-0.5 * d[None] ** 2 / l2)
        a = np.exp(-0.5 * (x - x0)[None, :, None] ** 2 / l2)  # (n_draws, n, 1)
        K = K - a * np.swapaxes(a, 1, 2)
        if self.constraint == "value_and_slope":
            u = a * (x - x0)[None, :, None]
            K = K - u * np.swapaxes(u, 1, 2) / l2
        K = eta**2 * K
    else:
        r2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2)
        K = eta**2 * _kernel_np(self.kernel, r2[None] / ls**2)
    if self.per_unit:
        K = K * (unit_idx[:, None] == unit_idx[None, :])[None]
    return K + self.jitter * np.eye(Z.shape[0])[None]


def _gp_delta(self, draws, X, unit_idx, n_units, name="delta"):
    K = _gp_cov_np(self, draws, X, unit_idx, name)
    v = _draws(draws, f"{name}_gp_rotated_")
    return np.einsum("dij,dj->di", np.linalg.cholesky(K), v.reshape(v.shape[0], -1))


def _hsgp_terms(self, X, name="delta", marginal=False):
    out, _ = _gp_scale_terms(self, X, name)
    out[f"{name}_hsgp_coeffs"] = lambda d, k=f"{name}_hsgp_coeffs": _std_normal_sum(_draws(d, k))
    return out


def _hsgp_basis(self, X) -> tuple[np.ndarray, np.ndarray]:
    """Basis ``phi`` (n, nb) and frequencies ``omega`` (nb, D) as ``pm.gp.HSGP`` builds them
    (projected on the orthogonal complement of the sensitivity directions with ``orthogonal_to``)."""
    from pymc.gp.hsgp_approx import calc_eigenvalues

    X = np.asarray(X, float)
    X = X[:, None] if X.ndim == 1 else X
    cols = self._cols(X)
    Z = X[:, cols]
    center = (np.asarray(self.center, float) if self.center is not None
              else (Z.max(axis=0) + Z.min(axis=0)) / 2)
    L = (np.asarray(np.atleast_1d(self.L), float) if self.L is not None
         else self.c * np.abs(Z - center).max(axis=0))
    m = [int(self.m)] * Z.shape[1] if np.isscalar(self.m) else [int(v) for v in self.m]
    eig = np.asarray(calc_eigenvalues(L, m), float)

    def basis(Zb: np.ndarray) -> np.ndarray:
        Zs = Zb - center
        phi = np.ones((Zb.shape[0], eig.shape[0]))
        for d in range(Zb.shape[1]):
            phi *= np.sin(np.sqrt(eig[:, d])[None, :] * (Zs[:, d][:, None] + L[d])) / np.sqrt(L[d])
        return phi

    phi = basis(Z)
    if self.orthogonal_to is not None:
        R = self._ref_inputs(X)
        phi = phi - self.directions(X) @ self._ortho_coef(R, basis(R[:, cols]))
    return phi, np.sqrt(eig)


def _hsgp_delta(self, draws, X, unit_idx, n_units, name="delta"):
    X = np.asarray(X, float)
    phi, omega = _hsgp_basis(self, X)
    n_draws = len(next(iter(draws.values())))
    ls_p = self.ls if self.ls is not None else _default_ls(X, self._cols(X))
    ls = _value_np(ls_p, draws, f"{name}_ls", n_draws)
    eta = _value_np(self.eta, draws, f"{name}_eta", n_draws)
    sqrt_psd = eta[:, None] * np.sqrt(_psd_np(self.kernel, omega, ls))  # (n_draws, nb)
    beta = _draws(draws, f"{name}_hsgp_coeffs")
    if self.per_unit:
        b = beta.reshape(n_draws, n_units, -1)[:, unit_idx, :]  # (n_draws, n, nb)
        return np.einsum("nb,dnb->dn", phi, b * sqrt_psd[:, None, :])
    return (beta.reshape(n_draws, -1) * sqrt_psd) @ phi.T


