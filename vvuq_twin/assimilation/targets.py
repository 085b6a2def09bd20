"""The SMC target in unconstrained space: parameter transforms, support checks, cost counters.

A :class:`ParticleModel` maps natural parameter values (dict name -> array ``(n, ...)``) to flat
unconstrained coordinates ``z`` (array ``(n, d)``) and back, and evaluates the log prior
(Jacobian included) and the log-likelihood of a data set at ``z``, optionally with gradients.
Two implementations:

* :class:`CallableModel` wraps natural-scale NumPy callables ``log_prior(theta)`` and
  ``log_likelihood(theta, data)`` with declared transforms (``"identity"``, ``"log"``,
  ``("interval", lower, upper)``, ``("lower", bound)``) and optional gradients;
* :class:`~vvuq_twin.assimilation.twin_adapter.TwinLogDensity` compiles the twin's PyMC model
  on its value variables (PyMC's own transforms and Jacobians, analytic gradients).

:class:`TemperedTarget` evaluates prior x L(past chunks) x L(new)^phi for the kernels: the prior
first, the likelihood only where the prior is finite (a proposal outside the support is
rejected without evaluating the likelihood), a failing batch call split until the failing
particles are isolated (they get ``-inf``), and every call counted.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .kernels import Evaluation

__all__ = ["ParticleModel", "CallableModel", "TemperedTarget", "TRANSFORMS"]

TRANSFORMS = ("identity", "log", "interval", "lower", "upper")


@runtime_checkable
class ParticleModel(Protocol):
    """What the SMC update needs of a model (see module docstring)."""

    has_gradient: bool

    def to_unconstrained(self, values: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def from_unconstrained(self, z: np.ndarray) -> dict[str, np.ndarray]: ...

    def log_prior_z(self, z: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]: ...

    def log_likelihood_z(self, z: np.ndarray, data: Mapping[str, np.ndarray],
                         grad: bool) -> tuple[np.ndarray, np.ndarray | None]: ...


def _check_out(out: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(out, dtype=float)
    if out.shape != (n,):
        raise ValueError(
            f"{what} returned shape {out.shape}; expected ({n},), one value per particle. "
            "Vectorise it over the leading particle axis."
        )
    return np.where(np.isnan(out), -np.inf, out)


class CallableModel:
    """Natural-scale NumPy log densities seen in unconstrained coordinates.

    Parameters
    ----------
    log_likelihood : callable ``(theta, data) -> (n,)``
    log_prior : callable ``(theta) -> (n,)``
        ``-inf`` outside the support.
    shapes : dict name -> tuple
        Per-particle shape of each parameter (in order).
    transforms : dict name -> spec, optional
        ``"identity"`` (default), ``"log"`` (positive), ``("lower", a)``, ``("upper", b)``,
        ``("interval", a, b)``; unlisted parameters are unconstrained.
    grad_log_likelihood, grad_log_prior : callables, optional
        ``(theta, data) -> dict name -> (n, ...)`` and ``(theta) -> dict``: natural-scale
        gradients, enabling the MALA kernel (the chain rule through the transforms is applied
        here).
    """

    def __init__(self, log_likelihood: Callable, log_prior: Callable, shapes: Mapping[str, tuple],
                 transforms: Mapping[str, Any] | None = None, *,
                 grad_log_likelihood: Callable | None = None,
                 grad_log_prior: Callable | None = None) -> None:
        self.log_likelihood = log_likelihood
        self.log_prior = log_prior
        self.shapes = {k: tuple(int(s) for s in v) for k, v in shapes.items()}
        self.transforms: dict[str, tuple] = {}
        for k, spec in (transforms or {}).items():
            if k not in self.shapes:
                raise ValueError(f"`transforms` names {k!r}, which is not a parameter (parameters: {list(self.shapes)}).")
            t = (spec,) if isinstance(spec, str) else tuple(spec)
            if t[0] not in TRANSFORMS or (t[0] == "interval" and len(t) != 3) or \
                    (t[0] in ("lower", "upper") and len(t) != 2) or (t[0] in ("identity", "log") and len(t) != 1):
                raise ValueError(
                    f"Transform of {k!r} must be 'identity', 'log', ('lower', a), ('upper', b) or "
                    f"('interval', a, b); got {spec!r}."
                )
            if t[0] == "interval" and not float(t[1]) < float(t[2]):
                raise ValueError(f"Interval transform of {k!r} needs lower < upper, got {spec!r}.")
            self.transforms[k] = t
        self.has_gradient = grad_log_likelihood is not None and grad_log_prior is not None
        self.grad_log_likelihood = grad_log_likelihood
        self.grad_log_prior = grad_log_prior
        self.sizes = {k: int(np.prod(s, dtype=int)) for k, s in self.shapes.items()}
        self.dim = int(sum(self.sizes.values()))

    # coordinates --------------------------------------------------------------------------
    def _split(self, z: np.ndarray) -> dict[str, np.ndarray]:
        out, j = {}, 0
        for k, s in self.shapes.items():
            out[k] = z[:, j:j + self.sizes[k]]
            j += self.sizes[k]
        return out

    def _fwd(self, k: str, x: np.ndarray) -> np.ndarray:
        t = self.transforms.get(k, ("identity",))
        with np.errstate(divide="ignore", invalid="ignore"):
            if t[0] == "log":
                return np.log(x)
            if t[0] == "lower":
                return np.log(x - t[1])
            if t[0] == "upper":
                return np.log(t[1] - x)
            if t[0] == "interval":
                a, b = float(t[1]), float(t[2])
                return np.log(x - a) - np.log(b - x)
        return x

    def _bwd(self, k: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """natural value, log |dx/du| and d(log|dx/du|)/du, elementwise."""
        t = self.transforms.get(k, ("identity",))
        with np.errstate(over="ignore", under="ignore"):
            if t[0] in ("log", "lower", "upper"):
                e = np.exp(u)
                x = e if t[0] == "log" else (t[1] + e if t[0] == "lower" else t[1] - e)
                return x, u, np.ones_like(u)
            if t[0] == "interval":
                a, b = float(t[1]), float(t[2])
                s = 0.5 * (1 + np.tanh(0.5 * u))  # stable logistic
                x = a + (b - a) * s
                lj = np.log(b - a) - np.logaddexp(0, u) - np.logaddexp(0, -u)
                return x, lj, 1.0 - 2.0 * s
        return u, np.zeros_like(u), np.zeros_like(u)

    def to_unconstrained(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        n = np.asarray(next(iter(values.values()))).shape[0]
        cols = []
        for k in self.shapes:
            x = np.asarray(values[k], float).reshape(n, -1)
            u = self._fwd(k, x)
            if not np.all(np.isfinite(u)):
                raise ValueError(
                    f"Particles of {k!r} lie outside the support of its transform "
                    f"{self.transforms.get(k)}; check the transforms or the particles."
                )
            cols.append(u)
        return np.hstack(cols)

    def from_unconstrained(self, z: np.ndarray) -> dict[str, np.ndarray]:
        n = z.shape[0]
        return {k: self._bwd(k, u)[0].reshape((n,) + self.shapes[k]) for k, u in self._split(z).items()}

    def _natural(self, z):
        parts = {k: self._bwd(k, u) for k, u in self._split(z).items()}
        n = z.shape[0]
        theta = {k: p[0].reshape((n,) + self.shapes[k]) for k, p in parts.items()}
        return theta, parts

    def _chain(self, grads: Mapping[str, np.ndarray], parts, z) -> np.ndarray:
        """d/dz of a natural-scale function with gradient ``grads`` (dict name -> (n, ...))."""
        n = z.shape[0]
        cols = []
        for k, (x, lj, _) in parts.items():
            gx = np.asarray(grads[k], float).reshape(n, -1)
            t = self.transforms.get(k, ("identity",))
            if t[0] == "identity":
                dx = np.ones_like(x)
            elif t[0] == "upper":
                dx = -np.exp(lj)
            else:
                dx = np.exp(lj)
            cols.append(gx * dx)
        return np.hstack(cols)

    def log_prior_z(self, z: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = z.shape[0]
        theta, parts = self._natural(z)
        lp = _check_out(self.log_prior(theta), n, "log_prior")
        lj = sum(p[1].sum(1) for p in parts.values())
        out = lp + lj
        if not grad:
            return out, None
        g = self._chain(self.grad_log_prior(theta), parts, z) + np.hstack([p[2] for p in parts.values()])
        return out, g

    def log_likelihood_z(self, z: np.ndarray, data: Mapping[str, np.ndarray],
                         grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = z.shape[0]
        theta, parts = self._natural(z)
        ll = _check_out(self.log_likelihood(theta, data), n, getattr(self.log_likelihood, "__name__", "log_likelihood"))
        if not grad:
            return ll, None
        return ll, self._chain(self.grad_log_likelihood(theta, data), parts, z)


class TemperedTarget:
    """``evaluate(z, grad) -> Evaluation`` of prior x L(past) x L(new)^phi, with cost counters.

    Attributes
    ----------
    n_calls : int
        Vectorised likelihood calls (one per data chunk per evaluation).
    n_gradient_calls : int
        Of those, calls that also returned a gradient.
    n_point_evals : int
        Particle-level likelihood evaluations of the new batch and all past data
        (particles x chunks), counting only proposals inside the support.
    n_outside_support : int
        Proposals rejected on the prior alone (their likelihood was never evaluated).
    seconds : float
        Time spent evaluating.
    """

    def __init__(self, model: ParticleModel, past: Sequence[Mapping[str, np.ndarray]],
                 batch: Mapping[str, np.ndarray]) -> None:
        self.model = model
        self.past = list(past)
        self.batch = batch
        self.n_calls = 0
        self.n_gradient_calls = 0
        self.n_point_evals = 0
        self.n_outside_support = 0
        self.seconds = 0.0

    def safe_log_likelihood(self, z: np.ndarray, data: Mapping[str, np.ndarray], grad: bool):
        """Likelihood on a block of in-support particles; a raising block is split in halves."""
        try:
            with np.errstate(all="ignore"):
                ll, g = self.model.log_likelihood_z(z, data, grad)
            return ll, g
        except (ValueError, FloatingPointError, ArithmeticError, RuntimeError) as err:
            if "returned shape" in str(err):
                raise
            if z.shape[0] == 1:
                return np.full(1, -np.inf), (np.zeros_like(z) if grad else None)
            h = z.shape[0] // 2
            a, ga = self.safe_log_likelihood(z[:h], data, grad)
            b, gb = self.safe_log_likelihood(z[h:], data, grad)
            return np.concatenate([a, b]), (np.vstack([ga, gb]) if grad else None)

    def safe_log_prior(self, z: np.ndarray, grad: bool):
        """Log prior on a block of finite particles; a raising block (e.g. a population scale that
        underflows to 0 fails a compiled ``sigma > 0`` check) is split in halves, and a single
        raising particle gets ``-inf`` (rejected) instead of failing the whole batch."""
        try:
            with np.errstate(all="ignore"):
                return self.model.log_prior_z(z, grad)
        except (ValueError, FloatingPointError, ArithmeticError, RuntimeError) as err:
            if "returned shape" in str(err):
                raise
            if z.shape[0] == 1:
                return np.full(1, -np.inf), (np.zeros_like(z) if grad else None)
            h = z.shape[0] // 2
            a, ga = self.safe_log_prior(z[:h], grad)
            b, gb = self.safe_log_prior(z[h:], grad)
            return np.concatenate([a, b]), (np.vstack([ga, gb]) if grad else None)

    def __call__(self, z: np.ndarray, grad: bool = False) -> Evaluation:
        t0 = time.perf_counter()
        n, d = z.shape
        ok = np.all(np.isfinite(z), axis=1)
        lp = np.full(n, -np.inf)
        glp = np.zeros((n, d)) if grad else None
        if ok.any():
            with np.errstate(all="ignore"):
                lp_ok, g_ok = self.safe_log_prior(z[ok], grad)
            lp_ok = np.where(np.isnan(lp_ok), -np.inf, np.asarray(lp_ok, float))
            lp[ok] = lp_ok
            if grad:
                glp[ok] = g_ok
        ok &= np.isfinite(lp)
        self.n_outside_support += int(n - ok.sum())
        ll_past, ll_new = np.full(n, -np.inf), np.full(n, -np.inf)
        g_past = np.zeros((n, d)) if grad else None
        g_new = np.zeros((n, d)) if grad else None
        if ok.any():
            zs = z[ok]
            acc = np.zeros(zs.shape[0])
            gacc = np.zeros_like(zs) if grad else None
            for chunk in self.past:
                ll, g = self.safe_log_likelihood(zs, chunk, grad)
                acc = acc + ll
                if grad:
                    gacc = gacc + g
            ll_past[ok] = acc
            ll, g = self.safe_log_likelihood(zs, self.batch, grad)
            ll_new[ok] = ll
            if grad:
                g_past[ok], g_new[ok] = gacc, g
            k = len(self.past) + 1
            self.n_calls += k
            self.n_gradient_calls += k if grad else 0
            self.n_point_evals += k * int(ok.sum())
        bad = ~(np.isfinite(ll_past) & np.isfinite(ll_new))
        lp = np.where(bad, -np.inf, lp)
        self.seconds += time.perf_counter() - t0
        gb = None if not grad else np.nan_to_num(glp + g_past)
        return Evaluation(lp, ll_past, ll_new, gb, None if not grad else np.nan_to_num(g_new))
